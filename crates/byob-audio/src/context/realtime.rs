//! Real-time playback through the system's default output device (cpal).

use super::capacity::RenderCapacityReport;
use super::sink::{Feeder, Quanta, Shared};
use crate::graph::RenderGraph;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why real-time playback failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaybackError {
    #[error("no audio output device is available (is a sound server or sound card present?)")]
    NoDevice,
    #[error("no audio output device is named {0:?} (known: {1})")]
    NoSuchDevice(String, String),
    #[error("the output device has no usable configuration: {0}")]
    Config(String),
    #[error("could not open an output stream: {0}")]
    Stream(String),
    #[error("the graph renders {graph} channels but the device plays {device}; build the graph with the device's channel count")]
    ChannelMismatch { graph: usize, device: usize },
    #[error("the graph renders at {graph} Hz but the device plays at {device} Hz; build the graph at the device's rate")]
    RateMismatch { graph: f32, device: f32 },
}

/// The default output device, opened for f32 playback.
pub struct RealtimeOutput {
    device: cpal::Device,
    config: cpal::StreamConfig,
    name: String,
}

impl RealtimeOutput {
    /// Opens the default device, asking for `channels` channels at its
    /// default sample rate.
    pub fn open(channels: usize) -> Result<Self, PlaybackError> {
        Self::open_with(None, channels, None, None)
    }

    /// Opens the device named `device` (the default one when `None`),
    /// asking for `channels` channels, `sample_rate` (its default when
    /// `None`) and callbacks of `buffer_frames` frames where it allows.
    pub fn open_with(device: Option<&str>, channels: usize, sample_rate: Option<f32>, buffer_frames: Option<u32>) -> Result<Self, PlaybackError> {
        let host = cpal::default_host();
        let device = match device {
            None => host.default_output_device().ok_or(PlaybackError::NoDevice)?,
            Some(wanted) => {
                let devices: Vec<cpal::Device> = host.output_devices().map(Iterator::collect).unwrap_or_default();
                let name = |d: &cpal::Device| d.description().map(|d| d.name().to_string()).unwrap_or_default();
                let known = devices.iter().map(name).collect::<Vec<_>>().join(", ");
                devices.into_iter().find(|d| name(d) == wanted).ok_or_else(|| PlaybackError::NoSuchDevice(wanted.to_string(), known))?
            }
        };
        let default = device.default_output_config().map_err(|e| PlaybackError::Config(e.to_string()))?;
        let mut config: cpal::StreamConfig = default.config();
        if let Some(rate) = sample_rate {
            config.sample_rate = rate.round() as u32;
        }
        if let (Some(frames), cpal::SupportedBufferSize::Range { min, max }) = (buffer_frames, default.buffer_size()) {
            config.buffer_size = cpal::BufferSize::Fixed(frames.clamp(*min, *max));
        }
        let supports_channels = device
            .supported_output_configs()
            .map(|mut configs| configs.any(|c| c.channels() as usize == channels && c.sample_format() == cpal::SampleFormat::F32))
            .unwrap_or(false);
        if supports_channels {
            config.channels = channels as u16;
        }
        let name = device.description().map_or_else(|_| "the default output device".into(), |d| d.name().to_string());
        Ok(Self { device, config, name })
    }

    pub fn sample_rate(&self) -> f32 {
        self.config.sample_rate as f32
    }

    pub fn channels(&self) -> usize {
        self.config.channels as usize
    }

    pub fn device_name(&self) -> &str {
        &self.name
    }

    /// Plays `frames` frames of `graph`, blocking until they have been
    /// handed to the device. The audio callback only renders and copies: it
    /// does not allocate, lock or make system calls. Every second of audio,
    /// `on_capacity` gets the render capacity of that second, on the
    /// calling thread; the result is the capacity over the whole playback.
    pub fn play(self, graph: RenderGraph, frames: usize, on_capacity: impl FnMut(RenderCapacityReport)) -> Result<RenderCapacityReport, PlaybackError> {
        if (graph.sample_rate() - self.sample_rate()).abs() > 0.5 {
            return Err(PlaybackError::RateMismatch { graph: graph.sample_rate(), device: self.sample_rate() });
        }
        let device_channels = self.channels();
        let graph_channels = graph.number_of_channels();
        if graph_channels != device_channels && graph_channels != 1 {
            return Err(PlaybackError::ChannelMismatch { graph: graph_channels, device: device_channels });
        }
        let shared = Arc::new(Shared::default());
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let feeder = Feeder::new(graph, frames, device_channels, shared.clone());
        let _stream = self.start(feeder, failure.clone())?;
        let whole = shared.wait(on_capacity, || failure.lock().unwrap_or_else(|p| p.into_inner()).take().map(PlaybackError::Stream))?;
        // Let the device drain what it was handed.
        std::thread::sleep(Duration::from_millis(200));
        Ok(whole)
    }

    /// Starts the device's callbacks on `feeder`; they run until the
    /// stream is dropped. A stream error is left in `failure`. The first
    /// callback asks for real-time priority for the device's thread (one
    /// system call, before any audio is rendered).
    pub(super) fn start<Q: Quanta>(self, mut feeder: Feeder<Q>, failure: Arc<Mutex<Option<String>>>) -> Result<cpal::Stream, PlaybackError> {
        let mut first = true;
        let stream = self
            .device
            .build_output_stream(
                self.config,
                move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                    if first {
                        first = false;
                        feeder.shared().promote_current_thread();
                    }
                    let t = info.timestamp();
                    let latency = t.playback.duration_since(t.callback);
                    feeder.shared().output_latency.store(latency.as_secs_f64().to_bits(), Ordering::Relaxed);
                    feeder.fill(data)
                },
                move |e| {
                    *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                },
                None,
            )
            .map_err(|e| PlaybackError::Stream(e.to_string()))?;
        stream.play().map_err(|e| PlaybackError::Stream(e.to_string()))?;
        Ok(stream)
    }
}

/// Opens `sink` for a live context and starts its callbacks on `feeder` in
/// a thread that holds the stream (cpal's streams may not move between
/// threads) until `stop` is set.
pub(super) fn spawn_device(
    sink: &super::SinkId,
    feeder: Feeder<super::live_render::LiveRender>,
    sample_rate: f32,
    buffer_frames: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, super::AudioContextError> {
    let name = sink.device_name().map(str::to_string);
    let (opened, result) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("byob-device".into())
        .spawn(move || {
            let started = RealtimeOutput::open_with(name.as_deref(), feeder.channels(), Some(sample_rate), Some(buffer_frames as u32)).and_then(|output| {
                if (output.sample_rate() - sample_rate).abs() > 0.5 {
                    return Err(PlaybackError::RateMismatch { graph: sample_rate, device: output.sample_rate() });
                }
                if output.channels() != feeder.channels() {
                    return Err(PlaybackError::ChannelMismatch { graph: feeder.channels(), device: output.channels() });
                }
                output.start(feeder, Arc::default())
            });
            let stream = match started {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = opened.send(Err(e));
                    return;
                }
            };
            let _ = opened.send(Ok(()));
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            }
            drop(stream);
        })
        .expect("the system starts a thread");
    match result.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e.into())
        }
        Err(_) => Err(PlaybackError::Stream("the device thread ended before opening the device".into()).into()),
    }
}
