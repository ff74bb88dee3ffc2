//! `Conv` for 1 to 3 spatial dimensions (its window in [`super::window`]).
//!
//! Fast paths, all on the `gemm` crate through [`sgemm`]:
//! - pointwise (1×1, stride 1, no padding): the output of a group is
//!   directly W_g [M/g × C/g] · X_g [C/g × spatial], no copy;
//! - depthwise (one input channel per group): a direct kernel over rows that
//!   the compiler vectorises, parallel over output channels;
//! - otherwise im2col + GEMM per (image, group): W_g [M/g × C/g·∏k] ·
//!   col [C/g·∏k × ∏out], parallel over (image, group) pairs when there are
//!   enough of them, otherwise with a parallel im2col and a threaded GEMM.
//!
//! Weights are not repacked or cached: ONNX's [M, C/g, k…] row-major layout
//! already *is* the row-major [M/g, C/g·∏k] left operand of every group's
//! product, so a cached copy would only duplicate it, and gemm packs its
//! panels itself on each call (which a cache cannot skip: its packing is
//! internal). Skipping the cache also avoids keying on pointers, which would
//! be wrong for weights that are not constants.

use super::linalg::{f32_fact, f32_input, known, optional_f32_fact, optional_f32_input, sgemm, THIN_COLUMNS};
use super::{output, Attrs, Builder, Fact, Op, OpError};
use crate::kernels::window::Geo3;
use super::window::Window;
use crate::model::Node;
use crate::tensor::{DataType, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

/// `dst[o] += w · src[o·stride + off]` for outputs `lo..hi` of a row.
#[inline]
fn axpy_row(dst: &mut [f32], src: &[f32], w: f32, stride: usize, off: isize, lo: usize, hi: usize) {
    if lo >= hi {
        return;
    }
    let start = (lo as isize * stride as isize + off) as usize;
    let dst = &mut dst[lo..hi];
    if stride == 1 {
        let src = &src[start..start + (hi - lo)];
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += w * s);
    } else {
        dst.iter_mut().zip(src[start..].iter().step_by(stride)).for_each(|(d, &s)| *d += w * s);
    }
}

/// Fills one row of the im2col matrix: the input values kernel tap
/// (a, b, e) of channel `plane` sees at every output position.
fn im2col_row(row: &mut [f32], plane: &[f32], g: &Geo3, [a, b, e]: [usize; 3], taps: &[(isize, usize, usize)]) {
    let ow = g.output[2];
    let (off, lo, hi) = taps[e];
    let stride = g.stride[2];
    for z in 0..g.output[0] {
        for y in 0..g.output[1] {
            let dst = &mut row[(z * g.output[1] + y) * ow..][..ow];
            let Some(r) = g.input_row(z, y, a, b) else {
                dst.fill(0.0);
                continue;
            };
            let src = &plane[r..r + g.input[2]];
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            if lo < hi {
                let start = (lo as isize * stride as isize + off) as usize;
                if stride == 1 {
                    dst[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
                } else {
                    dst[lo..hi].iter_mut().zip(src[start..].iter().step_by(stride)).for_each(|(d, &s)| *d = s);
                }
            }
        }
    }
}

/// The transpose of [`im2col`] for few output positions: one row per
/// output position holding its receptive field in the weights' order
/// (channel, then taps), `col` [∏out, channels·∏k]. Contiguous taps are
/// copied as runs.
fn patches(x: &[f32], channels: usize, g: &Geo3, col: &mut [f32]) {
    let (isp, ksp) = (g.input_size(), g.kernel_size());
    let [_, k1, k2] = g.kernel;
    let rows = col[..g.output_size() * channels * ksp].chunks_exact_mut(channels * ksp);
    let positions = (0..g.output[0]).flat_map(|z| (0..g.output[1]).flat_map(move |y| (0..g.output[2]).map(move |o| (z, y, o))));
    for (row, (z, y, o)) in rows.zip(positions) {
        let inside = g.taps_along(2, o);
        for (c, field) in row.chunks_exact_mut(ksp).enumerate() {
            let plane = &x[c * isp..][..isp];
            for (ab, dst) in field.chunks_exact_mut(k2).enumerate() {
                let Some(r) = g.input_row(z, y, ab / k1, ab % k1) else {
                    dst.fill(0.0);
                    continue;
                };
                dst[..inside.start].fill(0.0);
                dst[inside.end..].fill(0.0);
                if inside.is_empty() {
                    continue;
                } else if g.dilation[2] == 1 {
                    let start = r + g.position(2, o, inside.start) as usize;
                    dst[inside.clone()].copy_from_slice(&plane[start..start + inside.len()]);
                } else {
                    inside.clone().for_each(|e| dst[e] = plane[r + g.position(2, o, e) as usize]);
                }
            }
        }
    }
}

/// im2col of `channels` input planes into `col` ([channels·∏k, ∏out]).
fn im2col(x: &[f32], channels: usize, g: &Geo3, col: &mut [f32], pool: Option<&rayon::ThreadPool>) {
    let (isp, ksp, osp) = (g.input_size(), g.kernel_size(), g.output_size());
    let [_, k1, k2] = g.kernel;
    let taps = g.inner_taps();
    let fill = |(r, row): (usize, &mut [f32])| {
        let (c, t) = (r / ksp, r % ksp);
        im2col_row(row, &x[c * isp..][..isp], g, [t / (k1 * k2), (t / k2) % k1, t % k2], &taps);
    };
    let col = &mut col[..channels * ksp * osp];
    match pool {
        Some(p) if p.current_num_threads() > 1 && col.len() >= PARALLEL_ELEMENTS => p.install(|| col.par_chunks_mut(osp).enumerate().for_each(fill)),
        _ => {
            // In row order, without fill's divisions (which cost more than
            // a row of a convolution over a few frames).
            let [k0, k1, k2] = g.kernel;
            let taps_in_order = (0..channels).flat_map(|c| (0..k0).flat_map(move |a| (0..k1).flat_map(move |b| (0..k2).map(move |e| (c, [a, b, e])))));
            for (row, (c, tap)) in col.chunks_mut(osp).zip(taps_in_order) {
                im2col_row(row, &x[c * isp..][..isp], g, tap, &taps);
            }
        }
    }
}

/// One output plane of a depthwise convolution (one input channel).
fn depthwise_plane(out: &mut [f32], plane: &[f32], kernel: &[f32], bias: f32, g: &Geo3, taps: &[(isize, usize, usize)]) {
    out.fill(bias);
    let [_, k1, k2] = g.kernel;
    let ow = g.output[2];
    for z in 0..g.output[0] {
        for y in 0..g.output[1] {
            let dst = &mut out[(z * g.output[1] + y) * ow..][..ow];
            for a in 0..g.kernel[0] {
                for b in 0..k1 {
                    let Some(r) = g.input_row(z, y, a, b) else { continue };
                    let src = &plane[r..r + g.input[2]];
                    for (e, &(off, lo, hi)) in taps.iter().enumerate() {
                        axpy_row(dst, src, kernel[(a * k1 + b) * k2 + e], g.stride[2], off, lo, hi);
                    }
                }
            }
        }
    }
}

/// Below this many elements (or multiply-adds), work stays on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// The convolution proper on validated shapes: x [n, c, in…], w [m, c/group,
/// k…], y [n, m, out…] (every element is written).
#[allow(clippy::too_many_arguments)]
fn conv_f32(x: &[f32], w: &[f32], bias: Option<&[f32]>, g: &Geo3, [n, c, m, group]: [usize; 4], relu: bool, y: &mut [f32], pool: &rayon::ThreadPool) {
    let (cg, mg) = (c / group, m / group);
    let (isp, ksp, osp) = (g.input_size(), g.kernel_size(), g.output_size());
    let kdim = cg * ksp;
    let threads = pool.current_num_threads();
    if y.is_empty() {
        return;
    }
    let work = n * m * osp * kdim;
    if cg == 1 && group > 1 {
        // Depthwise: each output channel reads one input channel.
        let taps = g.inner_taps();
        let plane = |(i, out): (usize, &mut [f32])| {
            let (image, channel) = (i / m, i % m);
            let input = &x[(image * c + channel / mg) * isp..][..isp];
            depthwise_plane(out, input, &w[channel * ksp..][..ksp], bias.map_or(0.0, |b| b[channel]), g, &taps);
            activate(out, relu);
        };
        if threads > 1 && work >= PARALLEL_ELEMENTS {
            pool.install(|| y.par_chunks_mut(osp).enumerate().for_each(plane));
        } else {
            y.chunks_mut(osp).enumerate().for_each(plane);
        }
        return;
    }
    let pointwise = g.pointwise();
    // One (image, group) pair: out [mg, osp] = W_g [mg, kdim] · col [kdim, osp].
    let job = |j: usize, out: &mut [f32], col: &mut [f32], pool: Option<&rayon::ThreadPool>| {
        let (image, gi) = (j / group, j % group);
        let xg = &x[(image * c + gi * cg) * isp..][..cg * isp];
        let wg = &w[gi * mg * kdim..][..mg * kdim];
        let accumulate = match bias {
            Some(b) => {
                out.chunks_mut(osp).zip(&b[gi * mg..(gi + 1) * mg]).for_each(|(row, &b)| row.fill(b));
                true
            }
            None => false,
        };
        if pointwise {
            sgemm(mg, osp, cg, wg, false, xg, false, out, 1.0, accumulate, pool);
        } else if osp <= THIN_COLUMNS {
            // A few output positions (a streaming model's frame): each
            // one's receptive field becomes a row, which the thin product
            // reads as it is, rather than im2col's tiny rows transposed.
            patches(xg, cg, g, col);
            sgemm(mg, osp, kdim, wg, false, col, true, out, 1.0, accumulate, pool);
        } else {
            im2col(xg, cg, g, col, pool);
            sgemm(mg, osp, kdim, wg, false, col, false, out, 1.0, accumulate, pool);
        }
        activate(out, relu);
    };
    let jobs = n * group;
    // A pointwise product reads its input in place: no im2col matrix.
    let columns = if pointwise { 0 } else { kdim * osp };
    if threads > 1 && work >= PARALLEL_ELEMENTS && (jobs.is_multiple_of(threads) || jobs >= 4 * threads) {
        // Enough independent products: one per thread, each single-threaded.
        pool.install(|| y.par_chunks_mut(mg * osp).enumerate().for_each(|(j, out)| with_columns(columns, |col| job(j, out, col, None))));
    } else {
        with_columns(columns, |col| y.chunks_mut(mg * osp).enumerate().for_each(|(j, out)| job(j, out, col, Some(pool))));
    }
}

use crate::kernels::scratch::with_columns;

/// `Conv`.
#[derive(Debug)]
struct Conv {
    window: Window,
    group: usize,
    /// A Relu fused in by the session (applied to each block of output
    /// while it is still in cache).
    relu: bool,
}

/// The fused activation, if any, on a freshly computed block of output.
fn activate(out: &mut [f32], relu: bool) {
    if relu {
        out.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

impl Op for Conv {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        let w = f32_fact(inputs, 1)?;
        let b = optional_f32_fact(inputs, 2)?;
        let rank = x.shape.len();
        if !(3..=5).contains(&rank) {
            return Err(OpError::input(0, format!("Conv supports inputs [N, C, D1..Dk] with 1 to 3 spatial axes, got rank {rank}")));
        }
        if w.shape.len() != rank {
            return Err(OpError::input(1, format!("W must have the input's rank {rank}, got rank {}", w.shape.len())));
        }
        let group = self.group;
        if let (Some(c), Some(cg)) = (known(&x.shape[1]), known(&w.shape[1])) {
            if c != cg * group {
                return Err(OpError::input(1, format!("W.shape[1] ({cg}) times group ({group}) must equal the input's channels ({c})")));
            }
        }
        if let Some(m) = known(&w.shape[0]) {
            if m % group != 0 {
                return Err(OpError::attribute("group", format!("{group} does not divide W's {m} output channels")));
            }
        }
        if let Some(b) = b {
            if b.shape.len() != 1 || matches!((known(&b.shape[0]), known(&w.shape[0])), (Some(x), Some(y)) if x != y) {
                return Err(OpError::input(2, format!("B must be a vector of W.shape[0] values, got shape {:?}", b.shape)));
            }
        }
        let w_kernel: Option<Vec<usize>> = w.shape[2..].iter().map(known).collect();
        if let (Some(wk), Some(k)) = (&w_kernel, &self.window.kernel) {
            if wk != k {
                return Err(OpError::attribute("kernel_shape", format!("{k:?} differs from W's spatial shape {wk:?}")));
            }
        }
        let kernel = w_kernel.or_else(|| self.window.kernel.clone());
        let mut shape = vec![x.shape[0].clone(), w.shape[0].clone()];
        shape.extend(self.window.dims(&x.shape[2..], kernel.as_deref())?);
        Ok(vec![Fact::new(DataType::F32, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (xs, x) = f32_input(inputs, 0)?;
        let (ws, w) = f32_input(inputs, 1)?;
        let bias = optional_f32_input(inputs, 2)?;
        let rank = xs.len();
        if !(3..=5).contains(&rank) {
            return Err(OpError::input(0, format!("Conv supports inputs [N, C, D1..Dk] with 1 to 3 spatial axes, got shape {xs:?}")));
        }
        if ws.len() != rank {
            return Err(OpError::input(1, format!("W must have the input's rank {rank}, got shape {ws:?}")));
        }
        let (n, c, m, cg, group) = (xs[0], xs[1], ws[0], ws[1], self.group);
        if c != cg * group {
            return Err(OpError::input(1, format!("W.shape[1] ({cg}) times group ({group}) must equal the input's channels ({c})")));
        }
        if m % group != 0 {
            return Err(OpError::attribute("group", format!("{group} does not divide W's {m} output channels")));
        }
        if let Some(k) = &self.window.kernel {
            if k[..] != ws[2..] {
                return Err(OpError::attribute("kernel_shape", format!("{k:?} differs from W's spatial shape {:?}", &ws[2..])));
            }
        }
        let bias = match bias {
            Some((bs, b)) if bs.len() != 1 || b.len() != m => return Err(OpError::input(2, format!("B must be a vector of W.shape[0] = {m} values, got shape {bs:?}"))),
            Some((_, b)) => Some(b),
            None => None,
        };
        let axes = self.window.geometry(&xs[2..], &ws[2..])?;
        let g = Geo3::new(&axes).ok_or_else(|| OpError::input(0, "Conv supports 1 to 3 spatial axes"))?;
        let mut shape: super::axes::Dims = smallvec::smallvec![n, m];
        shape.extend(axes.iter().map(|a| a.output));
        let y = output(outputs, 0)?.reset_f32(&shape)?;
        if cg == 0 {
            // No input channels: the output is the bias.
            y.chunks_mut(g.output_size().max(1)).enumerate().for_each(|(i, p)| p.fill(bias.map_or(0.0, |b| b[i % m])));
            activate(y, self.relu);
        } else {
            conv_f32(x, w, bias, &g, [n, c, m, group], self.relu, y, threads);
        }
        Ok(())
    }
}

fn conv_op(node: &Node, _opset: i64) -> Result<Box<dyn Op>, OpError> {
    // Opsets 1, 11 and 22 differ only in types and in documentation (11
    // made `pads` semantics for auto_pad explicit): one builder serves all.
    let a = Attrs(node);
    let group = a.int("group", 1)?;
    let group = usize::try_from(group).ok().filter(|&g| g > 0).ok_or_else(|| OpError::attribute("group", format!("must be positive, got {group}")))?;
    // A fusion pass puts the Relu after a Conv into it (in a domain of its
    // own, which the provider admits only with its activation); ONNX's
    // Conv has no such attribute.
    let relu = !(node.domain.is_empty() || node.domain == "ai.onnx") && a.fused_relu()?;
    Ok(Box::new(Conv { window: Window::from_attrs(&a, false)?, group, relu }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("Conv", conv_op);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::window::AutoPad;
    use crate::model::Dim;
    use crate::test_util::{ints, pool, values};
    use crate::model::Attribute;

    /// A test configuration, written as the ONNX attributes.
    #[derive(Clone, Default)]
    struct Config {
        x: Vec<usize>,
        w: Vec<usize>,
        group: usize,
        strides: Option<Vec<usize>>,
        dilations: Option<Vec<usize>>,
        pads: Option<Vec<usize>>,
        auto_pad: Option<&'static str>,
        bias: bool,
    }

    impl Config {
        fn node(&self) -> Node {
            let mut attributes = HashMap::new();
            attributes.insert("group".to_string(), Attribute::Int(self.group as i64));
            if let Some(s) = &self.strides {
                attributes.insert("strides".into(), ints(s));
            }
            if let Some(d) = &self.dilations {
                attributes.insert("dilations".into(), ints(d));
            }
            if let Some(p) = &self.pads {
                attributes.insert("pads".into(), ints(p));
            }
            if let Some(a) = self.auto_pad {
                attributes.insert("auto_pad".into(), Attribute::String(a.into()));
            }
            Node { name: "conv".into(), op_type: "Conv".into(), domain: String::new(), inputs: vec![], outputs: vec!["y".into()], attributes }
        }
    }

    /// Conv straight from the spec's definition, in f64: pads first (from
    /// auto_pad or the attribute), then one sum per output element.
    fn reference(cfg: &Config, x: &[f32], w: &[f32], b: Option<&[f32]>) -> (Vec<usize>, Vec<f64>) {
        let sp = cfg.x.len() - 2;
        let (n, c, m) = (cfg.x[0], cfg.x[1], cfg.w[0]);
        let cg = c / cfg.group;
        let mg = m / cfg.group;
        let ins = &cfg.x[2..];
        let ks = &cfg.w[2..];
        let st = cfg.strides.clone().unwrap_or(vec![1; sp]);
        let di = cfg.dilations.clone().unwrap_or(vec![1; sp]);
        let mut begin = vec![0i64; sp];
        let mut outs = vec![0usize; sp];
        for i in 0..sp {
            let ext = di[i] * (ks[i] - 1) + 1;
            match cfg.auto_pad {
                Some("SAME_UPPER") | Some("SAME_LOWER") => {
                    outs[i] = ins[i].div_ceil(st[i]);
                    let total = ((outs[i] - 1) * st[i] + ext).saturating_sub(ins[i]);
                    begin[i] = if cfg.auto_pad == Some("SAME_UPPER") { total / 2 } else { total - total / 2 } as i64;
                }
                Some("VALID") => outs[i] = (ins[i] - ext) / st[i] + 1,
                _ => {
                    let p = cfg.pads.clone().unwrap_or(vec![0; 2 * sp]);
                    begin[i] = p[i] as i64;
                    outs[i] = (ins[i] + p[i] + p[sp + i] - ext) / st[i] + 1;
                }
            }
        }
        let osp: usize = outs.iter().product();
        let ksp: usize = ks.iter().product();
        let isp: usize = ins.iter().product();
        let unravel = |mut f: usize, shape: &[usize]| {
            let mut idx = vec![0; shape.len()];
            for d in (0..shape.len()).rev() {
                idx[d] = f % shape[d];
                f /= shape[d];
            }
            idx
        };
        let mut y = vec![0.0f64; n * m * osp];
        for img in 0..n {
            for oc in 0..m {
                let gi = oc / mg;
                for o in 0..osp {
                    let oi = unravel(o, &outs);
                    let mut s = b.map_or(0.0, |b| b[oc] as f64);
                    for ic in 0..cg {
                        for t in 0..ksp {
                            let ki = unravel(t, ks);
                            let mut flat = 0usize;
                            let mut inside = true;
                            for d in 0..sp {
                                let p = (oi[d] * st[d] + ki[d] * di[d]) as i64 - begin[d];
                                if p < 0 || p >= ins[d] as i64 {
                                    inside = false;
                                }
                                flat = flat * ins[d] + p.max(0) as usize;
                            }
                            if inside {
                                s += x[(img * c + gi * cg + ic) * isp + flat] as f64 * w[(oc * cg + ic) * ksp + t] as f64;
                            }
                        }
                    }
                    y[(img * m + oc) * osp + o] = s;
                }
            }
        }
        let mut shape = vec![n, m];
        shape.extend(outs);
        (shape, y)
    }

    fn check(cfg: &Config) {
        let x = values(cfg.x.iter().product(), 1);
        let w = values(cfg.w.iter().product(), 2);
        let b = cfg.bias.then(|| values(cfg.w[0], 3));
        let (shape, want) = reference(cfg, &x, &w, b.as_deref());
        let op = conv_op(&cfg.node(), 11).unwrap();
        let inputs = [Some(Tensor::f32(cfg.x.clone(), x).unwrap()), Some(Tensor::f32(cfg.w.clone(), w).unwrap()), b.map(|b| Tensor::f32(vec![cfg.w[0]], b).unwrap())];
        let facts: Vec<Option<Fact>> = inputs.iter().map(|t| t.clone().map(Fact::constant)).collect();
        let fact_refs: Vec<Option<&Fact>> = facts.iter().map(Option::as_ref).collect();
        let inferred = op.infer(&fact_refs).unwrap();
        assert_eq!(inferred[0].concrete_shape().unwrap(), shape, "inferred shape");
        let refs: Vec<Option<&Tensor>> = inputs.iter().map(Option::as_ref).collect();
        let close = |y: &Tensor, path: &str| {
            assert_eq!(y.shape(), &shape[..]);
            for (i, (g, w)) in y.as_f32().unwrap().iter().zip(&want).enumerate() {
                assert!((*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "{path}: x {:?} w {:?}: element {i}: got {g}, want {w}", cfg.x, cfg.w);
            }
        };
        for threads in [1, 2] {
            close(&op.eval_new(&refs, 1, &pool(threads)).unwrap().remove(0), "NCHW kernel");
        }
        // In a session with constant weights, a 2-D Conv runs channels-last
        // on packed weights (crate::ops::packed).
        let mut node = cfg.node();
        let names = ["x", "W", "B"];
        node.inputs = names[..inputs.iter().flatten().count()].iter().map(|s| s.to_string()).collect();
        let initializers = names[1..].iter().zip(&inputs[1..]).filter_map(|(n, t)| Some((n.to_string(), t.clone()?))).collect();
        let graph = crate::model::Graph {
            nodes: vec![node],
            inputs: vec![crate::ValueInfo { name: "x".into(), dtype: Some(DataType::F32), shape: Some(cfg.x.iter().map(|&d| Dim::Known(d)).collect()) }],
            outputs: vec![crate::ValueInfo { name: "y".into(), dtype: None, shape: None }],
            initializers,
        };
        let model = crate::Model { ir_version: 8, producer: "test".into(), opsets: HashMap::from([(String::new(), 13)]), graph };
        for threads in [1, 2] {
            let session = crate::SessionBuilder::new().with_intra_op_threads(threads).commit(model.clone()).unwrap();
            let packed = session.placements().iter().any(|p| p.op_type == "PackedConv");
            assert_eq!(packed, cfg.x.len() == 4, "2-D convolutions are packed");
            close(&session.run(vec![("x".into(), inputs[0].clone().unwrap())]).unwrap().remove(0).1, "session");
        }
    }

    fn cfg(x: &[usize], w: &[usize]) -> Config {
        Config { x: x.to_vec(), w: w.to_vec(), group: 1, ..Default::default() }
    }

    #[test]
    fn conv2d_configurations() {
        check(&cfg(&[1, 3, 7, 8], &[4, 3, 3, 3]));
        check(&Config { bias: true, pads: Some(vec![1, 1, 1, 1]), ..cfg(&[2, 3, 7, 8], &[5, 3, 3, 3]) });
        check(&Config { strides: Some(vec![2, 2]), pads: Some(vec![0, 1, 2, 1]), ..cfg(&[1, 2, 9, 10], &[3, 2, 3, 2]) });
        check(&Config { dilations: Some(vec![2, 3]), pads: Some(vec![2, 1, 0, 3]), bias: true, ..cfg(&[1, 2, 11, 12], &[3, 2, 3, 3]) });
        check(&Config { group: 2, strides: Some(vec![1, 2]), bias: true, ..cfg(&[2, 4, 6, 7], &[6, 2, 3, 3]) });
        check(&Config { auto_pad: Some("SAME_UPPER"), strides: Some(vec![2, 2]), ..cfg(&[1, 3, 8, 9], &[4, 3, 4, 3]) });
        check(&Config { auto_pad: Some("SAME_LOWER"), strides: Some(vec![2, 1]), ..cfg(&[1, 3, 7, 6], &[2, 3, 4, 2]) });
        check(&Config { auto_pad: Some("VALID"), strides: Some(vec![3, 2]), ..cfg(&[1, 2, 10, 9], &[2, 2, 3, 3]) });
        // Pointwise (direct GEMM) and 1×1 strided (im2col).
        check(&Config { bias: true, ..cfg(&[2, 8, 5, 6], &[7, 8, 1, 1]) });
        check(&Config { strides: Some(vec![2, 2]), ..cfg(&[1, 8, 5, 6], &[7, 8, 1, 1]) });
        // Large enough to go parallel (im2col and GEMM on 2 threads).
        check(&Config { pads: Some(vec![1, 1, 1, 1]), bias: true, ..cfg(&[1, 16, 24, 24], &[32, 16, 3, 3]) });
        check(&Config { pads: Some(vec![1, 1, 1, 1]), ..cfg(&[4, 8, 16, 16], &[16, 8, 3, 3]) });
        // Rows of output wide enough for the packed path to read its
        // windows in place: unpadded, padded (a first layer's 7×7, stride
        // 2), asymmetric pads with dilation down, SAME_UPPER.
        check(&Config { strides: Some(vec![2, 2]), ..cfg(&[1, 3, 9, 51], &[4, 3, 3, 3]) });
        check(&Config { strides: Some(vec![2, 2]), pads: Some(vec![3, 3, 3, 3]), bias: true, ..cfg(&[1, 3, 12, 50], &[8, 3, 7, 7]) });
        check(&Config { dilations: Some(vec![2, 1]), pads: Some(vec![2, 0, 1, 3]), ..cfg(&[2, 5, 8, 26], &[6, 5, 3, 2]) });
        check(&Config { auto_pad: Some("SAME_UPPER"), strides: Some(vec![2, 2]), ..cfg(&[1, 4, 6, 50], &[5, 4, 4, 4]) });
        // Few pixels, large weights: one block, its windows copied and its
        // product split over the threads.
        check(&Config { pads: Some(vec![1, 1, 1, 1]), bias: true, ..cfg(&[1, 128, 6, 6], &[256, 128, 3, 3]) });
    }

    #[test]
    fn depthwise_and_grouped() {
        check(&Config { group: 4, pads: Some(vec![1, 1, 1, 1]), bias: true, ..cfg(&[2, 4, 9, 9], &[4, 1, 3, 3]) });
        check(&Config { group: 4, strides: Some(vec![2, 2]), pads: Some(vec![1, 0, 1, 2]), ..cfg(&[1, 4, 9, 10], &[8, 1, 3, 3]) });
        check(&Config { group: 3, dilations: Some(vec![2, 2]), auto_pad: Some("SAME_UPPER"), ..cfg(&[1, 3, 8, 8], &[3, 1, 3, 3]) });
        check(&Config { group: 32, pads: Some(vec![2, 2, 2, 2]), strides: Some(vec![2, 2]), bias: true, ..cfg(&[1, 32, 20, 20], &[32, 1, 5, 5]) });
        check(&Config { group: 2, ..cfg(&[3, 6, 5, 5], &[4, 3, 2, 2]) });
    }

    #[test]
    fn conv1d_and_3d() {
        check(&Config { pads: Some(vec![1, 2]), strides: Some(vec![2]), bias: true, ..cfg(&[2, 3, 11], &[4, 3, 3]) });
        check(&Config { dilations: Some(vec![3]), auto_pad: Some("SAME_LOWER"), ..cfg(&[1, 2, 9], &[3, 2, 2]) });
        check(&Config { pads: Some(vec![1, 0, 1, 0, 1, 1]), strides: Some(vec![1, 2, 1]), ..cfg(&[1, 2, 4, 5, 6], &[3, 2, 2, 3, 2]) });
        check(&Config { group: 2, dilations: Some(vec![1, 2, 1]), bias: true, ..cfg(&[2, 4, 3, 6, 5], &[2, 2, 2, 2, 2]) });
    }

    /// At most eight output positions: receptive fields as rows (patches)
    /// for the thin product. Silero VAD's STFT as a convolution (one
    /// channel, long kernel, four positions); pads at both ends; dilation;
    /// outputs that see nothing but padding; 2-D and grouped.
    #[test]
    fn few_output_positions() {
        check(&Config { strides: Some(vec![128]), bias: true, ..cfg(&[1, 1, 640], &[6, 1, 256]) });
        check(&Config { pads: Some(vec![1, 1]), bias: true, ..cfg(&[2, 5, 4], &[3, 5, 3]) });
        check(&Config { dilations: Some(vec![2]), pads: Some(vec![2, 1]), ..cfg(&[1, 2, 7], &[3, 2, 3]) });
        check(&Config { pads: Some(vec![3, 3]), ..cfg(&[1, 2, 2], &[3, 2, 3]) });
        check(&Config { strides: Some(vec![2]), pads: Some(vec![1, 1]), ..cfg(&[1, 3, 8], &[5, 3, 3]) });
        check(&Config { strides: Some(vec![2, 1]), pads: Some(vec![1, 0, 1, 1]), ..cfg(&[1, 3, 3, 2], &[4, 3, 3, 2]) });
        check(&Config { group: 2, pads: Some(vec![1, 1]), ..cfg(&[1, 4, 5], &[6, 2, 3]) });
    }

    #[test]
    fn errors_name_the_culprit() {
        let op = conv_op(&cfg(&[1, 4, 5, 5], &[2, 2, 3, 3]).node(), 11).unwrap();
        let t = |s: &[usize]| Some(Tensor::f32(s.to_vec(), vec![0.0; s.iter().product()]).unwrap());
        let (x, w) = (t(&[1, 4, 5, 5]), t(&[2, 2, 3, 3]));
        assert!(matches!(op.eval_new(&[x.as_ref(), w.as_ref()], 1, &pool(1)), Err(OpError::Input { index: 1, .. })));
        let w3 = t(&[2, 4, 3]);
        assert!(matches!(op.eval_new(&[x.as_ref(), w3.as_ref()], 1, &pool(1)), Err(OpError::Input { index: 1, .. })));
        let (w, b) = (t(&[2, 4, 3, 3]), t(&[3]));
        assert!(matches!(op.eval_new(&[x.as_ref(), w.as_ref(), b.as_ref()], 1, &pool(1)), Err(OpError::Input { index: 2, .. })));
        let big = t(&[2, 4, 7, 7]);
        assert!(matches!(op.eval_new(&[x.as_ref(), big.as_ref()], 1, &pool(1)), Err(OpError::Shape(_))));
        let bad_pads = Config { pads: Some(vec![1, 1]), ..cfg(&[1, 4, 5, 5], &[2, 4, 3, 3]) };
        let op = conv_op(&bad_pads.node(), 11).unwrap();
        assert!(matches!(op.eval_new(&[x.as_ref(), w.as_ref()], 1, &pool(1)), Err(OpError::Attribute { .. })));
        let mut node = cfg(&[1, 4, 5, 5], &[2, 4, 3, 3]).node();
        node.attributes.insert("auto_pad".into(), Attribute::String("SAME".into()));
        assert!(matches!(conv_op(&node, 11), Err(OpError::Attribute { .. })));
        node.attributes.insert("auto_pad".into(), Attribute::String("NOTSET".into()));
        node.attributes.insert("group".into(), Attribute::Int(0));
        assert!(matches!(conv_op(&node, 11), Err(OpError::Attribute { .. })));
    }

    #[test]
    fn infer_over_unknown_dims() {
        let op = conv_op(&Config { pads: Some(vec![1, 1, 1, 1]), ..cfg(&[], &[]) }.node(), 11).unwrap();
        let x = Fact::new(DataType::F32, vec![Dim::Symbolic("n".into()), Dim::Known(3), Dim::Unknown, Dim::Known(10)]);
        let w = Fact::new(DataType::F32, vec![Dim::Known(8), Dim::Known(3), Dim::Known(3), Dim::Known(3)]);
        let out = op.infer(&[Some(&x), Some(&w)]).unwrap();
        // Stride 1 and pads 1+1 for a 3-wide kernel keep the unknown size.
        assert_eq!(out[0].shape, vec![Dim::Symbolic("n".into()), Dim::Known(8), Dim::Unknown, Dim::Known(10)]);
        let op = conv_op(&Config { strides: Some(vec![2, 2]), ..cfg(&[], &[]) }.node(), 11).unwrap();
        let x = Fact::new(DataType::F32, vec![Dim::Known(1), Dim::Known(3), Dim::Symbolic("h".into()), Dim::Known(9)]);
        let out = op.infer(&[Some(&x), Some(&w)]).unwrap();
        assert_eq!(out[0].shape, vec![Dim::Known(1), Dim::Known(8), Dim::Unknown, Dim::Known(4)]);
        let w_bad = Fact::new(DataType::F32, vec![Dim::Known(8), Dim::Known(2), Dim::Known(3), Dim::Known(3)]);
        assert!(matches!(op.infer(&[Some(&x), Some(&w_bad)]), Err(OpError::Input { index: 1, .. })));
    }

    #[test]
    fn window_output_sizes() {
        // ceil_mode with the rule that the last window starts inside.
        let w = Window { auto_pad: AutoPad::NotSet, kernel: None, strides: Some(vec![2]), dilations: None, pads: Some(vec![1, 1]), ceil_mode: true };
        assert_eq!(w.geometry(&[5], &[2]).unwrap()[0].output, 3);
        assert_eq!(w.geometry(&[6], &[3]).unwrap()[0].output, 4);
        let floor = Window { ceil_mode: false, ..w.clone() };
        assert_eq!(floor.geometry(&[6], &[3]).unwrap()[0].output, 3);
        let same = Window { auto_pad: AutoPad::SameLower, pads: None, ceil_mode: false, ..w };
        let a = same.geometry(&[7], &[4]).unwrap()[0];
        assert_eq!((a.output, a.pad_begin, a.pad_end), (4, 2, 1));
    }

    /// Crafted pads, dilations and kernels are errors, never wrapped sizes.
    #[test]
    fn window_sizes_that_overflow_are_errors() {
        let w = Window { auto_pad: AutoPad::NotSet, kernel: None, strides: None, dilations: None, pads: Some(vec![usize::MAX, 1]), ceil_mode: false };
        assert!(w.geometry(&[5], &[2]).unwrap_err().to_string().contains("overflows"));
        let w = Window { pads: None, dilations: Some(vec![usize::MAX]), ..w };
        assert!(w.geometry(&[5], &[3]).unwrap_err().to_string().contains("overflows"));
        assert!(w.geometry(&[5], &[0]).unwrap_err().to_string().contains("kernel axis 0 has size 0"));
        // Pads of 2^62 make an output no tensor can hold: the kernel says so.
        let big = 1i64 << 62;
        let op = conv_op(&Config { pads: Some(vec![1 << 62, 0, 1 << 62, 0]), ..cfg(&[1, 1, 2, 2], &[1, 1, 1, 1]) }.node(), 11).unwrap();
        let x = Tensor::f32(vec![1, 1, 2, 2], vec![1.0; 4]).unwrap();
        let k = Tensor::f32(vec![1, 1, 1, 1], vec![1.0]).unwrap();
        let e = op.eval_new(&[Some(&x), Some(&k)], 1, &crate::test_util::pool(1)).unwrap_err();
        assert!(matches!(e, OpError::Tensor(_)), "{e} ({big})");
    }
}
