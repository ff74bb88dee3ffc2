//! ONNX's nine `light` models on the WebGPU provider against the CPU
//! provider: outputs within 1e-4 relative (plus 1e-5 absolute, for values
//! near zero, where a relative bound means nothing), every Conv, Gemm and
//! pool on the GPU (channels-last, the provider's preferred layout), and a
//! second run that creates no GPU buffer and allocates no host tensor.

mod onnx;

use byob_tensor::{IoBinding, SessionBuilder, Tensor};
use byob_webgpu::WebGpuProvider;
use onnx::{data_dir, dummy_feeds, placed_on};
use std::path::PathBuf;
use std::time::Instant;

const RTOL: f32 = 1e-4;
const ATOL: f32 = 1e-5;

/// The ops that must run on the GPU wherever they appear.
const GPU_OPS: &[&str] = &["Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"];

/// Nodes whose weights exceed what some devices bind at once (lavapipe:
/// 128 MiB), by model and node, with the weights' bytes: the provider
/// leaves them to the CPU on such devices, and only there.
const LARGE_WEIGHTS: &[(&str, &str, u64)] = &[
    ("light_bvlc_alexnet", "n16", 9216 * 4096 * 4),
    ("light_zfnet512", "n16", 9216 * 4096 * 4),
    ("light_vgg19", "n38", 25088 * 4096 * 4),
];

fn compare(gpu: &Tensor, cpu: &Tensor) -> Result<(), String> {
    if gpu.shape() != cpu.shape() {
        return Err(format!("shape {:?}, cpu {:?}", gpu.shape(), cpu.shape()));
    }
    let (g, c) = (gpu.as_f32().ok_or("the GPU output is not f32")?, cpu.as_f32().ok_or("the CPU output is not f32")?);
    for (i, (&g, &c)) in g.iter().zip(c).enumerate() {
        if (g - c).abs() > ATOL + RTOL * c.abs() || g.is_nan() != c.is_nan() {
            return Err(format!("element {i}: {g} on webgpu, {c} on cpu"));
        }
    }
    Ok(())
}

#[test]
fn light_models_match_the_cpu_provider() {
    let provider = WebGpuProvider::new().unwrap_or_else(|e| panic!("the WebGPU tests need a GPU adapter: {e}"));
    let dir = data_dir().join("light");
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect();
    models.sort();
    assert_eq!(models.len(), 9, "the nine light models");
    let mut failures = Vec::new();
    for model in &models {
        let stem = model.file_stem().unwrap().to_string_lossy().to_string();
        let result = (|| -> Result<(), String> {
            let started = Instant::now();
            let cpu = SessionBuilder::new().commit_from_file(model).map_err(|e| format!("cpu load: {e}"))?;
            let gpu = SessionBuilder::new().with_provider(Box::new(provider.clone())).commit_from_file(model).map_err(|e| format!("webgpu load: {e}"))?;
            let placements = gpu.placements();
            let limits = provider.context().limits();
            let binding_limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
            let too_large = |node: &str| LARGE_WEIGHTS.iter().any(|&(m, n, bytes)| m == stem && n == node && bytes > binding_limit);
            let stranded: Vec<String> =
                placements.iter().filter(|p| GPU_OPS.contains(&p.op_type.as_str()) && p.provider != "webgpu" && !too_large(&p.name)).map(|p| format!("{} ({})", p.name, p.op_type)).collect();
            if !stranded.is_empty() {
                return Err(format!("left on the CPU: {}", stranded.join(", ")));
            }
            // The provider prefers NHWC: its convolutions and pools run channels-last.
            if gpu.optimizations().channels_last == 0 {
                return Err("the layout pass rewrote no node to NHWC".into());
            }
            let transposes = placements.iter().filter(|p| p.op_type == "Transpose").count();
            let on_gpu = placed_on(&gpu, "webgpu");
            if 2 * on_gpu <= placements.len() {
                return Err(format!("only {on_gpu} of {} nodes on webgpu", placements.len()));
            }
            let feeds = dummy_feeds(&cpu);
            let expected = cpu.run(feeds.clone()).map_err(|e| format!("cpu run: {e}"))?;
            let loaded = started.elapsed();
            let mut binding = IoBinding::new();
            for (name, tensor) in feeds {
                binding.bind_input(name, tensor);
            }
            let first_started = Instant::now();
            gpu.run_with_binding(&mut binding).map_err(|e| format!("webgpu run: {e}"))?;
            let first = first_started.elapsed();
            for (name, cpu_output) in &expected {
                let gpu_output = binding.output(name).ok_or_else(|| format!("output {name:?} missing"))?;
                compare(gpu_output, cpu_output).map_err(|e| format!("output {name:?}: {e}"))?;
            }
            // Same shapes again: no GPU buffer, no host tensor.
            let before = provider.counters();
            let second_started = Instant::now();
            let stats = gpu.run_with_binding(&mut binding).map_err(|e| format!("second webgpu run: {e}"))?;
            let second = second_started.elapsed();
            let after = provider.counters();
            if after.gpu_buffer_allocations != before.gpu_buffer_allocations || stats.tensor_allocations != 0 {
                return Err(format!("the second run created {} GPU buffers and {} host tensors", after.gpu_buffer_allocations - before.gpu_buffer_allocations, stats.tensor_allocations));
            }
            for (name, cpu_output) in &expected {
                compare(binding.output(name).expect("bound"), cpu_output).map_err(|e| format!("second run, output {name:?}: {e}"))?;
            }
            println!(
                "{stem}: {on_gpu} of {} nodes on webgpu, {} rewritten to NHWC, {transposes} Transposes; cpu load + run {loaded:.2?}, webgpu first run {first:.2?}, second {second:.2?}; GPU lower bound {} B, planned {} B",
                placements.len(),
                gpu.optimizations().channels_last,
                after.lower_bound_bytes,
                after.planned_bytes
            );
            Ok(())
        })();
        if let Err(e) = result {
            failures.push(format!("{stem}: {e}"));
        }
    }
    println!("webgpu counters after the light models: {:?}", provider.counters());
    assert!(failures.is_empty(), "{} light models failed on webgpu:\n{}", failures.len(), failures.join("\n"));
}
