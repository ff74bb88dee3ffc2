//! Attention on the GPU against an f64 reference of scaled dot-product
//! attention with grouped key/value heads, a causal mask and an additive
//! mask broadcast over heads; what it leaves to the CPU is refused by name.

mod common;

use byob_tensor::model::Attribute;
use byob_webgpu::create_kernel;
use common::{assert_close, context, node, run, values};

/// softmax(q·kᵀ·scale + mask, causal) · v for 4-D inputs, in f64.
#[allow(clippy::too_many_arguments)]
fn reference(q: &[f32], k: &[f32], v: &[f32], mask: &[f32], [b, qh, qs, d]: [usize; 4], kh: usize, keys: usize, scale: f64, causal: bool) -> Vec<f64> {
    let mut y = Vec::new();
    for bi in 0..b {
        for h in 0..qh {
            let g = h / (qh / kh);
            for s in 0..qs {
                let q0 = ((bi * qh + h) * qs + s) * d;
                let scores: Vec<f64> = (0..keys)
                    .map(|t| {
                        let k0 = ((bi * kh + g) * keys + t) * d;
                        let dot: f64 = (0..d).map(|j| q[q0 + j] as f64 * k[k0 + j] as f64).sum();
                        if causal && t > s { f64::NEG_INFINITY } else { dot * scale + mask[(bi * qs + s) * keys + t] as f64 }
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for j in 0..d {
                    y.push((0..keys).map(|t| e[t] * v[((bi * kh + g) * keys + t) * d + j] as f64).sum::<f64>() / sum);
                }
            }
        }
    }
    y
}

#[test]
fn grouped_causal_masked_attention_matches_the_reference() {
    let (b, qh, kh, qs, keys, d) = (2, 4, 2, 5, 7, 8);
    let q = values(b * qh * qs * d, 1, -1.0, 1.0);
    let k = values(b * kh * keys * d, 2, -1.0, 1.0);
    let v = values(b * kh * keys * d, 3, -1.0, 1.0);
    // [batch, 1, query, key]: one mask per batch, shared by the heads.
    let mask = values(b * qs * keys, 4, -2.0, 0.0);
    let n = node("Attention", 4, vec![("is_causal", Attribute::Int(1)), ("scale", Attribute::Float(0.25))]);
    let out = run(&n, 23, &[Some((&[b, qh, qs, d], &q)), Some((&[b, kh, keys, d], &k)), Some((&[b, kh, keys, d], &v)), Some((&[b, 1, qs, keys], &mask))]);
    assert_eq!(out[0].0, [b, qh, qs, d]);
    assert_close("Attention", &out[0].1, &reference(&q, &k, &v, &mask, [b, qh, qs, d], kh, keys, 0.25, true));
}

#[test]
fn what_the_gpu_kernel_leaves_to_the_cpu_is_refused_by_name() {
    let ctx = context();
    let shapes = vec![vec![1, 2, 3, 4], vec![1, 2, 3, 4], vec![1, 2, 3, 4], vec![], vec![1, 2, 5, 4]];
    let mut past = node("Attention", 5, vec![]);
    past.inputs[3].clear();
    let error = create_kernel(&ctx, &past, 23, &shapes).unwrap_err().to_string();
    assert!(error.contains("past key or value"), "{error}");
    let three_d = create_kernel(&ctx, &node("Attention", 3, vec![]), 23, &[vec![1, 3, 8], vec![1, 3, 8], vec![1, 3, 8]]).unwrap_err().to_string();
    assert!(three_d.contains("q_num_heads"), "{three_d}");
    let long = create_kernel(&ctx, &node("Attention", 3, vec![]), 23, &[vec![1, 1, 1, 4], vec![1, 1, 5000, 4], vec![1, 1, 5000, 4]]).unwrap_err().to_string();
    assert!(long.contains("5000 keys exceed"), "{long}");
}

/// Before shapes are known, an Attention whose key length is not known to
/// fit, or that has a past, is placed on the CPU rather than failing a run.
#[test]
fn attention_the_gpu_might_refuse_at_run_time_is_placed_on_the_cpu() {
    use byob_tensor::model::{Graph, Model, ValueInfo};
    use byob_tensor::{DataType, Dim, SessionBuilder, Tensor};
    use std::collections::HashMap;
    let placed = |keys: Dim, past: bool| {
        let known = |n: usize| Dim::Known(n);
        let input = |name: &str, dims: Vec<Dim>| ValueInfo { name: name.into(), dtype: Some(DataType::F32), shape: Some(dims) };
        let mut inputs = vec![input("q", vec![known(1), known(2), known(3), known(4)]), input("k", vec![known(1), known(2), keys.clone(), known(4)]), input("v", vec![known(1), known(2), keys, known(4)])];
        let mut attention = node("Attention", 3, vec![]);
        attention.inputs = vec!["q".into(), "k".into(), "v".into()];
        if past {
            inputs.push(input("past_key", vec![known(1), known(2), known(1), known(4)]));
            inputs.push(input("past_value", vec![known(1), known(2), known(1), known(4)]));
            attention.inputs.extend(["".into(), "past_key".into(), "past_value".into()]);
        }
        let graph = Graph { nodes: vec![attention], inputs, outputs: vec![ValueInfo { name: "y".into(), dtype: None, shape: None }], initializers: HashMap::<String, Tensor>::new() };
        let model = Model { ir_version: 10, producer: "test".into(), opsets: HashMap::from([(String::new(), 23)]), graph };
        let gpu = byob_webgpu::WebGpuProvider::with_context(context());
        let session = SessionBuilder::new().with_provider(Box::new(gpu)).commit(model).unwrap();
        session.placements()[0].provider
    };
    assert_eq!(placed(Dim::Known(6), false), "webgpu");
    assert_eq!(placed(Dim::Symbolic("keys".into()), false), "cpu");
    assert_eq!(placed(Dim::Known(6), true), "cpu");
}
