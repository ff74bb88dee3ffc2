//! Session behaviour beyond single runs: IO binding, the memory plan across
//! runs and shapes, runs from several threads, and failed runs.

use byob_tensor::model::{Attribute, Graph, Model, Node, ValueInfo};
use byob_tensor::{DataType, Dim, IoBinding, RunError, Session, SessionBuilder, Tensor};
use std::collections::HashMap;

fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<(&str, Attribute)>) -> Node {
    Node {
        name: format!("{op}:{output}"),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
        attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

fn input(name: &str, dims: &[Dim]) -> ValueInfo {
    ValueInfo { name: name.into(), dtype: Some(DataType::F32), shape: Some(dims.to_vec()) }
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 257) as f32 / 257.0 * scale - 0.5).collect()
}

/// A two-layer network with a residual Add: x [N, 8] → Gemm → Relu → Gemm
/// → Add(x) → Softmax; N is symbolic, so several shapes can run.
fn residual_mlp_model() -> Model {
    let mut initializers = HashMap::new();
    initializers.insert("w1".to_string(), Tensor::f32(vec![8, 16], ramp(128, 1.0)).unwrap());
    initializers.insert("b1".to_string(), Tensor::f32(vec![16], ramp(16, 0.1)).unwrap());
    initializers.insert("w2".to_string(), Tensor::f32(vec![16, 8], ramp(128, 0.5)).unwrap());
    let graph = Graph {
        nodes: vec![
            node("Gemm", &["x", "w1", "b1"], "h", vec![]),
            node("Relu", &["h"], "r", vec![]),
            node("MatMul", &["r", "w2"], "m", vec![]),
            node("Add", &["m", "x"], "s", vec![]),
            node("Softmax", &["s"], "y", vec![("axis", Attribute::Int(1))]),
        ],
        inputs: vec![input("x", &[Dim::Symbolic("N".into()), Dim::Known(8)])],
        outputs: vec![ValueInfo { name: "y".into(), dtype: Some(DataType::F32), shape: None }],
        initializers,
    };
    Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph }
}

fn residual_mlp() -> Session {
    SessionBuilder::new().with_intra_op_threads(2).commit(residual_mlp_model()).unwrap()
}

fn x(n: usize, scale: f32) -> Tensor {
    Tensor::f32(vec![n, 8], ramp(n * 8, scale)).unwrap()
}

#[test]
fn profiling_times_every_step() {
    let model = residual_mlp_model();
    let plain = SessionBuilder::new().commit(model.clone()).unwrap();
    assert!(plain.run_with_stats(vec![("x".into(), x(2, 1.0))]).unwrap().1.steps.is_empty());
    let profiled = SessionBuilder::new().with_profiling(true).commit(model).unwrap();
    let (_, stats) = profiled.run_with_stats(vec![("x".into(), x(2, 1.0))]).unwrap();
    let placed: Vec<String> = profiled.placements().iter().map(|p| p.op_type.clone()).collect();
    let timed: Vec<String> = stats.steps.iter().map(|s| s.op.clone()).collect();
    assert_eq!(timed, placed);
    assert!(stats.steps.iter().all(|s| s.seconds >= 0.0 && !s.node.is_empty()), "{stats:?}");
}

#[test]
fn binding_reuses_buffers_per_shape_set() {
    let session = residual_mlp();
    let mut binding = IoBinding::new();
    binding.bind_input("x", x(4, 1.0));
    let first = session.run_with_binding(&mut binding).unwrap();
    assert!(first.tensor_allocations > 0, "the first run lays out the plan: {first:?}");
    let expected = session.run(vec![("x".into(), x(4, 1.0))]).unwrap().remove(0).1;
    assert_eq!(binding.output("y"), Some(&expected));
    // Same shapes, new values written in place: nothing allocated.
    binding.input_mut("x").unwrap().as_f32_mut().unwrap().copy_from_slice(&ramp(32, 2.0));
    let second = session.run_with_binding(&mut binding).unwrap();
    assert_eq!(second.tensor_allocations, 0, "{second:?}");
    assert_eq!(binding.output("y"), Some(&session.run(vec![("x".into(), x(4, 2.0))]).unwrap().remove(0).1));
    // A new batch size gets a plan of its own; going back reuses the first.
    binding.bind_input("x", x(9, 1.0));
    session.run_with_binding(&mut binding).unwrap();
    assert_eq!(binding.output("y").unwrap().shape(), &[9, 8]);
    binding.bind_input("x", x(4, 1.0));
    session.run_with_binding(&mut binding).unwrap();
    assert_eq!(binding.output("y"), Some(&expected));
}

#[test]
fn bound_output_is_written_in_place() {
    let session = residual_mlp();
    let mut binding = IoBinding::new();
    binding.bind_input("x", x(3, 1.0));
    binding.bind_output("y", Tensor::f32(vec![3, 8], vec![0.0; 24]).unwrap());
    let storage = binding.output("y").unwrap().storage();
    session.run_with_binding(&mut binding).unwrap();
    assert_eq!(binding.output("y").unwrap().storage(), storage, "the caller's buffer holds the result");
    assert_eq!(binding.output("y"), Some(&session.run(vec![("x".into(), x(3, 1.0))]).unwrap().remove(0).1));
    // A buffer too small for the result is replaced, and the run says so.
    binding.bind_output("y", Tensor::f32(vec![1], vec![0.0]).unwrap());
    let stats = session.run_with_binding(&mut binding).unwrap();
    assert_eq!(binding.output("y").unwrap().shape(), &[3, 8]);
    assert!(stats.tensor_allocations >= 1);
}

#[test]
fn concurrent_runs_match_serial_runs() {
    let session = residual_mlp();
    let cases: Vec<(usize, f32)> = (0..8).map(|i| (1 + i % 3 * 5, 0.5 + i as f32)).collect();
    let serial: Vec<Tensor> = cases.iter().map(|&(n, s)| session.run(vec![("x".into(), x(n, s))]).unwrap().remove(0).1).collect();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (session, cases, serial) = (&session, &cases, &serial);
            scope.spawn(move || {
                let mut binding = IoBinding::new();
                for round in 0..20 {
                    let k = (t + round) % cases.len();
                    binding.bind_input("x", x(cases[k].0, cases[k].1));
                    session.run_with_binding(&mut binding).unwrap();
                    assert_eq!(binding.output("y"), Some(&serial[k]), "thread {t} round {round}");
                }
            });
        }
    });
}

#[test]
fn failed_runs_leave_the_session_and_binding_usable() {
    let session = residual_mlp();
    let mut binding = IoBinding::new();
    binding.bind_input("x", Tensor::f32(vec![2, 5], vec![0.0; 10]).unwrap());
    let err = session.run_with_binding(&mut binding).unwrap_err();
    assert!(matches!(err, RunError::InputShape { .. }), "{err}");
    assert!(err.to_string().contains("\"x\"") && err.to_string().contains("[N, 8]"), "{err}");
    binding.bind_input("x", x(2, 1.0));
    binding.bind_output("z", Tensor::default());
    let err = session.run_with_binding(&mut binding).unwrap_err();
    assert!(matches!(err, RunError::UnknownOutput { .. }), "{err}");
    binding.take_output("z");
    session.run_with_binding(&mut binding).unwrap();
    assert_eq!(binding.output("y").unwrap().shape(), &[2, 8]);
}

#[test]
fn a_shape_mismatch_inside_the_graph_fails_the_run_not_the_session() {
    // a [N] + b [M]: fine when N = M (or one is 1), a node error otherwise.
    let graph = Graph {
        nodes: vec![node("Add", &["a", "b"], "s", vec![]), node("Relu", &["s"], "y", vec![])],
        inputs: vec![input("a", &[Dim::Symbolic("N".into())]), input("b", &[Dim::Symbolic("M".into())])],
        outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }],
        initializers: HashMap::new(),
    };
    let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
    let session = SessionBuilder::new().commit(model).unwrap();
    let v = |n: usize| Tensor::f32(vec![n], ramp(n, 1.0)).unwrap();
    let mut binding = IoBinding::new();
    binding.bind_input("a", v(3));
    binding.bind_input("b", v(4));
    let err = session.run_with_binding(&mut binding).unwrap_err();
    assert!(matches!(&err, RunError::Node { node, .. } if node == "Add:s"), "{err}");
    assert_eq!(binding.input_mut("a").unwrap().shape(), &[3], "inputs stay bound after a failed run");
    binding.bind_input("b", v(3));
    session.run_with_binding(&mut binding).unwrap();
    let y = binding.output("y").unwrap().as_f32().unwrap();
    let (a, b) = (ramp(3, 1.0), ramp(3, 1.0));
    assert_eq!(y, &a.iter().zip(&b).map(|(a, b)| (a + b).max(0.0)).collect::<Vec<_>>()[..]);
}

/// A provider that "compiles" the runs of Relu, Add and MatMul it takes into
/// a nested CPU session: it checks that the session hands a compiling
/// provider the right subgraphs (inputs, outputs, constants) and wires their
/// results back.
struct NestedSessions;

#[derive(Debug)]
struct Nested {
    session: Session,
    inputs: Vec<String>,
}

impl byob_tensor::ops::Op for Nested {
    fn infer(&self, _: &[Option<&byob_tensor::ops::Fact>]) -> Result<Vec<byob_tensor::ops::Fact>, byob_tensor::ops::OpError> {
        Ok(vec![])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), byob_tensor::ops::OpError> {
        let feeds = self.inputs.iter().zip(inputs).map(|(n, t)| (n.clone(), t.unwrap().clone())).collect();
        let results = self.session.run(feeds).map_err(|e| byob_tensor::ops::OpError::Shape(e.to_string()))?;
        for (out, (_, t)) in outputs.iter_mut().zip(results) {
            *out = t;
        }
        Ok(())
    }
}

impl byob_tensor::ExecutionProvider for NestedSessions {
    fn name(&self) -> &'static str {
        "nested"
    }

    fn supports(&self, node: &Node, _: i64, _: &[Option<&byob_tensor::ops::Fact>]) -> bool {
        matches!(node.op_type.as_str(), "Relu" | "Add" | "MatMul")
    }

    fn create_kernel(&self, node: &Node, opset: i64) -> Result<Box<dyn byob_tensor::ops::Op>, byob_tensor::ops::OpError> {
        Err(byob_tensor::ops::OpError::Unsupported { op: node.op_type.clone(), opset })
    }

    fn compiles_subgraphs(&self) -> bool {
        true
    }

    fn compile(&self, subgraph: byob_tensor::provider::Subgraph, opset: i64) -> Result<Box<dyn byob_tensor::ops::Op>, byob_tensor::ops::OpError> {
        let inputs = subgraph.inputs.iter().zip(&subgraph.input_facts).map(|(n, f)| ValueInfo { name: n.clone(), dtype: f.as_ref().map(|f| f.dtype), shape: None }).collect();
        let outputs = subgraph.outputs.iter().map(|n| ValueInfo { name: n.clone(), dtype: None, shape: None }).collect();
        let graph = Graph { nodes: subgraph.nodes, inputs, outputs, initializers: subgraph.constants };
        let model = Model { ir_version: 8, producer: "nested".into(), opsets: HashMap::from([(String::new(), opset)]), graph };
        let session = SessionBuilder::new().with_intra_op_threads(1).commit(model).map_err(|e| byob_tensor::ops::OpError::Shape(e.to_string()))?;
        Ok(Box::new(Nested { session, inputs: subgraph.inputs }))
    }
}

#[test]
fn compiling_providers_get_runs_of_nodes() {
    let model = || {
        let mut m = residual_mlp_model();
        // Gemm (cpu, its weights packed) → Relu, MatMul, Add (one compiled
        // run) → Softmax (cpu).
        m.graph.outputs.push(ValueInfo { name: "r".into(), dtype: None, shape: None });
        m
    };
    let plain = SessionBuilder::new().commit(model()).unwrap();
    let mixed = SessionBuilder::new().with_provider(Box::new(NestedSessions)).commit(model()).unwrap();
    let placed: Vec<(String, &str)> = mixed.placements().iter().map(|p| (p.op_type.clone(), p.provider)).collect();
    assert_eq!(
        placed,
        [("PackedMatMul".into(), "cpu"), ("Relu".into(), "nested"), ("MatMul".into(), "nested"), ("Add".into(), "nested"), ("Softmax".into(), "cpu")]
    );
    for n in [1, 5] {
        let a = plain.run(vec![("x".into(), x(n, 1.5))]).unwrap();
        let b = mixed.run(vec![("x".into(), x(n, 1.5))]).unwrap();
        assert_eq!(a, b, "both outputs (y, and r from inside the run) match");
    }
}

#[test]
fn async_runs_are_send_futures_with_the_same_results() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let session = residual_mlp();
    let future = assert_send(session.run_async(vec![("x".into(), x(3, 1.0))]));
    let outputs = pollster::block_on(future).unwrap();
    assert_eq!(outputs, session.run(vec![("x".into(), x(3, 1.0))]).unwrap());
}

fn value(name: &str, dtype: DataType, dims: &[Dim]) -> ValueInfo {
    ValueInfo { name: name.into(), dtype: Some(dtype), shape: Some(dims.to_vec()) }
}

fn subgraph(nodes: Vec<Node>, inputs: Vec<ValueInfo>, outputs: &[&str], initializers: HashMap<String, Tensor>) -> Attribute {
    let outputs = outputs.iter().map(|o| ValueInfo { name: o.to_string(), dtype: None, shape: None }).collect();
    Attribute::Graph(Box::new(byob_tensor::Subgraph { graph: Graph { nodes, inputs, outputs, initializers }, captures: vec![] }))
}

fn model(nodes: Vec<Node>, inputs: Vec<ValueInfo>, output: &str) -> Model {
    let graph = Graph { nodes, inputs, outputs: vec![ValueInfo { name: output.into(), dtype: None, shape: None }], initializers: HashMap::new() };
    Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph }
}

/// A branch's sessions are built under the limits of the session that
/// holds them: a 4 MiB constant in a branch, which folding leaves to the
/// run under a 1 MiB tensor limit, is refused there, with the limit named.
#[test]
fn subgraphs_are_built_under_their_sessions_limits() {
    let shape = HashMap::from([("shape".to_string(), Tensor::i64(vec![1], vec![1 << 20]).unwrap())]);
    let big = subgraph(vec![node("ConstantOfShape", &["shape"], "y", vec![])], vec![], &["y"], shape);
    let small = subgraph(vec![node("ConstantOfShape", &["shape"], "y", vec![])], vec![], &["y"], HashMap::from([("shape".to_string(), Tensor::i64(vec![1], vec![1]).unwrap())]));
    let m = model(vec![node("If", &["c"], "y", vec![("then_branch", big), ("else_branch", small)])], vec![value("c", DataType::Bool, &[])], "y");
    let condition = |c: bool| vec![("c".to_string(), Tensor::new(vec![], byob_tensor::Data::Bool(vec![c])).unwrap())];
    let roomy = SessionBuilder::new().with_intra_op_threads(1).commit(m.clone()).unwrap();
    assert_eq!(roomy.run(condition(true)).unwrap()[0].1.len(), 1 << 20);
    let tight = SessionBuilder::new().with_intra_op_threads(1).with_max_tensor_bytes(1 << 20).commit(m).unwrap();
    assert_eq!(tight.run(condition(false)).unwrap()[0].1.len(), 1);
    let err = tight.run(condition(true)).unwrap_err().to_string();
    assert!(err.contains("then_branch") && err.contains("needs 4194304 bytes, more than the 1048576 a tensor may take"), "{err}");
}

/// A Loop's scan outputs gather within the run limit: 1,000 iterations of
/// 1 KiB are refused under 64 KiB, with the limit named, and 10 run.
#[test]
fn loops_gather_within_the_run_limit() {
    let row = HashMap::from([("row".to_string(), Tensor::f32(vec![256], vec![1.0; 256]).unwrap())]);
    let body_inputs = vec![value("i", DataType::I64, &[]), value("cond", DataType::Bool, &[])];
    let body = subgraph(vec![node("Identity", &["cond"], "cond_out", vec![]), node("Identity", &["row"], "scan", vec![])], body_inputs, &["cond_out", "scan"], row);
    let inputs = vec![value("M", DataType::I64, &[]), value("cond", DataType::Bool, &[])];
    let m = model(vec![node("Loop", &["M", "cond"], "rows", vec![("body", body)])], inputs, "rows");
    let session = SessionBuilder::new().with_intra_op_threads(1).with_max_run_bytes(64 << 10).commit(m).unwrap();
    let feeds = |n: i64| vec![("M".to_string(), Tensor::i64(vec![], vec![n]).unwrap()), ("cond".to_string(), Tensor::new(vec![], byob_tensor::Data::Bool(vec![true])).unwrap())];
    let err = session.run(feeds(1000)).unwrap_err().to_string();
    assert!(err.contains("scan outputs so far take") && err.contains(&format!("more than the {}", 64 << 10)), "{err}");
    let rows = session.run(feeds(10)).unwrap();
    assert_eq!(rows[0].1.shape(), &[10, 256]);
}

/// Intermediates whose sizes only the run knows count toward the run
/// limit too: two 4 MiB ConstantOfShape results of a fed shape, then
/// their sum, under 10 MiB fail at the sum; 16 MiB holds all three.
#[test]
fn intermediates_of_unknown_size_count_toward_the_run_limit() {
    let nodes = vec![node("ConstantOfShape", &["n"], "a", vec![]), node("ConstantOfShape", &["n"], "b", vec![]), node("Add", &["a", "b"], "y", vec![])];
    let m = model(nodes, vec![value("n", DataType::I64, &[Dim::Known(1)])], "y");
    let feeds = || vec![("n".to_string(), Tensor::i64(vec![1], vec![1 << 20]).unwrap())];
    let tight = SessionBuilder::new().with_intra_op_threads(1).with_max_run_bytes(10 << 20).commit(m.clone()).unwrap();
    let err = tight.run(feeds()).unwrap_err().to_string();
    assert!(err.contains("(Add): needs 4194304 bytes with 8388608 already held, more than the 10485760"), "{err}");
    let roomy = SessionBuilder::new().with_intra_op_threads(1).with_max_run_bytes(16 << 20).commit(m).unwrap();
    assert_eq!(roomy.run(feeds()).unwrap()[0].1.shape(), &[1 << 20]);
}
