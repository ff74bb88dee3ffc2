//! ONNX's node tests through byob-tensor's conformance harness, on a session
//! with the WebGPU provider: every test in which at least one node runs on
//! the GPU must produce ONNX's reference outputs, but the ones listed in
//! expected-failures/node-webgpu.txt. Tests whose nodes all stay on the CPU, and
//! the CPU's own expected failures, are counted as not applicable.

mod onnx;

use byob_tensor::SessionBuilder;
use byob_webgpu::WebGpuProvider;
use onnx::conformance::{self, check_suite, Outcome, Suite};
use onnx::placed_on;

#[test]
fn node_tests_with_gpu_nodes_pass_on_webgpu() {
    let provider = WebGpuProvider::new().unwrap_or_else(|e| panic!("the WebGPU tests need a GPU adapter: {e}"));
    println!("adapter: {}", provider.adapter_description());
    let on_gpu = std::sync::atomic::AtomicUsize::new(0);
    let suite = Suite::node();
    let tolerance = suite.tolerance;
    check_suite(&suite, "webgpu", |dir| {
        let model = conformance::model_path(dir);
        // A model the CPU alone cannot run is the CPU's expected failure.
        let cpu = SessionBuilder::new().with_intra_op_threads(1).commit_from_file(&model);
        if cpu.map_err(|e| e.to_string()).and_then(|s| conformance::run_data_sets(&s, dir, tolerance)).is_err() {
            return Outcome::NotApplicable;
        }
        let session = match SessionBuilder::new().with_intra_op_threads(1).with_provider(Box::new(provider.clone())).commit_from_file(&model) {
            Ok(session) => session,
            Err(e) => return Outcome::Failed(format!("load: {e}")),
        };
        if placed_on(&session, "webgpu") == 0 {
            return Outcome::NotApplicable;
        }
        on_gpu.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match conformance::run_data_sets(&session, dir, tolerance) {
            Ok(()) => Outcome::Passed,
            Err(e) => Outcome::Failed(e),
        }
    });
    let on_gpu = on_gpu.into_inner();
    assert!(on_gpu > 100, "only {on_gpu} node tests placed a node on the GPU");
}
