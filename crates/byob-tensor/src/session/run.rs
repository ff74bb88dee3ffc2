//! Running a session: the memory plan for the inputs' shapes, the buffers
//! it names (kept between runs in a run state), and the steps.
//!
//! Each concurrent run takes a run state of its own from the session's
//! pool, so runs from several threads never share a buffer; a state
//! remembers the plan it was laid out for, and a run whose input shapes
//! match it touches no allocator for tensors.

use super::{IoBinding, RunError, RunStats, Session};
use crate::device::{DeviceOutput, ValueMut, ValueRef};
use crate::ops::{Fact, OpError};
use crate::plan::{MemoryPlan, ValueSize};
use crate::tensor::{element_count, Tensor, TensorError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the session's threads keep spinning after a run, for the next
/// one (ONNX Runtime's workers spin for a similar while). Without it, a
/// caller that runs the model again and again, as an audio callback or a
/// serving loop does, finds them asleep every time, and on a virtual
/// machine a sleeping thread's halted CPU can take milliseconds to wake.
const LINGER: Duration = Duration::from_millis(LINGER_MS);
const LINGER_MS: u64 = 10;

/// The bounds a run's tensors keep to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The most bytes one tensor may take.
    pub tensor: usize,
    /// The most bytes the run's tensors may hold at once.
    pub run: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { tensor: super::DEFAULT_MAX_TENSOR_BYTES, run: super::DEFAULT_MAX_RUN_BYTES }
    }
}

/// The input shapes a plan was made for, in the session's input order.
pub(super) type ShapeKey = Vec<Vec<usize>>;

/// Buffers and values of one run at a time.
pub(super) struct RunState {
    /// The input shapes its plan is for (`None` before the first run).
    key: Option<ShapeKey>,
    plan: Arc<MemoryPlan>,
    /// The plan's buffers, each holding no value between runs.
    buffers: Vec<Tensor>,
    /// Each value's tensor while it is alive.
    values: Vec<Option<Tensor>>,
    /// The outputs of the step being run.
    outputs: Vec<Tensor>,
    /// Where each of those outputs' storage was before the kernel ran.
    storage: Vec<(usize, usize)>,
    /// Per value, the entry of the binding's device inputs it is.
    device_input: Vec<Option<usize>>,
    /// Per value, whether this run wrote it straight into an output bound
    /// on a device.
    on_device: Vec<bool>,
}

/// Whether `tensor` still uses the storage it had (`before`, from
/// [`Tensor::storage`]): if not, something allocated.
fn same_storage(before: (usize, usize), tensor: &Tensor) -> bool {
    let after = tensor.storage();
    after == before || after.1 == 0
}

/// Keeps a pool thread taking work until `done`, rather than going to sleep
/// between kernels: waking a sleeping thread (on a virtual machine, a halted
/// virtual CPU) costs tens of microseconds each time, ONNX Runtime's
/// workers spin for the same reason. Returns at once on the thread that
/// runs the steps (it may pick this job up while it waits inside a kernel).
fn keep_awake(done: &AtomicBool, home: Option<usize>) {
    if rayon::current_thread_index() == home {
        return;
    }
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
    }
}

/// Spins until `until` or until a run after `generation` starts, whichever
/// comes first: then the thread goes back to the pool, where the new run's
/// work is waiting for it.
fn linger(runs_started: &AtomicU64, generation: u64, until: Instant) {
    while runs_started.load(Ordering::Acquire) == generation && Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Copies entry `k` of the binding's device inputs to a new host tensor of
/// at most `max_bytes`, counting the transfer and the allocation.
async fn download(binding: &IoBinding, stats: &mut RunStats, k: usize, max_bytes: usize) -> Result<Tensor, RunError> {
    let (name, tensor) = &binding.device_inputs[k];
    let mut host = Tensor::with_max_bytes(max_bytes);
    tensor.download_into(&mut host).await.map_err(|error| RunError::Device { value: name.clone(), error })?;
    stats.device_transfers += 1;
    stats.tensor_allocations += 1;
    Ok(host)
}

/// Sets the flag when dropped, so that the spinning threads stop even when
/// the run unwinds.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Session {
    /// Runs with the tensors `binding` holds; see [`IoBinding`]. Blocks
    /// while a device computes.
    pub fn run_with_binding(&self, binding: &mut IoBinding) -> Result<RunStats, RunError> {
        if self.pool.current_num_threads() == 1 {
            // One thread: the caller's own. Handing the run to the pool's
            // thread and waiting to be woken would cost two context
            // switches a run, a large part of a small model's latency.
            return pollster::block_on(self.run_on(binding, &self.pool, self.limits));
        }
        // The steps run on one of the session's own threads: each kernel's
        // parallel loop then starts there directly, where from the caller's
        // thread every one of them would hand the work over and wait to be
        // woken (a few microseconds a kernel, a tenth of a small model).
        let generation = self.runs_started.fetch_add(1, Ordering::AcqRel) + 1;
        let result = self.pool.install(|| {
            let done = AtomicBool::new(false);
            rayon::in_place_scope(|scope| {
                if self.spin {
                    let home = rayon::current_thread_index();
                    let done = &done;
                    for _ in 1..self.pool.current_num_threads() {
                        scope.spawn(move |_| keep_awake(done, home));
                    }
                }
                let _finish = SetOnDrop(&done);
                pollster::block_on(self.run_with_binding_async(binding))
            })
        });
        if self.spin {
            let until = Instant::now() + LINGER;
            for _ in 0..self.pool.current_num_threads() {
                let runs_started = Arc::clone(&self.runs_started);
                self.pool.spawn(move || linger(&runs_started, generation, until));
            }
        }
        result
    }

    /// [`run_with_binding`](Self::run_with_binding) as a future: steps on
    /// a device are awaited, not waited for, so no thread is held while the
    /// device works (steps on the CPU compute when polled).
    pub async fn run_with_binding_async(&self, binding: &mut IoBinding) -> Result<RunStats, RunError> {
        self.run_on(binding, &self.pool, self.limits).await
    }

    /// Runs a subgraph's session on the thread of the node that holds it,
    /// its kernels on that node's `pool`: handing each run to the
    /// subgraph's own thread and back would cost two context switches per
    /// branch taken (Silero VAD nests three Ifs in every call). Its
    /// tensors keep to `limits`: what the node's outputs may still take.
    pub(crate) fn run_nested(&self, feeds: Vec<(String, Tensor)>, pool: &rayon::ThreadPool, limits: Limits) -> Result<Vec<(String, Tensor)>, RunError> {
        let mut binding = IoBinding::new();
        for (name, tensor) in feeds {
            binding.bind_input(name, tensor);
        }
        pollster::block_on(self.run_on(&mut binding, pool, limits))?;
        Ok(self.outputs.iter().filter_map(|(v, _)| Some((v.name.clone(), binding.take_output(&v.name)?))).collect())
    }

    async fn run_on(&self, binding: &mut IoBinding, pool: &rayon::ThreadPool, limits: Limits) -> Result<RunStats, RunError> {
        self.check_binding(binding)?;
        let mut stats = RunStats::default();
        let (mut state, laid_out) = self.state_for(binding, &mut stats, limits);
        let result = match laid_out {
            Ok(()) => self.execute(&mut state, binding, &mut stats, pool, limits).await,
            Err(e) => Err(e),
        };
        self.finish(&mut state, binding);
        stats.planned_bytes = state.plan.planned_bytes();
        self.states.lock().unwrap_or_else(|e| e.into_inner()).push(state);
        result.map(|()| stats)
    }

    /// Every bound input is one of the model's and fits its declaration,
    /// none is missing, and every bound output is one of the model's.
    pub(super) fn check_binding(&self, binding: &IoBinding) -> Result<(), RunError> {
        let expected = || super::describe_inputs(&self.inputs);
        let host = binding.inputs.iter().map(|(n, t)| (n, t.dtype(), t.shape()));
        for (name, dtype, shape) in host.chain(binding.device_inputs.iter().map(|(n, t)| (n, t.dtype(), t.shape()))) {
            let Some((info, _)) = self.inputs.iter().find(|(v, _)| &v.name == name) else {
                return Err(RunError::UnknownInput { name: name.clone(), expected: expected() });
            };
            super::check_input(info, dtype, shape)?;
        }
        let missing: Vec<String> = self.inputs.iter().filter(|(v, _)| binding.input_type(&v.name).is_none()).map(|(v, _)| v.name.clone()).collect();
        if !missing.is_empty() {
            return Err(RunError::MissingInput { missing, expected: expected() });
        }
        let bound = binding.outputs.iter().map(|(n, _)| n).chain(binding.device_outputs.iter().map(|(n, _)| n));
        if let Some(name) = bound.into_iter().find(|n| self.outputs.iter().all(|(v, _)| v.name != **n)) {
            let outputs = self.outputs.iter().map(|(v, _)| v.name.as_str()).collect::<Vec<_>>().join(", ");
            return Err(RunError::UnknownOutput { name: name.clone(), expected: outputs });
        }
        Ok(())
    }

    /// A run state laid out for the bound inputs' shapes, and whether its
    /// buffers could be laid out (a state that could not be is laid out
    /// again by the next run).
    fn state_for(&self, binding: &IoBinding, stats: &mut RunStats, limits: Limits) -> (RunState, Result<(), RunError>) {
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        // A state laid out for these shapes if there is one, else any.
        let reusable = states.iter().position(|s| s.key.as_ref().is_some_and(|k| self.fits(k, binding))).or(states.len().checked_sub(1));
        let mut state = match reusable {
            Some(i) => states.swap_remove(i),
            None => self.new_state(),
        };
        drop(states);
        let laid_out = self.lay_out(&mut state, binding, stats, limits);
        (state, laid_out)
    }

    pub(super) fn new_state(&self) -> RunState {
        let n = self.value_names.len();
        RunState { key: None, plan: Arc::new(MemoryPlan::default()), buffers: Vec::new(), values: vec![None; n], outputs: Vec::new(), storage: Vec::new(), device_input: vec![None; n], on_device: vec![false; n] }
    }

    /// Whether the bound inputs have the shapes `key` lists.
    pub(super) fn fits(&self, key: &ShapeKey, binding: &IoBinding) -> bool {
        self.inputs.iter().zip(key).all(|((v, _), k)| binding.input_type(&v.name).map(|(_, shape)| shape) == Some(k.as_slice()))
    }

    /// Fails, naming the input, when a bound input's shape is not the one
    /// `state` was laid out for.
    pub(super) fn check_laid_out(&self, state: &RunState, binding: &IoBinding) -> Result<(), RunError> {
        let Some(key) = &state.key else { return Ok(()) };
        for ((info, _), expected) in self.inputs.iter().zip(key) {
            let Some((_, shape)) = binding.input_type(&info.name) else { continue };
            if shape != expected.as_slice() {
                return Err(RunError::InputShape { name: info.name.clone(), expected: format!("{expected:?} (the run handle's)"), got: shape.to_vec() });
            }
        }
        Ok(())
    }

    /// Lays `state` out for the bound inputs' shapes unless it already is.
    pub(super) fn lay_out(&self, state: &mut RunState, binding: &IoBinding, stats: &mut RunStats, limits: Limits) -> Result<(), RunError> {
        if state.key.as_ref().is_some_and(|k| self.fits(k, binding)) && state.plan.planned_bytes() <= limits.run {
            return Ok(());
        }
        let key: ShapeKey = self.inputs.iter().map(|(v, _)| binding.input_type(&v.name).map(|(_, shape)| shape).unwrap_or_default().to_vec()).collect();
        state.plan = self.plan_for(&key, binding);
        state.key = None;
        let planned = state.plan.planned_bytes();
        if planned > limits.run {
            return Err(RunError::RunLimit { at: "laying out the memory plan".into(), bytes: planned, held: 0, limit: limits.run });
        }
        state.key = Some(key);
        state.buffers.resize_with(state.plan.buffers.len(), Tensor::default);
        // Lay the buffers out now, at their planned sizes.
        for (tensor, b) in state.buffers.iter_mut().zip(&state.plan.buffers) {
            if let Some(dtype) = b.dtype {
                let before = tensor.storage();
                tensor.set_max_bytes(limits.tensor);
                if let Err(e) = tensor.reset(dtype, &[b.capacity]) {
                    state.key = None;
                    return Err(RunError::Memory(e));
                }
                stats.tensor_allocations += usize::from(!same_storage(before, tensor));
            }
        }
        Ok(())
    }

    /// The memory plan for inputs of these shapes (cached per shape set).
    fn plan_for(&self, key: &ShapeKey, binding: &IoBinding) -> Arc<MemoryPlan> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, plan)) = plans.iter().find(|(k, _)| k == key) {
            return plan.clone();
        }
        let mut facts = self.constant_facts.clone();
        for ((info, id), shape) in self.inputs.iter().zip(key) {
            let dtype = binding.input_type(&info.name).map(|(dtype, _)| dtype);
            facts[*id] = dtype.map(|d| Fact::new(d, shape.iter().map(|&n| crate::model::Dim::Known(n)).collect()));
        }
        for step in &self.steps {
            let inputs: Option<Vec<Option<&Fact>>> = step.inputs.iter().map(|i| i.map_or(Some(None), |i| facts[i].as_ref().map(Some))).collect();
            // A node that fails inference here fails again when run, with
            // the error to report; its outputs are planned as unknown.
            if let Some(Ok(out)) = inputs.map(|inputs| step.op.infer(&inputs)) {
                for (&id, fact) in step.outputs.iter().zip(out) {
                    facts[id] = Some(fact);
                }
            }
        }
        let sizes: Vec<ValueSize> = (0..self.value_names.len())
            .map(|v| {
                if self.external[v] {
                    ValueSize::External
                } else {
                    match facts[v].as_ref().and_then(|f| Some((f.dtype, f.concrete_shape()?))) {
                        // A shape too large to exist is left to its kernel,
                        // whose output then fails with the error to report.
                        Some((dtype, shape)) => element_count(&shape, dtype).map_or(ValueSize::Unknown, |n| ValueSize::Known(dtype, n)),
                        None => ValueSize::Unknown,
                    }
                }
            })
            .collect();
        let plan = Arc::new(MemoryPlan::new(&sizes, &self.lifetimes, self.steps.len(), &self.in_place_pairs()));
        plans.push((key.clone(), plan.clone()));
        plan
    }

    /// (input value, output value) of each step that may run in place, in
    /// step order.
    fn in_place_pairs(&self) -> Vec<(usize, usize)> {
        let steps = self.steps.iter().zip(&self.in_place);
        steps.filter_map(|(step, slot)| Some((step.inputs[(*slot)?]?, step.outputs[0]))).collect()
    }

    /// The value step `s` computes over in place under `plan`: one its
    /// output 0 shares a buffer with.
    fn taken_over(&self, s: usize, plan: &MemoryPlan) -> Option<usize> {
        let step = &self.steps[s];
        let taken = step.inputs[self.in_place[s]?]?;
        let buffer = plan.buffer_of[taken]?;
        (plan.buffer_of[step.outputs[0]] == Some(buffer)).then_some(taken)
    }

    pub(super) async fn execute(&self, state: &mut RunState, binding: &mut IoBinding, stats: &mut RunStats, pool: &rayon::ThreadPool, limits: Limits) -> Result<(), RunError> {
        state.on_device.fill(false);
        for (info, id) in &self.inputs {
            let bound = binding.inputs.iter_mut().find(|(n, _)| *n == info.name).map(|(_, t)| std::mem::take(t));
            state.values[*id] = bound;
            state.device_input[*id] = binding.device_inputs.iter().position(|(n, _)| *n == info.name);
        }
        let mut live_bytes = 0usize;
        // Bytes held toward `limits.run`: the plan's sized buffers, and each
        // output outside them (of unknown size, or the caller's) from its
        // step to the end of the run (its storage is kept until then).
        let mut held = state.plan.planned_bytes();
        for (s, step) in self.steps.iter().enumerate() {
            let device = step.op.device();
            let reads_on_device = |i: usize| state.device_input[i].is_some_and(|k| Some(binding.device_inputs[k].1.device()) == device);
            // A device input read where it is not: a host copy, made once
            // and held to the end of the run, like an unplanned output.
            for &i in step.inputs.iter().flatten() {
                let Some(k) = state.device_input[i].filter(|_| state.values[i].is_none() && !reads_on_device(i)) else { continue };
                let host = download(binding, stats, k, limits.tensor.min(limits.run.saturating_sub(held))).await?;
                let bytes = host.len() * host.dtype().size();
                live_bytes += bytes;
                held = held.saturating_add(bytes);
                state.values[i] = Some(host);
            }
            // Outputs written straight into their device binding.
            let written_on_device: smallvec::SmallVec<[bool; 4]> = step.outputs.iter().map(|&o| self.direct_output(s, o, device, binding)).collect();
            let on_device = step.inputs.iter().flatten().any(|&i| reads_on_device(i)) || written_on_device.contains(&true);
            // Lend each output its buffer: the caller's for a bound graph
            // output, the plan's for an intermediate.
            state.outputs.clear();
            state.storage.clear();
            // An input taken over by output 0 leaves the inputs (it reads
            // as absent) with its values.
            let mut taken = self.taken_over(s, &state.plan).and_then(|v| state.values[v].take());
            if let Some(t) = &taken {
                live_bytes -= t.len() * t.dtype().size();
            }
            let room = limits.run.saturating_sub(held);
            for &id in &step.outputs {
                let mut tensor = match (taken.take(), state.plan.buffer_of[id]) {
                    (Some(values), _) => values,
                    (None, Some(b)) => std::mem::take(&mut state.buffers[b]),
                    (None, None) => binding.outputs.iter_mut().find(|(n, _)| *n == self.value_names[id]).map(|(_, t)| std::mem::take(t)).unwrap_or_default(),
                };
                tensor.set_max_bytes(if state.plan.sized(id) { limits.tensor } else { limits.tensor.min(room) });
                state.storage.push(tensor.storage());
                state.outputs.push(tensor);
            }
            let started = self.profiling.then(Instant::now);
            let result = {
                let values = &state.values;
                // On the stack for up to eight inputs: a run that reuses its
                // buffers allocates nothing here either.
                let args: smallvec::SmallVec<[Option<&Tensor>; 8]> = step.inputs.iter().map(|i| i.and_then(|i| values[i].as_ref().or(self.constants[i].as_ref()))).collect();
                if on_device {
                    let host = args.iter().copied();
                    let args: smallvec::SmallVec<[Option<ValueRef>; 8]> = step.inputs.iter().zip(host).map(|(i, host)| match i.and_then(|i| state.device_input[i].filter(|_| reads_on_device(i))) {
                        Some(k) => Some(ValueRef::Device(&binding.device_inputs[k].1)),
                        None => host.map(ValueRef::Host),
                    }).collect();
                    let mut slots: smallvec::SmallVec<[Option<&mut DeviceOutput>; 4]> = step.outputs.iter().map(|_| None).collect();
                    for (name, output) in binding.device_outputs.iter_mut() {
                        if let Some(j) = step.outputs.iter().zip(&written_on_device).position(|(&o, &d)| d && self.value_names[o] == *name) {
                            slots[j] = Some(output);
                        }
                    }
                    let mut outputs: smallvec::SmallVec<[ValueMut; 4]> = state.outputs.iter_mut().zip(slots).map(|(host, slot)| slot.map_or(ValueMut::Host(host), ValueMut::Device)).collect();
                    step.op.eval_on_device(&args, &mut outputs, pool).await
                } else if step.op.waits_on_device() {
                    step.op.eval_async(&args, &mut state.outputs, pool).await
                } else {
                    step.op.eval(&args, &mut state.outputs, pool)
                }
            };
            if let Some(started) = started {
                stats.steps.push(super::StepTime { node: step.name.clone(), op: step.op_type.clone(), seconds: started.elapsed().as_secs_f64() });
            }
            let before = held;
            for (j, &id) in step.outputs.iter().enumerate() {
                if written_on_device[j] {
                    state.on_device[id] = true;
                    continue;
                }
                let tensor = std::mem::take(&mut state.outputs[j]);
                stats.tensor_allocations += usize::from(!same_storage(state.storage[j], &tensor));
                let bytes = tensor.len() * tensor.dtype().size();
                live_bytes += bytes;
                if !state.plan.sized(id) {
                    held = held.saturating_add(bytes);
                }
                state.values[id] = Some(tensor);
            }
            stats.peak_intermediate_bytes = stats.peak_intermediate_bytes.max(live_bytes);
            let at = || format!("node {:?} ({})", step.name, step.op_type);
            match result {
                // An output refused for want of room in the run, not for its own size.
                Err(OpError::Tensor(TensorError::Limit { bytes, limit, .. })) if limit < limits.tensor => {
                    return Err(RunError::RunLimit { at: at(), bytes, held: before, limit: limits.run });
                }
                Err(error) => return Err(RunError::Node { node: step.name.clone(), op: step.op_type.clone(), error }),
                Ok(()) if held > limits.run => return Err(RunError::RunLimit { at: at(), bytes: held - before, held: before, limit: limits.run }),
                Ok(()) => {}
            }
            for &i in step.inputs.iter().flatten().chain(&step.outputs) {
                let Some(b) = state.plan.buffer_of[i] else { continue };
                if self.lifetimes[i].is_some_and(|l| l.last == s) {
                    if let Some(t) = state.values[i].take() {
                        live_bytes -= t.len() * t.dtype().size();
                        state.buffers[b] = t;
                    }
                }
            }
        }
        self.settle_outputs(state, binding, stats, limits).await
    }

    /// Whether step `s` writes value `o` straight into the output bound
    /// for it on `device`: a graph output (only those bind) that no later
    /// step reads.
    fn direct_output(&self, s: usize, o: usize, device: Option<&'static str>, binding: &IoBinding) -> bool {
        let Some(device) = device else { return false };
        let name = &self.value_names[o];
        let bound = binding.device_outputs.iter().any(|(n, out)| n == name && out.device() == device);
        bound && self.lifetimes[o].is_some_and(|l| l.last == s)
    }

    /// Settles the outputs the steps did not write where they are bound:
    /// those bound on a device but computed on the host (a CPU step
    /// produced them, or a later step read them) are uploaded there, and a
    /// device input handed back as a host output is downloaded.
    async fn settle_outputs(&self, state: &mut RunState, binding: &mut IoBinding, stats: &mut RunStats, limits: Limits) -> Result<(), RunError> {
        for (info, id) in &self.outputs {
            if state.on_device[*id] {
                continue;
            }
            if let Some(k) = state.device_input[*id].filter(|_| state.values[*id].is_none()) {
                state.values[*id] = Some(download(binding, stats, k, limits.tensor).await?);
            }
            let Some((_, output)) = binding.device_outputs.iter_mut().find(|(n, _)| *n == info.name) else { continue };
            let Some(host) = state.values[*id].as_ref().or(self.constants[*id].as_ref()) else { continue };
            let failed = |error| RunError::Device { value: info.name.clone(), error };
            let tensor = output.prepare(host.dtype(), host.shape()).map_err(failed)?;
            tensor.buffer().upload(host).map_err(failed)?;
            stats.device_transfers += 1;
            state.on_device[*id] = true;
        }
        Ok(())
    }

    /// Hands the caller its inputs back and the outputs, and returns every
    /// intermediate's buffer to the state: after a failed run too.
    pub(super) fn finish(&self, state: &mut RunState, binding: &mut IoBinding) {
        for (info, id) in &self.outputs {
            if binding.device_outputs.iter().any(|(n, _)| *n == info.name) {
                // Bound on a device: its host value (if any) goes back to
                // the plan or is dropped, after a failed run too.
                continue;
            }
            let tensor = if self.is_input(*id) { state.values[*id].clone() } else { state.values[*id].take().or_else(|| self.constants[*id].clone()) };
            if let Some(tensor) = tensor {
                binding.put_output(&info.name, tensor);
            }
        }
        for (info, id) in &self.inputs {
            if let (Some((_, t)), Some(value)) = (binding.inputs.iter_mut().find(|(n, _)| *n == info.name), state.values[*id].take()) {
                *t = value;
            }
        }
        for (v, value) in state.values.iter_mut().enumerate() {
            if let Some(b) = state.plan.buffer_of[v] {
                if let Some(t) = value.take() {
                    state.buffers[b] = t;
                }
            }
            *value = None;
        }
    }

    fn is_input(&self, id: usize) -> bool {
        self.inputs.iter().any(|(_, i)| *i == id)
    }
}
