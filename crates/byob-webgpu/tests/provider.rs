//! The WebGPU provider in a session: placement and CPU fallback decided at
//! session creation, results against the CPU provider across subgraph
//! boundaries, steady-state runs that create no GPU buffer, concurrent and
//! async runs, and run errors that leave the session usable.

use byob_tensor::model::{Attribute, Graph, Model, Node, ValueInfo};
use byob_tensor::{DataType, Dim, IoBinding, RunError, Session, SessionBuilder, Tensor};
use byob_webgpu::WebGpuProvider;
use std::collections::HashMap;
use std::future::Future;

mod common;
use common::graph_node as node;

/// A provider on a device of its own, so that other tests running at the
/// same time do not move its device-wide buffer count.
fn provider() -> WebGpuProvider {
    WebGpuProvider::new().unwrap_or_else(|e| panic!("the WebGPU tests need a GPU adapter: {e}"))
}

fn value(name: &str, dtype: DataType, dims: &[Dim]) -> ValueInfo {
    ValueInfo { name: name.into(), dtype: Some(dtype), shape: Some(dims.to_vec()) }
}

fn output(name: &str) -> ValueInfo {
    ValueInfo { name: name.into(), dtype: None, shape: None }
}

fn model(nodes: Vec<Node>, inputs: Vec<ValueInfo>, outputs: Vec<ValueInfo>, initializers: HashMap<String, Tensor>) -> Model {
    Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph: Graph { nodes, inputs, outputs, initializers } }
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 257) as f32 / 257.0 * scale - 0.5).collect()
}

/// x [N, 8] → Gemm → Relu (r, also an output) → MatMul → Add(x) → Reshape
/// to [N, 2, 2, 2] → LRN (CPU only) → Flatten → Softmax → y: two GPU
/// subgraphs around a CPU node, a view op, and an output read inside.
fn split_mlp() -> Model {
    let mut init = HashMap::new();
    init.insert("w1".to_string(), Tensor::f32(vec![8, 16], ramp(128, 1.0)).unwrap());
    init.insert("b1".to_string(), Tensor::f32(vec![16], ramp(16, 0.1)).unwrap());
    init.insert("w2".to_string(), Tensor::f32(vec![16, 8], ramp(128, 0.5)).unwrap());
    init.insert("shape".to_string(), Tensor::i64(vec![4], vec![-1, 2, 2, 2]).unwrap());
    let nodes = vec![
        node("Gemm", &["x", "w1", "b1"], &["h"], vec![]),
        node("Relu", &["h"], &["r"], vec![]),
        node("MatMul", &["r", "w2"], &["m"], vec![]),
        node("Add", &["m", "x"], &["s"], vec![]),
        node("Reshape", &["s", "shape"], &["v"], vec![]),
        node("LRN", &["v"], &["l"], vec![("size", Attribute::Int(3))]),
        node("Flatten", &["l"], &["f"], vec![]),
        node("Softmax", &["f"], &["y"], vec![("axis", Attribute::Int(1))]),
    ];
    model(nodes, vec![value("x", DataType::F32, &[Dim::Symbolic("N".into()), Dim::Known(8)])], vec![output("y"), output("r")], init)
}

fn x(n: usize, scale: f32) -> Tensor {
    Tensor::f32(vec![n, 8], ramp(n * 8, scale)).unwrap()
}

fn gpu_session(provider: &WebGpuProvider, model: Model) -> Session {
    SessionBuilder::new().with_intra_op_threads(1).with_provider(Box::new(provider.clone())).commit(model).unwrap()
}

/// Within 1e-4 relative, 1e-6 absolute.
fn assert_close(what: &str, gpu: &Tensor, cpu: &Tensor) {
    assert_eq!(gpu.shape(), cpu.shape(), "{what}: shape");
    for (i, (g, c)) in gpu.as_f32().unwrap().iter().zip(cpu.as_f32().unwrap()).enumerate() {
        assert!((g - c).abs() <= 1e-6 + 1e-4 * c.abs(), "{what}: element {i}: {g} on webgpu, {c} on cpu");
    }
}

#[test]
fn subgraphs_around_a_cpu_node_match_the_cpu() {
    let gpu = gpu_session(&provider(), split_mlp());
    let placed: Vec<(String, &str)> = gpu.placements().iter().map(|p| (p.op_type.clone(), p.provider)).collect();
    let expected: Vec<(String, &str)> =
        [("Gemm", "webgpu"), ("Relu", "webgpu"), ("MatMul", "webgpu"), ("Add", "webgpu"), ("Reshape", "webgpu"), ("LRN", "cpu"), ("Flatten", "webgpu"), ("Softmax", "webgpu")].iter().map(|&(o, p)| (o.to_string(), p)).collect();
    assert_eq!(placed, expected);
    let cpu = SessionBuilder::new().with_intra_op_threads(1).commit(split_mlp()).unwrap();
    for n in [1, 3, 7] {
        let (g, c) = (gpu.run(vec![("x".into(), x(n, 1.5))]).unwrap(), cpu.run(vec![("x".into(), x(n, 1.5))]).unwrap());
        for ((name, g), (_, c)) in g.iter().zip(&c) {
            assert_close(&format!("N = {n}, {name}"), g, c);
        }
    }
}

#[test]
fn steady_state_runs_create_no_gpu_buffers_and_no_host_tensors() {
    let gpu = provider();
    let session = gpu_session(&gpu, split_mlp());
    let mut binding = IoBinding::new();
    binding.bind_input("x", x(4, 1.0));
    session.run_with_binding(&mut binding).unwrap();
    let first = gpu.counters();
    assert!(first.last_run_buffer_allocations > 0 && first.runs == 2, "the first run builds both executables: {first:?}");
    let expected = binding.output("y").unwrap().clone();
    for round in 0..3 {
        binding.input_mut("x").unwrap().as_f32_mut().unwrap().copy_from_slice(&ramp(32, 1.0));
        let stats = session.run_with_binding(&mut binding).unwrap();
        let now = gpu.counters();
        assert_eq!(now.gpu_buffer_allocations, first.gpu_buffer_allocations, "round {round}: {now:?}");
        assert_eq!(now.last_run_buffer_allocations, 0, "round {round}");
        assert_eq!(stats.tensor_allocations, 0, "round {round}: {stats:?}");
        assert_eq!(binding.output("y"), Some(&expected), "round {round}");
    }
    // A new batch size builds new executables; going back allocates nothing.
    binding.bind_input("x", x(9, 1.0));
    session.run_with_binding(&mut binding).unwrap();
    let grown = gpu.counters();
    assert!(grown.gpu_buffer_allocations > first.gpu_buffer_allocations);
    binding.bind_input("x", x(4, 1.0));
    session.run_with_binding(&mut binding).unwrap();
    assert_eq!(gpu.counters().gpu_buffer_allocations, grown.gpu_buffer_allocations);
    assert_eq!(binding.output("y"), Some(&expected));
    let c = gpu.counters();
    assert!(c.lower_bound_bytes > 0 && c.lower_bound_bytes <= c.planned_bytes && c.planned_bytes <= c.peak_bytes, "{c:?}");
    assert!(c.pipelines_compiled > 0 && c.runs == 2 * 6, "{c:?}");
}

#[test]
fn concurrent_runs_match_serial_runs() {
    let session = gpu_session(&provider(), split_mlp());
    let cases: Vec<(usize, f32)> = (0..8).map(|i| (1 + i % 3 * 5, 0.5 + i as f32)).collect();
    let serial: Vec<Vec<(String, Tensor)>> = cases.iter().map(|&(n, s)| session.run(vec![("x".into(), x(n, s))]).unwrap()).collect();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (session, cases, serial) = (&session, &cases, &serial);
            scope.spawn(move || {
                for round in 0..10 {
                    let k = (t + round) % cases.len();
                    let outputs = session.run(vec![("x".into(), x(cases[k].0, cases[k].1))]).unwrap();
                    assert_eq!(outputs, serial[k], "thread {t} round {round}");
                }
            });
        }
    });
}

#[test]
fn async_runs_are_send_futures_with_the_same_results() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let session = gpu_session(&provider(), split_mlp());
    let future = assert_send(session.run_async(vec![("x".into(), x(3, 1.0))]));
    let outputs = pollster::block_on(future).unwrap();
    assert_eq!(outputs, session.run(vec![("x".into(), x(3, 1.0))]).unwrap());
}

#[test]
fn what_the_gpu_kernels_lack_stays_on_the_cpu() {
    let gpu = provider();
    let f32_input = |name: &str, dims: &[usize]| value(name, DataType::F32, &dims.iter().map(|&d| Dim::Known(d)).collect::<Vec<_>>());
    let cases: Vec<(&str, Model)> = vec![
        (
            "MaxPool with Indices",
            model(
                vec![node("MaxPool", &["x"], &["y", "i"], vec![("kernel_shape", Attribute::Ints(vec![2, 2]))])],
                vec![f32_input("x", &[1, 1, 4, 4])],
                vec![output("y"), output("i")],
                HashMap::new(),
            ),
        ),
        (
            "3-D Conv",
            model(
                vec![node("Conv", &["x", "w"], &["y"], vec![])],
                vec![f32_input("x", &[1, 1, 4, 4, 4])],
                vec![output("y")],
                HashMap::from([("w".to_string(), Tensor::f32(vec![1, 1, 2, 2, 2], vec![0.5; 8]).unwrap())]),
            ),
        ),
        (
            "Reshape to a runtime shape",
            model(
                vec![node("Reshape", &["x", "shape"], &["y"], vec![])],
                vec![f32_input("x", &[2, 3]), value("shape", DataType::I64, &[Dim::Known(2)])],
                vec![output("y")],
                HashMap::new(),
            ),
        ),
        (
            "Resize by runtime scales, before any shape is known",
            model(
                vec![node("Resize", &["x", "", "scales"], &["y"], vec![])],
                vec![value("x", DataType::F32, &vec![Dim::Unknown; 4]), value("scales", DataType::F32, &[Dim::Known(4)])],
                vec![output("y")],
                HashMap::new(),
            ),
        ),
        (
            "int64 Add",
            model(
                vec![node("Add", &["a", "b"], &["y"], vec![])],
                vec![value("a", DataType::I64, &[Dim::Known(3)]), value("b", DataType::I64, &[Dim::Known(3)])],
                vec![output("y")],
                HashMap::new(),
            ),
        ),
    ];
    for (what, model) in cases {
        let session = SessionBuilder::new().with_provider(Box::new(gpu.clone())).commit(model).unwrap_or_else(|e| panic!("{what}: {e}"));
        let placed: Vec<&str> = session.placements().iter().map(|p| p.provider).collect();
        assert_eq!(placed, ["cpu"], "{what}");
    }
}

#[test]
fn a_shape_mismatch_fails_the_run_not_the_session() {
    // a [N] + b [M] on the GPU: fine when N = M, a node error otherwise.
    let m = model(
        vec![node("Add", &["a", "b"], &["s"], vec![]), node("Relu", &["s"], &["y"], vec![])],
        vec![value("a", DataType::F32, &[Dim::Symbolic("N".into())]), value("b", DataType::F32, &[Dim::Symbolic("M".into())])],
        vec![output("y")],
        HashMap::new(),
    );
    let session = gpu_session(&provider(), m);
    assert!(session.placements().iter().all(|p| p.provider == "webgpu"));
    let v = |n: usize| Tensor::f32(vec![n], ramp(n, 1.0)).unwrap();
    let err = session.run(vec![("a".into(), v(3)), ("b".into(), v(4))]).unwrap_err();
    assert!(matches!(&err, RunError::Node { .. }) && err.to_string().contains("Add:s"), "{err}");
    let y = session.run(vec![("a".into(), v(3)), ("b".into(), v(3))]).unwrap().remove(0).1;
    let expected: Vec<f32> = ramp(3, 1.0).iter().map(|a| (2.0 * a).max(0.0)).collect();
    assert_eq!(y.as_f32().unwrap(), &expected[..]);
}

#[test]
fn a_run_dropped_while_waiting_for_the_gpu_leaves_the_session_usable() {
    let session = gpu_session(&provider(), split_mlp());
    let expected = session.run(vec![("x".into(), x(5, 2.0))]).unwrap();
    for _ in 0..3 {
        let mut future = Box::pin(session.run_async(vec![("x".into(), x(5, 2.0))]));
        // One poll submits the first subgraph and waits for its read-back.
        let polled = future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
        drop(polled);
        drop(future);
        assert_eq!(session.run(vec![("x".into(), x(5, 2.0))]).unwrap(), expected);
    }
}
