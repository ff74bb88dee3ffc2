//! BatchNormalization folded into the convolution before it.

use super::{OptimizationLevel, Optimizations, Pass, PassContext};
use crate::graph::{NodeId, TypedGraph};
use crate::model::Attribute;
use crate::tensor::Tensor;

/// Folds every `BatchNormalization` that directly follows a `Conv` into the
/// convolution's weights and bias, when both hold constants and nothing else
/// reads the convolution's output: y = (conv(x, W) + B - mean) * s + beta with
/// s = scale / sqrt(var + eps) is conv(x, W * s) + (B - mean) * s + beta.
/// Counts `fused`.
pub const FOLD_BATCH_NORMS: Pass = Pass { name: "BatchNormalization folding", level: OptimizationLevel::Extended, run: fold_batch_norms };

fn fold_batch_norms(graph: &mut TypedGraph, _: &PassContext) -> Optimizations {
    let mut done = Optimizations::default();
    for b in graph.order().to_vec() {
        if fold(graph, b).is_some() {
            done.fused += 1;
        }
    }
    done
}

/// Folds BatchNormalization node `b` into its Conv, if it can.
fn fold(graph: &mut TypedGraph, b: NodeId) -> Option<()> {
    let bn = graph.node(b);
    let onnx = |domain: &str| domain.is_empty() || domain == "ai.onnx";
    if bn.node().op_type != "BatchNormalization" || !onnx(&bn.node().domain) || bn.outputs().len() != 1 || bn.inputs().len() != 5 {
        return None;
    }
    if matches!(bn.node().attributes.get("training_mode"), Some(Attribute::Int(1))) {
        return None;
    }
    let (y, out) = (bn.input(0)?, bn.output()?);
    let c = graph.producer(y)?;
    let conv = graph.node(c);
    if conv.node().op_type != "Conv" || !onnx(&conv.node().domain) || graph.read_count(y) != 1 {
        return None;
    }
    let eps = match bn.node().attributes.get("epsilon") {
        Some(Attribute::Float(e)) => *e,
        _ => 1e-5,
    };
    let constant = |k: usize| graph.constant(bn.input(k)?).and_then(Tensor::as_f32).map(<[f32]>::to_vec);
    let (scale, beta, mean, var) = (constant(1)?, constant(2)?, constant(3)?, constant(4)?);
    let w = graph.constant(conv.input(1)?)?;
    let weights = w.as_f32()?;
    let m = w.shape().first().copied().unwrap_or(0);
    if m == 0 || [&scale, &beta, &mean, &var].iter().any(|v| v.len() != m) {
        return None;
    }
    let bias = match conv.input(2) {
        Some(v) => graph.constant(v).and_then(Tensor::as_f32).filter(|b| b.len() == m)?.to_vec(),
        None => vec![0.0; m],
    };
    let per_channel = weights.len() / m;
    let s: Vec<f32> = scale.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
    let new_w: Vec<f32> = weights.iter().enumerate().map(|(i, x)| x * s[i / per_channel]).collect();
    let new_b: Vec<f32> = (0..m).map(|k| (bias[k] - mean[k]) * s[k] + beta[k]).collect();
    let (x, old_w, old_b, shape) = (conv.input(0), conv.input(1), conv.input(2), w.shape().to_vec());
    let node = conv.node().clone();
    let w_id = graph.add_constant(&format!("{}::folded_weight", node.name), Tensor::f32(shape, new_w).expect("same length"));
    let b_id = graph.add_constant(&format!("{}::folded_bias", node.name), Tensor::f32(vec![m], new_b).expect("m values"));
    graph.remove_node(b);
    graph.replace_node(c, node, vec![x, Some(w_id), Some(b_id)], vec![Some(out)]);
    [old_w, old_b].into_iter().flatten().for_each(|v| graph.release_if_unread(v));
    Some(())
}
