//! How the typed graph keeps its facts: inferred by the CPU's kernels, once
//! at build in topological order, then again only for nodes an edit makes
//! or changes, and carried on downstream while they change.

use super::{NodeId, TypedGraph};
use crate::model::{Attribute, Node};
use crate::ops::{Fact, OpError};
use crate::provider::ExecutionProvider;
use crate::tensor::Tensor;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

/// Constants up to this many elements are facts with their contents (the
/// shape inputs of Reshape and the like); larger ones, weights, by shape
/// only, so that inference never copies them.
const SMALL_CONSTANT: usize = 1024;

/// What inference may know of a constant.
pub(super) fn constant_fact(t: &Tensor) -> Fact {
    if t.len() <= SMALL_CONSTANT {
        Fact::constant(t.clone())
    } else {
        Fact::constant_shape(t.dtype(), t.shape())
    }
}

/// Whether `node` holds a subgraph: its kernel builds sessions for its
/// bodies and infers nothing before running, so the graph does not build
/// it just to learn that (If nodes whose condition is known are inlined
/// by constant folding without ever being built).
fn holds_subgraph(node: &Node) -> bool {
    node.attributes.values().any(|a| matches!(a, Attribute::Graph(_)))
}

impl TypedGraph {
    /// Infers node `n`'s output facts from its inputs' (outputs stay
    /// unknown while an input is). Returns the error of a kernel that
    /// refuses inputs it knows; the facts then stay unknown.
    pub(super) fn infer(&mut self, n: NodeId) -> Result<(), OpError> {
        let typed = self.nodes[n.0].as_mut().expect("a node of this graph");
        if typed.kernel.is_none() && !holds_subgraph(&typed.node) {
            typed.kernel = self.cpu.create_kernel(&typed.node, self.opset).ok();
        }
        let typed = self.nodes[n.0].as_ref().expect("a node of this graph");
        let known: Option<Vec<Option<&Fact>>> = typed.inputs.iter().map(|x| x.map_or(Some(None), |x| self.values[x.0].fact.as_ref().map(Some))).collect();
        let inferred = match (&typed.kernel, known) {
            (Some(kernel), Some(inputs)) => kernel.infer(&inputs),
            _ => Ok(Vec::new()),
        };
        let outputs = typed.outputs.clone();
        let (facts, refused) = match inferred {
            Ok(facts) => (facts, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        let mut facts = facts.into_iter();
        for y in outputs {
            let fact = facts.next();
            if let Some(y) = y {
                let value = &mut self.values[y.0];
                if value.constant.is_none() {
                    value.fact = fact;
                }
            }
        }
        self.nodes[n.0].as_mut().expect("a node of this graph").refused = refused.clone();
        refused.map_or(Ok(()), Err)
    }

    /// Infers node `n` again (it is new or changed) and carries any change
    /// of its outputs' facts downstream.
    pub(super) fn refresh(&mut self, n: NodeId) {
        self.propagate(vec![n]);
    }

    /// Infers `start` again, then every reader of a value whose fact
    /// changed, in graph order, each node at most once per change wave.
    pub(super) fn propagate(&mut self, start: Vec<NodeId>) {
        if start.is_empty() {
            return;
        }
        let rank: HashMap<NodeId, usize> = self.order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut queue: BinaryHeap<Reverse<(usize, NodeId)>> = BinaryHeap::new();
        let mut queued = HashSet::new();
        for n in start {
            if let Some(&r) = rank.get(&n) {
                if queued.insert(n) {
                    queue.push(Reverse((r, n)));
                }
            }
        }
        while let Some(Reverse((_, n))) = queue.pop() {
            queued.remove(&n);
            let outputs: Vec<_> = self.node(n).outputs.iter().flatten().copied().collect();
            let before: Vec<Option<Fact>> = outputs.iter().map(|y| self.values[y.0].fact.clone()).collect();
            // (A refusal is reported by the session if the node is still
            // there when it runs.)
            let _ = self.infer(n);
            for (y, old) in outputs.iter().zip(before) {
                if self.values[y.0].fact == old {
                    continue;
                }
                for &reader in &self.values[y.0].readers {
                    if let Some(&r) = rank.get(&reader) {
                        if queued.insert(reader) {
                            queue.push(Reverse((r, reader)));
                        }
                    }
                }
            }
        }
    }
}
