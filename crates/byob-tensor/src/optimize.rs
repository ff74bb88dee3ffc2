//! Graph rewrites that change how a model runs but not what it computes.

use crate::model::{Attribute, Dim, Graph, Node};
use crate::ops::Fact;
use crate::ops::packed::PACKED_DOMAIN;
use crate::provider::{CpuProvider, ExecutionProvider};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Removes the nodes that pass their input through unchanged: `Identity`,
/// and `Dropout` in inference mode (no `training_mode` input, or a constant
/// false one) whose mask nobody reads. Their readers read the input
/// instead, so no step copies it. Nodes that make a graph output stay (the
/// output keeps its name). Returns how many.
pub fn remove_identities(graph: &mut Graph) -> usize {
    let readers = reader_counts(graph);
    let outputs: std::collections::HashSet<&str> = graph.outputs.iter().map(|v| v.name.as_str()).collect();
    let inference = |node: &Node| match node.inputs.get(2).filter(|t| !t.is_empty()) {
        None => true,
        Some(t) => matches!(graph.initializers.get(t).map(Tensor::data), Some(crate::tensor::Data::Bool(v)) if v[..] == [false]),
    };
    // Subgraphs read the values they capture by name: those names stay.
    let captured = captured_names(&graph.nodes);
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut removed = vec![false; graph.nodes.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        let onnx = node.domain.is_empty() || node.domain == "ai.onnx";
        let passes = match node.op_type.as_str() {
            "Identity" => node.outputs.len() == 1,
            "Dropout" => inference(node) && node.outputs[1..].iter().all(|m| m.is_empty() || !readers.contains_key(m)),
            _ => false,
        };
        let Some(x) = node.inputs.first().filter(|x| !x.is_empty()) else { continue };
        if !onnx || !passes || outputs.contains(node.outputs[0].as_str()) || captured.contains(node.outputs[0].as_str()) {
            continue;
        }
        // The input may itself be a removed node's output.
        let source = renamed.get(x).cloned().unwrap_or_else(|| x.clone());
        renamed.insert(node.outputs[0].clone(), source);
        removed[i] = true;
    }
    for node in &mut graph.nodes {
        for input in &mut node.inputs {
            if let Some(source) = renamed.get(input) {
                *input = source.clone();
            }
        }
    }
    remove_nodes(graph, &removed);
    renamed.len()
}

/// The names of the values that the subgraphs of `nodes` (If branches,
/// Loop and Scan bodies) read from enclosing graphs.
pub(crate) fn captured_names(nodes: &[Node]) -> std::collections::HashSet<&str> {
    nodes
        .iter()
        .flat_map(|n| n.attributes.values())
        .filter_map(|a| if let Attribute::Graph(sub) = a { Some(sub.captures.iter().map(String::as_str)) } else { None })
        .flatten()
        .collect()
}

/// The domain of nodes the fusion passes make (byob's own, never in a file).
pub const FUSED_DOMAIN: &str = "com.byob.fused";

/// Fuses each `Relu` into the `Conv` (or packed operator) before it when
/// nothing else reads the producer's output and `wants` accepts the fused
/// node (a [`FUSED_DOMAIN`] Conv, or the packed node, with
/// `activation = "Relu"`): the activation is then
/// applied to each block of output while it is still in cache, and one
/// pass over the activations and one step disappear. Returns how many.
pub fn fuse_conv_relu(graph: &mut Graph, wants: impl Fn(&Node, &Node) -> bool) -> usize {
    let readers = reader_counts(graph);
    let producer: HashMap<String, usize> =
        graph.nodes.iter().enumerate().filter(|(_, n)| absorbs_activation(n) && n.outputs.len() == 1).map(|(i, n)| (n.outputs[0].clone(), i)).collect();
    let mut removed = vec![false; graph.nodes.len()];
    let mut fused = 0;
    for r in 0..graph.nodes.len() {
        let relu = &graph.nodes[r];
        if relu.op_type != "Relu" || !relu.domain.is_empty() || relu.inputs.len() != 1 {
            continue;
        }
        let Some(&c) = producer.get(&relu.inputs[0]) else { continue };
        if readers.get(&relu.inputs[0]) != Some(&1) {
            continue;
        }
        let mut conv = graph.nodes[c].clone();
        if conv.domain != PACKED_DOMAIN {
            conv.domain = FUSED_DOMAIN.to_string();
        }
        conv.attributes.insert("activation".into(), Attribute::String("Relu".into()));
        conv.outputs[0] = relu.outputs[0].clone();
        // Both the producer's and the Relu's provider must run the result.
        if !wants(&graph.nodes[c], &conv) || !wants(relu, &conv) {
            continue;
        }
        graph.nodes[c] = conv;
        removed[r] = true;
        fused += 1;
    }
    remove_nodes(graph, &removed);
    fused
}

/// Whether a following Relu can be fused into `node`: ONNX's Conv (which
/// becomes a [`FUSED_DOMAIN`] Conv) and the CPU's packed operators.
fn absorbs_activation(node: &Node) -> bool {
    (node.op_type == "Conv" && node.domain.is_empty()) || node.domain == PACKED_DOMAIN
}

/// Prepares the constant weights of `Gemm` nodes for the GEMM kernel once,
/// at session creation: a `transB = 1` weight (PyTorch's [out, in]) is
/// stored transposed so that every run streams it row-major, as the
/// kernel's packing prefers. Returns how many weights were prepared.
pub fn prepack_gemm_weights(graph: &mut Graph) -> usize {
    let mut prepared = 0;
    for node in &mut graph.nodes {
        let trans_b = matches!(node.attributes.get("transB"), Some(Attribute::Int(1)));
        if node.op_type != "Gemm" || !node.domain.is_empty() || !trans_b || node.inputs.len() < 2 {
            continue;
        }
        let name = format!("{}#transposed", node.inputs[1]);
        if !graph.initializers.contains_key(&name) {
            let Some(w) = graph.initializers.get(&node.inputs[1]).filter(|w| w.rank() == 2) else { continue };
            let Some(values) = w.as_f32() else { continue };
            let (n, k) = (w.shape()[0], w.shape()[1]);
            let transposed: Vec<f32> = (0..k * n).map(|i| values[(i % n) * k + i / n]).collect();
            graph.initializers.insert(name.clone(), Tensor::f32(vec![k, n], transposed).expect("k·n values"));
        }
        node.inputs[1] = name;
        node.attributes.insert("transB".into(), Attribute::Int(0));
        prepared += 1;
    }
    drop_unread_initializers(graph);
    prepared
}

/// How many times each value is read: by nodes, once per input naming it,
/// and once more if it is a graph output.
pub(crate) fn reader_counts(graph: &Graph) -> HashMap<String, usize> {
    let mut readers: HashMap<String, usize> = HashMap::new();
    for name in graph.nodes.iter().flat_map(|n| n.inputs.iter()).chain(graph.outputs.iter().map(|v| &v.name)) {
        *readers.entry(name.clone()).or_default() += 1;
    }
    readers
}

/// Removes the nodes marked in `removed` (one flag per node, in order).
pub(crate) fn remove_nodes(graph: &mut Graph, removed: &[bool]) {
    let mut flags = removed.iter();
    graph.nodes.retain(|_| !flags.next().copied().unwrap_or(false));
}

pub(crate) fn drop_unread_initializers(graph: &mut Graph) {
    let read: std::collections::HashSet<&str> = graph.nodes.iter().flat_map(|n| n.inputs.iter()).chain(graph.outputs.iter().map(|v| &v.name)).map(String::as_str).collect();
    let unread: Vec<String> = graph.initializers.keys().filter(|k| !read.contains(k.as_str())).cloned().collect();
    for name in unread {
        graph.initializers.remove(&name);
    }
}

/// Folds every `BatchNormalization` that directly follows a `Conv` into the
/// convolution's weights and bias, when both hold constants and nothing else
/// reads the convolution's output: y = (conv(x, W) + B - mean) * s + beta with
/// s = scale / sqrt(var + eps) is conv(x, W * s) + (B - mean) * s + beta.
/// Returns how many were folded.
pub fn fold_batch_norms(graph: &mut Graph) -> usize {
    let mut readers: HashMap<String, usize> = HashMap::new();
    for node in &graph.nodes {
        for input in &node.inputs {
            *readers.entry(input.clone()).or_default() += 1;
        }
    }
    for output in &graph.outputs {
        *readers.entry(output.name.clone()).or_default() += 1;
    }
    let producer: HashMap<String, usize> =
        graph.nodes.iter().enumerate().filter(|(_, n)| n.op_type == "Conv").flat_map(|(i, n)| n.outputs.first().map(|o| (o.clone(), i))).collect();
    let mut folded = 0;
    let mut removed = vec![false; graph.nodes.len()];
    for b in 0..graph.nodes.len() {
        let bn = &graph.nodes[b];
        if bn.op_type != "BatchNormalization" || bn.outputs.len() != 1 || bn.inputs.len() != 5 {
            continue;
        }
        if matches!(bn.attributes.get("training_mode"), Some(Attribute::Int(1))) {
            continue;
        }
        let Some(&c) = producer.get(&bn.inputs[0]) else { continue };
        if readers.get(&bn.inputs[0]) != Some(&1) || removed[c] {
            continue;
        }
        let eps = match bn.attributes.get("epsilon") {
            Some(Attribute::Float(e)) => *e,
            _ => 1e-5,
        };
        let constant = |name: &str| graph.initializers.get(name).and_then(Tensor::as_f32).map(<[f32]>::to_vec);
        let conv = &graph.nodes[c];
        let (Some(w), Some(scale), Some(beta), Some(mean), Some(var)) =
            (graph.initializers.get(&conv.inputs[1]), constant(&bn.inputs[1]), constant(&bn.inputs[2]), constant(&bn.inputs[3]), constant(&bn.inputs[4]))
        else {
            continue;
        };
        let Some(weights) = w.as_f32() else { continue };
        let m = w.shape().first().copied().unwrap_or(0);
        if m == 0 || [&scale, &beta, &mean, &var].iter().any(|v| v.len() != m) {
            continue;
        }
        let bias = match conv.inputs.get(2).filter(|n| !n.is_empty()) {
            Some(name) => match constant(name) {
                Some(b) if b.len() == m => b,
                _ => continue,
            },
            None => vec![0.0; m],
        };
        let per_channel = weights.len() / m;
        let s: Vec<f32> = scale.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
        let new_w: Vec<f32> = weights.iter().enumerate().map(|(i, x)| x * s[i / per_channel]).collect();
        let new_b: Vec<f32> = (0..m).map(|k| (bias[k] - mean[k]) * s[k] + beta[k]).collect();
        let (w_name, b_name) = (format!("{}::folded_weight", conv.name), format!("{}::folded_bias", conv.name));
        let w_shape = w.shape().to_vec();
        graph.initializers.insert(w_name.clone(), Tensor::f32(w_shape, new_w).expect("same length"));
        graph.initializers.insert(b_name.clone(), Tensor::f32(vec![m], new_b).expect("m values"));
        let bn_output = graph.nodes[b].outputs[0].clone();
        let conv = &mut graph.nodes[c];
        conv.inputs.truncate(2);
        conv.inputs[1] = w_name;
        conv.inputs.push(b_name);
        conv.outputs[0] = bn_output;
        removed[b] = true;
        folded += 1;
    }
    remove_nodes(graph, &removed);
    drop_unread_initializers(graph);
    folded
}

/// Constants up to this many elements are given to shape inference whole
/// (shape inputs of Reshape and the like); larger ones by shape only.
const SMALL_CONSTANT: usize = 1024;

/// What shape inference may know of an initializer: small ones whole,
/// larger ones by shape.
pub(crate) fn initializer_fact(t: &Tensor) -> Fact {
    if t.len() <= SMALL_CONSTANT {
        Fact::constant(t.clone())
    } else {
        Fact::new(t.dtype(), t.shape().iter().map(|&d| Dim::Known(d)).collect())
    }
}

/// The shapes of the graph's values that the CPU's kernels infer from the
/// inputs' declared shapes and the initializers, in graph order (a node
/// whose inputs are not all known keeps its outputs unknown).
pub(crate) fn infer_shapes(graph: &Graph, opset: i64) -> HashMap<String, Vec<Dim>> {
    let mut facts: HashMap<&str, Fact> = HashMap::new();
    for (name, t) in &graph.initializers {
        facts.insert(name, initializer_fact(t));
    }
    for v in &graph.inputs {
        if let (Some(dtype), Some(shape)) = (v.dtype, &v.shape) {
            facts.insert(&v.name, Fact::new(dtype, shape.clone()));
        }
    }
    let cpu = CpuProvider::new();
    for node in &graph.nodes {
        let inputs: Option<Vec<Option<&Fact>>> = node.inputs.iter().map(|x| if x.is_empty() { Some(None) } else { facts.get(x.as_str()).map(Some) }).collect();
        let Some(inputs) = inputs else { continue };
        let Ok(out) = cpu.create_kernel(node, opset).and_then(|op| op.infer(&inputs)) else { continue };
        for (name, fact) in node.outputs.iter().zip(out) {
            facts.insert(name, fact);
        }
    }
    facts.into_iter().map(|(name, fact)| (name.to_string(), fact.shape)).collect()
}

#[cfg(test)]
mod tests {
    use crate::model::{Attribute, Dim, Graph, Model, Node, ValueInfo};
    use crate::session::{OptimizationLevel, SessionBuilder};
    use crate::tensor::{DataType, Tensor};
    use std::collections::HashMap;

    fn node(op: &str, inputs: &[&str], outputs: &[&str], attributes: &[(&str, Attribute)]) -> Node {
        Node {
            name: op.to_lowercase(),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }

    fn ramp(n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) * scale + offset).collect()
    }

    /// Conv (with bias, stride 2, padding) → BatchNormalization → Relu:
    /// the fused graph computes what the graph as written does.
    #[test]
    fn folding_batch_norm_into_conv_keeps_the_result() {
        let (c, m) = (3, 4);
        let mut initializers = HashMap::new();
        initializers.insert("W".to_string(), Tensor::f32(vec![m, c, 3, 3], ramp(m * c * 9, 0.1, 0.0)).unwrap());
        initializers.insert("B".to_string(), Tensor::f32(vec![m], ramp(m, 0.2, 0.1)).unwrap());
        initializers.insert("scale".to_string(), Tensor::f32(vec![m], ramp(m, 0.3, 1.0)).unwrap());
        initializers.insert("beta".to_string(), Tensor::f32(vec![m], ramp(m, 0.05, 0.0)).unwrap());
        initializers.insert("mean".to_string(), Tensor::f32(vec![m], ramp(m, 0.1, 0.2)).unwrap());
        initializers.insert("var".to_string(), Tensor::f32(vec![m], ramp(m, 0.01, 0.5)).unwrap());
        let graph = Graph {
            nodes: vec![
                node("Conv", &["x", "W", "B"], &["y"], &[("strides", Attribute::Ints(vec![2, 2])), ("pads", Attribute::Ints(vec![1, 1, 1, 1]))]),
                node("BatchNormalization", &["y", "scale", "beta", "mean", "var"], &["z"], &[("epsilon", Attribute::Float(1e-3))]),
                node("Relu", &["z"], &["out"], &[]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(1), Dim::Known(c), Dim::Known(8), Dim::Known(8)]) }],
            outputs: vec![ValueInfo { name: "out".into(), dtype: Some(DataType::F32), shape: None }],
            initializers,
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 15)]), graph };
        let x = Tensor::f32(vec![1, c, 8, 8], ramp(c * 64, 0.25, 0.0)).unwrap();
        let run = |level| {
            let session = SessionBuilder::new().with_optimization_level(level).commit(model.clone()).unwrap();
            let fused = session.optimizations().fused;
            (session.run(vec![("x".into(), x.clone())]).unwrap().remove(0).1, fused)
        };
        let (plain, none) = run(OptimizationLevel::Basic);
        let (fused, one) = run(OptimizationLevel::Extended);
        // The BatchNormalization, then the Relu.
        assert_eq!((none, one), (0, 2));
        for (a, b) in plain.as_f32().unwrap().iter().zip(fused.as_f32().unwrap()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
        }
        assert!(plain.as_f32().unwrap().iter().any(|&v| v > 0.0), "the test should not be trivially zero");
    }

    /// Gemm with a transB weight read by two nodes: prepared once, shared,
    /// and the results stay those of the graph as written.
    #[test]
    fn prepacked_gemm_weights_keep_the_result() {
        let (m, k, n) = (3, 5, 4);
        let mut graph = Graph {
            nodes: vec![
                node("Gemm", &["x", "W", "C"], &["y"], &[("transB", Attribute::Int(1)), ("alpha", Attribute::Float(0.5))]),
                node("Gemm", &["x", "W"], &["z"], &[("transB", Attribute::Int(1))]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(m), Dim::Known(k)]) }],
            outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }, ValueInfo { name: "z".into(), dtype: None, shape: None }],
            initializers: HashMap::from([
                ("W".to_string(), Tensor::f32(vec![n, k], ramp(n * k, 0.1, 0.3)).unwrap()),
                ("C".to_string(), Tensor::f32(vec![n], ramp(n, 0.2, 0.0)).unwrap()),
            ]),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph: graph.clone() };
        assert_eq!(super::prepack_gemm_weights(&mut graph), 2);
        assert_eq!(graph.initializers["W#transposed"].shape(), &[k, n]);
        assert!(!graph.initializers.contains_key("W"), "the original weight is dropped");
        let x = Tensor::f32(vec![m, k], ramp(m * k, 0.3, -0.1)).unwrap();
        let run = |level| SessionBuilder::new().with_optimization_level(level).commit(model.clone()).unwrap().run(vec![("x".into(), x.clone())]).unwrap();
        let (plain, prepared) = (run(OptimizationLevel::Basic), run(OptimizationLevel::Extended));
        for ((_, a), (_, b)) in plain.iter().zip(&prepared) {
            for (a, b) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
    }

    /// Conv → Relu fuses; a Conv whose output is also read elsewhere does not.
    #[test]
    fn relu_fuses_into_the_conv_before_it() {
        let (c, m) = (2, 3);
        let graph = Graph {
            nodes: vec![
                node("Conv", &["x", "W"], &["y"], &[("pads", Attribute::Ints(vec![1, 1, 1, 1]))]),
                node("Relu", &["y"], &["r"], &[]),
                node("Conv", &["r", "W2"], &["z"], &[]),
                node("Relu", &["z"], &["out"], &[]),
                node("Add", &["z", "z"], &["twice"], &[]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(1), Dim::Known(c), Dim::Known(5), Dim::Known(5)]) }],
            outputs: vec![ValueInfo { name: "out".into(), dtype: None, shape: None }, ValueInfo { name: "twice".into(), dtype: None, shape: None }],
            initializers: HashMap::from([
                ("W".to_string(), Tensor::f32(vec![m, c, 3, 3], ramp(m * c * 9, 0.2, 0.0)).unwrap()),
                ("W2".to_string(), Tensor::f32(vec![m, m, 1, 1], ramp(m * m, 0.3, -0.1)).unwrap()),
            ]),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
        let x = Tensor::f32(vec![1, c, 5, 5], ramp(c * 25, 0.5, -0.2)).unwrap();
        let run = |level| {
            let session = SessionBuilder::new().with_optimization_level(level).commit(model.clone()).unwrap();
            (session.run(vec![("x".into(), x.clone())]).unwrap(), session.optimizations().fused, session.placements().len())
        };
        let (plain, none, steps) = run(OptimizationLevel::Basic);
        let (fused, one, fewer) = run(OptimizationLevel::Extended);
        // (The steps include the Transposes of the CPU's channels-last layout.)
        assert_eq!((none, one, fewer), (0, 1, steps - 1), "only the first Relu fuses");
        for ((_, a), (_, b)) in plain.iter().zip(&fused) {
            for (a, b) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
        assert!(plain[0].1.as_f32().unwrap().contains(&0.0) && plain[1].1.as_f32().unwrap().iter().any(|&v| v < 0.0), "both signs occur");
    }

    /// Identity and inference Dropouts (one reading another) disappear;
    /// a Dropout whose mask is read, and one making a graph output, stay.
    #[test]
    fn pass_through_nodes_are_removed() {
        let graph = Graph {
            nodes: vec![
                node("Identity", &["x"], &["a"], &[]),
                node("Dropout", &["a", "", "off"], &["b", "unread_mask"], &[]),
                node("Neg", &["b"], &["y"], &[]),
                node("Dropout", &["y"], &["c", "mask"], &[]),
                node("Dropout", &["c"], &["out"], &[]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(3)]) }],
            outputs: ["out", "mask"].iter().map(|n| ValueInfo { name: n.to_string(), dtype: None, shape: None }).collect(),
            initializers: HashMap::from([("off".to_string(), Tensor::new(vec![], crate::tensor::Data::Bool(vec![false])).unwrap())]),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
        let session = SessionBuilder::new().with_optimization_level(OptimizationLevel::Basic).commit(model).unwrap();
        assert_eq!(session.optimizations().removed, 2);
        let out = session.run(vec![("x".into(), Tensor::f32(vec![3], vec![1.0, -2.0, 3.0]).unwrap())]).unwrap();
        assert_eq!(out[0].1.as_f32().unwrap(), &[-1.0, 2.0, -3.0]);
    }
}
