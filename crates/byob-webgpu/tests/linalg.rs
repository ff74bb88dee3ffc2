//! MatMul, Gemm and Conv on the tiled engine against f64 references, over
//! shapes that hit every loading variant and both tile sizes.

mod common;

use byob_tensor::model::Attribute;
use byob_webgpu::{create_kernel, GpuError};
use common::{assert_close, context, ints, node, run, values};

/// Row-major C = A·B over batches (NumPy broadcasting of batch dims).
fn matmul_reference(a: &[f32], a_shape: &[usize], b: &[f32], b_shape: &[usize]) -> (Vec<usize>, Vec<f64>) {
    let a2: Vec<usize> = if a_shape.len() == 1 { vec![1, a_shape[0]] } else { a_shape.to_vec() };
    let b2: Vec<usize> = if b_shape.len() == 1 { vec![b_shape[0], 1] } else { b_shape.to_vec() };
    let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let rank = ab.len().max(bb.len());
    let pad = |s: &[usize]| [vec![1; rank - s.len()], s.to_vec()].concat();
    let (pa, pb) = (pad(ab), pad(bb));
    let batch: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
    let batches: usize = batch.iter().product();
    let mut out = Vec::new();
    for z in 0..batches {
        let mut rest = z;
        let (mut ia, mut ib) = (0, 0);
        let (mut sa, mut sb) = (1, 1);
        for axis in (0..rank).rev() {
            let c = rest % batch[axis];
            rest /= batch[axis];
            ia += if pa[axis] == 1 { 0 } else { c * sa };
            ib += if pb[axis] == 1 { 0 } else { c * sb };
            sa *= pa[axis];
            sb *= pb[axis];
        }
        for i in 0..m {
            for j in 0..n {
                out.push((0..k).map(|p| a[ia * m * k + i * k + p] as f64 * b[ib * k * n + p * n + j] as f64).sum());
            }
        }
    }
    let mut shape = batch;
    if a_shape.len() > 1 {
        shape.push(m);
    }
    if b_shape.len() > 1 {
        shape.push(n);
    }
    (shape, out)
}

#[test]
fn matmul_follows_numpy() {
    let cases: [(&[usize], &[usize]); 9] = [
        (&[5, 7], &[7, 3]),
        (&[2, 3, 33, 17], &[17, 9]),
        (&[4], &[4, 6]),
        (&[3, 8], &[8]),
        (&[6], &[6]),
        (&[64, 64], &[64, 64]),
        (&[1, 2, 16, 32], &[3, 1, 32, 20]),
        (&[260, 70], &[70, 264]),
        (&[257, 64], &[64, 300]),
    ];
    for (seed, (sa, sb)) in cases.into_iter().enumerate() {
        let a = values(sa.iter().product(), seed as u64, -1.0, 1.0);
        let b = values(sb.iter().product(), seed as u64 + 50, -1.0, 1.0);
        let (shape, want) = matmul_reference(&a, sa, &b, sb);
        let out = run(&node("MatMul", 2, vec![]), 13, &[Some((sa, &a)), Some((sb, &b))]);
        assert_eq!(out[0].0, shape, "{sa:?} x {sb:?}");
        assert_close(&format!("MatMul {sa:?} x {sb:?}"), &out[0].1, &want);
    }
}

fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols * rows).map(|i| x[(i % rows) * cols + i / rows]).collect()
}

#[test]
fn gemm_transposes_scales_and_adds_c() {
    // (M, K, N, transA, transB, C shape)
    type Case = (usize, usize, usize, bool, bool, Option<&'static [usize]>);
    let cases: [Case; 8] = [
        (13, 10, 7, false, false, None),
        (13, 10, 7, true, false, Some(&[7])),
        (13, 10, 7, false, true, Some(&[13, 1])),
        (13, 10, 7, true, true, Some(&[13, 7])),
        (36, 20, 44, false, false, Some(&[1])),
        (36, 20, 44, true, true, Some(&[44])),
        (300, 40, 260, false, true, Some(&[260])),
        (264, 36, 256, true, false, None),
    ];
    for (seed, (m, k, n, ta, tb, c_shape)) in cases.into_iter().enumerate() {
        let (alpha, beta) = (0.75f32, -1.5f32);
        let a = values(m * k, seed as u64, -1.0, 1.0);
        let b = values(k * n, seed as u64 + 7, -1.0, 1.0);
        let c = c_shape.map(|s| values(s.iter().product(), seed as u64 + 9, -1.0, 1.0));
        let (_, product) = matmul_reference(&a, &[m, k], &b, &[k, n]);
        let want: Vec<f64> = (0..m * n)
            .map(|i| {
                let bias = match (c_shape, &c) {
                    (Some(s), Some(c)) => {
                        let (r, col) = (i / n, i % n);
                        let at = match s {
                            [1] => 0,
                            [cn] if *cn == n => col,
                            [_, 1] => r,
                            _ => i,
                        };
                        beta as f64 * c[at] as f64
                    }
                    _ => 0.0,
                };
                alpha as f64 * product[i] + bias
            })
            .collect();
        let (a_in, a_shape) = if ta { (transpose(&a, m, k), [k, m]) } else { (a.clone(), [m, k]) };
        let (b_in, b_shape) = if tb { (transpose(&b, k, n), [n, k]) } else { (b.clone(), [k, n]) };
        let attributes = vec![("alpha", Attribute::Float(alpha)), ("beta", Attribute::Float(beta)), ("transA", Attribute::Int(ta as i64)), ("transB", Attribute::Int(tb as i64))];
        let mut inputs = vec![Some((&a_shape[..], &a_in[..])), Some((&b_shape[..], &b_in[..]))];
        if let (Some(s), Some(c)) = (c_shape, &c) {
            inputs.push(Some((s, c)));
        }
        let out = run(&node("Gemm", inputs.len(), attributes), 13, &inputs);
        assert_eq!(out[0].0, [m, n]);
        assert_close(&format!("Gemm {m}x{k}x{n} transA {ta} transB {tb} C {c_shape:?}"), &out[0].1, &want);
    }
}

#[test]
fn shape_errors_name_the_node() {
    let ctx = context();
    let error = create_kernel(&ctx, &node("MatMul", 2, vec![]), 13, &[vec![2, 3], vec![4, 5]]).unwrap_err();
    assert!(matches!(&error, GpuError::Kernel { op, .. } if op == "MatMul") && error.to_string().contains("inner dimensions differ"), "{error}");
    let error = create_kernel(&ctx, &node("Gemm", 3, vec![]), 13, &[vec![2, 3], vec![3, 5], vec![3, 5]]).unwrap_err();
    assert!(error.to_string().contains("does not broadcast to the output [2, 5]"), "{error}");
    let error = create_kernel(&ctx, &node("Conv", 2, vec![("group", Attribute::Int(3))]), 13, &[vec![1, 4, 5, 5], vec![6, 2, 3, 3]]).unwrap_err();
    assert!(error.to_string().contains("test_Conv") && error.to_string().contains("3 groups"), "{error}");
    let error = create_kernel(&ctx, &node("Conv", 2, vec![("pads", ints(&[1, 1]))]), 13, &[vec![1, 2, 5, 5], vec![2, 2, 3, 3]]).unwrap_err();
    assert!(error.to_string().contains("\"pads\""), "{error}");
}

/// A convolution's attributes, as the test builds them.
#[derive(Clone, Default)]
struct Conv {
    x: Vec<usize>,
    w: Vec<usize>,
    bias: bool,
    group: usize,
    strides: Option<Vec<i64>>,
    dilations: Option<Vec<i64>>,
    pads: Option<Vec<i64>>,
    auto_pad: Option<&'static str>,
}

/// Direct convolution over 2-D (1-D as height 1) in f64.
fn conv_reference(c: &Conv, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> (Vec<usize>, Vec<f64>) {
    let one_d = c.x.len() == 3;
    let lift = |s: &[usize]| if one_d { vec![s[0], s[1], 1, s[2]] } else { s.to_vec() };
    let (xs, ws) = (lift(&c.x), lift(&c.w));
    let spatial = |v: &Option<Vec<i64>>, default: i64| -> [i64; 2] {
        match v {
            None => [default, default],
            Some(v) if one_d => [1, v[0]],
            Some(v) => [v[0], v[1]],
        }
    };
    let (stride, dilation) = (spatial(&c.strides, 1), spatial(&c.dilations, 1));
    let (input, kernel) = ([xs[2] as i64, xs[3] as i64], [ws[2] as i64, ws[3] as i64]);
    let mut pads = [[0i64; 2]; 2];
    for a in 0..2 {
        let extent = dilation[a] * (kernel[a] - 1) + 1;
        pads[a] = match (c.auto_pad, &c.pads) {
            (Some("SAME_UPPER"), _) | (Some("SAME_LOWER"), _) => {
                let out = (input[a] + stride[a] - 1) / stride[a];
                let total = ((out - 1) * stride[a] + extent - input[a]).max(0);
                if c.auto_pad == Some("SAME_UPPER") { [total / 2, total - total / 2] } else { [total - total / 2, total / 2] }
            }
            (_, Some(p)) if one_d => if a == 0 { [0, 0] } else { [p[0], p[1]] },
            (_, Some(p)) => [p[a], p[2 + a]],
            _ => [0, 0],
        };
    }
    let out_size = |a: usize| ((input[a] + pads[a][0] + pads[a][1] - dilation[a] * (kernel[a] - 1) - 1) / stride[a] + 1) as usize;
    let (oh, ow) = (out_size(0), out_size(1));
    let (n, ch, m, cg) = (xs[0], xs[1], ws[0], ws[1]);
    let group = c.group.max(1);
    let mg = m / group;
    let mut out = Vec::new();
    for b in 0..n {
        for o in 0..m {
            let g = o / mg;
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = bias.map_or(0.0, |bias| bias[o] as f64);
                    for ci in 0..cg {
                        for ky in 0..ws[2] {
                            for kx in 0..ws[3] {
                                let iy = y as i64 * stride[0] + ky as i64 * dilation[0] - pads[0][0];
                                let ix = xo as i64 * stride[1] + kx as i64 * dilation[1] - pads[1][0];
                                if iy < 0 || ix < 0 || iy >= input[0] || ix >= input[1] {
                                    continue;
                                }
                                let xv = x[((b * ch + g * cg + ci) * xs[2] + iy as usize) * xs[3] + ix as usize] as f64;
                                acc += xv * w[((o * cg + ci) * ws[2] + ky) * ws[3] + kx] as f64;
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    let shape = if one_d { vec![n, m, ow] } else { vec![n, m, oh, ow] };
    (shape, out)
}

#[test]
fn conv_handles_pads_strides_dilations_and_groups() {
    let cases = [
        Conv { x: vec![1, 3, 9, 10], w: vec![4, 3, 3, 3], pads: Some(vec![1, 1, 1, 1]), ..Default::default() },
        Conv { x: vec![2, 3, 11, 9], w: vec![5, 3, 3, 2], bias: true, strides: Some(vec![2, 1]), dilations: Some(vec![2, 1]), pads: Some(vec![1, 0, 2, 1]), ..Default::default() },
        Conv { x: vec![2, 4, 7, 7], w: vec![6, 2, 3, 3], group: 2, bias: true, pads: Some(vec![1, 1, 1, 1]), ..Default::default() },
        Conv { x: vec![1, 8, 6, 6], w: vec![8, 1, 3, 3], group: 8, strides: Some(vec![2, 2]), pads: Some(vec![1, 1, 1, 1]), ..Default::default() },
        Conv { x: vec![2, 16, 5, 5], w: vec![8, 16, 1, 1], bias: true, ..Default::default() },
        Conv { x: vec![1, 6, 4, 4], w: vec![4, 3, 1, 1], group: 2, ..Default::default() },
        Conv { x: vec![1, 3, 10, 7], w: vec![4, 3, 3, 3], strides: Some(vec![2, 2]), auto_pad: Some("SAME_UPPER"), ..Default::default() },
        Conv { x: vec![1, 3, 10, 7], w: vec![4, 3, 2, 2], auto_pad: Some("SAME_LOWER"), ..Default::default() },
        Conv { x: vec![1, 2, 11], w: vec![3, 2, 3], bias: true, strides: Some(vec![2]), pads: Some(vec![1, 2]), ..Default::default() },
        Conv { x: vec![1, 8, 16, 16], w: vec![256, 8, 3, 3], bias: true, pads: Some(vec![1, 1, 1, 1]), ..Default::default() },
    ];
    for (seed, c) in cases.iter().enumerate() {
        let x = values(c.x.iter().product(), seed as u64, -1.0, 1.0);
        let w = values(c.w.iter().product(), seed as u64 + 20, -1.0, 1.0);
        let bias = c.bias.then(|| values(c.w[0], seed as u64 + 40, -1.0, 1.0));
        let mut attributes = vec![];
        if c.group > 0 {
            attributes.push(("group", Attribute::Int(c.group as i64)));
        }
        for (name, v) in [("strides", &c.strides), ("dilations", &c.dilations), ("pads", &c.pads)] {
            if let Some(v) = v {
                attributes.push((name, ints(v)));
            }
        }
        if let Some(p) = c.auto_pad {
            attributes.push(("auto_pad", Attribute::String(p.into())));
        }
        let (shape, want) = conv_reference(c, &x, &w, bias.as_deref());
        let b_shape = [c.w[0]];
        let mut inputs = vec![Some((&c.x[..], &x[..])), Some((&c.w[..], &w[..]))];
        if let Some(b) = &bias {
            inputs.push(Some((&b_shape[..], &b[..])));
        }
        let out = run(&node("Conv", inputs.len(), attributes), 11, &inputs);
        assert_eq!(out[0].0, shape, "case {seed}");
        assert_close(&format!("Conv case {seed}: x {:?} w {:?}", c.x, c.w), &out[0].1, &want);
    }
}
