//! `remove_pending` removes every pending temporary file of the process,
//! so it is tested alone, in a process of its own.

use std::io::Write;

#[test]
fn pending_files_are_removed_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = byob_files::Outputs::new();
    let staged = outputs.stage(&dir.path().join("a.txt")).unwrap();
    write!(staged.file(), "A").unwrap();
    let temp = staged.temp_path().to_path_buf();
    assert!(temp.exists());
    byob_files::remove_pending();
    assert!(!temp.exists());
    // Committing a removed file fails; nothing appears.
    assert!(outputs.commit().is_err());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
