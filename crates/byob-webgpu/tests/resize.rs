//! Resize against f64 references written from the operator's formulas.

mod common;

use byob_tensor::model::{Attribute, Node};
use byob_tensor::Tensor;
use common::{assert_close, node, run_with, try_run_with, values};

fn string(v: &str) -> Attribute {
    Attribute::String(v.into())
}

/// A Resize with X, roi, scales and, when `sizes`, sizes.
fn resize(sizes: bool, attributes: Vec<(&str, Attribute)>) -> Node {
    node("Resize", if sizes { 4 } else { 3 }, attributes)
}

/// Separable 2-D interpolation of the last two axes of x ([1, c, h, w]):
/// per axis, each output position's (index, weight) pairs.
fn interpolate(x: &[f32], c: usize, (h, w): (usize, usize), rows: &[Vec<(usize, f64)>], cols: &[Vec<(usize, f64)>]) -> Vec<f64> {
    let mut out = Vec::new();
    for ch in 0..c {
        for r in rows {
            for q in cols {
                out.push(r.iter().flat_map(|&(i, wi)| q.iter().map(move |&(j, wj)| wi * wj * x[(ch * h + i) * w + j] as f64)).sum());
            }
        }
    }
    out
}

/// Linear taps of `input` positions resized to `output`, at source
/// coordinate `source(o)`, neighbours clamped into the axis.
fn linear(input: usize, output: usize, source: impl Fn(f64) -> f64) -> Vec<Vec<(usize, f64)>> {
    (0..output)
        .map(|o| {
            let s = source(o as f64);
            let lo = s.floor();
            let clamp = |i: f64| i.clamp(0.0, input as f64 - 1.0) as usize;
            vec![(clamp(lo), 1.0 - (s - lo)), (clamp(lo + 1.0), s - lo)]
        })
        .collect()
}

#[test]
fn resize_interpolates_like_the_formulas() {
    let x = values(3 * 4 * 5, 31, -1.0, 1.0);
    let shape = [1, 3, 4, 5];
    let none = Tensor::f32(vec![0], vec![]).unwrap();
    // Linear, half_pixel, to sizes [1, 3, 7, 3].
    let sizes = Tensor::i64(vec![4], vec![1, 3, 7, 3]).unwrap();
    let out = run_with(&resize(true, vec![("mode", string("linear"))]), 13, &[Some((&shape, &x))], &[None, Some(&none), Some(&none), Some(&sizes)]);
    assert_eq!(out[0].0, [1, 3, 7, 3]);
    let rows = linear(4, 7, |o| (o + 0.5) * 4.0 / 7.0 - 0.5);
    let cols = linear(5, 3, |o| (o + 0.5) * 5.0 / 3.0 - 0.5);
    assert_close("linear half_pixel", &out[0].1, &interpolate(&x, 3, (4, 5), &rows, &cols));
    // Linear, align_corners, by scales [1, 1, 2, 1.5].
    let scales = Tensor::f32(vec![4], vec![1.0, 1.0, 2.0, 1.5]).unwrap();
    let n = resize(false, vec![("mode", string("linear")), ("coordinate_transformation_mode", string("align_corners"))]);
    let out = run_with(&n, 13, &[Some((&shape, &x))], &[None, Some(&none), Some(&scales)]);
    assert_eq!(out[0].0, [1, 3, 8, 7]);
    let rows = linear(4, 8, |o| o * 3.0 / 7.0);
    let cols = linear(5, 7, |o| o * 4.0 / 6.5);
    assert_close("linear align_corners", &out[0].1, &interpolate(&x, 3, (4, 5), &rows, &cols));
    // Nearest, asymmetric, floor: the source coordinate o / scale.
    let n = resize(false, vec![("coordinate_transformation_mode", string("asymmetric")), ("nearest_mode", string("floor"))]);
    let out = run_with(&n, 13, &[Some((&shape, &x))], &[None, Some(&none), Some(&scales)]);
    let pick = |input: usize, output: usize, scale: f64| -> Vec<Vec<(usize, f64)>> { (0..output).map(|o| vec![(((o as f64 / scale).floor() as usize).min(input - 1), 1.0)]).collect() };
    assert_close("nearest asymmetric", &out[0].1, &interpolate(&x, 3, (4, 5), &pick(4, 8, 2.0), &pick(5, 7, 1.5)));
    let n = resize(false, vec![("coordinate_transformation_mode", string("tf_crop_and_resize"))]);
    let error = try_run_with(&n, 13, &[Some((&shape, &x))], &[None, Some(&none), Some(&scales)]).unwrap_err();
    assert!(error.to_string().contains("tf_crop_and_resize"), "{error}");
    let unknown = byob_webgpu::create_kernel(&common::context(), &resize(false, vec![]), 13, &[shape.to_vec(), vec![0], vec![4]]).unwrap_err();
    assert!(unknown.to_string().contains("must be a constant"), "{unknown}");
}
