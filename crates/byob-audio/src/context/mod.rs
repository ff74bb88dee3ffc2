//! Contexts: where a graph is rendered.

mod capacity;
mod offline;
#[cfg(feature = "realtime")]
mod realtime;
mod sink;

pub use capacity::{CapacityCell, RenderCapacityMeter, RenderCapacityReport};
pub use offline::{ContextError, OfflineAudioContext, Rendered};
pub use sink::NullOutput;
#[cfg(feature = "realtime")]
pub use realtime::{PlaybackError, RealtimeOutput};
