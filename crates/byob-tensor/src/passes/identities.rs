//! Removes the nodes that pass their input through unchanged.

use super::fold::captured_names;
use super::{OptimizationLevel, Optimizations, Pass, PassContext};
use crate::graph::{NodeId, TypedGraph};
use crate::tensor::Data;

/// Removes `Identity`, and `Dropout` in inference mode (no `training_mode`
/// input, or a constant false one) whose mask nobody reads: their readers
/// read the input instead, so no step copies it. Nodes that make a graph
/// output stay (the output keeps its name), and so do those whose output
/// a subgraph reads by name. Counts `removed`.
pub const REMOVE_IDENTITIES: Pass = Pass { name: "pass-through removal", level: OptimizationLevel::Basic, run: remove_identities };

fn remove_identities(graph: &mut TypedGraph, _: &PassContext) -> Optimizations {
    let captured: std::collections::HashSet<String> = captured_names(graph.nodes().map(|(_, n)| n.node())).into_iter().map(str::to_string).collect();
    let mut done = Optimizations::default();
    for n in graph.order().to_vec() {
        let typed = graph.node(n);
        let (Some(x), Some(Some(y))) = (typed.input(0), typed.outputs().first().copied()) else { continue };
        if !passes_through(graph, n) || graph.is_output(y) || captured.contains(graph.name(y)) {
            continue;
        }
        graph.redirect(y, x);
        graph.remove_node(n);
        done.removed += 1;
    }
    done
}

fn passes_through(graph: &TypedGraph, n: NodeId) -> bool {
    let typed = graph.node(n);
    let node = typed.node();
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return false;
    }
    match node.op_type.as_str() {
        "Identity" => typed.outputs().len() == 1,
        "Dropout" => {
            let inference = match typed.input(2) {
                None => true,
                Some(t) => matches!(graph.constant(t).map(|t| t.data()), Some(Data::Bool(v)) if v[..] == [false]),
            };
            inference && typed.outputs()[1..].iter().flatten().all(|&mask| graph.read_count(mask) == 0)
        }
        _ => false,
    }
}
