//! The determinism check's own temporary folder (`profilestore-sim simulate
//! --check-determinism` without a regular `--trace` file): where the first run's trace is
//! written, to be compared with the second run's as it goes. A trace is large (gigabytes for
//! long runs), so a folder a killed command left behind must not stay for good: each folder
//! holds a `lock` file locked for as long as its command runs, and the next check removes the
//! folders whose lock nobody holds ([`remove_abandoned`]).
//!
//! The lock is taken on `lock.new` and the file then renamed `lock`, so a folder whose `lock`
//! can be locked is one whose command is gone: never one still being made. Folders without a
//! `lock` (made by an older build, not by a check, or where files cannot be locked), another
//! user's, and the caller's own (where locks are per process, as on some network file systems,
//! its own lock would look free to it) are left alone. On Unix a folder is made `0700`.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// The names of the check folders begin with this.
pub const PREFIX: &str = "profilestore-sim-";

/// A check folder, locked while this value lives and removed with its contents when dropped.
pub struct CheckFolder {
    // Held for the folder's life (the lock is the file's), and closed before the folder goes:
    // fields drop in order, and some platforms cannot remove a file still open.
    _lock: Option<File>,
    dir: tempfile::TempDir,
}

impl CheckFolder {
    /// Makes a locked check folder in `tmp` (the system's temporary folder, for the command).
    pub fn new_in(tmp: &Path) -> io::Result<CheckFolder> {
        let mut builder = tempfile::Builder::new();
        builder.prefix(PREFIX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder.tempdir_in(tmp)?;
        let new = dir.path().join("lock.new");
        let lock = File::create(&new)?;
        match lock.try_lock() {
            Ok(()) => {
                std::fs::rename(&new, dir.path().join("lock"))?;
                Ok(CheckFolder {
                    _lock: Some(lock),
                    dir,
                })
            }
            // Where files cannot be locked the folder has no lock: no check removes it.
            Err(std::fs::TryLockError::Error(e)) if e.kind() == io::ErrorKind::Unsupported => {
                drop(lock);
                std::fs::remove_file(&new)?;
                Ok(CheckFolder { _lock: None, dir })
            }
            Err(e) => Err(io::Error::other(e)),
        }
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
/// killed (a command that ends removes its own). Skips `ours`, folders of another owner (on
/// Unix), a `lock` that is not a plain file (a FIFO would block the open), and folders it
/// cannot remove.
pub fn remove_abandoned(tmp: &Path, ours: &CheckFolder) -> Removed {
    let mut removed = Removed::default();
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return removed;
    };
    let mut folders: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(PREFIX))
        // Not a symlink to a folder elsewhere.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        // Ours by name: `tmp` may be relative (a relative `TMPDIR`) where our path is not.
        .filter(|e| Some(e.file_name().as_os_str()) != ours.path().file_name())
        .filter(|e| is_check_folder_name(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    folders.sort();
    #[cfg(unix)]
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(ours.path()).map(|m| m.uid()).ok()
    };
    for folder in folders {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if std::fs::symlink_metadata(&folder).map(|m| m.uid()).ok() != owner {
                continue;
            }
        }
        let lock = folder.join("lock");
        if !std::fs::symlink_metadata(&lock).is_ok_and(|m| m.is_file())
            || !holds_check_files(&folder)
        {
            continue;
        }
        let Ok(lock) = File::open(lock) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue; // its command is running
        }
        drop(lock);
        let bytes = folder_bytes(&folder);
        if remove_folder(&folder).is_ok() {
            removed.bytes += bytes;
            removed.folders.push(folder);
        }
    }
    removed
}

/// The files a check folder holds: its lock (first made as `lock.new`) and the first run's
/// trace, complete or being written.
const CHECK_FILES: [&str; 4] = ["lock", "lock.new", "first.trace", "first.trace.partial"];

/// Whether `name` is one [`CheckFolder::new_in`] gives: [`PREFIX`] and tempfile's six random
/// letters and digits (`profilestore-sim-results`, say, is someone's own folder).
fn is_check_folder_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `folder` holds nothing but plain files a check folder holds ([`CHECK_FILES`]): a
/// folder holding anything else is not (only) a check's, and is left alone.
fn holds_check_files(folder: &Path) -> bool {
    std::fs::read_dir(folder).is_ok_and(|entries| {
        entries.into_iter().all(|e| {
            e.is_ok_and(|e| {
                CHECK_FILES.contains(&e.file_name().to_string_lossy().as_ref())
                    && e.file_type().is_ok_and(|t| t.is_file())
            })
        })
    })
}

/// Removes `folder` (holding only [`CHECK_FILES`]): its `lock` last, so a removal that fails
/// part-way leaves a folder the next check still knows as abandoned.
fn remove_folder(folder: &Path) -> io::Result<()> {
    for name in CHECK_FILES.iter().filter(|n| **n != "lock") {
        match std::fs::remove_file(folder.join(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::remove_file(folder.join("lock"))?;
    std::fs::remove_dir(folder)
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

    /// A folder whose command is gone is removed with its bytes counted; one in use, the
    /// caller's own, one without a lock or whose lock is not a file, one holding anything a
    /// check does not write, and anything not named like a check folder stay (a folder
    /// `profilestore-sim-results` with a free `lock` and subfolders used to be removed whole).
    #[test]
    fn only_folders_whose_lock_is_free_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // Left by a killed command: its lock file is there, nobody holds it.
        let gone = tmp.path().join(format!("{PREFIX}g0neAB"));
        std::fs::create_dir(&gone).unwrap();
        std::fs::write(gone.join("lock"), b"").unwrap();
        std::fs::write(gone.join("first.trace.partial"), vec![7u8; 1000]).unwrap();
        // Running.
        let live = CheckFolder::new_in(tmp.path()).unwrap();
        std::fs::write(live.path().join("first.trace"), b"x").unwrap();
        // No lock: an older build's, or another program's.
        let old = tmp.path().join(format!("{PREFIX}old123"));
        std::fs::create_dir(&old).unwrap();
        // A lock that is a folder, not a file.
        let odd = tmp.path().join(format!("{PREFIX}odd123"));
        std::fs::create_dir_all(odd.join("lock")).unwrap();
        // A free lock beside what no check writes: a file of another name, a subfolder.
        let notes = tmp.path().join(format!("{PREFIX}notes1"));
        std::fs::create_dir(&notes).unwrap();
        std::fs::write(notes.join("lock"), b"").unwrap();
        std::fs::write(notes.join("notes.txt"), b"mine").unwrap();
        let runs = tmp.path().join(format!("{PREFIX}runs12"));
        std::fs::create_dir_all(runs.join("run1")).unwrap();
        std::fs::write(runs.join("lock"), b"").unwrap();
        // Someone's own folder, named like the tool but not like a check's.
        let results = tmp.path().join(format!("{PREFIX}results"));
        std::fs::create_dir_all(results.join("day1")).unwrap();
        std::fs::write(results.join("lock"), b"").unwrap();
        let ours = CheckFolder::new_in(tmp.path()).unwrap();
        std::fs::create_dir(tmp.path().join("other")).unwrap();
        std::fs::write(tmp.path().join(format!("{PREFIX}file")), b"").unwrap();

        let removed = remove_abandoned(tmp.path(), &ours);
        assert_eq!(
            removed,
            Removed {
                folders: vec![gone],
                bytes: 1000
            }
        );
        let name = |f: &CheckFolder| f.path().file_name().unwrap().to_string_lossy().into_owned();
        let mut left = vec![
            format!("{PREFIX}file"),
            format!("{PREFIX}notes1"),
            format!("{PREFIX}odd123"),
            format!("{PREFIX}old123"),
            format!("{PREFIX}results"),
            format!("{PREFIX}runs12"),
            name(&live),
            name(&ours),
            "other".to_string(),
        ];
        left.sort();
        assert_eq!(names(tmp.path()), left);
        assert_eq!(names(live.path()), ["first.trace", "lock"]);
        // Nothing more the second time; the two live folders go when dropped.
        assert_eq!(remove_abandoned(tmp.path(), &ours), Removed::default());
        drop(live);
        drop(ours);
        assert_eq!(names(tmp.path()).len(), 7);
        assert_eq!(names(&results), ["day1", "lock"]);
    }

    /// A folder with nowhere to be made is an error, not a panic; one is made `0700` on Unix.
    #[test]
    fn a_folder_that_cannot_be_made_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(CheckFolder::new_in(&tmp.path().join("missing")).is_err());
        let ours = CheckFolder::new_in(tmp.path()).unwrap();
        assert_eq!(
            remove_abandoned(&tmp.path().join("missing"), &ours),
            Removed::default()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(ours.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }
}
