//! The context's rate to the model's: rubato's FFT resampler (band-limited,
//! fixed ratio), one render quantum in per call, into buffers made once.

use byob_audio::RENDER_QUANTUM_SIZE;
use rubato::{FftFixedIn, Resampler};

pub(crate) struct InputResampler {
    inner: FftFixedIn<f32>,
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
}

impl InputResampler {
    pub(crate) fn new(from: f32, to: f32, channels: usize) -> Result<Self, String> {
        let inner = FftFixedIn::new(from as usize, to as usize, RENDER_QUANTUM_SIZE, 1, channels).map_err(|e| format!("cannot resample {from} Hz to {to} Hz: {e}"))?;
        let output = vec![vec![0.0; inner.output_frames_max()]; channels];
        Ok(Self { inner, input: vec![vec![0.0; RENDER_QUANTUM_SIZE]; channels], output })
    }

    /// The resampler's delay, in samples at the model's rate.
    pub(crate) fn delay(&self) -> usize {
        self.inner.output_delay()
    }

    /// Resamples one quantum of `planar` input (channel `c` at
    /// `c * 128`; missing channels repeat the last one, as mono up-mixes),
    /// and returns the output buffers (one per channel) and how many
    /// model-rate samples of each it produced.
    pub(crate) fn process(&mut self, planar: &[f32]) -> Result<(&[Vec<f32>], usize), String> {
        let available = planar.len() / RENDER_QUANTUM_SIZE;
        for (c, channel) in self.input.iter_mut().enumerate() {
            match available {
                0 => channel.fill(0.0),
                n => channel.copy_from_slice(&planar[c.min(n - 1) * RENDER_QUANTUM_SIZE..][..RENDER_QUANTUM_SIZE]),
            }
        }
        let (_, produced) = self.inner.process_into_buffer(&self.input, &mut self.output, None).map_err(|e| e.to_string())?;
        Ok((&self.output, produced))
    }
}
