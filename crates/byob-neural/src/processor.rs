//! `OnnxProcessor`: the worklet processor behind an `"onnx"` node.

use crate::model::{NeuralError, NeuralModel, OutputKind};
use crate::options::{Ep, Layout, Mode, OnnxOptions, OptionError};
use crate::resample::InputResampler;
use crate::status::NeuralStatus;
use crate::worker::{Offload, WorkerQueue};
use crate::NeuralNodes;
use byob_audio::worklet::{BufferKind, ByobMemory, PortKind, ProcessIo, ProcessorInit, Registrar, TopologyChange, TopologyResponse, WorkletProcessor, CHANNEL_BYTES};
use byob_audio::RENDER_QUANTUM_SIZE;
use byob_tensor::Tensor;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

const QUANTUM: usize = RENDER_QUANTUM_SIZE;

/// Inferences timed at creation to choose mode "worker"'s deadline.
const TIMED_RUNS: usize = 8;
/// Mode "worker"'s default deadline: a frame, or, for a model slower than
/// that, the worst timed inference twice over plus room for the inference
/// thread's polling and a device's burst of quanta.
const DEADLINE_MARGIN: Duration = Duration::from_millis(5);
/// The most frames a worker-mode node keeps in flight.
const MAX_JOBS: usize = 4096;

/// Runs a model frame by frame on the node's input; see docs/neural-node.md.
pub struct OnnxProcessor {
    runner: Runner,
    frame: usize,
    context: usize,
    channels: usize,
    layout: Layout,
    kind: OutputKind,
    /// New samples in the frame being filled (at the model's rate).
    filled: usize,
    /// Context samples before this quantum.
    position: u64,
    /// The output port's region, kept for as long as it is lent: the
    /// node writes it in place, and the engine copies nothing out (none
    /// where the model's output tensors are lent instead).
    _output_memory: Option<ByobMemory>,
    resampler: Option<InputResampler>,
    status: Arc<NeuralStatus>,
}

/// Where the model runs. (One per node, made once and never moved on the
/// render thread: the variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
enum Runner {
    /// Mode "render": here, in the quantum in which a frame completes.
    Render {
        model: NeuralModel,
        /// A control output's value since the last inference.
        held: f32,
        /// An audio output's last frame, played sample by sample.
        audio: Vec<f32>,
        /// The input tensor, lent to the engine (the zero-copy path).
        memory: Option<ByobMemory>,
        /// An audio output played from the model's own output tensors
        /// (the zero-copy path).
        output: Option<LentOutput>,
    },
    /// Mode "worker": on the context's inference thread.
    Worker(Box<Worker>),
}

/// An audio output that the engine reads where the model wrote it: the
/// result being played, and the tensor the next inference writes (bound to
/// the model), exchanged after each inference. Each quantum the node lends
/// the played result's 128 samples as its output region; the inference
/// of a quantum writes the other tensor, never the samples lent.
struct LentOutput {
    played: Tensor,
    /// One memory over each tensor: `memories[which]` is over `played`.
    memories: [ByobMemory; 2],
    which: usize,
}

struct Worker {
    queue: WorkerQueue<FrameJob>,
    /// The frame being filled.
    filling: FrameJob,
    /// Samples (of the context) from where mode "render" would apply a
    /// result to where it is due: whole quanta.
    delay: u64,
    /// Each job's input tensor lent to the engine, by slot (the zero-copy
    /// path; empty otherwise).
    memories: Vec<ByobMemory>,
}

/// One frame's trip to the inference thread and back.
pub(crate) struct FrameJob {
    slot: usize,
    input: Tensor,
    audio: Vec<f32>,
    value: f32,
}

/// The model on the inference thread.
struct RemoteModel {
    model: NeuralModel,
    status: Arc<NeuralStatus>,
}

impl Offload for RemoteModel {
    type Job = FrameJob;

    fn run(&mut self, job: &mut FrameJob) -> Result<(), String> {
        self.model.swap_input(&mut job.input);
        let result = self.model.infer();
        self.model.swap_input(&mut job.input);
        result.map_err(|e| format!("inference {} failed: {e}", self.status.inferences()))?;
        NeuralStatus::add(&self.status.inferences, 1);
        match self.model.output_kind() {
            OutputKind::Control => job.value = self.model.output()[0],
            OutputKind::Audio => job.audio.copy_from_slice(self.model.output()),
        }
        Ok(())
    }
}

/// Lends the model's audio output tensor and a second one like it to the
/// engine and registers the second (silence, until the first result) as
/// the output region; `None` (the node copies) where they are not aligned.
fn lend_output(model: &mut NeuralModel, init: &mut ProcessorInit<'_>) -> Option<LentOutput> {
    let mut played = model.output_tensor().clone();
    played.as_f32_mut()?.fill(0.0);
    let bound = crate::zero_copy::lend(model.output_mut())?;
    let memory = crate::zero_copy::lend(played.as_f32_mut()?)?;
    init.register_buffers(&memory, 0, CHANNEL_BYTES, BufferKind::Output, 0).ok()?;
    Some(LentOutput { played, memories: [bound, memory], which: 1 })
}

/// Where each frame's last `context` samples go for the next frame:
/// (source range, destination start) in the input tensor.
fn context_moves(frame: usize, context: usize, channels: usize, layout: Layout) -> impl Iterator<Item = (Range<usize>, usize)> {
    let n = frame + context;
    let (planes, width) = if layout == Layout::ChannelsFirst { (channels, 1) } else { (1, channels) };
    (0..planes).map(move |c| (c * n * width + frame * width..(c + 1) * n * width, c * n * width))
}

impl OnnxProcessor {
    /// Loads the model and registers the node's memory (on the control
    /// thread: this allocates, and runs the model). A node in mode
    /// "worker" is served by `nodes`' inference thread.
    pub fn new(options: &OnnxOptions, init: &mut ProcessorInit<'_>, nodes: &NeuralNodes) -> Result<Self, NeuralError> {
        options.check().map_err(|(key, what)| OptionError { key: key.into(), what })?;
        if init.number_of_inputs != 1 || init.number_of_outputs != 1 {
            return Err(NeuralError::Ports(format!("an onnx node has one input and one output; this one has numberOfInputs {} and numberOfOutputs {}", init.number_of_inputs, init.number_of_outputs)));
        }
        if init.output_channels(0) != 1 {
            return Err(NeuralError::Ports(format!("an onnx node outputs one channel; outputChannelCount asks for {}", init.output_channels(0))));
        }
        let mut model = NeuralModel::load(options)?;
        let kind = model.output_kind();
        let context_rate = init.sample_rate;
        let rate = options.sample_rate.unwrap_or(context_rate);
        let resampler = if rate == context_rate {
            None
        } else if kind == OutputKind::Audio {
            return Err(OptionError { key: "sampleRate".into(), what: format!("an audio output plays at the context's rate ({context_rate} Hz); this model runs at {rate} Hz") }.into());
        } else {
            Some(InputResampler::new(context_rate, rate, options.channels).map_err(|what| OptionError { key: "sampleRate".into(), what })?)
        };
        let render_latency = match &resampler {
            None => options.frame as f64 / rate as f64,
            // The result takes effect at the next quantum boundary.
            Some(r) => (options.frame + r.delay()) as f64 / rate as f64 + QUANTUM as f64 / context_rate as f64,
        };
        // The engine mixes straight into the input tensor when each
        // quantum lands whole inside a frame and at an aligned offset.
        let lendable = resampler.is_none() && options.layout == Layout::Mono && options.frame.is_multiple_of(QUANTUM) && (options.context * 4).is_multiple_of(byob_audio::worklet::REGION_ALIGNMENT);
        let context_offset = options.context * 4;
        let (runner, status) = match options.mode {
            Mode::Render => {
                let memory = if lendable { crate::zero_copy::lend(model.input_mut()) } else { None };
                let memory = memory.filter(|memory| init.register_buffers(memory, context_offset, CHANNEL_BYTES, BufferKind::Input, 0).is_ok());
                let output = if memory.is_some() && kind == OutputKind::Audio { lend_output(&mut model, init) } else { None };
                let copied = kind == OutputKind::Audio && output.is_none();
                let audio = vec![0.0; if copied { options.frame } else { 0 }];
                let status = NeuralStatus::new(options.model.clone(), Mode::Render, render_latency, memory.is_some(), None);
                (Runner::Render { model, held: 0.0, audio, memory, output }, Arc::new(status))
            }
            Mode::Worker => {
                // The frame's length in context samples.
                let frame_span = options.frame as f64 * context_rate as f64 / rate as f64;
                let deadline = match options.deadline {
                    Some(seconds) => Duration::from_secs_f64(seconds),
                    None => {
                        // At least a frame: a model that keeps up infers
                        // in less, so the default depends on the timing
                        // only for one slower than that (whose worst case
                        // then decides), and renders are the same on any
                        // machine.
                        let worst = model.worst_inference(TIMED_RUNS).map_err(|source| NeuralError::FirstRun { path: options.model.display().to_string(), source: Box::new(source) })?;
                        (2 * worst + DEADLINE_MARGIN).max(Duration::from_secs_f64(frame_span / context_rate as f64))
                    }
                };
                let quanta = (deadline.as_secs_f64() * context_rate as f64 / QUANTUM as f64).ceil().max(1.0);
                let delay = quanta as u64 * QUANTUM as u64;
                // Frames out at once: those completing within the delay and
                // two quanta more.
                let jobs = ((delay as usize + 2 * QUANTUM) as f64 / frame_span).ceil() as usize + 3;
                if jobs > MAX_JOBS {
                    let key = if options.deadline.is_some() { "deadline" } else { "frame" };
                    return Err(OptionError { key: key.into(), what: format!("{jobs} frames of {} samples would be in flight within the deadline ({:.3} s), more than the {MAX_JOBS} a node keeps; use longer frames or a shorter deadline", options.frame, deadline.as_secs_f64()) }.into());
                }
                let audio = if kind == OutputKind::Audio { options.frame } else { 0 };
                let mut pool: Vec<FrameJob> = (0..jobs).map(|slot| FrameJob { slot, input: model.input_tensor().clone(), audio: vec![0.0; audio], value: 0.0 }).collect();
                let mut memories = Vec::new();
                if lendable {
                    memories = pool.iter_mut().map_while(|job| crate::zero_copy::lend(job.input.as_f32_mut().expect("the audio input is float"))).collect();
                }
                let filling = pool.pop().expect("at least three jobs");
                let lent = memories.len() == jobs && init.register_buffers(&memories[filling.slot], context_offset, CHANNEL_BYTES, BufferKind::Input, 0).is_ok();
                if !lent {
                    memories.clear();
                }
                let latency = render_latency + delay as f64 / context_rate as f64;
                let gpu_steps = (options.ep == Ep::WebGpu).then(|| model.gpu_steps());
                let status = Arc::new(NeuralStatus::new(options.model.clone(), Mode::Worker, latency, lent, gpu_steps));
                let queue = nodes.offload(RemoteModel { model, status: status.clone() }, pool).map_err(|e| NeuralError::Ports(format!("starting the inference thread: {e}")))?;
                (Runner::Worker(Box::new(Worker { queue, filling, delay, memories })), status)
            }
        };
        let output_memory = match &runner {
            Runner::Render { output: Some(_), .. } => None,
            _ => {
                let memory = ByobMemory::new(CHANNEL_BYTES);
                init.register_buffers(&memory, 0, CHANNEL_BYTES, BufferKind::Output, 0).map_err(|e| NeuralError::Ports(format!("registering the output: {e}")))?;
                Some(memory)
            }
        };
        Ok(Self {
            runner,
            frame: options.frame,
            context: options.context,
            channels: options.channels,
            layout: options.layout,
            kind,
            filled: 0,
            position: 0,
            _output_memory: output_memory,
            resampler,
            status,
        })
    }

    /// The node's counters, shared with the render thread.
    pub fn status(&self) -> &Arc<NeuralStatus> {
        &self.status
    }

    /// The audio input tensor being filled.
    fn input_mut(&mut self) -> &mut [f32] {
        match &mut self.runner {
            Runner::Render { model, .. } => model.input_mut(),
            Runner::Worker(worker) => worker.filling.input.as_f32_mut().expect("the audio input is float"),
        }
    }

    /// The frame is complete: mode "render" runs the model on it now;
    /// mode "worker" sends it to the inference thread, its result due
    /// `delay` after `at`, where mode "render" would apply it. Then the
    /// frame's last `context` samples start the next frame.
    fn complete_frame(&mut self, at: u64) -> Result<(), String> {
        let moves = context_moves(self.frame, self.context, self.channels, self.layout);
        NeuralStatus::add(&self.status.context_bytes_moved, self.context * self.channels * 4);
        self.filled = 0;
        match &mut self.runner {
            Runner::Render { model, held, audio, output, .. } => {
                model.infer().map_err(|e| format!("inference {} failed: {e}", self.status.inferences()))?;
                NeuralStatus::add(&self.status.inferences, 1);
                match (self.kind, output) {
                    (OutputKind::Control, _) => *held = model.output()[0],
                    (OutputKind::Audio, Some(lent)) => {
                        model.swap_output(&mut lent.played);
                        lent.which ^= 1;
                    }
                    (OutputKind::Audio, None) => audio.copy_from_slice(model.output()),
                }
                let input = model.input_mut();
                moves.into_iter().for_each(|(from, to)| input.copy_within(from, to));
            }
            Runner::Worker(worker) => match worker.queue.take_free() {
                Some(mut next) => {
                    let (from, to) = (worker.filling.input.as_f32().expect("float"), next.input.as_f32_mut().expect("float"));
                    moves.into_iter().for_each(|(range, start)| to[start..start + range.len()].copy_from_slice(&from[range]));
                    let done = std::mem::replace(&mut worker.filling, next);
                    worker.queue.submit(done, at + worker.delay);
                }
                None => {
                    // The inference thread is behind: this frame is dropped.
                    worker.queue.skip();
                    let input = worker.filling.input.as_f32_mut().expect("float");
                    moves.into_iter().for_each(|(from, to)| input.copy_within(from, to));
                }
            },
        }
        Ok(())
    }

    /// Writes the output of the samples from `at` on (`out.len()` of
    /// them): the held value or the last frame's audio; in mode "worker",
    /// the results in effect there.
    fn play(&mut self, out: &mut [f32], at: u64) -> Result<(), String> {
        let kind = self.kind;
        match &mut self.runner {
            Runner::Render { held, audio, .. } => match kind {
                OutputKind::Control => out.fill(*held),
                OutputKind::Audio => out.copy_from_slice(&audio[self.filled..][..out.len()]),
            },
            Runner::Worker(worker) => {
                let end = at + out.len() as u64;
                let mut position = at;
                while position < end {
                    worker.queue.advance(position)?;
                    let next = worker.queue.next_due().map_or(end, |due| due.min(end));
                    let span = &mut out[(position - at) as usize..(next - at) as usize];
                    match (kind, worker.queue.current()) {
                        (_, None) => span.fill(0.0),
                        (OutputKind::Control, Some((_, job))) => span.fill(job.value),
                        (OutputKind::Audio, Some((due, job))) => {
                            // A late result plays from where its frame is now;
                            // past its end (a missed frame), silence.
                            let offset = ((position - due) as usize).min(job.audio.len());
                            let take = (job.audio.len() - offset).min(span.len());
                            span[..take].copy_from_slice(&job.audio[offset..offset + take]);
                            span[take..].fill(0.0);
                        }
                    }
                    position = next;
                }
                self.status.deadlines_missed.store(worker.queue.missed(), std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Writes `count` samples into the frame (channel `c` of sample `i` is
    /// `sample(c, i)`), a stretch at a time up to the end of the frame,
    /// completing each frame filled (`at(i)`: where the frame ending
    /// before sample `i` takes effect in mode "render"). Before each
    /// stretch, `emit(node, span)` is called for the outputs of samples
    /// `span`, so that outputs before an inference use the result before it.
    fn feed(&mut self, count: usize, sample: impl Fn(usize, usize) -> f32, at: impl Fn(usize) -> u64, mut emit: impl FnMut(&mut Self, Range<usize>) -> Result<(), String>) -> Result<(), String> {
        let (frame, context, channels, layout) = (self.frame, self.context, self.channels, self.layout);
        let n = frame + context;
        // Where sample `at` of the frame, channel `c`, lies in the input.
        let position = |c: usize, at: usize| match layout {
            Layout::Mono => context + at,
            Layout::ChannelsFirst => c * n + context + at,
            Layout::ChannelsLast => (context + at) * channels + c,
        };
        let mut i = 0;
        while i < count {
            let take = (frame - self.filled).min(count - i);
            emit(self, i..i + take)?;
            let filled = self.filled;
            let input = self.input_mut();
            for j in 0..take {
                for c in 0..channels {
                    input[position(c, filled + j)] = sample(c, i + j);
                }
            }
            self.filled += take;
            i += take;
            if self.filled == frame {
                self.complete_frame(at(i))?;
            }
        }
        Ok(())
    }

    /// The zero-copy path: the quantum is already in the input tensor.
    fn process_lent(&mut self, io: &mut ProcessIo<'_>) -> Result<(), String> {
        match &self.runner {
            // The engine reads this quantum's output where the model wrote it.
            Runner::Render { output: Some(lent), .. } => {
                io.register_buffers(&lent.memories[lent.which], self.filled * 4, CHANNEL_BYTES, BufferKind::Output, 0).map_err(|e| format!("lending the output: {e}"))?
            }
            _ => self.play(io.output(0), self.position)?,
        }
        self.filled += QUANTUM;
        if self.filled == self.frame {
            self.complete_frame(self.position + QUANTUM as u64)?;
        }
        // The next quantum lands right after this one (or after the
        // context, once a frame completed; in mode "worker", in the next
        // job's tensor).
        let memory = match &self.runner {
            Runner::Render { memory, .. } => memory.as_ref(),
            Runner::Worker(worker) => worker.memories.get(worker.filling.slot),
        };
        let memory = memory.expect("the lent path has lent memory");
        io.register_buffers(memory, (self.context + self.filled) * 4, CHANNEL_BYTES, BufferKind::Input, 0).map_err(|e| format!("re-lending the input: {e}"))
    }

    /// Copies: frames that quanta straddle, multichannel layouts.
    fn process_copied(&mut self, io: &mut ProcessIo<'_>) -> Result<(), String> {
        let start = self.position;
        let (input, out) = io.input_and_output(0, 0);
        let available = input.len() / QUANTUM;
        let sample = |c: usize, i: usize| if available == 0 { 0.0 } else { input[c.min(available - 1) * QUANTUM + i] };
        let result = self.feed(QUANTUM, sample, |i| start + i as u64, |node, span| node.play(&mut out[span.clone()], start + span.start as u64));
        NeuralStatus::add(&self.status.bytes_copied_in, QUANTUM * self.channels * 4);
        result
    }

    /// The model runs at another rate: the quantum goes through the
    /// resampler; a result takes effect from the next quantum.
    fn process_resampled(&mut self, io: &mut ProcessIo<'_>) -> Result<(), String> {
        self.play(io.output(0), self.position)?;
        let next_quantum = self.position + QUANTUM as u64;
        let mut resampler = self.resampler.take().expect("the resampled path has a resampler");
        let result = resampler.process(io.input(0)).and_then(|(samples, produced)| {
            NeuralStatus::add(&self.status.bytes_copied_in, produced * self.channels * 4);
            self.feed(produced, |c, j| samples[c][j], |_| next_quantum, |_, _| Ok(()))
        });
        self.resampler = Some(resampler);
        result
    }
}

impl WorkletProcessor for OnnxProcessor {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        if self.kind == OutputKind::Audio && !matches!(self.runner, Runner::Render { output: Some(_), .. }) {
            // Each quantum of an audio output is copied from a frame.
            NeuralStatus::add(&self.status.bytes_copied_out, CHANNEL_BYTES);
        }
        // The zero-copy path: the input is lent.
        let result = if self.status.zero_copy() {
            self.process_lent(io)
        } else if self.resampler.is_some() {
            self.process_resampled(io)
        } else {
            self.process_copied(io)
        };
        self.position += QUANTUM as u64;
        if let Err(message) = result {
            // The node goes silent with a processorerror; the graph plays on.
            let _ = self.status.error.set(message.clone());
            io.fail(message);
        }
        true
    }

    /// The model takes a fixed number of channels: other counts are
    /// refused, and the engine up- or down-mixes to it.
    fn channel_topology_change(&mut self, change: TopologyChange, _: &mut Registrar<'_>) -> TopologyResponse {
        let fixed = match change.kind {
            PortKind::Input => self.channels,
            PortKind::Output => 1,
        };
        if change.new_channels == fixed {
            TopologyResponse::AcceptIfFits
        } else {
            TopologyResponse::Reject
        }
    }
}
