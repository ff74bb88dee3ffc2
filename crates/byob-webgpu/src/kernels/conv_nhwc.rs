//! Conv's channels-last operands: per image and group, output pixels ×
//! output channels = im2col(input) · weightsᵀ, so that the output is
//! written pixel by pixel with its channels contiguous. The reduction runs
//! over (kh, kw, c), so each tap reads one pixel's channels contiguously:
//! four at a time when a group's channels are a multiple of 4. Weights stay
//! OIHW and are gathered, except for 1×1 kernels, whose rows are contiguous
//! in c; a 1×1 convolution without stride, pad or groups reads the input as
//! a plain pixels × channels matrix.

use super::conv::{ConvShape, Gemm, FINISH_PLAIN};
use super::gemm::Operand;

const PRELUDE: &str = "
// Batch entry z is image z / group, group z % group; row m is an output
// pixel, column n an output channel of the group.
fn out_row(z: u32, m: u32) -> u32 { return ((z / p.group) * p.m + m) * p.out_channels + (z % p.group) * p.n; }
";

/// The element of the input at column k = (tap, channel) of pixel m's
/// im2col row, or -1 in the padding.
const TAP: &str = "
fn tap(z: u32, k: u32, m: u32) -> i32 {
    let t = k / p.channels;
    let ih = i32((m / p.out_w) * p.stride_h + (t / p.k_w) * p.dil_h) - i32(p.pad_t);
    let iw = i32((m % p.out_w) * p.stride_w + (t % p.k_w) * p.dil_w) - i32(p.pad_l);
    if (ih < 0 || iw < 0 || ih >= i32(p.in_h) || iw >= i32(p.in_w)) { return -1; }
    return i32((((z / p.group) * p.in_h + u32(ih)) * p.in_w + u32(iw)) * p.in_channels + (z % p.group) * p.channels + k % p.channels);
}
";

const IM2COL: &str = "
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
fn load_a(z: u32, k: u32, m: u32) -> f32 {
    let i = tap(z, k, m);
    if (i < 0) { return 0.0; }
    return x[i];
}
";

/// Four channels of one tap (k a multiple of 4, as is every group's first
/// channel).
const IM2COL_4: &str = "
@group(0) @binding(0) var<storage, read_write> x: array<vec4<f32>>;
fn load_a4(z: u32, k: u32, m: u32) -> vec4<f32> {
    let i = tap(z, k, m);
    if (i < 0) { return vec4<f32>(0.0); }
    return x[u32(i) / 4u];
}
";

/// With one group, image z's pixels × channels.
const PLAIN_INPUT: &str = "fn a_base(z: u32) -> u32 { return z * p.m * p.k; }";

/// OIHW weights: column n's element (tap, channel) is at channel · taps +
/// tap in its row.
const WEIGHTS: &str = "
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
fn load_b(z: u32, k: u32, n: u32) -> f32 {
    return w[((z % p.group) * p.n + n) * p.k + (k % p.channels) * p.k_h * p.k_w + k / p.channels];
}
";

/// With one tap, the group's weight rows are its columns of B, stored n×k.
const WEIGHT_ROWS: &str = "fn b_base(z: u32) -> u32 { return (z % p.group) * p.n * p.k; }";

/// Columns are output channels.
const FINISH_BIAS: &str = "
@group(0) @binding(2) var<storage, read_write> bias: array<f32>;
fn finish(z: u32, m: u32, n: u32, v: vec4<f32>) -> vec4<f32> {
    var r = v;
    for (var j = 0u; j < 4u; j++) {
        if (n + j < p.n) { r[j] += bias[(z % p.group) * p.n + n + j]; }
    }
    return r;
}";

/// im2col of the input (A, rows contiguous along each tap's channels)
/// times the weights transposed (B).
pub(super) fn gemm(s: &ConvShape) -> Gemm {
    let (m, n, k) = (s.h.output * s.w.output, s.out_channels / s.group, s.channels * s.taps());
    let vec4 = s.channels.is_multiple_of(4);
    let (a, input) = match (s.pointwise && s.group == 1, vec4) {
        (true, _) => (Operand::Dense { k_contiguous: true, vec4 }, PLAIN_INPUT.to_string()),
        (false, true) => (Operand::Computed { k4: true }, format!("{TAP}{IM2COL_4}")),
        (false, false) => (Operand::Computed { k4: false }, format!("{TAP}{IM2COL}")),
    };
    let (b, weights) = if s.taps() == 1 { (Operand::Dense { k_contiguous: true, vec4 }, WEIGHT_ROWS) } else { (Operand::Computed { k4: false }, WEIGHTS) };
    let prelude = format!("{PRELUDE}{input}{weights}{}", if s.bias { FINISH_BIAS } else { FINISH_PLAIN });
    Gemm { op: "conv_nhwc", m, n, k, a, b, bindings: [0, 1], prelude }
}
