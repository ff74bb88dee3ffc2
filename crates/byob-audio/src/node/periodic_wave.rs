//! PeriodicWave: band-limited wavetables built from Fourier coefficients.
//!
//! Band-limiting follows what browsers do (Chromium's PeriodicWave): one
//! table per range of three ranges per octave, the range for a fundamental
//! keeping only partials that stay below Nyquist, and a crossfade between
//! the two neighbouring ranges so that partials fade out smoothly as the
//! pitch rises. Every table is scaled by one normalisation factor, taken
//! from the table with all partials (spec: "PeriodicWave normalization").

use crate::graph::NodeError;
use rustfft::{num_complex::Complex, FftPlanner};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The built-in oscillator waveforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BasicWaveform {
    Sine,
    Square,
    Sawtooth,
    Triangle,
}

impl BasicWaveform {
    /// The spec's Fourier coefficient b[n] ("Oscillator Coefficients"); a[n] = 0.
    pub fn coefficient(self, n: usize) -> f64 {
        use std::f64::consts::PI;
        let n_f = n as f64;
        match self {
            Self::Sine => (n == 1) as u8 as f64,
            Self::Square => 2.0 / (n_f * PI) * (1.0 - (-1f64).powi(n as i32)),
            Self::Sawtooth => (-1f64).powi(n as i32 + 1) * 2.0 / (n_f * PI),
            Self::Triangle => 8.0 * (n_f * PI / 2.0).sin() / (PI * n_f).powi(2),
        }
    }
}

/// The spec's PeriodicWaveOptions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeriodicWaveOptions {
    pub real: Option<Vec<f32>>,
    pub imag: Option<Vec<f32>>,
    pub disable_normalization: bool,
}

/// A waveform ready for an OscillatorNode.
#[derive(Clone)]
pub struct PeriodicWave {
    pub(crate) tables: Arc<WaveTables>,
}

impl std::fmt::Debug for PeriodicWave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeriodicWave").field("size", &self.tables.size).finish()
    }
}

impl PartialEq for PeriodicWave {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.tables, &other.tables)
    }
}

impl PeriodicWave {
    /// Builds a custom waveform from cosine (`real`) and sine (`imag`)
    /// coefficients; index 0 (DC) is ignored, as the spec says.
    pub fn new(sample_rate: f32, options: PeriodicWaveOptions) -> Result<Self, NodeError> {
        let (real, imag) = match (options.real, options.imag) {
            (Some(r), Some(i)) => {
                if r.len() != i.len() {
                    return Err(NodeError::IndexSize {
                        what: format!("PeriodicWave real has {} values but imag has {}", r.len(), i.len()),
                    });
                }
                (r, i)
            }
            (Some(r), None) => {
                let n = r.len();
                (r, vec![0.0; n])
            }
            (None, Some(i)) => (vec![0.0; i.len()], i),
            (None, None) => (vec![0.0, 0.0], vec![0.0, 1.0]),
        };
        if real.len() < 2 {
            return Err(NodeError::IndexSize { what: format!("PeriodicWave needs at least 2 coefficients, got {}", real.len()) });
        }
        if let Some(v) = real.iter().chain(&imag).find(|v| !v.is_finite()) {
            return Err(NodeError::NotFinite { name: "PeriodicWave coefficient", value: *v as f64 });
        }
        let coefficients: Vec<(f64, f64)> = real.iter().zip(&imag).map(|(&a, &b)| (a as f64, b as f64)).collect();
        Ok(Self { tables: Arc::new(WaveTables::build(sample_rate, &coefficients, !options.disable_normalization)) })
    }

    /// The shared tables of a built-in waveform at this sample rate.
    pub(crate) fn basic(waveform: BasicWaveform, sample_rate: f32) -> Self {
        type Cache = Mutex<HashMap<(BasicWaveform, u32), Arc<WaveTables>>>;
        static CACHE: OnceLock<Cache> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        let key = (waveform, sample_rate.to_bits());
        let mut cache = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tables = cache
            .entry(key)
            .or_insert_with(|| {
                let size = table_size(sample_rate);
                let coefficients: Vec<(f64, f64)> =
                    (0..size / 2).map(|n| (0.0, if n == 0 { 0.0 } else { waveform.coefficient(n) })).collect();
                Arc::new(WaveTables::build(sample_rate, &coefficients, true))
            })
            .clone();
        Self { tables }
    }
}

/// Chromium's table size for a sample rate.
fn table_size(sample_rate: f32) -> usize {
    if sample_rate <= 24000.0 {
        2048
    } else if sample_rate <= 88200.0 {
        4096
    } else {
        16384
    }
}

const CENTS_PER_RANGE: f32 = 1200.0 / 3.0;

/// Band-limited tables of one waveform, from all partials (range 0) to none.
pub(crate) struct WaveTables {
    pub(crate) size: usize,
    /// Each table holds `size + 1` samples: the first repeated at the end,
    /// so interpolation never wraps.
    ranges: Vec<Box<[f32]>>,
    lowest_fundamental: f32,
}

/// Where to read for one fundamental frequency: two tables and the weight
/// of the second (fewer partials).
#[derive(Clone, Copy)]
pub(crate) struct TableChoice<'a> {
    pub more_partials: &'a [f32],
    pub fewer_partials: &'a [f32],
    pub weight: f32,
}

impl WaveTables {
    fn build(sample_rate: f32, coefficients: &[(f64, f64)], normalize: bool) -> Self {
        let size = table_size(sample_rate);
        let max_partials = size / 2;
        let number_of_ranges = (0.5 + 3.0 * (size as f64).log2()) as usize;
        let mut planner = FftPlanner::<f64>::new();
        let ifft = planner.plan_fft_inverse(size);
        let mut ranges: Vec<Box<[f32]>> = Vec::with_capacity(number_of_ranges);
        let mut raw: Vec<Vec<f64>> = Vec::with_capacity(number_of_ranges);
        for range in 0..number_of_ranges {
            let keep = ((2f32).powf(-(range as f32) * CENTS_PER_RANGE / 1200.0) * max_partials as f32) as usize;
            // x(t) = sum a[k] cos(2 pi k t) + b[k] sin(2 pi k t), via an
            // inverse FFT of the spectrum with X[k] = (a[k] - i b[k]) / 2.
            let mut spectrum = vec![Complex::new(0.0, 0.0); size];
            for (k, &(a, b)) in coefficients.iter().enumerate().take(keep.min(max_partials - 1) + 1).skip(1) {
                spectrum[k] = Complex::new(a / 2.0, -b / 2.0);
                spectrum[size - k] = Complex::new(a / 2.0, b / 2.0);
            }
            ifft.process(&mut spectrum);
            raw.push(spectrum.iter().map(|c| c.re).collect());
        }
        let scale = if normalize {
            let peak = raw[0].iter().fold(0.0f64, |m, v| m.max(v.abs()));
            if peak > 0.0 {
                1.0 / peak
            } else {
                1.0
            }
        } else {
            1.0
        };
        for table in raw {
            let mut samples: Vec<f32> = table.iter().map(|v| (v * scale) as f32).collect();
            samples.push(samples[0]);
            ranges.push(samples.into_boxed_slice());
        }
        Self { size, ranges, lowest_fundamental: sample_rate / 2.0 / max_partials as f32 }
    }

    /// The tables to read for a fundamental frequency (Chromium's choice:
    /// start culling one range early so nothing folds back over Nyquist).
    pub(crate) fn choose(&self, frequency: f32) -> TableChoice<'_> {
        let last = self.ranges.len() - 1;
        let ratio = frequency.abs() / self.lowest_fundamental;
        let pitch_range = if ratio > 0.0 { 1.0 + 1200.0 * ratio.log2() / CENTS_PER_RANGE } else { 0.0 };
        let pitch_range = pitch_range.clamp(0.0, last as f32);
        let index = pitch_range as usize;
        let next = (index + 1).min(last);
        TableChoice { more_partials: &self.ranges[index], fewer_partials: &self.ranges[next], weight: pitch_range - index as f32 }
    }

    /// The table with every partial, for waveforms that never alias (sine).
    pub(crate) fn full_band(&self) -> &[f32] {
        &self.ranges[0]
    }
}
