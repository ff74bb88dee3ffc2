//! The render quantum's fixed sizes: below everything that stores audio,
//! the engine's blocks and the memory processors lend alike.

/// Frames in one render quantum, as the Web Audio API fixes it.
pub const RENDER_QUANTUM_SIZE: usize = 128;

/// The largest channel count a port can carry (the spec requires at least 32).
pub const MAX_CHANNELS: usize = 32;

/// One channel of one render quantum.
pub type Channel = [f32; RENDER_QUANTUM_SIZE];
