//! Dead-node elimination.

use super::{OptimizationLevel, Optimizations, Pass, PassContext};
use crate::graph::TypedGraph;
use std::collections::HashSet;

/// Removes the nodes no graph output depends on. Counts `removed`.
pub const REMOVE_DEAD_NODES: Pass = Pass { name: "dead-node elimination", level: OptimizationLevel::Basic, run: remove_dead_nodes };

fn remove_dead_nodes(graph: &mut TypedGraph, _: &PassContext) -> Optimizations {
    let mut wanted: HashSet<_> = graph.outputs().iter().map(|(_, v)| *v).collect();
    let mut dead = Vec::new();
    for (n, typed) in graph.nodes().collect::<Vec<_>>().into_iter().rev() {
        if typed.outputs().iter().flatten().any(|y| wanted.contains(y)) {
            wanted.extend(typed.inputs().iter().flatten().copied());
        } else {
            dead.push(n);
        }
    }
    let removed = dead.len();
    dead.into_iter().for_each(|n| graph.remove_node(n));
    Optimizations { removed, ..Optimizations::default() }
}
