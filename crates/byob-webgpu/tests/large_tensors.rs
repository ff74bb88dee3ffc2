//! Weights larger than one storage binding, on a device whose binding
//! limit is lowered to 64 KiB (the same path VGG's fully connected layers
//! take on a real device): the provider splits them into column blocks and
//! the layer runs on the GPU, matching the CPU; a weight whose single row
//! is already too large stays on the CPU.

use byob_tensor::model::{Attribute, Graph, Model, Node, ValueInfo};
use byob_tensor::{DataType, Dim, Session, SessionBuilder, Tensor};
use byob_webgpu::WebGpuProvider;
use std::collections::HashMap;

const LIMIT: u64 = 64 * 1024;

/// A provider on a device that binds at most `LIMIT` bytes at once.
fn small_binding_provider() -> WebGpuProvider {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).unwrap_or_else(|e| panic!("the WebGPU tests need a GPU adapter: {e}"));
    let limits = wgpu::Limits { max_storage_buffer_binding_size: LIMIT, ..adapter.limits() };
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor { required_limits: limits, ..Default::default() })).unwrap();
    WebGpuProvider::with_device(&adapter, device, queue).unwrap()
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 263) as f32 / 263.0 * scale - 0.5 * scale).collect()
}

fn one_layer(op: &str, x: &[usize], weight: Tensor, bias: Option<Tensor>, attributes: Vec<(&str, Attribute)>) -> Model {
    let mut inputs = vec!["x".to_string(), "w".to_string()];
    let mut initializers = HashMap::from([("w".to_string(), weight)]);
    if let Some(b) = bias {
        inputs.push("b".into());
        initializers.insert("b".into(), b);
    }
    let nodes = vec![
        Node { name: "layer".into(), op_type: op.into(), domain: String::new(), inputs, outputs: vec!["h".into()], attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect() },
        Node { name: "relu".into(), op_type: "Relu".into(), domain: String::new(), inputs: vec!["h".into()], outputs: vec!["y".into()], attributes: HashMap::new() },
    ];
    let graph = Graph {
        nodes,
        inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(x.iter().map(|&d| Dim::Known(d)).collect()) }],
        outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }],
        initializers,
    };
    Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph }
}

fn run(session: &Session, x: &Tensor) -> Tensor {
    session.run(vec![("x".into(), x.clone())]).unwrap().remove(0).1
}

/// Runs `model` on the small-binding GPU and on the CPU; returns how many
/// nodes the GPU took, and the most bytes it held.
fn check(what: &str, model: Model, x: Tensor) -> (usize, u64) {
    let gpu = small_binding_provider();
    let cpu = SessionBuilder::new().with_intra_op_threads(1).commit(model.clone()).unwrap();
    let session = SessionBuilder::new().with_intra_op_threads(1).with_provider(Box::new(gpu.clone())).commit(model).unwrap();
    let (got, want) = (run(&session, &x), run(&cpu, &x));
    assert_eq!(got.shape(), want.shape(), "{what}");
    for (i, (g, w)) in got.as_f32().unwrap().iter().zip(want.as_f32().unwrap()).enumerate() {
        assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{what}: element {i}: {g} on the GPU, {w} on the CPU");
    }
    (session.placements().iter().filter(|p| p.provider == "webgpu").count(), gpu.counters().peak_bytes)
}

#[test]
fn gemm_weights_past_the_binding_limit_run_split() {
    // 512×256 floats (512 KiB, eight times the limit), stored transposed as
    // PyTorch exports a Linear layer, with a bias per output.
    let w = Tensor::f32(vec![512, 256], ramp(512 * 256, 0.1)).unwrap();
    let b = Tensor::f32(vec![512], ramp(512, 1.0)).unwrap();
    let model = one_layer("Gemm", &[4, 256], w, Some(b), vec![("transB", Attribute::Int(1)), ("alpha", Attribute::Float(0.5))]);
    let (on_gpu, peak) = check("Gemm transB", model, Tensor::f32(vec![4, 256], ramp(1024, 2.0)).unwrap());
    assert_eq!(on_gpu, 2);
    // The blocks replace the whole weight on the GPU; it is not uploaded too.
    assert!(peak < 512 * 256 * 4 * 3 / 2, "{peak} bytes held for a 512 KiB weight");
    // Not transposed, with a bias broadcast over the columns.
    let w = Tensor::f32(vec![200, 300], ramp(60_000, 0.1)).unwrap();
    let b = Tensor::f32(vec![3, 1], vec![0.5, -0.5, 1.0]).unwrap();
    let model = one_layer("Gemm", &[3, 200], w, Some(b), vec![("beta", Attribute::Float(2.0))]);
    assert_eq!(check("Gemm", model, Tensor::f32(vec![3, 200], ramp(600, 2.0)).unwrap()).0, 2);
}

#[test]
fn batched_matmul_weights_past_the_binding_limit_run_split() {
    let w = Tensor::f32(vec![256, 300], ramp(256 * 300, 0.1)).unwrap();
    let model = one_layer("MatMul", &[2, 3, 256], w, None, vec![]);
    assert_eq!(check("MatMul", model, Tensor::f32(vec![2, 3, 256], ramp(1536, 2.0)).unwrap()).0, 2);
}

#[test]
fn a_weight_whose_rows_do_not_fit_stays_on_the_cpu() {
    // One column of 20,000 floats is 80 KB, past the limit by itself.
    let w = Tensor::f32(vec![20_000, 2], ramp(40_000, 0.01)).unwrap();
    let model = one_layer("MatMul", &[1, 20_000], w, None, vec![]);
    assert_eq!(check("MatMul", model, Tensor::f32(vec![1, 20_000], ramp(20_000, 1.0)).unwrap()).0, 1, "only Relu on the GPU");
}
