//! The ONNX conformance suite, one harness for every runtime: each test of
//! onnx 1.22.0's `node` folder runs through a session the runtime builds,
//! its outputs compared with ONNX's reference outputs. A runtime lists the
//! tests it is expected to fail, each with its reason, in
//! `tests/data/onnx-1.22.0/expected-failures/RUNTIME.txt`; a listed test
//! that passes fails the suite, so the list stays honest.
//!
//! `BYOB_UPDATE_EXPECTED_FAILURES=1` rewrites the runtime's list from the
//! failures of this run (each with its error as the reason) instead of
//! checking it: for after a change that fixes or adds tests, never in CI.

use super::{close, data_dir, read_tensor};
use byob_tensor::{Session, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The tolerances of the coverage measure (issue 15): numpy's
/// `assert_allclose` with rtol 1e-3, atol 1e-5.
pub const RTOL: f64 = 1e-3;
pub const ATOL: f64 = 1e-5;

/// The result of one node test.
pub enum Outcome {
    Passed,
    Failed(String),
    /// Not a test of this runtime (the WebGPU provider placed no node).
    NotApplicable,
}

/// Every node test's folder, sorted by name.
pub fn node_tests() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(data_dir().join("node")).expect("the node tests are committed").map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

pub fn model_path(dir: &Path) -> PathBuf {
    dir.join("model.onnx")
}

/// Runs every `test_data_set_*` of the test in `dir` through `session`.
pub fn run_data_sets(session: &Session, dir: &Path) -> Result<(), String> {
    let input_names: Vec<String> = session.inputs().map(|v| v.name.clone()).collect();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir).map_err(|e| e.to_string())?.map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    sets.sort();
    for set in sets {
        let count = |prefix: &str| (0..).take_while(|i| set.join(format!("{prefix}_{i}.pb")).exists()).count();
        let mut feeds: Vec<(String, Tensor)> = Vec::new();
        for i in 0..count("input") {
            let name = input_names.get(i).cloned().ok_or_else(|| format!("input {i}: the session has {} inputs", input_names.len()))?;
            feeds.push((name, read_tensor(&set.join(format!("input_{i}.pb"))).map_err(|e| format!("input {i}: {e}"))?));
        }
        let outputs = session.run(feeds).map_err(|e| format!("run: {e}"))?;
        for i in 0..count("output") {
            let expected = read_tensor(&set.join(format!("output_{i}.pb"))).map_err(|e| format!("expected output {i}: {e}"))?;
            let (name, actual) = outputs.get(i).ok_or_else(|| format!("output {i} missing"))?;
            close(actual, &expected, RTOL, ATOL).map_err(|e| format!("output {i} ({name}): {e}"))?;
        }
    }
    Ok(())
}

/// Runs `case` on every node test, compares the failures with the
/// runtime's list, prints the counts and fails on any difference.
pub fn check_suite(runtime: &str, case: impl Fn(&Path) -> Outcome) {
    let list_path = data_dir().join("expected-failures").join(format!("{runtime}.txt"));
    let listed = read_list(&list_path);
    let tests = node_tests();
    let (mut passed, mut not_applicable) = (0, 0);
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for dir in &tests {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(dir))).unwrap_or_else(|panic| {
            let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            Outcome::Failed(format!("PANIC: {what}"))
        });
        match outcome {
            Outcome::Passed => passed += 1,
            Outcome::NotApplicable => not_applicable += 1,
            Outcome::Failed(why) => {
                let why = why.replace(&format!("{}/", dir.display()), "");
                failed.insert(name, one_line(&why));
            }
        }
    }
    println!("ONNX node tests on {runtime}: {passed} passed, {} failed, {not_applicable} not applicable, of {}", failed.len(), tests.len());
    if std::env::var_os("BYOB_UPDATE_EXPECTED_FAILURES").is_some() {
        let text: String = failed.iter().map(|(name, why)| format!("{name}\t{why}\n")).collect();
        std::fs::write(&list_path, format!("{HEADER}{text}")).expect("write the expected failures");
        println!("wrote {} expected failures to {}", failed.len(), list_path.display());
        return;
    }
    let panics: Vec<String> = failed.iter().filter(|(_, why)| why.starts_with("PANIC")).map(|(n, why)| format!("{n}: {why}")).collect();
    let unexpected: Vec<String> = failed.iter().filter(|(n, _)| !listed.contains_key(*n)).map(|(n, why)| format!("{n}: {why}")).collect();
    let now_passing: Vec<&String> = listed.keys().filter(|n| !failed.contains_key(*n)).collect();
    assert!(panics.is_empty(), "{} node tests panicked (a kernel must return an error):\n{}", panics.len(), panics.join("\n"));
    assert!(now_passing.is_empty(), "expected failures that no longer fail (remove them from {}): {now_passing:?}", list_path.display());
    assert!(unexpected.is_empty(), "{} node tests failed:\n{}", unexpected.len(), unexpected.join("\n"));
}

const HEADER: &str = "# ONNX node tests (onnx 1.22.0) this runtime is expected to fail: name<TAB>reason.\n# Rewritten by BYOB_UPDATE_EXPECTED_FAILURES=1 (see tests/support/conformance.rs).\n";

fn read_list(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, why) = l.split_once('\t').unwrap_or_else(|| panic!("{}: {l:?} has no reason after a tab", path.display()));
            (name.to_string(), why.to_string())
        })
        .collect()
}

/// The error's first line, short enough for a list (without the list of
/// operators a provider runs, which changes with every one added).
fn one_line(why: &str) -> String {
    let line = why.lines().next().unwrap_or_default().replace('\t', " ");
    let line = line.split(" (cpu runs:").next().unwrap_or_default();
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}
