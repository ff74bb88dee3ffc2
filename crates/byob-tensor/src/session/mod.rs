//! Sessions: a model prepared for running, shaped like ONNX Runtime's API.

mod binding;
mod handle;
pub(crate) mod control_flow;
pub use control_flow::MAX_LOOP_ITERATIONS;
mod pinned;
mod run;
pub(crate) use run::Limits;

pub use binding::IoBinding;
pub use handle::RunHandle;

use crate::model::{Dim, Model, ModelError, Node, ValueInfo};
use crate::ops::{Fact, Op, OpError};
use crate::layout::Layout;
use crate::plan::{Lifetime, MemoryPlan};
use crate::provider::{CpuProvider, ExecutionProvider, Subgraph};
use crate::tensor::{DataType, Tensor, TensorError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// How much the graph is rewritten before running.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum OptimizationLevel {
    /// Run the graph as written.
    Disabled,
    /// Fold constant subgraphs (shape computations included) and drop dead nodes.
    Basic,
    /// Also fuse operators (BatchNormalization into the Conv before it) and
    /// lay constant Gemm weights out for the kernel.
    #[default]
    Extended,
}

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("node {node:?}: operator {op} (opset {opset}) is not supported by any provider (cpu runs: {known})")]
    Unsupported { node: String, op: String, opset: i64, known: String },
    #[error("node {node:?} ({op}): {error}")]
    Node { node: String, op: String, error: OpError },
    #[error("value {0:?} is used but never produced (not a graph input, initializer or node output)")]
    UnknownValue(String),
    #[error("the graph has a cycle through node {0:?}")]
    Cycle(String),
    #[error("input {name:?}: {what}")]
    Pinned { name: String, what: String },
    #[error("could not start {0} threads: {1}")]
    Threads(usize, String),
}

/// Why a run failed. The session stays usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("missing input(s) {missing:?}; the model expects: {expected}")]
    MissingInput { missing: Vec<String>, expected: String },
    #[error("unknown input {name:?}; the model expects: {expected}")]
    UnknownInput { name: String, expected: String },
    #[error("input {name:?}: expected {expected}, got {got}")]
    InputType { name: String, expected: String, got: String },
    #[error("input {name:?}: expected shape {expected}, got {got:?}")]
    InputShape { name: String, expected: String, got: Vec<usize> },
    #[error("unknown output {name:?} bound; the model's outputs are: {expected}")]
    UnknownOutput { name: String, expected: String },
    #[error("node {node:?} ({op}): {error}")]
    Node { node: String, op: String, error: OpError },
    /// A [`RunHandle`] runs kernels on the caller's thread; this session
    /// has a step on a device.
    #[error("node {node:?} runs on {provider}, which cannot run on the caller's thread")]
    NotInline { node: String, provider: String },
    /// The memory plan's buffers could not be allocated.
    #[error("laying out the memory plan: {0}")]
    Memory(TensorError),
    /// Past [`SessionBuilder::with_max_run_bytes`].
    #[error("{at}: needs {bytes} bytes with {held} already held, more than the {limit} one run's tensors may hold (SessionBuilder::with_max_run_bytes; byob run --max-run-mib)")]
    RunLimit { at: String, bytes: usize, held: usize, limit: usize },
}

/// Statistics of one run: memory, and each step's time when profiling.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunStats {
    /// The most bytes of node outputs alive at once: the lower bound for
    /// any memory plan.
    pub peak_intermediate_bytes: usize,
    /// Bytes of the buffers the memory plan placed intermediates in.
    pub planned_bytes: usize,
    /// Tensor buffers allocated during the run (for the plan's buffers on
    /// a first run with new shapes, for outputs nobody bound, and by
    /// kernels whose outputs' sizes could not be planned).
    pub tensor_allocations: usize,
    /// How long each step took, in step order, when the session profiles
    /// (see [`SessionBuilder::with_profiling`]); empty otherwise.
    pub steps: Vec<StepTime>,
}

/// One step of a profiled run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepTime {
    /// The node it ran (for a fused node, the name it kept).
    pub node: String,
    /// Its operator, as the session runs it (`PackedConv`, `ConcatConvs`…).
    pub op: String,
    pub seconds: f64,
}

/// Builds a [`Session`].
#[derive(Default)]
pub struct SessionBuilder {
    providers: Vec<Box<dyn ExecutionProvider>>,
    intra_op_threads: Option<usize>,
    optimization_level: OptimizationLevel,
    /// `None`: the default, on.
    spinning: Option<bool>,
    profiling: bool,
    /// `None`: the default, on.
    winograd: Option<bool>,
    /// `None`: [`DEFAULT_MAX_TENSOR_BYTES`].
    max_tensor_bytes: Option<usize>,
    /// `None`: [`DEFAULT_MAX_RUN_BYTES`].
    max_run_bytes: Option<usize>,
    /// Inputs fixed at build: see [`with_input_shape`](Self::with_input_shape).
    pinned: pinned::Pinned,
}

/// The default of [`SessionBuilder::with_max_tensor_bytes`]: 4 GiB.
pub const DEFAULT_MAX_TENSOR_BYTES: usize = 4 << 30;

/// The default of [`SessionBuilder::with_max_run_bytes`]: 16 GiB.
pub const DEFAULT_MAX_RUN_BYTES: usize = 16 << 30;

thread_local! {
    /// The limits of the session being committed on this thread: the
    /// sessions of its subgraphs, committed while their nodes are built
    /// (by builders that take only the node), keep to them too.
    static BUILDING: std::cell::Cell<Option<Limits>> = const { std::cell::Cell::new(None) };
}

/// The limits of the session being committed on this thread (the
/// defaults outside a commit).
pub(crate) fn building_limits() -> Limits {
    BUILDING.get().unwrap_or_default()
}


impl SessionBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider; nodes go to the first provider that can run them,
    /// and to the CPU provider otherwise.
    pub fn with_provider(mut self, provider: Box<dyn ExecutionProvider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// Threads for parallel kernels (default: one per core).
    pub fn with_intra_op_threads(mut self, threads: usize) -> Self {
        self.intra_op_threads = Some(threads.max(1));
        self
    }

    /// Whether the session's threads keep looking for work during a run
    /// instead of sleeping between kernels, and for 10 ms after a blocking
    /// run, for the next one (default: yes, as ONNX Runtime's
    /// `allow_spinning`): lower latency, at the price of keeping every
    /// intra-op thread's core busy while a run lasts and a little after.
    /// Runs with steps on a device never spin.
    pub fn with_intra_op_spinning(mut self, spinning: bool) -> Self {
        self.spinning = Some(spinning);
        self
    }

    /// Whether 3×3 convolutions with stride 1 on images of known size may
    /// use Winograd's algorithm on the CPU (default: yes): fewer
    /// multiply-adds, at the price of transformed weights up to 4× the
    /// size of the originals and a little more rounding (see
    /// docs/onnx.md). Off, they convolve directly.
    pub fn with_winograd(mut self, winograd: bool) -> Self {
        self.winograd = Some(winograd);
        self
    }

    /// The most bytes one tensor a kernel computes may take (default
    /// [`DEFAULT_MAX_TENSOR_BYTES`]): a ConstantOfShape of 10^9 elements
    /// or an Expand to a crafted shape fails with an error naming the
    /// limit before allocating, at folding or at run time.
    pub fn with_max_tensor_bytes(mut self, bytes: usize) -> Self {
        self.max_tensor_bytes = Some(bytes);
        self
    }

    /// The most bytes the tensors of one run may hold at once (default
    /// [`DEFAULT_MAX_RUN_BYTES`]): the memory plan's buffers, the outputs
    /// whose sizes could not be planned, and what loops and subgraphs
    /// gather. A crafted model of many tensors each under
    /// [`with_max_tensor_bytes`](Self::with_max_tensor_bytes) fails with
    /// an error naming this limit instead of exhausting memory.
    pub fn with_max_run_bytes(mut self, bytes: usize) -> Self {
        self.max_run_bytes = Some(bytes);
        self
    }

    /// Whether runs time each step ([`RunStats::steps`]), as ONNX
    /// Runtime's `enable_profiling` does (default: no; when on, each run
    /// allocates its list of timings).
    pub fn with_profiling(mut self, profiling: bool) -> Self {
        self.profiling = profiling;
        self
    }

    /// Fixes input `name` to `shape` (the dimensions the model leaves open
    /// among them): runs must then feed exactly that shape, and what
    /// depends only on shapes (Shape arithmetic, `If`s on a batch size) is
    /// computed once, at build. For streaming callers that feed the same
    /// frame size every time.
    pub fn with_input_shape(mut self, name: impl Into<String>, shape: Vec<usize>) -> Self {
        self.pinned.shapes.push((name.into(), shape));
        self
    }

    /// Fixes input `name` to `value` for every run: it stops being an
    /// input (runs must not feed it) and becomes a constant, so that what
    /// depends on it is computed once, at build (Silero VAD's sample rate
    /// selects one of two networks with an `If`).
    pub fn with_constant_input(mut self, name: impl Into<String>, value: Tensor) -> Self {
        self.pinned.constants.push((name.into(), value));
        self
    }

    pub fn with_optimization_level(mut self, level: OptimizationLevel) -> Self {
        self.optimization_level = level;
        self
    }

    pub fn commit_from_file(self, path: impl AsRef<Path>) -> Result<Session, SessionError> {
        self.commit(Model::load(path.as_ref())?)
    }

    pub fn commit_from_memory(self, bytes: &[u8]) -> Result<Session, SessionError> {
        self.commit(Model::from_bytes(bytes, None)?)
    }

    pub fn commit(self, model: Model) -> Result<Session, SessionError> {
        let defaults = Limits::default();
        let limits = Limits { tensor: self.max_tensor_bytes.unwrap_or(defaults.tensor), run: self.max_run_bytes.unwrap_or(defaults.run) };
        let outer = BUILDING.replace(Some(limits));
        let session = self.commit_within(model, limits);
        BUILDING.set(outer);
        session
    }

    fn commit_within(mut self, mut model: Model, limits: Limits) -> Result<Session, SessionError> {
        let threads = self.intra_op_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| SessionError::Threads(threads, e.to_string()))?;
        let opset = model.opset();
        pinned::apply(std::mem::take(&mut self.pinned), &mut model.graph)?;
        for node in &model.graph.nodes {
            crate::ops::arity::check_arity(node, opset).map_err(|what| SessionError::Node { node: node.name.clone(), op: node.op_type.clone(), error: OpError::Arity(what) })?;
        }
        let level = self.optimization_level;
        let folded = if level >= OptimizationLevel::Basic { crate::fold::fold_constants(&mut model.graph, opset, &pool, limits.tensor) } else { Default::default() };
        let identities = if level >= OptimizationLevel::Basic { crate::optimize::remove_identities(&mut model.graph) } else { 0 };
        let fused = if level >= OptimizationLevel::Extended { crate::optimize::fold_batch_norms(&mut model.graph) } else { 0 };
        self.providers.push(Box::new(CpuProvider::new()));
        let providers = &self.providers;
        let channels_last = crate::layout::to_channels_last(&mut model.graph, |node, variant| {
            providers.iter().find(|p| p.supports(node, opset, &[])).is_some_and(|p| p.preferred_layout() == Layout::Nhwc && p.supports(variant, opset, &[]))
        });
        // Fused nodes only where the provider that takes the node runs them.
        let taker_runs = |node: &Node, fused: &Node| providers.iter().find(|p| p.supports(node, opset, &[])).is_some_and(|p| p.supports(fused, opset, &[]));
        let (packed, winograd) = if level >= OptimizationLevel::Extended { crate::pack::pack_weights(&mut model.graph, opset, self.winograd.unwrap_or(true), taker_runs) } else { (0, 0) };
        // After packing: only the Gemms left to the generic kernels and
        // other providers need their weights transposed.
        let prepacked = if level >= OptimizationLevel::Extended { crate::optimize::prepack_gemm_weights(&mut model.graph) } else { 0 };
        let residuals = if level >= OptimizationLevel::Extended { crate::fuse::fuse_residual_adds(&mut model.graph, opset, taker_runs) } else { 0 };
        let activations = if level >= OptimizationLevel::Extended { crate::optimize::fuse_conv_relu(&mut model.graph, taker_runs) } else { 0 };
        let shuffles = if level >= OptimizationLevel::Extended { crate::fuse::fuse_channel_shuffles(&mut model.graph, taker_runs) } else { 0 };
        let concats = if level >= OptimizationLevel::Extended { crate::fuse::fuse_concat_convs(&mut model.graph, taker_runs) } else { 0 };
        let mut session = Session::prepare(model, self.providers, level, pool, limits)?;
        session.optimizations.folded += folded.nodes;
        session.optimizations.inlined_branches = folded.branches;
        session.optimizations.removed += identities;
        session.optimizations.fused = fused;
        session.optimizations.prepacked = prepacked;
        session.optimizations.fused += residuals + activations + shuffles + concats;
        session.optimizations.channels_last = channels_last;
        session.optimizations.packed = packed;
        session.optimizations.winograd = winograd;
        session.spin = self.spinning.unwrap_or(true) && !session.steps.iter().any(|s| s.op.waits_on_device());
        session.profiling = self.profiling;
        Ok(session)
    }
}

/// A node ready to run, or a compiled run of nodes.
struct Step {
    /// For errors: the node's name and op type (a compiled run's first
    /// node and its provider).
    name: String,
    op_type: String,
    /// The nodes it runs and where.
    placed: Vec<NodePlacement>,
    op: Box<dyn Op>,
    inputs: Vec<Option<usize>>,
    outputs: Vec<usize>,
}

/// Consecutive nodes (positions in topological order) that a compiling
/// provider takes, not yet compiled.
struct OpenRun {
    provider: usize,
    nodes: Vec<usize>,
}

impl OpenRun {
    /// Compiles the run into one step: its inputs are the values its nodes
    /// read from outside (constants go in with the subgraph), its outputs
    /// the values read after it or returned by the graph.
    #[allow(clippy::too_many_arguments)]
    fn close(
        self,
        nodes: &[&Node],
        readers: &HashMap<&str, Vec<usize>>,
        graph_outputs: &std::collections::HashSet<&str>,
        providers: &[Box<dyn ExecutionProvider>],
        opset: i64,
        facts: &HashMap<usize, Fact>,
        constants: &HashMap<usize, Tensor>,
        intern: &mut dyn FnMut(&str) -> usize,
    ) -> Result<Step, SessionError> {
        let members: std::collections::HashSet<usize> = self.nodes.iter().copied().collect();
        let produced: std::collections::HashSet<&str> = self.nodes.iter().flat_map(|&k| nodes[k].outputs.iter().map(String::as_str)).collect();
        let mut subgraph = Subgraph { nodes: Vec::new(), inputs: Vec::new(), input_facts: Vec::new(), outputs: Vec::new(), constants: HashMap::new() };
        for &k in &self.nodes {
            let node = nodes[k];
            for input in node.inputs.iter().filter(|i| !i.is_empty()) {
                let id = intern(input);
                if let Some(c) = constants.get(&id) {
                    subgraph.constants.entry(input.clone()).or_insert_with(|| c.clone());
                } else if !produced.contains(input.as_str()) && !subgraph.inputs.contains(input) {
                    subgraph.inputs.push(input.clone());
                    subgraph.input_facts.push(facts.get(&id).cloned());
                }
            }
            for output in node.outputs.iter().filter(|o| !o.is_empty()) {
                let read_outside = readers.get(output.as_str()).is_some_and(|r| r.iter().any(|k| !members.contains(k)));
                if read_outside || graph_outputs.contains(output.as_str()) {
                    subgraph.outputs.push(output.clone());
                }
            }
            subgraph.nodes.push(node.clone());
        }
        let provider = &providers[self.provider];
        let first = &subgraph.nodes[0];
        let (name, op_type) = (first.name.clone(), first.op_type.clone());
        let placed = subgraph.nodes.iter().map(|n| NodePlacement { name: n.name.clone(), op_type: n.op_type.clone(), provider: provider.name() }).collect();
        let inputs = subgraph.inputs.iter().map(|n| Some(intern(n))).collect();
        let outputs = subgraph.outputs.iter().map(|n| intern(n)).collect();
        let op = provider.compile(subgraph, opset).map_err(|error| SessionError::Node { node: name.clone(), op: op_type.clone(), error })?;
        Ok(Step { name, op_type: provider.name().to_string(), placed, op, inputs, outputs })
    }
}

/// Where a node runs, for `byob info`.
#[derive(Clone, Debug, PartialEq)]
pub struct NodePlacement {
    pub name: String,
    pub op_type: String,
    pub provider: &'static str,
}

/// A model prepared for running. Runs from several threads at once are
/// safe: each takes buffers of its own.
pub struct Session {
    steps: Vec<Step>,
    value_names: Vec<String>,
    /// Initializers and folded constants, by value index.
    constants: Vec<Option<Tensor>>,
    /// What the memory planner may know of constants: small ones (shapes,
    /// axes) with their values, weights without.
    constant_facts: Vec<Option<Fact>>,
    inputs: Vec<(ValueInfo, usize)>,
    outputs: Vec<(ValueInfo, usize)>,
    /// Values whose storage the plan does not place: graph inputs and
    /// outputs, constants.
    external: Vec<bool>,
    /// When each value produced by a step is first written and last read.
    lifetimes: Vec<Option<Lifetime>>,
    /// Per step, the input slot whose tensor its output 0 may take over
    /// (see [`Op::in_place_input`]): an intermediate read there last, by
    /// that slot alone, for an intermediate output. The memory plan decides
    /// whether it does (both sizes known and equal).
    in_place: Vec<Option<usize>>,
    /// Memory plans by input shapes.
    plans: Mutex<Vec<(run::ShapeKey, Arc<MemoryPlan>)>>,
    /// Buffers of finished runs, for the next ones.
    states: Mutex<Vec<run::RunState>>,
    opset: i64,
    pool: rayon::ThreadPool,
    /// Whether blocking runs keep the other threads spinning.
    spin: bool,
    /// Whether runs time each step.
    profiling: bool,
    /// What [`SessionBuilder::with_max_tensor_bytes`] and
    /// [`SessionBuilder::with_max_run_bytes`] set.
    limits: Limits,
    /// Blocking runs begun so far, for threads spinning after a run to see
    /// that the next one has started.
    runs_started: Arc<std::sync::atomic::AtomicU64>,
    optimizations: Optimizations,
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

fn describe_inputs(inputs: &[(ValueInfo, usize)]) -> String {
    inputs
        .iter()
        .map(|(v, _)| {
            let shape = v.shape.as_ref().map_or("?".to_string(), |s| format!("[{}]", s.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")));
            format!("{} {} {}", v.name, v.dtype.map_or("?".to_string(), |d| d.to_string()), shape)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Session {
    fn prepare(model: Model, providers: Vec<Box<dyn ExecutionProvider>>, level: OptimizationLevel, pool: rayon::ThreadPool, limits: Limits) -> Result<Self, SessionError> {
        let opset = model.opset();
        let graph = model.graph;
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut value_names = Vec::new();
        let mut intern = |name: &str, index: &mut HashMap<String, usize>| -> usize {
            *index.entry(name.to_string()).or_insert_with(|| {
                value_names.push(name.to_string());
                value_names.len() - 1
            })
        };
        let mut facts: HashMap<usize, Fact> = HashMap::new();
        let mut constants: HashMap<usize, Tensor> = HashMap::new();
        for (name, tensor) in &graph.initializers {
            let i = intern(name, &mut index);
            facts.insert(i, Fact::constant(tensor.clone()));
            constants.insert(i, tensor.clone());
        }
        let mut inputs = Vec::new();
        for v in &graph.inputs {
            let i = intern(&v.name, &mut index);
            if let (Some(dtype), Some(shape)) = (v.dtype, &v.shape) {
                facts.insert(i, Fact::new(dtype, shape.clone()));
            }
            inputs.push((v.clone(), i));
        }
        let nodes = topological(&graph.nodes, &graph.initializers, &graph.inputs)?;
        let mut outputs = Vec::new();
        for v in &graph.outputs {
            outputs.push((v.clone(), intern(&v.name, &mut index)));
        }
        // Which nodes feed an output (dead-node elimination).
        let needed = if level >= OptimizationLevel::Basic { live_nodes(&nodes, &graph.outputs) } else { vec![true; nodes.len()] };
        let mut steps = Vec::new();
        let (mut folded, mut removed) = (0, 0);
        // Consumers of each value by node position, to find what leaves a
        // compiled run of nodes.
        let mut readers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (k, node) in nodes.iter().enumerate() {
            for input in node.inputs.iter().filter(|i| !i.is_empty()) {
                readers.entry(input.as_str()).or_default().push(k);
            }
        }
        let graph_outputs: std::collections::HashSet<&str> = graph.outputs.iter().map(|v| v.name.as_str()).collect();
        let cpu = CpuProvider::new();
        let mut run: Option<OpenRun> = None;
        for (k, (node, needed)) in nodes.iter().zip(needed).enumerate() {
            if !needed {
                removed += 1;
                continue;
            }
            let input_ids: Vec<Option<usize>> = node.inputs.iter().map(|n| (!n.is_empty()).then(|| intern(n, &mut index))).collect();
            let output_ids: Vec<usize> = node.outputs.iter().map(|n| intern(n, &mut index)).collect();
            let known_facts: Vec<Option<&Fact>> = input_ids.iter().map(|i| i.and_then(|i| facts.get(&i))).collect();
            let p = providers.iter().position(|p| p.supports(node, opset, &known_facts)).ok_or_else(|| SessionError::Unsupported {
                node: node.name.clone(),
                op: node.op_type.clone(),
                opset,
                known: cpu.op_types().join(", "),
            })?;
            let provider = &providers[p];
            let node_error = |error| SessionError::Node { node: node.name.clone(), op: node.op_type.clone(), error };
            // A compiling provider's nodes infer and fold with the CPU's
            // kernels; the compiled subgraph runs them.
            let compiled = provider.compiles_subgraphs();
            let op = if compiled { cpu.create_kernel(node, opset) } else { provider.create_kernel(node, opset) };
            let op = match (op, compiled) {
                (Ok(op), _) => Some(op),
                (Err(_), true) => None,
                (Err(e), false) => return Err(node_error(e)),
            };
            // Static inference where the inputs are known; constant folding
            // where every input is a constant.
            let input_facts: Option<Vec<Option<&Fact>>> = input_ids.iter().map(|i| i.map(|i| facts.get(&i)).map_or(Some(None), |f| f.map(Some))).collect();
            if let (Some(input_facts), Some(op)) = (input_facts, &op) {
                let out = op.infer(&input_facts).map_err(node_error)?;
                let all_constant = level >= OptimizationLevel::Basic && input_ids.iter().flatten().all(|i| constants.contains_key(i));
                if all_constant && !node.outputs.is_empty() {
                    let values: Vec<Option<&Tensor>> = input_ids.iter().map(|i| i.map(|i| &constants[&i])).collect();
                    let results = op.eval_limited(&values, output_ids.len(), &pool, limits.tensor).map_err(node_error)?;
                    for (&id, tensor) in output_ids.iter().zip(results) {
                        facts.insert(id, Fact::constant(tensor.clone()));
                        constants.insert(id, tensor);
                    }
                    folded += 1;
                    continue;
                }
                for (&id, fact) in output_ids.iter().zip(out) {
                    if let (true, Some(value)) = (level >= OptimizationLevel::Basic, &fact.value) {
                        constants.insert(id, value.clone());
                    }
                    facts.insert(id, fact);
                }
                if output_ids.iter().all(|id| constants.contains_key(id)) && level >= OptimizationLevel::Basic {
                    folded += 1;
                    continue;
                }
            }
            if compiled {
                match &mut run {
                    Some(open) if open.provider == p => open.nodes.push(k),
                    _ => {
                        if let Some(open) = run.take() {
                            steps.push(open.close(&nodes, &readers, &graph_outputs, &providers, opset, &facts, &constants, &mut |n| intern(n, &mut index))?);
                        }
                        run = Some(OpenRun { provider: p, nodes: vec![k] });
                    }
                }
                continue;
            }
            if let Some(open) = run.take() {
                steps.push(open.close(&nodes, &readers, &graph_outputs, &providers, opset, &facts, &constants, &mut |n| intern(n, &mut index))?);
            }
            let op = op.expect("non-compiling providers made a kernel");
            let placed = vec![NodePlacement { name: node.name.clone(), op_type: node.op_type.clone(), provider: provider.name() }];
            steps.push(Step { name: node.name.clone(), op_type: node.op_type.clone(), placed, op, inputs: input_ids, outputs: output_ids });
        }
        if let Some(open) = run.take() {
            steps.push(open.close(&nodes, &readers, &graph_outputs, &providers, opset, &facts, &constants, &mut |n| intern(n, &mut index))?);
        }
        let mut lifetimes: Vec<Option<Lifetime>> = vec![None; value_names.len()];
        for (s, step) in steps.iter().enumerate() {
            for &o in &step.outputs {
                lifetimes[o] = Some(Lifetime { first: s, last: s });
            }
            for &i in step.inputs.iter().flatten() {
                if let Some(l) = &mut lifetimes[i] {
                    l.last = s;
                }
            }
        }
        let mut external = vec![false; value_names.len()];
        for &(_, i) in inputs.iter().chain(&outputs) {
            external[i] = true;
        }
        for &i in constants.keys() {
            external[i] = true;
        }
        let in_place = steps
            .iter()
            .enumerate()
            .map(|(s, step)| {
                let slot = step.op.in_place_input()?;
                let (taken, out) = ((*step.inputs.get(slot)?)?, *step.outputs.first()?);
                let alone = step.inputs.iter().flatten().filter(|&&i| i == taken).count() == 1;
                let last_read = lifetimes[taken].is_some_and(|l| l.last == s);
                (alone && last_read && !external[taken] && !external[out]).then_some(slot)
            })
            .collect::<Vec<_>>();
        let in_place_steps = in_place.iter().flatten().count();
        let constant_facts = (0..value_names.len()).map(|i| constants.get(&i).map(planner_fact)).collect();
        let constants = (0..value_names.len()).map(|i| constants.remove(&i)).collect();
        Ok(Self {
            steps,
            value_names,
            constants,
            constant_facts,
            inputs,
            outputs,
            external,
            lifetimes,
            in_place,
            plans: Mutex::default(),
            states: Mutex::default(),
            opset,
            pool,
            spin: false,
            profiling: false,
            limits,
            runs_started: Arc::default(),
            optimizations: Optimizations { folded, removed, in_place: in_place_steps, ..Optimizations::default() },
        })
    }

    /// The inputs a caller must feed.
    pub fn inputs(&self) -> impl Iterator<Item = &ValueInfo> {
        self.inputs.iter().map(|(v, _)| v)
    }

    pub fn outputs(&self) -> impl Iterator<Item = &ValueInfo> {
        self.outputs.iter().map(|(v, _)| v)
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Where each remaining node runs.
    pub fn placements(&self) -> Vec<NodePlacement> {
        self.steps.iter().flat_map(|s| s.placed.iter().cloned()).collect()
    }

    /// What the graph passes did at creation.
    pub fn optimizations(&self) -> Optimizations {
        self.optimizations
    }

    /// Runs the model; outputs come in the model's output order.
    pub fn run(&self, feeds: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, RunError> {
        self.run_with_stats(feeds).map(|(outputs, _)| outputs)
    }

    /// [`run`](Self::run) as a future (see
    /// [`run_with_binding_async`](Self::run_with_binding_async)).
    pub async fn run_async(&self, feeds: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>, RunError> {
        let mut binding = IoBinding::new();
        for (name, tensor) in feeds {
            binding.bind_input(name, tensor);
        }
        self.run_with_binding_async(&mut binding).await?;
        Ok(self.outputs.iter().filter_map(|(v, _)| Some((v.name.clone(), binding.take_output(&v.name)?))).collect())
    }

    /// [`run`](Self::run), also reporting memory statistics.
    pub fn run_with_stats(&self, feeds: Vec<(String, Tensor)>) -> Result<(Vec<(String, Tensor)>, RunStats), RunError> {
        let mut binding = IoBinding::new();
        for (name, tensor) in feeds {
            binding.bind_input(name, tensor);
        }
        let stats = self.run_with_binding(&mut binding)?;
        let outputs = self.outputs.iter().filter_map(|(v, _)| Some((v.name.clone(), binding.take_output(&v.name)?))).collect();
        Ok((outputs, stats))
    }
}

/// Constants the planner sees: values up to this many elements come with
/// their contents (shape computations need them); larger ones, weights, do
/// not, so that planning never copies them.
const PLANNER_VALUE_LIMIT: usize = 64;

fn planner_fact(t: &Tensor) -> Fact {
    if t.len() <= PLANNER_VALUE_LIMIT || t.dtype() != DataType::F32 {
        Fact::constant(t.clone())
    } else {
        Fact::new(t.dtype(), t.shape().iter().map(|&d| Dim::Known(d)).collect())
    }
}

fn check_input(info: &ValueInfo, tensor: &Tensor) -> Result<(), RunError> {
    if let Some(dtype) = info.dtype {
        if dtype != tensor.dtype() {
            return Err(RunError::InputType { name: info.name.clone(), expected: dtype.to_string(), got: tensor.dtype().to_string() });
        }
    }
    check_shape(info, tensor.shape())
}

/// Whether an input of `shape` fits the model's declaration of it.
fn check_shape(info: &ValueInfo, got: &[usize]) -> Result<(), RunError> {
    if let Some(shape) = &info.shape {
        let fits = shape.len() == got.len() && shape.iter().zip(got).all(|(d, &n)| !matches!(d, Dim::Known(k) if *k != n));
        if !fits {
            let expected = format!("[{}]", shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "));
            return Err(RunError::InputShape { name: info.name.clone(), expected, got: got.to_vec() });
        }
    }
    Ok(())
}

/// The nodes in an order where every input is produced before use.
fn topological<'a>(nodes: &'a [Node], initializers: &HashMap<String, Tensor>, inputs: &[ValueInfo]) -> Result<Vec<&'a Node>, SessionError> {
    let mut available: std::collections::HashSet<&str> = initializers.keys().map(String::as_str).chain(inputs.iter().map(|v| v.name.as_str())).collect();
    available.insert("");
    let producers: HashMap<&str, usize> = nodes.iter().enumerate().flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i))).collect();
    let mut done = vec![false; nodes.len()];
    let mut order = Vec::with_capacity(nodes.len());
    let mut progress = true;
    while order.len() < nodes.len() && progress {
        progress = false;
        for (i, n) in nodes.iter().enumerate() {
            if !done[i] && n.inputs.iter().all(|x| available.contains(x.as_str())) {
                done[i] = true;
                progress = true;
                order.push(n);
                available.extend(n.outputs.iter().map(String::as_str));
            }
        }
    }
    if order.len() < nodes.len() {
        let stuck = nodes.iter().enumerate().find(|(i, _)| !done[*i]).map(|(_, n)| n).expect("some node is left");
        if let Some(missing) = stuck.inputs.iter().find(|x| !available.contains(x.as_str()) && !producers.contains_key(x.as_str())) {
            return Err(SessionError::UnknownValue(missing.clone()));
        }
        return Err(SessionError::Cycle(stuck.name.clone()));
    }
    Ok(order)
}

/// Marks the nodes an output depends on.
fn live_nodes(nodes: &[&Node], outputs: &[ValueInfo]) -> Vec<bool> {
    let mut wanted: std::collections::HashSet<&str> = outputs.iter().map(|v| v.name.as_str()).collect();
    let mut live = vec![false; nodes.len()];
    for (i, n) in nodes.iter().enumerate().rev() {
        if n.outputs.iter().any(|o| wanted.contains(o.as_str())) {
            live[i] = true;
            wanted.extend(n.inputs.iter().map(String::as_str));
        }
    }
    live
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("steps", &self.steps.len()).field("inputs", &self.inputs).finish()
    }
}
