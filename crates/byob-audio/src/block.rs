//! Render-quantum sized audio storage.
//!
//! An [`AudioBlock`] holds up to [`MAX_CHANNELS`] channels of one render
//! quantum. Its storage is allocated once, when the graph is built, so that
//! changing the channel count on the render thread never allocates.

pub use crate::quantum::{Channel, MAX_CHANNELS, RENDER_QUANTUM_SIZE};

use crate::lent::LentRegion;

/// Where a block's samples live.
#[derive(Clone)]
enum Storage {
    /// Engine memory with room for [`MAX_CHANNELS`] channels.
    Owned(Box<[Channel]>),
    /// A region a processor lent (bring your own buffer).
    Lent(LentRegion),
}

/// Audio for one port during one render quantum.
#[derive(Clone)]
pub struct AudioBlock {
    storage: Storage,
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
        Self { storage: Storage::Owned(vec![[0.0; RENDER_QUANTUM_SIZE]; MAX_CHANNELS].into_boxed_slice()), channels: 1 }
    }

    /// A block whose samples live in a processor's lent region.
    pub(crate) fn lent(region: LentRegion, channels: usize) -> Self {
        let mut block = Self { storage: Storage::Lent(region), channels: 1 };
        block.set_number_of_channels(channels);
        block
    }

    /// The most channels this block can hold.
    pub fn capacity(&self) -> usize {
        match &self.storage {
            Storage::Owned(channels) => channels.len(),
            Storage::Lent(region) => region.capacity_channels().min(MAX_CHANNELS),
        }
    }

    /// The lent region behind this block, if any.
    pub(crate) fn region(&self) -> Option<&LentRegion> {
        match &self.storage {
            Storage::Owned(_) => None,
            Storage::Lent(region) => Some(region),
        }
    }

    /// The number of channels currently in use.
    pub fn number_of_channels(&self) -> usize {
        self.channels
    }

    /// Changes the channel count without touching the samples.
    ///
    /// Panics if `channels` is 0 or above [`capacity`](Self::capacity):
    /// callers validate channel counts when the graph is built or a region
    /// is registered.
    pub fn set_number_of_channels(&mut self, channels: usize) {
        assert!((1..=self.capacity()).contains(&channels), "channel count {channels} out of range");
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
        match &self.storage {
            Storage::Owned(storage) => &storage[..self.channels],
            Storage::Lent(region) => region.channels(self.channels),
        }
    }

    pub fn channels_mut(&mut self) -> &mut [Channel] {
        match &mut self.storage {
            Storage::Owned(storage) => &mut storage[..self.channels],
            Storage::Lent(region) => region.channels_mut(self.channels),
        }
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
