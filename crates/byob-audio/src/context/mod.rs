//! Contexts: where a graph is rendered.

mod offline;
#[cfg(feature = "realtime")]
mod realtime;

pub use offline::{ContextError, OfflineAudioContext, Rendered};
#[cfg(feature = "realtime")]
pub use realtime::{PlaybackError, RealtimeOutput};
