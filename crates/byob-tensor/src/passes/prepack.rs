//! Gemm weights laid out once for the generic GEMM kernel.

use super::{OptimizationLevel, Optimizations, Pass, PassContext};
use crate::graph::TypedGraph;
use crate::model::Attribute;
use crate::tensor::Tensor;

/// Prepares the constant weights of the `Gemm` nodes left (to the generic
/// kernel or another provider) once, at session creation: a `transB = 1`
/// weight (PyTorch's [out, in]) is stored transposed so that every run
/// streams it row-major, as the kernel's packing prefers. A weight read
/// by several Gemms is transposed once. Counts `prepacked`.
pub const PREPACK_GEMM_WEIGHTS: Pass = Pass { name: "Gemm weight prepacking", level: OptimizationLevel::Extended, run: prepack_gemm_weights };

fn prepack_gemm_weights(graph: &mut TypedGraph, _: &PassContext) -> Optimizations {
    let mut done = Optimizations::default();
    for n in graph.order().to_vec() {
        let typed = graph.node(n);
        let node = typed.node();
        let trans_b = matches!(node.attributes.get("transB"), Some(Attribute::Int(1)));
        let Some(w) = typed.input(1) else { continue };
        if node.op_type != "Gemm" || !node.domain.is_empty() || !trans_b {
            continue;
        }
        let name = format!("{}#transposed", graph.name(w));
        let transposed = match graph.find(&name).filter(|&t| graph.constant(t).is_some()) {
            Some(t) => t,
            None => {
                let Some(weights) = graph.constant(w).filter(|w| w.rank() == 2) else { continue };
                let Some(values) = weights.as_f32() else { continue };
                let (rows, k) = (weights.shape()[0], weights.shape()[1]);
                let values: Vec<f32> = (0..k * rows).map(|i| values[(i % rows) * k + i / rows]).collect();
                graph.add_constant(&name, Tensor::f32(vec![k, rows], values).expect("k·n values"))
            }
        };
        let typed = graph.node(n);
        let mut node = typed.node().clone();
        node.attributes.insert("transB".into(), Attribute::Int(0));
        let mut inputs = typed.inputs().to_vec();
        inputs[1] = Some(transposed);
        let outputs = typed.outputs().to_vec();
        graph.replace_node(n, node, inputs, outputs);
        graph.release_if_unread(w);
        done.prepacked += 1;
    }
    done
}
