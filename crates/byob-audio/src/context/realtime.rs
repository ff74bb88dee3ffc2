//! Real-time playback through the system's default output device (cpal).

use super::capacity::RenderCapacityReport;
use super::sink::{Feeder, Shared};
use crate::graph::RenderGraph;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why real-time playback failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlaybackError {
    #[error("no audio output device is available (is a sound server or sound card present?)")]
    NoDevice,
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
        let host = cpal::default_host();
        let device = host.default_output_device().ok_or(PlaybackError::NoDevice)?;
        let default = device.default_output_config().map_err(|e| PlaybackError::Config(e.to_string()))?;
        let mut config: cpal::StreamConfig = default.config();
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
        let failure_in_callback = failure.clone();
        let mut feeder = Feeder::new(graph, frames, device_channels, shared.clone());
        let stream = self
            .device
            .build_output_stream(
                self.config,
                move |data: &mut [f32], _: &cpal::OutputCallbackInfo| feeder.fill(data),
                move |e| {
                    *failure_in_callback.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                },
                None,
            )
            .map_err(|e| PlaybackError::Stream(e.to_string()))?;
        stream.play().map_err(|e| PlaybackError::Stream(e.to_string()))?;
        let whole = shared.wait(on_capacity, || failure.lock().unwrap_or_else(|p| p.into_inner()).take().map(PlaybackError::Stream))?;
        // Let the device drain what it was handed.
        std::thread::sleep(Duration::from_millis(200));
        Ok(whole)
    }
}
