//! Constant folding at load: every node whose outputs are known before any
//! input arrives becomes initializers, and every `If` whose condition is
//! known is replaced by the branch it would take.
//!
//! "Known" reaches past nodes whose inputs are all initializers: a `Shape`
//! of an input declared with fixed dimensions is known, and so is the shape
//! arithmetic after it. Streaming models lean on this: Silero VAD branches
//! on its sample rate and on its batch size, so a session whose inputs are
//! pinned ([`SessionBuilder::with_constant_input`] and
//! [`with_input_shape`](crate::SessionBuilder::with_input_shape)) runs
//! none of its eleven `If`s and none of its shape arithmetic.
//!
//! [`SessionBuilder::with_constant_input`]: crate::SessionBuilder::with_constant_input

use crate::model::{Attribute, Graph, Node};
use crate::ops::Fact;
use crate::optimize::{drop_unread_initializers, initializer_fact};
use crate::tensor::{Data, Tensor};
use std::collections::{HashMap, HashSet, VecDeque};

/// What [`fold_constants`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Folded {
    /// Nodes replaced by the constants they compute.
    pub nodes: usize,
    /// `If` nodes replaced by their branch.
    pub branches: usize,
}

/// Operators whose output must not be computed once for all runs.
const NONDETERMINISTIC: [&str; 6] = ["RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial"];

/// Folds, in graph order (so chains fold: ConstantOfShape → weights, Shape
/// arithmetic), every node whose outputs are known, and inlines every `If`
/// whose condition is; then drops the initializers nothing reads any more.
/// A node that cannot be evaluated is left for the session, which reports
/// its error. No folded tensor may take more than `max_tensor_bytes` (a
/// node whose would is left, and fails when run).
pub fn fold_constants(graph: &mut Graph, opset: i64, pool: &rayon::ThreadPool, max_tensor_bytes: usize) -> Folded {
    let ops = crate::ops::registry();
    let mut folded = Folded::default();
    // Facts of values that are neither initializers nor folded.
    let mut facts: HashMap<String, Fact> = HashMap::new();
    for v in &graph.inputs {
        if let (Some(dtype), Some(shape)) = (v.dtype, &v.shape) {
            facts.insert(v.name.clone(), Fact::new(dtype, shape.clone()));
        }
    }
    let mut names = value_names(graph);
    let mut work: VecDeque<Node> = std::mem::take(&mut graph.nodes).into();
    let mut kept = Vec::with_capacity(work.len());
    while let Some(node) = work.pop_front() {
        let onnx = node.domain.is_empty() || node.domain == "ai.onnx";
        if onnx && node.op_type == "If" {
            let branch = known_condition(graph, &node).and_then(|taken| inline_branch(&node, taken, graph, &mut names));
            match branch {
                Some(nodes) => {
                    nodes.into_iter().rev().for_each(|n| work.push_front(n));
                    folded.branches += 1;
                }
                None => kept.push(node),
            }
            continue;
        }
        let op = match ops.get(node.op_type.as_str()) {
            // (Loop and Scan bodies are sessions of their own: not built
            // twice just to learn what their outputs look like.)
            Some(build) if onnx && !node.outputs.is_empty() && !NONDETERMINISTIC.contains(&node.op_type.as_str()) && !matches!(node.op_type.as_str(), "Loop" | "Scan") => build(&node, opset).ok(),
            _ => None,
        };
        let Some(op) = op else {
            kept.push(node);
            continue;
        };
        let results = if node.inputs.iter().all(|i| i.is_empty() || graph.initializers.contains_key(i)) {
            let args: Vec<Option<&Tensor>> = node.inputs.iter().map(|i| graph.initializers.get(i)).collect();
            op.eval_limited(&args, node.outputs.len(), pool, max_tensor_bytes).ok()
        } else {
            let input_facts: Vec<Option<Fact>> = node.inputs.iter().map(|i| facts.get(i).cloned().or_else(|| graph.initializers.get(i).map(initializer_fact))).collect();
            let complete = node.inputs.iter().zip(&input_facts).all(|(name, fact)| name.is_empty() || fact.is_some());
            let inferred = if complete { op.infer(&input_facts.iter().map(Option::as_ref).collect::<Vec<_>>()).ok() } else { None };
            match inferred {
                // (An operator may infer fewer facts than it has outputs.)
                Some(out) if out.len() == node.outputs.len() && out.iter().all(|f| f.value.is_some()) => Some(out.into_iter().map(|f| f.value.expect("checked")).collect()),
                Some(out) => {
                    facts.extend(node.outputs.iter().cloned().zip(out));
                    None
                }
                None => None,
            }
        };
        match results {
            Some(results) => {
                for (name, tensor) in node.outputs.iter().zip(results) {
                    if !name.is_empty() {
                        graph.initializers.insert(name.clone(), tensor);
                    }
                }
                folded.nodes += 1;
            }
            None => kept.push(node),
        }
    }
    graph.nodes = kept;
    drop_unread_initializers(graph);
    folded
}

/// Which branch an `If` takes when its condition is an initializer.
fn known_condition(graph: &Graph, node: &Node) -> Option<bool> {
    match graph.initializers.get(node.inputs.first()?)?.data() {
        Data::Bool(v) if v.len() == 1 => Some(v[0]),
        _ => None,
    }
}

/// Every value name the graph's own nodes, inputs and initializers use.
fn value_names(graph: &Graph) -> HashSet<String> {
    let produced = graph.nodes.iter().flat_map(|n| n.outputs.iter());
    graph.inputs.iter().map(|v| &v.name).chain(graph.initializers.keys()).chain(produced).filter(|n| !n.is_empty()).cloned().collect()
}

/// The nodes that replace `node` (an `If`) when it takes branch `taken`:
/// the branch's nodes, its constants added to `graph`'s initializers, and
/// an `Identity` per output from the branch's result to the `If`'s output
/// name (removed later, where nothing else needs the name). A branch value
/// whose name the graph already uses is renamed, unless a subgraph nested
/// in the branch reads it by that name: then the `If` stays (`None`).
fn inline_branch(node: &Node, taken: bool, graph: &mut Graph, names: &mut HashSet<String>) -> Option<Vec<Node>> {
    let attribute = if taken { "then_branch" } else { "else_branch" };
    let Some(Attribute::Graph(branch)) = node.attributes.get(attribute) else { return None };
    let branch = &branch.graph;
    if branch.outputs.len() != node.outputs.len() || !branch.inputs.is_empty() {
        return None;
    }
    let nested_reads = crate::optimize::captured_names(&branch.nodes);
    // Constants the branch shares with the enclosing graph (weights it
    // reads from outer scope arrive as its own initializers) keep their
    // names; other clashing names get a fresh one.
    let mut renamed: HashMap<String, String> = HashMap::new();
    let mut constants = Vec::new();
    for (name, tensor) in &branch.initializers {
        if graph.initializers.get(name).is_some_and(|outer| outer == tensor) {
            continue;
        }
        let name = fresh_name(name, &node.name, names, &nested_reads, &mut renamed)?;
        constants.push((name, tensor.clone()));
    }
    for output in branch.nodes.iter().flat_map(|n| n.outputs.iter()).filter(|o| !o.is_empty()) {
        fresh_name(output, &node.name, names, &nested_reads, &mut renamed)?;
    }
    graph.initializers.extend(constants);
    let rename = |name: &String| renamed.get(name).cloned().unwrap_or_else(|| name.clone());
    let mut nodes: Vec<Node> = branch
        .nodes
        .iter()
        .map(|n| Node { inputs: n.inputs.iter().map(rename).collect(), outputs: n.outputs.iter().map(rename).collect(), ..n.clone() })
        .collect();
    for (result, target) in branch.outputs.iter().zip(&node.outputs).filter(|(_, t)| !t.is_empty()) {
        nodes.push(Node {
            name: format!("{}/{}", node.name, target),
            op_type: "Identity".into(),
            domain: String::new(),
            inputs: vec![rename(&result.name)],
            outputs: vec![target.clone()],
            attributes: HashMap::new(),
        });
    }
    Some(nodes)
}

/// Claims `name` for a value of the inlined `If` named `owner`, or a
/// fresh name when the graph uses it already; `None` when the value must
/// be renamed but a nested subgraph reads it by name.
fn fresh_name(name: &str, owner: &str, names: &mut HashSet<String>, nested_reads: &HashSet<&str>, renamed: &mut HashMap<String, String>) -> Option<String> {
    if names.insert(name.to_string()) {
        return Some(name.to_string());
    }
    if nested_reads.contains(name) {
        return None;
    }
    let fresh = (0..).map(|i| format!("{owner}/{name}#{i}")).find(|n| !names.contains(n)).expect("an unused name");
    names.insert(fresh.clone());
    renamed.insert(name.to_string(), fresh.clone());
    Some(fresh)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dim, Subgraph, ValueInfo};
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

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap()
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
        let mut graph = Graph {
            nodes: vec![node("Shape", &["x"], &["shape"]), gather, node("Equal", &["width", "four"], &["cond"]), iff],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(2), Dim::Known(4)]) }],
            outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }],
            initializers: HashMap::from([("one".to_string(), Tensor::i64(vec![], vec![1]).unwrap()), ("four".to_string(), Tensor::i64(vec![], vec![4]).unwrap())]),
        };
        let folded = fold_constants(&mut graph, 17, &pool(), usize::MAX);
        assert_eq!(folded, Folded { nodes: 3, branches: 1 });
        let ops: Vec<&str> = graph.nodes.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Neg", "Identity"]);
        // The clash with the folded "shape" got the branch's value renamed.
        assert_ne!(graph.nodes[0].outputs[0], "shape");
        assert_eq!(graph.nodes[1].inputs[0], graph.nodes[0].outputs[0]);
        assert_eq!(graph.nodes[1].outputs[0], "y");
        assert!(graph.initializers.is_empty(), "the folded shape values are read by nothing now");
    }

    /// An input without declared dimensions keeps its Shape and its If.
    #[test]
    fn unknown_shapes_keep_the_if() {
        let mut iff = node("If", &["cond", "x"], &["y"]);
        iff.attributes.insert("then_branch".into(), branch(vec![node("Neg", &["x"], &["n"])], "n", &["x"]));
        iff.attributes.insert("else_branch".into(), branch(vec![node("Identity", &["x"], &["e"])], "e", &["x"]));
        let mut graph = Graph {
            nodes: vec![node("Size", &["x"], &["size"]), node("Equal", &["size", "four"], &["cond"]), iff],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Symbolic("n".into())]) }],
            outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }],
            initializers: HashMap::from([("four".to_string(), Tensor::i64(vec![], vec![4]).unwrap())]),
        };
        assert_eq!(fold_constants(&mut graph, 17, &pool(), usize::MAX), Folded::default());
        assert_eq!(graph.nodes.len(), 3);
    }

    #[test]
    fn random_operators_are_not_folded() {
        let mut random = node("RandomUniform", &[], &["r"]);
        random.attributes.insert("shape".into(), Attribute::Ints(vec![2]));
        let mut graph = Graph { nodes: vec![random], inputs: vec![], outputs: vec![ValueInfo { name: "r".into(), dtype: None, shape: None }], initializers: HashMap::new() };
        assert_eq!(fold_constants(&mut graph, 17, &pool(), usize::MAX).nodes, 0);
    }
}
