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
    /// Orders `breaks_cycles.len()` nodes, where `(node, dependency)` pairs
    /// say which node reads which; nodes with `breaks_cycles` (DelayNodes)
    /// may sit inside cycles. `Err` holds the nodes of a cycle without one.
    pub fn new(pairs: &[(usize, usize)], breaks_cycles: &[bool]) -> Result<Self, Vec<usize>> {
        let n = breaks_cycles.len();
        let mut deferred = vec![false; n];
        // A live graph orders itself at every change, and most graphs have
        // no cycle: a plain topological sort over flat arrays settles those
        // in microseconds; only a cycle needs the components below.
        if let Some(order) = acyclic_order(n, pairs) {
            return Ok(Self { order, deferred });
        }
        let mut dependencies = vec![Vec::new(); n];
        for &(node, dependency) in pairs {
            dependencies[node].push(dependency);
        }
        let dependencies = &dependencies;
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
        let ordering_pairs: Vec<(usize, usize)> = pairs.iter().copied().filter(|&(node, _)| !deferred[node]).collect();
        if let Some(order) = acyclic_order(n, &ordering_pairs) {
            return Ok(Self { order, deferred });
        }
        // A cycle without a DelayNode: name its nodes.
        let ordering_deps: Vec<Vec<usize>> = dependencies.iter().enumerate().map(|(i, d)| if deferred[i] { Vec::new() } else { d.clone() }).collect();
        let ordering = dependency_graph(&ordering_deps);
        let cycle = strongly_connected_components(&ordering)
            .into_iter()
            .find(|c| c.len() > 1 || ordering_deps[c[0]].contains(&c[0]))
            .expect("Kahn's algorithm found a cycle");
        Err(cycle)
    }
}

/// Dependencies first (Kahn's algorithm) for `n` nodes and their
/// `(node, dependency)` pairs, or `None` if there is a cycle.
fn acyclic_order(n: usize, pairs: &[(usize, usize)]) -> Option<Vec<usize>> {
    // The nodes that depend on each node, packed in one array.
    let mut start = vec![0usize; n + 1];
    let mut waiting = vec![0usize; n];
    for &(node, dependency) in pairs {
        start[dependency + 1] += 1;
        waiting[node] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut dependents = vec![0usize; start[n]];
    for &(node, dependency) in pairs {
        dependents[fill[dependency]] = node;
        fill[dependency] += 1;
    }
    let mut order: Vec<usize> = (0..n).filter(|&v| waiting[v] == 0).collect();
    let mut next = 0;
    while next < order.len() {
        let node = order[next];
        next += 1;
        for &dependent in &dependents[start[node]..start[node + 1]] {
            waiting[dependent] -= 1;
            if waiting[dependent] == 0 {
                order.push(dependent);
            }
        }
    }
    (order.len() == n).then_some(order)
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
        // And a cycle through a DelayNode at the end of a long chain.
        let mut pairs: Vec<(usize, usize)> = (0..n - 1).map(|v| (v, v + 1)).collect();
        pairs.push((n - 1, 0));
        let mut breaks = vec![false; n];
        breaks[n - 1] = true;
        let ordered = RenderOrder::new(&pairs, &breaks).unwrap();
        assert!(ordered.deferred[n - 1] && ordered.order.len() == n);
    }

    #[test]
    fn acyclic_orders_put_dependencies_first() {
        let dag = [(0, 1), (0, 2), (1, 3), (2, 3), (2, 3)];
        let order = acyclic_order(4, &dag).unwrap();
        let at = |v| order.iter().position(|&x| x == v).unwrap();
        assert!(at(3) < at(1) && at(3) < at(2) && at(1) < at(0) && at(2) < at(0));
        assert_eq!(acyclic_order(2, &[(0, 1), (1, 0)]), None);
        assert_eq!(acyclic_order(1, &[(0, 0)]), None);
        let chain: Vec<(usize, usize)> = (0..99_999).map(|v| (v, v + 1)).collect();
        assert!(acyclic_order(100_000, &chain).unwrap().into_iter().eq((0..100_000).rev()));
        // Delay-less cycles are refused; a DelayNode in the cycle orders it.
        assert_eq!(RenderOrder::new(&[(0, 1), (1, 0)], &[false, false]).err().map(|mut c| { c.sort(); c }), Some(vec![0, 1]));
        let with_delay = RenderOrder::new(&[(0, 1), (1, 0)], &[false, true]).unwrap();
        assert_eq!(with_delay.deferred, [false, true]);
    }

    #[test]
    fn components() {
        // 0 depends on 1 and 2; 1 and 3 form a cycle; 2 depends on itself.
        let edges = vec![vec![1, 2], vec![3], vec![2], vec![1]];
        let mut components: Vec<Vec<usize>> = strongly_connected_components(&dependency_graph(&edges)).into_iter().map(|mut c| { c.sort(); c }).collect();
        components.sort();
        assert_eq!(components, [vec![0], vec![1, 3], vec![2]]);
    }
}
