//! Reading the files a command is given (a trace, a scenario, a journal, an export document):
//! a regular file whole; anything else (a pipe such as `<(zcat run.trace.gz)`, a device) up to a
//! bound, so that `/dev/zero` is an error and not a read without end.

use std::io::Read;
use std::path::Path;

/// The most read from a file that is not a regular file (1 GiB).
pub const MAX_STREAMED: u64 = 1 << 30;

/// All of `reader` if it holds at most `limit` bytes, `None` if it holds more.
pub fn read_bounded(reader: impl Read, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// The text of the file at `path`: a regular file whole, anything else up to `limit` bytes
/// (more is an error saying so). Not UTF-8 is an error, as with `std::fs::read_to_string`.
pub fn read_text(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind};
    if std::fs::metadata(path)?.is_file() {
        return std::fs::read_to_string(path);
    }
    let bytes = read_bounded(std::fs::File::open(path)?, limit)?.ok_or_else(|| {
        Error::new(
            ErrorKind::FileTooLarge,
            format!("more than {limit} bytes from a file that is not a regular file"),
        )
    })?;
    String::from_utf8(bytes)
        .map_err(|_| Error::new(ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream is read up to the bound: `/dev/zero` ends in an error, not a read without
    /// end; a stream within the bound reads whole, and a regular file whole whatever the bound.
    #[test]
    fn a_stream_is_read_up_to_the_bound() {
        let zero = std::fs::File::open("/dev/zero").unwrap();
        assert_eq!(read_bounded(zero, 1024).unwrap(), None);
        assert_eq!(
            read_bounded(&b"PSTRACE"[..], 7).unwrap().as_deref(),
            Some(&b"PSTRACE"[..])
        );
        assert_eq!(read_bounded(&b"PSTRACE"[..], 6).unwrap(), None);
        let err = read_text(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string()),
            (
                std::io::ErrorKind::FileTooLarge,
                "more than 1024 bytes from a file that is not a regular file".to_string()
            )
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("doc.json");
        std::fs::write(&file, "{\"a\": 1}").unwrap();
        assert_eq!(read_text(&file, 2).unwrap(), "{\"a\": 1}");
        std::fs::write(&file, b"\xff").unwrap();
        let err = read_text(&file, 2).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }
}
