//! IO binding with GPU buffers: a session on the caller's device reads an
//! input the caller's own compute pass wrote and writes an output the
//! caller's copy reads; two sessions chain on the GPU with no host
//! transfer between them (counted); a CPU step reading a GPU input gets a
//! host copy; misuse fails with errors that say what and where.

use byob_tensor::model::{Attribute, Graph, Model, Node, ValueInfo};
use byob_tensor::{DataType, Dim, IoBinding, RunError, Session, SessionBuilder, Tensor};
use byob_webgpu::WebGpuProvider;
use std::collections::HashMap;

mod common;
use common::graph_node as node;

fn model(nodes: Vec<Node>, inputs: &[(&str, &[usize])], outputs: &[&str], initializers: HashMap<String, Tensor>) -> Model {
    let inputs = inputs.iter().map(|(n, s)| ValueInfo { name: n.to_string(), dtype: Some(DataType::F32), shape: Some(s.iter().map(|&d| Dim::Known(d)).collect()) }).collect();
    let outputs = outputs.iter().map(|n| ValueInfo { name: n.to_string(), dtype: None, shape: None }).collect();
    Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph: Graph { nodes, inputs, outputs, initializers } }
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 257) as f32 / 257.0 * scale - 0.5).collect()
}

/// x [4, 8] → Gemm → Relu → y [4, 16].
fn first_model() -> Model {
    let init = HashMap::from([("w".to_string(), Tensor::f32(vec![8, 16], ramp(128, 1.0)).unwrap()), ("b".to_string(), Tensor::f32(vec![16], ramp(16, 0.2)).unwrap())]);
    model(vec![node("Gemm", &["x", "w", "b"], &["h"], vec![]), node("Relu", &["h"], &["y"], vec![])], &[("x", &[4, 8])], &["y"], init)
}

/// y [4, 16] → MatMul → Softmax → z [4, 8].
fn second_model() -> Model {
    let init = HashMap::from([("v".to_string(), Tensor::f32(vec![16, 8], ramp(128, 0.7)).unwrap())]);
    model(vec![node("MatMul", &["y", "v"], &["m"], vec![]), node("Softmax", &["m"], &["z"], vec![])], &[("y", &[4, 16])], &["z"], init)
}

/// The caller's device: opened here, then shared with the provider.
fn caller_device() -> (wgpu::Device, wgpu::Queue, WebGpuProvider) {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).unwrap_or_else(|e| panic!("the WebGPU tests need a GPU adapter: {e}"));
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).unwrap();
    let provider = WebGpuProvider::with_device(&adapter, device.clone(), queue.clone()).unwrap();
    (device, queue, provider)
}

fn buffer(device: &wgpu::Device, bytes: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor { label: Some("caller"), size: bytes, usage, mapped_at_creation: false })
}

fn storage(device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
    buffer(device, bytes, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST)
}

/// The caller reads its buffer back with its own copy and mapping.
fn read(device: &wgpu::Device, queue: &wgpu::Queue, from: &wgpu::Buffer, offset: u64, count: usize) -> Vec<f32> {
    let bytes = 4 * count as u64;
    let staging = buffer(device, bytes, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    encoder.copy_buffer_to_buffer(from, offset, &staging, 0, bytes);
    queue.submit([encoder.finish()]);
    let (sender, receiver) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |result| sender.send(result).unwrap());
    loop {
        if let Ok(result) = receiver.try_recv() {
            result.unwrap();
            break;
        }
        device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    }
    let values = staging.get_mapped_range(..).unwrap().chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect();
    staging.unmap();
    values
}

/// The caller's compute pass writes x[i] = sin(i / 3) into `target`.
fn write_with_a_compute_pass(device: &wgpu::Device, queue: &wgpu::Queue, target: &wgpu::Buffer, count: u32) {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: None,
        source: wgpu::ShaderSource::Wgsl("@group(0) @binding(0) var<storage, read_write> x: array<f32>;\n@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) id: vec3<u32>) { if (id.x < arrayLength(&x)) { x[id.x] = sin(f32(id.x) / 3.0); } }".into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: None, layout: None, module: &module, entry_point: Some("main"), compilation_options: Default::default(), cache: None });
    let group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.get_bind_group_layout(0), entries: &[wgpu::BindGroupEntry { binding: 0, resource: target.as_entire_binding() }] });
    let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(count.div_ceil(64), 1, 1);
    }
    queue.submit([encoder.finish()]);
}

fn cpu_run(model: Model, name: &str, input: Tensor) -> Tensor {
    let session = SessionBuilder::new().with_intra_op_threads(1).commit(model).unwrap();
    session.run(vec![(name.into(), input)]).unwrap().remove(0).1
}

fn gpu_session(provider: &WebGpuProvider, model: Model) -> Session {
    SessionBuilder::new().with_intra_op_threads(1).with_provider(Box::new(provider.clone())).commit(model).unwrap()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-6 + 1e-4 * w.abs(), "{what}: element {i}: {g}, expected {w}");
    }
}

#[test]
fn a_callers_buffers_are_read_and_written_on_the_gpu() {
    let (device, queue, gpu) = caller_device();
    let session = gpu_session(&gpu, first_model());
    // The input sits 256 bytes into the caller's buffer, the output 512.
    let x_buffer = storage(&device, 256 + 4 * 32);
    let y_buffer = storage(&device, 512 + 4 * 64);
    let mut binding = IoBinding::new();
    binding.bind_input_on_device("x", gpu.wrap_buffer(&x_buffer, 256, &[4, 8]).unwrap());
    binding.bind_output_on_device("y", gpu.wrap_buffer(&y_buffer, 512, &[4, 16]).unwrap());
    let before = gpu.counters();
    for _ in 0..3 {
        write_with_a_compute_pass(&device, &queue, &x_buffer, 256 / 4 + 32);
        let stats = session.run_with_binding(&mut binding).unwrap();
        assert_eq!(stats.device_transfers, 0, "no host copy by the session");
    }
    let after = gpu.counters();
    assert_eq!((after.host_uploads, after.host_downloads), (before.host_uploads, before.host_downloads), "no host transfer by the provider");
    assert_eq!(binding.output_on_device("y").unwrap().shape(), [4, 16]);
    let x: Vec<f32> = (64..96).map(|i| (i as f32 / 3.0).sin()).collect();
    let want = cpu_run(first_model(), "x", Tensor::f32(vec![4, 8], x).unwrap());
    assert_close("y read by the caller's copy", &read(&device, &queue, &y_buffer, 512, 64), want.as_f32().unwrap());
    assert!(binding.output("y").is_none(), "the output is not also handed back on the host");
}

#[test]
fn two_sessions_chain_on_the_gpu_without_host_transfers() {
    let (device, queue, gpu) = caller_device();
    let first = gpu_session(&gpu, first_model());
    let second = gpu_session(&gpu, second_model());
    let mut a = IoBinding::new();
    a.keep_output_on_device("y", gpu.device());
    let mut b = IoBinding::new();
    b.keep_output_on_device("z", gpu.device());
    let mut counters = Vec::new();
    for run in 0..3 {
        let x = Tensor::f32(vec![4, 8], ramp(32, 1.0 + run as f32)).unwrap();
        a.bind_input("x", x.clone());
        let stats = first.run_with_binding(&mut a).unwrap();
        assert_eq!(stats.device_transfers, 0);
        // The first run allocated y's buffer; later runs write the same one.
        b.bind_input_on_device("y", a.output_on_device("y").unwrap().clone());
        let stats = second.run_with_binding(&mut b).unwrap();
        assert_eq!(stats.device_transfers, 0);
        counters.push(gpu.counters());
        let z = b.output_on_device("z").unwrap();
        let slice = WebGpuProvider::buffer_of(z).unwrap();
        let want = cpu_run(second_model(), "y", cpu_run(first_model(), "x", x));
        assert_close(&format!("run {run}: z"), &read(&device, &queue, slice.buffer, slice.offset, 32), want.as_f32().unwrap());
        assert_close(&format!("run {run}: z downloaded"), pollster::block_on(z.to_host()).unwrap().as_f32().unwrap(), want.as_f32().unwrap());
    }
    for pair in counters.windows(2) {
        // Each pair of runs writes x from the host once and reads nothing back.
        assert_eq!(pair[1].host_uploads - pair[0].host_uploads, 1);
        assert_eq!(pair[1].host_downloads - pair[0].host_downloads, 0);
    }
    // Steady state: besides the test's own downloads (one staging buffer
    // each), nothing new on the GPU.
    assert_eq!(counters[2].gpu_buffer_allocations - counters[1].gpu_buffer_allocations, 1);
}

#[test]
fn a_cpu_step_reading_a_gpu_input_gets_a_host_copy() {
    let (device, queue, gpu) = caller_device();
    // LRN has no GPU kernel: it reads x on the host; Relu reads it on the GPU.
    let nodes = vec![node("Relu", &["x"], &["r"], vec![]), node("LRN", &["x"], &["l"], vec![("size", Attribute::Int(3))]), node("Add", &["r", "l"], &["y"], vec![])];
    let build = || model(nodes.clone(), &[("x", &[1, 4, 2, 2])], &["y"], HashMap::new());
    let session = gpu_session(&gpu, build());
    let x_buffer = storage(&device, 64);
    write_with_a_compute_pass(&device, &queue, &x_buffer, 16);
    let mut binding = IoBinding::new();
    binding.bind_input_on_device("x", gpu.wrap_buffer(&x_buffer, 0, &[1, 4, 2, 2]).unwrap());
    let stats = session.run_with_binding(&mut binding).unwrap();
    assert_eq!(stats.device_transfers, 1, "x copied to the host once, for LRN");
    let x: Vec<f32> = (0..16).map(|i| (i as f32 / 3.0).sin()).collect();
    let want = cpu_run(build(), "x", Tensor::f32(vec![1, 4, 2, 2], x).unwrap());
    assert_close("y", binding.output("y").unwrap().as_f32().unwrap(), want.as_f32().unwrap());
    // An output bound on the GPU but computed on the host is uploaded.
    let cpu_only = model(vec![node("LRN", &["x"], &["y"], vec![("size", Attribute::Int(3))])], &[("x", &[1, 4, 2, 2])], &["y"], HashMap::new());
    let session = gpu_session(&gpu, cpu_only);
    binding.keep_output_on_device("y", gpu.device());
    let stats = session.run_with_binding(&mut binding).unwrap();
    assert_eq!(stats.device_transfers, 2, "x down, y up");
    assert!(binding.output("y").is_none());
    assert_eq!(binding.output_on_device("y").unwrap().shape(), [1, 4, 2, 2]);
}

#[test]
fn misuse_fails_with_errors_that_say_where() {
    let (device, _queue, gpu) = caller_device();
    let no_copy = buffer(&device, 128, wgpu::BufferUsages::STORAGE);
    let error = gpu.wrap_buffer(&no_copy, 0, &[4, 8]).unwrap_err().to_string();
    assert!(error.contains("COPY_SRC | COPY_DST"), "{error}");
    let small = storage(&device, 64);
    let error = gpu.wrap_buffer(&small, 0, &[4, 8]).unwrap_err().to_string();
    assert!(error.contains("past the buffer's 64 bytes"), "{error}");
    let error = gpu.wrap_buffer(&storage(&device, 256), 2, &[4]).unwrap_err().to_string();
    assert!(error.contains("multiples of 4"), "{error}");

    let session = gpu_session(&gpu, first_model());
    let mut binding = IoBinding::new();
    binding.bind_input_on_device("x", gpu.wrap_buffer(&storage(&device, 64), 0, &[2, 8]).unwrap());
    let error = session.run_with_binding(&mut binding).unwrap_err();
    assert!(matches!(&error, RunError::InputShape { name, .. } if name == "x"), "{error}");
    binding.bind_input_on_device("x", gpu.wrap_buffer(&storage(&device, 128), 0, &[4, 8]).unwrap());
    binding.bind_output_on_device("y", gpu.wrap_buffer(&small, 0, &[16]).unwrap());
    let error = session.run_with_binding(&mut binding).unwrap_err().to_string();
    assert!(error.contains("\"y\"") && error.contains("holds 64"), "{error}");
    // A buffer of another device is refused, not read.
    let (_, _, other) = caller_device();
    let foreign = other.wrap_buffer(&other.context().device().create_buffer(&wgpu::BufferDescriptor { label: None, size: 128, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false }), 0, &[4, 8]).unwrap();
    binding.bind_input_on_device("x", foreign);
    binding.keep_output_on_device("y", gpu.device());
    let error = session.run_with_binding(&mut binding).unwrap_err().to_string();
    assert!(error.contains("another provider"), "{error}");
    // The session still runs afterwards.
    binding.bind_input("x", Tensor::f32(vec![4, 8], ramp(32, 1.0)).unwrap());
    session.run_with_binding(&mut binding).unwrap();
}

#[test]
fn a_gpu_input_handed_straight_back_reaches_the_host() {
    let (device, queue, gpu) = caller_device();
    // Graph output "x" is the input itself; Relu reads it on the GPU.
    let passthrough = model(vec![node("Relu", &["x"], &["r"], vec![])], &[("x", &[2, 8])], &["r", "x"], HashMap::new());
    let session = gpu_session(&gpu, passthrough);
    let x_buffer = storage(&device, 64);
    write_with_a_compute_pass(&device, &queue, &x_buffer, 16);
    let mut binding = IoBinding::new();
    binding.bind_input_on_device("x", gpu.wrap_buffer(&x_buffer, 0, &[2, 8]).unwrap());
    let stats = session.run_with_binding(&mut binding).unwrap();
    assert_eq!(stats.device_transfers, 1, "x read back once, for the host output");
    let want: Vec<f32> = (0..16).map(|i| (i as f32 / 3.0).sin()).collect();
    assert_close("x", binding.output("x").unwrap().as_f32().unwrap(), &want);
    assert_close("r", binding.output("r").unwrap().as_f32().unwrap(), &want.iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
}

#[test]
fn a_failed_run_leaves_device_outputs_bound_once() {
    let (_, _, gpu) = caller_device();
    // Gather's indices are out of range for the second run: it fails after
    // the GPU step that writes y, whose binding must stay a device one.
    let nodes = vec![node("Relu", &["x"], &["y"], vec![]), node("Gather", &["x", "i"], &["g"], vec![])];
    let mut built = model(nodes, &[("x", &[4, 8])], &["y", "g"], HashMap::new());
    built.graph.inputs.push(ValueInfo { name: "i".into(), dtype: Some(DataType::I64), shape: Some(vec![Dim::Known(1)]) });
    let session = gpu_session(&gpu, built);
    let mut binding = IoBinding::new();
    binding.bind_input("x", Tensor::f32(vec![4, 8], ramp(32, 1.0)).unwrap());
    binding.bind_input("i", Tensor::i64(vec![1], vec![1]).unwrap());
    binding.keep_output_on_device("y", gpu.device());
    binding.keep_output_on_device("g", gpu.device());
    session.run_with_binding(&mut binding).unwrap();
    binding.bind_input("i", Tensor::i64(vec![1], vec![99]).unwrap());
    assert!(session.run_with_binding(&mut binding).is_err());
    assert!(binding.output("y").is_none() && binding.output("g").is_none(), "no host copy of a device-bound output");
    assert!(binding.output_on_device("y").is_some());
    // A run handle cannot wait for the GPU: refused, not a panic.
    let cpu_session = std::sync::Arc::new(SessionBuilder::new().commit(model(vec![node("Relu", &["x"], &["y"], vec![])], &[("x", &[4, 8])], &["y"], HashMap::new())).unwrap());
    let mut host = IoBinding::new();
    host.bind_input("x", Tensor::f32(vec![4, 8], ramp(32, 1.0)).unwrap());
    let mut handle = cpu_session.run_handle(host).unwrap();
    handle.binding_mut().keep_output_on_device("y", gpu.device());
    let error = handle.run().unwrap_err().to_string();
    assert!(error.contains("\"y\"") && error.contains("caller's thread"), "{error}");
}
