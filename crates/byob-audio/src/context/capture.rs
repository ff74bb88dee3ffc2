//! What a null sink played, kept for comparison (tests, `byob play
//! --capture`): room for every frame is taken before playing, so keeping
//! a quantum on the render thread only copies.

use crate::block::{AudioBlock, RENDER_QUANTUM_SIZE};
use crate::buffer::AudioBuffer;

pub(super) struct Capture {
    channels: Vec<Vec<f32>>,
    limit: usize,
}

impl Capture {
    /// Room for `frames` frames of `channels` channels (none when 0).
    pub fn new(channels: usize, frames: usize) -> Self {
        let channels = if frames == 0 { Vec::new() } else { (0..channels).map(|_| Vec::with_capacity(frames)).collect() };
        Self { channels, limit: frames }
    }

    /// Keeps what fits of `block` (a mono block fills every channel).
    pub fn record(&mut self, block: &AudioBlock) {
        let Some(first) = self.channels.first() else { return };
        let n = RENDER_QUANTUM_SIZE.min(self.limit - first.len());
        let count = block.number_of_channels();
        for (c, kept) in self.channels.iter_mut().enumerate() {
            kept.extend_from_slice(&block.channel(c.min(count - 1))[..n]);
        }
    }

    /// The frames kept, if capturing.
    pub fn take(&mut self, sample_rate: f32) -> Option<AudioBuffer> {
        if self.channels.is_empty() {
            return None;
        }
        AudioBuffer::new(sample_rate, std::mem::take(&mut self.channels)).ok()
    }
}
