//! The render order: dependencies first, with the DelayNodes inside cycles
//! reading their inputs one quantum late so that the cycle can be ordered.

use petgraph::graph::{DiGraph, NodeIndex};

/// The order in which a graph's nodes render.
pub(super) struct RenderOrder {
    /// Node indices, each after the nodes it depends on.
    pub order: Vec<usize>,
    /// Per node: whether it is a DelayNode inside a cycle, whose input is
    /// mixed after the quantum rather than before its turn.
    pub deferred: Vec<bool>,
}

impl RenderOrder {
    /// Orders the nodes whose dependencies `dependencies[node]` lists;
    /// nodes with `breaks_cycles` (DelayNodes) may sit inside cycles. `Err`
    /// holds the nodes of a cycle without one.
    pub fn new(dependencies: &[Vec<usize>], breaks_cycles: &[bool]) -> Result<Self, Vec<usize>> {
        let mut deferred = vec![false; dependencies.len()];
        for component in strongly_connected_components(&dependency_graph(dependencies)) {
            let cyclic = component.len() > 1 || dependencies[component[0]].contains(&component[0]);
            if cyclic {
                for &node in &component {
                    if breaks_cycles[node] {
                        deferred[node] = true;
                    }
                }
            }
        }
        // A deferred node's input edges stop constraining the order.
        let ordering_deps: Vec<Vec<usize>> = dependencies.iter().enumerate().map(|(i, d)| if deferred[i] { Vec::new() } else { d.clone() }).collect();
        let ordering = dependency_graph(&ordering_deps);
        for component in strongly_connected_components(&ordering) {
            if component.len() > 1 || ordering_deps[component[0]].contains(&component[0]) {
                return Err(component);
            }
        }
        Ok(Self { order: topological_order(&ordering), deferred })
    }
}

/// `edges[node]` (the nodes it depends on) as a petgraph graph, whose
/// algorithms are iterative: a chain of 100,000 nodes must not overflow
/// the stack.
fn dependency_graph(edges: &[Vec<usize>]) -> DiGraph<(), ()> {
    let mut graph = DiGraph::with_capacity(edges.len(), edges.iter().map(Vec::len).sum());
    for _ in edges {
        graph.add_node(());
    }
    for (v, deps) in edges.iter().enumerate() {
        for &w in deps {
            graph.add_edge(NodeIndex::new(v), NodeIndex::new(w), ());
        }
    }
    graph
}

/// The strongly connected components of a [`dependency_graph`].
fn strongly_connected_components(graph: &DiGraph<(), ()>) -> Vec<Vec<usize>> {
    let components = petgraph::algo::kosaraju_scc(graph);
    components.into_iter().map(|c| c.into_iter().map(NodeIndex::index).collect()).collect()
}

/// Dependencies first; `graph` must be acyclic.
fn topological_order(graph: &DiGraph<(), ()>) -> Vec<usize> {
    // petgraph puts a node before those its edges lead to, its dependencies.
    let order = petgraph::algo::toposort(graph, None).expect("the caller refused cycles");
    order.into_iter().rev().map(NodeIndex::index).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of a million nodes, each depending on the next: recursion
    /// over nodes would overflow the test thread's 2 MB stack long before.
    #[test]
    fn long_chains_are_ordered_without_recursion() {
        let n = 1_000_000;
        let chain: Vec<Vec<usize>> = (0..n).map(|v| if v + 1 < n { vec![v + 1] } else { Vec::new() }).collect();
        let chain = dependency_graph(&chain);
        assert_eq!(strongly_connected_components(&chain).len(), n);
        let order = topological_order(&chain);
        assert!(order.iter().copied().eq((0..n).rev()));
    }

    #[test]
    fn components_and_order() {
        // 0 depends on 1 and 2; 1 and 3 form a cycle; 2 depends on itself.
        let edges = vec![vec![1, 2], vec![3], vec![2], vec![1]];
        let mut components: Vec<Vec<usize>> = strongly_connected_components(&dependency_graph(&edges)).into_iter().map(|mut c| { c.sort(); c }).collect();
        components.sort();
        assert_eq!(components, [vec![0], vec![1, 3], vec![2]]);
        let dag = vec![vec![1, 2], vec![3], vec![3], vec![]];
        let order = topological_order(&dependency_graph(&dag));
        let at = |v| order.iter().position(|&x| x == v).unwrap();
        assert!(at(3) < at(1) && at(3) < at(2) && at(1) < at(0) && at(2) < at(0));
    }
}
