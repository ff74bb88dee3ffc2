//! Sliding-window geometry shared by Conv and the pools: pads from
//! `pads` or `auto_pad`, and output sizes with or without `ceil_mode`.
//! (byob-tensor has the same arithmetic in `ops::conv::Window`, not public.)

use super::KernelSpec;
use crate::error::GpuError;

/// One spatial axis, resolved for an input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Axis {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
    pub output: usize,
}

impl Axis {
    /// An axis of size 1 that leaves everything as it is, to pad ranks.
    pub const UNIT: Axis = Axis { input: 1, kernel: 1, stride: 1, dilation: 1, pad_begin: 0, pad_end: 0, output: 1 };
}

/// A positive-integer list attribute with one value per spatial axis.
fn per_axis(spec: &KernelSpec<'_>, name: &str, axes: usize, default: usize) -> Result<Vec<usize>, GpuError> {
    match spec.attr(spec.attrs().ints(name))? {
        None => Ok(vec![default; axes]),
        Some(v) if v.len() != axes => Err(spec.error(format!("attribute {name:?}: {} values for {axes} spatial axes", v.len()))),
        Some(v) => v.iter().map(|&x| usize::try_from(x).ok().filter(|&x| x > 0).ok_or_else(|| spec.error(format!("attribute {name:?}: values must be positive, got {v:?}")))).collect(),
    }
}

/// The axes of a window of `kernel` over `input` (spatial sizes), from the
/// node's `auto_pad`, `strides`, `dilations`, `pads` and, for pools,
/// `ceil_mode`.
pub(crate) fn axes(spec: &KernelSpec<'_>, input: &[usize], kernel: &[usize], with_ceil_mode: bool) -> Result<Vec<Axis>, GpuError> {
    let rank = input.len();
    let a = spec.attrs();
    let strides = per_axis(spec, "strides", rank, 1)?;
    let dilations = per_axis(spec, "dilations", rank, 1)?;
    let ceil_mode = with_ceil_mode && spec.attr(a.int("ceil_mode", 0))? != 0;
    let auto_pad = spec.attr(a.string("auto_pad", "NOTSET"))?;
    let pads = match spec.attr(a.ints("pads"))? {
        None => vec![0; 2 * rank],
        Some(p) if p.len() != 2 * rank && auto_pad == "NOTSET" => return Err(spec.error(format!("attribute \"pads\": {} values for {rank} spatial axes", p.len()))),
        Some(p) => p.iter().map(|&x| usize::try_from(x).map_err(|_| spec.error(format!("attribute \"pads\": values must be non-negative, got {p:?}")))).collect::<Result<_, _>>()?,
    };
    (0..rank)
        .map(|i| {
            let (input, kernel, stride, dilation) = (input[i], kernel[i], strides[i], dilations[i]);
            let extent = dilation * (kernel - 1) + 1;
            let (pad_begin, pad_end) = match auto_pad.as_str() {
                "NOTSET" | "" => (pads[i], pads[rank + i]),
                "VALID" => (0, 0),
                "SAME_UPPER" | "SAME_LOWER" => {
                    // Output ceil(input / stride); the odd pad goes last for
                    // SAME_UPPER, first for SAME_LOWER.
                    let output = input.div_ceil(stride);
                    let total = ((output.max(1) - 1) * stride + extent).saturating_sub(input);
                    let (small, large) = (total / 2, total - total / 2);
                    let (pad_begin, pad_end) = if auto_pad == "SAME_UPPER" { (small, large) } else { (large, small) };
                    return Ok(Axis { input, kernel, stride, dilation, pad_begin, pad_end, output });
                }
                other => return Err(spec.error(format!("attribute \"auto_pad\": {other:?} is not NOTSET, SAME_UPPER, SAME_LOWER or VALID"))),
            };
            let padded = input + pad_begin + pad_end;
            if padded < extent {
                return Err(spec.error(format!("spatial axis {i}: the window (extent {extent}) is larger than the padded input ({input} + {pad_begin} + {pad_end})")));
            }
            let mut output = if ceil_mode { (padded - extent).div_ceil(stride) + 1 } else { (padded - extent) / stride + 1 };
            // With ceil_mode the last window must still start inside the
            // input or its leading pad.
            if ceil_mode && output > 1 && (output - 1) * stride >= input + pad_begin {
                output -= 1;
            }
            Ok(Axis { input, kernel, stride, dilation, pad_begin, pad_end, output })
        })
        .collect()
}
