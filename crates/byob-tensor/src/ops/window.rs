//! The sliding window of Conv, ConvTranspose and the pools as ONNX defines
//! it (kernel, strides, dilations, pads, auto_pad, ceil_mode), read from a
//! node's attributes and resolved for input sizes into the
//! [`Axis`](crate::kernels::window::Axis) geometry the kernels walk. Every
//! provider resolves windows here (the WebGPU kernels too).

use super::linalg::known;
use super::{Attrs, OpError};
use crate::kernels::window::Axis;
use crate::model::Dim;

/// How pads are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoPad {
    /// Explicit `pads`.
    NotSet,
    /// Output = ceil(input / stride), the extra pad at the end.
    SameUpper,
    /// Output = ceil(input / stride), the extra pad at the beginning.
    SameLower,
    /// No padding.
    Valid,
}

/// Sliding-window attributes shared by Conv and the pools (of every
/// provider: the WebGPU kernels resolve their windows here too).
#[derive(Clone, Debug)]
pub struct Window {
    pub auto_pad: AutoPad,
    /// The `kernel_shape` attribute (for Conv, W's spatial shape otherwise).
    pub kernel: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    /// Begins of every axis, then ends.
    pub pads: Option<Vec<usize>>,
    pub ceil_mode: bool,
}

fn positive_ints(a: &Attrs, name: &str) -> Result<Option<Vec<usize>>, OpError> {
    a.ints(name)?
        .map(|v| v.iter().map(|&x| usize::try_from(x).ok().filter(|&x| x > 0).ok_or_else(|| OpError::attribute(name, format!("values must be positive, got {v:?}")))).collect())
        .transpose()
}

impl Window {
    /// Reads `auto_pad`, `kernel_shape`, `strides`, `dilations`, `pads` and
    /// (when `with_ceil_mode`) `ceil_mode`.
    pub fn from_attrs(a: &Attrs, with_ceil_mode: bool) -> Result<Self, OpError> {
        let auto_pad = match a.string("auto_pad", "NOTSET")?.as_str() {
            "NOTSET" | "" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => return Err(OpError::attribute("auto_pad", format!("must be NOTSET, SAME_UPPER, SAME_LOWER or VALID, got {other:?}"))),
        };
        let pads = a
            .ints("pads")?
            .map(|v| v.iter().map(|&x| usize::try_from(x).map_err(|_| OpError::attribute("pads", format!("values must be non-negative, got {v:?}")))).collect())
            .transpose()?;
        let ceil_mode = if with_ceil_mode {
            match a.int("ceil_mode", 0)? {
                0 => false,
                1 => true,
                v => return Err(OpError::attribute("ceil_mode", format!("must be 0 or 1, got {v}"))),
            }
        } else {
            false
        };
        Ok(Self { auto_pad, kernel: positive_ints(a, "kernel_shape")?, strides: positive_ints(a, "strides")?, dilations: positive_ints(a, "dilations")?, pads, ceil_mode })
    }

    /// Checks the attributes' lengths against the number of spatial axes.
    pub fn check(&self, spatial: usize) -> Result<(), OpError> {
        let check = |name: &str, v: &Option<Vec<usize>>, len: usize| match v {
            Some(v) if v.len() != len => Err(OpError::attribute(name, format!("expected {len} values for {spatial} spatial axes, got {}", v.len()))),
            _ => Ok(()),
        };
        check("kernel_shape", &self.kernel, spatial)?;
        check("strides", &self.strides, spatial)?;
        check("dilations", &self.dilations, spatial)?;
        if self.auto_pad == AutoPad::NotSet {
            check("pads", &self.pads, 2 * spatial)?;
        }
        Ok(())
    }

    fn stride(&self, i: usize) -> usize {
        self.strides.as_ref().map_or(1, |s| s[i])
    }

    fn dilation(&self, i: usize) -> usize {
        self.dilations.as_ref().map_or(1, |d| d[i])
    }

    /// Axis `i` of `rank` spatial axes for an input size. The arithmetic
    /// is checked: crafted pads, strides or dilations near `usize::MAX`
    /// are an error, not a wrapped size.
    fn axis(&self, i: usize, rank: usize, input: usize, kernel: usize) -> Result<Axis, OpError> {
        let (stride, dilation) = (self.stride(i), self.dilation(i));
        let overflow = || OpError::Shape(format!("spatial axis {i}: the window's size overflows (input {input}, kernel {kernel}, stride {stride}, dilation {dilation})"));
        let extent = dilation.checked_mul(kernel.saturating_sub(1)).and_then(|e| e.checked_add(1)).ok_or_else(overflow)?;
        let (pad_begin, pad_end) = match self.auto_pad {
            AutoPad::NotSet => self.pads.as_ref().map_or((0, 0), |p| (p[i], p[rank + i])),
            AutoPad::Valid => (0, 0),
            AutoPad::SameUpper | AutoPad::SameLower => {
                let output = input.div_ceil(stride);
                let total = output.saturating_sub(1).checked_mul(stride).and_then(|t| t.checked_add(extent)).ok_or_else(overflow)?.saturating_sub(input);
                let (small, large) = (total / 2, total - total / 2);
                let pads = if self.auto_pad == AutoPad::SameUpper { (small, large) } else { (large, small) };
                return Ok(Axis { input, kernel, stride, dilation, pad_begin: pads.0, pad_end: pads.1, output });
            }
        };
        let padded = input.checked_add(pad_begin).and_then(|p| p.checked_add(pad_end)).ok_or_else(overflow)?;
        if padded < extent {
            return Err(OpError::Shape(format!(
                "spatial axis {i}: the window (kernel {kernel}, dilation {dilation}: extent {extent}) is larger than the padded input ({input} + pads {pad_begin} + {pad_end})"
            )));
        }
        let mut output = if self.ceil_mode && self.auto_pad == AutoPad::NotSet { (padded - extent).div_ceil(stride) + 1 } else { (padded - extent) / stride + 1 };
        // The last window must start inside the input or its left padding
        // (`input + pad_begin` cannot overflow: `padded` did not).
        if self.ceil_mode && output > 1 && (output - 1) * stride >= input + pad_begin {
            output -= 1;
        }
        Ok(Axis { input, kernel, stride, dilation, pad_begin, pad_end, output })
    }

    /// Every spatial axis for input sizes and a kernel.
    pub fn geometry(&self, input: &[usize], kernel: &[usize]) -> Result<smallvec::SmallVec<[Axis; 3]>, OpError> {
        self.check(input.len())?;
        if kernel.len() != input.len() {
            return Err(OpError::Shape(format!("the kernel has {} spatial axes, the input {}", kernel.len(), input.len())));
        }
        if let Some(k) = kernel.iter().position(|&k| k == 0) {
            return Err(OpError::Shape(format!("kernel axis {k} has size 0")));
        }
        (0..input.len()).map(|i| self.axis(i, input.len(), input[i], kernel[i])).collect()
    }

    /// Output sizes over dimensions that may be unknown (`kernel` None:
    /// not known yet). An unknown input size gives an unknown output size
    /// unless the window keeps the size (stride 1 with SAME, or pads that
    /// make up for the kernel).
    pub fn dims(&self, input: &[Dim], kernel: Option<&[usize]>) -> Result<Vec<Dim>, OpError> {
        self.check(input.len())?;
        let Some(kernel) = kernel else { return Ok(vec![Dim::Unknown; input.len()]) };
        if kernel.len() != input.len() {
            return Err(OpError::Shape(format!("the kernel has {} spatial axes, the input {}", kernel.len(), input.len())));
        }
        (0..input.len())
            .map(|i| match known(&input[i]) {
                Some(n) => self.axis(i, input.len(), n, kernel[i].max(1)).map(|a| Dim::Known(a.output)),
                None => {
                    let extent = self.dilation(i) * (kernel[i].max(1) - 1) + 1;
                    let keeps = self.stride(i) == 1
                        && match self.auto_pad {
                            AutoPad::SameUpper | AutoPad::SameLower => true,
                            AutoPad::Valid => extent == 1,
                            AutoPad::NotSet => self.pads.as_ref().map_or(0, |p| p[i] + p[input.len() + i]) == extent - 1,
                        };
                    Ok(if keeps { input[i].clone() } else { Dim::Unknown })
                }
            })
            .collect()
    }
}
