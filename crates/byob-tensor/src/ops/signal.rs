//! Signal processing: DFT (opsets 17 and 20, forward, inverse, one-sided
//! and its inverse), STFT, the Hann, Hamming and Blackman windows, and
//! MelWeightMatrix, as the operators' reference implementations compute
//! them. Transforms run in f64 through rustfft.

use super::axes::normalize_axis;
use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use rustfft::num_complex::Complex;
use rustfft::FftPlanner;
use std::collections::HashMap;

fn integer(t: &Tensor, index: usize, what: &str) -> Result<i64, OpError> {
    match t.to_i64_vec().as_deref() {
        Some([v]) => Ok(*v),
        _ => Err(OpError::input(index, format!("{what} must be one integer, got {} {:?}", t.dtype(), t.shape()))),
    }
}

fn optional_integer(inputs: &[Option<&Tensor>], index: usize, what: &str) -> Result<Option<i64>, OpError> {
    inputs.get(index).copied().flatten().map(|t| integer(t, index, what)).transpose()
}

fn positive(value: i64, index: usize, what: &str) -> Result<usize, OpError> {
    usize::try_from(value).ok().filter(|&v| v > 0 && v <= 1 << 30).ok_or_else(|| OpError::input(index, format!("{what} {value} must be between 1 and 2^30")))
}

/// The complex values of a [..., 1 or 2] tensor (real, or real and
/// imaginary interleaved).
fn complex(x: &Tensor) -> Result<Vec<Complex<f64>>, OpError> {
    let v = super::f64_values(x, 0)?;
    match x.shape().last() {
        Some(1) => Ok(v.into_iter().map(|re| Complex::new(re, 0.0)).collect()),
        Some(2) => Ok(v.chunks_exact(2).map(|c| Complex::new(c[0], c[1])).collect()),
        _ => Err(OpError::input(0, format!("the last axis must hold 1 (real) or 2 (complex) values, got shape {:?}", x.shape()))),
    }
}

#[derive(Debug)]
struct Dft {
    /// Opset 17's attribute; from opset 20 the axis is input 2.
    axis: Option<i64>,
    inverse: bool,
    onesided: bool,
}

impl Op for Dft {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![Fact::new(x.dtype, vec![Dim::Unknown; x.shape.len()])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let rank = x.rank();
        let axis = match self.axis {
            Some(a) => a,
            None => optional_integer(inputs, 2, "axis")?.unwrap_or(-2),
        };
        // The last axis holds the complex parts, so it cannot be transformed.
        let axis = normalize_axis(axis, rank).filter(|&a| a + 1 < rank).ok_or_else(|| OpError::input(2, format!("axis {axis} is not a signal axis of shape {:?}", x.shape())))?;
        let values = complex(x)?;
        let len = x.shape()[axis];
        let irfft = self.inverse && self.onesided;
        let n = match optional_integer(inputs, 1, "dft_length")? {
            Some(n) => positive(n, 1, "dft_length")?,
            None if irfft => 2 * len.saturating_sub(1).max(1),
            None => len,
        };
        let bins = if self.onesided && !self.inverse { n / 2 + 1 } else { n };
        let (outer, inner) = (x.shape()[..axis].iter().product::<usize>(), x.shape()[axis + 1..rank - 1].iter().product::<usize>());
        let mut planner = FftPlanner::<f64>::new();
        let fft = if self.inverse { planner.plan_fft_inverse(n) } else { planner.plan_fft_forward(n) };
        let parts = if irfft { 1 } else { 2 };
        let mut result = vec![0.0f64; outer * bins * inner * parts];
        let mut line = vec![Complex::new(0.0, 0.0); n];
        for o in 0..outer {
            for i in 0..inner {
                line.fill(Complex::new(0.0, 0.0));
                if irfft {
                    // The Hermitian spectrum whose first half is given.
                    for k in 0..=n / 2 {
                        let v = if k < len { values[(o * len + k) * inner + i] } else { Complex::new(0.0, 0.0) };
                        line[k] = v;
                        if k > 0 && k < n - k {
                            line[n - k] = v.conj();
                        }
                    }
                    line[0].im = 0.0;
                    if n % 2 == 0 {
                        line[n / 2].im = 0.0;
                    }
                } else {
                    for (k, slot) in line.iter_mut().enumerate().take(len.min(n)) {
                        *slot = values[(o * len + k) * inner + i];
                    }
                }
                fft.process(&mut line);
                let scale = if self.inverse { 1.0 / n as f64 } else { 1.0 };
                for (k, value) in line.iter().enumerate().take(bins) {
                    let at = ((o * bins + k) * inner + i) * parts;
                    result[at] = value.re * scale;
                    if !irfft {
                        result[at + 1] = value.im * scale;
                    }
                }
            }
        }
        let mut shape = x.shape().to_vec();
        shape[axis] = bins;
        shape[rank - 1] = parts;
        super::write_f64(output(outputs, 0)?, x.dtype(), &shape, &result)
    }
}

/// STFT: windowed DFTs of frames `frame_step` apart.
#[derive(Debug)]
struct Stft {
    onesided: bool,
}

impl Op for Stft {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![Fact::new(x.dtype, vec![Dim::Unknown; 4])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let &[batch, length, _] = x.shape() else { return Err(OpError::input(0, format!("the signal must be [batch, length, 1 or 2], got {:?}", x.shape()))) };
        let signal = complex(x)?;
        let step = positive(integer(required(inputs, 1)?, 1, "frame_step")?, 1, "frame_step")?;
        let window = inputs.get(2).copied().flatten().map(|w| super::f64_values(w, 2)).transpose()?;
        let frame = match optional_integer(inputs, 3, "frame_length")? {
            Some(f) => positive(f, 3, "frame_length")?,
            None => window.as_ref().map(Vec::len).filter(|&l| l > 0).ok_or_else(|| OpError::input(3, "frame_length or a window is required"))?,
        };
        let window = window.unwrap_or_else(|| vec![1.0; frame]);
        if window.len() != frame || frame > length {
            return Err(OpError::input(2, format!("a window of {} for frames of {frame} in a signal of {length}", window.len())));
        }
        let frames = 1 + (length - frame) / step;
        let bins = if self.onesided { frame / 2 + 1 } else { frame };
        let fft = FftPlanner::<f64>::new().plan_fft_forward(frame);
        let mut result = vec![0.0f64; batch * frames * bins * 2];
        let mut line = vec![Complex::new(0.0, 0.0); frame];
        for b in 0..batch {
            for f in 0..frames {
                for (k, slot) in line.iter_mut().enumerate() {
                    *slot = signal[b * length + f * step + k] * window[k];
                }
                fft.process(&mut line);
                for (k, value) in line.iter().enumerate().take(bins) {
                    let at = ((b * frames + f) * bins + k) * 2;
                    (result[at], result[at + 1]) = (value.re, value.im);
                }
            }
        }
        super::write_f64(output(outputs, 0)?, x.dtype(), &[batch, frames, bins, 2], &result)
    }
}

/// Hann, Hamming and Blackman windows: `a0 - a1 cos(2πn/N) + a2 cos(4πn/N)`
/// with N the size (periodic) or the size less one (symmetric).
#[derive(Debug)]
struct Window {
    coefficients: [f64; 3],
    periodic: bool,
    dtype: DataType,
}

impl Op for Window {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        required(inputs, 0)?;
        Ok(vec![Fact::new(self.dtype, vec![Dim::Unknown])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let size = positive(integer(required(inputs, 0)?, 0, "size")?, 0, "size")?;
        let n = if self.periodic { size } else { size - 1 } as f64;
        let [a0, a1, a2] = self.coefficients;
        let tau = 2.0 * std::f64::consts::PI;
        let values: Vec<f64> = (0..size).map(|k| a0 - a1 * (tau * k as f64 / n).cos() + a2 * (2.0 * tau * k as f64 / n).cos()).collect();
        super::write_f64(output(outputs, 0)?, self.dtype, &[size], &values)
    }
}

/// MelWeightMatrix: triangular filters spaced on the mel scale, as the
/// operator's reference computes them (bin edges rounded down).
#[derive(Debug)]
struct MelWeights {
    dtype: DataType,
}

impl Op for MelWeights {
    fn infer(&self, _: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        Ok(vec![Fact::new(self.dtype, vec![Dim::Unknown; 2])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let mels = positive(integer(required(inputs, 0)?, 0, "num_mel_bins")?, 0, "num_mel_bins")?;
        let dft_length = positive(integer(required(inputs, 1)?, 1, "dft_length")?, 1, "dft_length")?;
        let rate = positive(integer(required(inputs, 2)?, 2, "sample_rate")?, 2, "sample_rate")? as f64;
        let edge = |i: usize| -> Result<f64, OpError> { super::f64_values(required(inputs, i)?, i)?.first().copied().ok_or_else(|| OpError::input(i, "expected one value")) };
        let (low, high) = (edge(3)?, edge(4)?);
        let bins = dft_length / 2 + 1;
        let mel = |hz: f64| 2595.0 * (1.0 + hz / 700.0).log10();
        let (low_mel, high_mel) = (mel(low), mel(high));
        let step = (high_mel - low_mel) / (mels + 2) as f64;
        let edges: Vec<usize> = (0..mels + 2)
            .map(|k| {
                let hz = 700.0 * (10f64.powf((k as f64 * step + low_mel) / 2595.0) - 1.0);
                ((dft_length + 1) as f64 * hz / rate).floor().max(0.0) as usize
            })
            .collect();
        if edges.iter().any(|&e| e >= bins) {
            return Err(OpError::input(4, format!("upper_edge_hertz {high} lies past the spectrum of a {dft_length}-point DFT at {rate} Hz")));
        }
        let mut w = vec![0.0f64; bins * mels];
        for i in 0..mels {
            let (left, center, right) = (edges[i], edges[i + 1], edges[i + 2]);
            if center == left {
                w[center * mels + i] = 1.0;
            } else {
                for j in left..=center {
                    w[j * mels + i] = (j - left) as f64 / (center - left) as f64;
                }
            }
            for j in center..right {
                w[j * mels + i] = (right - j) as f64 / (right - center) as f64;
            }
        }
        super::write_f64(output(outputs, 0)?, self.dtype, &[bins, mels], &w)
    }
}

fn output_type(node: &Node) -> Result<DataType, OpError> {
    let code = Attrs(node).int("output_datatype", 1)?;
    i32::try_from(code).ok().and_then(DataType::from_onnx).ok_or_else(|| OpError::attribute("output_datatype", format!("element type {code} is not one byob carries")))
}

fn window(coefficients: [f64; 3], node: &Node) -> Result<Box<dyn Op>, OpError> {
    Ok(Box::new(Window { coefficients, periodic: Attrs(node).int("periodic", 1)? != 0, dtype: output_type(node)? }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("DFT", |n, opset| {
        let a = Attrs(n);
        let axis = if opset < 20 { Some(a.int("axis", 1)?) } else { None };
        Ok(Box::new(Dft { axis, inverse: a.int("inverse", 0)? != 0, onesided: a.int("onesided", 0)? != 0 }))
    });
    ops.insert("STFT", |n, _| Ok(Box::new(Stft { onesided: Attrs(n).int("onesided", 1)? != 0 })));
    ops.insert("HannWindow", |n, _| window([0.5, 0.5, 0.0], n));
    ops.insert("HammingWindow", |n, _| window([25.0 / 46.0, 21.0 / 46.0, 0.0], n));
    ops.insert("BlackmanWindow", |n, _| window([0.42, 0.5, 0.08], n));
    ops.insert("MelWeightMatrix", |n, _| Ok(Box::new(MelWeights { dtype: output_type(n)? })));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4-point DFT of [1, 2, 3, 4]: [10, -2+2i, -2, -2-2i].
    #[test]
    fn dft_of_four_points() {
        let threads = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let x = Tensor::f32(vec![1, 4, 1], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
        let op = Dft { axis: Some(1), inverse: false, onesided: false };
        let y = op.eval_new(&[Some(&x)], 1, &threads).unwrap().remove(0);
        assert_eq!(y.shape(), &[1, 4, 2]);
        assert_eq!(y.as_f32().unwrap(), &[10.0, 0.0, -2.0, 2.0, -2.0, 0.0, -2.0, -2.0]);
    }
}
