//! Attention (opsets 23 and 24): scaled dot-product attention over 4-D
//! [batch, heads, sequence, head size] or 3-D [batch, sequence, hidden]
//! inputs, with grouped key/value heads, a past key and value (returned
//! with the new ones appended), a boolean or additive mask (padded with
//! "masked" to the keys' length), causal masking after the past, per-batch
//! key lengths (`nonpad_kv_seqlen`), `softcap`, and the optional QK output
//! in each `qk_matmul_output_mode`; and RotaryEmbedding. Computed in f64.

use super::{required, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::Tensor;
use std::collections::HashMap;

#[derive(Debug)]
struct Attention {
    scale: Option<f32>,
    causal: bool,
    q_heads: Option<usize>,
    kv_heads: Option<usize>,
    softcap: f32,
    qk_mode: i64,
}

/// A [batch, heads, sequence, size] view of a 3-D or 4-D input.
struct Heads {
    values: Vec<f64>,
    dims: [usize; 4],
}

impl Heads {
    fn new(t: &Tensor, index: usize, heads: Option<usize>) -> Result<Self, OpError> {
        let values = super::f64_values(t, index)?;
        match *t.shape() {
            [b, h, s, d] => Ok(Self { values, dims: [b, h, s, d] }),
            [b, s, hidden] => {
                let h = heads.ok_or_else(|| OpError::attribute("q_num_heads", "3-D inputs need q_num_heads and kv_num_heads"))?;
                if h == 0 || hidden % h != 0 {
                    return Err(OpError::input(index, format!("a hidden size of {hidden} does not split into {h} heads")));
                }
                let d = hidden / h;
                // [b, s, h, d] → [b, h, s, d].
                let mut out = vec![0.0; values.len()];
                for bi in 0..b {
                    for si in 0..s {
                        for hi in 0..h {
                            out[((bi * h + hi) * s + si) * d..][..d].copy_from_slice(&values[((bi * s + si) * h + hi) * d..][..d]);
                        }
                    }
                }
                Ok(Self { values: out, dims: [b, h, s, d] })
            }
            _ => Err(OpError::input(index, format!("expected rank 3 or 4, got shape {:?}", t.shape()))),
        }
    }

    fn at(&self, b: usize, h: usize, s: usize) -> &[f64] {
        let [_, hs, ss, d] = self.dims;
        &self.values[((b * hs + h) * ss + s) * d..][..d]
    }

    /// Past rows, then these: the present key or value.
    fn after(past: Option<Heads>, new: Heads) -> Result<Heads, OpError> {
        let Some(past) = past else { return Ok(new) };
        let ([b, h, p, d], [b2, h2, s, d2]) = (past.dims, new.dims);
        if (b, h, d) != (b2, h2, d2) {
            return Err(OpError::input(4, format!("past {:?} does not match {:?}", past.dims, new.dims)));
        }
        let mut values = Vec::with_capacity(b * h * (p + s) * d);
        for bi in 0..b {
            for hi in 0..h {
                values.extend_from_slice(&past.values[(bi * h + hi) * p * d..][..p * d]);
                values.extend_from_slice(&new.values[(bi * h + hi) * s * d..][..s * d]);
            }
        }
        Ok(Heads { values, dims: [b, h, p + s, d] })
    }
}

impl Op for Attention {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let q = required(inputs, 0)?;
        let unknown = |rank: usize| Fact::new(q.dtype, vec![Dim::Unknown; rank]);
        Ok(vec![unknown(q.shape.len()), unknown(4), unknown(4), unknown(4)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let q_tensor = required(inputs, 0)?;
        let three_d = q_tensor.rank() == 3;
        let q = Heads::new(q_tensor, 0, self.q_heads)?;
        let kv_heads = self.kv_heads.or(self.q_heads);
        let optional = |i: usize| inputs.get(i).copied().flatten();
        let past_key = optional(4).map(|t| Heads::new(t, 4, kv_heads)).transpose()?;
        let past_value = optional(5).map(|t| Heads::new(t, 5, kv_heads)).transpose()?;
        let past = past_key.as_ref().map_or(0, |p| p.dims[2]);
        let k = Heads::after(past_key, Heads::new(required(inputs, 1)?, 1, kv_heads)?)?;
        let v = Heads::after(past_value, Heads::new(required(inputs, 2)?, 2, kv_heads)?)?;
        let [b, qh, qs, d] = q.dims;
        let [kb, kh, total, kd] = k.dims;
        let [vb, vh, vt, vd] = v.dims;
        if kb != b || vb != b || kd != d || vt != total || vh != kh || kh == 0 || qh % kh != 0 {
            return Err(OpError::input(1, format!("query {:?}, key {:?} and value {:?} do not fit together", q.dims, k.dims, v.dims)));
        }
        let scale = self.scale.map_or(1.0 / (d as f64).sqrt(), |s| s as f64);
        // The mask as an additive bias, broadcast from the right to
        // [batch, heads, query, key] and padded with -inf to the keys.
        let mask = match optional(3) {
            None => None,
            Some(m) => {
                let values: Vec<f64> = match m.elements::<bool>() {
                    Some(v) => v.iter().map(|&keep| if keep { 0.0 } else { f64::NEG_INFINITY }).collect(),
                    None => super::f64_values(m, 3)?,
                };
                let mut dims = vec![1usize; 4usize.saturating_sub(m.rank())];
                dims.extend_from_slice(m.shape());
                let broadcasts = |axis: usize, to: usize| dims[axis] == 1 || dims[axis] == to;
                if dims.len() != 4 || dims[3] > total || !(broadcasts(0, b) && broadcasts(1, qh) && broadcasts(2, qs)) {
                    return Err(OpError::input(3, format!("a mask of shape {:?} for {b} batches, {qh} heads, {qs} queries and {total} keys", m.shape())));
                }
                Some((values, [dims[0], dims[1], dims[2], dims[3]]))
            }
        };
        let lengths = optional(6).map(|t| t.to_i64_vec().ok_or_else(|| OpError::input(6, "nonpad_kv_seqlen must be integers"))).transpose()?;
        let (mut y, mut qk_out) = (vec![0.0f64; b * qh * qs * vd], vec![0.0f64; b * qh * qs * total]);
        let mut row = vec![0.0f64; total];
        for bi in 0..b {
            for hi in 0..qh {
                let kvh = hi / (qh / kh);
                for si in 0..qs {
                    let query = q.at(bi, hi, si);
                    for (t, r) in row.iter_mut().enumerate() {
                        let dot: f64 = query.iter().zip(k.at(bi, kvh, t)).map(|(a, b)| a * b).sum::<f64>() * scale;
                        *r = if self.softcap > 0.0 { self.softcap as f64 * (dot / self.softcap as f64).tanh() } else { dot };
                    }
                    let qk_at = ((bi * qh + hi) * qs + si) * total;
                    if self.qk_mode <= 1 {
                        qk_out[qk_at..qk_at + total].copy_from_slice(&row);
                    }
                    for (t, r) in row.iter_mut().enumerate() {
                        if let Some((m, [mb, mh, ms, mt])) = &mask {
                            let at = (((if *mb == 1 { 0 } else { bi }) * mh + if *mh == 1 { 0 } else { hi }) * ms + if *ms == 1 { 0 } else { si }) * mt;
                            *r += if t < *mt { m[at + if *mt == 1 { 0 } else { t }] } else { f64::NEG_INFINITY };
                        }
                        if self.causal && t > past + si {
                            *r = f64::NEG_INFINITY;
                        }
                        if lengths.as_ref().is_some_and(|l| (t as i64) >= l.get(bi).copied().unwrap_or(i64::MAX)) {
                            *r = f64::NEG_INFINITY;
                        }
                    }
                    if self.qk_mode == 2 {
                        qk_out[qk_at..qk_at + total].copy_from_slice(&row);
                    }
                    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    row.iter_mut().for_each(|r| *r = (*r - max).exp());
                    let sum: f64 = row.iter().sum();
                    row.iter_mut().for_each(|r| *r /= sum);
                    if self.qk_mode == 3 {
                        qk_out[qk_at..qk_at + total].copy_from_slice(&row);
                    }
                    let out = &mut y[((bi * qh + hi) * qs + si) * vd..][..vd];
                    for (t, &p) in row.iter().enumerate() {
                        out.iter_mut().zip(v.at(bi, kvh, t)).for_each(|(o, &x)| *o += p * x);
                    }
                }
            }
        }
        let dtype = q_tensor.dtype();
        let (y_shape, y) = if three_d {
            // [b, h, s, d] → [b, s, h·d].
            let mut out = vec![0.0; y.len()];
            for bi in 0..b {
                for hi in 0..qh {
                    for si in 0..qs {
                        out[((bi * qs + si) * qh + hi) * vd..][..vd].copy_from_slice(&y[((bi * qh + hi) * qs + si) * vd..][..vd]);
                    }
                }
            }
            (vec![b, qs, qh * vd], out)
        } else {
            (vec![b, qh, qs, vd], y)
        };
        let results: [(Vec<usize>, &[f64]); 4] = [(y_shape, &y), (k.dims.to_vec(), &k.values), (v.dims.to_vec(), &v.values), (vec![b, qh, qs, total], &qk_out)];
        for (out, (shape, values)) in outputs.iter_mut().zip(results) {
            super::write_f64(out, dtype, &shape, values)?;
        }
        Ok(())
    }
}

fn attention(node: &Node) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let heads = |name: &str| -> Result<Option<usize>, OpError> {
        a.get(name).map(|_| a.int(name, 0)).transpose()?.map(|h| usize::try_from(h).map_err(|_| OpError::attribute(name, format!("{h} is negative")))).transpose()
    };
    Ok(Box::new(Attention {
        scale: a.get("scale").map(|_| a.float("scale", 1.0)).transpose()?,
        causal: a.int("is_causal", 0)? != 0,
        q_heads: heads("q_num_heads")?,
        kv_heads: heads("kv_num_heads")?,
        softcap: a.float("softcap", 0.0)?,
        qk_mode: a.int("qk_matmul_output_mode", 0)?,
    }))
}

/// RotaryEmbedding (opset 23): the first `rotary_embedding_dim` values of
/// each head rotated pairwise (halves, or interleaved pairs) by the angles
/// of the cos and sin caches, looked up by position id when given.
#[derive(Debug)]
struct Rotary {
    interleaved: bool,
    dim: usize,
    heads: Option<usize>,
}

impl Op for Rotary {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let values = super::f64_values(x, 0)?;
        // [b, s, h, d] addressing of either layout.
        let (b, s, h, d, four) = match *x.shape() {
            [b, h, s, d] => (b, s, h, d, true),
            [b, s, hidden] => {
                let h = self.heads.filter(|&h| h > 0 && hidden % h == 0).ok_or_else(|| OpError::attribute("num_heads", format!("3-D input of hidden size {hidden} needs num_heads dividing it")))?;
                (b, s, h, hidden / h, false)
            }
            _ => return Err(OpError::input(0, format!("expected rank 3 or 4, got shape {:?}", x.shape()))),
        };
        let rot = if self.dim == 0 { d } else { self.dim };
        let half = rot / 2;
        if rot > d || rot % 2 != 0 {
            return Err(OpError::attribute("rotary_embedding_dim", format!("{rot} must be even and at most the head size {d}")));
        }
        let (cos, sin) = (super::f64_values(required(inputs, 1)?, 1)?, super::f64_values(required(inputs, 2)?, 2)?);
        let positions = inputs.get(3).copied().flatten().map(|p| p.to_i64_vec().ok_or_else(|| OpError::input(3, "position ids must be int64"))).transpose()?;
        // The cache row of (batch, position).
        let row = |bi: usize, si: usize| -> Result<usize, OpError> {
            let r = match &positions {
                Some(p) => usize::try_from(p[bi * s + si]).map_err(|_| OpError::input(3, "negative position id"))?,
                None => bi * s + si,
            };
            if (r + 1) * half > cos.len().min(sin.len()) {
                return Err(OpError::input(1, format!("the caches have no row {r} of {half} angles")));
            }
            Ok(r)
        };
        let index = |bi: usize, si: usize, hi: usize, k: usize| if four { ((bi * h + hi) * s + si) * d + k } else { ((bi * s + si) * h + hi) * d + k };
        let mut y = values.clone();
        for bi in 0..b {
            for si in 0..s {
                let r = row(bi, si)?;
                for hi in 0..h {
                    for j in 0..half {
                        let (c, sn) = (cos[r * half + j], sin[r * half + j]);
                        let (p, q) = if self.interleaved { (2 * j, 2 * j + 1) } else { (j, j + half) };
                        let (x1, x2) = (values[index(bi, si, hi, p)], values[index(bi, si, hi, q)]);
                        y[index(bi, si, hi, p)] = c * x1 - sn * x2;
                        y[index(bi, si, hi, q)] = sn * x1 + c * x2;
                    }
                }
            }
        }
        super::write_f64(super::output(outputs, 0)?, x.dtype(), x.shape(), &y)
    }
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("Attention", |n, _| attention(n));
    ops.insert("RotaryEmbedding", |n, _| {
        let a = Attrs(n);
        let dim = a.int("rotary_embedding_dim", 0)?;
        let heads = a.get("num_heads").map(|_| a.int("num_heads", 0)).transpose()?;
        Ok(Box::new(Rotary {
            interleaved: a.int("interleaved", 0)? != 0,
            dim: usize::try_from(dim).map_err(|_| OpError::attribute("rotary_embedding_dim", format!("{dim} is negative")))?,
            heads: heads.map(|h| usize::try_from(h).unwrap_or(0)),
        }))
    });
}

#[cfg(test)]
mod tests {
    use crate::model::Node;
    use crate::test_util::{pool, values};
    use crate::tensor::Tensor;

    /// A mask whose batch, head or query axis neither is 1 nor matches is
    /// refused by name, not read out of range.
    #[test]
    fn a_mask_that_does_not_broadcast_is_refused() {
        let node = Node { name: "a".into(), op_type: "Attention".into(), domain: String::new(), inputs: ["q", "k", "v", "m"].map(String::from).to_vec(), outputs: vec!["y".into()], attributes: Default::default() };
        let op = super::attention(&node).unwrap();
        let t = |shape: Vec<usize>| Tensor::f32(shape.clone(), values(shape.iter().product(), 1)).unwrap();
        let (q, k, v) = (t(vec![3, 4, 2, 8]), t(vec![3, 4, 5, 8]), t(vec![3, 4, 5, 8]));
        for mask in [vec![2, 1, 2, 5], vec![1, 2, 2, 5], vec![1, 1, 3, 5]] {
            let error = op.eval_new(&[Some(&q), Some(&k), Some(&v), Some(&t(mask.clone()))], 1, &pool(1)).unwrap_err().to_string();
            assert!(error.contains("a mask of shape"), "{mask:?}: {error}");
        }
        assert!(op.eval_new(&[Some(&q), Some(&k), Some(&v), Some(&t(vec![3, 1, 2, 5]))], 1, &pool(1)).is_ok());
    }
}
