//! Unary functions, broadcasting binary ops and Sum against f64 references.

mod common;

use byob_tensor::model::Attribute;
use byob_tensor::Tensor;
use byob_webgpu::{create_kernel_with_values, GpuError};
use common::{assert_close, context, node, run, values};

fn unary_reference(op: &str, x: f64) -> f64 {
    match op {
        "Abs" => x.abs(),
        "Neg" => -x,
        "Floor" => x.floor(),
        "Ceil" => x.ceil(),
        "Reciprocal" => 1.0 / x,
        "Sqrt" => x.sqrt(),
        "Exp" => x.exp(),
        "Log" => x.ln(),
        "Erf" => libm::erf(x),
        "Sigmoid" => 1.0 / (1.0 + (-x).exp()),
        "Sin" => x.sin(),
        "Cos" => x.cos(),
        "Tan" => x.tan(),
        "Asin" => x.asin(),
        "Acos" => x.acos(),
        "Atan" => x.atan(),
        "Sinh" => x.sinh(),
        "Cosh" => x.cosh(),
        "Asinh" => x.asinh(),
        "Acosh" => x.acosh(),
        "Atanh" => x.atanh(),
        "Tanh" => x.tanh(),
        "Relu" => x.max(0.0),
        _ => unreachable!("{op}"),
    }
}

#[test]
fn unary_functions_match_the_reference() {
    let ops = [
        ("Abs", -3.0, 3.0),
        ("Neg", -3.0, 3.0),
        ("Floor", -3.0, 3.0),
        ("Ceil", -3.0, 3.0),
        ("Reciprocal", 0.2, 3.0),
        ("Sqrt", 0.0, 5.0),
        ("Exp", -4.0, 4.0),
        ("Log", 0.05, 5.0),
        ("Erf", -3.0, 3.0),
        ("Sigmoid", -8.0, 8.0),
        ("Sin", -3.0, 3.0),
        ("Cos", -3.0, 3.0),
        ("Tan", -1.2, 1.2),
        ("Asin", -0.95, 0.95),
        ("Acos", -0.95, 0.95),
        ("Atan", -4.0, 4.0),
        ("Sinh", -3.0, 3.0),
        ("Cosh", -3.0, 3.0),
        ("Asinh", -4.0, 4.0),
        ("Acosh", 1.05, 5.0),
        ("Atanh", -0.9, 0.9),
        ("Tanh", -4.0, 4.0),
        ("Relu", -3.0, 3.0),
    ];
    for (seed, (op, lo, hi)) in ops.into_iter().enumerate() {
        // 1003: one value per invocation; 1024: four.
        for len in [1003, 1024] {
            let x = values(len, seed as u64, lo, hi);
            let want: Vec<f64> = x.iter().map(|&v| unary_reference(op, v as f64)).collect();
            let out = run(&node(op, 1, vec![]), 13, &[Some((&[len], &x))]);
            assert_eq!(out[0].0, [len]);
            assert_close(&format!("{op} over {len}"), &out[0].1, &want);
        }
    }
}

#[test]
fn parameterised_functions_use_their_attributes() {
    let x = values(2 * 3 * 7, 3, -3.0, 3.0);
    let shape = [2, 3, 7];
    type Case = (&'static str, Vec<(&'static str, Attribute)>, Box<dyn Fn(f64) -> f64>);
    let cases: Vec<Case> = vec![
        ("LeakyRelu", vec![], Box::new(|v| if v >= 0.0 { v } else { 0.01 * v })),
        ("LeakyRelu", vec![("alpha", Attribute::Float(0.3))], Box::new(|v| if v >= 0.0 { v } else { 0.3 * v })),
        ("Elu", vec![("alpha", Attribute::Float(0.5))], Box::new(|v| if v >= 0.0 { v } else { 0.5 * (v.exp() - 1.0) })),
        ("HardSigmoid", vec![], Box::new(|v| (0.2 * v + 0.5).clamp(0.0, 1.0))),
        ("HardSigmoid", vec![("alpha", Attribute::Float(0.4)), ("beta", Attribute::Float(0.1))], Box::new(|v| (0.4 * v + 0.1).clamp(0.0, 1.0))),
        ("ThresholdedRelu", vec![("alpha", Attribute::Float(0.7))], Box::new(|v| if v > 0.7 { v } else { 0.0 })),
        ("Clip", vec![("min", Attribute::Float(-1.0)), ("max", Attribute::Float(0.5))], Box::new(|v| v.clamp(-1.0, 0.5))),
    ];
    for (op, attributes, reference) in cases {
        let out = run(&node(op, 1, attributes), 6, &[Some((&shape, &x))]);
        assert_close(op, &out[0].1, &x.iter().map(|&v| reference(v as f64)).collect::<Vec<_>>());
    }
}

#[test]
fn clip_takes_bounds_from_inputs_from_opset_11() {
    let x = values(45, 5, -3.0, 3.0);
    let (lo, hi) = ([-0.5f32], [1.25f32]);
    let want = |lo: f64, hi: f64| x.iter().map(|&v| (v as f64).max(lo).min(hi)).collect::<Vec<_>>();
    // Bounds as buffers.
    let out = run(&node("Clip", 3, vec![]), 13, &[Some((&[45], &x)), Some((&[], &lo)), Some((&[], &hi))]);
    assert_close("Clip with both bounds", &out[0].1, &want(-0.5, 1.25));
    // Only the maximum: the minimum input omitted.
    let mut only_max = node("Clip", 3, vec![]);
    only_max.inputs[1].clear();
    let out = run(&only_max, 13, &[Some((&[45], &x)), None, Some((&[1], &hi))]);
    assert_close("Clip with a maximum", &out[0].1, &want(f64::MIN, 1.25));
    // Constant bounds are folded into the kernel.
    let ctx = context();
    let (lo_t, hi_t) = (Tensor::scalar_f32(-0.5), Tensor::scalar_f32(1.25));
    let kernel = create_kernel_with_values(&ctx, &node("Clip", 3, vec![]), 13, &[vec![45], vec![], vec![]], &[None, Some(&lo_t), Some(&hi_t)]).unwrap();
    assert_eq!(kernel.output_shapes(), [vec![45]]);
    let error = run_err(&node("Clip", 3, vec![]), 13, &[vec![45], vec![2], vec![]]);
    assert!(error.to_string().contains("input 1 (a bound) must hold one value"), "{error}");
}

fn run_err(n: &byob_tensor::model::Node, opset: i64, shapes: &[Vec<usize>]) -> GpuError {
    byob_webgpu::create_kernel(&context(), n, opset, shapes).unwrap_err()
}

fn broadcast_reference(op: &str, a: &[f32], a_shape: &[usize], b: &[f32], b_shape: &[usize]) -> (Vec<usize>, Vec<f64>) {
    let rank = a_shape.len().max(b_shape.len());
    let pad = |s: &[usize]| [vec![1; rank - s.len()], s.to_vec()].concat();
    let (pa, pb) = (pad(a_shape), pad(b_shape));
    let out: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
    let n: usize = out.iter().product();
    let index = |shape: &[usize], coords: &[usize]| coords.iter().zip(shape).fold(0, |acc, (&c, &d)| acc * d + if d == 1 { 0 } else { c });
    let values = (0..n)
        .map(|i| {
            let mut coords = vec![0; rank];
            let mut rest = i;
            for axis in (0..rank).rev() {
                coords[axis] = rest % out[axis];
                rest /= out[axis];
            }
            let (x, y) = (a[index(&pa, &coords)] as f64, b[index(&pb, &coords)] as f64);
            match op {
                "Add" => x + y,
                "Sub" => x - y,
                "Mul" => x * y,
                "Div" => x / y,
                "Pow" => x.powf(y),
                _ => unreachable!(),
            }
        })
        .collect();
    (out, values)
}

#[test]
fn binary_ops_broadcast() {
    let shapes: [(&[usize], &[usize]); 7] = [(&[3, 4, 5], &[3, 4, 5]), (&[2, 3, 4], &[4]), (&[2, 1, 4], &[3, 1]), (&[1], &[5, 7]), (&[], &[2, 3]), (&[6, 1, 1, 2, 1, 3], &[5, 1, 1, 1]), (&[7], &[7])];
    for (seed, op) in ["Add", "Sub", "Mul", "Div", "Pow"].into_iter().enumerate() {
        for (i, (sa, sb)) in shapes.iter().enumerate() {
            let a = values(sa.iter().product(), (seed * 10 + i) as u64, 0.5, 2.0);
            let b = values(sb.iter().product(), (seed * 10 + i + 100) as u64, -2.0, 2.0);
            let (shape, want) = broadcast_reference(op, &a, sa, &b, sb);
            let out = run(&node(op, 2, vec![]), 14, &[Some((sa, &a)), Some((sb, &b))]);
            assert_eq!(out[0].0, shape, "{op} {sa:?} {sb:?}");
            assert_close(&format!("{op} {sa:?} {sb:?}"), &out[0].1, &want);
        }
    }
    let error = run_err(&node("Add", 2, vec![]), 14, &[vec![2, 3], vec![4]]);
    assert!(matches!(&error, GpuError::Kernel { node, .. } if node == "test_Add") && error.to_string().contains("do not broadcast"), "{error}");
}

#[test]
fn pow_of_negative_bases_takes_integer_exponents() {
    let a = [-2.0f32, -2.0, -3.0, 0.0, 0.0, 4.0, -1.5, 2.0];
    let b = [2.0f32, 3.0, -1.0, 2.0, 0.0, 0.5, 0.5, -2.0];
    let out = run(&node("Pow", 2, vec![]), 15, &[Some((&[8], &a)), Some((&[8], &b))]);
    let want: Vec<f64> = a.iter().zip(&b).map(|(&x, &y)| (x as f64).powf(y as f64)).collect();
    assert_close("Pow", &out[0].1, &want);
}

#[test]
fn sum_adds_any_number_of_broadcast_inputs() {
    let (a, b, c) = (values(6, 1, -1.0, 1.0), values(3, 2, -1.0, 1.0), values(2, 3, -1.0, 1.0));
    let out = run(&node("Sum", 3, vec![]), 13, &[Some((&[2, 3], &a)), Some((&[3], &b)), Some((&[2, 1], &c))]);
    let want: Vec<f64> = (0..6).map(|i| a[i] as f64 + b[i % 3] as f64 + c[i / 3] as f64).collect();
    assert_close("Sum of three", &out[0].1, &want);
    let out = run(&node("Sum", 1, vec![]), 13, &[Some((&[2, 3], &a))]);
    assert_close("Sum of one", &out[0].1, &a.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let d = values(16, 4, -1.0, 1.0);
    let out = run(&node("Sum", 2, vec![]), 13, &[Some((&[4, 4], &d)), Some((&[4, 4], &d))]);
    assert_close("Sum, four at a time", &out[0].1, &d.iter().map(|&v| 2.0 * v as f64).collect::<Vec<_>>());
}

#[test]
fn dispatches_beyond_the_grid_limit_are_folded() {
    let ctx = context();
    let limit = ctx.limits().max_compute_workgroups_per_dimension as usize;
    // One value per invocation, 64 per workgroup: more workgroups than a
    // dimension holds.
    let len = limit * 64 + 64 * 3 + 1;
    let x = values(len, 9, -1.0, 1.0);
    let out = run(&node("Relu", 1, vec![]), 13, &[Some((&[len], &x))]);
    assert!(out[0].1.iter().zip(&x).all(|(&y, &v)| y == v.max(0.0)));
}
