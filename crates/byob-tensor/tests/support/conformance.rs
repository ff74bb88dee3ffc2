//! The conformance suites, one harness for every runtime: each case (a
//! test of onnx 1.22.0's `node` folder, or a real model with ONNX Runtime's
//! outputs, see scripts/make-real-model-tests.py) runs through a session
//! the runtime builds, its outputs compared with the reference. A runtime
//! lists the cases it is expected to fail, each with its reason, in
//! `tests/data/expected-failures/SUITE-RUNTIME.txt`; a listed case that
//! passes fails the suite, so the list stays honest.
//!
//! `BYOB_UPDATE_EXPECTED_FAILURES=1` rewrites the runtime's list from the
//! failures of this run (each with its error as the reason) instead of
//! checking it: for after a change that fixes or adds cases, never in CI.

use super::{close, data_dir, read_tensor};
use byob_tensor::{Data, Session, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How outputs are compared with the reference.
#[derive(Clone, Copy)]
pub enum Tolerance {
    /// numpy's `assert_allclose`: the node tests, with rtol 1e-3 and atol
    /// 1e-5 (the coverage measure of issue 15).
    Elementwise { rtol: f64, atol: f64 },
    /// The largest error at most this fraction of the output's peak
    /// magnitude: the real models.
    OfPeak(f64),
}

/// A set of cases and the file listing the expected failures.
pub struct Suite {
    pub name: &'static str,
    pub cases: Vec<PathBuf>,
    pub tolerance: Tolerance,
}

impl Suite {
    /// Every test of onnx 1.22.0's `node` folder.
    pub fn node() -> Self {
        Self { name: "node", cases: folders(&data_dir().join("node")), tolerance: Tolerance::Elementwise { rtol: 1e-3, atol: 1e-5 } }
    }

    /// The real models (Silero VAD's exports, basic-pitch) against ONNX
    /// Runtime: max error at most 1e-3 of each output's peak.
    pub fn real_models() -> Self {
        let cases = folders(&real_models_dir()).into_iter().filter(|d| d.join("MODEL").exists()).collect();
        Self { name: "real-models", cases, tolerance: Tolerance::OfPeak(1e-3) }
    }
}

pub fn real_models_dir() -> PathBuf {
    data_dir().join("../real-models")
}

/// The result of one node test.
pub enum Outcome {
    Passed,
    Failed(String),
    /// Not a test of this runtime (the WebGPU provider placed no node).
    NotApplicable,
}

/// The folders in `dir`, sorted by name.
fn folders(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

/// A case's model: its own model.onnx, or the shared model its MODEL file
/// names.
pub fn model_path(dir: &Path) -> PathBuf {
    match std::fs::read_to_string(dir.join("MODEL")) {
        Ok(name) => real_models_dir().join("models").join(name.trim()),
        Err(_) => dir.join("model.onnx"),
    }
}

/// Runs every `test_data_set_*` of the case in `dir` through `session`.
pub fn run_data_sets(session: &Session, dir: &Path, tolerance: Tolerance) -> Result<(), String> {
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
            let compared = match tolerance {
                Tolerance::Elementwise { rtol, atol } => close(actual, &expected, rtol, atol),
                Tolerance::OfPeak(fraction) => close_to_peak(actual, &expected, fraction),
            };
            compared.map_err(|e| format!("{}: output {i} ({name}): {e}", set.file_name().unwrap().to_string_lossy()))?;
        }
    }
    Ok(())
}

/// The largest difference at most `fraction` of the reference's peak
/// magnitude (integers and bools: equal).
fn close_to_peak(actual: &Tensor, expected: &Tensor, fraction: f64) -> Result<(), String> {
    let floats = |t: &Tensor| -> Option<Vec<f64>> {
        match t.data() {
            Data::F32(v) => Some(v.iter().map(|&x| x as f64).collect()),
            Data::F64(v) => Some(v.clone()),
            Data::F16(v) => Some(v.iter().map(|x| x.to_f64()).collect()),
            Data::BF16(v) => Some(v.iter().map(|x| x.to_f64()).collect()),
            _ => None,
        }
    };
    if actual.shape() != expected.shape() || actual.dtype() != expected.dtype() {
        return Err(format!("{} {:?}, expected {} {:?}", actual.dtype(), actual.shape(), expected.dtype(), expected.shape()));
    }
    let (Some(a), Some(e)) = (floats(actual), floats(expected)) else {
        return if actual == expected { Ok(()) } else { Err("values differ".into()) };
    };
    let peak = e.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let error = a.iter().zip(&e).fold(0.0f64, |m, (a, e)| if a.is_nan() || e.is_nan() { if a.is_nan() == e.is_nan() { m } else { f64::INFINITY } } else { m.max((a - e).abs()) });
    if error > fraction * peak {
        return Err(format!("max error {error:.3e} is {:.2e} of the peak {peak:.3e}", error / peak));
    }
    Ok(())
}

/// Runs `case` on every case of `suite`, compares the failures with the
/// runtime's list, prints the counts and fails on any difference.
pub fn check_suite(suite: &Suite, runtime: &str, case: impl Fn(&Path) -> Outcome) {
    let list_path = data_dir().join("../expected-failures").join(format!("{}-{runtime}.txt", suite.name));
    let listed = read_list(&list_path);
    let tests = &suite.cases;
    let (mut passed, mut not_applicable) = (0, 0);
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for dir in tests {
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
    println!("{suite} cases on {runtime}: {passed} passed, {} failed, {not_applicable} not applicable, of {}", failed.len(), tests.len(), suite = suite.name);
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

const HEADER: &str = "# Conformance cases this runtime is expected to fail: name<TAB>reason.\n# Rewritten by BYOB_UPDATE_EXPECTED_FAILURES=1 (see tests/support/conformance.rs).\n";

fn read_list(path: &Path) -> BTreeMap<String, String> {
    // A suite with no list yet expects every case to pass.
    let text = std::fs::read_to_string(path).unwrap_or_default();
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
