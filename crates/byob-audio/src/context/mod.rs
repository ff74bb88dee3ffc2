//! Contexts: where a graph is rendered.

mod capacity;
mod capture;
mod live;
mod live_render;
mod offline;
#[cfg(feature = "realtime")]
mod realtime;
mod sink;

pub use capacity::{CapacityCell, RenderCapacityMeter, RenderCapacityReport};
pub use live::{quantum_at_or_after, AudioContext, AudioContextError, AudioContextOptions, AudioContextState, AudioTimestamp, Freed, LatencyHint, LiveGraph, RenderDriver, SinkId};
pub use offline::{ContextError, OfflineAudioContext, Rendered};
pub use sink::NullOutput;
#[cfg(feature = "realtime")]
pub use realtime::{PlaybackError, RealtimeOutput};
