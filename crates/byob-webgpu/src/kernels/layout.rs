//! Where an image tensor keeps its channels: ONNX's NCHW, or NHWC for the
//! `com.byob.nhwc` variants that byob-tensor's layout pass hands a provider
//! preferring channels-last. The NCHW and NHWC kernels share their checks
//! and window arithmetic; they differ only in these strides.

use super::{numel, KernelSpec};
use crate::error::GpuError;
use byob_tensor::passes::layout::{CHANNELS_LAST_OPS, NHWC_DOMAIN};
use byob_tensor::model::Node;

/// Whether `node`'s domain is one the kernels serve: ONNX's own, or the
/// channels-last variant of an op that has one.
pub(crate) fn known_domain(node: &Node) -> bool {
    node.domain.is_empty() || node.domain == "ai.onnx" || (node.domain == NHWC_DOMAIN && CHANNELS_LAST_OPS.contains(&node.op_type.as_str()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Channels {
    /// [N, C, spatial...].
    First,
    /// [N, H, W, C], only 2-D: the layout pass rewrites nothing else.
    Last,
}

/// An image tensor's axes and how far apart its elements lie.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Image<'a> {
    pub batch: usize,
    pub channels: usize,
    pub spatial: &'a [usize],
    /// Elements between neighbouring channels of one pixel.
    pub channel_stride: usize,
    /// Elements between neighbouring pixels of one channel.
    pub pixel_stride: usize,
}

impl Channels {
    pub fn of(spec: &KernelSpec<'_>) -> Self {
        if spec.node.domain == NHWC_DOMAIN {
            Self::Last
        } else {
            Self::First
        }
    }

    /// The axes of input `x` of `spec`'s node.
    pub fn split<'a>(self, spec: &KernelSpec<'_>, x: &'a [usize]) -> Result<Image<'a>, GpuError> {
        match self {
            Self::First if x.len() >= 2 => Ok(Image { batch: x[0], channels: x[1], spatial: &x[2..], channel_stride: numel(&x[2..]), pixel_stride: 1 }),
            Self::Last if x.len() == 4 => Ok(Image { batch: x[0], channels: x[3], spatial: &x[1..3], channel_stride: 1, pixel_stride: x[3] }),
            Self::First => Err(spec.error(format!("input {x:?} has no channel axis"))),
            Self::Last => Err(spec.error(format!("input {x:?}: the channels-last ({NHWC_DOMAIN}) kernel takes rank-4 [N, H, W, C] inputs"))),
        }
    }

    /// The shape of an image with these axes.
    pub fn join(self, batch: usize, channels: usize, spatial: impl IntoIterator<Item = usize>) -> Vec<usize> {
        let mut shape = vec![batch];
        if self == Self::First {
            shape.push(channels);
        }
        shape.extend(spatial);
        if self == Self::Last {
            shape.push(channels);
        }
        shape
    }
}
