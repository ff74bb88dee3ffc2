//! Inputs: regular files only, sized before a byte is read. A FIFO would
//! block the open or the read forever, a device such as `/dev/zero` never
//! ends, and a folder reads as an error deep in a decoder; each is refused
//! here with one message instead.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` (following symlinks) if it is a regular file, and returns
/// it with its size in bytes. The open does not block on a FIFO.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a folder" } else { "not a regular file (a FIFO, socket or device)" };
        return Err(io::Error::new(io::ErrorKind::InvalidInput, kind));
    }
    Ok((file, meta.len()))
}

/// Reads a whole regular file of at most `max_bytes` bytes; `what` names
/// the limit in the error (`"an ONNX model"`).
pub fn read_regular(path: &Path, max_bytes: u64, what: &str) -> io::Result<Vec<u8>> {
    let (file, len) = open_regular(path)?;
    if len > max_bytes {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{len} bytes is more than {what} may have ({max_bytes} bytes)")));
    }
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len as usize).map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, format!("out of memory reading {len} bytes")))?;
    // `take`: a file that grows while it is read stops at the size allowed.
    file.take(max_bytes).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let regular = dir.path().join("a.bin");
        std::fs::write(&regular, [1, 2, 3]).unwrap();
        assert_eq!(read_regular(&regular, 3, "a test file").unwrap(), [1, 2, 3]);
        let e = read_regular(&regular, 2, "a test file").unwrap_err();
        assert_eq!(e.to_string(), "3 bytes is more than a test file may have (2 bytes)");
        assert_eq!(open_regular(dir.path()).unwrap_err().to_string(), "a folder");
        assert!(open_regular(Path::new("/dev/zero")).unwrap_err().to_string().starts_with("not a regular file"));
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(open_regular(&fifo).unwrap_err().to_string().starts_with("not a regular file"));
    }
}
