//! The determinism check's own temporary folder (`profilestore-sim simulate
//! --check-determinism` without a regular `--trace` file): where the first run's trace is
//! written, to be compared with the second run's as it goes. A trace is large (gigabytes for
//! long runs), so a folder a killed command left behind must not stay for good: each folder
//! holds a `lock` file locked for as long as its command runs, and the next check removes the
//! folders whose lock nobody holds ([`remove_abandoned`]).
//!
//! The lock is taken on `lock.new` and the file then renamed `lock`, so a folder whose `lock`
//! can be locked is one whose command is gone: never one still being made. Folders without a
//! `lock` (made by an older build, or not by a check) are left alone.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The names of the check folders begin with this.
pub const PREFIX: &str = "profilestore-sim-";

/// A check folder, locked while this value lives and removed with its contents when dropped.
pub struct CheckFolder {
    dir: tempfile::TempDir,
    // Held for the folder's life: the lock is the file's.
    _lock: File,
}

impl CheckFolder {
    /// Makes a locked check folder in `tmp` (the system's temporary folder, for the command).
    pub fn new_in(tmp: &Path) -> io::Result<CheckFolder> {
        let dir = tempfile::Builder::new().prefix(PREFIX).tempdir_in(tmp)?;
        let new = dir.path().join("lock.new");
        let lock = File::create(&new)?;
        lock.try_lock().map_err(io::Error::other)?;
        std::fs::rename(&new, dir.path().join("lock"))?;
        Ok(CheckFolder { dir, _lock: lock })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What [`remove_abandoned`] removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Removed {
    /// The folders, in name order.
    pub folders: Vec<PathBuf>,
    /// The bytes of the files they held.
    pub bytes: u64,
}

/// Removes the check folders in `tmp` whose `lock` nobody holds: left by commands that were
/// killed (a command that ends removes its own). Folders it cannot read or remove (another
/// user's, in a shared `/tmp`) are skipped.
pub fn remove_abandoned(tmp: &Path) -> Removed {
    let mut removed = Removed::default();
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return removed;
    };
    let mut folders: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(PREFIX))
        // Not a symlink to a folder elsewhere.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    folders.sort();
    for folder in folders {
        let Ok(lock) = File::open(folder.join("lock")) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // its command is running
        }
        drop(lock);
        let bytes = folder_bytes(&folder);
        if std::fs::remove_dir_all(&folder).is_ok() {
            removed.bytes += bytes;
            removed.folders.push(folder);
        }
    }
    removed
}

/// The bytes of the files directly in `folder` (a check folder holds no subfolders).
fn folder_bytes(folder: &Path) -> u64 {
    std::fs::read_dir(folder).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(tmp: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A folder whose command is gone is removed with its bytes counted; one in use, one
    /// without a lock, and anything not named like a check folder stay.
    #[test]
    fn only_folders_whose_lock_is_free_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // Left by a killed command: its lock file is there, nobody holds it.
        let gone = tmp.path().join(format!("{PREFIX}gone"));
        std::fs::create_dir(&gone).unwrap();
        std::fs::write(gone.join("lock"), b"").unwrap();
        std::fs::write(gone.join("first.trace.partial"), vec![7u8; 1000]).unwrap();
        // Running.
        let live = CheckFolder::new_in(tmp.path()).unwrap();
        std::fs::write(live.path().join("first.trace"), b"x").unwrap();
        // No lock: an older build's, or another program's.
        let old = tmp.path().join(format!("{PREFIX}old"));
        std::fs::create_dir(&old).unwrap();
        std::fs::create_dir(tmp.path().join("other")).unwrap();
        std::fs::write(tmp.path().join(format!("{PREFIX}file")), b"").unwrap();

        let removed = remove_abandoned(tmp.path());
        assert_eq!(
            removed,
            Removed {
                folders: vec![gone],
                bytes: 1000
            }
        );
        let live_name = live
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut left = vec![
            format!("{PREFIX}file"),
            format!("{PREFIX}old"),
            live_name,
            "other".to_string(),
        ];
        left.sort();
        assert_eq!(names(tmp.path()), left);
        assert_eq!(names(live.path()), ["first.trace", "lock"]);
        // Nothing more the second time; the live folder goes when dropped.
        assert_eq!(remove_abandoned(tmp.path()), Removed::default());
        drop(live);
        assert_eq!(names(tmp.path()).len(), 3);
    }

    /// A folder with nowhere to be made is an error, not a panic.
    #[test]
    fn a_folder_that_cannot_be_made_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(CheckFolder::new_in(&tmp.path().join("missing")).is_err());
        assert_eq!(
            remove_abandoned(&tmp.path().join("missing")),
            Removed::default()
        );
    }
}
