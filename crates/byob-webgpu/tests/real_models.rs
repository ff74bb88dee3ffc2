//! The transformer encoder and basic-pitch of the real-model tests on the
//! WebGPU provider: every node the GPU's kernels take is placed there
//! (what stays on the CPU is int64 shape arithmetic, which WGSL cannot
//! hold), and the outputs match the CPU provider's within 1e-4 of their
//! peak, and ONNX Runtime's within the real-model suite's 1e-3.

mod onnx;

use byob_tensor::{Session, SessionBuilder, Tensor};
use byob_webgpu::WebGpuProvider;
use onnx::conformance::{self, real_models_dir, Tolerance};
use onnx::read_tensor;
use std::path::Path;

/// The ops that may stay on the CPU, and why.
const CPU_ONLY: &[(&str, &str)] = &[
    ("Shape", "produces int64"),
    ("Cast", "to or from int64"),
    ("Equal", "compares int64 shapes"),
    ("Where", "selects int64 shapes"),
    ("Concat", "joins int64 shapes"),
    ("Reshape", "reshapes int64 shapes"),
    ("Unsqueeze", "int64 shapes"),
    ("Gather", "int64 shapes"),
    ("Slice", "int64 shapes"),
    ("ConstantOfShape", "reads an int64 shape"),
];

fn inputs(dir: &Path, session: &Session) -> Vec<(String, Tensor)> {
    let set = dir.join("test_data_set_0");
    session.inputs().enumerate().map(|(i, v)| (v.name.clone(), read_tensor(&set.join(format!("input_{i}.pb"))).unwrap())).collect()
}

fn check(case: &str) {
    let dir = real_models_dir().join(case);
    let model = conformance::model_path(&dir);
    let gpu = WebGpuProvider::new().unwrap_or_else(|e| panic!("the WebGPU tests need a GPU adapter: {e}"));
    let cpu = SessionBuilder::new().with_intra_op_threads(2).commit_from_file(&model).unwrap();
    let session = SessionBuilder::new().with_intra_op_threads(2).with_provider(Box::new(gpu)).commit_from_file(&model).unwrap();
    let placements = session.placements();
    let on_cpu: Vec<_> = placements.iter().filter(|p| p.provider != "webgpu").collect();
    println!("{case}: {} of {} nodes on the GPU", placements.len() - on_cpu.len(), placements.len());
    for p in &on_cpu {
        assert!(CPU_ONLY.iter().any(|(op, _)| *op == p.op_type), "{case}: node {:?} ({}) stays on the CPU", p.name, p.op_type);
    }
    let feeds = inputs(&dir, &session);
    let (got, want) = (session.run(feeds.clone()).unwrap(), cpu.run(feeds).unwrap());
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        let (g, w) = (g.as_f32().unwrap(), w.as_f32().unwrap());
        let peak = w.iter().fold(0f32, |m, v| m.max(v.abs()));
        let error = g.iter().zip(w).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("{case}: {name}: max difference {error:.2e}, peak {peak:.2e}");
        assert!(error <= 1e-4 * peak, "{case}: output {name:?} differs from the CPU's by {error:e} (peak {peak:e})");
    }
    conformance::run_data_sets(&session, &dir, Tolerance::OfPeak(1e-3)).unwrap_or_else(|e| panic!("{case} against ONNX Runtime: {e}"));
}

#[test]
fn the_transformer_encoder_runs_on_the_gpu_and_matches_the_cpu() {
    check("transformer_encoder_b2_s64");
}

#[test]
fn basic_pitch_runs_on_the_gpu_and_matches_the_cpu() {
    check("basic_pitch_nmp_2s");
}
