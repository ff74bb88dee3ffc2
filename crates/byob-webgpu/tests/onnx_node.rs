//! ONNX's node tests (the selection byob-tensor's CPU tests run) on a
//! session with the WebGPU provider: every test in which at least one node
//! runs on the GPU must produce ONNX's reference outputs (rtol 1e-3, atol
//! 1e-7, as ONNX's backend tests compare). Tests whose nodes all stay on
//! the CPU (int64 data, unsupported attributes...) are counted, not rerun.

mod onnx;

use byob_tensor::{SessionBuilder, Tensor};
use byob_webgpu::WebGpuProvider;
use onnx::{close, data_dir, placed_on, read_tensor};
use std::path::{Path, PathBuf};

/// Tests with GPU nodes expected to fail, with the reason. A listed test
/// that passes fails the suite, so the list stays honest.
const GPU_EXPECTED_FAILURES: &[(&str, &str)] = &[];

enum Outcome {
    /// Every node ran on the CPU.
    CpuOnly,
    Ran(Result<(), String>),
}

fn run_case(provider: &WebGpuProvider, dir: &Path) -> Outcome {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let model = dir.join(if dir.join("model.onnx").exists() { "model.onnx".to_string() } else { format!("{name}.onnx") });
    let session = match SessionBuilder::new().with_intra_op_threads(1).with_provider(Box::new(provider.clone())).commit_from_file(&model) {
        Ok(session) => session,
        // A model the CPU alone cannot load either (training mode) is the
        // CPU's expected failure, not the GPU's.
        Err(_) if SessionBuilder::new().with_intra_op_threads(1).commit_from_file(&model).is_err() => return Outcome::CpuOnly,
        Err(e) => return Outcome::Ran(Err(format!("load: {e}"))),
    };
    if placed_on(&session, "webgpu") == 0 {
        return Outcome::CpuOnly;
    }
    let input_names: Vec<String> = session.inputs().map(|v| v.name.clone()).collect();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    sets.sort();
    let result = (|| {
        for set in sets {
            let count = |prefix: &str| (0..).take_while(|i| set.join(format!("{prefix}_{i}.pb")).exists()).count();
            let feeds: Vec<(String, Tensor)> =
                (0..count("input")).map(|i| (input_names.get(i).cloned().unwrap_or_default(), read_tensor(&set.join(format!("input_{i}.pb"))))).collect();
            let outputs = session.run(feeds).map_err(|e| format!("run: {e}"))?;
            for i in 0..count("output") {
                let expected = read_tensor(&set.join(format!("output_{i}.pb")));
                let (name, actual) = outputs.get(i).ok_or_else(|| format!("output {i} missing"))?;
                close(actual, &expected, 1e-3, 1e-7).map_err(|e| format!("output {i} ({name}): {e}"))?;
            }
        }
        Ok(())
    })();
    Outcome::Ran(result)
}

#[test]
fn node_tests_with_gpu_nodes_pass_on_webgpu() {
    let provider = WebGpuProvider::new().unwrap_or_else(|e| panic!("the WebGPU tests need a GPU adapter: {e}"));
    let selection = std::fs::read_to_string(data_dir().join("SELECTION.txt")).expect("the selected test data is committed in byob-tensor");
    let names: Vec<&str> = selection.lines().filter(|l| !l.is_empty()).collect();
    let (mut on_gpu, mut cpu_only, mut passed) = (0, 0, 0);
    let (mut failures, mut unexpected_passes) = (Vec::new(), Vec::new());
    for name in &names {
        let expected_failure = GPU_EXPECTED_FAILURES.iter().any(|(n, _)| n == name);
        match run_case(&provider, &data_dir().join("node").join(name)) {
            Outcome::CpuOnly => cpu_only += 1,
            Outcome::Ran(result) => {
                on_gpu += 1;
                match (result, expected_failure) {
                    (Ok(()), false) => passed += 1,
                    (Ok(()), true) => unexpected_passes.push(name.to_string()),
                    (Err(e), false) => failures.push(format!("{name}: {e}")),
                    (Err(_), true) => {}
                }
            }
        }
    }
    println!(
        "ONNX node tests on webgpu ({}): {on_gpu} of {} ran with GPU nodes, {passed} passed, {} expected failures; {cpu_only} stayed on the CPU",
        provider.adapter_description(),
        names.len(),
        GPU_EXPECTED_FAILURES.len()
    );
    assert!(unexpected_passes.is_empty(), "expected failures that now pass (remove them from the list): {unexpected_passes:?}");
    assert!(failures.is_empty(), "{} node tests failed on webgpu:\n{}", failures.len(), failures.join("\n"));
    assert!(on_gpu > 100, "only {on_gpu} node tests placed a node on the GPU");
}
