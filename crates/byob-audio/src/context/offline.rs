//! OfflineAudioContext: renders a graph as fast as possible into a buffer.

use crate::block::{MAX_CHANNELS, RENDER_QUANTUM_SIZE};
use crate::buffer::{zeroed_channels, AudioBuffer};
use crate::graph::{AudioGraph, CompileError, NodeError, ProcessorErrorEvent, RenderGraph};

/// A finished offline render.
#[derive(Debug)]
pub struct Rendered {
    pub buffer: AudioBuffer,
    /// The `processorerror` events raised during the render.
    pub processor_errors: Vec<ProcessorErrorEvent>,
}

/// Why an offline context could not be created or rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    #[error("numberOfChannels {0} is out of range 1..={MAX_CHANNELS} (NotSupportedError)")]
    Channels(usize),
    #[error("length must be at least 1 frame, got {0} (NotSupportedError)")]
    Length(usize),
    #[error("sampleRate {0} is outside 3000..=768000 Hz (NotSupportedError)")]
    SampleRate(f32),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A change made while rendering (a score's entry) failed.
    #[error("{0}")]
    Change(String),
    /// The system refused the memory for the rendered buffer.
    #[error("out of memory: the rendered buffer of {frames} frames × {channels} channels needs {bytes} bytes")]
    OutOfMemory { frames: usize, channels: usize, bytes: usize },
}

/// The spec's OfflineAudioContext: `length` frames of `number_of_channels`
/// channels at `sample_rate`.
pub struct OfflineAudioContext {
    graph: AudioGraph,
    length: usize,
}

impl OfflineAudioContext {
    pub fn new(number_of_channels: usize, length: usize, sample_rate: f32) -> Result<Self, ContextError> {
        if !(1..=MAX_CHANNELS).contains(&number_of_channels) {
            return Err(ContextError::Channels(number_of_channels));
        }
        if length == 0 {
            return Err(ContextError::Length(length));
        }
        if !(3000.0..=768000.0).contains(&sample_rate) {
            return Err(ContextError::SampleRate(sample_rate));
        }
        let graph = AudioGraph::new(sample_rate, number_of_channels).map_err(|e| match e {
            NodeError::ChannelCount(n) => ContextError::Channels(n),
            _ => unreachable!("AudioGraph::new only checks the channel count"),
        })?;
        Ok(Self { graph, length })
    }

    pub fn graph(&mut self) -> &mut AudioGraph {
        &mut self.graph
    }

    pub fn length(&self) -> usize {
        self.length
    }

    pub fn sample_rate(&self) -> f32 {
        self.graph.sample_rate()
    }

    /// Renders the whole length.
    pub fn start_rendering(self) -> Result<AudioBuffer, ContextError> {
        self.start_rendering_with_progress(|_| {})
    }

    /// Renders the whole length, calling `progress` with the frames done so
    /// far every few quanta.
    pub fn start_rendering_with_progress(self, progress: impl FnMut(usize)) -> Result<AudioBuffer, ContextError> {
        Ok(self.render(progress)?.buffer)
    }

    /// Renders the whole length and reports processor errors beside the
    /// audio.
    pub fn render(self, progress: impl FnMut(usize)) -> Result<Rendered, ContextError> {
        self.render_changing(progress, |_, _| Ok(()))
    }

    /// As [`render`](Self::render), calling `change` with the graph before
    /// each quantum (with the frame it starts at) to change it as a live
    /// context's control side would: what it changes applies from that
    /// quantum on, and ended sources are released as a live context
    /// releases them. `byob render --score` plays a score this way.
    pub fn render_changing(
        mut self,
        mut progress: impl FnMut(usize),
        mut change: impl FnMut(&mut AudioGraph, u64) -> Result<(), String>,
    ) -> Result<Rendered, ContextError> {
        let (frames, channels) = (self.length, self.graph.number_of_channels());
        let bytes = frames.saturating_mul(channels).saturating_mul(std::mem::size_of::<f32>());
        self.graph.reserve_memory(bytes, || format!("the rendered buffer of {frames} frames"))?;
        let errors = self.graph.processor_errors();
        let sample_rate = self.graph.sample_rate();
        let mut render = RenderGraph::new(sample_rate);
        // Within the memory limit, so `bytes` did not saturate.
        let mut out = zeroed_channels(channels, frames).ok_or(ContextError::OutOfMemory { frames, channels, bytes })?;
        let mut done = 0;
        let mut events = Vec::new();
        while done < self.length {
            let frame = render.current_frame();
            self.graph.set_current_time(frame as f64 / sample_rate as f64);
            change(&mut self.graph, frame).map_err(ContextError::Change)?;
            for event in events.drain(..) {
                self.graph.handle_event(&event);
            }
            if let Some(mut changes) = self.graph.commit()? {
                render.apply(&mut changes);
            }
            let block = render.render_quantum_with(|e| events.push(e));
            let n = RENDER_QUANTUM_SIZE.min(self.length - done);
            for (dst, src) in out.iter_mut().zip(block.channels()) {
                dst[done..done + n].copy_from_slice(&src[..n]);
            }
            done += n;
            if (done / RENDER_QUANTUM_SIZE).is_multiple_of(256) || done == self.length {
                progress(done);
            }
        }
        let buffer = AudioBuffer::new(sample_rate, out).expect("the destination has 1..=32 equal channels");
        Ok(Rendered { buffer, processor_errors: errors.events() })
    }
}
