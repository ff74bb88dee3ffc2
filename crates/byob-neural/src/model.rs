//! The model behind a neural node: loaded, its inputs pinned to the node's
//! framing, and a [`RunHandle`] that runs it on the calling thread (on the
//! CPU), or its session awaited on the inference thread (ep "webgpu").

use crate::options::{Ep, Layout, OnnxOptions, OptionError};
use byob_tensor::{DataType, Dim, IoBinding, Model, RunError, RunHandle, Session, SessionBuilder, SessionError, Tensor};
use std::sync::Arc;

/// What the node does with the model's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// One value per inference, held as a control signal for a frame.
    Control,
    /// `frame` samples per inference, played as audio.
    Audio,
}

/// Why a neural node could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NeuralError {
    #[error(transparent)]
    Option(#[from] OptionError),
    /// The node's own options (ports, channel counts) do not suit the
    /// processor.
    #[error("{0}")]
    Ports(String),
    #[error("processorOptions.model: {path}: {source}")]
    Load { path: String, source: Box<SessionError> },
    #[error("processorOptions.model: {path}: the first inference failed: {source}")]
    FirstRun { path: String, source: Box<RunError> },
}

fn option(key: impl Into<String>, what: impl Into<String>) -> NeuralError {
    NeuralError::Option(OptionError { key: key.into(), what: what.into() })
}

/// How the model runs.
enum Runner {
    /// On the CPU, every kernel on the calling thread (a render thread may
    /// call it).
    Inline(RunHandle),
    /// With steps on the GPU (ep "webgpu"): each run waits for the device's
    /// results, so it runs only on the inference thread.
    Device { session: Arc<Session>, binding: IoBinding },
}

impl Runner {
    fn binding(&self) -> &IoBinding {
        match self {
            Self::Inline(handle) => handle.binding(),
            Self::Device { binding, .. } => binding,
        }
    }

    fn binding_mut(&mut self) -> &mut IoBinding {
        match self {
            Self::Inline(handle) => handle.binding_mut(),
            Self::Device { binding, .. } => binding,
        }
    }

    fn run(&mut self) -> Result<(), RunError> {
        match self {
            Self::Inline(handle) => handle.run().map(drop),
            // The download of the results is asynchronous (WebGPU's
            // mapAsync); the inference thread blocks on it, the render
            // thread never does.
            Self::Device { session, binding } => pollster::block_on(session.run_with_binding_async(binding)).map(drop),
        }
    }
}

/// A model ready to run frame after frame.
pub struct NeuralModel {
    runner: Runner,
    /// Steps placed on the GPU, of all steps.
    gpu_steps: (usize, usize),
    input: String,
    output: String,
    kind: OutputKind,
    /// (output, input) pairs swapped after each inference.
    state: Vec<(String, String)>,
}

impl std::fmt::Debug for NeuralModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuralModel").field("input", &self.input).field("output", &self.output).field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// Exchanges a bound tensor with another of its shape (headers move, not
/// values).
fn exchange(bound: &mut Tensor, other: &mut Tensor) {
    debug_assert_eq!(bound.shape(), other.shape());
    std::mem::swap(bound, other);
}

/// A declared shape with its open dimensions set to 1 (a batch of one).
fn batch_of_one(shape: &[Dim]) -> Vec<usize> {
    shape.iter().map(|d| if let Dim::Known(n) = d { *n } else { 1 }).collect()
}

impl NeuralModel {
    /// Loads `options.model` and checks it against the options: every
    /// input fed (audio, constant or state), names that exist, a frame the
    /// input can take, state pairs of one shape. Runs it once.
    pub fn load(options: &OnnxOptions) -> Result<Self, NeuralError> {
        let path = options.model.display().to_string();
        let load_error = |source: SessionError| NeuralError::Load { path: path.clone(), source: Box::new(source) };
        let model = Model::load(&options.model).map_err(|e| load_error(e.into()))?;
        let inputs = &model.graph.inputs;
        let outputs = &model.graph.outputs;
        let input_names = || inputs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
        let output_names = || outputs.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ");
        for (name, _) in &options.constants {
            if !inputs.iter().any(|v| &v.name == name) {
                return Err(option(format!("constants.{name}"), format!("the model has no input {name:?} (its inputs: {})", input_names())));
            }
        }
        let mut state = Vec::new();
        let mut shapes: Vec<(String, Vec<usize>)> = Vec::new();
        let mut binding = IoBinding::new();
        for (output, input) in &options.state {
            let key = format!("state.{output}");
            if !outputs.iter().any(|v| &v.name == output) {
                return Err(option(key, format!("the model has no output {output:?} (its outputs: {})", output_names())));
            }
            let Some(info) = inputs.iter().find(|v| &v.name == input) else {
                return Err(option(key, format!("the model has no input {input:?} (its inputs: {})", input_names())));
            };
            let Some(declared) = &info.shape else { return Err(option(key, format!("input {input:?} declares no shape, so its initial state cannot be made"))) };
            let shape = batch_of_one(declared);
            let zeros = Tensor::zeros(info.dtype.unwrap_or(DataType::F32), &shape).map_err(|e| option(&key, e.to_string()))?;
            binding.bind_input(input.clone(), zeros);
            shapes.push((input.clone(), shape));
            state.push((output.clone(), input.clone()));
        }
        let fed = |name: &str| options.constants.iter().any(|(n, _)| n == name) || options.state.iter().any(|(_, i)| i == name);
        let input = match &options.input {
            // The audio input's tensor is lent to the engine: a constant or
            // a state (exchanged after each inference) cannot be it.
            Some(name) if fed(name) => return Err(option("input", format!("input {name:?} is already fed by \"constants\" or \"state\"; the audio needs an input of its own"))),
            Some(name) if inputs.iter().any(|v| &v.name == name) => name.clone(),
            Some(name) => return Err(option("input", format!("the model has no input {name:?} (its inputs: {})", input_names()))),
            None => inputs.iter().find(|v| !fed(&v.name)).map(|v| v.name.clone()).ok_or_else(|| option("input", "every input of the model is a constant or a state; none is left for audio"))?,
        };
        if let Some(unfed) = inputs.iter().find(|v| v.name != input && !fed(&v.name)) {
            return Err(option("constants", format!("the model's input {:?} is fed by nothing: give its value in \"constants\", or name it in \"state\"", unfed.name)));
        }
        let info = inputs.iter().find(|v| v.name == input).expect("found above");
        if info.dtype.is_some_and(|d| d != DataType::F32) {
            return Err(option("input", format!("input {input:?} holds {}, not float audio", info.dtype.expect("checked"))));
        }
        let n = options.context + options.frame;
        let shape = match options.layout {
            Layout::Mono => vec![1, n],
            Layout::ChannelsFirst => vec![1, options.channels, n],
            Layout::ChannelsLast => vec![1, n, options.channels],
        };
        if let Some(declared) = &info.shape {
            if declared.len() != shape.len() {
                return Err(option("input", format!("input {input:?} has {} dimensions; audio needs {} ([1, N] mono; channels need a \"layout\")", declared.len(), shape.len())));
            }
            let samples_axis = if options.layout == Layout::ChannelsLast { 1 } else { shape.len() - 1 };
            for (axis, (d, &want)) in declared.iter().zip(&shape).enumerate() {
                if let Dim::Known(k) = d {
                    if *k != want {
                        let key = if axis == samples_axis { "frame" } else { "input" };
                        return Err(option(key, format!("input {input:?} takes {k} along axis {axis}, but context + frame ({} + {}) needs {want} there", options.context, options.frame)));
                    }
                }
            }
        }
        binding.bind_input(input.clone(), Tensor::zeros(DataType::F32, &shape).map_err(|e| option("frame", e.to_string()))?);
        shapes.push((input.clone(), shape));

        let output = match &options.output {
            Some(name) if state.iter().any(|(o, _)| o == name) => return Err(option("output", format!("output {name:?} is a state, carried to the next inference; the node plays another output"))),
            Some(name) if outputs.iter().any(|v| &v.name == name) => name.clone(),
            Some(name) => return Err(option("output", format!("the model has no output {name:?} (its outputs: {})", output_names()))),
            None => outputs.iter().find(|v| !state.iter().any(|(o, _)| *o == v.name)).map(|v| v.name.clone()).ok_or_else(|| option("output", "every output of the model is a state; none is left to play"))?,
        };

        // One thread, not spinning: the handle runs on its caller's.
        let mut builder = SessionBuilder::new().with_intra_op_threads(1).with_intra_op_spinning(false);
        if options.ep == Ep::WebGpu {
            let gpu = byob_webgpu::WebGpuProvider::new().map_err(|e| option("ep", format!("webgpu is not available here: {e}")))?;
            builder = builder.with_provider(Box::new(gpu));
        }
        for (name, value) in &options.constants {
            builder = builder.with_constant_input(name.clone(), value.clone());
        }
        for (name, shape) in shapes {
            builder = builder.with_input_shape(name, shape);
        }
        let session = Arc::new(builder.commit(model).map_err(load_error)?);
        let placements = session.placements();
        let gpu_steps = (placements.iter().filter(|p| p.provider == "webgpu").count(), placements.len());
        let first_run = |source| NeuralError::FirstRun { path: path.clone(), source: Box::new(source) };
        let runner = match options.ep {
            Ep::Cpu => Runner::Inline(session.run_handle(binding).map_err(first_run)?),
            Ep::WebGpu => {
                session.run_with_binding(&mut binding).map_err(first_run)?;
                Runner::Device { session, binding }
            }
        };
        let binding = runner.binding();
        let produced = |name: &str| binding.output(name).map(|t| t.shape().to_vec()).unwrap_or_default();
        let out_shape = produced(&output);
        for (out, input) in &state {
            let (produced, expected) = (produced(out), binding.input(input).map(|t| t.shape().to_vec()).unwrap_or_default());
            if produced != expected {
                return Err(option(format!("state.{out}"), format!("output {out:?} has shape {produced:?} but input {input:?} takes {expected:?}: a state must keep its shape")));
            }
        }
        let kind = match binding.output(&output).map(|t| (t.dtype(), t.len())) {
            Some((DataType::F32, 1)) => OutputKind::Control,
            Some((DataType::F32, len)) if len == options.frame && options.layout == Layout::Mono => OutputKind::Audio,
            _ => return Err(option("output", format!("output {output:?} has shape {out_shape:?}: the node plays one float per inference (a control signal) or [1, {}] (audio, one sample per new input sample)", options.frame))),
        };
        Ok(Self { runner, gpu_steps, input, output, kind, state })
    }

    /// How many of the model's steps run on the GPU, of how many (ep
    /// "webgpu"; the CPU runs the rest).
    pub fn gpu_steps(&self) -> (usize, usize) {
        self.gpu_steps
    }

    pub fn output_kind(&self) -> OutputKind {
        self.kind
    }

    /// The bound audio input tensor.
    fn input_slot(&mut self) -> &mut Tensor {
        let input = &self.input;
        self.runner.binding_mut().input_mut(input).expect("the audio input is bound")
    }

    /// The bound output tensor that the node plays.
    fn output_slot(&mut self) -> &mut Tensor {
        let output = &self.output;
        self.runner.binding_mut().output_mut(output).expect("the output is bound")
    }

    /// The audio input tensor's values, to fill in place.
    pub fn input_mut(&mut self) -> &mut [f32] {
        self.input_slot().as_f32_mut().expect("the audio input is float")
    }

    /// The audio input tensor, whose shape and type jobs of mode "worker"
    /// copy.
    pub(crate) fn input_tensor(&self) -> &Tensor {
        self.runner.binding().input(&self.input).expect("the audio input is bound")
    }

    /// Exchanges the audio input tensor with `other` (same shape and type):
    /// mode "worker" runs on the frames that jobs bring, without copying.
    pub(crate) fn swap_input(&mut self, other: &mut Tensor) {
        exchange(self.input_slot(), other);
    }

    /// The longest of `runs` inferences, timed on the calling thread (the
    /// state inputs are left as they are: the node's state is untouched).
    pub fn worst_inference(&mut self, runs: usize) -> Result<std::time::Duration, RunError> {
        let mut worst = std::time::Duration::ZERO;
        for _ in 0..runs {
            let start = std::time::Instant::now();
            self.runner.run()?;
            worst = worst.max(start.elapsed());
        }
        Ok(worst)
    }

    /// The played output tensor, whose shape and type a second one copies.
    pub(crate) fn output_tensor(&self) -> &Tensor {
        self.runner.binding().output(&self.output).expect("the output is bound")
    }

    /// The played output tensor's values, to lend.
    pub(crate) fn output_mut(&mut self) -> &mut [f32] {
        self.output_slot().as_f32_mut().expect("the output is float")
    }

    /// Exchanges the played output tensor with `other` (same shape and
    /// type): the next inference writes into what `other` was.
    pub(crate) fn swap_output(&mut self, other: &mut Tensor) {
        exchange(self.output_slot(), other);
    }

    /// The output tensor's values as the last inference left them.
    pub fn output(&self) -> &[f32] {
        self.runner.binding().output(&self.output).and_then(Tensor::as_f32).expect("the output is bound, float")
    }

    /// Runs one inference on the input as it stands, then hands each state
    /// output to its input by swapping the two tensors (no copy; the old
    /// input's buffer takes the next output).
    pub fn infer(&mut self) -> Result<(), RunError> {
        self.runner.run()?;
        let binding = self.runner.binding_mut();
        for (output, input) in &self.state {
            let produced = binding.output_mut(output).map(std::mem::take).unwrap_or_default();
            let previous = binding.input_mut(input).map(|slot| std::mem::replace(slot, produced)).unwrap_or_default();
            if let Some(slot) = binding.output_mut(output) {
                *slot = previous;
            }
        }
        Ok(())
    }
}
