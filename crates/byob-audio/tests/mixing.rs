//! Channel up-mixing and down-mixing checked against the Web Audio API's
//! equations (§"Channel Up-Mixing and Down-Mixing"), written out here in f64
//! independently of the engine's own mixing code.
//!
//! The signals are N-channel AudioBufferSourceNodes whose channels carry
//! distinct known values; they go through a GainNode (gain 1) configured
//! with the channelCount / channelCountMode / channelInterpretation under
//! test, then to the destination.

use byob_audio::{
    AudioBuffer, AudioBufferSourceNode, AudioBufferSourceOptions, AudioGraph, AudioNode, AudioNodeOptions,
    AudioScheduledSourceNode, ChannelCountMode, ChannelInterpretation, GainNode, GainOptions, NodeId,
    OfflineAudioContext,
};
use std::sync::Arc;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SR: f32 = 48000.0;
/// Two render quanta.
const FRAMES: usize = 256;
const TOLERANCE: f64 = 1e-6;
const LAYOUTS: [usize; 4] = [1, 2, 4, 6];
const MODES: [ChannelCountMode; 3] = [ChannelCountMode::Max, ChannelCountMode::ClampedMax, ChannelCountMode::Explicit];
const INTERPRETATIONS: [ChannelInterpretation; 2] = [ChannelInterpretation::Speakers, ChannelInterpretation::Discrete];

/// Channel `c` at frame `n`: a distinct level per channel plus a small ramp,
/// stored as f32 (the expectations read the same f32 values back).
fn sample(c: usize, n: usize) -> f32 {
    (0.1 * (c + 1) as f64 + 0.0005 * n as f64 * (1.0 + 0.25 * c as f64)) as f32
}

fn signal(channels: usize) -> Vec<Vec<f32>> {
    (0..channels).map(|c| (0..FRAMES + 128).map(|n| sample(c, n)).collect()).collect()
}

/// The input frame `n` of a `channels`-channel signal, in f64.
fn frame(channels: usize, n: usize) -> Vec<f64> {
    (0..channels).map(|c| sample(c, n) as f64).collect()
}

/// The spec's computedNumberOfChannels for one connection of `from` channels.
fn computed_channels(from: usize, count: usize, mode: ChannelCountMode) -> usize {
    match mode {
        ChannelCountMode::Max => from,
        ChannelCountMode::ClampedMax => from.min(count),
        ChannelCountMode::Explicit => count,
    }
}

/// Mixes one frame `x` to `to` channels following the spec's tables.
fn mix(x: &[f64], to: usize, interpretation: ChannelInterpretation) -> Vec<f64> {
    let from = x.len();
    let h = 0.5f64.sqrt();
    if from == to {
        return x.to_vec();
    }
    let layout = |n: usize| matches!(n, 1 | 2 | 4 | 6);
    if interpretation == ChannelInterpretation::Discrete || !layout(from) || !layout(to) {
        // Discrete: fill channels in order, drop the extra ones or leave the
        // missing ones silent.
        return (0..to).map(|c| x.get(c).copied().unwrap_or(0.0)).collect();
    }
    match (from, to) {
        // Up-mixing.
        (1, 2) => vec![x[0], x[0]],
        (1, 4) => vec![x[0], x[0], 0.0, 0.0],
        (1, 6) => vec![0.0, 0.0, x[0], 0.0, 0.0, 0.0],
        (2, 4) => vec![x[0], x[1], 0.0, 0.0],
        (2, 6) => vec![x[0], x[1], 0.0, 0.0, 0.0, 0.0],
        (4, 6) => vec![x[0], x[1], 0.0, 0.0, x[2], x[3]],
        // Down-mixing. 5.1 is L, R, C, LFE, SL, SR; quad is L, R, SL, SR.
        (2, 1) => vec![0.5 * (x[0] + x[1])],
        (4, 1) => vec![0.25 * (x[0] + x[1] + x[2] + x[3])],
        (6, 1) => vec![h * (x[0] + x[1]) + x[2] + 0.5 * (x[4] + x[5])],
        (4, 2) => vec![0.5 * (x[0] + x[2]), 0.5 * (x[1] + x[3])],
        (6, 2) => vec![x[0] + h * (x[2] + x[4]), x[1] + h * (x[2] + x[5])],
        (6, 4) => vec![x[0] + h * x[2], x[1] + h * x[2], x[4], x[5]],
        _ => unreachable!("{from} -> {to}"),
    }
}

fn buffer_source(graph: &mut AudioGraph, channels: Vec<Vec<f32>>) -> Result<NodeId, Box<dyn std::error::Error>> {
    let buffer = Arc::new(AudioBuffer::new(SR, channels)?);
    let src = AudioBufferSourceNode::new(graph, AudioBufferSourceOptions { buffer: Some(buffer), ..Default::default() })?;
    src.start(graph, 0.0)?;
    Ok(src.id())
}

fn gain(
    graph: &mut AudioGraph,
    count: usize,
    mode: ChannelCountMode,
    interpretation: ChannelInterpretation,
) -> Result<NodeId, Box<dyn std::error::Error>> {
    let node = AudioNodeOptions {
        channel_count: Some(count),
        channel_count_mode: Some(mode),
        channel_interpretation: Some(interpretation),
    };
    Ok(GainNode::new(graph, GainOptions { gain: 1.0, node })?.id())
}

fn assert_frames(out: &AudioBuffer, expected: impl Fn(usize) -> Vec<f64>, what: &str) {
    for n in 0..out.length() {
        let e = expected(n);
        assert_eq!(out.number_of_channels(), e.len(), "{what}: channel count");
        for (c, &e) in e.iter().enumerate() {
            let a = out.channel_data(c)[n] as f64;
            assert!(
                (a - e).abs() <= TOLERANCE * e.abs().max(1.0),
                "{what}: channel {c}, frame {n}: got {a}, expected {e}"
            );
        }
    }
}

/// Renders a `from`-channel signal through a GainNode with the given
/// configuration into a destination of exactly the expected computed
/// channel count (so the destination itself does not remix).
fn render_through_gain(
    from: usize,
    count: usize,
    mode: ChannelCountMode,
    interpretation: ChannelInterpretation,
    destination_channels: usize,
) -> Result<AudioBuffer, Box<dyn std::error::Error>> {
    let mut ctx = OfflineAudioContext::new(destination_channels, FRAMES, SR)?;
    let graph = ctx.graph();
    let src = buffer_source(graph, signal(from))?;
    let g = gain(graph, count, mode, interpretation)?;
    let dest = graph.destination();
    graph.connect(src, 0, g, 0)?;
    graph.connect(g, 0, dest, 0)?;
    Ok(ctx.start_rendering()?)
}

#[test]
fn every_layout_pair_mode_and_interpretation() -> TestResult {
    for from in LAYOUTS {
        for to in LAYOUTS {
            for interpretation in INTERPRETATIONS {
                for mode in MODES {
                    let computed = computed_channels(from, to, mode);
                    let what = format!("{from} -> gain(channelCount {to}, {mode:?}, {interpretation:?}) [computed {computed}]");
                    let out = render_through_gain(from, to, mode, interpretation, computed)?;
                    assert_frames(&out, |n| mix(&frame(from, n), computed, interpretation), &what);
                }
            }
        }
    }
    Ok(())
}

/// The gain node's computed channel count is made observable by a second,
/// mono speakers node: each count down-mixes differently to mono.
#[test]
fn computed_channel_count_is_observable_downstream() -> TestResult {
    for from in LAYOUTS {
        for to in LAYOUTS {
            for interpretation in INTERPRETATIONS {
                for mode in MODES {
                    let computed = computed_channels(from, to, mode);
                    let what = format!("{from} -> gain({to}, {mode:?}, {interpretation:?}) -> mono speakers");
                    let mut ctx = OfflineAudioContext::new(1, FRAMES, SR)?;
                    let graph = ctx.graph();
                    let src = buffer_source(graph, signal(from))?;
                    let g1 = gain(graph, to, mode, interpretation)?;
                    let g2 = gain(graph, 1, ChannelCountMode::Explicit, ChannelInterpretation::Speakers)?;
                    let dest = graph.destination();
                    graph.connect(src, 0, g1, 0)?;
                    graph.connect(g1, 0, g2, 0)?;
                    graph.connect(g2, 0, dest, 0)?;
                    let out = ctx.start_rendering()?;
                    assert_frames(
                        &out,
                        |n| mix(&mix(&frame(from, n), computed, interpretation), 1, ChannelInterpretation::Speakers),
                        &what,
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn computed_number_of_channels_table() {
    // The spec's table, spelled out for a few cases.
    assert_eq!(computed_channels(6, 2, ChannelCountMode::Max), 6);
    assert_eq!(computed_channels(6, 2, ChannelCountMode::ClampedMax), 2);
    assert_eq!(computed_channels(1, 2, ChannelCountMode::ClampedMax), 1);
    assert_eq!(computed_channels(1, 4, ChannelCountMode::Explicit), 4);
    // And the engine's own ChannelConfig agrees with it.
    for from in 1..=8 {
        for count in 1..=8 {
            for mode in MODES {
                let config = byob_audio::ChannelConfig { count, mode, interpretation: ChannelInterpretation::Speakers };
                assert_eq!(config.computed_number_of_channels(from), computed_channels(from, count, mode), "{from} {count} {mode:?}");
            }
        }
    }
}

/// Mono (m) and stereo (l, r) connections into one input are each mixed to
/// the computed count, then summed.
#[test]
fn two_connections_are_mixed_then_summed() -> TestResult {
    let mono = |n: usize| 0.05 + 0.001 * n as f64;
    let left = |n: usize| 0.3 - 0.0004 * n as f64;
    let right = |n: usize| 0.7 + 0.0002 * n as f64;
    let f = |g: &dyn Fn(usize) -> f64| (0..FRAMES + 128).map(|n| g(n) as f32).collect::<Vec<f32>>();
    let (m, l, r) = (f(&mono), f(&left), f(&right));
    let at = |v: &Vec<f32>, n: usize| v[n] as f64;
    let h = 0.5f64.sqrt();
    let six: Vec<Vec<f32>> = signal(6);
    let cases: Vec<(usize, ChannelCountMode, ChannelInterpretation, bool, usize)> = vec![
        // (channelCount, mode, interpretation, with the 5.1 source instead of stereo, destination channels)
        (2, ChannelCountMode::Max, ChannelInterpretation::Speakers, false, 2),
        (1, ChannelCountMode::Explicit, ChannelInterpretation::Speakers, false, 1),
        (4, ChannelCountMode::Explicit, ChannelInterpretation::Discrete, false, 4),
        (4, ChannelCountMode::Explicit, ChannelInterpretation::Speakers, false, 4),
        (2, ChannelCountMode::Max, ChannelInterpretation::Speakers, true, 6),
        (2, ChannelCountMode::ClampedMax, ChannelInterpretation::Speakers, true, 2),
    ];
    for (count, mode, interpretation, with_six, dest_channels) in cases {
        let what = format!("mono + {} into gain({count}, {mode:?}, {interpretation:?})", if with_six { "5.1" } else { "stereo" });
        let mut ctx = OfflineAudioContext::new(dest_channels, FRAMES, SR)?;
        let graph = ctx.graph();
        let a = buffer_source(graph, vec![m.clone()])?;
        let b = buffer_source(graph, if with_six { six.clone() } else { vec![l.clone(), r.clone()] })?;
        let g = gain(graph, count, mode, interpretation)?;
        let dest = graph.destination();
        graph.connect(a, 0, g, 0)?;
        graph.connect(b, 0, g, 0)?;
        graph.connect(g, 0, dest, 0)?;
        let out = ctx.start_rendering()?;
        assert_frames(
            &out,
            |n| {
                let (m, l, r) = (at(&m, n), at(&l, n), at(&r, n));
                let s = frame(6, n);
                match (count, mode, interpretation, with_six) {
                    (2, ChannelCountMode::Max, ChannelInterpretation::Speakers, false) => vec![m + l, m + r],
                    (1, ChannelCountMode::Explicit, ChannelInterpretation::Speakers, false) => vec![m + 0.5 * (l + r)],
                    (4, ChannelCountMode::Explicit, ChannelInterpretation::Discrete, false) => vec![m + l, r, 0.0, 0.0],
                    (4, ChannelCountMode::Explicit, ChannelInterpretation::Speakers, false) => vec![m + l, m + r, 0.0, 0.0],
                    // max: computed 6; the mono goes to C.
                    (2, ChannelCountMode::Max, ChannelInterpretation::Speakers, true) => {
                        vec![s[0], s[1], s[2] + m, s[3], s[4], s[5]]
                    }
                    // clamped-max 2: mono -> stereo, 5.1 -> stereo.
                    (2, ChannelCountMode::ClampedMax, ChannelInterpretation::Speakers, true) => {
                        vec![m + s[0] + h * (s[2] + s[4]), m + s[1] + h * (s[2] + s[5])]
                    }
                    _ => unreachable!(),
                }
            },
            &what,
        );
    }
    Ok(())
}

#[test]
fn the_same_connection_twice_counts_once() -> TestResult {
    let mut ctx = OfflineAudioContext::new(1, FRAMES, SR)?;
    let graph = ctx.graph();
    let a = buffer_source(graph, signal(1))?;
    let dest = graph.destination();
    graph.connect(a, 0, dest, 0)?;
    graph.connect(a, 0, dest, 0)?;
    let out = ctx.start_rendering()?;
    assert_frames(&out, |n| frame(1, n), "connected twice");
    Ok(())
}

#[test]
fn an_input_without_connections_carries_silence() -> TestResult {
    for (count, mode) in [(2, ChannelCountMode::Max), (4, ChannelCountMode::Explicit), (6, ChannelCountMode::ClampedMax)] {
        for dest_channels in [1, 2, 6] {
            let mut ctx = OfflineAudioContext::new(dest_channels, FRAMES, SR)?;
            let graph = ctx.graph();
            let g = GainNode::new(
                graph,
                GainOptions {
                    gain: 3.0,
                    node: AudioNodeOptions { channel_count: Some(count), channel_count_mode: Some(mode), channel_interpretation: None },
                },
            )?;
            let dest = graph.destination();
            graph.connect(g.id(), 0, dest, 0)?;
            let out = ctx.start_rendering()?;
            assert_frames(&out, |_| vec![0.0; dest_channels], &format!("unconnected gain({count}, {mode:?}) -> {dest_channels}"));
        }
    }
    // A destination nothing is connected to.
    let ctx = OfflineAudioContext::new(2, FRAMES, SR)?;
    let out = ctx.start_rendering()?;
    assert_frames(&out, |_| vec![0.0; 2], "unconnected destination");
    Ok(())
}

/// 5.1 channel order is L, R, C, LFE, SL, SR: one channel at a time,
/// with the spec's coefficients written as numbers.
#[test]
fn five_one_channel_order() -> TestResult {
    let h = std::f64::consts::FRAC_1_SQRT_2;
    // (down-mix to mono, down-mix to stereo L, R, down-mix to quad L, R, SL, SR) for a unit impulse in channel k.
    let table: [(f64, [f64; 2], [f64; 4]); 6] = [
        (h, [1.0, 0.0], [1.0, 0.0, 0.0, 0.0]),   // L
        (h, [0.0, 1.0], [0.0, 1.0, 0.0, 0.0]),   // R
        (1.0, [h, h], [h, h, 0.0, 0.0]),         // C
        (0.0, [0.0, 0.0], [0.0, 0.0, 0.0, 0.0]), // LFE is dropped
        (0.5, [h, 0.0], [0.0, 0.0, 1.0, 0.0]),   // SL
        (0.5, [0.0, h], [0.0, 0.0, 0.0, 1.0]),   // SR
    ];
    for (k, (mono, stereo, quad)) in table.iter().enumerate() {
        let level = 0.8f32;
        let channels: Vec<Vec<f32>> =
            (0..6).map(|c| vec![if c == k { level } else { 0.0 }; FRAMES + 128]).collect();
        for (to, expected) in [(1, vec![*mono]), (2, stereo.to_vec()), (4, quad.to_vec())] {
            let mut ctx = OfflineAudioContext::new(to, FRAMES, SR)?;
            let graph = ctx.graph();
            let src = buffer_source(graph, channels.clone())?;
            let g = gain(graph, to, ChannelCountMode::Explicit, ChannelInterpretation::Speakers)?;
            let dest = graph.destination();
            graph.connect(src, 0, g, 0)?;
            graph.connect(g, 0, dest, 0)?;
            let out = ctx.start_rendering()?;
            let expected: Vec<f64> = expected.iter().map(|e| e * level as f64).collect();
            assert_frames(&out, |_| expected.clone(), &format!("5.1 channel {k} -> {to}"));
        }
    }
    // Up-mixing into 5.1: mono lands in C (index 2); quad's SL, SR in 4, 5.
    let out = render_through_gain(1, 6, ChannelCountMode::Explicit, ChannelInterpretation::Speakers, 6)?;
    assert_frames(&out, |n| vec![0.0, 0.0, sample(0, n) as f64, 0.0, 0.0, 0.0], "mono -> 5.1");
    let out = render_through_gain(4, 6, ChannelCountMode::Explicit, ChannelInterpretation::Speakers, 6)?;
    assert_frames(
        &out,
        |n| vec![sample(0, n) as f64, sample(1, n) as f64, 0.0, 0.0, sample(2, n) as f64, sample(3, n) as f64],
        "quad -> 5.1",
    );
    Ok(())
}

/// Speakers with a channel count that is not a speaker layout (1, 2, 4, 6)
/// on either side falls back to discrete.
#[test]
fn speakers_falls_back_to_discrete_for_other_counts() -> TestResult {
    for (from, to) in [(3, 5), (5, 3), (1, 3), (3, 1), (2, 3), (3, 2), (5, 1), (6, 8), (8, 6), (1, 5), (4, 5)] {
        let out = render_through_gain(from, to, ChannelCountMode::Explicit, ChannelInterpretation::Speakers, to)?;
        assert_frames(
            &out,
            |n| (0..to).map(|c| if c < from { sample(c, n) as f64 } else { 0.0 }).collect(),
            &format!("{from} -> {to} speakers"),
        );
    }
    Ok(())
}
