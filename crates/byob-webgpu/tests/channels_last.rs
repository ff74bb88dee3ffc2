//! The channels-last (`com.byob.nhwc`) kernels against the NCHW ones on
//! transposed data: Conv over every operand variant (odd channel counts,
//! groups, depthwise, 1×1, strides, pads, dilations, auto_pad, both tile
//! sizes), the windowed and global pools, BatchNormalization; which nodes
//! they accept; and the provider's preference.

mod common;

use byob_tensor::passes::layout::NHWC_DOMAIN;
use byob_tensor::model::{Attribute, Node};
use byob_tensor::{ExecutionProvider, Layout};
use byob_webgpu::{create_kernel, supports, WebGpuProvider};
use common::{assert_close, context, ints, node, run, values};

/// [N, C, H, W] values to [N, H, W, C], with the new shape.
fn to_nhwc(shape: &[usize], x: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let [n, c, h, w] = shape.try_into().expect("rank 4");
    let mut out = Vec::with_capacity(x.len());
    for b in 0..n {
        for y in 0..h {
            for xi in 0..w {
                for ch in 0..c {
                    out.push(x[((b * c + ch) * h + y) * w + xi]);
                }
            }
        }
    }
    (vec![n, h, w, c], out)
}

fn channels_last(mut node: Node) -> Node {
    node.domain = NHWC_DOMAIN.to_string();
    node
}

/// Runs `node` in NCHW and its variant on the transposed input 0 (the
/// other inputs as they are) and compares the variant's output with the
/// NCHW output transposed.
fn assert_same_as_nchw(what: &str, node: &Node, opset: i64, inputs: &[(&[usize], &[f32])]) {
    let nchw = run(node, opset, &inputs.iter().map(|&i| Some(i)).collect::<Vec<_>>());
    let (x_shape, x) = to_nhwc(inputs[0].0, inputs[0].1);
    let mut nhwc_inputs = vec![Some((&x_shape[..], &x[..]))];
    nhwc_inputs.extend(inputs[1..].iter().map(|&i| Some(i)));
    let nhwc = run(&channels_last(node.clone()), opset, &nhwc_inputs);
    let (want_shape, want) = to_nhwc(&nchw[0].0, &nchw[0].1);
    assert_eq!(nhwc[0].0, want_shape, "{what}: output shape");
    assert_close(what, &nhwc[0].1, &want.iter().map(|&v| v as f64).collect::<Vec<_>>());
}

type Attributes = Vec<(&'static str, Attribute)>;

struct Conv {
    x: [usize; 4],
    w: [usize; 4],
    group: i64,
    bias: bool,
    attributes: Attributes,
}

#[test]
fn conv_matches_nchw() {
    let conv = |x, w, group, bias, attributes| Conv { x, w, group, bias, attributes };
    let pads = |p: [i64; 4]| ("pads", ints(&p));
    let strides = |s: [i64; 2]| ("strides", ints(&s));
    let dilations = |d: [i64; 2]| ("dilations", ints(&d));
    let auto_pad = |mode: &str| ("auto_pad", Attribute::String(mode.into()));
    let cases = [
        // Odd channels: scalar im2col loads.
        conv([1, 3, 9, 10], [4, 3, 3, 3], 1, false, vec![pads([1, 1, 1, 1])]),
        conv([2, 5, 11, 9], [7, 5, 3, 2], 1, true, vec![strides([2, 1]), dilations([2, 1]), pads([1, 0, 2, 1])]),
        // Groups with odd and even channels per group.
        conv([2, 6, 7, 7], [6, 3, 3, 3], 2, true, vec![pads([1, 1, 1, 1])]),
        conv([1, 8, 6, 6], [8, 2, 3, 3], 4, false, vec![strides([2, 2])]),
        // Depthwise, with and without a channel multiplier.
        conv([2, 7, 9, 8], [7, 1, 3, 3], 7, true, vec![strides([2, 2]), pads([1, 1, 1, 1])]),
        conv([1, 4, 5, 5], [8, 1, 3, 3], 4, false, vec![dilations([2, 2]), pads([2, 2, 2, 2])]),
        // Channels a multiple of 4: vec4 im2col loads, with groups too.
        conv([1, 16, 7, 7], [8, 8, 3, 3], 2, true, vec![pads([1, 1, 1, 1])]),
        conv([2, 12, 9, 9], [20, 12, 3, 3], 1, false, vec![strides([2, 2]), pads([0, 1, 1, 0])]),
        // 1×1: the input as a plain matrix, or weight rows read densely.
        conv([2, 16, 5, 5], [8, 16, 1, 1], 1, true, vec![]),
        conv([1, 5, 4, 6], [3, 5, 1, 1], 1, false, vec![]),
        conv([1, 8, 4, 4], [6, 4, 1, 1], 2, true, vec![]),
        conv([1, 12, 9, 9], [12, 12, 1, 1], 1, false, vec![strides([2, 2])]),
        conv([1, 6, 5, 5], [9, 2, 1, 1], 3, false, vec![pads([1, 0, 0, 1])]),
        // auto_pad.
        conv([1, 3, 10, 7], [4, 3, 3, 3], 1, false, vec![strides([2, 2]), auto_pad("SAME_UPPER")]),
        conv([1, 4, 10, 7], [5, 4, 2, 2], 1, true, vec![auto_pad("SAME_LOWER")]),
        // Large tiles (256 pixels and channels or more).
        conv([1, 8, 18, 18], [256, 8, 3, 3], 1, true, vec![pads([1, 1, 1, 1])]),
        conv([1, 3, 17, 16], [260, 3, 3, 3], 1, false, vec![pads([1, 1, 1, 1])]),
    ];
    for (seed, c) in cases.into_iter().enumerate() {
        let x = values(c.x.iter().product(), seed as u64, -1.0, 1.0);
        let w = values(c.w.iter().product(), seed as u64 + 20, -1.0, 1.0);
        let b = values(c.w[0], seed as u64 + 40, -1.0, 1.0);
        let b_shape = [c.w[0]];
        let mut inputs = vec![(&c.x[..], &x[..]), (&c.w[..], &w[..])];
        if c.bias {
            inputs.push((&b_shape[..], &b[..]));
        }
        let mut attributes = c.attributes.clone();
        attributes.push(("group", Attribute::Int(c.group)));
        assert_same_as_nchw(&format!("Conv case {seed}: x {:?} w {:?}", c.x, c.w), &node("Conv", inputs.len(), attributes), 11, &inputs);
    }
}

#[test]
fn windowed_pools_match_nchw() {
    let kernel = |k: [i64; 2]| ("kernel_shape", ints(&k));
    let cases: Vec<([usize; 4], Attributes)> = vec![
        ([1, 3, 7, 6], vec![kernel([3, 3]), ("strides", ints(&[2, 1])), ("pads", ints(&[1, 0, 1, 2])), ("count_include_pad", Attribute::Int(1))]),
        ([2, 5, 9, 9], vec![kernel([3, 3]), ("strides", ints(&[2, 2])), ("pads", ints(&[1, 1, 1, 1]))]),
        ([1, 3, 5, 6], vec![kernel([2, 3]), ("strides", ints(&[2, 2])), ("pads", ints(&[1, 1, 1, 1])), ("ceil_mode", Attribute::Int(1)), ("count_include_pad", Attribute::Int(1))]),
        ([1, 7, 8, 7], vec![kernel([2, 2]), ("dilations", ints(&[2, 3])), ("ceil_mode", Attribute::Int(1))]),
        ([1, 3, 7, 8], vec![kernel([3, 2]), ("strides", ints(&[2, 2])), ("auto_pad", Attribute::String("SAME_UPPER".into())), ("count_include_pad", Attribute::Int(1))]),
        ([2, 4, 7, 8], vec![kernel([3, 3]), ("strides", ints(&[2, 3])), ("auto_pad", Attribute::String("SAME_LOWER".into()))]),
    ];
    for (seed, (shape, attributes)) in cases.into_iter().enumerate() {
        let x = values(shape.iter().product(), seed as u64, -2.0, 2.0);
        for op in ["MaxPool", "AveragePool"] {
            // MaxPool has no count_include_pad.
            let attributes: Vec<_> = attributes.iter().filter(|(name, _)| op == "AveragePool" || *name != "count_include_pad").cloned().collect();
            assert_same_as_nchw(&format!("{op} case {seed}: x {shape:?}"), &node(op, 1, attributes), 12, &[(&shape, &x)]);
        }
    }
}

#[test]
fn global_pools_match_nchw() {
    for (seed, shape) in [[2, 3, 5, 7], [1, 5, 50, 50], [3, 1, 9, 4], [1, 67, 7, 7]].into_iter().enumerate() {
        let x = values(shape.iter().product(), seed as u64, -2.0, 2.0);
        for op in ["GlobalMaxPool", "GlobalAveragePool"] {
            assert_same_as_nchw(&format!("{op} {shape:?}"), &node(op, 1, vec![]), 13, &[(&shape, &x)]);
        }
    }
}

#[test]
fn batch_normalization_matches_nchw() {
    for (seed, shape) in [[2, 5, 3, 4], [1, 3, 1, 1], [1, 16, 6, 5]].into_iter().enumerate() {
        let c = shape[1];
        let x = values(shape.iter().product(), seed as u64, -2.0, 2.0);
        let params: Vec<Vec<f32>> = (0..4).map(|i| values(c, seed as u64 * 10 + i, if i == 3 { 0.1 } else { -1.0 }, 1.0)).collect();
        let c_shape = [c];
        let mut inputs = vec![(&shape[..], &x[..])];
        inputs.extend(params.iter().map(|p| (&c_shape[..], &p[..])));
        let node = node("BatchNormalization", 5, vec![("epsilon", Attribute::Float(1e-3))]);
        assert_same_as_nchw(&format!("BatchNormalization {shape:?}"), &node, 15, &inputs);
    }
}

#[test]
fn only_the_channels_last_ops_are_accepted_and_only_at_rank_4() {
    for op in ["Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "BatchNormalization"] {
        assert!(supports(&channels_last(node(op, 1, vec![])), 13), "{op}");
    }
    assert!(!supports(&channels_last(node("Relu", 1, vec![])), 13), "no channels-last Relu");
    let mut other = node("Conv", 2, vec![]);
    other.domain = "com.example".into();
    assert!(!supports(&other, 13), "an unknown domain");

    let ctx = context();
    let error = create_kernel(&ctx, &channels_last(node("Conv", 2, vec![])), 13, &[vec![1, 5, 3], vec![2, 3, 3]]).unwrap_err().to_string();
    assert!(error.contains("test_Conv") && error.contains("rank-4"), "{error}");
    let error = create_kernel(&ctx, &channels_last(node("GlobalAveragePool", 1, vec![])), 13, &[vec![1, 2, 3, 4, 5]]).unwrap_err().to_string();
    assert!(error.contains("test_GlobalAveragePool") && error.contains("rank-4"), "{error}");
    // The NCHW checks still apply: 5 channels do not split into 2 groups.
    let error = create_kernel(&ctx, &channels_last(node("Conv", 2, vec![("group", Attribute::Int(2))])), 13, &[vec![1, 4, 4, 5], vec![2, 2, 3, 3]]).unwrap_err().to_string();
    assert!(error.contains("2 groups"), "{error}");
}

#[test]
fn the_provider_prefers_channels_last() {
    assert_eq!(WebGpuProvider::with_context(context()).preferred_layout(), Layout::Nhwc);
}
