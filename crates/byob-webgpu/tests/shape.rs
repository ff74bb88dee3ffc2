//! Transpose, the view ops, Concat, Softmax and BatchNormalization.

mod common;

use byob_tensor::model::Attribute;
use byob_tensor::Tensor;
use byob_webgpu::{create_kernel, create_kernel_with_values, supports, GpuContext, GpuError};
use common::{assert_close, context, ints, node, run, values};

fn exact(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

#[test]
fn transpose_permutes_axes() {
    let shape = [2, 3, 4, 5];
    let x = values(120, 1, -1.0, 1.0);
    let at = |i: usize, j: usize, k: usize, l: usize| x[((i * 3 + j) * 4 + k) * 5 + l] as f64;
    let out = run(&node("Transpose", 1, vec![("perm", ints(&[2, 0, 3, 1]))]), 13, &[Some((&shape, &x))]);
    assert_eq!(out[0].0, [4, 2, 5, 3]);
    let mut want = Vec::new();
    for k in 0..4 {
        for i in 0..2 {
            for l in 0..5 {
                for j in 0..3 {
                    want.push(at(i, j, k, l));
                }
            }
        }
    }
    assert_close("Transpose perm", &out[0].1, &want);
    let out = run(&node("Transpose", 1, vec![]), 13, &[Some((&[3, 7], &x[..21]))]);
    assert_eq!(out[0].0, [7, 3]);
    assert_close("Transpose default", &out[0].1, &(0..21).map(|i| x[(i % 3) * 7 + i / 3] as f64).collect::<Vec<_>>());
    let error = create_kernel(&context(), &node("Transpose", 1, vec![("perm", ints(&[0, 0]))]), 13, &[vec![2, 2]]).unwrap_err();
    assert!(error.to_string().contains("not a permutation"), "{error}");
}

/// Builds a view op with constant inputs and checks its shape, aliasing
/// and copy.
fn view(ctx: &GpuContext, op: &str, opset: i64, x_shape: &[usize], constant: Option<Tensor>, attributes: Vec<(&str, Attribute)>) -> Result<Vec<usize>, GpuError> {
    let inputs = if constant.is_some() { 2 } else { 1 };
    let n = node(op, inputs, attributes);
    let mut shapes = vec![x_shape.to_vec()];
    shapes.extend(constant.as_ref().map(|t| t.shape().to_vec()));
    let kernel = create_kernel_with_values(ctx, &n, opset, &shapes, &[None, constant.as_ref()])?;
    assert_eq!(kernel.aliases(), Some(0), "{op}");
    Ok(kernel.output_shapes()[0].clone())
}

#[test]
fn views_reshape_without_changing_bytes() {
    let ctx = context();
    let shape_of = |v: &[i64]| Some(Tensor::i64(vec![v.len()], v.to_vec()).unwrap());
    assert_eq!(view(&ctx, "Reshape", 14, &[2, 3, 4], shape_of(&[0, -1]), vec![]).unwrap(), [2, 12]);
    assert_eq!(view(&ctx, "Reshape", 14, &[2, 3, 4], shape_of(&[4, 0, 2]), vec![]).unwrap(), [4, 3, 2]);
    assert!(view(&ctx, "Reshape", 14, &[2, 3, 4], shape_of(&[5, -1]), vec![]).unwrap_err().to_string().contains("cannot reshape"));
    let missing = create_kernel(&ctx, &node("Reshape", 2, vec![]), 14, &[vec![2, 3], vec![2]]).unwrap_err();
    assert!(missing.to_string().contains("must be a constant"), "{missing}");
    assert_eq!(view(&ctx, "Flatten", 13, &[2, 3, 4, 5], None, vec![("axis", Attribute::Int(2))]).unwrap(), [6, 20]);
    assert_eq!(view(&ctx, "Flatten", 13, &[2, 3, 4], None, vec![("axis", Attribute::Int(0))]).unwrap(), [1, 24]);
    assert_eq!(view(&ctx, "Squeeze", 11, &[1, 3, 1, 2], None, vec![("axes", ints(&[0]))]).unwrap(), [3, 1, 2]);
    assert_eq!(view(&ctx, "Squeeze", 13, &[1, 3, 1, 2], shape_of(&[-2, 0]), vec![]).unwrap(), [3, 2]);
    assert_eq!(view(&ctx, "Squeeze", 13, &[1, 3, 1, 2], None, vec![]).unwrap(), [3, 2]);
    assert_eq!(view(&ctx, "Unsqueeze", 11, &[3, 2], None, vec![("axes", ints(&[0, 3]))]).unwrap(), [1, 3, 2, 1]);
    assert_eq!(view(&ctx, "Unsqueeze", 13, &[3, 2], shape_of(&[-1]), vec![]).unwrap(), [3, 2, 1]);
    assert_eq!(view(&ctx, "Identity", 13, &[3, 2], None, vec![]).unwrap(), [3, 2]);
    assert_eq!(view(&ctx, "Dropout", 13, &[3, 2], None, vec![]).unwrap(), [3, 2]);
    // Encoded, a view copies (four values at a time, or one).
    for len in [12, 7] {
        let x = values(len, 4, -1.0, 1.0);
        let out = run(&node("Identity", 1, vec![]), 13, &[Some((&[len], &x))]);
        assert_eq!(out[0].1, x);
    }
    let x = values(24, 5, -1.0, 1.0);
    let out = run(&node("Flatten", 1, vec![]), 13, &[Some((&[2, 3, 4], &x))]);
    assert_eq!((out[0].0.clone(), out[0].1.clone()), (vec![2, 12], x));
}

#[test]
fn concat_stacks_along_an_axis() {
    let (a, b, c) = (values(2 * 3, 1, -1.0, 1.0), values(2 * 4 * 3, 2, -1.0, 1.0), values(2 * 2 * 3, 3, -1.0, 1.0));
    let empty: [f32; 0] = [];
    let n = node("Concat", 4, vec![("axis", Attribute::Int(-2))]);
    let out = run(&n, 13, &[Some((&[2, 1, 3], &a)), Some((&[2, 0, 3], &empty)), Some((&[2, 4, 3], &b)), Some((&[2, 2, 3], &c))]);
    assert_eq!(out[0].0, [2, 7, 3]);
    let mut want = Vec::new();
    for batch in 0..2 {
        want.extend_from_slice(&a[batch * 3..batch * 3 + 3]);
        want.extend_from_slice(&b[batch * 12..batch * 12 + 12]);
        want.extend_from_slice(&c[batch * 6..batch * 6 + 6]);
    }
    assert_eq!(out[0].1, want);
    let error = create_kernel(&context(), &node("Concat", 2, vec![("axis", Attribute::Int(0))]), 13, &[vec![2, 3], vec![2, 4]]).unwrap_err();
    assert!(error.to_string().contains("does not fit"), "{error}");
}

fn softmax(rows: &[f64]) -> Vec<f64> {
    let m = rows.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = rows.iter().map(|v| (v - m).exp()).sum();
    rows.iter().map(|v| (v - m).exp() / s).collect()
}

#[test]
fn softmax_semantics_change_at_opset_13() {
    let shape = [2, 3, 70];
    let x = values(2 * 3 * 70, 6, -4.0, 4.0);
    let xs = exact(&x);
    // Opset 11, axis 1: each batch entry's 210 values form one row.
    let out = run(&node("Softmax", 1, vec![("axis", Attribute::Int(1))]), 11, &[Some((&shape, &x))]);
    let want: Vec<f64> = xs.chunks(210).flat_map(softmax).collect();
    assert_close("Softmax opset 11", &out[0].1, &want);
    // Opset 13, axis 1: along the 3 channels only.
    let out = run(&node("Softmax", 1, vec![("axis", Attribute::Int(1))]), 13, &[Some((&shape, &x))]);
    let mut want = vec![0.0; xs.len()];
    for b in 0..2 {
        for i in 0..70 {
            let row: Vec<f64> = (0..3).map(|c| xs[(b * 3 + c) * 70 + i]).collect();
            for (c, v) in softmax(&row).into_iter().enumerate() {
                want[(b * 3 + c) * 70 + i] = v;
            }
        }
    }
    assert_close("Softmax opset 13", &out[0].1, &want);
    // The default axis: the last.
    let out = run(&node("Softmax", 1, vec![]), 13, &[Some((&shape, &x))]);
    assert_close("Softmax last axis", &out[0].1, &xs.chunks(70).flat_map(softmax).collect::<Vec<_>>());
}

#[test]
fn batch_normalization_uses_the_running_statistics() {
    let shape = [2, 3, 4, 5];
    let x = values(120, 7, -2.0, 2.0);
    let (scale, bias, mean) = (values(3, 8, 0.5, 1.5), values(3, 9, -1.0, 1.0), values(3, 10, -0.5, 0.5));
    let var = values(3, 11, 0.1, 2.0);
    let epsilon = 1e-3f32;
    let out = run(
        &node("BatchNormalization", 5, vec![("epsilon", Attribute::Float(epsilon))]),
        15,
        &[Some((&shape, &x)), Some((&[3], &scale)), Some((&[3], &bias)), Some((&[3], &mean)), Some((&[3], &var))],
    );
    let want: Vec<f64> = (0..120)
        .map(|i| {
            let c = (i / 20) % 3;
            (x[i] as f64 - mean[c] as f64) * scale[c] as f64 / (var[c] as f64 + epsilon as f64).sqrt() + bias[c] as f64
        })
        .collect();
    assert_close("BatchNormalization", &out[0].1, &want);
}

#[test]
fn unsupported_ops_are_reported() {
    let ctx = context();
    assert!(supports(&node("Conv", 2, vec![]), 13) && !supports(&node("LSTM", 3, vec![]), 13));
    let error = create_kernel(&ctx, &node("LSTM", 3, vec![]), 13, &[vec![1], vec![1], vec![1]]).unwrap_err();
    assert_eq!(error, GpuError::Unsupported { op: "LSTM".into(), opset: 13 });
    let error = create_kernel(&ctx, &node("Relu", 1, vec![]), 13, &[]).unwrap_err();
    assert!(error.to_string().contains("no shape given for input 0"), "{error}");
}

#[test]
fn programs_are_shared_across_shapes() {
    let ctx = pollster::block_on(GpuContext::new()).unwrap();
    for len in [8, 16, 1024] {
        create_kernel(&ctx, &node("Relu", 1, vec![]), 13, &[vec![len]]).unwrap();
    }
    create_kernel(&ctx, &node("Relu", 1, vec![]), 13, &[vec![7]]).unwrap();
    let c = ctx.programs().counters();
    // One program for lengths divisible by four, one for the rest.
    assert_eq!((c.compiled, c.hits), (2, 2));
}
