//! Packs constant weights, once at session creation, for the CPU's own GEMM
//! (see [`crate::ops::packed`]): channels-last `Conv` becomes `PackedConv`,
//! `Gemm` (transA = 0, per-column C) and `MatMul` by a constant matrix
//! become `PackedMatMul`, each reading a new constant that holds its
//! weights in the kernel's panel order (alpha and beta folded in). Nodes
//! whose weights are computed at run time keep their generic kernels.

use super::layout::NHWC_DOMAIN;
use super::{OptimizationLevel, Optimizations, Pass, PassContext};
use crate::graph::{NodeId, TypedGraph, ValueId};
use crate::kernels::microkernel::pack;
use crate::kernels::winograd;
use crate::model::{Attribute, Node};
use crate::ops::packed::depthwise;
use crate::ops::window::Window;
use crate::ops::Attrs;
use crate::tensor::Tensor;

/// The domain of the operators this pass and the fusions after it make
/// (byob's own, never in a file).
pub const PACKED_DOMAIN: &str = "com.byob.packed";

/// Rewrites every node it can whose provider runs the packed node, 3×3
/// convolutions by Winograd's algorithm where the session allows it and
/// their output size is known. Counts `packed` and `winograd`.
pub const PACK_WEIGHTS: Pass = Pass { name: "weight packing", level: OptimizationLevel::Extended, run: pack_weights };

fn pack_weights(graph: &mut TypedGraph, cx: &PassContext) -> Optimizations {
    let mut done = Optimizations::default();
    for n in graph.order().to_vec() {
        let typed = graph.node(n);
        let node = typed.node();
        let rewrite = match (node.domain.as_str(), node.op_type.as_str()) {
            (NHWC_DOMAIN, "Conv") => conv(graph, n, cx.winograd),
            ("" | "ai.onnx", "Gemm") => gemm(graph, n),
            ("" | "ai.onnx", "MatMul") => matmul(graph, n),
            _ => None,
        };
        let Some((packed, inputs)) = rewrite else { continue };
        if !cx.taker_runs(node, &packed) {
            continue;
        }
        done.winograd += usize::from(packed.attributes.contains_key("winograd_tile"));
        done.packed += 1;
        let (old, outputs) = (typed.inputs().to_vec(), typed.outputs().to_vec());
        let inputs = inputs
            .into_iter()
            .map(|input| {
                Some(match input? {
                    Input::Value(v) => v,
                    Input::Constant(name, tensor) => match graph.find(&name).filter(|&v| graph.constant(v).is_some()) {
                        Some(v) => v,
                        None => graph.add_constant(&name, tensor),
                    },
                })
            })
            .collect();
        graph.replace_node(n, packed, inputs, outputs);
        // Each weight goes once its last reader is packed, not at the
        // end: the originals and their packed copies are never all
        // held at once (ResNet50's session peaked 100 MB higher).
        old.into_iter().flatten().for_each(|v| graph.release_if_unread(v));
    }
    done
}

/// The f32 constant `v`, if it is one.
fn constant(graph: &TypedGraph, v: Option<ValueId>) -> Option<(&[usize], &[f32])> {
    let t = graph.constant(v?)?;
    Some((t.shape(), t.as_f32()?))
}

fn tensor(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
    Tensor::f32(shape, values).expect("the shape counts the values")
}

/// A packed node and its inputs: values of the graph, or new constants
/// (by name: a weight read by several nodes is packed once).
type Rewrite = (Node, Vec<Option<Input>>);

enum Input {
    Value(ValueId),
    Constant(String, Tensor),
}

/// The Winograd tile side for node `n`, a channels-last Conv with weights
/// [m, cg, kh, kw] in `group` groups (see [`winograd::tile_for`]): one
/// that Winograd's transforms compute, with output images of a size known
/// from its output's fact.
fn winograd_tile(graph: &TypedGraph, n: NodeId, [m, cg, kh, kw]: [usize; 4], group: usize) -> Option<usize> {
    let window = Window::from_attrs(&Attrs(graph.node(n).node()), false).ok()?;
    if !winograd::applies([kh, kw], group, window.strides.as_deref(), window.dilations.as_deref()) {
        return None;
    }
    let [_, oh, ow, _] = <[usize; 4]>::try_from(graph.concrete_shape(graph.node(n).output()?)?).ok()?;
    winograd::tile_for([oh, ow], cg, m)
}

fn conv(graph: &TypedGraph, n: NodeId, allow_winograd: bool) -> Option<Rewrite> {
    let typed = graph.node(n);
    let node = typed.node();
    let (ws, w) = constant(graph, typed.input(1))?;
    let [m, cg, kh, kw] = <[usize; 4]>::try_from(ws).ok()?;
    let bias = typed.input(2);
    if bias.is_some_and(|b| constant(graph, Some(b)).is_none_or(|(s, _)| s != [m])) {
        return None;
    }
    let group = usize::try_from(Attrs(node).int("group", 1).ok()?).ok().filter(|&g| g > 0 && m % g == 0)?;
    if let Some(Attribute::Ints(k)) = node.attributes.get("kernel_shape") {
        if k[..] != [kh as i64, kw as i64] {
            return None;
        }
    }
    let (taps, mg) = (kh * kw, m / group);
    let tile = allow_winograd.then(|| winograd_tile(graph, n, [m, cg, kh, kw], group)).flatten();
    let values = if let Some(tile) = tile {
        winograd::pack_weights(tile, w, cg, m)
    } else if depthwise(cg, m, group) {
        // Depthwise: [taps, channels], channels contiguous.
        (0..taps * m).map(|i| w[(i % m) * taps + i / m]).collect()
    } else {
        // Per group, K = (ky, kx, input channel) rows by its output channels.
        (0..group).flat_map(|gi| pack(taps * cg, mg, |p, j| w[((gi * mg + j) * cg + p % cg) * taps + p / cg])).collect::<Vec<f32>>()
    };
    let name = format!("{}#packed-g{group}-w{}", graph.name(typed.input(1)?), tile.unwrap_or(0));
    let mut packed = node.clone();
    packed.op_type = "PackedConv".into();
    packed.domain = PACKED_DOMAIN.into();
    let attrs = &mut packed.attributes;
    attrs.insert("kernel_shape".into(), Attribute::Ints(vec![kh as i64, kw as i64]));
    attrs.insert("group".into(), Attribute::Int(group as i64));
    attrs.insert("input_channels".into(), Attribute::Int(cg as i64));
    attrs.insert("output_channels".into(), Attribute::Int(m as i64));
    if let Some(tile) = tile {
        attrs.insert("winograd_tile".into(), Attribute::Int(tile as i64));
    }
    let len = values.len();
    let mut inputs = vec![typed.input(0).map(Input::Value), Some(Input::Constant(name, tensor(vec![len], values)))];
    inputs.extend(bias.map(|b| Some(Input::Value(b))));
    Some((packed, inputs))
}

/// `Y = A · B (+ bias)` with B [k × n] given by `b(p, j)`.
fn linear(graph: &TypedGraph, n_id: NodeId, k: usize, n: usize, b: impl Fn(usize, usize) -> f32, bias: Option<Vec<f32>>) -> Option<Rewrite> {
    let typed = graph.node(n_id);
    let y = graph.name(typed.output()?);
    let mut packed = Node { name: typed.node().name.clone(), op_type: "PackedMatMul".into(), domain: PACKED_DOMAIN.into(), inputs: Vec::new(), outputs: Vec::new(), attributes: Default::default() };
    packed.attributes.insert("k".into(), Attribute::Int(k as i64));
    packed.attributes.insert("n".into(), Attribute::Int(n as i64));
    let values = pack(k, n, b);
    let mut inputs = vec![typed.input(0).map(Input::Value), Some(Input::Constant(format!("{y}#packed"), tensor(vec![values.len()], values)))];
    if let Some(bias) = bias {
        inputs.push(Some(Input::Constant(format!("{y}#bias"), tensor(vec![n], bias))));
    }
    Some((packed, inputs))
}

fn gemm(graph: &TypedGraph, n_id: NodeId) -> Option<Rewrite> {
    let typed = graph.node(n_id);
    let a = Attrs(typed.node());
    if a.int("transA", 0).ok()? != 0 || typed.outputs().len() != 1 {
        return None;
    }
    let trans_b = a.int("transB", 0).ok()? != 0;
    let (alpha, beta) = (a.float("alpha", 1.0).ok()?, a.float("beta", 1.0).ok()?);
    let (bs, b) = constant(graph, typed.input(1))?;
    let &[rows, cols] = bs else { return None };
    let (k, n) = if trans_b { (cols, rows) } else { (rows, cols) };
    if n == 0 {
        return None;
    }
    let bias = match typed.input(2) {
        None => None,
        Some(c) => {
            let (cs, c) = constant(graph, Some(c))?;
            // Per column only: C [n], [1, n] or a single value.
            let per_column = c.len() == n && cs.last() == Some(&n) && cs.iter().rev().skip(1).all(|&d| d == 1);
            match c.len() {
                1 => Some(vec![beta * c[0]; n]),
                _ if per_column => Some(c.iter().map(|v| beta * v).collect()),
                _ => return None,
            }
        }
    };
    linear(graph, n_id, k, n, |p, j| alpha * if trans_b { b[j * k + p] } else { b[p * n + j] }, bias)
}

fn matmul(graph: &TypedGraph, n_id: NodeId) -> Option<Rewrite> {
    let typed = graph.node(n_id);
    let (bs, b) = constant(graph, typed.input(1))?;
    let &[k, n] = bs else { return None };
    (typed.outputs().len() == 1 && n > 0).then(|| linear(graph, n_id, k, n, |p, j| b[p * n + j], None)).flatten()
}

#[cfg(test)]
mod tests {
    use crate::model::{Attribute, Graph, Node, ValueInfo};
    use crate::tensor::{DataType, Tensor};
    use crate::{Dim, Model, OptimizationLevel, SessionBuilder};
    use std::collections::HashMap;

    fn ramp(n: usize, step: f32, start: f32) -> Vec<f32> {
        (0..n).map(|i| start + step * ((i * 37 % 11) as f32 - 5.0)).collect()
    }

    /// Gemm and MatMul by constants give the same results packed
    /// (Extended) as on the generic kernels (Basic), for every attribute.
    #[test]
    fn packed_products_match_the_generic_kernels() {
        let (m, k, n) = (5, 7, 35);
        let gemm = |inputs: &[&str], out: &str, attrs: &[(&str, Attribute)]| Node {
            name: out.into(),
            op_type: "Gemm".into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![out.into()],
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        };
        let mut matmul = gemm(&["x3", "Wkn"], "mm", &[]);
        matmul.op_type = "MatMul".into();
        let graph = Graph {
            nodes: vec![
                gemm(&["x", "Wkn"], "plain", &[]),
                gemm(&["x", "Wnk", "Cn"], "trans_b", &[("transB", Attribute::Int(1)), ("alpha", Attribute::Float(0.5)), ("beta", Attribute::Float(2.0))]),
                gemm(&["x", "Wkn", "C1"], "scalar_c", &[("beta", Attribute::Float(-1.0))]),
                gemm(&["x", "Wkn", "Cmn"], "full_c", &[]),
                matmul,
            ],
            inputs: vec![
                ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(m), Dim::Known(k)]) },
                ValueInfo { name: "x3".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(2), Dim::Known(m), Dim::Known(k)]) },
            ],
            outputs: ["plain", "trans_b", "scalar_c", "full_c", "mm"].iter().map(|n| ValueInfo { name: n.to_string(), dtype: None, shape: None }).collect(),
            initializers: HashMap::from([
                ("Wkn".to_string(), Tensor::f32(vec![k, n], ramp(k * n, 0.1, 0.3)).unwrap()),
                ("Wnk".to_string(), Tensor::f32(vec![n, k], ramp(n * k, 0.2, -0.1)).unwrap()),
                ("Cn".to_string(), Tensor::f32(vec![1, n], ramp(n, 0.3, 0.0)).unwrap()),
                ("C1".to_string(), Tensor::f32(vec![1], vec![0.75]).unwrap()),
                ("Cmn".to_string(), Tensor::f32(vec![m, n], ramp(m * n, 0.05, 0.1)).unwrap()),
            ]),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
        let feeds = vec![("x".to_string(), Tensor::f32(vec![m, k], ramp(m * k, 0.3, 0.2)).unwrap()), ("x3".to_string(), Tensor::f32(vec![2, m, k], ramp(2 * m * k, 0.1, -0.2)).unwrap())];
        let session = |level| SessionBuilder::new().with_intra_op_threads(2).with_optimization_level(level).commit(model.clone()).unwrap();
        let (generic, packed) = (session(OptimizationLevel::Basic), session(OptimizationLevel::Extended));
        // A full [M, N] C stays on the generic Gemm.
        assert_eq!(packed.optimizations().packed, 4);
        let (want, got) = (generic.run(feeds.clone()).unwrap(), packed.run(feeds).unwrap());
        for ((name, a), (_, b)) in want.iter().zip(&got) {
            assert_eq!(a.shape(), b.shape(), "{name}");
            for (a, b) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{name}: {a} vs {b}");
            }
        }
    }
}
