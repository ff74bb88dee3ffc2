//! Graph passes: rewrites that change how a model runs, never what it
//! computes. Each is a [`Pass`] value (a name, a level and a function),
//! run on the [`TypedGraph`] from one list ([`PASSES`]) in order, where the
//! session's [`OptimizationLevel`] reaches the pass's own; each reports
//! what it did in its own [`Optimizations`] counters, which the session
//! adds up.
//!
//! The custom operator domains live next to the passes that create them:
//! [`layout::NHWC_DOMAIN`], [`pack::PACKED_DOMAIN`],
//! [`fuse::FUSED_DOMAIN`].

pub mod batch_norm;
pub mod dead;
pub mod fold;
pub mod fuse;
pub mod identities;
pub mod layout;
pub mod pack;
pub mod prepack;

use crate::graph::TypedGraph;
use crate::provider::Layout;
use crate::model::Node;
use crate::provider::ExecutionProvider;

/// How much the graph is rewritten before running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum OptimizationLevel {
    /// Run the graph as written (but in the layout its providers prefer).
    Disabled,
    /// Fold constant subgraphs (shape computations included) and drop dead nodes.
    Basic,
    /// Also fuse operators (BatchNormalization into the Conv before it) and
    /// lay constant Gemm weights out for the kernel.
    #[default]
    Extended,
}

/// What the session's graph passes did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Optimizations {
    /// Nodes folded into constants.
    pub folded: usize,
    /// `If` nodes whose condition was known at load (from constants and
    /// fixed input shapes), replaced by the branch they take.
    pub inlined_branches: usize,
    /// Dead nodes removed, and nodes that pass their input through
    /// (Identity, inference Dropout).
    pub removed: usize,
    /// Nodes fused into another (BatchNormalization, Relu and a shortcut's
    /// Add into the convolution before them; a channel shuffle's three
    /// nodes into one; a Concat into the convolutions it joins).
    pub fused: usize,
    /// Gemm weights laid out for the kernel at creation.
    pub prepacked: usize,
    /// Convolutions and pools rewritten to channels-last for a provider
    /// that prefers it.
    pub channels_last: usize,
    /// Nodes whose weights were packed for the CPU's own GEMM.
    pub packed: usize,
    /// Of those, 3×3 convolutions computed by Winograd's minimal filtering
    /// (fewer multiply-adds; see the CPU provider's docs).
    pub winograd: usize,
    /// Steps whose output may take over an input's buffer, computing in
    /// place (a shortcut added where it lies), where the memory plan finds
    /// both the same size.
    pub in_place: usize,
}

impl std::ops::AddAssign for Optimizations {
    fn add_assign(&mut self, o: Self) {
        self.folded += o.folded;
        self.inlined_branches += o.inlined_branches;
        self.removed += o.removed;
        self.fused += o.fused;
        self.prepacked += o.prepacked;
        self.channels_last += o.channels_last;
        self.packed += o.packed;
        self.winograd += o.winograd;
        self.in_place += o.in_place;
    }
}

/// What a pass may consult besides the graph.
pub struct PassContext<'a> {
    /// The session's providers in the caller's order, the CPU's last.
    pub providers: &'a [Box<dyn ExecutionProvider>],
    /// For constant folding's kernels.
    pub pool: &'a rayon::ThreadPool,
    /// No folded tensor may take more.
    pub max_tensor_bytes: usize,
    /// Whether 3×3 convolutions may use Winograd's algorithm.
    pub winograd: bool,
    pub opset: i64,
}

impl PassContext<'_> {
    /// The provider that will take `node`.
    fn taker(&self, node: &Node) -> Option<&dyn ExecutionProvider> {
        self.providers.iter().find(|p| p.supports(node, self.opset, &[])).map(|p| p.as_ref())
    }

    /// Whether the provider that takes `node` runs `rewritten` (what it
    /// becomes, alone or fused with others): rewrites happen only where
    /// every rewritten node's taker runs the result.
    pub fn taker_runs(&self, node: &Node, rewritten: &Node) -> bool {
        self.taker(node).is_some_and(|p| p.supports(rewritten, self.opset, &[]))
    }

    /// Whether the provider that takes `node` prefers channels-last and
    /// runs `variant`, its channels-last form.
    pub fn prefers_nhwc(&self, node: &Node, variant: &Node) -> bool {
        self.taker(node).is_some_and(|p| p.preferred_layout() == Layout::Nhwc && p.supports(variant, self.opset, &[]))
    }
}

/// A graph rewrite: its name, the lowest level it runs at, and the
/// function that runs it, returning what it did.
#[derive(Clone, Copy)]
pub struct Pass {
    /// For `byob info` and profiles.
    pub name: &'static str,
    pub level: OptimizationLevel,
    pub run: fn(&mut TypedGraph, &PassContext) -> Optimizations,
}

impl std::fmt::Debug for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pass").field("name", &self.name).field("level", &self.level).finish()
    }
}

/// Every pass, in the order they run.
pub static PASSES: &[Pass] = &[
    fold::FOLD_CONSTANTS,
    identities::REMOVE_IDENTITIES,
    batch_norm::FOLD_BATCH_NORMS,
    layout::CHANNELS_LAST,
    pack::PACK_WEIGHTS,
    // After packing: only the Gemms left to the generic kernels and other
    // providers need their weights transposed.
    prepack::PREPACK_GEMM_WEIGHTS,
    // Before the Relu fusion, so that ResNet's Add and Relu both go.
    fuse::FUSE_RESIDUAL_ADDS,
    fuse::FUSE_CONV_RELU,
    fuse::FUSE_CHANNEL_SHUFFLES,
    fuse::FUSE_CONCAT_CONVS,
    dead::REMOVE_DEAD_NODES,
];

/// Runs every pass of [`PASSES`] that `level` enables, in order.
pub fn run(graph: &mut TypedGraph, level: OptimizationLevel, cx: &PassContext) -> Optimizations {
    let mut done = Optimizations::default();
    for pass in PASSES.iter().filter(|p| level >= p.level) {
        done += (pass.run)(graph, cx);
    }
    graph.drop_unread_constants();
    done
}

#[cfg(test)]
pub(crate) mod tests {
    use super::{Optimizations, PassContext};
    use crate::graph::TypedGraph;
    use crate::model::{Attribute, Dim, Graph, Model, Node, ValueInfo};
    use crate::provider::{CpuProvider, ExecutionProvider};
    use crate::session::{OptimizationLevel, SessionBuilder};
    use crate::tensor::{DataType, Tensor};
    use std::collections::HashMap;

    /// Runs `f` with the context of a session of one CPU provider.
    pub(crate) fn context_for(f: impl FnOnce(&PassContext) -> Optimizations) -> Optimizations {
        let providers: Vec<Box<dyn ExecutionProvider>> = vec![Box::new(CpuProvider::new())];
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        f(&PassContext { providers: &providers, pool: &pool, max_tensor_bytes: usize::MAX, winograd: true, opset: 17 })
    }

    /// The op types of `graph`'s nodes, in order.
    pub(crate) fn ops_of(graph: &TypedGraph) -> Vec<&str> {
        graph.nodes().map(|(_, n)| n.node().op_type.as_str()).collect()
    }

    fn node(op: &str, inputs: &[&str], outputs: &[&str], attributes: &[(&str, Attribute)]) -> Node {
        Node {
            name: op.to_lowercase(),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }

    fn ramp(n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|i| ((i * 7 % 11) as f32 - 5.0) * scale + offset).collect()
    }

    /// Conv (with bias, stride 2, padding) → BatchNormalization → Relu:
    /// the fused graph computes what the graph as written does.
    #[test]
    fn folding_batch_norm_into_conv_keeps_the_result() {
        let (c, m) = (3, 4);
        let mut initializers = HashMap::new();
        initializers.insert("W".to_string(), Tensor::f32(vec![m, c, 3, 3], ramp(m * c * 9, 0.1, 0.0)).unwrap());
        initializers.insert("B".to_string(), Tensor::f32(vec![m], ramp(m, 0.2, 0.1)).unwrap());
        initializers.insert("scale".to_string(), Tensor::f32(vec![m], ramp(m, 0.3, 1.0)).unwrap());
        initializers.insert("beta".to_string(), Tensor::f32(vec![m], ramp(m, 0.05, 0.0)).unwrap());
        initializers.insert("mean".to_string(), Tensor::f32(vec![m], ramp(m, 0.1, 0.2)).unwrap());
        initializers.insert("var".to_string(), Tensor::f32(vec![m], ramp(m, 0.01, 0.5)).unwrap());
        let graph = Graph {
            nodes: vec![
                node("Conv", &["x", "W", "B"], &["y"], &[("strides", Attribute::Ints(vec![2, 2])), ("pads", Attribute::Ints(vec![1, 1, 1, 1]))]),
                node("BatchNormalization", &["y", "scale", "beta", "mean", "var"], &["z"], &[("epsilon", Attribute::Float(1e-3))]),
                node("Relu", &["z"], &["out"], &[]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(1), Dim::Known(c), Dim::Known(8), Dim::Known(8)]) }],
            outputs: vec![ValueInfo { name: "out".into(), dtype: Some(DataType::F32), shape: None }],
            initializers,
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 15)]), graph };
        let x = Tensor::f32(vec![1, c, 8, 8], ramp(c * 64, 0.25, 0.0)).unwrap();
        let run = |level| {
            let session = SessionBuilder::new().with_optimization_level(level).commit(model.clone()).unwrap();
            let fused = session.optimizations().fused;
            (session.run(vec![("x".into(), x.clone())]).unwrap().remove(0).1, fused)
        };
        let (plain, none) = run(OptimizationLevel::Basic);
        let (fused, one) = run(OptimizationLevel::Extended);
        // The BatchNormalization, then the Relu.
        assert_eq!((none, one), (0, 2));
        for (a, b) in plain.as_f32().unwrap().iter().zip(fused.as_f32().unwrap()) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
        }
        assert!(plain.as_f32().unwrap().iter().any(|&v| v > 0.0), "the test should not be trivially zero");
    }

    /// Gemm with a transB weight read by two nodes: prepared once, shared,
    /// and the results stay those of the graph as written.
    #[test]
    fn prepacked_gemm_weights_keep_the_result() {
        let (m, k, n) = (3, 5, 4);
        let graph = Graph {
            nodes: vec![
                node("Gemm", &["x", "W", "C"], &["y"], &[("transB", Attribute::Int(1)), ("alpha", Attribute::Float(0.5))]),
                node("Gemm", &["x", "W"], &["z"], &[("transB", Attribute::Int(1))]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(m), Dim::Known(k)]) }],
            outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }, ValueInfo { name: "z".into(), dtype: None, shape: None }],
            initializers: HashMap::from([
                ("W".to_string(), Tensor::f32(vec![n, k], ramp(n * k, 0.1, 0.3)).unwrap()),
                ("C".to_string(), Tensor::f32(vec![n], ramp(n, 0.2, 0.0)).unwrap()),
            ]),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph: graph.clone() };
        let mut typed = TypedGraph::new(graph, 13).unwrap();
        assert_eq!(context_for(|cx| (super::prepack::PREPACK_GEMM_WEIGHTS.run)(&mut typed, cx)).prepacked, 2);
        let transposed = typed.find("W#transposed").unwrap();
        assert_eq!(typed.constant(transposed).unwrap().shape(), &[k, n]);
        assert_eq!(typed.readers(transposed).len(), 2, "prepared once, read by both");
        assert!(typed.constant(typed.find("W").unwrap()).is_none(), "the original weight is dropped");
        let x = Tensor::f32(vec![m, k], ramp(m * k, 0.3, -0.1)).unwrap();
        let run = |level| SessionBuilder::new().with_optimization_level(level).commit(model.clone()).unwrap().run(vec![("x".into(), x.clone())]).unwrap();
        let (plain, prepared) = (run(OptimizationLevel::Basic), run(OptimizationLevel::Extended));
        for ((_, a), (_, b)) in plain.iter().zip(&prepared) {
            for (a, b) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
    }

    /// Conv → Relu fuses; a Conv whose output is also read elsewhere does not.
    #[test]
    fn relu_fuses_into_the_conv_before_it() {
        let (c, m) = (2, 3);
        let graph = Graph {
            nodes: vec![
                node("Conv", &["x", "W"], &["y"], &[("pads", Attribute::Ints(vec![1, 1, 1, 1]))]),
                node("Relu", &["y"], &["r"], &[]),
                node("Conv", &["r", "W2"], &["z"], &[]),
                node("Relu", &["z"], &["out"], &[]),
                node("Add", &["z", "z"], &["twice"], &[]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(1), Dim::Known(c), Dim::Known(5), Dim::Known(5)]) }],
            outputs: vec![ValueInfo { name: "out".into(), dtype: None, shape: None }, ValueInfo { name: "twice".into(), dtype: None, shape: None }],
            initializers: HashMap::from([
                ("W".to_string(), Tensor::f32(vec![m, c, 3, 3], ramp(m * c * 9, 0.2, 0.0)).unwrap()),
                ("W2".to_string(), Tensor::f32(vec![m, m, 1, 1], ramp(m * m, 0.3, -0.1)).unwrap()),
            ]),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
        let x = Tensor::f32(vec![1, c, 5, 5], ramp(c * 25, 0.5, -0.2)).unwrap();
        let run = |level| {
            let session = SessionBuilder::new().with_optimization_level(level).commit(model.clone()).unwrap();
            (session.run(vec![("x".into(), x.clone())]).unwrap(), session.optimizations().fused, session.placements().len())
        };
        let (plain, none, steps) = run(OptimizationLevel::Basic);
        let (fused, one, fewer) = run(OptimizationLevel::Extended);
        // (The steps include the Transposes of the CPU's channels-last layout.)
        assert_eq!((none, one, fewer), (0, 1, steps - 1), "only the first Relu fuses");
        for ((_, a), (_, b)) in plain.iter().zip(&fused) {
            for (a, b) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
            }
        }
        assert!(plain[0].1.as_f32().unwrap().contains(&0.0) && plain[1].1.as_f32().unwrap().iter().any(|&v| v < 0.0), "both signs occur");
    }

    /// Identity and inference Dropouts (one reading another) disappear;
    /// a Dropout whose mask is read, and one making a graph output, stay.
    #[test]
    fn pass_through_nodes_are_removed() {
        let graph = Graph {
            nodes: vec![
                node("Identity", &["x"], &["a"], &[]),
                node("Dropout", &["a", "", "off"], &["b", "unread_mask"], &[]),
                node("Neg", &["b"], &["y"], &[]),
                node("Dropout", &["y"], &["c", "mask"], &[]),
                node("Dropout", &["c"], &["out"], &[]),
            ],
            inputs: vec![ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(vec![Dim::Known(3)]) }],
            outputs: ["out", "mask"].iter().map(|n| ValueInfo { name: n.to_string(), dtype: None, shape: None }).collect(),
            initializers: HashMap::from([("off".to_string(), Tensor::new(vec![], crate::tensor::Data::Bool(vec![false])).unwrap())]),
        };
        let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
        let session = SessionBuilder::new().with_optimization_level(OptimizationLevel::Basic).commit(model).unwrap();
        assert_eq!(session.optimizations().removed, 2);
        let out = session.run(vec![("x".into(), Tensor::f32(vec![3], vec![1.0, -2.0, 3.0]).unwrap())]).unwrap();
        assert_eq!(out[0].1.as_f32().unwrap(), &[-1.0, 2.0, -3.0]);
    }
}
