//! `OnnxProcessor`: the worklet processor behind an `"onnx"` node.

use crate::model::{NeuralError, NeuralModel, OutputKind};
use crate::options::{Layout, Mode, OnnxOptions, OptionError};
use crate::resample::InputResampler;
use crate::status::NeuralStatus;
use byob_audio::worklet::{BufferKind, ByobMemory, PortKind, ProcessIo, ProcessorInit, Registrar, TopologyChange, TopologyResponse, WorkletProcessor, CHANNEL_BYTES};
use byob_audio::RENDER_QUANTUM_SIZE;
use std::sync::Arc;

const QUANTUM: usize = RENDER_QUANTUM_SIZE;

/// Runs a model frame by frame on the node's input; see docs/neural-node.md.
pub struct OnnxProcessor {
    model: NeuralModel,
    frame: usize,
    context: usize,
    channels: usize,
    layout: Layout,
    kind: OutputKind,
    /// New samples in the frame being filled (at the model's rate).
    filled: usize,
    /// A control output's value since the last inference.
    held: f32,
    /// An audio output's last frame, played sample by sample.
    audio: Vec<f32>,
    /// The input tensor, lent to the engine (the zero-copy path).
    lent_input: Option<ByobMemory>,
    /// The output port's region, kept for as long as it is lent: the
    /// node writes it in place, and the engine copies nothing out.
    _output_memory: ByobMemory,
    resampler: Option<InputResampler>,
    status: Arc<NeuralStatus>,
}

impl OnnxProcessor {
    /// Loads the model and registers the node's memory (on the control
    /// thread: this allocates, and runs the model once).
    pub fn new(options: &OnnxOptions, init: &mut ProcessorInit<'_>) -> Result<Self, NeuralError> {
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
        // The engine mixes straight into the input tensor when each
        // quantum lands whole inside a frame and at an aligned offset.
        let aligned = options.layout == Layout::Mono && options.frame.is_multiple_of(QUANTUM) && (options.context * 4).is_multiple_of(byob_audio::worklet::REGION_ALIGNMENT);
        let lent_input = if resampler.is_none() && aligned { crate::zero_copy::lend(model.input_mut()) } else { None };
        let lent_input = lent_input.filter(|memory| init.register_buffers(memory, options.context * 4, CHANNEL_BYTES, BufferKind::Input, 0).is_ok());
        let output_memory = ByobMemory::new(CHANNEL_BYTES);
        init.register_buffers(&output_memory, 0, CHANNEL_BYTES, BufferKind::Output, 0).map_err(|e| NeuralError::Ports(format!("registering the output: {e}")))?;
        let latency_seconds = match &resampler {
            None => options.frame as f64 / rate as f64,
            // The result takes effect at the next quantum boundary.
            Some(r) => (options.frame + r.delay()) as f64 / rate as f64 + QUANTUM as f64 / context_rate as f64,
        };
        let status = Arc::new(NeuralStatus::new(options.model.clone(), Mode::Render, latency_seconds, lent_input.is_some()));
        Ok(Self {
            model,
            frame: options.frame,
            context: options.context,
            channels: options.channels,
            layout: options.layout,
            kind,
            filled: 0,
            held: 0.0,
            audio: vec![0.0; if kind == OutputKind::Audio { options.frame } else { 0 }],
            lent_input,
            _output_memory: output_memory,
            resampler,
            status,
        })
    }

    /// The node's counters, shared with the render thread.
    pub fn status(&self) -> &Arc<NeuralStatus> {
        &self.status
    }

    /// Runs the model on the completed frame, takes its output and carries
    /// the frame's last `context` samples to the front of the input.
    fn complete_frame(&mut self) -> Result<(), String> {
        self.model.infer().map_err(|e| format!("inference {} failed: {e}", self.status.inferences()))?;
        NeuralStatus::add(&self.status.inferences, 1);
        match self.kind {
            OutputKind::Control => self.held = self.model.output()[0],
            OutputKind::Audio => {
                let output = self.model.output();
                self.audio.copy_from_slice(output);
            }
        }
        let (frame, context, channels) = (self.frame, self.context, self.channels);
        let n = frame + context;
        let input = self.model.input_mut();
        match self.layout {
            Layout::Mono | Layout::ChannelsLast => input.copy_within(frame * channels..n * channels, 0),
            Layout::ChannelsFirst => (0..channels).for_each(|c| input.copy_within(c * n + frame..(c + 1) * n, c * n)),
        }
        NeuralStatus::add(&self.status.context_bytes_moved, context * channels * 4);
        self.filled = 0;
        Ok(())
    }

    /// Writes the output from where the frame being filled is: the held
    /// value, or the last frame's audio.
    fn play(&self, out: &mut [f32]) {
        match self.kind {
            OutputKind::Control => out.fill(self.held),
            OutputKind::Audio => out.copy_from_slice(&self.audio[self.filled..][..out.len()]),
        }
    }

    /// Writes `count` samples into the frame (channel `c` of sample `i` is
    /// `sample(c, i)`), a stretch at a time up to the end of the frame,
    /// running the model at each frame completed. Before each stretch,
    /// `emit(node, span)` is called for the outputs of samples `span`, so
    /// that outputs before an inference use the result before it.
    fn feed(&mut self, count: usize, sample: impl Fn(usize, usize) -> f32, mut emit: impl FnMut(&Self, std::ops::Range<usize>)) -> Result<(), String> {
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
            emit(self, i..i + take);
            let filled = self.filled;
            let input = self.model.input_mut();
            for j in 0..take {
                for c in 0..channels {
                    input[position(c, filled + j)] = sample(c, i + j);
                }
            }
            self.filled += take;
            i += take;
            if self.filled == frame {
                self.complete_frame()?;
            }
        }
        Ok(())
    }

    /// The zero-copy path: the quantum is already in the input tensor.
    fn process_lent(&mut self, io: &mut ProcessIo<'_>) -> Result<(), String> {
        self.play(io.output(0));
        self.filled += QUANTUM;
        if self.filled == self.frame {
            self.complete_frame()?;
        }
        // The next quantum lands right after this one (or after the
        // context, once a frame completed).
        let memory = self.lent_input.as_ref().expect("the lent path has lent memory");
        io.register_buffers(memory, (self.context + self.filled) * 4, CHANNEL_BYTES, BufferKind::Input, 0).map_err(|e| format!("re-lending the input: {e}"))
    }

    /// Copies: frames that quanta straddle, multichannel layouts.
    fn process_copied(&mut self, io: &mut ProcessIo<'_>) -> Result<(), String> {
        let (input, out) = io.input_and_output(0, 0);
        let available = input.len() / QUANTUM;
        let sample = |c: usize, i: usize| if available == 0 { 0.0 } else { input[c.min(available - 1) * QUANTUM + i] };
        let result = self.feed(QUANTUM, sample, |node, span| node.play(&mut out[span]));
        NeuralStatus::add(&self.status.bytes_copied_in, QUANTUM * self.channels * 4);
        result
    }

    /// The model runs at another rate: the quantum goes through the
    /// resampler; a result takes effect from the next quantum.
    fn process_resampled(&mut self, io: &mut ProcessIo<'_>) -> Result<(), String> {
        self.play(io.output(0));
        let mut resampler = self.resampler.take().expect("the resampled path has a resampler");
        let result = resampler.process(io.input(0)).and_then(|(samples, produced)| {
            NeuralStatus::add(&self.status.bytes_copied_in, produced * self.channels * 4);
            self.feed(produced, |c, j| samples[c][j], |_, _| {})
        });
        self.resampler = Some(resampler);
        result
    }
}

impl WorkletProcessor for OnnxProcessor {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        if self.kind == OutputKind::Audio {
            // Each quantum of an audio output is copied from the last frame.
            NeuralStatus::add(&self.status.bytes_copied_out, CHANNEL_BYTES);
        }
        let result = if self.lent_input.is_some() {
            self.process_lent(io)
        } else if self.resampler.is_some() {
            self.process_resampled(io)
        } else {
            self.process_copied(io)
        };
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
