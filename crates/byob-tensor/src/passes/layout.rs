//! The channels-last (NHWC) layout pass, for providers whose convolution
//! and pooling kernels prefer it (as ONNX Runtime's JSEP WebGPU provider
//! does).
//!
//! Each 2-D `Conv`, `MaxPool`, `AveragePool`, `GlobalMaxPool`,
//! `GlobalAveragePool` and `BatchNormalization` that such a provider takes
//! is rewritten into its [`NHWC_DOMAIN`] variant between two Transposes (to
//! NHWC before, back to NCHW after). Transposes are then pushed down
//! through layout-agnostic nodes (elementwise ops, Concat with its axis
//! remapped) and adjacent inverse pairs cancel, so that a chain of
//! convolutions stays in NHWC and Transposes remain only where the layout
//! really changes: typically at the graph input and before the
//! classifier's Flatten.
//!
//! The NHWC variants keep their weights in ONNX's OIHW order; only the
//! activations change layout.

use super::{OptimizationLevel, Optimizations, Pass, PassContext};
use crate::graph::{NodeId, TypedGraph, ValueId};
use crate::model::{Attribute, Node};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};

/// The domain of the channels-last operator variants.
pub const NHWC_DOMAIN: &str = "com.byob.nhwc";

/// The operators that have a channels-last variant (BatchNormalization
/// too, since graphs whose weights are computed keep it unfused).
pub const CHANNELS_LAST_OPS: [&str; 6] = ["Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "BatchNormalization"];

/// NCHW to NHWC.
pub const TO_NHWC: [i64; 4] = [0, 2, 3, 1];
/// NHWC to NCHW.
pub const TO_NCHW: [i64; 4] = [0, 3, 1, 2];

/// Elementwise operators of one data input (others, like Clip's bounds,
/// are scalars): a Transpose moves through them unchanged.
const UNARY: &[&str] = &[
    "Abs", "Neg", "Floor", "Ceil", "Reciprocal", "Sqrt", "Exp", "Log", "Erf", "Sigmoid", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh",
    "Acosh", "Atanh", "Tanh", "Relu", "LeakyRelu", "Elu", "HardSigmoid", "ThresholdedRelu", "Clip", "Not", "Identity", "Dropout",
];

/// Elementwise operators of several inputs of the same rank.
const ELEMENTWISE: &[&str] = &["Add", "Sub", "Mul", "Div", "Pow", "Sum"];

/// Rewrites the nodes whose provider prefers channels-last and runs their
/// NHWC variant, and cancels the Transposes that leaves back to back. It
/// runs at every level: a provider's layout is how it runs, not an
/// optimisation. Counts `channels_last`.
pub const CHANNELS_LAST: Pass = Pass { name: "channels-last layout", level: OptimizationLevel::Disabled, run: channels_last };

fn channels_last(graph: &mut TypedGraph, cx: &PassContext) -> Optimizations {
    let rewritten = to_channels_last(graph, |node, variant| cx.prefers_nhwc(node, variant));
    if rewritten > 0 {
        simplify_transposes(graph);
    }
    Optimizations { channels_last: rewritten, ..Optimizations::default() }
}

/// The channels-last variant of `node`, when it is a 2-D convolution or
/// pooling (`four_d`: whether its input is known to be 4-D).
pub fn channels_last_variant(node: &Node, four_d: bool, weights_rank: Option<usize>) -> Option<Node> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") || !CHANNELS_LAST_OPS.contains(&node.op_type.as_str()) || node.outputs.len() != 1 {
        return None;
    }
    let spatial_2d = match node.attributes.get("kernel_shape") {
        Some(Attribute::Ints(k)) => k.len() == 2,
        _ => weights_rank == Some(4) || four_d,
    };
    if !spatial_2d {
        return None;
    }
    let mut variant = node.clone();
    variant.domain = NHWC_DOMAIN.to_string();
    Some(variant)
}

fn transpose(name: String, perm: Vec<i64>) -> Node {
    Node { name, op_type: "Transpose".into(), domain: String::new(), inputs: Vec::new(), outputs: Vec::new(), attributes: HashMap::from([("perm".to_string(), Attribute::Ints(perm))]) }
}

fn perm_of(node: &Node) -> Option<&[i64]> {
    match (node.op_type.as_str(), node.attributes.get("perm")) {
        ("Transpose", Some(Attribute::Ints(p))) if node.domain.is_empty() => Some(p),
        _ => None,
    }
}

/// The rewrite itself. Returns how many nodes were rewritten.
fn to_channels_last(graph: &mut TypedGraph, wants: impl Fn(&Node, &Node) -> bool) -> usize {
    // Values known 4-D from the inputs' declarations, through the nodes
    // that keep their input's rank.
    let mut four_d: HashSet<ValueId> = graph.inputs().iter().filter(|(v, _)| v.shape.as_ref().is_some_and(|s| s.len() == 4)).map(|(_, id)| *id).collect();
    let mut rewritten = 0;
    // One Transpose to NHWC per value, whatever number of nodes read it.
    let mut nhwc_of: HashMap<ValueId, ValueId> = HashMap::new();
    for n in graph.order().to_vec() {
        let typed = graph.node(n);
        let node = typed.node();
        let input_4d = typed.input(0).is_some_and(|x| four_d.contains(&x));
        let weights_rank = typed.input(1).and_then(|w| graph.constant(w)).map(Tensor::rank);
        let variant = channels_last_variant(node, input_4d, weights_rank).filter(|v| wants(node, v));
        let op = node.op_type.as_str();
        let keeps_rank = CHANNELS_LAST_OPS.contains(&op) || UNARY.contains(&op) || ELEMENTWISE.contains(&op) || matches!(op, "Concat" | "LRN");
        if let (true, Some(Some(y))) = (variant.is_some() || keeps_rank && input_4d, typed.outputs().first()) {
            four_d.insert(*y);
        }
        let (Some(variant), Some(x), Some(y)) = (variant, typed.input(0), typed.output()) else { continue };
        rewritten += 1;
        let name = node.name.clone();
        let mut inputs = typed.inputs().to_vec();
        let x_nhwc = match nhwc_of.get(&x) {
            Some(&v) => v,
            None => {
                let v = graph.fresh_value(&format!("{}#nhwc{rewritten}", graph.name(x)));
                graph.insert_before(n, transpose(format!("{name}#to_nhwc"), TO_NHWC.to_vec()), vec![Some(x)], vec![Some(v)]);
                nhwc_of.insert(x, v);
                v
            }
        };
        inputs[0] = Some(x_nhwc);
        let y_nhwc = graph.fresh_value(&format!("{}#nhwc", graph.name(y)));
        graph.replace_node(n, variant, inputs, vec![Some(y_nhwc)]);
        graph.insert_after(n, transpose(format!("{name}#to_nchw"), TO_NCHW.to_vec()), vec![Some(y_nhwc)], vec![Some(y)]);
    }
    rewritten
}

enum Change {
    /// A channel shuffle (nodes Reshape, Transpose, Reshape) whose input
    /// comes from NHWC through a Transpose: done on NHWC's channel axis
    /// instead (`source`), a Transpose to NCHW after it.
    Shuffle { nodes: [NodeId; 3], source: ValueId, dims: [i64; 5] },
    /// Node `node`'s readers read `to` instead.
    Bypass { node: NodeId, to: ValueId },
    /// Node `node` reads `sources` (the Transposes' inputs) and a Transpose
    /// by `perm` follows it.
    Push { node: NodeId, sources: Vec<Source>, perm: Vec<i64> },
}

/// A data input of a node a Transpose is pushed through.
enum Source {
    /// The value the Transpose read.
    Value(ValueId),
    /// A constant, to be read in this shape.
    Constant(ValueId, Vec<usize>),
}

/// Pushes Transposes down through layout-agnostic nodes, cancels inverse
/// pairs and drops Transposes nobody reads, until nothing changes.
fn simplify_transposes(graph: &mut TypedGraph) {
    let mut fresh = 0;
    // Every push moves a Transpose past a node toward the outputs, so this
    // terminates; the bound only guards against a rule bug.
    for _ in 0..4 * graph.order().len() + 4 {
        let Some(change) = graph.order().iter().find_map(|&n| change_at(graph, n)) else { break };
        // (Values made by a push or a shuffle are numbered in turn.)
        fresh += usize::from(!matches!(change, Change::Bypass { .. }));
        apply(graph, change, fresh);
        remove_unread_transposes(graph);
    }
    remove_unread_transposes(graph);
}

/// The change to make at node `n`, if any.
fn change_at(graph: &TypedGraph, n: NodeId) -> Option<Change> {
    let typed = graph.node(n);
    let node = typed.node();
    if !node.domain.is_empty() {
        return None;
    }
    if let Some(shuffle) = channel_shuffle(graph, n) {
        return Some(shuffle);
    }
    let transposed = |x: ValueId| graph.producer(x).and_then(|p| Some((p, perm_of(graph.node(p).node())?.to_vec())));
    // An inverse pair: read the first Transpose's input directly (unless
    // the second makes a graph output, whose name stays).
    if let Some(p2) = perm_of(node) {
        let (first, p1) = transposed(typed.input(0)?)?;
        let inverse = p2.len() == p1.len() && (0..p2.len()).all(|k| p1[p2[k] as usize] == k as i64);
        return (inverse && !graph.is_output(typed.output()?)).then(|| Change::Bypass { node: n, to: graph.node(first).input(0).expect("a Transpose reads its input") });
    }
    let op = node.op_type.as_str();
    let data_inputs = if UNARY.contains(&op) {
        // Dropout's mask would change layout too: only when unread.
        if typed.outputs()[1..].iter().flatten().any(|&o| graph.read_count(o) > 0) {
            return None;
        }
        1
    } else if ELEMENTWISE.contains(&op) || op == "Concat" {
        typed.inputs().len()
    } else {
        return None;
    };
    // Every data input must come through the same Transpose perm, except
    // constants of elementwise ops, which are rewritten.
    let data = &typed.inputs()[..data_inputs];
    let perm = data.iter().flatten().find_map(|&x| transposed(x)).map(|(_, p)| p)?;
    let sources: Option<Vec<Source>> = data
        .iter()
        .map(|x| {
            let x = (*x)?;
            match transposed(x) {
                Some((p, q)) if q == perm => Some(Source::Value(graph.node(p).input(0)?)),
                Some(_) => None,
                None if op == "Concat" || UNARY.contains(&op) => None,
                None => graph.constant(x).and_then(|c| untransposed_shape(c.shape(), &perm)).map(|shape| Source::Constant(x, shape)),
            }
        })
        .collect();
    Some(Change::Push { node: n, sources: sources?, perm })
}

fn apply(graph: &mut TypedGraph, change: Change, fresh: usize) {
    match change {
        Change::Bypass { node, to } => {
            let y = graph.node(node).output().expect("a Transpose has one output");
            graph.redirect(y, to);
        }
        Change::Push { node: n, sources, perm } => {
            let typed = graph.node(n);
            let mut node = typed.node().clone();
            if node.op_type == "Concat" {
                // Axis a of the transposed value is axis perm[a] of its input.
                let rank = perm.len() as i64;
                let axis = match node.attributes.get("axis") {
                    Some(Attribute::Int(a)) if (-rank..rank).contains(a) => (a + rank) % rank,
                    _ => return,
                };
                node.attributes.insert("axis".into(), Attribute::Int(perm[axis as usize]));
            }
            let (mut inputs, mut outputs) = (typed.inputs().to_vec(), typed.outputs().to_vec());
            for (input, source) in inputs.iter_mut().zip(sources) {
                *input = Some(match source {
                    Source::Value(v) => v,
                    Source::Constant(c, shape) => {
                        let name = format!("{}#{shape:?}", graph.name(c));
                        match graph.find(&name).filter(|&v| graph.constant(v).is_some()) {
                            Some(v) => v,
                            None => {
                                let mut reshaped = graph.constant(c).expect("a constant source").clone();
                                reshaped.reshape(shape).expect("the same element count");
                                graph.add_constant(&name, reshaped)
                            }
                        }
                    }
                });
            }
            let y = outputs[0].expect("pushed nodes have an output");
            let inner = graph.fresh_value(&format!("{}#pushed{fresh}", graph.name(y)));
            outputs[0] = Some(inner);
            let name = format!("{}#pushed{fresh}", node.name);
            graph.replace_node(n, node, inputs, outputs);
            graph.insert_after(n, transpose(name, perm), vec![Some(inner)], vec![Some(y)]);
        }
        Change::Shuffle { nodes: [r1, t, r2], source, dims: [n, g, cg, h, w] } => {
            let constant = |graph: &mut TypedGraph, shape_of: NodeId, dims: Vec<i64>| {
                let name = format!("{}#nhwc{dims:?}", graph.name(graph.node(shape_of).input(1).expect("a Reshape reads a shape")));
                match graph.find(&name).filter(|&v| graph.constant(v).is_some()) {
                    Some(v) => v,
                    None => graph.add_constant(&name, Tensor::i64(vec![dims.len()], dims).expect("one value per dimension")),
                }
            };
            let split = constant(graph, r1, vec![n, h, w, g, cg]);
            let merged = constant(graph, r2, vec![n, h, w, g * cg]);
            let first = graph.node(r1);
            graph.replace_node(r1, first.node().clone(), vec![Some(source), Some(split)], first.outputs().to_vec());
            graph.edit_node(t, |node| {
                node.attributes.insert("perm".into(), Attribute::Ints(vec![0, 1, 2, 4, 3]));
            });
            let last = graph.node(r2);
            let (node, x, y) = (last.node().clone(), last.input(0), last.output().expect("a Reshape has one output"));
            let inner = graph.fresh_value(&format!("{}#pushed{fresh}", graph.name(y)));
            let name = format!("{}#pushed{fresh}", node.name);
            graph.replace_node(r2, node, vec![x, Some(merged)], vec![Some(inner)]);
            graph.insert_after(r2, transpose(name, TO_NCHW.to_vec()), vec![Some(inner)], vec![Some(y)]);
        }
    }
}

/// The shape `c` of a constant operand must take so that, broadcast against
/// values before a Transpose by `perm`, it reads as before: `c` padded to
/// the rank of `perm`, with axis `i` moved to `perm[i]`. Only when that
/// moves no elements (the non-1 axes keep their order), so a reshape does.
fn untransposed_shape(c: &[usize], perm: &[i64]) -> Option<Vec<usize>> {
    let rank = perm.len();
    if c.len() > rank {
        return None;
    }
    let padded: Vec<usize> = std::iter::repeat_n(1, rank - c.len()).chain(c.iter().copied()).collect();
    let mut shape = vec![1; rank];
    for (i, &p) in perm.iter().enumerate() {
        shape[usize::try_from(p).ok()?] = padded[i];
    }
    let order: Vec<i64> = (0..rank).filter(|&i| padded[i] != 1).map(|i| perm[i]).collect();
    order.windows(2).all(|w| w[0] < w[1]).then_some(shape)
}

/// ShuffleNet's channel shuffle, X [N, C, H, W] → Reshape [N, g, C/g, H, W]
/// → Transpose (0, 2, 1, 3, 4) → Reshape [N, C, H, W], read from an NHWC
/// value through a Transpose: each intermediate read by the next node only,
/// the shapes constant and explicit.
fn channel_shuffle(graph: &TypedGraph, n: NodeId) -> Option<Change> {
    let reshape = |m: NodeId| -> Option<Vec<i64>> {
        let typed = graph.node(m);
        let node = typed.node();
        if node.op_type != "Reshape" || !node.domain.is_empty() || typed.inputs().len() != 2 || typed.outputs().len() != 1 {
            return None;
        }
        let dims = graph.constant(typed.input(1)?)?.as_i64()?;
        dims.iter().all(|&d| d > 0).then(|| dims.to_vec())
    };
    let only_reader = |v: ValueId| -> Option<NodeId> {
        match graph.readers(v) {
            [reader] if !graph.is_output(v) => Some(*reader),
            _ => None,
        }
    };
    let [batch, g, cg, h, w] = <[i64; 5]>::try_from(reshape(n)?).ok()?;
    let r1 = graph.node(n);
    let first = graph.node(graph.producer(r1.input(0)?)?);
    if perm_of(first.node())? != TO_NCHW {
        return None;
    }
    let t = only_reader(r1.output()?)?;
    if perm_of(graph.node(t).node())? != [0, 2, 1, 3, 4] {
        return None;
    }
    let r2 = only_reader(graph.node(t).output()?)?;
    if reshape(r2)? != [batch, g * cg, h, w] {
        return None;
    }
    Some(Change::Shuffle { nodes: [n, t, r2], source: first.input(0)?, dims: [batch, g, cg, h, w] })
}

fn remove_unread_transposes(graph: &mut TypedGraph) {
    loop {
        let dead: Vec<NodeId> = graph.nodes().filter(|(_, t)| perm_of(t.node()).is_some() && t.output().is_some_and(|y| graph.read_count(y) == 0)).map(|(n, _)| n).collect();
        if dead.is_empty() {
            return;
        }
        dead.into_iter().for_each(|n| graph.remove_node(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dim, Graph, ValueInfo};

    /// Two convolutions reading the graph's input share one Transpose of
    /// it to NHWC.
    #[test]
    fn a_value_read_by_several_rewritten_nodes_is_transposed_once() {
        let conv = |w: &str, y: &str| Node { name: y.into(), op_type: "Conv".into(), domain: String::new(), inputs: vec!["x".into(), w.into()], outputs: vec![y.into()], attributes: HashMap::new() };
        let weights = Tensor::f32(vec![2, 2, 1, 1], vec![1.0; 4]).unwrap();
        let graph = Graph {
            nodes: vec![conv("w", "a"), conv("w", "b")],
            inputs: vec![ValueInfo { name: "x".into(), dtype: None, shape: Some([1, 2, 3, 3].map(Dim::Known).to_vec()) }],
            outputs: ["a", "b"].iter().map(|n| ValueInfo { name: n.to_string(), dtype: None, shape: None }).collect(),
            initializers: HashMap::from([("w".to_string(), weights)]),
        };
        let mut graph = TypedGraph::new(graph, 13).unwrap();
        assert_eq!(to_channels_last(&mut graph, |_, _| true), 2);
        simplify_transposes(&mut graph);
        let x = graph.find("x").unwrap();
        let reading_x = graph.readers(x);
        assert_eq!(reading_x.len(), 1);
        assert_eq!(graph.node(reading_x[0]).node().op_type, "Transpose");
    }
}
