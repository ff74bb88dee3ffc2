//! The WebGPU provider against the CPU provider, in one run: Gemm at 1024³
//! and 4096³, the convolution layers of ResNet50, whole ResNet50 (random
//! weights from scripts/make-bench-models.py when present) at batch 1 and,
//! on a real GPU, 16, and the transformer encoder of the real-model tests,
//! with GPU buffers created per steady-state run and the planned GPU bytes
//! against their lower bound; then the seed's open question for the data
//! manager: keep released storage buffers for reuse, or create new ones.
//!
//! On a software adapter (lavapipe) the table goes to BENCHMARKS.md's
//! `webgpu` section; on a real GPU to `webgpu_gpu` (scripts/gpu-bench).
//!
//! `cargo run --release -p byob-bench --bin webgpu [-- --quick] [--threads N]`

use byob_bench::{interleaved_medians, machine, write_section};
use byob_tensor::model::{Attribute, Graph, Model, Node, ValueInfo};
use byob_tensor::{DataType, Dim, IoBinding, Session, SessionBuilder, Tensor};
use byob_webgpu::{GpuContext, GpuDataManager, WebGpuProvider};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// CPU threads unless `--threads` says otherwise.
const THREADS: usize = 2;

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A model of one node reading graph input `x` and `weights` initializers.
fn one_node(op: &str, x: &[usize], weights: Vec<(&str, Tensor)>, attributes: Vec<(&str, Attribute)>) -> Model {
    let mut inputs = vec!["x".to_string()];
    inputs.extend(weights.iter().map(|(n, _)| n.to_string()));
    let graph = Graph {
        nodes: vec![Node {
            name: op.to_lowercase(),
            op_type: op.into(),
            domain: String::new(),
            inputs,
            outputs: vec!["y".into()],
            attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }],
        inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(x.iter().map(|&d| Dim::Known(d)).collect()) }],
        outputs: vec![ValueInfo { name: "y".into(), dtype: Some(DataType::F32), shape: None }],
        initializers: weights.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
    };
    Model { ir_version: 8, producer: "byob-bench".into(), opsets: HashMap::from([(String::new(), 13)]), graph }
}

fn gemm(n: usize) -> Model {
    one_node("Gemm", &[n, n], vec![("w", Tensor::f32(vec![n, n], values(n * n, 1, 0.05)).unwrap())], vec![])
}

/// (name, channels in, channels out, kernel, stride, input size)
const RESNET50_CONVS: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("conv1 7×7/2, 3→64 @224", 3, 64, 7, 2, 224),
    ("res2 1×1, 64→256 @56", 64, 256, 1, 1, 56),
    ("res2 3×3, 64→64 @56", 64, 64, 3, 1, 56),
    ("res3 3×3, 128→128 @28", 128, 128, 3, 1, 28),
    ("res4 3×3, 256→256 @14", 256, 256, 3, 1, 14),
    ("res4 1×1, 1024→256 @14", 1024, 256, 1, 1, 14),
    ("res5 3×3, 512→512 @7", 512, 512, 3, 1, 7),
];

fn conv(c: usize, m: usize, k: usize, stride: usize, size: usize) -> Model {
    let pad = (k / 2) as i64;
    one_node(
        "Conv",
        &[1, c, size, size],
        vec![("w", Tensor::f32(vec![m, c, k, k], values(m * c * k * k, 2, (2.0 / (c * k * k) as f32).sqrt())).unwrap()), ("b", Tensor::f32(vec![m], values(m, 3, 0.1)).unwrap())],
        vec![("strides", Attribute::Ints(vec![stride as i64; 2])), ("pads", Attribute::Ints(vec![pad; 4]))],
    )
}

/// Sessions on both providers with inputs bound, ready to run.
struct Pair {
    cpu: (Session, IoBinding),
    gpu: (Session, IoBinding),
}

/// Binds every input: `shapes` by name where given, else the declared
/// shape with unknown dimensions 1; floats random, booleans true.
fn bound(session: Session, shapes: &[(&str, Vec<usize>)]) -> (Session, IoBinding) {
    let mut binding = IoBinding::new();
    for v in session.inputs() {
        let shape: Vec<usize> = match shapes.iter().find(|(n, _)| *n == v.name) {
            Some((_, s)) => s.clone(),
            None => v.shape.iter().flatten().map(|d| if let Dim::Known(n) = d { *n } else { 1 }).collect(),
        };
        let n = shape.iter().product();
        let tensor = match v.dtype {
            Some(DataType::Bool) => Tensor::new(shape, byob_tensor::Data::Bool(vec![true; n])).unwrap(),
            _ => Tensor::f32(shape, values(n, 7, 1.0)).unwrap(),
        };
        binding.bind_input(v.name.clone(), tensor);
    }
    session.run_with_binding(&mut binding).expect("first run");
    (session, binding)
}

fn pair(model: &Model, gpu: &WebGpuProvider, threads: usize, shapes: &[(&str, Vec<usize>)]) -> Pair {
    let cpu = SessionBuilder::new().with_intra_op_threads(threads).commit(model.clone()).expect("cpu session");
    let on_gpu = SessionBuilder::new().with_intra_op_threads(threads).with_provider(Box::new(gpu.clone())).commit(model.clone()).expect("webgpu session");
    Pair { cpu: bound(cpu, shapes), gpu: bound(on_gpu, shapes) }
}

/// ResNet50 at another batch size: the input's first dimension and the
/// classifier's Reshape (which names batch 1) changed.
fn with_batch(mut model: Model, batch: usize) -> Model {
    if let Some(shape) = model.graph.inputs[0].shape.as_mut() {
        shape[0] = Dim::Known(batch);
    }
    for t in model.graph.initializers.values_mut() {
        if t.as_i64() == Some(&[1, 2048]) {
            *t = Tensor::i64(vec![2], vec![batch as i64, 2048]).unwrap();
        }
    }
    model
}

/// What a whole model's timed runs did on the GPU.
struct ModelRun {
    row: String,
    on_gpu: usize,
    nodes: usize,
    runs: u64,
    buffers_created: u64,
    after: byob_webgpu::ProviderCounters,
}

/// A whole model's row, with what the GPU did during its timed runs.
fn model_row(name: &str, model: &Model, gpu: &WebGpuProvider, threads: usize, shapes: &[(&str, Vec<usize>)], runs: usize) -> ModelRun {
    let mut p = pair(model, gpu, threads, shapes);
    let before = gpu.counters();
    let (cpu, web, error) = time(&mut p, runs);
    let after = gpu.counters();
    println!("{name}: cpu {cpu:.2} ms, webgpu {web:.2} ms");
    let placed = p.gpu.0.placements();
    let on_gpu = placed.iter().filter(|n| n.provider == "webgpu").count();
    let (runs, buffers_created) = (after.runs - before.runs, after.gpu_buffer_allocations - before.gpu_buffer_allocations);
    let row = format!(
        "| {name} | {cpu:.2} | {web:.2} | **{:.2}** | {on_gpu}/{} | {} | {:.2}× | {error:.0e} |\n",
        web / cpu,
        placed.len(),
        buffers_created as f64 / runs.max(1) as f64,
        after.planned_bytes as f64 / after.lower_bound_bytes.max(1) as f64
    );
    ModelRun { row, on_gpu, nodes: placed.len(), runs, buffers_created, after }
}

/// Median milliseconds of (cpu, webgpu), measured in turns, and the largest
/// relative difference between their outputs.
fn time(pair: &mut Pair, runs: usize) -> (f64, f64, f64) {
    let medians = interleaved_medians(
        runs,
        2,
        |_| (),
        |case, ()| {
            let (session, binding) = if case == 0 { &mut pair.cpu } else { &mut pair.gpu };
            session.run_with_binding(binding).expect("run");
        },
    );
    let output = |(s, b): &(Session, IoBinding)| b.output(&s.outputs().next().unwrap().name).unwrap().as_f32().unwrap().to_vec();
    let (a, b) = (output(&pair.cpu), output(&pair.gpu));
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let error = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale;
    (medians[0] * 1e3, medians[1] * 1e3, error as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let threads = args.iter().position(|a| a == "--threads").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok()).unwrap_or(THREADS);
    let gpu = WebGpuProvider::new().unwrap_or_else(|e| panic!("no WebGPU adapter: {e}"));
    let adapter = gpu.adapter_description();
    let real = gpu.context().adapter_info().device_type != wgpu::DeviceType::Cpu;
    println!("adapter: {adapter}");
    let title = if real { "## WebGPU provider on a real GPU vs the CPU provider" } else { "## WebGPU provider on a software GPU (lavapipe) vs the CPU provider" };
    let mut body = format!(
        "{title}\n\n`cargo run --release -p byob-bench --bin webgpu` — median of runs measured in turns (CPU provider, WebGPU provider), inputs and outputs bound (IO binding), \
         {threads} CPU threads; same run, same machine: {}.\n\nAdapter: **{adapter}**.\n\n",
        machine()
    );
    body += "| case | CPU ms | WebGPU ms | WebGPU/CPU | GPU GFLOP/s | max rel. diff |\n|---|---|---|---|---|---|\n";
    let sizes: &[usize] = if quick { &[1024] } else { &[1024, 4096] };
    for &n in sizes {
        let mut p = pair(&gemm(n), &gpu, threads, &[]);
        let (cpu, web, error) = time(&mut p, if n > 2048 { 3 } else { 10 });
        let gflops = 2.0 * (n * n * n) as f64 / (web * 1e-3) / 1e9;
        println!("Gemm {n}³: cpu {cpu:.1} ms, webgpu {web:.1} ms ({gflops:.1} GFLOP/s)");
        body += &format!("| Gemm {n}×{n}×{n} | {cpu:.2} | {web:.2} | **{:.2}** | {gflops:.1} | {error:.0e} |\n", web / cpu);
    }
    for &(name, c, m, k, stride, size) in RESNET50_CONVS {
        let mut p = pair(&conv(c, m, k, stride, size), &gpu, threads, &[]);
        let (cpu, web, error) = time(&mut p, if quick { 3 } else { 7 });
        let out = size / stride;
        let gflops = 2.0 * (m * out * out * c * k * k) as f64 / (web * 1e-3) / 1e9;
        println!("{name}: cpu {cpu:.2} ms, webgpu {web:.2} ms");
        body += &format!("| Conv {name} | {cpu:.2} | {web:.2} | **{:.2}** | {gflops:.1} | {error:.0e} |\n", web / cpu);
    }
    let random = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-models/resnet50.onnx");
    let light = Path::new(env!("CARGO_MANIFEST_DIR")).join("../byob-tensor/tests/data/onnx-1.22.0/light/light_resnet50.onnx");
    let (path, weights) = if random.exists() { (random, "random weights") } else { (light, "light_resnet50's constant weights; run scripts/make-bench-models.py for random ones") };
    let model = Model::load(&path).expect("ResNet50");
    let runs = if quick { 3 } else { 7 };
    body += "\nWhole models: nodes on the GPU, GPU buffers created per steady-state run (goal 0) and planned GPU bytes of activations against their lower bound (goal ≤ 1.05×).\n\n";
    body += "| model | CPU ms | WebGPU ms | WebGPU/CPU | nodes on GPU | GPU buffers per run | planned / lower bound | max rel. diff |\n|---|---|---|---|---|---|---|---|\n";
    let encoder = Model::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../byob-tensor/tests/data/real-models/models/transformer_encoder.onnx")).expect("transformer encoder");
    for seq in [64, 256] {
        body += &model_row(&format!("transformer encoder, batch 1, seq {seq}"), &encoder, &gpu, threads, &[("x", vec![1, seq, 128]), ("mask", vec![1, seq])], runs).row;
    }
    if real {
        body += &model_row(&format!("ResNet50 batch 16 ({weights})"), &with_batch(model.clone(), 16), &gpu, threads, &[], runs).row;
    }
    let ModelRun { row, on_gpu, nodes, runs, buffers_created, after } = model_row(&format!("ResNet50 batch 1 ({weights})"), &model, &gpu, threads, &[], runs);
    body += &row;
    body += "\n";
    body += &format!(
        "ResNet50 on WebGPU: {on_gpu} of {} nodes on the GPU; GPU buffers created during the {} timed runs: **{}**. \
         Activations (inputs and outputs included) are placed in {} planned bytes for a lower bound of {} (the largest total of tensors alive at once): \
         **{:.2}×**; with the weights, the GPU holds {} bytes at most.\n\n",
        nodes,
        runs,
        buffers_created,
        after.planned_bytes,
        after.lower_bound_bytes,
        after.planned_bytes as f64 / after.lower_bound_bytes.max(1) as f64,
        after.peak_bytes
    );
    body += &reuse_or_create(gpu.context().clone(), if quick { 20 } else { 100 });
    write_section(if real { "webgpu_gpu" } else { "webgpu" }, &body).expect("writing BENCHMARKS.md");
    println!("{body}");
}

/// The seed's TODO: when a tensor is released, keep its storage buffer for
/// the next tensor of that size, or destroy it and create a new one? One
/// step = create the buffers of a ResNet-like set of sizes, upload to each,
/// release them all, submit.
fn reuse_or_create(ctx: Arc<GpuContext>, steps: usize) -> String {
    let sizes: Vec<u64> = [802_816u64, 3_211_264, 802_816, 200_704, 401_408, 1_605_632, 100_352, 4_000].to_vec();
    let manager = GpuDataManager::new(ctx);
    let bytes = vec![1u8; *sizes.iter().max().unwrap() as usize];
    let step = |manager: &GpuDataManager| {
        let ids: Vec<_> = sizes.iter().map(|&s| manager.create(s).unwrap()).collect();
        for (&id, &s) in ids.iter().zip(&sizes) {
            manager.upload(id, &bytes[..s as usize]).unwrap();
        }
        for id in ids {
            manager.release(id).unwrap();
        }
        manager.submit().unwrap();
    };
    let mut medians = [0.0; 2];
    let mut created = [0u64; 2];
    for (k, reuse) in [true, false].into_iter().enumerate() {
        step(&manager);
        let before = manager.counters();
        let mut times = Vec::with_capacity(steps);
        for _ in 0..steps {
            if !reuse {
                manager.trim();
            }
            let start = Instant::now();
            step(&manager);
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        medians[k] = times[steps / 2];
        created[k] = manager.counters().allocations - before.allocations;
    }
    let answer = if medians[0] <= medians[1] {
        "keeping them is faster here, and byob keeps them"
    } else {
        "creating them is not slower on this adapter (buffers are host memory under lavapipe); byob keeps them anyway, since on a discrete GPU creation means a driver allocation, and steady-state runs of a session need neither: the memory plan creates every buffer once"
    };
    format!(
        "Keep or create storage buffers (the seed's open question): a step creates {} buffers (ResNet-like sizes, {:.1} MB), uploads to each, releases them and submits. \
         Keeping released buffers for reuse: **{:.3} ms** per step ({} buffers created in {steps} steps); destroying and creating new ones: **{:.3} ms** ({} created): {answer}.\n",
        sizes.len(),
        sizes.iter().sum::<u64>() as f64 / 1e6,
        medians[0],
        created[0],
        medians[1],
        created[1]
    )
}
