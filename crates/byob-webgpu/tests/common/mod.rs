//! Shared by the GPU tests: one device per test binary, random data, and
//! running a kernel from host data to host data.

#![allow(dead_code)] // each test binary uses its own part

use byob_tensor::model::{Attribute, Node};
use byob_tensor::Tensor;
use byob_webgpu::{create_kernel_with_values, GpuContext, GpuDataManager, GpuSlice};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The device every test shares. No adapter is a failure, never a skip:
/// CI must run these tests.
pub fn context() -> Arc<GpuContext> {
    static CONTEXT: OnceLock<Arc<GpuContext>> = OnceLock::new();
    Arc::clone(CONTEXT.get_or_init(|| match pollster::block_on(GpuContext::new()) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => panic!("the GPU tests need a GPU adapter: {e}"),
    }))
}

pub fn manager() -> GpuDataManager {
    GpuDataManager::new(context())
}

/// Deterministic values in [lo, hi).
pub fn values(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            lo + (hi - lo) * ((state >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}

pub fn node(op: &str, inputs: usize, attributes: Vec<(&str, Attribute)>) -> Node {
    Node {
        name: format!("test_{op}"),
        op_type: op.to_string(),
        domain: String::new(),
        inputs: (0..inputs).map(|i| format!("x{i}")).collect(),
        outputs: vec!["y".into()],
        attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<HashMap<_, _>>(),
    }
}

/// A node of a model graph, named after its op and first output.
pub fn graph_node(op: &str, inputs: &[&str], outputs: &[&str], attributes: Vec<(&str, Attribute)>) -> Node {
    Node {
        name: format!("{op}:{}", outputs[0]),
        op_type: op.into(),
        domain: String::new(),
        inputs: inputs.iter().map(|s| s.to_string()).collect(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        attributes: attributes.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

pub fn ints(v: &[i64]) -> Attribute {
    Attribute::Ints(v.to_vec())
}

/// A tensor on the host: shape and values.
pub type Host = (Vec<usize>, Vec<f32>);

/// Runs `node` on the GPU; `None` inputs are omitted optional ones.
pub fn run(node: &Node, opset: i64, inputs: &[Option<(&[usize], &[f32])>]) -> Vec<Host> {
    try_run(node, opset, inputs).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_run(node: &Node, opset: i64, inputs: &[Option<(&[usize], &[f32])>]) -> Result<Vec<Host>, byob_webgpu::GpuError> {
    try_run_with(node, opset, inputs, &[])
}

/// [`run`] with constant inputs, positional (`None` where an input is data
/// or omitted): their values are given when building, never uploaded.
pub fn run_with(node: &Node, opset: i64, inputs: &[Option<(&[usize], &[f32])>], constants: &[Option<&Tensor>]) -> Vec<Host> {
    try_run_with(node, opset, inputs, constants).unwrap_or_else(|e| panic!("{e}"))
}

pub fn try_run_with(node: &Node, opset: i64, inputs: &[Option<(&[usize], &[f32])>], constants: &[Option<&Tensor>]) -> Result<Vec<Host>, byob_webgpu::GpuError> {
    let ctx = context();
    let data = GpuDataManager::new(Arc::clone(&ctx));
    let count = inputs.len().max(constants.len());
    let constant = |i: usize| constants.get(i).copied().flatten();
    let shapes: Vec<Vec<usize>> = (0..count).map(|i| constant(i).map(|t| t.shape().to_vec()).or_else(|| inputs.get(i).copied().flatten().map(|(s, _)| s.to_vec())).unwrap_or_default()).collect();
    let kernel = create_kernel_with_values(&ctx, node, opset, &shapes, constants)?;
    let mut ids = Vec::new();
    for input in inputs {
        ids.push(match input {
            Some((_, values)) => {
                let id = data.create(4 * values.len() as u64)?;
                data.upload(id, bytemuck::cast_slice(values))?;
                Some(id)
            }
            None => None,
        });
    }
    let outputs: Vec<_> = kernel.output_shapes().iter().map(|s| data.create(4 * s.iter().product::<usize>() as u64)).collect::<Result<_, _>>()?;
    let in_buffers: Vec<_> = ids.iter().map(|id| id.map(|id| data.get(id)).transpose()).collect::<Result<_, _>>()?;
    let out_buffers: Vec<_> = outputs.iter().map(|&id| data.get(id)).collect::<Result<_, _>>()?;
    let in_slices: Vec<Option<GpuSlice>> = in_buffers.iter().map(|b| b.as_ref().map(|(b, size)| GpuSlice { buffer: b, offset: 0, size: *size })).collect();
    let out_slices: Vec<GpuSlice> = out_buffers.iter().map(|(b, size)| GpuSlice { buffer: b, offset: 0, size: *size }).collect();
    data.record(|encoder| {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        kernel.encode(&ctx, &mut pass, &in_slices, &out_slices)
    })?;
    data.submit()?;
    let mut results = Vec::new();
    for (&id, shape) in outputs.iter().zip(kernel.output_shapes()) {
        let bytes = pollster::block_on(data.download(id))?;
        results.push((shape.clone(), bytemuck::pod_collect_to_vec(&bytes)));
    }
    Ok(results)
}

/// Fails naming the first element off by more than `1e-4` relative (with a
/// small absolute floor for values near zero).
pub fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = (g as f64 - w).abs() <= 1e-4 * w.abs().max(1e-1) || (g.is_nan() && w.is_nan()) || (g.is_infinite() && g as f64 == w);
        assert!(ok, "{what}: element {i}: got {g}, want {w}");
    }
}
