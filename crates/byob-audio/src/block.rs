//! Render-quantum sized audio storage.
//!
//! An [`AudioBlock`] holds up to [`MAX_CHANNELS`] channels of one render
//! quantum. Its storage is allocated once, when the graph is built, so that
//! changing the channel count on the render thread never allocates.

/// Frames in one render quantum, as the Web Audio API fixes it.
pub const RENDER_QUANTUM_SIZE: usize = 128;

/// The largest channel count a port can carry (the spec requires at least 32).
pub const MAX_CHANNELS: usize = 32;

/// One channel of one render quantum.
pub type Channel = [f32; RENDER_QUANTUM_SIZE];

/// Audio for one port during one render quantum.
#[derive(Clone)]
pub struct AudioBlock {
    storage: Box<[Channel]>,
    channels: usize,
}

impl Default for AudioBlock {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for AudioBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioBlock").field("channels", &self.channels).finish()
    }
}

impl AudioBlock {
    /// A mono block of silence with room for [`MAX_CHANNELS`] channels.
    pub fn new() -> Self {
        Self { storage: vec![[0.0; RENDER_QUANTUM_SIZE]; MAX_CHANNELS].into_boxed_slice(), channels: 1 }
    }

    /// The number of channels currently in use.
    pub fn number_of_channels(&self) -> usize {
        self.channels
    }

    /// Changes the channel count without touching the samples.
    ///
    /// Panics if `channels` is 0 or above [`MAX_CHANNELS`]: callers validate
    /// channel counts when the graph is built.
    pub fn set_number_of_channels(&mut self, channels: usize) {
        assert!((1..=MAX_CHANNELS).contains(&channels), "channel count {channels} out of range");
        self.channels = channels;
    }

    /// Sets the channel count and zeroes every channel in use.
    pub fn make_silent(&mut self, channels: usize) {
        self.set_number_of_channels(channels);
        for channel in self.channels_mut() {
            channel.fill(0.0);
        }
    }

    pub fn channel(&self, index: usize) -> &Channel {
        &self.channels()[index]
    }

    pub fn channel_mut(&mut self, index: usize) -> &mut Channel {
        &mut self.channels_mut()[index]
    }

    pub fn channels(&self) -> &[Channel] {
        &self.storage[..self.channels]
    }

    pub fn channels_mut(&mut self) -> &mut [Channel] {
        &mut self.storage[..self.channels]
    }

    /// Makes `self` an exact copy of `other` (channel count and samples).
    pub fn copy_from(&mut self, other: &AudioBlock) {
        self.set_number_of_channels(other.channels);
        self.channels_mut().copy_from_slice(other.channels());
    }

    /// True when every sample of every channel in use is zero.
    pub fn is_silent(&self) -> bool {
        self.channels().iter().all(|c| c.iter().all(|&s| s == 0.0))
    }
}
