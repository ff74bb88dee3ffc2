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

/// How a weight of `rows`×`columns` splits into column blocks of at most
/// `limit` bytes: the columns per block, or `None` when it fits whole or
/// one column is already too large.
fn columns_per_block(rows: usize, columns: usize, limit: u64) -> Option<usize> {
    let column_bytes = 4 * rows as u64;
    let bytes = column_bytes.checked_mul(columns as u64)?;
    (bytes > limit && column_bytes <= limit).then(|| (limit / column_bytes) as usize)
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
/// whose 2-D weight (input 1) is a constant too large to bind whole but
/// not column by column, with Gemm's C absent or a constant (broadcast
/// along the columns, or one value per column). `weight` and `bias` are
/// what is known of inputs 1 and 2 (`None`: nothing).
pub(crate) fn splittable(node: &Node, weight: Option<&Fact>, bias: Option<&Fact>, limit: u64) -> bool {
    let Some(weight) = weight.filter(|w| w.constant && w.dtype == DataType::F32) else { return false };
    let Some(shape) = weight.concrete_shape() else { return false };
    let Some((rows, columns, _)) = weight_layout(node, &shape) else { return false };
    if columns_per_block(rows, columns, limit).is_none() {
        return false;
    }
    if node.inputs.get(2).is_none_or(String::is_empty) {
        return true;
    }
    let Some(bias) = bias.filter(|b| b.constant && b.dtype == DataType::F32) else { return false };
    let last = bias.concrete_shape().map(|s| s.last().copied());
    matches!(last, Some(None | Some(1))) || last == Some(Some(columns))
}

/// Copies columns `range` of a row-major matrix of `columns` columns, or
/// rows `range` when the columns are stored rows (`by_rows`).
fn block(values: &[f32], columns: usize, range: std::ops::Range<usize>, by_rows: bool) -> Vec<f32> {
    if by_rows {
        return values[range.start * columns..range.end * columns].to_vec();
    }
    values.chunks_exact(columns).flat_map(|row| row[range.clone()].iter().copied()).collect()
}

/// The constants and nodes replacing a splittable `node`: one MatMul or
/// Gemm per column block of its weight (with the bias's matching columns)
/// and a Concat of their outputs.
fn split(node: &Node, weight: &Tensor, bias: Option<&Tensor>, limit: u64) -> (Vec<(String, Tensor)>, Vec<Node>) {
    let (rows, columns, by_rows) = weight_layout(node, weight.shape()).expect("splittable nodes have a 2-D weight");
    let per_block = columns_per_block(rows, columns, limit).expect("splittable weights split");
    let values = weight.as_f32().expect("splittable weights are float32");
    let bias = bias.filter(|b| b.shape().last() == Some(&columns)).and_then(Tensor::as_f32);
    let (mut constants, mut nodes) = (Vec::new(), Vec::new());
    for (j, start) in (0..columns).step_by(per_block).enumerate() {
        let range = start..(start + per_block).min(columns);
        let width = range.len();
        let name = |what: &str| format!("{}#{what}{j}", node.outputs[0]);
        let mut piece = node.clone();
        let shape = if by_rows { vec![width, rows] } else { vec![rows, width] };
        let stored_columns = if by_rows { rows } else { columns };
        constants.push((name("weight"), Tensor::f32(shape, block(values, stored_columns, range.clone(), by_rows)).expect("a block's values fit its shape")));
        piece.inputs[1] = name("weight");
        if let Some(bias) = bias {
            let leading = bias.len() / columns;
            let shape: Vec<usize> = if leading == 1 { vec![width] } else { vec![leading, width] };
            constants.push((name("bias"), Tensor::f32(shape, block(bias, columns, range, false)).expect("a block's bias fits its shape")));
            piece.inputs[2] = name("bias");
        }
        piece.name = name("part");
        piece.outputs = vec![name("part")];
        nodes.push(piece);
    }
    nodes.push(Node {
        name: format!("{}#concat", node.name),
        op_type: "Concat".into(),
        domain: String::new(),
        inputs: nodes.iter().map(|n| n.outputs[0].clone()).collect(),
        outputs: vec![node.outputs[0].clone()],
        attributes: HashMap::from([("axis".to_string(), Attribute::Int(-1))]),
    });
    (constants, nodes)
}

/// Rewrites every splittable node of `nodes` whose weight in `constants`
/// exceeds `limit` bytes into per-block nodes and a Concat; the weights
/// (and biases) it split leave `constants` unless another node reads them,
/// so that no tensor larger than one binding is uploaded.
pub(crate) fn split_large_weights(nodes: Vec<Node>, constants: &mut HashMap<String, Tensor>, limit: u64) -> Vec<Node> {
    let mut out = Vec::with_capacity(nodes.len());
    let mut split_any = false;
    for node in nodes {
        let constant = |i: usize| node.inputs.get(i).and_then(|n| constants.get(n));
        let fact = |i: usize| constant(i).map(|t| Fact::constant_shape(t.dtype(), t.shape()));
        let (weight, bias) = (constant(1), constant(2));
        match weight.filter(|_| splittable(&node, fact(1).as_ref(), fact(2).as_ref(), limit)) {
            Some(weight) => {
                let (blocks, pieces) = split(&node, weight, bias, limit);
                constants.extend(blocks);
                out.extend(pieces);
                split_any = true;
            }
            None => out.push(node),
        }
    }
    if split_any {
        constants.retain(|name, _| out.iter().any(|n| n.inputs.contains(name)));
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
