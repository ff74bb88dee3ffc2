//! Constant folding: every node whose outputs are known before any input
//! arrives becomes constants, and every `If` whose condition is known is
//! replaced by the branch it would take.
//!
//! "Known" reaches past nodes whose inputs are all constants: a `Shape` of
//! an input declared with fixed dimensions is known (its fact carries its
//! value), and so is the shape arithmetic after it. Streaming models lean
//! on this: Silero VAD branches on its sample rate and on its batch size,
//! so a session whose inputs are pinned
//! ([`SessionBuilder::with_constant_input`] and
//! [`with_input_shape`](crate::SessionBuilder::with_input_shape)) runs
//! none of its eleven `If`s and none of its shape arithmetic.
//!
//! [`SessionBuilder::with_constant_input`]: crate::SessionBuilder::with_constant_input

use super::{OptimizationLevel, Optimizations, Pass, PassContext};
use crate::graph::{NodeId, TypedGraph};
use crate::model::{Attribute, Node};
use crate::tensor::{Data, Tensor};
use std::collections::{HashMap, HashSet};

/// Operators whose output must not be computed once for all runs.
const NONDETERMINISTIC: [&str; 6] = ["RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"];

/// Folds, in graph order (so chains fold: ConstantOfShape → weights, Shape
/// arithmetic), every node whose outputs are known, and inlines every `If`
/// whose condition is. A node that cannot be evaluated is left for the
/// session, which reports its error. No folded tensor may take more than
/// the session's tensor limit (a node whose would is left, and fails when
/// run). Counts `folded` and `inlined_branches`.
pub const FOLD_CONSTANTS: Pass = Pass { name: "constant folding", level: OptimizationLevel::Basic, run: fold_constants };

fn fold_constants(graph: &mut TypedGraph, cx: &PassContext) -> Optimizations {
    let mut done = Optimizations::default();
    let mut i = 0;
    while let Some(&n) = graph.order().get(i) {
        let node = graph.node(n).node();
        let onnx = node.domain.is_empty() || node.domain == "ai.onnx";
        if onnx && node.op_type == "If" {
            // The branch's nodes take the If's place: they are next.
            if known_condition(graph, n).is_some_and(|taken| inline_branch(graph, n, taken)) {
                done.inlined_branches += 1;
            } else {
                i += 1;
            }
            continue;
        }
        let foldable = onnx && !node.outputs.is_empty() && !NONDETERMINISTIC.contains(&node.op_type.as_str());
        match foldable.then(|| results(graph, n, cx)).flatten() {
            Some(results) => {
                graph.fold_into_constants(n, results);
                done.folded += 1;
            }
            None => i += 1,
        }
    }
    done
}

/// Node `n`'s outputs, when known now: evaluated when its inputs are all
/// constants, else read from its outputs' facts.
fn results(graph: &TypedGraph, n: NodeId, cx: &PassContext) -> Option<Vec<Tensor>> {
    let typed = graph.node(n);
    let kernel = graph.kernel(n)?;
    if typed.inputs().iter().all(|x| x.is_none_or(|x| graph.constant(x).is_some())) {
        let args: Vec<Option<&Tensor>> = typed.inputs().iter().map(|x| x.and_then(|x| graph.constant(x))).collect();
        return kernel.eval_limited(&args, typed.outputs().len(), cx.pool, cx.max_tensor_bytes).ok();
    }
    typed.outputs().iter().map(|y| y.map_or(Some(Tensor::default()), |y| graph.fact(y)?.value.clone())).collect()
}

/// Which branch an `If` takes when its condition is a constant.
fn known_condition(graph: &TypedGraph, n: NodeId) -> Option<bool> {
    match graph.constant(graph.node(n).input(0)?)?.data() {
        Data::Bool(v) if v.len() == 1 => Some(v[0]),
        _ => None,
    }
}

/// The names of the values that the subgraphs of `nodes` (If branches,
/// Loop and Scan bodies) read from enclosing graphs.
pub(crate) fn captured_names<'a>(nodes: impl Iterator<Item = &'a Node>) -> HashSet<&'a str> {
    nodes
        .flat_map(|n| n.attributes.values())
        .filter_map(|a| if let Attribute::Graph(sub) = a { Some(sub.captures.iter().map(String::as_str)) } else { None })
        .flatten()
        .collect()
}

/// Replaces `n` (an `If`) by the nodes of branch `taken`: its constants
/// join the graph's, and an `Identity` per output carries the branch's
/// result to the `If`'s output (removed later, where nothing else needs
/// the name). A branch value whose name the graph already uses is
/// renamed, unless a subgraph nested in the branch reads it by that name:
/// then the `If` stays (`false`).
fn inline_branch(graph: &mut TypedGraph, n: NodeId, taken: bool) -> bool {
    let typed = graph.node(n);
    let attribute = if taken { "then_branch" } else { "else_branch" };
    let Some(Attribute::Graph(branch)) = typed.node().attributes.get(attribute) else { return false };
    let branch = branch.graph.clone();
    let (owner, targets) = (typed.node().name.clone(), typed.outputs().to_vec());
    if branch.outputs.len() != targets.len() || !branch.inputs.is_empty() {
        return false;
    }
    let nested_reads = captured_names(branch.nodes.iter());
    // Constants the branch shares with the enclosing graph (weights it
    // reads from outer scope arrive as its own initializers) keep their
    // names; other clashing names get a fresh one.
    let mut names = Names { graph, claimed: HashSet::new(), renamed: HashMap::new(), owner: &owner, nested_reads: &nested_reads };
    let mut constants = Vec::new();
    for (name, tensor) in &branch.initializers {
        if graph.find(name).and_then(|v| graph.constant(v)).is_some_and(|outer| outer == tensor) {
            continue;
        }
        let Some(name) = names.claim(name) else { return false };
        constants.push((name, tensor.clone()));
    }
    for output in branch.nodes.iter().flat_map(|n| n.outputs.iter()).filter(|o| !o.is_empty()) {
        if names.claim(output).is_none() {
            return false;
        }
    }
    let renamed = names.renamed;
    let rename = |name: &String| renamed.get(name).cloned().unwrap_or_else(|| name.clone());
    for (name, tensor) in constants {
        graph.add_constant(&name, tensor);
    }
    let value = |graph: &mut TypedGraph, name: &str| (!name.is_empty()).then(|| graph.find(name).unwrap_or_else(|| graph.fresh_value(name)));
    for node in &branch.nodes {
        let inputs = node.inputs.iter().map(|x| value(graph, &rename(x))).collect();
        let outputs = node.outputs.iter().map(|y| value(graph, &rename(y))).collect();
        graph.insert_before(n, node.clone(), inputs, outputs);
    }
    for (result, target) in branch.outputs.iter().zip(targets) {
        let Some(target) = target else { continue };
        let identity = Node { name: format!("{owner}/{}", graph.name(target)), op_type: "Identity".into(), domain: String::new(), inputs: Vec::new(), outputs: Vec::new(), attributes: HashMap::new() };
        let source = value(graph, &rename(&result.name));
        graph.insert_before(n, identity, vec![source], vec![Some(target)]);
    }
    graph.remove_node(n);
    true
}

/// Names for an inlined branch's values.
struct Names<'a> {
    graph: &'a TypedGraph,
    claimed: HashSet<String>,
    renamed: HashMap<String, String>,
    owner: &'a str,
    nested_reads: &'a HashSet<&'a str>,
}

impl Names<'_> {
    /// Claims `name`, or a fresh name when the graph uses it already;
    /// `None` when the value must be renamed but a nested subgraph reads
    /// it by name.
    fn claim(&mut self, name: &str) -> Option<String> {
        let used = |claimed: &HashSet<String>, n: &str| self.graph.find(n).is_some() || claimed.contains(n);
        if !used(&self.claimed, name) {
            self.claimed.insert(name.to_string());
            return Some(name.to_string());
        }
        if self.nested_reads.contains(name) {
            return None;
        }
        let fresh = (0..).map(|i| format!("{}/{name}#{i}", self.owner)).find(|n| !used(&self.claimed, n)).expect("an unused name");
        self.claimed.insert(fresh.clone());
        self.renamed.insert(name.to_string(), fresh.clone());
        Some(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dim, Graph, Subgraph, ValueInfo};
    use crate::passes::tests::{context_for, ops_of};
    use crate::tensor::DataType;

    fn node(op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            name: format!("{op}:{}", outputs.join(",")),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attributes: HashMap::new(),
        }
    }

    fn branch(nodes: Vec<Node>, output: &str, captures: &[&str]) -> Attribute {
        let graph = Graph { nodes, inputs: vec![], outputs: vec![ValueInfo { name: output.into(), dtype: None, shape: None }], initializers: HashMap::new() };
        Attribute::Graph(Box::new(Subgraph { graph, captures: captures.iter().map(|s| s.to_string()).collect() }))
    }

    fn fold(graph: Graph) -> (TypedGraph, Optimizations) {
        let mut typed = TypedGraph::new(graph, 17).unwrap();
        let done = context_for(|cx| (FOLD_CONSTANTS.run)(&mut typed, cx));
        (typed, done)
    }

    /// y = If(Shape(x)[1] == 4, then: Neg(x), else: x) over an input
    /// declared [2, 4]: the shape arithmetic folds, the If becomes Neg.
    #[test]
    fn a_condition_known_from_declared_shapes_inlines_its_branch() {
        let mut iff = node("If", &["cond", "x"], &["y"]);
        // The branch's own value is named like a value of the outer graph.
        iff.attributes.insert("then_branch".into(), branch(vec![node("Neg", &["x"], &["shape"])], "shape", &["x"]));
        iff.attributes.insert("else_branch".into(), branch(vec![node("Identity", &["x"], &["e"])], "e", &["x"]));
        let mut gather = node("Gather", &["shape", "one"], &["width"]);
        gather.attributes.insert("axis".into(), Attribute::Int(0));
        let graph = Graph {
            nodes: vec![node("Shape", &["x"], &["shape"]), gather, node("Equal", &["width", "four"], &["cond"]), iff],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(2), Dim::Known(4)]) }],
            outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }],
            initializers: HashMap::from([("one".to_string(), Tensor::i64(vec![], vec![1]).unwrap()), ("four".to_string(), Tensor::i64(vec![], vec![4]).unwrap())]),
        };
        let (graph, done) = fold(graph);
        assert_eq!((done.folded, done.inlined_branches), (3, 1));
        assert_eq!(ops_of(&graph), ["Neg", "Identity"]);
        let (neg, identity) = (graph.node(graph.order()[0]), graph.node(graph.order()[1]));
        // The clash with the folded "shape" got the branch's value renamed.
        assert_ne!(neg.node().outputs[0], "shape");
        assert_eq!(identity.input(0), neg.output());
        assert_eq!(identity.node().outputs[0], "y");
        // The Neg's output fact was inferred when it was inserted.
        assert_eq!(graph.concrete_shape(neg.output().unwrap()), Some(vec![2, 4]));
    }

    /// An input without declared dimensions keeps its Shape and its If.
    #[test]
    fn unknown_shapes_keep_the_if() {
        let mut iff = node("If", &["cond", "x"], &["y"]);
        iff.attributes.insert("then_branch".into(), branch(vec![node("Neg", &["x"], &["n"])], "n", &["x"]));
        iff.attributes.insert("else_branch".into(), branch(vec![node("Identity", &["x"], &["e"])], "e", &["x"]));
        let graph = Graph {
            nodes: vec![node("Size", &["x"], &["size"]), node("Equal", &["size", "four"], &["cond"]), iff],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Symbolic("n".into())]) }],
            outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }],
            initializers: HashMap::from([("four".to_string(), Tensor::i64(vec![], vec![4]).unwrap())]),
        };
        let (graph, done) = fold(graph);
        assert_eq!(done, Optimizations::default());
        assert_eq!(ops_of(&graph), ["Size", "Equal", "If"]);
    }

    #[test]
    fn random_operators_are_not_folded() {
        let mut random = node("RandomUniform", &[], &["r"]);
        random.attributes.insert("shape".into(), Attribute::Ints(vec![2]));
        let graph = Graph { nodes: vec![random], inputs: vec![], outputs: vec![ValueInfo { name: "r".into(), dtype: None, shape: None }], initializers: HashMap::new() };
        assert_eq!(fold(graph).1.folded, 0);
    }
}
