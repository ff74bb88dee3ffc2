//! Slice, Pad, Expand, Tile and Split (the shared gather), against
//! references that list each axis's input coordinates by hand.

mod common;

use byob_tensor::model::Attribute;
use byob_tensor::Tensor;
use common::{assert_close, context, ints, node, run, run_with, values};

fn i64s(v: &[i64]) -> Tensor {
    Tensor::i64(vec![v.len()], v.to_vec()).unwrap()
}

/// The reference gather: per axis, the input coordinate each output
/// coordinate reads (`None`: `fill`).
/// Per output coordinate of an axis, the input coordinate it reads.
type Map = Vec<Option<usize>>;

fn reference(x: &[f32], shape: &[usize], maps: &[Map], fill: f32) -> Vec<f64> {
    let out: Vec<usize> = maps.iter().map(Vec::len).collect();
    let n: usize = out.iter().product();
    (0..n)
        .map(|mut i| {
            let mut offset = Some(0);
            for d in (0..out.len()).rev() {
                let c = maps[d][i % out[d]];
                i /= out[d];
                let stride: usize = shape[d + 1..].iter().product();
                offset = offset.zip(c).map(|(o, c)| o + c * stride);
            }
            offset.map_or(fill as f64, |o| x[o] as f64)
        })
        .collect()
}

fn all(n: usize) -> Map {
    (0..n).map(Some).collect()
}

fn some(v: &[usize]) -> Map {
    v.iter().map(|&c| Some(c)).collect()
}

#[test]
fn slice_clamps_and_steps_backwards() {
    let shape = [3, 4, 5];
    let x = values(60, 3, -1.0, 1.0);
    let (starts, ends, axes, steps) = (i64s(&[-1, 1]), i64s(&[-100, 5]), i64s(&[0, -1]), i64s(&[-1, 2]));
    let out = run_with(&node("Slice", 5, vec![]), 13, &[Some((&shape, &x))], &[None, Some(&starts), Some(&ends), Some(&axes), Some(&steps)]);
    assert_eq!(out[0].0, [3, 4, 2]);
    assert_close("Slice steps", &out[0].1, &reference(&x, &shape, &[some(&[2, 1, 0]), all(4), some(&[1, 3])], 0.0));
    // Opset 1: attributes, ends past the axis clamped.
    let legacy = node("Slice", 1, vec![("starts", ints(&[1])), ("ends", ints(&[1000])), ("axes", ints(&[1]))]);
    let out = run(&legacy, 1, &[Some((&[2, 3], &x[..6]))]);
    assert_eq!(out[0].0, [2, 2]);
    assert_close("Slice attributes", &out[0].1, &reference(&x, &[2, 3], &[all(2), some(&[1, 2])], 0.0));
    let zero = common::try_run_with(&node("Slice", 5, vec![]), 13, &[Some((&shape, &x))], &[None, Some(&starts), Some(&ends), Some(&axes), Some(&i64s(&[1, 0]))]).unwrap_err();
    assert!(zero.to_string().contains("step 0"), "{zero}");
    let unknown = byob_webgpu::create_kernel(&context(), &node("Slice", 3, vec![]), 13, &[vec![3, 4], vec![1], vec![1]]).unwrap_err();
    assert!(unknown.to_string().contains("must be a constant"), "{unknown}");
}

#[test]
fn pad_modes_match_numpy() {
    let shape = [2, 3];
    let x = values(6, 5, -1.0, 1.0);
    // Axis 0 padded (1, 0), axis 1 (2, 1).
    let pads = i64s(&[1, 2, 0, 1]);
    let value = Tensor::f32(vec![], vec![1.5]).unwrap();
    let rows = some(&[0, 0, 1]);
    let cases: [(&str, Map, Map); 4] = [
        ("constant", vec![None, Some(0), Some(1)], vec![None, None, Some(0), Some(1), Some(2), None]),
        ("edge", rows.clone(), some(&[0, 0, 0, 1, 2, 2])),
        // np.pad([a, b, c], (2, 1), 'reflect') == [c, b, a, b, c, b].
        ("reflect", some(&[1, 0, 1]), some(&[2, 1, 0, 1, 2, 1])),
        ("wrap", some(&[1, 0, 1]), some(&[1, 2, 0, 1, 2, 0])),
    ];
    for (mode, axis0, axis1) in cases {
        let n = node("Pad", 3, vec![("mode", Attribute::String(mode.into()))]);
        let out = run_with(&n, 19, &[Some((&shape, &x))], &[None, Some(&pads), Some(&value)]);
        assert_eq!(out[0].0, [3, 6], "{mode}");
        assert_close(mode, &out[0].1, &reference(&x, &shape, &[axis0, axis1], 1.5));
    }
    // Opset 2: attributes; a negative pad crops.
    let legacy = node("Pad", 1, vec![("pads", ints(&[0, -1, 1, 0])), ("value", Attribute::Float(-2.0))]);
    let out = run(&legacy, 2, &[Some((&shape, &x))]);
    assert_eq!(out[0].0, [3, 2]);
    assert_close("Pad attributes", &out[0].1, &reference(&x, &shape, &[vec![Some(0), Some(1), None], some(&[1, 2])], -2.0));
    // An empty input pads to the fill value alone.
    let out = run_with(&node("Pad", 3, vec![]), 13, &[Some((&[0, 2], &[]))], &[None, Some(&i64s(&[1, 0, 2, 0])), Some(&value)]);
    assert_eq!(out[0], (vec![3, 2], vec![1.5; 6]));
    let wrap = common::try_run_with(&node("Pad", 2, vec![("mode", Attribute::String("wrap".into()))]), 13, &[Some((&shape, &x))], &[None, Some(&pads)]).unwrap_err();
    assert!(wrap.to_string().contains("wrap"), "{wrap}");
}

#[test]
fn expand_and_tile_repeat_the_input() {
    let x = values(6, 7, -1.0, 1.0);
    let out = run_with(&node("Expand", 2, vec![]), 13, &[Some((&[3, 1], &x[..3]))], &[None, Some(&i64s(&[2, 1, 4]))]);
    assert_eq!(out[0].0, [2, 3, 4]);
    assert_close("Expand", &out[0].1, &reference(&x, &[1, 3, 1], &[some(&[0, 0]), all(3), some(&[0; 4])], 0.0));
    let out = run_with(&node("Tile", 2, vec![]), 13, &[Some((&[2, 3], &x))], &[None, Some(&i64s(&[2, 2]))]);
    assert_eq!(out[0].0, [4, 6]);
    assert_close("Tile", &out[0].1, &reference(&x, &[2, 3], &[some(&[0, 1, 0, 1]), some(&[0, 1, 2, 0, 1, 2])], 0.0));
    let bad = common::try_run_with(&node("Expand", 2, vec![]), 13, &[Some((&[3, 2], &x))], &[None, Some(&i64s(&[4, 3]))]).unwrap_err();
    assert!(bad.to_string().contains("do not broadcast"), "{bad}");
    // Sizes whose product overflows are refused, not wrapped.
    let huge = common::try_run_with(&node("Expand", 2, vec![]), 13, &[Some((&[3, 1], &x[..3]))], &[None, Some(&i64s(&[1 << 40, 3, 1 << 40]))]).unwrap_err();
    assert!(huge.to_string().contains("32-bit indexing"), "{huge}");
}

#[test]
fn split_writes_each_output() {
    let x = values(14, 9, -1.0, 1.0);
    let shape = [2, 7];
    let mut n = node("Split", 2, vec![("axis", Attribute::Int(1))]);
    n.outputs = vec!["a".into(), "b".into(), "c".into()];
    let out = run_with(&n, 13, &[Some((&shape, &x))], &[None, Some(&i64s(&[1, 2, 4]))]);
    for (k, (from, len)) in [(0, 1), (1, 2), (3, 4)].into_iter().enumerate() {
        assert_eq!(out[k].0, [2, len]);
        assert_close("Split sizes", &out[k].1, &reference(&x, &shape, &[all(2), (from..from + len).map(Some).collect()], 0.0));
    }
    // Opset 18's num_outputs: chunks of the rounded-up size.
    let mut n = node("Split", 1, vec![("axis", Attribute::Int(-1)), ("num_outputs", Attribute::Int(4))]);
    n.outputs = (0..4).map(|k| format!("y{k}")).collect();
    let out = run(&n, 18, &[Some((&shape, &x))]);
    assert_eq!(out.iter().map(|o| o.0[1]).collect::<Vec<_>>(), [2, 2, 2, 1]);
    assert_close("Split num_outputs", &out[3].1, &reference(&x, &shape, &[all(2), some(&[6])], 0.0));
    let mut n = node("Split", 1, vec![]);
    n.outputs = vec!["a".into(), "b".into()];
    let uneven = byob_webgpu::create_kernel(&context(), &n, 13, &[vec![3]]).unwrap_err();
    assert!(uneven.to_string().contains("evenly"), "{uneven}");
}

/// The gather moves bit patterns: NaN payloads and -0.0 arrive unchanged,
/// as any 4-byte element type's would.
#[test]
fn gathers_copy_bits_exactly() {
    let bits = [0x7fc0_1234u32, 0x8000_0000, 0xffff_ffff, 0x0000_0001, 0x3f80_0000, 0xff80_0000];
    let x: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
    let out = run_with(&node("Slice", 5, vec![]), 13, &[Some((&[6], &x))], &[None, Some(&i64s(&[5])), Some(&i64s(&[-100])), Some(&i64s(&[0])), Some(&i64s(&[-1]))]);
    let got: Vec<u32> = out[0].1.iter().map(|v| v.to_bits()).collect();
    assert_eq!(got, bits.iter().rev().copied().collect::<Vec<_>>());
    let fill = Tensor::f32(vec![1], vec![f32::from_bits(0x7fc0_5678)]).unwrap();
    let out = run_with(&node("Pad", 3, vec![]), 13, &[Some((&[6], &x))], &[None, Some(&i64s(&[1, 0])), Some(&fill)]);
    assert_eq!(out[0].1[0].to_bits(), 0x7fc0_5678);
    assert_eq!(out[0].1[1..].iter().map(|v| v.to_bits()).collect::<Vec<_>>(), bits);
}
