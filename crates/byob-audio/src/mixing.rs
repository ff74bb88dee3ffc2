//! Channel up-mixing and down-mixing (Web Audio API §"Channel Up-Mixing and
//! Down-Mixing").
//!
//! Every input of every node computes its channel count from its connections
//! and its [`ChannelConfig`], then each connection is mixed to that count and
//! summed.

use crate::block::{AudioBlock, Channel, MAX_CHANNELS};
use std::f32::consts::FRAC_1_SQRT_2;

/// How an input's channel count is computed from its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChannelCountMode {
    /// The largest channel count among the connections; `channelCount` is ignored.
    #[default]
    Max,
    /// Like `Max`, but never more than `channelCount`.
    ClampedMax,
    /// Exactly `channelCount`.
    Explicit,
}

/// How channels are matched when their counts differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChannelInterpretation {
    /// Mono, stereo, quad and 5.1 use the spec's speaker equations.
    #[default]
    Speakers,
    /// Channels are matched by index; extra ones are dropped or left silent.
    Discrete,
}

impl ChannelCountMode {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "max" => Some(Self::Max),
            "clamped-max" => Some(Self::ClampedMax),
            "explicit" => Some(Self::Explicit),
            _ => None,
        }
    }
}

impl ChannelInterpretation {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "speakers" => Some(Self::Speakers),
            "discrete" => Some(Self::Discrete),
            _ => None,
        }
    }
}

/// An input's `channelCount`, `channelCountMode` and `channelInterpretation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    pub count: usize,
    pub mode: ChannelCountMode,
    pub interpretation: ChannelInterpretation,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self { count: 2, mode: ChannelCountMode::Max, interpretation: ChannelInterpretation::Speakers }
    }
}

impl ChannelConfig {
    /// The spec's computedNumberOfChannels, given the largest channel count
    /// among the input's connections (1 when nothing is connected: an input
    /// without connections carries one channel of silence).
    pub fn computed_number_of_channels(&self, max_connection_channels: usize) -> usize {
        let connected = max_connection_channels.max(1);
        match self.mode {
            ChannelCountMode::Max => connected,
            ChannelCountMode::ClampedMax => connected.min(self.count),
            ChannelCountMode::Explicit => self.count,
        }
        .min(MAX_CHANNELS)
    }
}

/// Adds `src`, mixed to `dst`'s channel count, into `dst`.
pub fn mix_add(dst: &mut AudioBlock, src: &AudioBlock, interpretation: ChannelInterpretation) {
    let (from, to) = (src.number_of_channels(), dst.number_of_channels());
    let s = src.channels();
    let d = dst.channels_mut();
    if from == to {
        for (d, s) in d.iter_mut().zip(s) {
            add(d, s, 1.0);
        }
        return;
    }
    let speakers = interpretation == ChannelInterpretation::Speakers
        && matches!(from, 1 | 2 | 4 | 6)
        && matches!(to, 1 | 2 | 4 | 6);
    if !speakers {
        // Discrete: copy the channels both sides have; the rest stays silent
        // (up-mix) or is dropped (down-mix).
        for (d, s) in d.iter_mut().zip(s) {
            add(d, s, 1.0);
        }
        return;
    }
    const H: f32 = 0.5;
    const Q: f32 = 0.25;
    const R: f32 = FRAC_1_SQRT_2;
    match (from, to) {
        // Up-mixing.
        (1, 2) | (1, 4) => {
            add(&mut d[0], &s[0], 1.0);
            add(&mut d[1], &s[0], 1.0);
        }
        (1, 6) => add(&mut d[2], &s[0], 1.0),
        (2, 4) | (2, 6) => {
            add(&mut d[0], &s[0], 1.0);
            add(&mut d[1], &s[1], 1.0);
        }
        (4, 6) => {
            add(&mut d[0], &s[0], 1.0);
            add(&mut d[1], &s[1], 1.0);
            add(&mut d[4], &s[2], 1.0);
            add(&mut d[5], &s[3], 1.0);
        }
        // Down-mixing.
        (2, 1) => {
            add(&mut d[0], &s[0], H);
            add(&mut d[0], &s[1], H);
        }
        (4, 1) => {
            for c in &s[..4] {
                add(&mut d[0], c, Q);
            }
        }
        (6, 1) => {
            add(&mut d[0], &s[0], R);
            add(&mut d[0], &s[1], R);
            add(&mut d[0], &s[2], 1.0);
            add(&mut d[0], &s[4], H);
            add(&mut d[0], &s[5], H);
        }
        (4, 2) => {
            add(&mut d[0], &s[0], H);
            add(&mut d[0], &s[2], H);
            add(&mut d[1], &s[1], H);
            add(&mut d[1], &s[3], H);
        }
        (6, 2) => {
            add(&mut d[0], &s[0], 1.0);
            add(&mut d[0], &s[2], R);
            add(&mut d[0], &s[4], R);
            add(&mut d[1], &s[1], 1.0);
            add(&mut d[1], &s[2], R);
            add(&mut d[1], &s[5], R);
        }
        (6, 4) => {
            add(&mut d[0], &s[0], 1.0);
            add(&mut d[0], &s[2], R);
            add(&mut d[1], &s[1], 1.0);
            add(&mut d[1], &s[2], R);
            add(&mut d[2], &s[4], 1.0);
            add(&mut d[3], &s[5], 1.0);
        }
        _ => unreachable!("speaker layouts are 1, 2, 4 or 6 channels and differ here"),
    }
}

fn add(dst: &mut Channel, src: &Channel, gain: f32) {
    if gain == 1.0 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += s;
        }
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d += gain * s;
        }
    }
}

/// The largest channel count among `sources` (1 when there are none).
pub fn widest<'a>(sources: impl Iterator<Item = &'a AudioBlock>) -> usize {
    sources.map(AudioBlock::number_of_channels).max().unwrap_or(1)
}

/// Mixes each of `sources` to `channels` channels and sums them into `dst`.
pub fn mix_input<'a>(
    dst: &mut AudioBlock,
    sources: impl Iterator<Item = &'a AudioBlock> + Clone,
    channels: usize,
    interpretation: ChannelInterpretation,
) {
    // The common case, one connection that needs no mixing, is a copy.
    let mut first_two = sources.clone();
    if let (Some(only), None) = (first_two.next(), first_two.next()) {
        if only.number_of_channels() == channels {
            dst.copy_from(only);
            return;
        }
    }
    dst.make_silent(channels);
    for src in sources {
        mix_add(dst, src, interpretation);
    }
}
