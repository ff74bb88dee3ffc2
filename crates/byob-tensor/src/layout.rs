//! The channels-last (NHWC) layout pass, for providers whose convolution
//! and pooling kernels prefer it (as ONNX Runtime's JSEP WebGPU provider
//! does).
//!
//! Each 2-D `Conv`, `MaxPool`, `AveragePool`, `GlobalMaxPool`,
//! `GlobalAveragePool` and `BatchNormalization` that such a provider takes is rewritten into its
//! [`NHWC_DOMAIN`] variant between two Transposes (to NHWC before, back to
//! NCHW after). Transposes are then pushed down through layout-agnostic
//! nodes (elementwise ops, Concat with its axis remapped) and adjacent
//! inverse pairs cancel, so that a chain of convolutions stays in NHWC and
//! Transposes remain only where the layout really changes: typically at the
//! graph input and before the classifier's Flatten.
//!
//! The NHWC variants keep their weights in ONNX's OIHW order; only the
//! activations change layout.

use crate::model::{Attribute, Graph, Node};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};

/// The domain of the channels-last operator variants.
pub const NHWC_DOMAIN: &str = "com.byob.nhwc";

/// The operators that have a channels-last variant (BatchNormalization
/// too, since graphs whose weights are computed keep it unfused).
pub const CHANNELS_LAST_OPS: [&str; 6] = ["Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "BatchNormalization"];

/// How a provider wants image activations laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// ONNX's own [N, C, H, W].
    #[default]
    Nchw,
    /// [N, H, W, C].
    Nhwc,
}

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

fn transpose(name: String, input: String, output: String, perm: Vec<i64>) -> Node {
    Node {
        name,
        op_type: "Transpose".into(),
        domain: String::new(),
        inputs: vec![input],
        outputs: vec![output],
        attributes: HashMap::from([("perm".to_string(), Attribute::Ints(perm))]),
    }
}

fn perm_of(node: &Node) -> Option<&[i64]> {
    match (node.op_type.as_str(), node.attributes.get("perm")) {
        ("Transpose", Some(Attribute::Ints(p))) if node.domain.is_empty() => Some(p),
        _ => None,
    }
}

/// Rewrites the nodes `wants` accepts (given the node and its NHWC variant)
/// to channels-last and cancels the Transposes that leaves back to back.
/// Returns how many nodes were rewritten.
pub fn to_channels_last(graph: &mut Graph, wants: impl Fn(&Node, &Node) -> bool) -> usize {
    let mut four_d: HashSet<String> = graph.inputs.iter().filter(|v| v.shape.as_ref().is_some_and(|s| s.len() == 4)).map(|v| v.name.clone()).collect();
    let mut nodes = Vec::with_capacity(graph.nodes.len());
    let mut rewritten = 0;
    // One Transpose to NHWC per value, whatever number of nodes read it.
    let mut nhwc_of: HashMap<String, String> = HashMap::new();
    for node in std::mem::take(&mut graph.nodes) {
        let input_4d = node.inputs.first().is_some_and(|i| four_d.contains(i));
        let weights_rank = node.inputs.get(1).and_then(|w| graph.initializers.get(w)).map(|w| w.rank());
        let variant = channels_last_variant(&node, input_4d, weights_rank).filter(|v| wants(&node, v));
        let op = node.op_type.as_str();
        let keeps_rank = CHANNELS_LAST_OPS.contains(&op) || UNARY.contains(&op) || ELEMENTWISE.contains(&op) || matches!(op, "Concat" | "LRN");
        if (variant.is_some() || keeps_rank && input_4d) && !node.outputs.is_empty() {
            four_d.insert(node.outputs[0].clone());
        }
        let Some(mut variant) = variant else {
            nodes.push(node);
            continue;
        };
        rewritten += 1;
        let (x, y) = (node.inputs[0].clone(), node.outputs[0].clone());
        let x_nhwc = nhwc_of.entry(x.clone()).or_insert_with(|| {
            let x_nhwc = format!("{x}#nhwc{rewritten}");
            nodes.push(transpose(format!("{}#to_nhwc", node.name), x, x_nhwc.clone(), TO_NHWC.to_vec()));
            x_nhwc
        });
        variant.inputs[0] = x_nhwc.clone();
        let y_nhwc = format!("{y}#nhwc");
        variant.outputs[0] = y_nhwc.clone();
        nodes.push(variant);
        nodes.push(transpose(format!("{}#to_nchw", node.name), y_nhwc, y, TO_NCHW.to_vec()));
    }
    graph.nodes = nodes;
    if rewritten > 0 {
        simplify_transposes(graph);
    }
    rewritten
}

/// Pushes Transposes down through layout-agnostic nodes, cancels inverse
/// pairs and drops Transposes nobody reads, until nothing changes.
fn simplify_transposes(graph: &mut Graph) {
    let outputs: HashSet<String> = graph.outputs.iter().map(|v| v.name.clone()).collect();
    let mut fresh = 0;
    // Every push moves a Transpose past a node toward the outputs, so this
    // terminates; the bound only guards against a rule bug.
    for _ in 0..4 * graph.nodes.len() + 4 {
        let producer: HashMap<String, usize> = graph.nodes.iter().enumerate().flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.clone(), i))).collect();
        let read: HashSet<&str> = graph.nodes.iter().flat_map(|n| n.inputs.iter().map(String::as_str)).chain(outputs.iter().map(String::as_str)).collect();
        let transposed = |name: &str| producer.get(name).and_then(|&p| Some((p, perm_of(&graph.nodes[p])?.to_vec())));
        let mut change = None;
        for (i, node) in graph.nodes.iter().enumerate() {
            if !node.domain.is_empty() {
                continue;
            }
            if let Some(shuffle) = channel_shuffle(graph, i, &producer, &outputs) {
                change = Some(shuffle);
                break;
            }
            // An inverse pair: read the first Transpose's input directly
            // (unless the second makes a graph output, whose name stays).
            if let (Some(p2), Some((first, p1))) = (perm_of(node), node.inputs.first().and_then(|x| transposed(x))) {
                if p2.len() == p1.len() && (0..p2.len()).all(|k| p1[p2[k] as usize] == k as i64) && !outputs.contains(&node.outputs[0]) {
                    change = Some(Change::Bypass { node: i, to: graph.nodes[first].inputs[0].clone() });
                    break;
                }
                continue;
            }
            let op = node.op_type.as_str();
            let data_inputs = if UNARY.contains(&op) {
                // Dropout's mask would change layout too: only when unread.
                if node.outputs[1..].iter().any(|o| !o.is_empty() && read.contains(o.as_str())) {
                    continue;
                }
                1
            } else if ELEMENTWISE.contains(&op) || op == "Concat" {
                node.inputs.len()
            } else {
                continue;
            };
            // Every data input must come through the same Transpose perm,
            // except constants of elementwise ops, which are rewritten.
            let Some(perm) = node.inputs[..data_inputs].iter().find_map(|x| transposed(x)).map(|(_, p)| p) else { continue };
            let sources: Option<Vec<Source>> = node.inputs[..data_inputs]
                .iter()
                .map(|x| match transposed(x) {
                    Some((p, q)) if q == perm => Some(Source::Value(graph.nodes[p].inputs[0].clone())),
                    Some(_) => None,
                    None if op == "Concat" || UNARY.contains(&op) => None,
                    None => graph.initializers.get(x).and_then(|c| untransposed_shape(c.shape(), &perm)).map(|shape| Source::Constant(x.clone(), shape)),
                })
                .collect();
            let Some(sources) = sources else { continue };
            change = Some(Change::Push { node: i, sources, perm });
            break;
        }
        match change {
            Some(Change::Bypass { node, to }) => {
                let old = graph.nodes[node].outputs[0].clone();
                for n in &mut graph.nodes {
                    n.inputs.iter_mut().filter(|x| **x == old).for_each(|x| *x = to.clone());
                }
            }
            Some(Change::Push { node, sources, perm }) => {
                fresh += 1;
                let n = &mut graph.nodes[node];
                if n.op_type == "Concat" {
                    // Axis a of the transposed value is axis perm[a] of its input.
                    let rank = perm.len() as i64;
                    let axis = match n.attributes.get("axis") {
                        Some(Attribute::Int(a)) if (-rank..rank).contains(a) => (a + rank) % rank,
                        _ => break,
                    };
                    n.attributes.insert("axis".into(), Attribute::Int(perm[axis as usize]));
                }
                for (input, source) in n.inputs.iter_mut().zip(sources) {
                    *input = match source {
                        Source::Value(name) => name,
                        Source::Constant(name, shape) => {
                            let renamed = format!("{name}#{shape:?}");
                            if !graph.initializers.contains_key(&renamed) {
                                let mut c = graph.initializers[&name].clone();
                                c.reshape(shape).expect("the same element count");
                                graph.initializers.insert(renamed.clone(), c);
                            }
                            renamed
                        }
                    };
                }
                let y = n.outputs[0].clone();
                let inner = format!("{y}#pushed{fresh}");
                n.outputs[0] = inner.clone();
                let name = format!("{}#pushed{fresh}", n.name);
                graph.nodes.insert(node + 1, transpose(name, inner, y, perm));
            }
            Some(Change::Shuffle { nodes: [r1, t, r2], source, dims: [n, g, cg, h, w] }) => {
                fresh += 1;
                let mut constant = |name: &str, dims: Vec<i64>| {
                    let renamed = format!("{name}#nhwc{dims:?}");
                    graph.initializers.entry(renamed.clone()).or_insert_with(|| Tensor::i64(vec![dims.len()], dims).expect("one value per dimension"));
                    renamed
                };
                let split = constant(&graph.nodes[r1].inputs[1].clone(), vec![n, h, w, g, cg]);
                let merged = constant(&graph.nodes[r2].inputs[1].clone(), vec![n, h, w, g * cg]);
                graph.nodes[r1].inputs = vec![source, split];
                graph.nodes[t].attributes.insert("perm".into(), Attribute::Ints(vec![0, 1, 2, 4, 3]));
                let y = graph.nodes[r2].outputs[0].clone();
                let inner = format!("{y}#pushed{fresh}");
                graph.nodes[r2].inputs[1] = merged;
                graph.nodes[r2].outputs[0] = inner.clone();
                let name = format!("{}#pushed{fresh}", graph.nodes[r2].name);
                graph.nodes.insert(r2 + 1, transpose(name, inner, y, TO_NCHW.to_vec()));
            }
            None => break,
        }
        remove_unread_transposes(graph, &outputs);
    }
    remove_unread_transposes(graph, &outputs);
}

enum Change {
    /// A channel shuffle (nodes Reshape, Transpose, Reshape) whose input
    /// comes from NHWC through a Transpose: done on NHWC's channel axis
    /// instead (`source`), a Transpose to NCHW after it.
    Shuffle { nodes: [usize; 3], source: String, dims: [i64; 5] },
    /// Node `node`'s readers read `to` instead.
    Bypass { node: usize, to: String },
    /// Node `node` reads `sources` (the Transposes' inputs) and a Transpose
    /// by `perm` follows it.
    Push { node: usize, sources: Vec<Source>, perm: Vec<i64> },
}

/// A data input of a node a Transpose is pushed through.
enum Source {
    /// The value the Transpose read.
    Value(String),
    /// A constant, to be read in this shape.
    Constant(String, Vec<usize>),
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
fn channel_shuffle(graph: &Graph, i: usize, producer: &HashMap<String, usize>, outputs: &HashSet<String>) -> Option<Change> {
    let reshape = |node: &Node| -> Option<Vec<i64>> {
        if node.op_type != "Reshape" || !node.domain.is_empty() || node.inputs.len() != 2 || node.outputs.len() != 1 {
            return None;
        }
        let dims = graph.initializers.get(&node.inputs[1])?.as_i64()?;
        dims.iter().all(|&d| d > 0).then(|| dims.to_vec())
    };
    let only_reader = |value: &str| -> Option<usize> {
        if outputs.contains(value) {
            return None;
        }
        let mut readers = graph.nodes.iter().enumerate().filter(|(_, n)| n.inputs.iter().any(|x| x == value));
        let (j, _) = readers.next()?;
        readers.next().is_none().then_some(j)
    };
    let r1 = &graph.nodes[i];
    let [n, g, cg, h, w] = <[i64; 5]>::try_from(reshape(r1)?).ok()?;
    let first = &graph.nodes[*producer.get(&r1.inputs[0])?];
    if perm_of(first)? != TO_NCHW {
        return None;
    }
    let t = only_reader(&r1.outputs[0])?;
    if perm_of(&graph.nodes[t])? != [0, 2, 1, 3, 4] {
        return None;
    }
    let r2 = only_reader(&graph.nodes[t].outputs[0])?;
    if reshape(&graph.nodes[r2])? != [n, g * cg, h, w] {
        return None;
    }
    Some(Change::Shuffle { nodes: [i, t, r2], source: first.inputs[0].clone(), dims: [n, g, cg, h, w] })
}

fn remove_unread_transposes(graph: &mut Graph, outputs: &HashSet<String>) {
    loop {
        let read: HashSet<&str> = graph.nodes.iter().flat_map(|n| n.inputs.iter().map(String::as_str)).collect();
        let before = graph.nodes.len();
        let dead: Vec<bool> = graph.nodes.iter().map(|n| perm_of(n).is_some() && !read.contains(n.outputs[0].as_str()) && !outputs.contains(&n.outputs[0])).collect();
        crate::optimize::remove_nodes(graph, &dead);
        if graph.nodes.len() == before {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dim, ValueInfo};

    /// Two convolutions reading the graph's input share one Transpose of
    /// it to NHWC.
    #[test]
    fn a_value_read_by_several_rewritten_nodes_is_transposed_once() {
        let conv = |w: &str, y: &str| Node { name: y.into(), op_type: "Conv".into(), domain: String::new(), inputs: vec!["x".into(), w.into()], outputs: vec![y.into()], attributes: HashMap::new() };
        let weights = Tensor::f32(vec![2, 2, 1, 1], vec![1.0; 4]).unwrap();
        let mut graph = Graph {
            nodes: vec![conv("w", "a"), conv("w", "b")],
            inputs: vec![ValueInfo { name: "x".into(), dtype: None, shape: Some([1, 2, 3, 3].map(Dim::Known).to_vec()) }],
            outputs: ["a", "b"].iter().map(|n| ValueInfo { name: n.to_string(), dtype: None, shape: None }).collect(),
            initializers: HashMap::from([("w".to_string(), weights)]),
        };
        assert_eq!(to_channels_last(&mut graph, |_, _| true), 2);
        let reading_x: Vec<&Node> = graph.nodes.iter().filter(|n| n.inputs.contains(&"x".to_string())).collect();
        assert_eq!(reading_x.len(), 1, "{:#?}", graph.nodes);
        assert_eq!(reading_x[0].op_type, "Transpose");
    }
}
