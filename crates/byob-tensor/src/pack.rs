//! Packs constant weights, once at session creation, for the CPU's own GEMM
//! (see [`crate::ops::packed`]): channels-last `Conv` becomes `PackedConv`,
//! `Gemm` (transA = 0, per-column C) and `MatMul` by a constant matrix
//! become `PackedMatMul`, each reading a new initializer that holds its
//! weights in the kernel's panel order (alpha and beta folded in). Nodes
//! whose weights are computed at run time keep their generic kernels.

use crate::layout::NHWC_DOMAIN;
use crate::model::{Attribute, Dim, Graph, Node};
use crate::kernels::microkernel::pack;
use crate::ops::packed::{depthwise, PACKED_DOMAIN};
use crate::ops::window::Window;
use crate::kernels::winograd;
use crate::ops::Attrs;
use crate::optimize::{infer_shapes, reader_counts};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Rewrites every node it can whose rewrite `wants` accepts (the provider
/// taking the node must run the packed one), 3×3 convolutions by
/// Winograd's algorithm where `winograd` allows and their output size is
/// known. Returns how many, and how many of them are Winograd's.
pub fn pack_weights(graph: &mut Graph, opset: i64, winograd: bool, wants: impl Fn(&Node, &Node) -> bool) -> (usize, usize) {
    let shapes = winograd.then(|| infer_shapes(graph, opset));
    let (mut packed, mut winograds) = (0, 0);
    // Each weight is dropped once its last reader is packed, not at the
    // end: the originals and their packed copies are never all held at
    // once (ResNet50's session peaked 100 MB higher).
    let mut readers = reader_counts(graph);
    for i in 0..graph.nodes.len() {
        let node = &graph.nodes[i];
        let rewrite = match (node.domain.as_str(), node.op_type.as_str()) {
            (NHWC_DOMAIN, "Conv") => conv(node, graph, shapes.as_ref()),
            ("" | "ai.onnx", "Gemm") => gemm(node, graph),
            ("" | "ai.onnx", "MatMul") => matmul(node, graph),
            _ => None,
        };
        let Some((new_node, tensors)) = rewrite else { continue };
        if !wants(node, &new_node) {
            continue;
        }
        for (name, tensor) in tensors {
            graph.initializers.entry(name).or_insert(tensor);
        }
        winograds += usize::from(new_node.attributes.contains_key("winograd_tile"));
        new_node.inputs.iter().for_each(|x| *readers.entry(x.clone()).or_default() += 1);
        for x in &node.inputs {
            let count = readers.get_mut(x).expect("counted above");
            *count -= 1;
            if *count == 0 {
                graph.initializers.remove(x);
            }
        }
        graph.nodes[i] = new_node;
        packed += 1;
    }
    crate::optimize::drop_unread_initializers(graph);
    (packed, winograds)
}

/// The f32 initializer named `name`, if any.
fn constant<'a>(graph: &'a Graph, name: Option<&String>) -> Option<(&'a [usize], &'a [f32])> {
    let t = graph.initializers.get(name?)?;
    Some((t.shape(), t.as_f32()?))
}


fn tensor(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
    Tensor::f32(shape, values).expect("the shape counts the values")
}

type Rewrite = (Node, Vec<(String, Tensor)>);

/// The Winograd tile side for `node`, a channels-last Conv with weights
/// [m, cg, kh, kw] in `group` groups (see [`winograd::tile_for`]): one
/// that Winograd's transforms compute, with output images of a size known
/// from `shapes` (`None`: Winograd turned off).
fn winograd_tile(node: &Node, [m, cg, kh, kw]: [usize; 4], group: usize, shapes: Option<&HashMap<String, Vec<Dim>>>) -> Option<usize> {
    let window = Window::from_attrs(&Attrs(node), false).ok()?;
    if !winograd::applies([kh, kw], group, window.strides.as_deref(), window.dilations.as_deref()) {
        return None;
    }
    let Some([_, Dim::Known(oh), Dim::Known(ow), _]) = shapes?.get(node.outputs.first()?).map(Vec::as_slice) else { return None };
    winograd::tile_for([*oh, *ow], cg, m)
}

fn conv(node: &Node, graph: &Graph, shapes: Option<&HashMap<String, Vec<Dim>>>) -> Option<Rewrite> {
    let (ws, w) = constant(graph, node.inputs.get(1))?;
    let [m, cg, kh, kw] = <[usize; 4]>::try_from(ws).ok()?;
    let bias = node.inputs.get(2).filter(|b| !b.is_empty());
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
    let tile = winograd_tile(node, [m, cg, kh, kw], group, shapes);
    let values = if let Some(tile) = tile {
        winograd::pack_weights(tile, w, cg, m)
    } else if depthwise(cg, m, group) {
        // Depthwise: [taps, channels], channels contiguous.
        (0..taps * m).map(|i| w[(i % m) * taps + i / m]).collect()
    } else {
        // Per group, K = (ky, kx, input channel) rows by its output channels.
        (0..group).flat_map(|gi| pack(taps * cg, mg, |p, j| w[((gi * mg + j) * cg + p % cg) * taps + p / cg])).collect::<Vec<f32>>()
    };
    let name = format!("{}#packed-g{group}-w{}", node.inputs[1], tile.unwrap_or(0));
    let mut packed = node.clone();
    packed.op_type = "PackedConv".into();
    packed.domain = PACKED_DOMAIN.into();
    packed.inputs = std::iter::once(node.inputs[0].clone()).chain(std::iter::once(name.clone())).chain(bias.cloned()).collect();
    let attrs = &mut packed.attributes;
    attrs.insert("kernel_shape".into(), Attribute::Ints(vec![kh as i64, kw as i64]));
    attrs.insert("group".into(), Attribute::Int(group as i64));
    attrs.insert("input_channels".into(), Attribute::Int(cg as i64));
    attrs.insert("output_channels".into(), Attribute::Int(m as i64));
    if let Some(tile) = tile {
        attrs.insert("winograd_tile".into(), Attribute::Int(tile as i64));
    }
    let len = values.len();
    Some((packed, vec![(name, tensor(vec![len], values))]))
}

/// `Y = A · B (+ bias)` with B [k × n] given by `b(p, j)`.
fn linear(node: &Node, k: usize, n: usize, b: impl Fn(usize, usize) -> f32, bias: Option<Vec<f32>>) -> Rewrite {
    let name = format!("{}#packed", node.outputs[0]);
    let mut packed = Node { name: node.name.clone(), op_type: "PackedMatMul".into(), domain: PACKED_DOMAIN.into(), inputs: vec![node.inputs[0].clone(), name.clone()], outputs: node.outputs.clone(), attributes: Default::default() };
    packed.attributes.insert("k".into(), Attribute::Int(k as i64));
    packed.attributes.insert("n".into(), Attribute::Int(n as i64));
    let values = pack(k, n, b);
    let mut tensors = vec![(name, tensor(vec![values.len()], values))];
    if let Some(bias) = bias {
        let name = format!("{}#bias", node.outputs[0]);
        packed.inputs.push(name.clone());
        tensors.push((name, tensor(vec![n], bias)));
    }
    (packed, tensors)
}

fn gemm(node: &Node, graph: &Graph) -> Option<Rewrite> {
    let a = Attrs(node);
    if a.int("transA", 0).ok()? != 0 || node.outputs.len() != 1 {
        return None;
    }
    let trans_b = a.int("transB", 0).ok()? != 0;
    let (alpha, beta) = (a.float("alpha", 1.0).ok()?, a.float("beta", 1.0).ok()?);
    let (bs, b) = constant(graph, node.inputs.get(1))?;
    let &[rows, cols] = bs else { return None };
    let (k, n) = if trans_b { (cols, rows) } else { (rows, cols) };
    if n == 0 {
        return None;
    }
    let bias = match node.inputs.get(2).filter(|c| !c.is_empty()) {
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
    Some(linear(node, k, n, |p, j| alpha * if trans_b { b[j * k + p] } else { b[p * n + j] }, bias))
}

fn matmul(node: &Node, graph: &Graph) -> Option<Rewrite> {
    let (bs, b) = constant(graph, node.inputs.get(1))?;
    let &[k, n] = bs else { return None };
    (node.outputs.len() == 1 && n > 0).then(|| linear(node, k, n, |p, j| b[p * n + j], None))
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
