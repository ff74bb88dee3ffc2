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
