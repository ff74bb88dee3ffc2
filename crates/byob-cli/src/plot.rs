//! `--plot`: the waveform and a spectrogram of a rendered buffer, as PNG.

use anyhow::{Context, Result};
use byob_audio::AudioBuffer;
use plotters::prelude::*;
use rustfft::{num_complex::Complex, FftPlanner};
use std::path::Path;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 800;
const FFT_SIZE: usize = 1024;

/// Draws into `path` (a PNG file: the caller's staged temporary file,
/// renamed once every output is complete).
pub fn draw(buffer: &AudioBuffer, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(HEIGHT / 3);
    waveform(buffer, &top)?;
    spectrogram(buffer, &bottom)?;
    root.present().context("encoding PNG")?;
    Ok(())
}

fn waveform<DB: DrawingBackend>(buffer: &AudioBuffer, area: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let channels = buffer.number_of_channels();
    let lanes = area.split_evenly((channels, 1));
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (c, lane) in lanes.iter().enumerate() {
        let data = buffer.channel_data(c);
        let peak = data.iter().fold(1e-9f32, |m, s| m.max(s.abs()));
        let (w, h) = lane.dim_in_pixel();
        let per_pixel = (data.len() as f64 / w as f64).max(1.0);
        let mid = h as f64 / 2.0;
        for x in 0..w {
            let from = (x as f64 * per_pixel) as usize;
            let to = (((x + 1) as f64 * per_pixel) as usize).min(data.len());
            if from >= to {
                break;
            }
            let (lo, hi) = data[from..to].iter().fold((f32::MAX, f32::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
            let y = |s: f32| (mid - s as f64 / peak as f64 * (mid - 2.0)) as i32;
            lane.draw(&PathElement::new(vec![(x as i32, y(hi)), (x as i32, y(lo))], colors[c % colors.len()]))?;
        }
        lane.draw(&PathElement::new(vec![(0, mid as i32), (w as i32, mid as i32)], BLACK.mix(0.2)))?;
    }
    Ok(())
}

fn spectrogram<DB: DrawingBackend>(buffer: &AudioBuffer, area: &DrawingArea<DB, plotters::coord::Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    // Mono mix of all channels, Hann-windowed frames, magnitude in dB.
    let n = buffer.length();
    let mono: Vec<f32> = (0..n)
        .map(|i| (0..buffer.number_of_channels()).map(|c| buffer.channel_data(c)[i]).sum::<f32>() / buffer.number_of_channels() as f32)
        .collect();
    let (w, h) = area.dim_in_pixel();
    let fft = FftPlanner::<f32>::new().plan_fft_forward(FFT_SIZE);
    let window: Vec<f32> =
        (0..FFT_SIZE).map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / FFT_SIZE as f32).cos()).collect();
    let bins = FFT_SIZE / 2;
    let mut frame = vec![Complex::new(0.0f32, 0.0); FFT_SIZE];
    for x in 0..w {
        let start = (x as usize * n.saturating_sub(FFT_SIZE)) / w.max(1) as usize;
        for (i, c) in frame.iter_mut().enumerate() {
            *c = Complex::new(mono.get(start + i).copied().unwrap_or(0.0) * window[i], 0.0);
        }
        fft.process(&mut frame);
        for y in 0..h {
            let bin = ((h - 1 - y) as usize * bins / h as usize).min(bins - 1);
            let magnitude = frame[bin].norm() / (FFT_SIZE as f32 / 4.0);
            let db = 20.0 * magnitude.max(1e-6).log10();
            let level = ((db + 100.0) / 100.0).clamp(0.0, 1.0) as f64;
            area.draw_pixel((x as i32, y as i32), &ViridisRGB::get_color(level))?;
        }
    }
    Ok(())
}
