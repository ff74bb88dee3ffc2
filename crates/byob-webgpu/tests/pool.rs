//! MaxPool, AveragePool and the global pools against f64 references.

mod common;

use byob_tensor::model::Attribute;
use common::{assert_close, ints, node, run, values};

#[derive(Clone, Default)]
struct Pool {
    x: Vec<usize>,
    kernel: Vec<usize>,
    strides: Option<Vec<usize>>,
    dilations: Option<Vec<usize>>,
    pads: Option<Vec<usize>>,
    ceil_mode: bool,
    include_pad: bool,
    auto_pad: Option<&'static str>,
}

/// Pools over up to three spatial axes, windows resolved per axis.
fn reference(p: &Pool, max: bool, x: &[f32]) -> (Vec<usize>, Vec<f64>) {
    let rank = p.kernel.len();
    let stride = |a: usize| p.strides.as_ref().map_or(1, |s| s[a]);
    let dilation = |a: usize| p.dilations.as_ref().map_or(1, |d| d[a]);
    let mut axes = Vec::new(); // (input, kernel, stride, dilation, pad_begin, pad_end, output)
    for a in 0..rank {
        let (input, k, s, d) = (p.x[2 + a], p.kernel[a], stride(a), dilation(a));
        let extent = d * (k - 1) + 1;
        let (pb, pe, out) = match p.auto_pad {
            Some(mode) => {
                let out = input.div_ceil(s);
                let total = ((out - 1) * s + extent).saturating_sub(input);
                let (small, large) = (total / 2, total - total / 2);
                if mode == "SAME_UPPER" { (small, large, out) } else { (large, small, out) }
            }
            None => {
                let (pb, pe) = p.pads.as_ref().map_or((0, 0), |v| (v[a], v[rank + a]));
                let span = input + pb + pe - extent;
                let mut out = if p.ceil_mode { span.div_ceil(s) + 1 } else { span / s + 1 };
                if p.ceil_mode && (out - 1) * s >= input + pb {
                    out -= 1;
                }
                (pb, pe, out)
            }
        };
        axes.push((input, k, s, d, pb, pe, out));
    }
    while axes.len() < 3 {
        axes.insert(0, (1, 1, 1, 1, 0, 0, 1));
    }
    let planes = p.x[0] * p.x[1];
    let mut out = Vec::new();
    for plane in 0..planes {
        for o0 in 0..axes[0].6 {
            for o1 in 0..axes[1].6 {
                for o2 in 0..axes[2].6 {
                    let (mut acc, mut inside, mut padded) = (if max { f64::NEG_INFINITY } else { 0.0 }, 0, 0);
                    for k0 in 0..axes[0].1 {
                        for k1 in 0..axes[1].1 {
                            for k2 in 0..axes[2].1 {
                                let pos: Vec<i64> = [(o0, k0), (o1, k1), (o2, k2)].iter().zip(&axes).map(|(&(o, k), a)| (o * a.2 + k * a.3) as i64 - a.4 as i64).collect();
                                if pos.iter().zip(&axes).all(|(&q, a)| q < (a.0 + a.5) as i64) {
                                    padded += 1;
                                }
                                if pos.iter().zip(&axes).all(|(&q, a)| q >= 0 && q < a.0 as i64) {
                                    let v = x[plane * axes[0].0 * axes[1].0 * axes[2].0 + ((pos[0] as usize * axes[1].0) + pos[1] as usize) * axes[2].0 + pos[2] as usize] as f64;
                                    acc = if max { acc.max(v) } else { acc + v };
                                    inside += 1;
                                }
                            }
                        }
                    }
                    out.push(if max { acc } else { acc / if p.include_pad { padded } else { inside } as f64 });
                }
            }
        }
    }
    let mut shape = p.x[..2].to_vec();
    shape.extend(axes[3 - rank..].iter().map(|a| a.6));
    (shape, out)
}

fn attributes(p: &Pool, max: bool) -> Vec<(&'static str, Attribute)> {
    let as_ints = |v: &[usize]| ints(&v.iter().map(|&x| x as i64).collect::<Vec<_>>());
    let mut attributes = vec![("kernel_shape", as_ints(&p.kernel))];
    for (name, v) in [("strides", &p.strides), ("dilations", &p.dilations), ("pads", &p.pads)] {
        if let Some(v) = v {
            attributes.push((name, as_ints(v)));
        }
    }
    attributes.push(("ceil_mode", Attribute::Int(p.ceil_mode as i64)));
    if !max {
        attributes.push(("count_include_pad", Attribute::Int(p.include_pad as i64)));
    }
    if let Some(mode) = p.auto_pad {
        attributes.push(("auto_pad", Attribute::String(mode.into())));
    }
    attributes
}

#[test]
fn windowed_pools_match_the_reference() {
    let cases = [
        Pool { x: vec![1, 2, 7, 6], kernel: vec![3, 3], strides: Some(vec![2, 1]), pads: Some(vec![1, 0, 1, 2]), include_pad: true, ..Default::default() },
        Pool { x: vec![2, 3, 9, 9], kernel: vec![3, 3], strides: Some(vec![2, 2]), pads: Some(vec![1, 1, 1, 1]), ..Default::default() },
        Pool { x: vec![1, 2, 5, 6], kernel: vec![2, 3], strides: Some(vec![2, 2]), pads: Some(vec![1, 1, 1, 1]), ceil_mode: true, include_pad: true, ..Default::default() },
        Pool { x: vec![1, 2, 8, 7], kernel: vec![2, 2], dilations: Some(vec![2, 3]), ceil_mode: true, ..Default::default() },
        Pool { x: vec![1, 3, 7, 8], kernel: vec![3, 2], strides: Some(vec![2, 2]), auto_pad: Some("SAME_UPPER"), include_pad: true, ..Default::default() },
        Pool { x: vec![1, 3, 7, 8], kernel: vec![3, 3], strides: Some(vec![2, 3]), auto_pad: Some("SAME_LOWER"), ..Default::default() },
        Pool { x: vec![1, 2, 10], kernel: vec![4], strides: Some(vec![2]), pads: Some(vec![1, 1]), ceil_mode: true, include_pad: true, ..Default::default() },
        Pool { x: vec![1, 1, 5, 4, 4], kernel: vec![2, 2, 2], dilations: Some(vec![2, 1, 1]), pads: Some(vec![1, 1, 1, 1, 1, 1]), include_pad: true, ..Default::default() },
    ];
    for (seed, p) in cases.iter().enumerate() {
        let x = values(p.x.iter().product(), seed as u64, -2.0, 2.0);
        for (op, max) in [("MaxPool", true), ("AveragePool", false)] {
            let (shape, want) = reference(p, max, &x);
            let out = run(&node(op, 1, attributes(p, max)), 12, &[Some((&p.x, &x))]);
            assert_eq!(out[0].0, shape, "{op} case {seed}");
            assert_close(&format!("{op} case {seed}"), &out[0].1, &want);
        }
    }
}

#[test]
fn global_pools_reduce_each_plane() {
    for (seed, shape) in [vec![2, 3, 5, 7], vec![1, 2, 50, 50], vec![3, 1, 9]].into_iter().enumerate() {
        let x = values(shape.iter().product(), seed as u64, -2.0, 2.0);
        let size: usize = shape[2..].iter().product();
        let mut out_shape = shape[..2].to_vec();
        out_shape.resize(shape.len(), 1);
        for (op, max) in [("GlobalMaxPool", true), ("GlobalAveragePool", false)] {
            let want: Vec<f64> = x.chunks(size).map(|plane| if max { plane.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max) } else { plane.iter().map(|&v| v as f64).sum::<f64>() / size as f64 }).collect();
            let out = run(&node(op, 1, vec![]), 13, &[Some((&shape, &x))]);
            assert_eq!(out[0].0, out_shape);
            assert_close(&format!("{op} {shape:?}"), &out[0].1, &want);
        }
    }
}
