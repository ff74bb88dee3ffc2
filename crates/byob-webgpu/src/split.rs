//! Weights larger than one storage binding: a fully connected layer whose
//! matrix exceeds what the device binds at once (VGG's first one holds
//! 411 MB; a software Vulkan driver binds 128 MiB) is cut into column
//! blocks, each small enough to bind: the node becomes one MatMul or Gemm
//! per block and a Concat of their outputs along the last axis. The blocks
//! are cut on the host when the subgraph is compiled, so each is an
//! ordinary constant of its own and every kernel sees only tensors that
//! fit; nothing changes at run time.

use byob_tensor::model::{Attribute, Node};
use byob_tensor::ops::{Attrs, Fact};
use byob_tensor::{DataType, Tensor};
use std::collections::HashMap;

/// How a weight of `shape` splits into column blocks of at most `limit`
/// bytes: the columns per block, or `None` when one row is already too
/// large, or it fits whole.
fn columns_per_block(rows: usize, columns: usize, limit: u64) -> Option<usize> {
    let row_bytes = 4 * rows as u64;
    let bytes = row_bytes.checked_mul(columns as u64)?;
    (bytes > limit && row_bytes <= limit).then(|| (limit / row_bytes) as usize)
}

/// The weight input of a MatMul or Gemm node and its layout: (rows, columns,
/// whether its columns are the stored rows (Gemm's transB)).
fn weight_layout(node: &Node, shape: &[usize]) -> Option<(usize, usize, bool)> {
    let [a, b] = *shape else { return None };
    match node.op_type.as_str() {
        "MatMul" => Some((a, b, false)),
        "Gemm" if Attrs(node).int("transB", 0).ok()? != 0 => Some((b, a, true)),
        "Gemm" => Some((a, b, false)),
        _ => None,
    }
}

/// Whether `node` can run on the GPU once split: a float32 MatMul or Gemm
/// whose 2-D weight (input 1) is a constant too large to bind whole whose
/// rows are not, with Gemm's C absent, a scalar, or a constant broadcast
/// along the columns, and every other tensor (`fits` says) bindable.
pub(crate) fn splittable(node: &Node, weight: Option<&Fact>, bias: Option<&Fact>, limit: u64) -> bool {
    let Some(weight) = weight.filter(|w| w.constant && w.dtype == DataType::F32) else { return false };
    let Some(shape) = weight.concrete_shape() else { return false };
    let Some((rows, columns, _)) = weight_layout(node, &shape) else { return false };
    if columns_per_block(rows, columns, limit).is_none() {
        return false;
    }
    let Some(bias) = bias else { return true };
    match bias.concrete_shape().as_deref().map(<[usize]>::last) {
        Some(None | Some(1)) => true,
        Some(Some(&n)) => n == columns && bias.constant && bias.dtype == DataType::F32,
        None => false,
    }
}

/// Copies columns `range` of a `rows`×`columns` row-major matrix, or rows
/// `range` when the columns are stored rows (`by_rows`).
fn block(values: &[f32], columns: usize, range: std::ops::Range<usize>, by_rows: bool) -> Vec<f32> {
    if by_rows {
        return values[range.start * columns..range.end * columns].to_vec();
    }
    values.chunks_exact(columns).flat_map(|row| row[range.clone()].iter().copied()).collect()
}

/// Rewrites every splittable node of `nodes` whose weight in `constants`
/// exceeds `limit` bytes into per-block nodes and a Concat.
pub(crate) fn split_large_weights(nodes: Vec<Node>, constants: &mut HashMap<String, Tensor>, limit: u64) -> Vec<Node> {
    let mut out = Vec::with_capacity(nodes.len());
    for node in nodes {
        let weight = node.inputs.get(1).and_then(|n| constants.get(n));
        let bias = node.inputs.get(2).filter(|n| !n.is_empty()).and_then(|n| constants.get(n));
        let facts = [weight, bias].map(|t| t.map(|t| Fact::constant_shape(t.dtype(), t.shape())));
        // A bias that is not a constant broadcasts over the columns (the
        // provider placed the node knowing its shape): each block reads it
        // whole.
        let Some(weight) = weight.filter(|_| splittable(&node, facts[0].as_ref(), facts[1].as_ref(), limit)) else {
            out.push(node);
            continue;
        };
        let (rows, columns, by_rows) = weight_layout(&node, weight.shape()).expect("splittable nodes have a 2-D weight");
        let per_block = columns_per_block(rows, columns, limit).expect("splittable weights split");
        let values = weight.as_f32().expect("splittable weights are float32").to_vec();
        let bias = bias.filter(|b| b.shape().last() == Some(&columns)).map(|b| b.as_f32().expect("a split bias is float32").to_vec());
        let mut parts = Vec::new();
        for (j, start) in (0..columns).step_by(per_block).enumerate() {
            let range = start..(start + per_block).min(columns);
            let width = range.len();
            let mut piece = node.clone();
            let name = |what: &str| format!("{}#{what}{j}", node.outputs[0]);
            let shape = if by_rows { vec![width, rows] } else { vec![rows, width] };
            let w = name("weight");
            constants.insert(w.clone(), Tensor::f32(shape, block(&values, if by_rows { rows } else { columns }, range.clone(), by_rows)).expect("a block's values fit its shape"));
            piece.inputs[1] = w;
            if let Some(bias) = &bias {
                let c = name("bias");
                let leading = bias.len() / columns;
                let shape: Vec<usize> = if leading == 1 { vec![width] } else { vec![leading, width] };
                constants.insert(c.clone(), Tensor::f32(shape, block(bias, columns, range, false)).expect("a block's bias fits its shape"));
                piece.inputs[2] = c;
            }
            piece.name = name("part");
            piece.outputs = vec![name("part")];
            parts.push(piece.outputs[0].clone());
            out.push(piece);
        }
        out.push(Node {
            name: format!("{}#concat", node.name),
            op_type: "Concat".into(),
            domain: String::new(),
            inputs: parts,
            outputs: vec![node.outputs[0].clone()],
            attributes: HashMap::from([("axis".to_string(), Attribute::Int(-1))]),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_fit_the_limit_and_cover_every_column() {
        assert_eq!(columns_per_block(1000, 1000, 4_000_000), None, "fits whole");
        assert_eq!(columns_per_block(1000, 1000, 3_999_999), Some(999));
        assert_eq!(columns_per_block(1000, 1000, 3_999), None, "one row is too large");
        let m: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(block(&m, 4, 1..3, false), [1.0, 2.0, 5.0, 6.0, 9.0, 10.0]);
        assert_eq!(block(&m, 4, 1..3, true), [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
    }
}
