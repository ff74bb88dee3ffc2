//! The typed graph: what a session's passes rewrite and what it then runs.
//!
//! Built once from a loaded [`model::Graph`] (the model as written, values
//! by name): every value gets a [`ValueId`], every node a [`NodeId`], and
//! the graph keeps, for each value, its producer, its readers and its
//! [`Fact`] (element type, shape with symbolic dimensions, contents when
//! known), inferred once at build by the CPU's kernels in topological
//! order. Passes change the graph only through its edit operations
//! ([`insert_node`](TypedGraph::insert_node),
//! [`replace_node`](TypedGraph::replace_node),
//! [`remove_node`](TypedGraph::remove_node),
//! [`redirect`](TypedGraph::redirect),
//! [`fold_into_constants`](TypedGraph::fold_into_constants)), which keep
//! the indexes and the facts true: a node that is new or changed has its
//! outputs' facts inferred again, and a fact that changes is carried on to
//! every node downstream. No pass builds a producer map or infers shapes
//! of its own.
//!
//! A subgraph (an If branch, a Loop or Scan body) stays a [`model::Graph`]
//! in its node's attribute until the node's kernel builds it as a session
//! of its own, from a typed graph of this same type; the values it reads
//! from enclosing graphs are inputs of the node that holds it (see
//! [`model::Subgraph`]), so here they have readers like any other input.
//!
//! Each node keeps its [`Node`] (operator, domain, attributes, and its
//! values' names, which the graph writes in step with the ids) for the
//! providers, which take nodes as ONNX describes them, and the CPU kernel
//! that inferred its facts, which the session reuses when the CPU runs it.

mod facts;

use crate::model::{self, Node, ValueInfo};
use crate::ops::{Fact, Op};
use crate::provider::CpuProvider;
use crate::session::SessionError;
use crate::tensor::Tensor;
use std::collections::HashMap;

/// A value of a [`TypedGraph`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(usize);

impl ValueId {
    /// Its index among the graph's values (dense, from 0).
    pub fn index(self) -> usize {
        self.0
    }
}

/// A node of a [`TypedGraph`] (ids stay valid when others are removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(usize);

/// What the graph knows of one value.
#[derive(Debug)]
struct Value {
    name: String,
    fact: Option<Fact>,
    constant: Option<Tensor>,
    producer: Option<NodeId>,
    /// One entry per input slot that reads it.
    readers: Vec<NodeId>,
}

/// A node and the values it reads and writes.
#[derive(Debug)]
pub struct TypedNode {
    node: Node,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
    /// The CPU's kernel for `node`, made to infer its facts.
    kernel: Option<Box<dyn Op>>,
    /// Why that kernel refused the input facts, if it did: the session's
    /// error if the node is still there when it is built.
    refused: Option<crate::ops::OpError>,
}

impl TypedNode {
    /// The node as ONNX describes it (names of its values included).
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Its inputs (`None`: an omitted optional input).
    pub fn inputs(&self) -> &[Option<ValueId>] {
        &self.inputs
    }

    /// Its outputs (`None`: an output the model does not name).
    pub fn outputs(&self) -> &[Option<ValueId>] {
        &self.outputs
    }

    /// Its one output, when it has exactly one.
    pub fn output(&self) -> Option<ValueId> {
        match self.outputs[..] {
            [Some(y)] => Some(y),
            _ => None,
        }
    }

    /// Input `k`, when present.
    pub fn input(&self, k: usize) -> Option<ValueId> {
        self.inputs.get(k).copied().flatten()
    }

    /// Why its CPU kernel refused the facts of its inputs, if it did.
    pub fn refused(&self) -> Option<&crate::ops::OpError> {
        self.refused.as_ref()
    }
}

/// A graph with value ids, a producer/reader index and a fact per value.
pub struct TypedGraph {
    values: Vec<Value>,
    by_name: HashMap<String, ValueId>,
    nodes: Vec<Option<TypedNode>>,
    /// Node ids in an order where every value is written before it is read.
    order: Vec<NodeId>,
    inputs: Vec<(ValueInfo, ValueId)>,
    outputs: Vec<(ValueInfo, ValueId)>,
    opset: i64,
    cpu: CpuProvider,
}

impl TypedGraph {
    /// Indexes `graph` and infers every value's fact. Fails on a value read
    /// but never produced and on a cycle. A node whose kernel refuses the
    /// facts of its inputs keeps the refusal (see [`TypedNode::refused`]).
    pub fn new(graph: model::Graph, opset: i64) -> Result<Self, SessionError> {
        let model::Graph { nodes, inputs, outputs, initializers } = graph;
        let mut typed = Self { values: Vec::new(), by_name: HashMap::new(), nodes: Vec::new(), order: Vec::new(), inputs: Vec::new(), outputs: Vec::new(), opset, cpu: CpuProvider::new() };
        for (name, tensor) in initializers {
            let id = typed.value(&name);
            typed.set_constant(id, tensor);
        }
        for v in inputs {
            let id = typed.value(&v.name);
            if let (Some(dtype), Some(shape)) = (v.dtype, &v.shape) {
                typed.values[id.0].fact = Some(Fact::new(dtype, shape.clone()));
            }
            typed.inputs.push((v, id));
        }
        for node in topological(nodes, &typed.by_name)? {
            let id = typed.push_node(node);
            typed.order.push(id);
            // (A refusal stays with the node: see `TypedNode::refused`.)
            let _ = typed.infer(id);
        }
        for v in outputs {
            let id = typed.value(&v.name);
            typed.outputs.push((v, id));
        }
        Ok(typed)
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Every value id, including those no node reads any more.
    pub fn values(&self) -> impl Iterator<Item = ValueId> {
        (0..self.values.len()).map(ValueId)
    }

    pub fn name(&self, v: ValueId) -> &str {
        &self.values[v.0].name
    }

    /// The value named `name`, if the graph has one.
    pub fn find(&self, name: &str) -> Option<ValueId> {
        self.by_name.get(name).copied()
    }

    pub fn fact(&self, v: ValueId) -> Option<&Fact> {
        self.values[v.0].fact.as_ref()
    }

    /// The value's shape when every dimension of it is known.
    pub fn concrete_shape(&self, v: ValueId) -> Option<Vec<usize>> {
        self.fact(v)?.concrete_shape()
    }

    /// Its contents, when it is a constant (an initializer, a folded value).
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.values[v.0].constant.as_ref()
    }

    pub fn producer(&self, v: ValueId) -> Option<NodeId> {
        self.values[v.0].producer
    }

    /// The nodes that read `v`, once per input slot.
    pub fn readers(&self, v: ValueId) -> &[NodeId] {
        &self.values[v.0].readers
    }

    /// How many times `v` is read: by node inputs, and once more per graph
    /// output it is.
    pub fn read_count(&self, v: ValueId) -> usize {
        self.values[v.0].readers.len() + self.outputs.iter().filter(|(_, o)| *o == v).count()
    }

    pub fn is_output(&self, v: ValueId) -> bool {
        self.outputs.iter().any(|(_, o)| *o == v)
    }

    pub fn inputs(&self) -> &[(ValueInfo, ValueId)] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[(ValueInfo, ValueId)] {
        &self.outputs
    }

    pub fn node(&self, n: NodeId) -> &TypedNode {
        self.nodes[n.0].as_ref().expect("a node id of this graph, not removed")
    }

    /// The nodes in order (each value written before it is read).
    pub fn order(&self) -> &[NodeId] {
        &self.order
    }

    /// The nodes in order, with their ids.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &TypedNode)> {
        self.order.iter().map(|&n| (n, self.node(n)))
    }

    /// The value named `name`, made when there is none yet.
    fn value(&mut self, name: &str) -> ValueId {
        if let Some(&id) = self.by_name.get(name) {
            return id;
        }
        let id = ValueId(self.values.len());
        self.values.push(Value { name: name.to_string(), fact: None, constant: None, producer: None, readers: Vec::new() });
        self.by_name.insert(name.to_string(), id);
        id
    }

    /// A new value whose name starts with `hint` and is unused so far.
    pub fn fresh_value(&mut self, hint: &str) -> ValueId {
        let name = if self.by_name.contains_key(hint) { (1..).map(|i| format!("{hint}#{i}")).find(|n| !self.by_name.contains_key(n)).expect("an unused name") } else { hint.to_string() };
        self.value(&name)
    }

    /// A new constant value holding `tensor`.
    pub fn add_constant(&mut self, hint: &str, tensor: Tensor) -> ValueId {
        let id = self.fresh_value(hint);
        self.set_constant(id, tensor);
        id
    }

    fn set_constant(&mut self, id: ValueId, tensor: Tensor) {
        let value = &mut self.values[id.0];
        value.fact = Some(facts::constant_fact(&tensor));
        value.constant = Some(tensor);
    }

    /// Adds `node` just before node `before`, reading and writing the
    /// given values (the names in `node` are overwritten with theirs). Its
    /// outputs' facts are inferred, and carried on to their readers.
    pub fn insert_before(&mut self, before: NodeId, node: Node, inputs: Vec<Option<ValueId>>, outputs: Vec<Option<ValueId>>) -> NodeId {
        let at = self.position(before);
        self.insert_at(at, node, inputs, outputs)
    }

    /// [`insert_before`](Self::insert_before), just after node `after`.
    pub fn insert_after(&mut self, after: NodeId, node: Node, inputs: Vec<Option<ValueId>>, outputs: Vec<Option<ValueId>>) -> NodeId {
        let at = self.position(after) + 1;
        self.insert_at(at, node, inputs, outputs)
    }

    fn position(&self, n: NodeId) -> usize {
        self.order.iter().position(|&m| m == n).expect("a node of this graph")
    }

    fn insert_at(&mut self, at: usize, node: Node, inputs: Vec<Option<ValueId>>, outputs: Vec<Option<ValueId>>) -> NodeId {
        let id = NodeId(self.nodes.len());
        self.nodes.push(Some(TypedNode { node, inputs: Vec::new(), outputs: Vec::new(), kernel: None, refused: None }));
        self.order.insert(at, id);
        self.connect(id, inputs, outputs);
        self.refresh(id);
        id
    }

    /// Replaces node `n` by `node` reading and writing the given values:
    /// what the passes do when they fuse or rewrite an operator.
    pub fn replace_node(&mut self, n: NodeId, node: Node, inputs: Vec<Option<ValueId>>, outputs: Vec<Option<ValueId>>) {
        self.disconnect(n);
        self.nodes[n.0] = Some(TypedNode { node, inputs: Vec::new(), outputs: Vec::new(), kernel: None, refused: None });
        self.connect(n, inputs, outputs);
        self.refresh(n);
    }

    /// Changes node `n`'s attributes, domain or op type (`edit` must leave
    /// its values' names alone), inferring its facts again.
    pub fn edit_node(&mut self, n: NodeId, edit: impl FnOnce(&mut Node)) {
        let typed = self.nodes[n.0].as_mut().expect("a node of this graph");
        edit(&mut typed.node);
        typed.kernel = None;
        self.refresh(n);
    }

    /// Removes node `n`; its outputs are then produced by nothing.
    pub fn remove_node(&mut self, n: NodeId) {
        self.disconnect(n);
        self.nodes[n.0] = None;
        self.order.retain(|&m| m != n);
    }

    /// Every node input reading `from` reads `to` instead (graph outputs
    /// keep their values: their names are the model's).
    pub fn redirect(&mut self, from: ValueId, to: ValueId) {
        let readers = std::mem::take(&mut self.values[from.0].readers);
        let name = self.values[to.0].name.clone();
        for &r in &readers {
            let typed = self.nodes[r.0].as_mut().expect("readers are nodes of this graph");
            for (slot, input) in typed.inputs.iter_mut().enumerate() {
                if *input == Some(from) {
                    *input = Some(to);
                    typed.node.inputs[slot] = name.clone();
                }
            }
        }
        self.values[to.0].readers.extend(readers);
    }

    /// Node `n`'s outputs become the constants `results` (one per output)
    /// and the node goes: constant folding.
    pub fn fold_into_constants(&mut self, n: NodeId, results: Vec<Tensor>) {
        let outputs = self.node(n).outputs.clone();
        self.remove_node(n);
        let mut changed = Vec::new();
        for (output, tensor) in outputs.into_iter().zip(results) {
            if let Some(v) = output {
                let before = self.values[v.0].fact.clone();
                self.set_constant(v, tensor);
                if self.values[v.0].fact != before {
                    changed.extend(self.values[v.0].readers.iter().copied());
                }
            }
        }
        self.propagate(changed);
    }

    /// Removes the constants and values nothing reads any more (their
    /// ids stay, empty).
    pub fn drop_unread_constants(&mut self) {
        let outputs: Vec<ValueId> = self.outputs.iter().map(|(_, v)| *v).collect();
        for (i, value) in self.values.iter_mut().enumerate() {
            if value.readers.is_empty() && !outputs.contains(&ValueId(i)) {
                value.constant = None;
            }
        }
    }

    /// Drops `v`'s constant if nothing reads it any more: passes that
    /// replace weights (packing, folding a BatchNormalization) free the
    /// originals as they go, so that both are never all held at once.
    pub fn release_if_unread(&mut self, v: ValueId) {
        if self.read_count(v) == 0 {
            self.values[v.0].constant = None;
        }
    }

    /// The CPU's kernel for node `n` (none for nodes holding subgraphs,
    /// and for those the CPU does not run).
    pub(crate) fn kernel(&self, n: NodeId) -> Option<&dyn Op> {
        self.node(n).kernel.as_deref()
    }

    /// The CPU's kernel for node `n`, made once (the session reuses it when
    /// the CPU runs the node).
    pub(crate) fn take_kernel(&mut self, n: NodeId) -> Option<Box<dyn Op>> {
        self.nodes[n.0].as_mut()?.kernel.take()
    }

    /// The constant's tensor, taken out of the graph (for the session).
    pub(crate) fn take_constant(&mut self, v: ValueId) -> Option<Tensor> {
        self.values[v.0].constant.take()
    }

    fn push_node(&mut self, node: Node) -> NodeId {
        let inputs = node.inputs.iter().map(|x| (!x.is_empty()).then(|| self.value(x))).collect();
        let outputs = node.outputs.iter().map(|y| (!y.is_empty()).then(|| self.value(y))).collect();
        let id = NodeId(self.nodes.len());
        self.nodes.push(Some(TypedNode { node, inputs: Vec::new(), outputs: Vec::new(), kernel: None, refused: None }));
        self.connect(id, inputs, outputs);
        id
    }

    fn connect(&mut self, n: NodeId, inputs: Vec<Option<ValueId>>, outputs: Vec<Option<ValueId>>) {
        for &x in inputs.iter().flatten() {
            self.values[x.0].readers.push(n);
        }
        for &y in outputs.iter().flatten() {
            self.values[y.0].producer = Some(n);
            self.values[y.0].constant = None;
        }
        let name = |v: &Option<ValueId>| v.map_or_else(String::new, |v| self.values[v.0].name.clone());
        let (input_names, output_names) = (inputs.iter().map(name).collect(), outputs.iter().map(name).collect());
        let typed = self.nodes[n.0].as_mut().expect("a node of this graph");
        typed.node.inputs = input_names;
        typed.node.outputs = output_names;
        typed.inputs = inputs;
        typed.outputs = outputs;
    }

    fn disconnect(&mut self, n: NodeId) {
        let typed = self.nodes[n.0].as_ref().expect("a node of this graph");
        let (inputs, outputs) = (typed.inputs.clone(), typed.outputs.clone());
        for x in inputs.into_iter().flatten() {
            let readers = &mut self.values[x.0].readers;
            if let Some(k) = readers.iter().position(|&r| r == n) {
                readers.swap_remove(k);
            }
        }
        for y in outputs.into_iter().flatten() {
            if self.values[y.0].producer == Some(n) {
                self.values[y.0].producer = None;
            }
        }
    }

}

/// The nodes in an order where every input is produced before use.
fn topological(nodes: Vec<Node>, available: &HashMap<String, ValueId>) -> Result<Vec<Node>, SessionError> {
    let mut available: std::collections::HashSet<&str> = available.keys().map(String::as_str).collect();
    available.insert("");
    let producers: std::collections::HashSet<&str> = nodes.iter().flat_map(|n| n.outputs.iter().map(String::as_str)).collect();
    let mut done = vec![false; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    let mut progress = true;
    while order.len() < nodes.len() && progress {
        progress = false;
        for (i, n) in nodes.iter().enumerate() {
            if !done[i] && n.inputs.iter().all(|x| available.contains(x.as_str())) {
                done[i] = true;
                progress = true;
                order.push(i);
                available.extend(n.outputs.iter().map(String::as_str));
            }
        }
    }
    if order.len() < nodes.len() {
        let stuck = nodes.iter().enumerate().find(|(i, _)| !done[*i]).map(|(_, n)| n).expect("some node is left");
        if let Some(missing) = stuck.inputs.iter().find(|x| !available.contains(x.as_str()) && !producers.contains(x.as_str())) {
            return Err(SessionError::UnknownValue(missing.clone()));
        }
        return Err(SessionError::Cycle(stuck.name.clone()));
    }
    let mut nodes: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
    Ok(order.into_iter().map(|i| nodes[i].take().expect("each node once")).collect())
}
