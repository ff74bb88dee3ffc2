//! Fusions of several nodes into one of the CPU's own operators (domain
//! [`PACKED_DOMAIN`]), run at session creation after the layout pass,
//! where the provider that takes every fused node runs the result.

use crate::model::{Attribute, Dim, Graph, Node};
use crate::ops::packed::{adds_residual, depthwise, PACKED_DOMAIN};
use crate::optimize::{infer_shapes, reader_counts, remove_nodes};
use std::collections::HashMap;

/// A fused node, the node it replaces (in place: after every input of the
/// nodes it absorbs) and the nodes it makes redundant.
struct Fusion {
    at: usize,
    absorbed: Vec<usize>,
    node: Node,
}

/// Applies `fusions` (none touching the same node twice). Returns how many.
fn apply(graph: &mut Graph, fusions: Vec<Fusion>) -> usize {
    let mut removed = vec![false; graph.nodes.len()];
    let count = fusions.len();
    for Fusion { at, absorbed, node } in fusions {
        graph.nodes[at] = node;
        absorbed.into_iter().for_each(|i| removed[i] = true);
    }
    remove_nodes(graph, &removed);
    count
}

/// The node that writes each value, by index.
fn producers(graph: &Graph) -> HashMap<&str, usize> {
    graph.nodes.iter().enumerate().flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i))).collect()
}

/// Replaces each channel `Concat` (axis 3 of NHWC) of `PackedConv` outputs
/// that nothing else reads by one `ConcatConvs` node, whose convolutions
/// write their channels of the joined output in place: the Concat's copy
/// disappears. Depthwise convolutions and those with a residual keep their
/// own outputs. Returns how many Concats.
pub fn fuse_concat_convs(graph: &mut Graph, wants: impl Fn(&Node, &Node) -> bool) -> usize {
    let readers = reader_counts(graph);
    let producer = producers(graph);
    let placeable = |node: &Node| {
        let a = crate::ops::Attrs(node);
        let (Ok(cg), Ok(m), Ok(group)) = (a.int("input_channels", 0), a.int("output_channels", 0), a.int("group", 1)) else { return false };
        node.domain == PACKED_DOMAIN && node.op_type == "PackedConv" && !adds_residual(node) && !depthwise(cg as usize, m as usize, group as usize)
    };
    let mut fusions = Vec::new();
    for (j, concat) in graph.nodes.iter().enumerate() {
        let onnx = concat.domain.is_empty() || concat.domain == "ai.onnx";
        let channels = matches!(concat.attributes.get("axis"), Some(Attribute::Int(3 | -1)));
        if !onnx || concat.op_type != "Concat" || !channels || concat.outputs.len() != 1 {
            continue;
        }
        let convs: Option<Vec<usize>> = concat
            .inputs
            .iter()
            .map(|x| producer.get(x.as_str()).copied().filter(|&c| readers.get(x) == Some(&1) && placeable(&graph.nodes[c])))
            .collect();
        let Some(convs) = convs.filter(|c| !c.is_empty()) else { continue };
        let mut fused = Node {
            name: concat.name.clone(),
            op_type: "ConcatConvs".into(),
            domain: PACKED_DOMAIN.into(),
            inputs: Vec::new(),
            outputs: concat.outputs.clone(),
            attributes: HashMap::from([("branches".to_string(), Attribute::Int(convs.len() as i64))]),
        };
        for (i, &c) in convs.iter().enumerate() {
            let conv = &graph.nodes[c];
            fused.inputs.extend((0..4).map(|k| conv.inputs.get(k).filter(|_| k < 3).cloned().unwrap_or_default()));
            fused.attributes.extend(conv.attributes.iter().map(|(k, v)| (format!("{i}:{k}"), v.clone())));
        }
        if wants(concat, &fused) && convs.iter().all(|&c| wants(&graph.nodes[c], &fused)) {
            fusions.push(Fusion { at: j, absorbed: convs, node: fused });
        }
    }
    apply(graph, fusions)
}

/// Fuses each `Add` (or two-input `Sum`) of a `PackedConv`'s output and
/// another value of exactly the same static shape into the convolution, as
/// its residual input (ResNet's shortcut): the sum is made as the output
/// is stored, and a following Relu then fuses too (run this before
/// [`crate::optimize::fuse_conv_relu`]). The convolution must have no
/// activation of its own and no other reader. The fused node takes the
/// `Add`'s place, after both operands' producers. Returns how many.
pub fn fuse_residual_adds(graph: &mut Graph, opset: i64, wants: impl Fn(&Node, &Node) -> bool) -> usize {
    let shapes = infer_shapes(graph, opset);
    let readers = reader_counts(graph);
    let producer = producers(graph);
    let known = |value: &str| shapes.get(value).filter(|s| s.iter().all(|d| matches!(d, Dim::Known(_))));
    let mut fusions = Vec::new();
    let mut taken = vec![false; graph.nodes.len()];
    for (a, add) in graph.nodes.iter().enumerate() {
        let onnx = add.domain.is_empty() || add.domain == "ai.onnx";
        if !onnx || !matches!(add.op_type.as_str(), "Add" | "Sum") || add.inputs.len() != 2 || add.outputs.len() != 1 {
            continue;
        }
        for k in 0..2 {
            let (value, other) = (&add.inputs[k], &add.inputs[1 - k]);
            let Some(&c) = producer.get(value.as_str()) else { continue };
            let conv = &graph.nodes[c];
            let plain = conv.domain == PACKED_DOMAIN && conv.op_type == "PackedConv" && conv.inputs.len() <= 3 && !conv.attributes.contains_key("activation");
            if !plain || taken[c] || readers.get(value) != Some(&1) || known(value).is_none() || known(value) != known(other) {
                continue;
            }
            let mut fused = conv.clone();
            fused.inputs.resize(3, String::new());
            fused.inputs.push(other.clone());
            fused.outputs = add.outputs.clone();
            if wants(conv, &fused) && wants(add, &fused) {
                taken[c] = true;
                fusions.push(Fusion { at: a, absorbed: vec![c], node: fused });
                break;
            }
        }
    }
    apply(graph, fusions)
}

/// Replaces each channel shuffle, Reshape [.., g, C/g, ..] → Transpose
/// (swapping those two axes only) → Reshape back, by one `ChannelShuffle`
/// node: the Reshapes' two copies disappear and the transpose runs as one
/// interleave per pixel. The reshapes' shapes must be constant and
/// explicit (no 0 or -1), and only the next node may read each
/// intermediate. Returns how many.
pub fn fuse_channel_shuffles(graph: &mut Graph, wants: impl Fn(&Node, &Node) -> bool) -> usize {
    let readers = reader_counts(graph);
    let consumer: HashMap<&str, usize> = graph.nodes.iter().enumerate().flat_map(|(i, n)| n.inputs.iter().map(move |x| (x.as_str(), i))).collect();
    // The node that alone reads `node`'s single output.
    let next = |node: &Node| -> Option<usize> {
        let [out] = &node.outputs[..] else { return None };
        (readers.get(out) == Some(&1)).then(|| consumer.get(out.as_str()).copied()).flatten()
    };
    let dims = |node: &Node| -> Option<Vec<i64>> {
        let onnx = node.domain.is_empty() || node.domain == "ai.onnx";
        if !onnx || node.op_type != "Reshape" || node.inputs.len() != 2 || node.outputs.len() != 1 {
            return None;
        }
        let dims = graph.initializers.get(&node.inputs[1])?.as_i64()?;
        dims.iter().all(|&d| d > 0).then(|| dims.to_vec())
    };
    let mut fusions = Vec::new();
    let mut taken = vec![false; graph.nodes.len()];
    for (r1, split) in graph.nodes.iter().enumerate().filter_map(|(i, n)| Some((i, dims(n)?))) {
        let Some(t) = next(&graph.nodes[r1]) else { continue };
        let transpose = &graph.nodes[t];
        let Some(Attribute::Ints(perm)) = transpose.attributes.get("perm") else { continue };
        if transpose.op_type != "Transpose" || !transpose.domain.is_empty() || perm.len() != split.len() {
            continue;
        }
        // Exactly axes a and a + 1 swapped.
        let moved: Vec<usize> = (0..perm.len()).filter(|&k| perm[k] != k as i64).collect();
        let &[a, b] = &moved[..] else { continue };
        if b != a + 1 || perm[a] != b as i64 {
            continue;
        }
        let Some(r2) = next(transpose) else { continue };
        let merged: Vec<i64> = split[..a].iter().copied().chain([split[a] * split[b]]).chain(split[b + 1..].iter().copied()).collect();
        if dims(&graph.nodes[r2]) != Some(merged.clone()) {
            continue;
        }
        let mut fused = Node {
            name: graph.nodes[r2].name.clone(),
            op_type: "ChannelShuffle".into(),
            domain: PACKED_DOMAIN.into(),
            inputs: vec![graph.nodes[r1].inputs[0].clone()],
            outputs: graph.nodes[r2].outputs.clone(),
            attributes: Default::default(),
        };
        fused.attributes.insert("shape".into(), Attribute::Ints(merged));
        fused.attributes.insert("axis".into(), Attribute::Int(a as i64));
        fused.attributes.insert("groups".into(), Attribute::Int(split[a]));
        if [r1, t, r2].iter().all(|&i| !taken[i] && wants(&graph.nodes[i], &fused)) {
            [r1, t, r2].iter().for_each(|&i| taken[i] = true);
            fusions.push(Fusion { at: r2, absorbed: vec![r1, t], node: fused });
        }
    }
    apply(graph, fusions)
}

#[cfg(test)]
mod tests {
    use crate::model::{Attribute, Graph, Node, ValueInfo};
    use crate::tensor::{DataType, Tensor};
    use crate::{Dim, Model, OptimizationLevel, SessionBuilder};
    use std::collections::HashMap;

    fn node(op: &str, inputs: &[&str], output: &str, attributes: &[(&str, Attribute)]) -> Node {
        Node {
            name: output.into(),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![output.into()],
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }

    /// A channel shuffle on NCHW's axis 1, one on the last axis (as the
    /// layout pass leaves ShuffleNet's), and one whose transposed value is
    /// read twice (left alone): fused and unfused sessions agree, and the
    /// fused one has the fusions.
    #[test]
    fn channel_shuffles_fuse_and_compute_the_same() {
        let ints = |v: &[i64]| Tensor::i64(vec![v.len()], v.to_vec()).unwrap();
        let perm = |p: &[i64]| [("perm", Attribute::Ints(p.to_vec()))];
        let graph = Graph {
            nodes: vec![
                node("Reshape", &["x", "split_c"], "a1", &[]),
                node("Transpose", &["a1"], "a2", &perm(&[0, 2, 1, 3, 4])),
                node("Reshape", &["a2", "shape_c"], "nchw", &[]),
                node("Reshape", &["x", "split_last"], "b1", &[]),
                node("Transpose", &["b1"], "b2", &perm(&[0, 1, 2, 4, 3])),
                node("Reshape", &["b2", "shape_x"], "last", &[]),
                node("Reshape", &["x", "split_c"], "c1", &[]),
                node("Transpose", &["c1"], "c2", &perm(&[0, 2, 1, 3, 4])),
                node("Reshape", &["c2", "shape_c"], "twice", &[]),
                node("Neg", &["c2"], "also", &[]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some([1, 6, 2, 4].map(Dim::Known).to_vec()) }],
            outputs: ["nchw", "last", "twice", "also"].iter().map(|n| ValueInfo { name: n.to_string(), dtype: None, shape: None }).collect(),
            initializers: HashMap::from([
                ("split_c".to_string(), ints(&[1, 3, 2, 2, 4])),
                ("shape_c".to_string(), ints(&[1, 6, 2, 4])),
                ("split_last".to_string(), ints(&[1, 6, 2, 2, 2])),
                ("shape_x".to_string(), ints(&[1, 6, 2, 4])),
            ]),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
        let x = Tensor::f32(vec![1, 6, 2, 4], (0..48).map(|i| i as f32).collect()).unwrap();
        let session = |level| SessionBuilder::new().with_intra_op_threads(2).with_optimization_level(level).commit(model.clone()).unwrap();
        let (plain, fused) = (session(OptimizationLevel::Basic), session(OptimizationLevel::Extended));
        assert_eq!(fused.optimizations().fused, 2);
        let (want, got) = (plain.run(vec![("x".into(), x.clone())]).unwrap(), fused.run(vec![("x".into(), x)]).unwrap());
        assert_eq!(want, got);
        // Channel 1 of the NCHW shuffle is input channel 2 (groups of 3).
        assert_eq!(got[0].1.as_f32().unwrap()[8..16], (16..24).map(|i| i as f32).collect::<Vec<_>>()[..]);
    }

    fn ramp(n: usize, step: f32, start: f32) -> Vec<f32> {
        (0..n).map(|i| start + step * ((i * 37 % 11) as f32 - 5.0)).collect()
    }

    /// A shortcut Add after a convolution fuses into it (and the Relu
    /// after it too); an Add that broadcasts a per-channel constant does
    /// not. The fused session computes what the unfused one does, where
    /// the shortcut is read elsewhere in the same step, and where the
    /// convolution takes the shortcut's buffer over (computing in place).
    #[test]
    fn shortcut_adds_fuse_into_the_convolution() {
        let c = 8;
        let conv = |x: &str, w: &str, out: &str, pads: i64| node("Conv", &[x, w, "b"], out, &[("pads", Attribute::Ints(vec![pads; 4]))]);
        let depthwise = |x: &str, out: &str| node("Conv", &[x, "wd", "b"], out, &[("pads", Attribute::Ints(vec![1; 4])), ("group", Attribute::Int(c as i64))]);
        let graph = Graph {
            nodes: vec![
                conv("x", "w1", "y1", 0),
                conv("y1", "w3", "y2", 1),
                node("Add", &["y2", "y1"], "sum", &[]),
                node("Relu", &["sum"], "act", &[]),
                conv("act", "w1", "y3", 0),
                node("Add", &["y3", "per_channel"], "out", &[]),
                depthwise("act", "yd"),
                node("Add", &["act", "yd"], "depthwise", &[]),
                // In place: the shortcut y4 is read last by the fused
                // convolution, and only as its residual.
                conv("act", "w3", "y4", 1),
                conv("y4", "w1", "y4b", 0),
                conv("y4b", "w3", "y5", 1),
                node("Add", &["y5", "y4"], "sum2", &[]),
                depthwise("sum2", "yd2"),
                node("Add", &["yd2", "y3"], "sum3", &[]),
                node("Sigmoid", &["sum3"], "in_place", &[]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some([1, c, 5, 6].map(Dim::Known).to_vec()) }],
            outputs: ["out", "depthwise", "in_place"].iter().map(|n| ValueInfo { name: n.to_string(), dtype: None, shape: None }).collect(),
            initializers: HashMap::from([
                ("w1".to_string(), Tensor::f32(vec![c, c, 1, 1], ramp(c * c, 0.05, 0.01)).unwrap()),
                ("w3".to_string(), Tensor::f32(vec![c, c, 3, 3], ramp(c * c * 9, 0.02, -0.01)).unwrap()),
                ("wd".to_string(), Tensor::f32(vec![c, 1, 3, 3], ramp(c * 9, 0.04, 0.02)).unwrap()),
                ("b".to_string(), Tensor::f32(vec![c], ramp(c, 0.1, 0.0)).unwrap()),
                ("per_channel".to_string(), Tensor::f32(vec![1, c, 1, 1], ramp(c, 0.3, 0.1)).unwrap()),
            ]),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
        let x = Tensor::f32(vec![1, c, 5, 6], ramp(c * 30, 0.2, 0.05)).unwrap();
        let session = |level| SessionBuilder::new().with_intra_op_threads(2).with_optimization_level(level).commit(model.clone()).unwrap();
        let (plain, fused) = (session(OptimizationLevel::Basic), session(OptimizationLevel::Extended));
        // The shortcut Add and the Relu after it, the depthwise one's Add,
        // the two last Adds.
        assert_eq!(fused.optimizations().fused, 5);
        assert_eq!(fused.optimizations().in_place, 2, "y5 + y4 and yd2 + y3");
        let (want, got) = (plain.run(vec![("x".into(), x.clone())]).unwrap(), fused.run(vec![("x".into(), x)]).unwrap());
        for ((name, want), (_, got)) in want.iter().zip(&got) {
            assert_eq!(want.shape(), got.shape());
            for (a, b) in want.as_f32().unwrap().iter().zip(got.as_f32().unwrap()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{name}: {a} vs {b}");
            }
        }
    }

    /// SqueezeNet's expand layers (a 1×1 and a padded 3×3 convolution,
    /// here one grouped, joined by a channel Concat) become one node; a
    /// Concat one of whose inputs is also read elsewhere stays. The fused
    /// session computes what the unfused one does.
    #[test]
    fn concatenated_convolutions_write_in_place() {
        let c = 4;
        let attrs = |pads: i64, group: i64| [("pads", Attribute::Ints(vec![pads; 4])), ("group", Attribute::Int(group))];
        let graph = Graph {
            nodes: vec![
                node("Conv", &["x", "w1", "b"], "e1", &attrs(0, 1)),
                node("Conv", &["x", "w3", "b"], "e3", &attrs(1, 2)),
                node("Concat", &["e1", "e3"], "joined", &[("axis", Attribute::Int(1))]),
                node("Conv", &["joined", "w1x", "b"], "f1", &attrs(0, 1)),
                node("Conv", &["joined", "w1x", "b"], "f2", &attrs(0, 1)),
                node("Concat", &["f1", "f2"], "out", &[("axis", Attribute::Int(1))]),
                node("Neg", &["f2"], "also", &[]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some([1, c, 5, 6].map(Dim::Known).to_vec()) }],
            outputs: ["out", "also"].iter().map(|n| ValueInfo { name: n.to_string(), dtype: None, shape: None }).collect(),
            initializers: HashMap::from([
                ("w1".to_string(), Tensor::f32(vec![c, c, 1, 1], ramp(c * c, 0.05, 0.01)).unwrap()),
                ("w3".to_string(), Tensor::f32(vec![c, c / 2, 3, 3], ramp(c * c / 2 * 9, 0.02, -0.01)).unwrap()),
                ("w1x".to_string(), Tensor::f32(vec![c, 2 * c, 1, 1], ramp(2 * c * c, 0.03, 0.0)).unwrap()),
                ("b".to_string(), Tensor::f32(vec![c], ramp(c, 0.1, 0.0)).unwrap()),
            ]),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
        let x = Tensor::f32(vec![1, c, 5, 6], ramp(c * 30, 0.2, 0.05)).unwrap();
        let session = |level| SessionBuilder::new().with_intra_op_threads(2).with_optimization_level(level).commit(model.clone()).unwrap();
        let (plain, fused) = (session(OptimizationLevel::Basic), session(OptimizationLevel::Extended));
        assert_eq!(fused.optimizations().fused, 1);
        assert_eq!(fused.placements().iter().filter(|p| p.op_type == "ConcatConvs").count(), 1);
        let (want, got) = (plain.run(vec![("x".into(), x.clone())]).unwrap(), fused.run(vec![("x".into(), x)]).unwrap());
        for ((name, want), (_, got)) in want.iter().zip(&got) {
            assert_eq!(want.shape(), got.shape());
            for (a, b) in want.as_f32().unwrap().iter().zip(got.as_f32().unwrap()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{name}: {a} vs {b}");
            }
        }
    }
}
