//! OscillatorNode against independent truth computed here in f64: the Web
//! Audio spec's waveforms and Fourier coefficients, and the browsers'
//! (Chromium's) band-limiting scheme, evaluated by summing sines directly
//! (no wavetables), never by calling the engine's own code.

use byob_audio::{
    AudioNode, AudioScheduledSourceNode, NodeError, OfflineAudioContext, OscillatorNode, OscillatorOptions,
    OscillatorType, PeriodicWave, PeriodicWaveOptions,
};
use std::f64::consts::PI;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Renders one oscillator (started at `when`) into a mono destination.
fn render_osc(
    sr: f32,
    frames: usize,
    options: OscillatorOptions,
    when: f64,
    automate: impl FnOnce(&mut byob_audio::AudioGraph, &OscillatorNode) -> TestResult,
) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut ctx = OfflineAudioContext::new(1, frames, sr)?;
    let graph = ctx.graph();
    let osc = OscillatorNode::new(graph, options)?;
    osc.start(graph, when)?;
    let dest = graph.destination();
    graph.connect(osc.id(), 0, dest, 0)?;
    automate(graph, &osc)?;
    Ok(ctx.start_rendering()?.channel_data(0).to_vec())
}

fn no_automation(_: &mut byob_audio::AudioGraph, _: &OscillatorNode) -> TestResult {
    Ok(())
}

fn assert_close(actual: &[f32], expected: &[f64], tolerance: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    for (n, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let err = (a as f64 - e).abs();
        if err > worst.1 || err.is_nan() {
            worst = (n, err);
        }
    }
    let (n, err) = worst;
    assert!(
        err <= tolerance,
        "{what}: frame {n}: got {}, expected {} (error {err:e} > {tolerance:e})",
        actual[n],
        expected[n]
    );
}

// ---------------------------------------------------------------- sine

#[test]
fn sine_440_matches_exact_sine() -> TestResult {
    let sr = 48000.0;
    let out = render_osc(sr, 4800, OscillatorOptions { frequency: 440.0, ..Default::default() }, 0.0, no_automation)?;
    let expected: Vec<f64> = (0..out.len()).map(|n| (2.0 * PI * 440.0 * n as f64 / sr as f64).sin()).collect();
    assert_close(&out, &expected, 1e-4, "sine 440 Hz");
    Ok(())
}

/// Spec: the source plays from the first frame at or after `when`, with the
/// waveform's phase zero at `when` itself (sub-sample accurate start).
#[test]
fn sine_started_at_fractional_frame_time() -> TestResult {
    let sr = 48000.0f64;
    for start_frame in [100.3f64, 1000.75, 255.5] {
        let when = start_frame / sr;
        let out = render_osc(sr as f32, 1536, OscillatorOptions { frequency: 440.0, ..Default::default() }, when, no_automation)?;
        let first = (when * sr).ceil() as usize;
        assert_eq!(first, start_frame.ceil() as usize);
        let expected: Vec<f64> = (0..out.len())
            .map(|n| if n < first { 0.0 } else { (2.0 * PI * 440.0 * (n as f64 / sr - when)).sin() })
            .collect();
        assert_close(&out, &expected, 1e-4, &format!("sine started at frame {start_frame}"));
        assert!(out[first].abs() > 1e-3, "the first frame is audible (phase already advanced past 0)");
    }
    Ok(())
}

#[test]
fn detune_1200_cents_doubles_the_frequency() -> TestResult {
    let sr = 48000.0;
    let out = render_osc(
        sr,
        4800,
        OscillatorOptions { frequency: 440.0, detune: 1200.0, ..Default::default() },
        0.0,
        no_automation,
    )?;
    let expected: Vec<f64> = (0..out.len()).map(|n| (2.0 * PI * 880.0 * n as f64 / sr as f64).sin()).collect();
    assert_close(&out, &expected, 1e-4, "440 Hz + 1200 cents");
    Ok(())
}

/// a-rate frequency: the phase is the running sum of f[n]/sr, where f[n] is
/// the spec's linear ramp value at frame n's time.
#[test]
fn a_rate_frequency_ramp_accumulates_phase_per_frame() -> TestResult {
    let sr = 48000.0f64;
    let frames = 9600;
    let out = render_osc(sr as f32, frames, OscillatorOptions { frequency: 200.0, ..Default::default() }, 0.0, |graph, osc| {
        let mut param = graph.param(osc.frequency());
        param.timeline().set_value_at_time(200.0, 0.0)?;
        param.timeline().linear_ramp_to_value_at_time(400.0, 0.1, 0.0)?;
        Ok(())
    })?;
    // Spec 1.6.3: v(t) = V0 + (V1 - V0) (t - T0) / (T1 - T0), then hold V1.
    let freq = |t: f64| if t < 0.1 { 200.0 + 200.0 * t / 0.1 } else { 400.0 };
    let mut phase = 0.0f64;
    let mut expected = Vec::with_capacity(frames);
    for n in 0..frames {
        expected.push((2.0 * PI * phase).sin());
        phase += freq(n as f64 / sr) / sr;
    }
    assert_close(&out, &expected, 1e-3, "200 -> 400 Hz ramp over 0.1 s");
    // Sanity: a constant 200 Hz (or 400 Hz) sine would be far off.
    let constant: Vec<f64> = (0..frames).map(|n| (2.0 * PI * 200.0 * n as f64 / sr).sin()).collect();
    assert!(out.iter().zip(&constant).any(|(&a, &e)| (a as f64 - e).abs() > 0.5));
    Ok(())
}

// ---------------------------------------------------- band-limited waveforms

#[derive(Clone, Copy, Debug)]
enum Wave {
    Square,
    Sawtooth,
    Triangle,
}

impl Wave {
    /// Spec "Oscillator Coefficients": b[n] (a[n] = 0).
    fn b(self, n: usize) -> f64 {
        let nf = n as f64;
        match self {
            Wave::Square => 2.0 / (nf * PI) * (1.0 - (-1f64).powi(n as i32)),
            Wave::Sawtooth => (-1f64).powi(n as i32 + 1) * 2.0 / (nf * PI),
            Wave::Triangle => 8.0 * (nf * PI / 2.0).sin() / (PI * nf).powi(2),
        }
    }

    fn type_(self) -> OscillatorType {
        match self {
            Wave::Square => OscillatorType::Square,
            Wave::Sawtooth => OscillatorType::Sawtooth,
            Wave::Triangle => OscillatorType::Triangle,
        }
    }
}

/// Chromium's band-limiting scheme, in f64.
struct Scheme {
    sr: f64,
    max_partials: usize,
    number_of_ranges: usize,
    /// Partials kept by each range.
    keep: Vec<usize>,
    /// 1 / max |x_0| over the table points.
    norm: f64,
    coefficients: Vec<f64>,
}

impl Scheme {
    fn new(sr: f64, coefficients: impl Fn(usize) -> f64, normalize: bool) -> Self {
        let size: usize = if sr <= 24000.0 {
            2048
        } else if sr <= 88200.0 {
            4096
        } else {
            16384
        };
        let max_partials = size / 2;
        let number_of_ranges = (0.5 + 3.0 * (size as f64).log2()).floor() as usize;
        let keep: Vec<usize> = (0..number_of_ranges)
            .map(|r| ((2f64.powf(-(r as f64) / 3.0) * max_partials as f64).floor() as usize).min(max_partials - 1))
            .collect();
        let coefficients: Vec<f64> = (0..max_partials).map(|n| if n == 0 { 0.0 } else { coefficients(n) }).collect();
        // Exact sines at the table points: sin(2 pi m / size).
        let sines: Vec<f64> = (0..size).map(|m| (2.0 * PI * m as f64 / size as f64).sin()).collect();
        let norm = if normalize {
            let mut peak = 0.0f64;
            for k in 0..size {
                let x: f64 = (1..=keep[0]).map(|n| coefficients[n] * sines[(n * k) % size]).sum();
                peak = peak.max(x.abs());
            }
            1.0 / peak
        } else {
            1.0
        };
        Self { sr, max_partials, number_of_ranges, keep, norm, coefficients }
    }

    /// (i, j, w): the two ranges and the weight of the second.
    fn ranges(&self, f: f64) -> (usize, usize, f64) {
        let lowest = self.sr / 2.0 / self.max_partials as f64;
        let last = (self.number_of_ranges - 1) as f64;
        let pitch_range = (1.0 + 3.0 * (f.abs() / lowest).log2()).clamp(0.0, last);
        let i = pitch_range.floor() as usize;
        let j = (i + 1).min(self.number_of_ranges - 1);
        (i, j, pitch_range - i as f64)
    }

    /// The waveform at phase `phi` (cycles) for fundamental `f`.
    fn value(&self, f: f64, phi: f64) -> f64 {
        let (i, j, w) = self.ranges(f);
        let x = |k: usize| -> f64 { (1..=k).map(|n| self.coefficients[n] * (2.0 * PI * n as f64 * phi).sin()).sum() };
        self.norm * ((1.0 - w) * x(self.keep[i]) + w * x(self.keep[j]))
    }

    /// The second derivative of the waveform (per cycle squared) at `phi`.
    fn second_derivative(&self, f: f64, phi: f64) -> f64 {
        let (i, j, w) = self.ranges(f);
        let x = |k: usize| -> f64 {
            (1..=k).map(|n| -self.coefficients[n] * (2.0 * PI * n as f64).powi(2) * (2.0 * PI * n as f64 * phi).sin()).sum()
        };
        self.norm * ((1.0 - w) * x(self.keep[i]) + w * x(self.keep[j]))
    }

    /// The highest partial that contributes at fundamental `f`.
    fn highest_partial(&self, f: f64) -> usize {
        let (i, j, w) = self.ranges(f);
        if w > 0.0 {
            self.keep[i].max(self.keep[j])
        } else {
            self.keep[i]
        }
    }
}

/// Phase (in cycles, in [0, 1)) of frame `n` for fundamental `f`, exactly.
fn phase(f: f64, n: usize, sr: f64) -> f64 {
    (f * n as f64).rem_euclid(sr) / sr
}

#[test]
fn scheme_sanity() {
    // The scheme itself, on numbers worked out by hand.
    let s = Scheme::new(48000.0, |n| Wave::Sawtooth.b(n), true);
    assert_eq!(s.max_partials, 2048);
    assert_eq!(s.number_of_ranges, 36);
    assert_eq!(s.keep[0], 2047);
    assert_eq!(s.keep[3], 1024);
    assert_eq!(s.keep[30], 2);
    // 9 kHz: pitch range 1 + 3 log2(768) = 29.75; ranges 29 and 30 keep 2 partials.
    let (i, j, w) = s.ranges(9000.0);
    assert_eq!((i, j), (29, 30));
    assert!((w - 0.7549).abs() < 1e-3);
    assert_eq!(s.highest_partial(9000.0), 2);
    // Gibbs: the full-band sawtooth overshoots 1 by about 9 % of its jump of 2.
    assert!(s.norm > 1.0 / 1.2 && s.norm < 1.0 / 1.15, "norm {}", s.norm);
    let s = Scheme::new(22050.0, |n| Wave::Square.b(n), true);
    assert_eq!(s.max_partials, 1024);
    assert_eq!(s.number_of_ranges, 33);
}

/// Compares the rendered waveform with the scheme, summed in f64.
///
/// A wavetable oscillator that interpolates linearly between N table points
/// is off by up to h^2/8 max|x''| (h = 1/N cycles) inside each table cell:
/// negligible for smooth waveforms, but around 2.4e-3 next to the edges of a
/// 100 Hz square or sawtooth, whose ~200 partials curve sharply there. Each
/// frame may therefore differ by 1e-4 plus 1.5 times that bound for its own
/// cell, and the whole signal by no more than `max_error`.
fn check_band_limited(wave: Wave, sr: f64, f: f64, frames: usize, max_error: f64) -> TestResult {
    let scheme = Scheme::new(sr, |n| wave.b(n), true);
    // No partial may reach Nyquist.
    assert!(scheme.highest_partial(f) as f64 * f < sr / 2.0, "{wave:?} {f} Hz: scheme keeps a partial above Nyquist");
    let out = render_osc(sr as f32, frames, OscillatorOptions { type_: wave.type_(), frequency: f as f32, ..Default::default() }, 0.0, no_automation)?;
    let size = if sr <= 24000.0 { 2048.0 } else { 4096.0 };
    let h = 1.0 / size;
    let mut worst = 0.0f64;
    for (n, &actual) in out.iter().enumerate() {
        let phi = phase(f, n, sr);
        let expected = scheme.value(f, phi);
        let cell = (phi * size).floor() * h;
        let curvature = (0..=4).map(|k| scheme.second_derivative(f, cell + k as f64 * h / 4.0).abs()).fold(0.0, f64::max);
        let tolerance = 1e-4 + 1.5 * h * h / 8.0 * curvature;
        let err = (actual as f64 - expected).abs();
        assert!(
            err <= tolerance,
            "{wave:?} {f} Hz at {sr} Hz: frame {n} (phase {phi:.5}): got {actual}, expected {expected} (error {err:e} > {tolerance:e})"
        );
        worst = worst.max(err);
    }
    assert!(worst <= max_error, "{wave:?} {f} Hz at {sr} Hz: max error {worst:e} > {max_error:e}");
    Ok(())
}

/// The fundamentals checked at 48 kHz, with the largest error allowed
/// overall (see `check_band_limited`).
const FUNDAMENTALS: [(f64, f64); 6] = [(100.0, 3e-3), (440.0, 2e-3), (1000.0, 2e-3), (3000.0, 2e-3), (5000.0, 2e-3), (9000.0, 2e-3)];

#[test]
fn band_limited_square_matches_browser_scheme() -> TestResult {
    for (f, max_error) in FUNDAMENTALS {
        check_band_limited(Wave::Square, 48000.0, f, 2048, max_error)?;
    }
    Ok(())
}

#[test]
fn band_limited_sawtooth_matches_browser_scheme() -> TestResult {
    for (f, max_error) in FUNDAMENTALS {
        check_band_limited(Wave::Sawtooth, 48000.0, f, 2048, max_error)?;
    }
    Ok(())
}

#[test]
fn band_limited_triangle_matches_browser_scheme() -> TestResult {
    for (f, max_error) in FUNDAMENTALS {
        check_band_limited(Wave::Triangle, 48000.0, f, 2048, max_error)?;
    }
    Ok(())
}

/// At 22.05 kHz the tables have 2048 points and 1024 partials.
#[test]
fn band_limited_at_low_sample_rate_uses_smaller_tables() -> TestResult {
    check_band_limited(Wave::Sawtooth, 22050.0, 1000.0, 2048, 2e-3)?;
    check_band_limited(Wave::Square, 22050.0, 3000.0, 2048, 2e-3)?;
    Ok(())
}

/// Magnitudes of the DFT of `x` at bins 0..=len/2, scaled so that a unit
/// sine on a bin has magnitude 1.
fn dft_magnitudes(x: &[f32]) -> Vec<f64> {
    let len = x.len();
    let cos: Vec<f64> = (0..len).map(|m| (2.0 * PI * m as f64 / len as f64).cos()).collect();
    let sin: Vec<f64> = (0..len).map(|m| (2.0 * PI * m as f64 / len as f64).sin()).collect();
    (0..=len / 2)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (n, &v) in x.iter().enumerate() {
                let m = (k * n) % len;
                re += v as f64 * cos[m];
                im -= v as f64 * sin[m];
            }
            (re * re + im * im).sqrt() * 2.0 / len as f64
        })
        .collect()
}

/// A 9 kHz sawtooth at 48 kHz holds 9 and 18 kHz only: its 3rd harmonic
/// (27 kHz) would fold back to 21 kHz, the 4th (36 kHz) to 12 kHz.
#[test]
fn sawtooth_9khz_has_no_aliased_partials() -> TestResult {
    let sr = 48000.0;
    let len = 4800; // 10 Hz bins; 900 whole periods
    let out = render_osc(sr, len, OscillatorOptions { type_: OscillatorType::Sawtooth, frequency: 9000.0, ..Default::default() }, 0.0, no_automation)?;
    let mag = dft_magnitudes(&out);
    let (h1, h2) = (mag[900], mag[1800]);
    assert!(h1 > 0.3, "fundamental magnitude {h1}");
    // Sawtooth b[2]/b[1] = -1/2: the second harmonic has half the amplitude.
    assert!((h2 / h1 - 0.5).abs() < 1e-3, "h2/h1 = {}", h2 / h1);
    let scheme = Scheme::new(48000.0, |n| Wave::Sawtooth.b(n), true);
    assert!((h1 - scheme.norm * 2.0 / PI).abs() < 1e-3, "fundamental {h1} vs {}", scheme.norm * 2.0 / PI);
    for (k, &m) in mag.iter().enumerate() {
        if k != 900 && k != 1800 {
            assert!(m < 1e-4, "bin {k} ({} Hz) has magnitude {m}: not a harmonic of 9 kHz", k * 10);
        }
    }
    Ok(())
}

/// A 5 kHz square/sawtooth at 48 kHz: energy only at multiples of 5 kHz below
/// 24 kHz; 25 kHz would fold to 23 kHz, 30 kHz to 18 kHz, 35 kHz to 13 kHz.
#[test]
fn five_khz_waveforms_have_no_energy_off_harmonics() -> TestResult {
    let sr = 48000.0;
    let len = 4800;
    for wave in [Wave::Sawtooth, Wave::Square, Wave::Triangle] {
        let out = render_osc(sr, len, OscillatorOptions { type_: wave.type_(), frequency: 5000.0, ..Default::default() }, 0.0, no_automation)?;
        let mag = dft_magnitudes(&out);
        let h1 = mag[500];
        assert!(h1 > 0.3, "{wave:?}: fundamental {h1}");
        for (k, &m) in mag.iter().enumerate() {
            let harmonic = k % 500 == 0 && k > 0;
            if !harmonic {
                // Linear interpolation in the tables leaves spurs far below this.
                assert!(m < 1e-3 * h1, "{wave:?}: bin {k} ({} Hz) magnitude {m}", k * 10);
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------- custom PeriodicWave

fn custom_wave(sr: f32, disable_normalization: bool) -> Result<PeriodicWave, NodeError> {
    PeriodicWave::new(
        sr,
        PeriodicWaveOptions { real: Some(vec![0.0, 0.0, 0.0]), imag: Some(vec![0.0, 1.0, 0.5]), disable_normalization },
    )
}

#[test]
fn custom_periodic_wave_is_normalised() -> TestResult {
    let sr = 48000.0f64;
    let f = 440.0;
    let wave = custom_wave(sr as f32, false)?;
    let out = render_osc(
        sr as f32,
        4800,
        OscillatorOptions { type_: OscillatorType::Custom, frequency: f as f32, periodic_wave: Some(wave), ..Default::default() },
        0.0,
        no_automation,
    )?;
    let raw = |phi: f64| (2.0 * PI * phi).sin() + 0.5 * (4.0 * PI * phi).sin();
    // Normalised so that the peak over the 4096 table points is 1.
    let peak = (0..4096).map(|k| raw(k as f64 / 4096.0).abs()).fold(0.0, f64::max);
    assert!(peak > 1.29 && peak < 1.31, "peak {peak}");
    let expected: Vec<f64> = (0..out.len()).map(|n| raw(phase(f, n, sr)) / peak).collect();
    assert_close(&out, &expected, 1e-4, "normalised custom wave");
    let max = out.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(max <= 1.0 + 1e-4 && max > 0.99, "max {max}");
    Ok(())
}

#[test]
fn custom_periodic_wave_without_normalisation_is_the_raw_sum() -> TestResult {
    let sr = 48000.0f64;
    let f = 440.0;
    let wave = custom_wave(sr as f32, true)?;
    // The periodicWave makes the type custom even when `type_` says otherwise.
    let out = render_osc(
        sr as f32,
        4800,
        OscillatorOptions { frequency: f as f32, periodic_wave: Some(wave), ..Default::default() },
        0.0,
        no_automation,
    )?;
    let expected: Vec<f64> =
        (0..out.len()).map(|n| phase(f, n, sr)).map(|phi| (2.0 * PI * phi).sin() + 0.5 * (4.0 * PI * phi).sin()).collect();
    assert_close(&out, &expected, 1e-4, "raw custom wave");
    Ok(())
}

#[test]
fn periodic_wave_errors() {
    let mismatched = PeriodicWave::new(
        48000.0,
        PeriodicWaveOptions { real: Some(vec![0.0, 0.0, 0.0]), imag: Some(vec![0.0, 1.0]), disable_normalization: false },
    );
    assert!(matches!(mismatched, Err(NodeError::IndexSize { .. })), "{mismatched:?}");

    let mut ctx = OfflineAudioContext::new(1, 128, 48000.0).unwrap();
    let custom_without_wave =
        OscillatorNode::new(ctx.graph(), OscillatorOptions { type_: OscillatorType::Custom, ..Default::default() });
    match custom_without_wave {
        Err(e @ NodeError::InvalidState { .. }) => assert!(e.to_string().contains("periodicWave"), "{e}"),
        Err(e) => panic!("expected InvalidStateError, got {e}"),
        Ok(_) => panic!("type custom without a periodicWave must be refused"),
    }
}
