//! ConvTranspose against an f64 scatter: every input element adds its
//! products with the kernel at stride · position + dilation · tap - pad.

mod common;

use byob_tensor::model::Attribute;
use common::{assert_close, context, ints, node, run, values};

struct Case<'a> {
    x: &'a [usize],
    w: &'a [usize],
    group: usize,
    strides: &'a [usize],
    dilations: &'a [usize],
    pads: &'a [usize],
    out: &'a [usize],
}

/// The scatter reference, 2-D (1-D as a height of one).
fn scatter(c: &Case, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
    let (batch, channels, ih, iw) = (c.x[0], c.x[1], c.x[2], c.x[3]);
    let (group_out, kh, kw) = (c.w[1], c.w[2], c.w[3]);
    let (oh, ow) = (c.out[0], c.out[1]);
    let out_channels = group_out * c.group;
    let mut y = vec![0.0; batch * out_channels * oh * ow];
    for n in 0..batch {
        for m in 0..out_channels {
            y[(n * out_channels + m) * oh * ow..][..oh * ow].iter_mut().for_each(|v| *v = b[m] as f64);
        }
        for ch in 0..channels {
            let g = ch / (channels / c.group);
            for (i, j) in (0..ih).flat_map(|i| (0..iw).map(move |j| (i, j))) {
                let v = x[((n * channels + ch) * ih + i) * iw + j] as f64;
                for mo in 0..group_out {
                    for (s, t) in (0..kh).flat_map(|s| (0..kw).map(move |t| (s, t))) {
                        let r = (i * c.strides[0] + s * c.dilations[0]) as i64 - c.pads[0] as i64;
                        let q = (j * c.strides[1] + t * c.dilations[1]) as i64 - c.pads[1] as i64;
                        if (0..oh as i64).contains(&r) && (0..ow as i64).contains(&q) {
                            let m = g * group_out + mo;
                            y[((n * out_channels + m) * oh + r as usize) * ow + q as usize] += v * w[((ch * group_out + mo) * kh + s) * kw + t] as f64;
                        }
                    }
                }
            }
        }
    }
    y
}

#[test]
fn conv_transpose_matches_a_scatter() {
    // Groups, strides, dilations, pads and output_padding in 2-D.
    let c = Case { x: &[2, 4, 3, 5], w: &[4, 3, 3, 2], group: 2, strides: &[2, 3], dilations: &[2, 1], pads: &[1, 0], out: &[7, 14] };
    let (x, w, b) = (values(120, 21, -1.0, 1.0), values(72, 22, -1.0, 1.0), values(6, 23, -1.0, 1.0));
    let attrs = vec![("group", Attribute::Int(2)), ("strides", ints(&[2, 3])), ("dilations", ints(&[2, 1])), ("pads", ints(&[1, 0, 2, 1])), ("output_padding", ints(&[1, 1]))];
    // Height: 2·2 + 1 + 2·2 + 1 - 1 - 2 = 7; width: 3·4 + 1 + 1 + 1 - 0 - 1 = 14.
    let out = run(&node("ConvTranspose", 3, attrs), 11, &[Some((c.x, &x)), Some((c.w, &w)), Some((&[6], &b))]);
    assert_eq!(out[0].0, [2, 6, 7, 14]);
    assert_close("ConvTranspose 2-D", &out[0].1, &scatter(&c, &x, &w, &b));
    // 1-D with SAME_UPPER padding and no bias: out = in · stride.
    let c = Case { x: &[1, 2, 1, 7], w: &[2, 1, 1, 4], group: 1, strides: &[1, 2], dilations: &[1, 1], pads: &[0, 1], out: &[1, 14] };
    let attrs = vec![("strides", ints(&[2])), ("auto_pad", Attribute::String("SAME_UPPER".into()))];
    // Total padding 2·6 + 4 - 14 = 2, 1 before.
    let out = run(&node("ConvTranspose", 2, attrs), 11, &[Some((&[1, 2, 7], &x[..14])), Some((&[2, 1, 4], &w[..8]))]);
    assert_eq!(out[0].0, [1, 1, 14]);
    assert_close("ConvTranspose 1-D", &out[0].1, &scatter(&c, &x[..14], &w[..8], &[0.0]));
    let three_d = byob_webgpu::create_kernel(&context(), &node("ConvTranspose", 2, vec![]), 11, &[vec![1, 1, 2, 2, 2], vec![1, 1, 1, 1, 1]]).unwrap_err();
    assert!(three_d.to_string().contains("one or two spatial axes"), "{three_d}");
}
