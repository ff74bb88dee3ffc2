//! Contexts: where a graph is rendered.

mod capacity;
mod offline;
#[cfg(feature = "realtime")]
mod realtime;

pub use capacity::{CapacityCell, RenderCapacityMeter, RenderCapacityReport};
pub use offline::{ContextError, OfflineAudioContext, Rendered};
#[cfg(feature = "realtime")]
pub use realtime::{PlaybackError, RealtimeOutput};
