//! The reductions, LayerNormalization, RMSNormalization and Gelu, against
//! f64 references.

mod common;

use byob_tensor::model::Attribute;
use byob_tensor::Tensor;
use common::{assert_close, context, ints, node, run, run_with, try_run_with, values};

/// Each reduction's f64 reference over a list of values.
fn reduce(op: &str, v: &[f64]) -> f64 {
    let sum = |f: fn(f64) -> f64| v.iter().map(|&x| f(x)).sum::<f64>();
    match op {
        "ReduceSum" => sum(|x| x),
        "ReduceMean" => sum(|x| x) / v.len() as f64,
        "ReduceMax" => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "ReduceMin" => v.iter().copied().fold(f64::INFINITY, f64::min),
        "ReduceProd" => v.iter().product(),
        "ReduceL1" => sum(f64::abs),
        "ReduceL2" => sum(|x| x * x).sqrt(),
        "ReduceSumSquare" => sum(|x| x * x),
        "ReduceLogSum" => sum(|x| x).ln(),
        "ReduceLogSumExp" => sum(f64::exp).ln(),
        _ => unreachable!("{op}"),
    }
}

const OPS: [&str; 10] = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp"];

#[test]
fn reductions_match_f64() {
    // [2, 3, 70]: the reduced rows are longer than a workgroup.
    let shape = [2, 3, 70];
    let x = values(420, 11, 0.9, 1.1);
    let at = |i: usize, j: usize, k: usize| x[(i * 3 + j) * 70 + k] as f64;
    for op in OPS {
        // Axes 0 and 2 as an attribute (opset 13; ReduceSum's are an input there).
        let opset = if op == "ReduceSum" { 11 } else { 13 };
        let out = run(&node(op, 1, vec![("axes", ints(&[0, -1]))]), opset, &[Some((&shape, &x))]);
        assert_eq!(out[0].0, [1, 3, 1], "{op}");
        let want: Vec<f64> = (0..3).map(|j| reduce(op, &(0..2).flat_map(|i| (0..70).map(move |k| (i, k))).map(|(i, k)| at(i, j, k)).collect::<Vec<_>>())).collect();
        assert_close(op, &out[0].1, &want);
        // Opset 18: axis 1 as a constant input, without keepdims.
        let out = run_with(&node(op, 2, vec![("keepdims", Attribute::Int(0))]), 18, &[Some((&shape, &x))], &[None, Some(&Tensor::i64(vec![1], vec![1]).unwrap())]);
        assert_eq!(out[0].0, [2, 70], "{op}");
        let want: Vec<f64> = (0..140).map(|o| reduce(op, &(0..3).map(|j| at(o / 70, j, o % 70)).collect::<Vec<_>>())).collect();
        assert_close(op, &out[0].1, &want);
        // No axes: every axis, or the identity with noop_with_empty_axes.
        let out = run(&node(op, 1, vec![]), 18, &[Some((&shape, &x))]);
        assert_eq!(out[0].0, [1, 1, 1], "{op}");
        assert_close(op, &out[0].1, &[reduce(op, &x.iter().map(|&v| v as f64).collect::<Vec<_>>())]);
        let out = run(&node(op, 1, vec![("noop_with_empty_axes", Attribute::Int(1))]), 18, &[Some((&shape, &x))]);
        assert_close(op, &out[0].1, &x.iter().map(|&v| v as f64).collect::<Vec<_>>());
    }
    // An empty input gives each op's identity.
    for (op, identity) in OPS.into_iter().zip([0.0, f32::NAN, f32::NEG_INFINITY, f32::INFINITY, 1.0, 0.0, 0.0, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY]) {
        let out = run(&node(op, 1, vec![("axes", ints(&[1]))]), 11, &[Some((&[2, 0, 3], &[]))]);
        assert_eq!(out[0].0, [2, 1, 3], "{op}");
        assert!(out[0].1.iter().all(|v| v.to_bits() == identity.to_bits() || (v.is_nan() && identity.is_nan())), "{op}: {:?}", out[0].1);
    }
    let nan = run(&node("ReduceMax", 1, vec![]), 18, &[Some((&[3], &[1.0, f32::NAN, 2.0]))]);
    assert!(nan[0].1[0].is_nan());
    let bad = common::try_run(&node("ReduceMean", 1, vec![("axes", ints(&[3]))]), 13, &[Some((&shape, &x))]).unwrap_err();
    assert!(bad.to_string().contains("out of range"), "{bad}");
    let unknown = byob_webgpu::create_kernel(&context(), &node("ReduceSum", 2, vec![]), 13, &[shape.to_vec(), vec![1]]).unwrap_err();
    assert!(unknown.to_string().contains("must be a constant"), "{unknown}");
}

/// Each row normalised: (x - mean) / sqrt(variance + epsilon), or for RMS
/// x / sqrt(mean square + epsilon); returns the rows and their statistics.
fn normalize(x: &[f32], len: usize, epsilon: f64, rms: bool) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (mut y, mut means, mut invs) = (Vec::new(), Vec::new(), Vec::new());
    for row in x.chunks(len) {
        let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let mean = if rms { 0.0 } else { row.iter().sum::<f64>() / len as f64 };
        let inv = 1.0 / (row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len as f64 + epsilon).sqrt();
        y.extend(row.iter().map(|v| (v - mean) * inv));
        means.push(mean);
        invs.push(inv);
    }
    (y, means, invs)
}

#[test]
fn layer_and_rms_normalization_match_f64() {
    let shape = [2, 3, 80];
    let x = values(480, 13, -2.0, 3.0);
    let (scale, bias) = (values(240, 14, 0.5, 1.5), values(240, 15, -1.0, 1.0));
    // Axis 1: rows of [3, 80], the scale [3, 80], the bias [80] broadcast.
    let mut n = node("LayerNormalization", 3, vec![("axis", Attribute::Int(1)), ("epsilon", Attribute::Float(1e-3))]);
    n.outputs = vec!["y".into(), "mean".into(), "inv".into()];
    let out = run(&n, 17, &[Some((&shape, &x)), Some((&[3, 80], &scale)), Some((&[1, 80], &bias[..80]))]);
    let (y, means, invs) = normalize(&x, 240, 1e-3, false);
    let want: Vec<f64> = y.iter().enumerate().map(|(i, v)| v * scale[i % 240] as f64 + bias[i % 80] as f64).collect();
    assert_close("LayerNormalization", &out[0].1, &want);
    assert_eq!((out[1].0.as_slice(), out[2].0.as_slice()), (&[2, 1, 1][..], &[2, 1, 1][..]));
    assert_close("Mean", &out[1].1, &means);
    assert_close("InvStdDev", &out[2].1, &invs);
    // RMSNormalization (opset 23) along the last axis.
    let out = run(&node("RMSNormalization", 2, vec![]), 23, &[Some((&shape, &x)), Some((&[80], &scale[..80]))]);
    let (y, _, _) = normalize(&x, 80, 1e-5, true);
    assert_close("RMSNormalization", &out[0].1, &y.iter().enumerate().map(|(i, v)| v * scale[i % 80] as f64).collect::<Vec<_>>());
    // A scale varying along the leading axes stays on the CPU.
    let error = byob_webgpu::create_kernel(&context(), &node("LayerNormalization", 2, vec![("axis", Attribute::Int(2))]), 17, &[shape.to_vec(), vec![2, 1, 80]]).unwrap_err();
    assert!(error.to_string().contains("does not read"), "{error}");
}

/// erf by Simpson's rule on 2/√π·exp(-t²), independent of the kernel's.
fn erf(x: f64) -> f64 {
    let steps = 2000;
    let h = x / steps as f64;
    let f = |t: f64| (-t * t).exp();
    let inner: f64 = (1..steps).map(|k| f(k as f64 * h) * if k % 2 == 1 { 4.0 } else { 2.0 }).sum();
    (f(0.0) + inner + f(x)) * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn gelu_matches_both_definitions() {
    let x = values(203, 17, -6.0, 6.0);
    let exact: Vec<f64> = x.iter().map(|&v| 0.5 * v as f64 * (1.0 + erf(v as f64 / 2f64.sqrt()))).collect();
    assert_close("Gelu", &run(&node("Gelu", 1, vec![]), 20, &[Some((&[203], &x))])[0].1, &exact);
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let tanh: Vec<f64> = x.iter().map(|&v| v as f64).map(|v| 0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())).collect();
    let n = node("Gelu", 1, vec![("approximate", Attribute::String("tanh".into()))]);
    assert_close("Gelu tanh", &run(&n, 20, &[Some((&[203], &x))])[0].1, &tanh);
    let n = node("Gelu", 1, vec![("approximate", Attribute::String("fast".into()))]);
    let error = try_run_with(&n, 20, &[Some((&[203], &x))], &[]).unwrap_err();
    assert!(error.to_string().contains("approximate"), "{error}");
}
