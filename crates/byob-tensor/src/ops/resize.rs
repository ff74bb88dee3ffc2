//! Resize (opsets 10 to 19) and Upsample: nearest (four rounding modes),
//! linear and cubic interpolation, every coordinate transformation mode,
//! scales or sizes, `axes` and `keep_aspect_ratio_policy`, antialiasing,
//! `exclude_outside` and `tf_crop_and_resize`'s region and extrapolation.
//!
//! Interpolation is separable: each resized axis is interpolated in turn
//! (in f64), each output position taking a weighted sum of its input
//! neighbours, with the weights and neighbours of the operator's reference
//! implementation (neighbours past the edges repeat the edge).

use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Nearest(Nearest),
    Linear,
    Cubic(f64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Coordinates {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum AspectRatio {
    Stretch,
    NotLarger,
    NotSmaller,
}

#[derive(Debug)]
struct Resize {
    mode: Mode,
    coordinates: Coordinates,
    antialias: bool,
    exclude_outside: bool,
    extrapolation: f64,
    aspect: AspectRatio,
    axes: Option<Vec<i64>>,
    /// Where the scales are: (input index) and where the sizes are (opset
    /// 11 and later), or the Upsample attribute's scales.
    scales_input: Option<usize>,
    sizes_input: Option<usize>,
    roi_input: Option<usize>,
    scales_attribute: Option<Vec<f32>>,
}

impl Mode {
    /// The weights of the neighbours for a position `ratio` past the lower
    /// one (1 when it falls on a sample), on an axis scaled by `scale`.
    fn weights(self, ratio: f64, scale: f64, antialias: bool) -> Vec<f64> {
        match self {
            Self::Nearest(rounding) => {
                if ratio.fract() == 0.0 {
                    return vec![0.0, 1.0];
                }
                let upper = match rounding {
                    Nearest::RoundPreferFloor => ratio > 0.5,
                    Nearest::RoundPreferCeil => ratio >= 0.5,
                    Nearest::Floor => false,
                    Nearest::Ceil => true,
                };
                vec![f64::from(!upper as u8), f64::from(upper as u8)]
            }
            Self::Linear if antialias => {
                let scale = scale.min(1.0);
                let start = (-1.0 / scale).floor() as i64 + 1;
                let footprint = 2 - 2 * start;
                normalized((start..start + footprint).map(|i| (1.0 - ((i as f64 - ratio) * scale).abs()).clamp(0.0, 1.0)).collect())
            }
            Self::Linear => vec![1.0 - ratio, ratio],
            Self::Cubic(a) if antialias => {
                let scale = scale.min(1.0);
                let start = (-2.0 / scale).floor() as i64 + 1;
                normalized((start..2 - start).map(|i| cubic(a, scale * (i as f64 - ratio))).collect())
            }
            Self::Cubic(a) => vec![cubic(a, ratio + 1.0), cubic(a, ratio), cubic(a, 1.0 - ratio), cubic(a, 2.0 - ratio)],
        }
    }
}

/// Keys' cubic convolution kernel with parameter `a`.
pub(crate) fn cubic(a: f64, x: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

fn normalized(w: Vec<f64>) -> Vec<f64> {
    let sum: f64 = w.iter().sum();
    w.into_iter().map(|v| v / sum).collect()
}

/// What a Resize does to each axis.
struct Plan {
    scales: Vec<f64>,
    sizes: Vec<usize>,
    axes: Vec<usize>,
}

impl Resize {
    /// The input coordinate of output position `y`, and whether it lies
    /// outside the crop region (tf_crop_and_resize).
    fn source(&self, y: usize, scale: f64, input: usize, output: usize, roi: (f64, f64)) -> (f64, bool) {
        let (y, n, out_f) = (y as f64, input as f64, scale * input as f64);
        let x = match self.coordinates {
            Coordinates::AlignCorners if out_f == 1.0 => 0.0,
            Coordinates::AlignCorners => y * (n - 1.0) / (out_f - 1.0),
            Coordinates::Asymmetric => y / scale,
            Coordinates::PytorchHalfPixel if out_f == 1.0 => -0.5,
            Coordinates::PytorchHalfPixel | Coordinates::HalfPixel => (y + 0.5) / scale - 0.5,
            Coordinates::HalfPixelSymmetric => {
                let offset = n / 2.0 * (1.0 - output as f64 / out_f);
                offset + (y + 0.5) / scale - 0.5
            }
            Coordinates::TfCropAndResize => {
                let x = if out_f == 1.0 { (roi.1 - roi.0) * (n - 1.0) / 2.0 } else { y * (roi.1 - roi.0) * (n - 1.0) / (out_f - 1.0) };
                let x = x + roi.0 * (n - 1.0);
                return (x, x < 0.0 || x > n - 1.0);
            }
        };
        (x, false)
    }

    /// Interpolates `data` (of `shape`) along `axis` to `size` positions.
    fn along(&self, data: &[f64], shape: &[usize], axis: usize, scale: f64, size: usize, roi: (f64, f64)) -> Vec<f64> {
        let input = shape[axis];
        let (outer, inner) = (shape[..axis].iter().product::<usize>(), shape[axis + 1..].iter().product::<usize>());
        let taps = self.taps(input, scale, size, roi);
        let mut out = vec![0.0; outer * size * inner];
        for o in 0..outer {
            for (y, (indices, weights, outside)) in taps.iter().enumerate() {
                for i in 0..inner {
                    out[(o * size + y) * inner + i] =
                        if *outside { self.extrapolation } else { indices.iter().zip(weights).map(|(&j, w)| w * data[(o * input + j) * inner + i]).sum() };
                }
            }
        }
        out
    }

    /// Per output position of an axis of `input` resized to `size`: the
    /// input indices (clamped into the axis), their weights, and whether
    /// it lies outside the crop region.
    fn taps(&self, input: usize, scale: f64, size: usize, roi: (f64, f64)) -> Vec<(Vec<usize>, Vec<f64>, bool)> {
        let mut taps = Vec::with_capacity(size);
        for y in 0..size {
            let (x, outside) = self.source(y, scale, input, size, roi);
            let floor = x.floor();
            let ratio = if x == floor { 1.0 } else { x - floor };
            let mut weights = self.mode.weights(ratio, scale, self.antialias);
            let n = weights.len() as i64;
            let pad = (n + 1) / 2;
            let padded = x + pad as f64;
            let p = padded.floor() as i64;
            let frac = padded - p as f64;
            let offset = if n % 2 == 0 { if frac == 0.0 { -(n / 2) } else { -(n / 2) + 1 } } else if frac <= 0.5 { -((n - 1) / 2) } else { -((n - 1) / 2) + 1 };
            let first = p + offset - pad;
            let neighbours: Vec<i64> = (first..first + n).collect();
            if self.exclude_outside {
                for (w, &i) in weights.iter_mut().zip(&neighbours) {
                    if i < 0 || i >= input as i64 {
                        *w = 0.0;
                    }
                }
                let sum: f64 = weights.iter().sum();
                let sum = if sum == 0.0 { 1.0 } else { sum };
                weights.iter_mut().for_each(|w| *w /= sum);
            }
            let clamped = neighbours.iter().map(|&i| i.clamp(0, input as i64 - 1) as usize).collect();
            taps.push((clamped, weights, outside));
        }
        taps
    }

    /// Per axis the scale and the output size, and the resized axes.
    fn plan(&self, inputs: &[Option<&Tensor>], shape: &[usize]) -> Result<Plan, OpError> {
        let rank = shape.len();
        let axes: Vec<usize> = match &self.axes {
            None => (0..rank).collect(),
            Some(a) => super::axes::unique_axes(a, rank).map_err(|e| OpError::attribute("axes", e))?.into_vec(),
        };
        let given = |index: Option<usize>| index.and_then(|i| inputs.get(i).copied().flatten()).filter(|t| !t.is_empty());
        let floats = |t: &Tensor| -> Vec<f64> { crate::dispatch!(t.dtype(), T => t.elements::<T>().unwrap_or_default().iter().map(|v| v.to_f64()).collect()) };
        let mut scales = vec![1.0; rank];
        let mut sizes = shape.to_vec();
        if let Some(s) = given(self.sizes_input) {
            let s = s.to_i64_vec().ok_or_else(|| OpError::input(3, "sizes must be int64"))?;
            if s.len() != axes.len() || s.iter().any(|&v| v < 0) {
                return Err(OpError::input(3, format!("sizes {s:?} must hold one size of at least 0 per resized axis ({})", axes.len())));
            }
            for (&a, &v) in axes.iter().zip(&s) {
                scales[a] = v as f64 / shape[a] as f64;
                sizes[a] = v as usize;
            }
            if self.aspect != AspectRatio::Stretch {
                let chosen = axes.iter().map(|&a| scales[a]);
                let scale = if self.aspect == AspectRatio::NotLarger { chosen.fold(f64::INFINITY, f64::min) } else { chosen.fold(0.0, f64::max) };
                for &a in &axes {
                    scales[a] = scale;
                    sizes[a] = (scale * shape[a] as f64 + 0.5) as usize;
                }
            }
        } else {
            let s: Vec<f64> = match (given(self.scales_input), &self.scales_attribute) {
                (Some(t), _) => floats(t),
                (None, Some(a)) => a.iter().map(|&v| v as f64).collect(),
                (None, None) => return Err(OpError::input(2, "one of scales and sizes is required")),
            };
            if s.len() != axes.len() || s.iter().any(|&v| !(v > 0.0 && v.is_finite())) {
                return Err(OpError::input(2, format!("scales {s:?} must hold one positive scale per resized axis ({})", axes.len())));
            }
            for (&a, &v) in axes.iter().zip(&s) {
                scales[a] = v;
                let size = v * shape[a] as f64;
                if size > isize::MAX as f64 {
                    return Err(OpError::input(2, format!("scale {v} makes axis {a} too large")));
                }
                sizes[a] = size as usize;
            }
        }
        crate::tensor::element_count(&sizes, DataType::F64)?;
        Ok(Plan { scales, sizes, axes })
    }
}

impl Op for Resize {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![Fact::new(x.dtype, vec![Dim::Unknown; x.shape.len()])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let Plan { scales, sizes, axes } = self.plan(inputs, x.shape())?;
        let rank = x.rank();
        let roi: Vec<f64> = match self.roi_input.and_then(|i| inputs.get(i).copied().flatten()).filter(|t| !t.is_empty()) {
            Some(t) => crate::dispatch!(t.dtype(), T => t.elements::<T>().unwrap_or_default().iter().map(|v| v.to_f64()).collect()),
            None => Vec::new(),
        };
        // The region per axis, from a roi that lists the resized axes only
        // when `axes` is given.
        let region = |a: usize| -> (f64, f64) {
            let k = axes.iter().position(|&b| b == a).unwrap_or(a);
            let n = roi.len() / 2;
            if roi.len() == 2 * rank || roi.len() == 2 * axes.len() { (roi[k.min(n - 1)], roi[n + k.min(n - 1)]) } else { (0.0, 1.0) }
        };
        let mut data: Vec<f64> = crate::dispatch!(x.dtype(), T => x.elements::<T>().unwrap_or_default().iter().map(|v| v.to_f64()).collect());
        let mut shape = x.shape().to_vec();
        for &a in &axes {
            let (lo, hi) = region(a);
            let trivial = (scales[a] - 1.0).abs() < 1e-12 && sizes[a] == shape[a] && (self.coordinates != Coordinates::TfCropAndResize || (lo == 0.0 && hi == 1.0));
            if trivial {
                continue;
            }
            if shape[a] == 0 {
                return Err(OpError::input(0, format!("axis {a} has no elements to resize")));
            }
            data = self.along(&data, &shape, a, scales[a], sizes[a], (lo, hi));
            shape[a] = sizes[a];
        }
        let out = output(outputs, 0)?;
        crate::dispatch!(x.dtype(), T => {
            let o = out.reset_as::<T>(&shape)?;
            // Integers round to nearest, as the reference's saturating cast does.
            o.iter_mut().zip(&data).for_each(|(o, &v)| *o = T::from_f64(if T::FLOAT { v } else { v.round() }));
        });
        Ok(())
    }
}

/// For each output position of a resized axis: the input indices it
/// reads (clamped into the axis) and their weights.
pub type AxisTaps = Vec<(Vec<usize>, Vec<f64>)>;

/// The output shape of Resize (or Upsample) `node` over an input of
/// `shape`, and per axis the taps the CPU interpolates it with (`None`
/// where the axis is unchanged), from its attributes and the values of its
/// inputs (positional in `inputs`; the roi is ignored). Interpolating
/// along every axis at once with these taps equals the CPU's passes, but
/// for tf_crop_and_resize's extrapolation, refused here. For providers
/// that resize on their own.
///
/// Resized axes of more than `max_positions` output positions are refused
/// before any tap is computed (the taps take memory per position).
pub fn axis_taps(node: &Node, opset: i64, shape: &[usize], inputs: &[Option<&Tensor>], max_positions: usize) -> Result<(Vec<usize>, Vec<Option<AxisTaps>>), OpError> {
    let op = resize_op(node, opset)?;
    if op.coordinates == Coordinates::TfCropAndResize {
        return Err(OpError::attribute("coordinate_transformation_mode", "tf_crop_and_resize extrapolates pass by pass"));
    }
    let Plan { scales, sizes, axes } = op.plan(inputs, shape)?;
    let mut taps = vec![None; shape.len()];
    for &a in &axes {
        if (scales[a] - 1.0).abs() < 1e-12 && sizes[a] == shape[a] {
            continue;
        }
        if shape[a] == 0 {
            return Err(OpError::input(0, format!("axis {a} has no elements to resize")));
        }
        if sizes[a] > max_positions {
            return Err(OpError::input(0, format!("axis {a} resizes to {} positions, more than the {max_positions} taken", sizes[a])));
        }
        taps[a] = Some(op.taps(shape[a], scales[a], sizes[a], (0.0, 1.0)).into_iter().map(|(indices, weights, _)| (indices, weights)).collect());
    }
    Ok((sizes, taps))
}

fn resize(node: &Node, opset: i64) -> Result<Box<dyn Op>, OpError> {
    Ok(Box::new(resize_op(node, opset)?))
}

fn resize_op(node: &Node, opset: i64) -> Result<Resize, OpError> {
    let a = Attrs(node);
    let upsample = node.op_type == "Upsample";
    let legacy = upsample || opset < 11;
    let nearest = match a.string("nearest_mode", if legacy { "floor" } else { "round_prefer_floor" })?.as_str() {
        "round_prefer_floor" => Nearest::RoundPreferFloor,
        "round_prefer_ceil" => Nearest::RoundPreferCeil,
        "floor" => Nearest::Floor,
        "ceil" => Nearest::Ceil,
        other => return Err(OpError::attribute("nearest_mode", format!("{other:?} is not a rounding mode"))),
    };
    let mode = match a.string("mode", "nearest")?.as_str() {
        "nearest" => Mode::Nearest(nearest),
        "linear" | "bilinear" => Mode::Linear,
        "cubic" => Mode::Cubic(a.float("cubic_coeff_a", -0.75)? as f64),
        other => return Err(OpError::attribute("mode", format!("{other:?} is not nearest, linear or cubic"))),
    };
    let coordinates = match a.string("coordinate_transformation_mode", if legacy { "asymmetric" } else { "half_pixel" })?.as_str() {
        "half_pixel" => Coordinates::HalfPixel,
        "half_pixel_symmetric" => Coordinates::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coordinates::PytorchHalfPixel,
        "align_corners" => Coordinates::AlignCorners,
        "asymmetric" => Coordinates::Asymmetric,
        "tf_crop_and_resize" => Coordinates::TfCropAndResize,
        other => return Err(OpError::attribute("coordinate_transformation_mode", format!("{other:?} is not a coordinate transformation mode"))),
    };
    let aspect = match a.string("keep_aspect_ratio_policy", "stretch")?.as_str() {
        "stretch" => AspectRatio::Stretch,
        "not_larger" => AspectRatio::NotLarger,
        "not_smaller" => AspectRatio::NotSmaller,
        other => return Err(OpError::attribute("keep_aspect_ratio_policy", format!("{other:?} is not stretch, not_larger or not_smaller"))),
    };
    let (roi_input, scales_input, sizes_input, scales_attribute) = match (upsample, opset) {
        (true, o) if o < 9 => (None, None, None, Some(a.floats("scales")?.ok_or_else(|| OpError::attribute("scales", "required"))?)),
        (true, _) | (false, 10) => (None, Some(1), None, None),
        _ => (Some(1), Some(2), Some(3), None),
    };
    Ok(Resize {
        mode,
        coordinates,
        antialias: a.int("antialias", 0)? != 0,
        exclude_outside: a.int("exclude_outside", 0)? != 0,
        extrapolation: a.float("extrapolation_value", 0.0)? as f64,
        aspect,
        axes: a.ints("axes")?,
        scales_input,
        sizes_input,
        roi_input,
        scales_attribute,
    })
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("Resize", resize);
    ops.insert("Upsample", resize);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys' kernel sums to 1 at any offset.
    #[test]
    fn cubic_weights_sum_to_one() {
        for ratio in [0.1, 0.5, 0.9] {
            let w = Mode::Cubic(-0.75).weights(ratio, 2.0, false);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
    }
}
