//! # byob-audio
//!
//! A Web Audio API render engine in Rust, built so that audio processors can
//! work directly on memory they bring (the "bring your own buffer" proposal
//! for AudioWorklet).
//!
//! The engine follows the Web Audio specification: a graph of nodes rendered
//! in 128-frame quanta in dependency order, the spec's channel up/down-mixing,
//! AudioParam automation with its exact formulas, and scheduled sources with
//! sub-sample accurate start and stop.
//!
//! * [`AudioGraph`] is the graph on the control side, where it is built and
//!   changed; nodes, options and methods carry the Web Audio API's own names.
//! * [`RenderGraph`] is the render side: rendering a quantum, and applying a
//!   batch of changes between quanta, allocate nothing, take no lock and
//!   make no system call.
//! * [`OfflineAudioContext`] renders a graph into an [`AudioBuffer`].
//! * [`AudioContext`] plays a graph in real time (on a device or the null
//!   sink) and takes changes while it plays; docs/live-context.md explains
//!   its threads.
//!
//! ```
//! use byob_audio::*;
//!
//! let mut ctx = OfflineAudioContext::new(1, 48000, 48000.0)?;
//! let graph = ctx.graph();
//! let osc = OscillatorNode::new(graph, OscillatorOptions { frequency: 440.0, ..Default::default() })?;
//! let gain = GainNode::new(graph, GainOptions { gain: 0.5, ..Default::default() })?;
//! graph.connect(osc.id(), 0, gain.id(), 0)?;
//! let destination = graph.destination();
//! graph.connect(gain.id(), 0, destination, 0)?;
//! osc.start(graph, 0.0)?;
//! graph.param(gain.gain()).linear_ramp_to_value_at_time(0.0, 1.0)?;
//! let rendered = ctx.start_rendering()?;
//! assert_eq!(rendered.length(), 48000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// `unsafe` lives in one module, `lent`, where processor memory is lent to
// the engine; everything else is safe code.
#![deny(unsafe_code)]

// Unit tests of render-thread code deny allocation with it.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

mod quantum;
#[allow(unsafe_code)]
mod lent;
pub mod block;
pub mod buffer;
pub mod context;
pub mod graph;
pub mod graph_file;
pub mod mixing;
mod number;
pub mod node;
pub mod param;
pub mod worklet;

pub use block::{AudioBlock, MAX_CHANNELS, RENDER_QUANTUM_SIZE};
pub use buffer::{AudioBuffer, SampleFormat};
pub use context::{
    AudioContext, AudioContextError, AudioContextOptions, AudioContextState, AudioTimestamp, ContextError, LatencyHint, LiveGraph, NullOutput,
    OfflineAudioContext, RenderCapacityReport, RenderDriver, SinkId,
};
#[cfg(feature = "realtime")]
pub use context::{PlaybackError, RealtimeOutput};
pub use graph::{AudioGraph, AudioNodeOptions, AudioParamId, NodeError, NodeEvent, NodeEventKind, NodeId, RenderGraph, DEFAULT_MEMORY_LIMIT};
pub use mixing::{ChannelConfig, ChannelCountMode, ChannelInterpretation};
pub use node::biquad_filter::{coefficients as biquad_coefficients, BiquadFilterNode, BiquadFilterOptions, BiquadFilterType};
pub use node::buffer_source::{AudioBufferSourceNode, AudioBufferSourceOptions};
pub use node::channel_merger::{ChannelMergerNode, ChannelMergerOptions};
pub use node::channel_splitter::{ChannelSplitterNode, ChannelSplitterOptions};
pub use node::constant_source::{ConstantSourceNode, ConstantSourceOptions};
pub use node::delay::{DelayNode, DelayOptions};
pub use node::gain::{GainNode, GainOptions};
pub use node::oscillator::{OscillatorNode, OscillatorOptions, OscillatorType};
pub use node::periodic_wave::{PeriodicWave, PeriodicWaveOptions};
pub use node::stereo_panner::{StereoPannerNode, StereoPannerOptions};
pub use node::{AudioNode, AudioProcessor, AudioScheduledSourceNode, RenderScope};
pub use param::{AudioParamDescriptor, AutomationRate, ParamBuffer};
pub use worklet::{AudioWorkletNode, AudioWorkletNodeOptions, BufferKind, ByobMemory, ProcessIo, ProcessorRegistry, WorkletProcessor};
