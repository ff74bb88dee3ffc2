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

use crate::device::DeviceError;
use crate::graph::{NodeId, TypedGraph, ValueId};
use crate::model::{Dim, Model, ModelError, ValueInfo};
use crate::ops::{Fact, Op, OpError};
use crate::passes::PassContext;
pub use crate::passes::{OptimizationLevel, Optimizations};
use crate::plan::{Lifetime, MemoryPlan};
use crate::provider::{CpuProvider, ExecutionProvider, Subgraph};
use crate::tensor::{DataType, Tensor, TensorError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

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
    /// A value bound on a device could not be read or written there.
    #[error("{value:?}, bound on a device: {error}")]
    Device { value: String, error: DeviceError },
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
    /// Copies between the host and a device that the session made for
    /// values bound on a device: a device input read by a step of another
    /// provider, a device-bound output computed on the host. Zero when
    /// every step that touches them runs on their device.
    pub device_transfers: usize,
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
        let mut graph = TypedGraph::new(model.graph, opset)?;
        self.providers.push(Box::new(CpuProvider::new()));
        let cx = PassContext { providers: &self.providers, pool: &pool, max_tensor_bytes: limits.tensor, winograd: self.winograd.unwrap_or(true), opset };
        let optimizations = crate::passes::run(&mut graph, self.optimization_level, &cx);
        let mut session = Session::prepare(graph, self.providers, pool, limits)?;
        session.optimizations = Optimizations { in_place: session.optimizations.in_place, ..optimizations };
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

/// Consecutive nodes that a compiling provider takes, not yet compiled.
struct OpenRun {
    provider: usize,
    nodes: Vec<NodeId>,
}

impl OpenRun {
    /// Compiles the run into one step: its inputs are the values its nodes
    /// read from outside (constants go in with the subgraph), its outputs
    /// the values read after it or returned by the graph.
    fn close(self, graph: &TypedGraph, providers: &[Box<dyn ExecutionProvider>]) -> Result<Step, SessionError> {
        let members: std::collections::HashSet<NodeId> = self.nodes.iter().copied().collect();
        let produced: std::collections::HashSet<ValueId> = self.nodes.iter().flat_map(|&n| graph.node(n).outputs().iter().flatten().copied()).collect();
        let mut subgraph = Subgraph { nodes: Vec::new(), inputs: Vec::new(), input_facts: Vec::new(), outputs: Vec::new(), constants: HashMap::new() };
        let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
        for &n in &self.nodes {
            let typed = graph.node(n);
            for &x in typed.inputs().iter().flatten() {
                if let Some(c) = graph.constant(x) {
                    subgraph.constants.entry(graph.name(x).to_string()).or_insert_with(|| c.clone());
                } else if !produced.contains(&x) && !inputs.contains(&x) {
                    inputs.push(x);
                    subgraph.inputs.push(graph.name(x).to_string());
                    subgraph.input_facts.push(graph.fact(x).cloned());
                }
            }
            for &y in typed.outputs().iter().flatten() {
                if graph.is_output(y) || graph.readers(y).iter().any(|r| !members.contains(r)) {
                    outputs.push(y);
                    subgraph.outputs.push(graph.name(y).to_string());
                }
            }
            subgraph.nodes.push(typed.node().clone());
        }
        let provider = &providers[self.provider];
        let first = &subgraph.nodes[0];
        let (name, op_type) = (first.name.clone(), first.op_type.clone());
        let placed = subgraph.nodes.iter().map(|n| NodePlacement { name: n.name.clone(), op_type: n.op_type.clone(), provider: provider.name() }).collect();
        let op = provider.compile(subgraph, graph.opset()).map_err(|error| SessionError::Node { node: name.clone(), op: op_type.clone(), error })?;
        Ok(Step { name, op_type: provider.name().to_string(), placed, op, inputs: inputs.iter().map(|v| Some(v.index())).collect(), outputs: outputs.iter().map(|v| v.index()).collect() })
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
    /// Turns the rewritten graph into steps: each node to the first
    /// provider that takes it (runs of a compiling provider's nodes as one
    /// step), with the CPU kernels that inferred the graph's facts reused.
    fn prepare(mut graph: TypedGraph, providers: Vec<Box<dyn ExecutionProvider>>, pool: rayon::ThreadPool, limits: Limits) -> Result<Self, SessionError> {
        let opset = graph.opset();
        let mut value_names: Vec<String> = graph.values().map(|v| graph.name(v).to_string()).collect();
        // Outputs the model leaves unnamed are written to one value nobody reads.
        let unnamed = value_names.len();
        value_names.push(String::new());
        let inputs: Vec<(ValueInfo, usize)> = graph.inputs().iter().map(|(v, id)| (v.clone(), id.index())).collect();
        let outputs: Vec<(ValueInfo, usize)> = graph.outputs().iter().map(|(v, id)| (v.clone(), id.index())).collect();
        let mut available: Vec<bool> = graph.values().map(|v| graph.constant(v).is_some()).chain([false]).collect();
        inputs.iter().for_each(|&(_, i)| available[i] = true);
        let mut steps = Vec::new();
        let mut run: Option<OpenRun> = None;
        for n in graph.order().to_vec() {
            let typed = graph.node(n);
            let node = typed.node();
            let node_error = |error| SessionError::Node { node: node.name.clone(), op: node.op_type.clone(), error };
            if let Some(&x) = typed.inputs().iter().flatten().find(|x| !available[x.index()]) {
                return Err(SessionError::UnknownValue(graph.name(x).to_string()));
            }
            typed.outputs().iter().flatten().for_each(|y| available[y.index()] = true);
            if let Some(error) = typed.refused() {
                return Err(node_error(error.clone()));
            }
            let known_facts: Vec<Option<&Fact>> = typed.inputs().iter().map(|x| x.and_then(|x| graph.fact(x))).collect();
            let p = providers.iter().position(|p| p.supports(node, opset, &known_facts)).ok_or_else(|| SessionError::Unsupported {
                node: node.name.clone(),
                op: node.op_type.clone(),
                opset,
                known: CpuProvider::new().op_types().join(", "),
            })?;
            let provider = &providers[p];
            if provider.compiles_subgraphs() {
                match &mut run {
                    Some(open) if open.provider == p => open.nodes.push(n),
                    _ => {
                        if let Some(open) = run.replace(OpenRun { provider: p, nodes: vec![n] }) {
                            steps.push(open.close(&graph, &providers)?);
                        }
                    }
                }
                continue;
            }
            if let Some(open) = run.take() {
                steps.push(open.close(&graph, &providers)?);
            }
            let typed = graph.node(n);
            let node = typed.node();
            let placed = vec![NodePlacement { name: node.name.clone(), op_type: node.op_type.clone(), provider: provider.name() }];
            let (name, op_type) = (node.name.clone(), node.op_type.clone());
            let (step_inputs, step_outputs) = (typed.inputs().iter().map(|x| x.map(ValueId::index)).collect(), typed.outputs().iter().map(|y| y.map_or(unnamed, ValueId::index)).collect::<Vec<_>>());
            // The CPU's kernel was made to infer the node's facts.
            let cached = if provider.name() == "cpu" { graph.take_kernel(n) } else { None };
            let op = match cached {
                Some(op) => op,
                None => provider.create_kernel(graph.node(n).node(), opset).map_err(|error| SessionError::Node { node: name.clone(), op: op_type.clone(), error })?,
            };
            steps.push(Step { name, op_type, placed, op, inputs: step_inputs, outputs: step_outputs });
        }
        if let Some(open) = run.take() {
            steps.push(open.close(&graph, &providers)?);
        }
        let constants: Vec<Option<Tensor>> = graph.values().collect::<Vec<_>>().into_iter().map(|v| graph.take_constant(v)).chain([None]).collect();
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
        for (i, _) in constants.iter().enumerate().filter(|(_, c)| c.is_some()) {
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
        let constant_facts = constants.iter().map(|c| c.as_ref().map(planner_fact)).collect();
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
            optimizations: Optimizations { in_place: in_place_steps, ..Optimizations::default() },
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
        Fact::constant_shape(t.dtype(), t.shape())
    }
}

fn check_input(info: &ValueInfo, dtype: DataType, shape: &[usize]) -> Result<(), RunError> {
    if let Some(expected) = info.dtype {
        if expected != dtype {
            return Err(RunError::InputType { name: info.name.clone(), expected: expected.to_string(), got: dtype.to_string() });
        }
    }
    check_shape(info, shape)
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

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("steps", &self.steps.len()).field("inputs", &self.inputs).finish()
    }
}
