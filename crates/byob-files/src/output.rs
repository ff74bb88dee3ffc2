//! Outputs: checked, staged beside their targets, committed together.

use std::fs::{File, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tempfile::NamedTempFile;

/// Why an output could not be written; nothing was replaced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The path cannot take an output (see [`Outputs::stage`]).
    #[error("{path}: {what}")]
    Refused { path: PathBuf, what: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The temporary files of outputs not yet committed, for [`remove_pending`].
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes the temporary files of every output not yet committed: for a
/// signal handler, before the process exits without running destructors.
pub fn remove_pending() {
    for path in pending().drain(..) {
        let _ = std::fs::remove_file(path);
    }
}

/// An output being written: a temporary file beside its target.
#[derive(Debug)]
pub struct Staged {
    target: PathBuf,
    /// The target's folder, resolved, and its file name: two outputs with
    /// the same key would overwrite each other.
    key: PathBuf,
    temp: Option<NamedTempFile>,
}

impl Staged {
    /// The temporary file to write.
    pub fn file(&mut self) -> &mut File {
        self.temp.as_mut().expect("staged until committed").as_file_mut()
    }

    /// The temporary file's path (it ends with the target's file name, so
    /// writers that pick a format by extension pick the target's).
    pub fn temp_path(&self) -> &Path {
        self.temp.as_ref().expect("staged until committed").path()
    }

    /// Where the output goes on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(temp) = &self.temp {
            let path = temp.path().to_path_buf();
            pending().retain(|p| *p != path);
        }
        // Dropping the NamedTempFile removes an uncommitted file.
    }
}

/// The outputs of one command: every one is checked and written before
/// any replaces what its path held.
#[derive(Debug, Default)]
pub struct Outputs {
    staged: Vec<Staged>,
}

impl Outputs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks that `path` can take an output and opens a temporary file
    /// beside it. Refused: a path whose folder does not exist, a symbolic
    /// link (byob does not replace a link; name the file it points to), a
    /// file with other hard links (renaming onto it would leave them with
    /// the old contents), a folder, a FIFO, socket or device, and a path
    /// another output of this set already names.
    pub fn stage(&mut self, path: &Path) -> Result<&mut Staged, OutputError> {
        let refuse = |what: &str| OutputError::Refused { path: path.to_path_buf(), what: what.to_string() };
        let name = path.file_name().ok_or_else(|| refuse("names no file"))?;
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let resolved = folder.canonicalize().map_err(|_| refuse(&format!("the folder {} does not exist", folder.display())))?;
        if !resolved.is_dir() {
            return Err(refuse(&format!("{} is not a folder", folder.display())));
        }
        let existing = match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => return Err(refuse("is a symbolic link; byob does not replace links (name the file it points to)")),
            Ok(m) if m.is_dir() => return Err(refuse("is a folder")),
            Ok(m) if !m.is_file() => return Err(refuse("is not a regular file (a FIFO, socket or device); byob writes regular files only")),
            Ok(m) if m.nlink() > 1 => {
                return Err(refuse(&format!(
                    "has {} hard links; byob replaces an output by renaming a new file onto it, which would leave the other links with the old contents (remove the file first, or name another path)",
                    m.nlink()
                )))
            }
            Ok(m) => Some(m.permissions()),
            Err(_) => None,
        };
        let key = resolved.join(name);
        if let Some(other) = self.staged.iter().find(|s| s.key == key) {
            return Err(refuse(&format!("is also where another output of this command goes ({})", other.target.display())));
        }
        let temp = tempfile::Builder::new()
            .prefix(".byob-")
            .suffix(&format!("-{}", name.to_string_lossy()))
            // Masked by the umask, as any tool's new files are.
            .permissions(Permissions::from_mode(0o666))
            .tempfile_in(&resolved)
            .map_err(|source| OutputError::Io { path: path.to_path_buf(), source })?;
        // A file replaced keeps its permissions, as `sed -i` keeps them.
        if let Some(permissions) = existing {
            temp.as_file().set_permissions(permissions).map_err(|source| OutputError::Io { path: path.to_path_buf(), source })?;
        }
        pending().push(temp.path().to_path_buf());
        self.staged.push(Staged { target: path.to_path_buf(), key, temp: Some(temp) });
        Ok(self.staged.last_mut().expect("just pushed"))
    }

    /// The outputs staged so far, in the order staged.
    pub fn staged_mut(&mut self) -> &mut [Staged] {
        &mut self.staged
    }

    /// Renames every staged file onto its target, in the order staged.
    pub fn commit(mut self) -> Result<(), OutputError> {
        for staged in &mut self.staged {
            let temp = staged.temp.take().expect("staged until committed");
            let temp_path = temp.path().to_path_buf();
            let result = temp.persist(&staged.target);
            pending().retain(|p| *p != temp_path);
            result.map_err(|e| OutputError::Io { path: staged.target.clone(), source: e.error })?;
        }
        Ok(())
    }
}

/// Writes one output through [`Outputs`]: `write` fills the temporary
/// file, which then replaces `path`.
pub fn write_atomically<E: From<OutputError>>(path: &Path, write: impl FnOnce(&mut File) -> Result<(), E>) -> Result<(), E> {
    let mut outputs = Outputs::new();
    write(outputs.stage(path)?.file())?;
    outputs.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The process's umask, read without changing it (setting it to read
    /// it would race with the other tests' files).
    fn umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:")).unwrap();
        u32::from_str_radix(line.trim(), 8).unwrap()
    }

    #[test]
    fn outputs_appear_together_with_the_umask_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
        std::fs::write(&b, "old").unwrap();
        let mut outputs = Outputs::new();
        write!(outputs.stage(&a).unwrap().file(), "A").unwrap();
        let staged = outputs.stage(&b).unwrap();
        assert!(staged.temp_path().to_string_lossy().ends_with("-b.txt"));
        write!(staged.file(), "B").unwrap();
        assert!(!a.exists() && std::fs::read_to_string(&b).unwrap() == "old");
        assert_eq!(pending().iter().filter(|p| p.starts_with(dir.path())).count(), 2);
        outputs.commit().unwrap();
        assert_eq!((std::fs::read_to_string(&a).unwrap(), std::fs::read_to_string(&b).unwrap()), ("A".into(), "B".into()));
        assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o666 & !umask());
        assert!(pending().iter().all(|p| !p.starts_with(dir.path())));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no temporary file left");
    }

    #[test]
    fn a_replaced_file_keeps_its_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        std::fs::write(&a, "old").unwrap();
        std::fs::set_permissions(&a, Permissions::from_mode(0o600)).unwrap();
        write_atomically::<OutputError>(&a, |f| f.write_all(b"new").map_err(|source| OutputError::Io { path: a.clone(), source })).unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new");
        assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn an_abandoned_set_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.txt");
        let mut outputs = Outputs::new();
        write!(outputs.stage(&a).unwrap().file(), "A").unwrap();
        drop(outputs);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(pending().iter().all(|p| !p.starts_with(dir.path())));
    }

    #[test]
    fn paths_that_cannot_take_an_output_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.txt");
        std::fs::write(&target, "kept").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let mut outputs = Outputs::new();
        let refused = |outputs: &mut Outputs, path: &Path| outputs.stage(path).unwrap_err().to_string();
        assert!(refused(&mut outputs, &link).ends_with("is a symbolic link; byob does not replace links (name the file it points to)"));
        assert!(refused(&mut outputs, &fifo).contains("is not a regular file"));
        let hard = dir.path().join("hard.txt");
        std::fs::hard_link(&target, &hard).unwrap();
        assert!(refused(&mut outputs, &hard).contains("has 2 hard links"));
        std::fs::remove_file(&hard).unwrap();
        assert!(refused(&mut outputs, dir.path()).ends_with("is a folder"));
        assert!(refused(&mut outputs, &dir.path().join("missing/x.txt")).contains("does not exist"));
        outputs.stage(&target).unwrap();
        let again = dir.path().join(".").join("target.txt");
        assert!(refused(&mut outputs, &again).contains("is also where another output of this command goes"));
        drop(outputs);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    }
}
