//! Fusions of several nodes into one, run at session creation after the
//! layout pass and packing, where the provider that takes every fused node
//! runs the result: a shortcut's Add into the convolution before it, a
//! Relu into the convolution or packed node before it, a channel shuffle's
//! three nodes into one, a Concat into the convolutions it joins.

use super::pack::PACKED_DOMAIN;
use super::{OptimizationLevel, Optimizations, Pass, PassContext};
use crate::graph::{NodeId, TypedGraph, ValueId};
use crate::model::{Attribute, Node};
use crate::ops::packed::{adds_residual, depthwise};
use std::collections::{HashMap, HashSet};

/// The domain of a Conv with a fused activation (byob's own, never in a
/// file).
pub const FUSED_DOMAIN: &str = "com.byob.fused";

/// A fused node, the node it replaces (in place: after every input of the
/// nodes it absorbs), the values it reads and the nodes it makes redundant.
struct Fusion {
    at: NodeId,
    absorbed: Vec<NodeId>,
    node: Node,
    inputs: Vec<Option<ValueId>>,
}

/// Applies `fusions` (none touching the same node twice), counting them
/// as `fused`.
fn apply(graph: &mut TypedGraph, fusions: Vec<Fusion>) -> Optimizations {
    let fused = fusions.len();
    for Fusion { at, absorbed, node, inputs } in fusions {
        let outputs = graph.node(at).outputs().to_vec();
        absorbed.into_iter().for_each(|n| graph.remove_node(n));
        graph.replace_node(at, node, inputs, outputs);
    }
    Optimizations { fused, ..Optimizations::default() }
}

fn onnx(node: &Node) -> bool {
    node.domain.is_empty() || node.domain == "ai.onnx"
}

/// Replaces each channel `Concat` (axis 3 of NHWC) of `PackedConv` outputs
/// that nothing else reads by one `ConcatConvs` node, whose convolutions
/// write their channels of the joined output in place: the Concat's copy
/// disappears. Depthwise convolutions and those with a residual keep their
/// own outputs.
pub const FUSE_CONCAT_CONVS: Pass = Pass { name: "Concat of convolutions", level: OptimizationLevel::Extended, run: fuse_concat_convs };

fn fuse_concat_convs(graph: &mut TypedGraph, cx: &PassContext) -> Optimizations {
    let placeable = |node: &Node| {
        let a = crate::ops::Attrs(node);
        let (Ok(cg), Ok(m), Ok(group)) = (a.int("input_channels", 0), a.int("output_channels", 0), a.int("group", 1)) else { return false };
        node.domain == PACKED_DOMAIN && node.op_type == "PackedConv" && !adds_residual(node) && !depthwise(cg as usize, m as usize, group as usize)
    };
    let mut fusions = Vec::new();
    for (j, concat) in graph.nodes() {
        let channels = matches!(concat.node().attributes.get("axis"), Some(Attribute::Int(3 | -1)));
        if !onnx(concat.node()) || concat.node().op_type != "Concat" || !channels || concat.outputs().len() != 1 {
            continue;
        }
        let convs: Option<Vec<NodeId>> = concat
            .inputs()
            .iter()
            .map(|x| {
                let x = (*x)?;
                graph.producer(x).filter(|&c| graph.read_count(x) == 1 && placeable(graph.node(c).node()))
            })
            .collect();
        let Some(convs) = convs.filter(|c| !c.is_empty()) else { continue };
        let mut fused = Node {
            name: concat.node().name.clone(),
            op_type: "ConcatConvs".into(),
            domain: PACKED_DOMAIN.into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            attributes: HashMap::from([("branches".to_string(), Attribute::Int(convs.len() as i64))]),
        };
        let mut inputs = Vec::new();
        for (i, &c) in convs.iter().enumerate() {
            let conv = graph.node(c);
            inputs.extend((0..4).map(|k| conv.input(k).filter(|_| k < 3)));
            fused.attributes.extend(conv.node().attributes.iter().map(|(k, v)| (format!("{i}:{k}"), v.clone())));
        }
        if cx.taker_runs(concat.node(), &fused) && convs.iter().all(|&c| cx.taker_runs(graph.node(c).node(), &fused)) {
            fusions.push(Fusion { at: j, absorbed: convs, node: fused, inputs });
        }
    }
    apply(graph, fusions)
}

/// Fuses each `Add` (or two-input `Sum`) of a `PackedConv`'s output and
/// another value of exactly the same static shape into the convolution, as
/// its residual input (ResNet's shortcut): the sum is made as the output
/// is stored, and a following Relu then fuses too ([`FUSE_CONV_RELU`] runs
/// after it). The convolution must have no activation of its own and no
/// other reader. The fused node takes the `Add`'s place, after both
/// operands' producers.
pub const FUSE_RESIDUAL_ADDS: Pass = Pass { name: "shortcut Add fusion", level: OptimizationLevel::Extended, run: fuse_residual_adds };

fn fuse_residual_adds(graph: &mut TypedGraph, cx: &PassContext) -> Optimizations {
    let mut fusions = Vec::new();
    let mut taken = HashSet::new();
    for (a, add) in graph.nodes() {
        if !onnx(add.node()) || !matches!(add.node().op_type.as_str(), "Add" | "Sum") || add.inputs().len() != 2 || add.outputs().len() != 1 {
            continue;
        }
        for k in 0..2 {
            let (Some(value), Some(other)) = (add.input(k), add.input(1 - k)) else { continue };
            let Some(c) = graph.producer(value) else { continue };
            let conv = graph.node(c);
            let plain = conv.node().domain == PACKED_DOMAIN && conv.node().op_type == "PackedConv" && conv.inputs().len() <= 3 && !conv.node().attributes.contains_key("activation");
            let shape = graph.concrete_shape(value);
            if !plain || taken.contains(&c) || graph.read_count(value) != 1 || shape.is_none() || shape != graph.concrete_shape(other) {
                continue;
            }
            let fused = conv.node().clone();
            let mut inputs = conv.inputs().to_vec();
            inputs.resize(3, None);
            inputs.push(Some(other));
            if cx.taker_runs(conv.node(), &fused) && cx.taker_runs(add.node(), &fused) {
                taken.insert(c);
                fusions.push(Fusion { at: a, absorbed: vec![c], node: fused, inputs });
                break;
            }
        }
    }
    apply(graph, fusions)
}

/// Fuses each `Relu` into the `Conv` (or packed operator) before it when
/// nothing else reads the producer's output and the providers of both run
/// the fused node (a [`FUSED_DOMAIN`] Conv, or the packed node, with
/// `activation = "Relu"`): the activation is then applied to each block of
/// output while it is still in cache, and one pass over the activations
/// and one step disappear.
pub const FUSE_CONV_RELU: Pass = Pass { name: "Relu fusion", level: OptimizationLevel::Extended, run: fuse_conv_relu };

fn fuse_conv_relu(graph: &mut TypedGraph, cx: &PassContext) -> Optimizations {
    let mut done = Optimizations::default();
    for r in graph.order().to_vec() {
        let relu = graph.node(r);
        if relu.node().op_type != "Relu" || !relu.node().domain.is_empty() || relu.inputs().len() != 1 {
            continue;
        }
        let (Some(x), Some(y)) = (relu.input(0), relu.output()) else { continue };
        let Some(c) = graph.producer(x).filter(|&c| absorbs_activation(graph.node(c).node()) && graph.node(c).outputs().len() == 1) else { continue };
        if graph.read_count(x) != 1 {
            continue;
        }
        let conv = graph.node(c);
        let mut fused = conv.node().clone();
        if fused.domain != PACKED_DOMAIN {
            fused.domain = FUSED_DOMAIN.to_string();
        }
        fused.attributes.insert("activation".into(), Attribute::String("Relu".into()));
        if !cx.taker_runs(conv.node(), &fused) || !cx.taker_runs(relu.node(), &fused) {
            continue;
        }
        let inputs = conv.inputs().to_vec();
        graph.remove_node(r);
        graph.replace_node(c, fused, inputs, vec![Some(y)]);
        done.fused += 1;
    }
    done
}

/// Whether a following Relu can be fused into `node`: ONNX's Conv (which
/// becomes a [`FUSED_DOMAIN`] Conv) and the CPU's packed operators.
fn absorbs_activation(node: &Node) -> bool {
    (node.op_type == "Conv" && node.domain.is_empty()) || node.domain == PACKED_DOMAIN
}

/// Replaces each channel shuffle, Reshape [.., g, C/g, ..] → Transpose
/// (swapping those two axes only) → Reshape back, by one `ChannelShuffle`
/// node: the Reshapes' two copies disappear and the transpose runs as one
/// interleave per pixel. The reshapes' shapes must be constant and
/// explicit (no 0 or -1), and only the next node may read each
/// intermediate.
pub const FUSE_CHANNEL_SHUFFLES: Pass = Pass { name: "channel shuffle fusion", level: OptimizationLevel::Extended, run: fuse_channel_shuffles };

fn fuse_channel_shuffles(graph: &mut TypedGraph, cx: &PassContext) -> Optimizations {
    // The node that alone reads `n`'s single output.
    let next = |n: NodeId| -> Option<NodeId> {
        let y = graph.node(n).output()?;
        match graph.readers(y) {
            [reader] if graph.read_count(y) == 1 => Some(*reader),
            _ => None,
        }
    };
    let dims = |n: NodeId| -> Option<Vec<i64>> {
        let typed = graph.node(n);
        if !onnx(typed.node()) || typed.node().op_type != "Reshape" || typed.inputs().len() != 2 || typed.outputs().len() != 1 {
            return None;
        }
        let dims = graph.constant(typed.input(1)?)?.as_i64()?;
        dims.iter().all(|&d| d > 0).then(|| dims.to_vec())
    };
    let mut fusions = Vec::new();
    let mut taken = HashSet::new();
    for (r1, split) in graph.order().iter().filter_map(|&n| Some((n, dims(n)?))) {
        let Some(t) = next(r1) else { continue };
        let transpose = graph.node(t).node();
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
        let Some(r2) = next(t) else { continue };
        let merged: Vec<i64> = split[..a].iter().copied().chain([split[a] * split[b]]).chain(split[b + 1..].iter().copied()).collect();
        if dims(r2) != Some(merged.clone()) {
            continue;
        }
        let mut fused = Node { name: graph.node(r2).node().name.clone(), op_type: "ChannelShuffle".into(), domain: PACKED_DOMAIN.into(), inputs: Vec::new(), outputs: Vec::new(), attributes: Default::default() };
        fused.attributes.insert("shape".into(), Attribute::Ints(merged));
        fused.attributes.insert("axis".into(), Attribute::Int(a as i64));
        fused.attributes.insert("groups".into(), Attribute::Int(split[a]));
        if [r1, t, r2].iter().all(|n| !taken.contains(n) && cx.taker_runs(graph.node(*n).node(), &fused)) {
            taken.extend([r1, t, r2]);
            fusions.push(Fusion { at: r2, absorbed: vec![r1, t], inputs: vec![graph.node(r1).input(0)], node: fused });
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
