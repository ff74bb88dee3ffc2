//! The channels-last layout pass on real models: the CPU provider prefers
//! NHWC by default, so its convolutions and pools are rewritten (and the
//! convolutions' weights packed), the Transposes between them cancel, and
//! the results match those of a CPU provider told to keep NCHW; and the
//! Winograd convolutions match the direct ones.

use byob_tensor::{CpuProvider, Dim, Layout, Session, SessionBuilder, Tensor};
use std::path::{Path, PathBuf};

fn model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx-1.22.0/light").join(format!("{name}.onnx"))
}

fn feeds(session: &Session) -> Vec<(String, Tensor)> {
    session
        .inputs()
        .map(|v| {
            let shape: Vec<usize> = v.shape.as_ref().map(|s| s.iter().map(|d| if let Dim::Known(n) = d { *n } else { 1 }).collect()).unwrap_or_default();
            let n: usize = shape.iter().product();
            (v.name.clone(), Tensor::f32(shape, (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect()).unwrap())
        })
        .collect()
}

fn transposes(session: &Session) -> usize {
    session.placements().iter().filter(|p| p.op_type == "Transpose").count()
}

/// (model, Transposes the channels-last graph adds, 3×3 convolutions
/// computed by Winograd's algorithm)
const CASES: &[(&str, usize, usize)] = &[
    // Input to NHWC, and back before the classifier's Reshape.
    ("light_resnet50", 2, 13),
    // Fire modules' Concats stay in NHWC (axis remapped).
    ("light_squeezenet", 2, 6),
    // LRN normalises across channels: NCHW around each of its two uses.
    ("light_inception_v1", 6, 8),
    ("light_densenet121", 2, 58),
    // Channel shuffles (Reshape, Transpose, Reshape) run on NHWC's channel
    // axis: no Transpose to NCHW around them.
    ("light_shufflenet", 2, 0),
];

#[test]
fn channels_last_sessions_match_nchw_sessions() {
    for &(name, expected_transposes, winograd) in CASES {
        let nchw = SessionBuilder::new()
            .with_intra_op_threads(2)
            .with_provider(Box::new(CpuProvider::new().with_preferred_layout(Layout::Nchw)))
            .commit_from_file(model(name))
            .unwrap();
        let nhwc = SessionBuilder::new().with_intra_op_threads(2).commit_from_file(model(name)).unwrap();
        assert_eq!(nchw.optimizations().channels_last, 0);
        let rewritten = nhwc.optimizations().channels_last;
        // Packed nodes left as they are, or joined into ConcatConvs nodes.
        let count = |op: &str| nhwc.placements().iter().filter(|p| p.op_type == op).count();
        let convs = count("PackedConv");
        assert_eq!(nhwc.optimizations().winograd, winograd, "{name}: Winograd convolutions");
        assert!(nhwc.optimizations().packed >= convs + count("PackedMatMul") + count("ConcatConvs"), "{name}");
        assert!(rewritten >= convs && convs > 0, "{name}: {rewritten} rewritten, {convs} convolutions");
        // The model's own Transposes (ShuffleNet's shuffles) stay, in NHWC.
        assert_eq!(transposes(&nhwc), transposes(&nchw) + expected_transposes, "{name}: Transposes left after cancelling");
        let a = nchw.run(feeds(&nchw)).unwrap().remove(0).1;
        let b = nhwc.run(feeds(&nhwc)).unwrap().remove(0).1;
        assert_eq!(a.shape(), b.shape(), "{name}");
        for (i, (x, y)) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()).enumerate() {
            assert!((x - y).abs() <= 1e-5 * (1.0 + x.abs()), "{name}: element {i}: {x} vs {y}");
        }
    }
}

/// Sessions with Winograd's convolutions turned off have none, and the
/// same outputs as those with them (ResNet50: F(4×4, 3×3) at 56×56, 28×28
/// and 14×14, F(2×2, 3×3) at 7×7).
#[test]
fn winograd_sessions_match_direct_sessions() {
    for name in ["light_resnet50", "light_squeezenet"] {
        let direct = SessionBuilder::new().with_intra_op_threads(2).with_winograd(false).commit_from_file(model(name)).unwrap();
        let winograd = SessionBuilder::new().with_intra_op_threads(2).commit_from_file(model(name)).unwrap();
        assert_eq!(direct.optimizations().winograd, 0, "{name}");
        assert!(winograd.optimizations().winograd > 0, "{name}");
        let a = direct.run(feeds(&direct)).unwrap().remove(0).1;
        let b = winograd.run(feeds(&winograd)).unwrap().remove(0).1;
        let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
        let scale = a.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 * scale, "{name}: element {i}: {x} vs {y} (largest {scale})");
        }
    }
}

/// One-channel convolutions (an audio model's anti-aliasing filter: a
/// long kernel at stride 2, windows reaching into the padding at both
/// ends; a 3×3 one with a fused Relu and a shortcut Add) give the NCHW
/// session's results on their packed channels-last kernel.
#[test]
fn one_channel_convolutions_match_nchw_sessions() {
    use byob_tensor::model::{Attribute, Graph, Model, Node, ValueInfo};
    use std::collections::HashMap;
    let ints = |v: &[i64]| Attribute::Ints(v.to_vec());
    let node = |op: &str, inputs: &[&str], output: &str, attributes: Vec<(&str, Attribute)>| Node {
        name: output.into(),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: vec![output.into()],
        attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    };
    let ramp = |n: usize, seed: usize| -> Vec<f32> { (0..n).map(|i| (((i + seed) * 7919) % 1000) as f32 / 500.0 - 1.0).collect() };
    let (width, taps) = (301, 37);
    let graph = Graph {
        nodes: vec![
            node("Conv", &["x", "filter", "b"], "low", vec![("strides", ints(&[1, 2])), ("pads", ints(&[0, 20, 0, 17]))]),
            node("Conv", &["low", "k3"], "c3", vec![("pads", ints(&[1, 1, 1, 1]))]),
            node("Add", &["c3", "low"], "sum", vec![]),
            node("Relu", &["sum"], "y", vec![]),
        ],
        inputs: vec![ValueInfo { name: "x".into(), dtype: Some(byob_tensor::DataType::F32), shape: Some([2, 1, 3, width].map(Dim::Known).to_vec()) }],
        outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }],
        initializers: HashMap::from([
            ("filter".to_string(), Tensor::f32(vec![1, 1, 1, taps], ramp(taps, 1)).unwrap()),
            ("b".to_string(), Tensor::f32(vec![1], vec![0.25]).unwrap()),
            ("k3".to_string(), Tensor::f32(vec![1, 1, 3, 3], ramp(9, 2)).unwrap()),
        ]),
    };
    let model = Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
    let nchw = SessionBuilder::new().with_provider(Box::new(CpuProvider::new().with_preferred_layout(Layout::Nchw))).commit(model.clone()).unwrap();
    let nhwc = SessionBuilder::new().with_intra_op_threads(2).commit(model).unwrap();
    assert!(nhwc.placements().iter().filter(|p| p.op_type == "PackedConv").count() == 2, "{:?}", nhwc.placements());
    let x = vec![("x".to_string(), Tensor::f32(vec![2, 1, 3, width], ramp(2 * 3 * width, 3)).unwrap())];
    let (a, b) = (nchw.run(x.clone()).unwrap().remove(0).1, nhwc.run(x).unwrap().remove(0).1);
    assert_eq!(a.shape(), &[2, 1, 3, 151]);
    assert_eq!(a.shape(), b.shape());
    for (i, (x, y)) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()).enumerate() {
        assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "element {i}: {x} vs {y}");
    }
    assert!(a.as_f32().unwrap().contains(&0.0) && a.as_f32().unwrap().iter().any(|&v| v > 0.0));
}
