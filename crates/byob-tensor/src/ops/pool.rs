//! Pooling: `MaxPool`, `AveragePool`, `LpPool` (1 to 3 spatial axes), and
//! `GlobalMaxPool`, `GlobalAveragePool` (any number), on NCHW-style
//! layouts. Planes (one image, one channel) run in parallel; inside a plane
//! the innermost loop runs along an input row, which vectorises.

use super::window::Window;
use crate::kernels::window::Geo3;
use super::linalg::{f32_fact, f32_input};
use super::{output, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{Data, DataType, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

/// Below this many input elements, pooling stays on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 15;

/// Runs `plane(input_plane, output_plane)` over every (image, channel).
fn planes(x: &[f32], in_size: usize, y: &mut [f32], out_size: usize, threads: &rayon::ThreadPool, plane: impl Fn(&[f32], &mut [f32]) + Sync) {
    if y.is_empty() || out_size == 0 {
        return;
    }
    let go = |(i, out): (usize, &mut [f32])| plane(&x[i * in_size..][..in_size], out);
    if threads.current_num_threads() > 1 && x.len() >= PARALLEL_ELEMENTS && y.len() / out_size > 1 {
        threads.install(|| y.par_chunks_mut(out_size).enumerate().for_each(go));
    } else {
        y.chunks_mut(out_size).enumerate().for_each(go);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Max,
    Average { count_include_pad: bool },
    /// The p-norm of each window (padding counts as zeros).
    Lp { p: i32 },
}

/// `MaxPool` and `AveragePool`.
#[derive(Debug)]
pub(super) struct Pool {
    pub kind: Kind,
    pub window: Window,
    /// The kernel_shape attribute (required).
    pub kernel: Vec<usize>,
    /// MaxPool's second output (Indices) is wanted, in this storage order
    /// (false: row-major, true: column-major over the spatial axes).
    indices: Option<bool>,
}

impl Pool {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Max => "MaxPool",
            Kind::Average { .. } => "AveragePool",
            Kind::Lp { .. } => "LpPool",
        }
    }

    fn check_rank(&self, rank: usize) -> Result<(), OpError> {
        if !(3..=5).contains(&rank) || rank - 2 != self.kernel.len() {
            return Err(OpError::input(
                0,
                format!("{} with a {}-D kernel_shape needs an input [N, C, D1..D{}] (1 to 3 spatial axes), got rank {rank}", self.name(), self.kernel.len(), self.kernel.len()),
            ));
        }
        Ok(())
    }

    /// Folds every window of a plane into `y` with `combine`, starting from
    /// `init` (which `combine` ignores: -inf for max, 0 for sums). Windows
    /// are separable: first each input row is folded along the innermost
    /// axis, then output rows fold the rows their window covers. The row
    /// pass runs on a copy of the row padded with `init`, one contiguous
    /// pass per kernel tap (they vectorise, where strided reads would not),
    /// and keeps every `stride`-th result.
    fn fold_plane(x: &[f32], y: &mut [f32], g: &Geo3, init: f32, combine: impl Fn(f32, f32) -> f32 + Copy) {
        let [_, ih, iw] = g.input;
        let [oz, oh, ow] = g.output;
        let (k, s, d) = (g.kernel[2], g.stride[2], g.dilation[2]);
        // Window starts 0, s, ..; the padded row covers the last window's end.
        let starts = (ow.max(1) - 1) * s + 1;
        let padded_len = starts + (k - 1) * d;
        // Every value of the working space is written before it is read:
        // the padded row each row, the accumulator from it, every folded row.
        crate::kernels::scratch::with_columns(padded_len + starts + g.input[0] * ih * ow, |scratch| {
            let (padded, rest) = scratch.split_at_mut(padded_len);
            let (acc, folded) = rest.split_at_mut(starts);
            for (row, out) in x.chunks_exact(iw.max(1)).zip(folded.chunks_exact_mut(ow.max(1))).take(g.input[0] * ih) {
                // The row at its place in the padded frame (pad columns stay init).
                padded.fill(init);
                let lo = g.pad[2].min(padded_len);
                let n = iw.min(padded_len - lo);
                padded[lo..lo + n].copy_from_slice(&row[..n]);
                acc.copy_from_slice(&padded[..starts]);
                for t in 1..k {
                    acc.iter_mut().zip(&padded[t * d..]).for_each(|(a, &v)| *a = combine(*a, v));
                }
                out.iter_mut().zip(acc.iter().step_by(s)).for_each(|(o, &a)| *o = a);
            }
            y.fill(init);
            for z in 0..oz {
                for r in 0..oh {
                    let dst = &mut y[(z * oh + r) * ow..][..ow];
                    for a in 0..g.kernel[0] {
                        for b in 0..g.kernel[1] {
                            let Some(row) = g.input_row(z, r, a, b) else { continue };
                            let src = &folded[row / iw.max(1) * ow..][..ow];
                            dst.iter_mut().zip(src).for_each(|(o, &v)| *o = combine(*o, v));
                        }
                    }
                }
            }
        });
    }

    /// Max and argmax of every window: the Indices output, flat over the
    /// whole input ([N, C, D1..Dk]), padding not counted, the first maximum
    /// in window order winning ties; every element of `values` and
    /// `indices` (one per output element) is written.
    fn max_with_indices(x: &[f32], g: &Geo3, column_major: bool, values: &mut [f32], indices: &mut [i64]) {
        let (isp, osp) = (g.input_size(), g.output_size());
        let planes = x.len() / isp.max(1);
        let inside = |axis: usize, o: usize, k: usize| {
            let p = g.position(axis, o, k);
            (p >= 0 && p < g.input[axis] as isize).then_some(p as usize)
        };
        for plane in 0..planes {
            let src = &x[plane * isp..][..isp];
            for o in 0..osp {
                let (o0, o1, o2) = (o / (g.output[1] * g.output[2]), (o / g.output[2]) % g.output[1], o % g.output[2]);
                let (mut best, mut at) = (f32::NEG_INFINITY, None);
                for k0 in 0..g.kernel[0] {
                    let Some(p0) = inside(0, o0, k0) else { continue };
                    for k1 in 0..g.kernel[1] {
                        let Some(p1) = inside(1, o1, k1) else { continue };
                        for k2 in 0..g.kernel[2] {
                            let Some(p2) = inside(2, o2, k2) else { continue };
                            let v = src[(p0 * g.input[1] + p1) * g.input[2] + p2];
                            if at.is_none() || v > best {
                                (best, at) = (v, Some((p0, p1, p2)));
                            }
                        }
                    }
                }
                let (p0, p1, p2) = at.unwrap_or((0, 0, 0));
                // Leading axes of size 1 pad 1-D and 2-D inputs to three.
                let spatial = if column_major {
                    (p2 * g.input[1] + p1) * g.input[0] + p0
                } else {
                    (p0 * g.input[1] + p1) * g.input[2] + p2
                };
                values[plane * osp + o] = best;
                indices[plane * osp + o] = (plane * isp + spatial) as i64;
            }
        }
    }
}

/// For each output position on `axis`, how many kernel taps fall inside
/// [lo, hi) of the input coordinates.
fn tap_counts(g: &Geo3, axis: usize, lo: isize, hi: isize) -> Vec<usize> {
    (0..g.output[axis]).map(|o| (0..g.kernel[axis]).filter(|&k| (lo..hi).contains(&g.position(axis, o, k))).count()).collect()
}

/// For each output position (over the three axes of `g`), 1 / the number
/// of taps an average divides by. The divisor is separable: per axis, the
/// taps inside the input (or inside input and pads with count_include_pad;
/// taps in the extra region ceil_mode adds past the end pad never count).
pub(super) fn inverse_counts(g: &Geo3, axes: &[crate::kernels::window::Axis], count_include_pad: bool) -> Vec<f32> {
    let counts: Vec<Vec<usize>> = (0..3)
        .map(|axis| {
            let (begin, end) = if count_include_pad {
                let full = axes.len() + axis >= 3;
                let a = if full { Some(axes[axis + axes.len() - 3]) } else { None };
                (-(a.map_or(0, |a| a.pad_begin) as isize), g.input[axis] as isize + a.map_or(0, |a| a.pad_end) as isize)
            } else {
                (0, g.input[axis] as isize)
            };
            tap_counts(g, axis, begin, end)
        })
        .collect();
    let [oh, ow] = [g.output[1], g.output[2]];
    (0..g.output_size())
        .map(|o| {
            let n = counts[0][o / (oh * ow)] * counts[1][(o / ow) % oh] * counts[2][o % ow];
            if n == 0 {
                f32::NAN
            } else {
                1.0 / n as f32
            }
        })
        .collect()
}

impl Op for Pool {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        self.check_rank(x.shape.len())?;
        let mut shape = x.shape[..2].to_vec();
        shape.extend(self.window.dims(&x.shape[2..], Some(&self.kernel))?);
        let mut facts = vec![Fact::new(DataType::F32, shape.clone())];
        if self.indices.is_some() {
            facts.push(Fact::new(DataType::I64, shape));
        }
        Ok(facts)
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (xs, x) = f32_input(inputs, 0)?;
        self.check_rank(xs.len())?;
        let axes = self.window.geometry(&xs[2..], &self.kernel)?;
        let g = Geo3::new(&axes).ok_or_else(|| OpError::input(0, "pooling supports 1 to 3 spatial axes"))?;
        let mut shape = xs[..2].to_vec();
        shape.extend(axes.iter().map(|a| a.output));
        if let Some(column_major) = self.indices {
            output(outputs, 1)?;
            let (values, indices) = outputs.split_at_mut(1);
            let values = values[0].reset_f32(&shape)?;
            let Data::I64(indices) = indices[0].reset(DataType::I64, &shape)? else { unreachable!("reset to int64") };
            Self::max_with_indices(x, &g, column_major, values, indices);
            return Ok(());
        }
        let y = output(outputs, 0)?.reset_f32(&shape)?;
        let (isp, osp) = (g.input_size(), g.output_size());
        match self.kind {
            Kind::Max => planes(x, isp, y, osp, threads, |x, y| Self::fold_plane(x, y, &g, f32::NEG_INFINITY, f32::max)),
            Kind::Average { count_include_pad } => {
                let inverse = inverse_counts(&g, &axes, count_include_pad);
                planes(x, isp, y, osp, threads, |x, y| {
                    Self::fold_plane(x, y, &g, 0.0, |a, b| a + b);
                    y.iter_mut().zip(&inverse).for_each(|(v, &s)| *v *= s);
                });
            }
            Kind::Lp { p } => {
                // Window sums of |x|^p (the fold combines partial sums too,
                // so the powers are taken first), then the p-th root.
                let powers: Vec<f32> = x.iter().map(|v| v.abs().powi(p)).collect();
                planes(&powers, isp, y, osp, threads, |x, y| {
                    Self::fold_plane(x, y, &g, 0.0, |a, b| a + b);
                    y.iter_mut().for_each(|v| *v = v.powf(1.0 / p as f32));
                });
            }
        }
        Ok(())
    }
}

/// `GlobalMaxPool` and `GlobalAveragePool`: one value per (image, channel).
#[derive(Debug)]
struct GlobalPool {
    max: bool,
}

impl Op for GlobalPool {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        if x.shape.len() < 2 {
            return Err(OpError::input(0, format!("expected [N, C, D1..Dk], got rank {}", x.shape.len())));
        }
        let mut shape = x.shape[..2].to_vec();
        shape.extend(std::iter::repeat_n(Dim::Known(1), x.shape.len() - 2));
        Ok(vec![Fact::new(DataType::F32, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (xs, x) = f32_input(inputs, 0)?;
        if xs.len() < 2 {
            return Err(OpError::input(0, format!("expected [N, C, D1..Dk], got shape {xs:?}")));
        }
        let isp: usize = xs[2..].iter().product();
        let mut shape = xs[..2].to_vec();
        shape.extend(std::iter::repeat_n(1, xs.len() - 2));
        let y = output(outputs, 0)?.reset_f32(&shape)?;
        let max = self.max;
        planes(x, isp, y, 1, threads, |x, y| {
            y[0] = if max {
                x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
            } else {
                // Eight partial sums: vectorises and loses less precision.
                let mut acc = [0.0f32; 8];
                let chunks = x.chunks_exact(8);
                let rest: f32 = chunks.remainder().iter().sum();
                for c in chunks {
                    acc.iter_mut().zip(c).for_each(|(a, &v)| *a += v);
                }
                (acc.iter().sum::<f32>() + rest) / isp as f32
            };
        });
        Ok(())
    }
}

fn pool_op(node: &Node, kind: Kind) -> Result<Box<dyn Op>, OpError> {
    Ok(Box::new(read_pool(node, kind)?))
}

/// MaxPool's or AveragePool's attributes.
pub(super) fn read_pool(node: &Node, kind: Kind) -> Result<Pool, OpError> {
    // Opset history: ceil_mode since 10 (read at any opset: absent before),
    // dilations for MaxPool since 10 and AveragePool since 19, MaxPool's
    // storage_order (8) only affects the Indices output. The remaining
    // versions changed types only.
    let a = Attrs(node);
    let kernel: Vec<usize> = a
        .ints("kernel_shape")?
        .ok_or_else(|| OpError::attribute("kernel_shape", "required"))?
        .iter()
        .map(|&k| usize::try_from(k).ok().filter(|&k| k > 0).ok_or_else(|| OpError::attribute("kernel_shape", format!("values must be positive, got {k}"))))
        .collect::<Result<_, _>>()?;
    if kernel.is_empty() {
        return Err(OpError::attribute("kernel_shape", "must not be empty"));
    }
    let indices = if kind == Kind::Max && node.outputs.get(1).is_some_and(|o| !o.is_empty()) {
        match a.int("storage_order", 0)? {
            0 => Some(false),
            1 => Some(true),
            other => return Err(OpError::attribute("storage_order", format!("must be 0 or 1, got {other}"))),
        }
    } else {
        None
    };
    let window = Window::from_attrs(&a, true)?;
    window.check(kernel.len())?;
    Ok(Pool { kind, window, kernel, indices })
}

fn average_pool(node: &Node, _opset: i64) -> Result<Box<dyn Op>, OpError> {
    pool_op(node, average_kind(node)?)
}

/// AveragePool's kind, with its count_include_pad attribute.
pub(super) fn average_kind(node: &Node) -> Result<Kind, OpError> {
    match Attrs(node).int("count_include_pad", 0)? {
        0 => Ok(Kind::Average { count_include_pad: false }),
        1 => Ok(Kind::Average { count_include_pad: true }),
        v => Err(OpError::attribute("count_include_pad", format!("must be 0 or 1, got {v}"))),
    }
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("MaxPool", |n, _| pool_op(n, Kind::Max));
    ops.insert("AveragePool", average_pool);
    ops.insert("LpPool", |n, _| {
        let p = Attrs(n).int("p", 2)?;
        let p = i32::try_from(p).ok().filter(|&p| (1..=64).contains(&p)).ok_or_else(|| OpError::attribute("p", format!("{p} must be between 1 and 64")))?;
        pool_op(n, Kind::Lp { p })
    });
    ops.insert("GlobalMaxPool", |_, _| Ok(Box::new(GlobalPool { max: true })));
    ops.insert("GlobalAveragePool", |_, _| Ok(Box::new(GlobalPool { max: false })));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{ints, pool, values};
    use crate::model::Attribute;

    #[derive(Clone, Default)]
    struct Config {
        x: Vec<usize>,
        kernel: Vec<usize>,
        strides: Option<Vec<usize>>,
        dilations: Option<Vec<usize>>,
        pads: Option<Vec<usize>>,
        auto_pad: Option<&'static str>,
        ceil_mode: bool,
        count_include_pad: bool,
    }

    impl Config {
        fn node(&self, op: &str) -> Node {
            let mut attributes = HashMap::new();
            attributes.insert("kernel_shape".to_string(), ints(&self.kernel));
            attributes.insert("ceil_mode".into(), Attribute::Int(self.ceil_mode as i64));
            attributes.insert("count_include_pad".into(), Attribute::Int(self.count_include_pad as i64));
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
            Node { name: op.into(), op_type: op.into(), domain: String::new(), inputs: vec![], outputs: vec!["y".into()], attributes }
        }
    }

    /// Pooling from the spec's definition, in f64: output sizes from the
    /// formulas, then each window's taps enumerated one by one.
    fn reference(cfg: &Config, x: &[f32], max: bool) -> (Vec<usize>, Vec<f64>) {
        let sp = cfg.kernel.len();
        let ins = &cfg.x[2..];
        let ks = &cfg.kernel;
        let st = cfg.strides.clone().unwrap_or(vec![1; sp]);
        let di = cfg.dilations.clone().unwrap_or(vec![1; sp]);
        let mut pads = cfg.pads.clone().unwrap_or(vec![0; 2 * sp]);
        let mut outs = vec![0usize; sp];
        for i in 0..sp {
            let ext = di[i] * (ks[i] - 1) + 1;
            match cfg.auto_pad {
                Some("SAME_UPPER") | Some("SAME_LOWER") => {
                    outs[i] = ins[i].div_ceil(st[i]);
                    let total = ((outs[i] - 1) * st[i] + ext).saturating_sub(ins[i]);
                    let upper = cfg.auto_pad == Some("SAME_UPPER");
                    pads[i] = if upper { total / 2 } else { total - total / 2 };
                    pads[sp + i] = total - pads[i];
                }
                Some("VALID") => {
                    pads = vec![0; 2 * sp];
                    outs[i] = (ins[i] - ext) / st[i] + 1;
                }
                _ => {
                    let num = (ins[i] + pads[i] + pads[sp + i] - ext) as f64 / st[i] as f64;
                    outs[i] = if cfg.ceil_mode { num.ceil() as usize } else { num.floor() as usize } + 1;
                    if cfg.ceil_mode && (outs[i] - 1) * st[i] >= ins[i] + pads[i] {
                        outs[i] -= 1;
                    }
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
        let planes = cfg.x[0] * cfg.x[1];
        let mut y = vec![0.0; planes * osp];
        for p in 0..planes {
            for o in 0..osp {
                let oi = unravel(o, &outs);
                let (mut best, mut sum, mut count, mut padded_count) = (f64::NEG_INFINITY, 0.0, 0usize, 0usize);
                for t in 0..ksp {
                    let ki = unravel(t, ks);
                    let pos: Vec<i64> = (0..sp).map(|d| (oi[d] * st[d] + ki[d] * di[d]) as i64 - pads[d] as i64).collect();
                    if (0..sp).all(|d| pos[d] >= -(pads[d] as i64) && pos[d] < (ins[d] + pads[sp + d]) as i64) {
                        padded_count += 1;
                    }
                    if (0..sp).all(|d| pos[d] >= 0 && pos[d] < ins[d] as i64) {
                        let flat = (0..sp).fold(0, |acc, d| acc * ins[d] + pos[d] as usize);
                        let v = x[p * isp + flat] as f64;
                        best = best.max(v);
                        sum += v;
                        count += 1;
                    }
                }
                y[p * osp + o] = if max {
                    best
                } else if cfg.count_include_pad {
                    sum / padded_count as f64
                } else {
                    sum / count as f64
                };
            }
        }
        let mut shape = cfg.x[..2].to_vec();
        shape.extend(outs);
        (shape, y)
    }

    fn check(cfg: &Config) {
        let x = values(cfg.x.iter().product(), 7);
        for (op_type, max) in [("MaxPool", true), ("AveragePool", false)] {
            let (shape, want) = reference(cfg, &x, max);
            let op = registry_op(op_type, &cfg.node(op_type));
            let input = Tensor::f32(cfg.x.clone(), x.clone()).unwrap();
            let fact = Fact::constant(input.clone());
            assert_eq!(op.infer(&[Some(&fact)]).unwrap()[0].concrete_shape().unwrap(), shape, "{op_type} inferred shape");
            for threads in [1, 2] {
                let y = op.eval_new(&[Some(&input)], 1, &pool(threads)).unwrap().remove(0);
                assert_eq!(y.shape(), &shape[..], "{op_type}");
                for (i, (g, w)) in y.as_f32().unwrap().iter().zip(&want).enumerate() {
                    assert!((*g as f64 - w).abs() <= 1e-4 * (1.0 + w.abs()), "{op_type} {:?}: element {i}: got {g}, want {w}", cfg.x);
                }
            }
        }
    }

    fn registry_op(op_type: &str, node: &Node) -> Box<dyn Op> {
        let mut ops = HashMap::new();
        register(&mut ops);
        ops[op_type](node, 19).unwrap()
    }

    fn cfg(x: &[usize], kernel: &[usize]) -> Config {
        Config { x: x.to_vec(), kernel: kernel.to_vec(), ..Default::default() }
    }

    #[test]
    fn pool2d_configurations() {
        check(&cfg(&[1, 2, 6, 7], &[2, 2]));
        check(&Config { strides: Some(vec![2, 2]), ..cfg(&[2, 3, 8, 9], &[3, 3]) });
        check(&Config { strides: Some(vec![2, 1]), pads: Some(vec![1, 0, 1, 2]), ..cfg(&[1, 2, 7, 6], &[3, 3]) });
        check(&Config { strides: Some(vec![2, 1]), pads: Some(vec![1, 0, 1, 2]), count_include_pad: true, ..cfg(&[1, 2, 7, 6], &[3, 3]) });
        check(&Config { dilations: Some(vec![2, 2]), pads: Some(vec![1, 1, 1, 1]), ..cfg(&[1, 1, 9, 9], &[3, 2]) });
        check(&Config { ceil_mode: true, strides: Some(vec![2, 2]), ..cfg(&[1, 2, 8, 7], &[3, 3]) });
        check(&Config { ceil_mode: true, strides: Some(vec![2, 2]), pads: Some(vec![1, 1, 1, 1]), count_include_pad: true, ..cfg(&[1, 2, 5, 6], &[2, 3]) });
        check(&Config { ceil_mode: true, strides: Some(vec![3, 3]), pads: Some(vec![1, 1, 0, 0]), ..cfg(&[1, 1, 7, 8], &[2, 2]) });
        check(&Config { auto_pad: Some("SAME_UPPER"), strides: Some(vec![2, 2]), ..cfg(&[1, 3, 7, 8], &[3, 2]) });
        check(&Config { auto_pad: Some("SAME_UPPER"), strides: Some(vec![2, 2]), count_include_pad: true, ..cfg(&[1, 3, 7, 8], &[3, 2]) });
        check(&Config { auto_pad: Some("SAME_LOWER"), ..cfg(&[1, 2, 5, 5], &[2, 4]) });
        check(&Config { auto_pad: Some("VALID"), strides: Some(vec![2, 3]), ..cfg(&[1, 2, 9, 10], &[3, 2]) });
        // Large enough for the parallel path.
        check(&Config { strides: Some(vec![2, 2]), pads: Some(vec![1, 1, 1, 1]), ..cfg(&[2, 16, 33, 33], &[3, 3]) });
    }

    #[test]
    fn pool1d_and_3d() {
        check(&Config { strides: Some(vec![2]), pads: Some(vec![1, 1]), ..cfg(&[2, 3, 11], &[3]) });
        check(&Config { ceil_mode: true, strides: Some(vec![2]), count_include_pad: true, pads: Some(vec![1, 1]), ..cfg(&[1, 2, 10], &[4]) });
        check(&Config { strides: Some(vec![1, 2, 2]), pads: Some(vec![0, 1, 1, 1, 0, 1]), ..cfg(&[1, 2, 4, 6, 5], &[2, 3, 2]) });
        check(&Config { dilations: Some(vec![2, 1, 1]), count_include_pad: true, pads: Some(vec![1, 1, 1, 1, 1, 1]), ..cfg(&[1, 1, 5, 4, 4], &[2, 2, 2]) });
    }

    #[test]
    fn onnx_examples() {
        // The ONNX node tests maxpool_2d_ceil and averagepool_2d_ceil.
        let x = Tensor::f32(vec![1, 1, 4, 4], (1..=16).map(|v| v as f32).collect()).unwrap();
        let c = Config { ceil_mode: true, strides: Some(vec![2, 2]), ..cfg(&[1, 1, 4, 4], &[3, 3]) };
        let max = registry_op("MaxPool", &c.node("MaxPool")).eval_new(&[Some(&x)], 1, &pool(1)).unwrap().remove(0);
        assert_eq!(max.as_f32().unwrap(), &[11.0, 12.0, 15.0, 16.0]);
        let avg = registry_op("AveragePool", &c.node("AveragePool")).eval_new(&[Some(&x)], 1, &pool(1)).unwrap().remove(0);
        assert_eq!(avg.as_f32().unwrap(), &[6.0, 7.5, 12.0, 13.5]);
    }

    #[test]
    fn global_pools() {
        let shape = [2, 3, 5, 7];
        let x = values(shape.iter().product(), 3);
        let input = Tensor::f32(shape.to_vec(), x.clone()).unwrap();
        for (op_type, max) in [("GlobalMaxPool", true), ("GlobalAveragePool", false)] {
            let op = registry_op(op_type, &cfg(&[], &[]).node(op_type));
            let y = op.eval_new(&[Some(&input)], 1, &pool(2)).unwrap().remove(0);
            assert_eq!(y.shape(), &[2, 3, 1, 1]);
            for (p, got) in y.as_f32().unwrap().iter().enumerate() {
                let plane = &x[p * 35..(p + 1) * 35];
                let want = if max { plane.iter().map(|&v| v as f64).fold(f64::NEG_INFINITY, f64::max) } else { plane.iter().map(|&v| v as f64).sum::<f64>() / 35.0 };
                assert!((*got as f64 - want).abs() < 1e-5);
            }
            let fact = Fact::new(DataType::F32, vec![Dim::Unknown, Dim::Known(3), Dim::Unknown]);
            assert_eq!(op.infer(&[Some(&fact)]).unwrap()[0].shape, vec![Dim::Unknown, Dim::Known(3), Dim::Known(1)]);
        }
    }

    #[test]
    fn errors_and_unknown_dims() {
        let mut ops = HashMap::new();
        register(&mut ops);
        let no_kernel = Node { attributes: HashMap::new(), ..cfg(&[], &[2, 2]).node("MaxPool") };
        assert!(matches!(ops["MaxPool"](&no_kernel, 12), Err(OpError::Attribute { .. })));
        let mut with_indices = cfg(&[], &[2, 2]).node("MaxPool");
        with_indices.outputs.push("indices".into());
        assert!(ops["MaxPool"](&with_indices, 12).is_ok());
        with_indices.attributes.insert("storage_order".into(), Attribute::Int(2));
        assert!(matches!(ops["MaxPool"](&with_indices, 12), Err(OpError::Attribute { .. })));
        let bad_pads = Config { pads: Some(vec![1, 1, 1]), ..cfg(&[], &[2, 2]) };
        assert!(matches!(ops["AveragePool"](&bad_pads.node("AveragePool"), 12), Err(OpError::Attribute { .. })));
        let op = registry_op("MaxPool", &Config { strides: Some(vec![2, 2]), ..cfg(&[], &[2, 2]) }.node("MaxPool"));
        let x3 = Tensor::f32(vec![1, 4, 4], vec![0.0; 16]).unwrap();
        assert!(matches!(op.eval_new(&[Some(&x3)], 1, &pool(1)), Err(OpError::Input { index: 0, .. })));
        let fact = Fact::new(DataType::F32, vec![Dim::Symbolic("n".into()), Dim::Known(3), Dim::Unknown, Dim::Known(9)]);
        assert_eq!(op.infer(&[Some(&fact)]).unwrap()[0].shape, vec![Dim::Symbolic("n".into()), Dim::Known(3), Dim::Unknown, Dim::Known(4)]);
        let tiny = Tensor::f32(vec![1, 1, 1, 1], vec![0.0]).unwrap();
        assert!(matches!(op.eval_new(&[Some(&tiny)], 1, &pool(1)), Err(OpError::Shape(_))));
    }
}
