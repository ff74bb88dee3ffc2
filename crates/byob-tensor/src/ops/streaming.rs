//! Opset 27's streaming operators, made for stateful models that run a
//! block at a time: CausalConvWithState (a depthwise causal convolution
//! that returns the input tail the next call needs) and LinearAttention
//! (a recurrent key-value state updated by the linear, gated, delta or
//! gated-delta rule). Both take the state the previous call returned and
//! return the next one; computed in f64.

use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::Tensor;
use std::collections::HashMap;


/// CausalConvWithState(input [B, C, L], weight [C, 1, K], bias?, past
/// [B, C, K-1]?): each channel convolved with its own kernel over the past
/// state followed by the input, optionally through SiLU.
#[derive(Debug)]
struct CausalConv {
    silu: bool,
}

impl Op for CausalConv {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let w = required(inputs, 1)?;
        let state = match (x.shape.as_slice(), w.shape.last()) {
            ([b, c, _], Some(Dim::Known(k))) => vec![b.clone(), c.clone(), Dim::Known(k.saturating_sub(1))],
            _ => vec![Dim::Unknown; 3],
        };
        Ok(vec![Fact::new(x.dtype, x.shape.clone()), Fact::new(x.dtype, state)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (x, w) = (required(inputs, 0)?, required(inputs, 1)?);
        let (&[b, c, l], &[wc, 1, k]) = (x.shape(), w.shape()) else {
            return Err(OpError::input(1, format!("input {:?} and weight {:?} must be [B, C, L] and [C, 1, K]", x.shape(), w.shape())));
        };
        if wc != c || k == 0 {
            return Err(OpError::input(1, format!("weight {:?} does not fit {c} channels", w.shape())));
        }
        let (xs, ws) = (super::f64_values(x, 0)?, super::f64_values(w, 1)?);
        let bias = inputs.get(2).copied().flatten().map(|t| super::f64_values(t, 2)).transpose()?;
        let past = match inputs.get(3).copied().flatten() {
            Some(p) if p.shape() == [b, c, k - 1] => super::f64_values(p, 3)?,
            Some(p) => return Err(OpError::input(3, format!("past state {:?} must be [{b}, {c}, {}]", p.shape(), k - 1))),
            None => vec![0.0; b * c * (k - 1)],
        };
        let padded_len = k - 1 + l;
        let (mut y, mut state) = (vec![0.0; b * c * l], vec![0.0; b * c * (k - 1)]);
        let mut padded = vec![0.0; padded_len];
        for bc in 0..b * c {
            let ch = bc % c;
            padded[..k - 1].copy_from_slice(&past[bc * (k - 1)..][..k - 1]);
            padded[k - 1..].copy_from_slice(&xs[bc * l..][..l]);
            for t in 0..l {
                let mut v: f64 = (0..k).map(|j| ws[ch * k + j] * padded[t + j]).sum::<f64>() + bias.as_ref().map_or(0.0, |b| b[ch]);
                if self.silu {
                    v /= 1.0 + (-v).exp();
                }
                y[bc * l + t] = v;
            }
            state[bc * (k - 1)..][..k - 1].copy_from_slice(&padded[padded_len - (k - 1)..]);
        }
        super::write_f64(output(outputs, 0)?, x.dtype(), x.shape(), &y)?;
        if let Some(out) = outputs.get_mut(1) {
            super::write_f64(out, x.dtype(), &[b, c, k - 1], &state)?;
        }
        Ok(())
    }
}

/// LinearAttention: per step t, the state S [d_k, d_v] of each key/value
/// head decays (gated rules: by exp(decay)), is corrected toward the value
/// (delta rules: v ← β (v − Sᵀk)), gains k vᵀ, and is read by the query:
/// out = scale · Sᵀq.
#[derive(Debug)]
struct LinearAttention {
    q_heads: usize,
    kv_heads: usize,
    scale: f32,
    gated: bool,
    delta: bool,
}

/// [B, T, H·D] element (b, h, t, d).
fn at(v: &[f64], t_len: usize, heads: usize, d: usize, (b, h, t, i): (usize, usize, usize, usize)) -> f64 {
    v[((b * t_len + t) * heads + h) * d + i]
}

impl Op for LinearAttention {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let q = required(inputs, 0)?;
        Ok(vec![Fact::new(q.dtype, vec![Dim::Unknown; 3]), Fact::new(q.dtype, vec![Dim::Unknown; 4])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (q, k, v) = (required(inputs, 0)?, required(inputs, 1)?, required(inputs, 2)?);
        let (&[b, t, qhd], &[_, _, khd], &[_, _, vhd]) = (q.shape(), k.shape(), v.shape()) else {
            return Err(OpError::input(0, "query, key and value must be [B, T, heads × size]"));
        };
        let (qh, kh) = (self.q_heads, self.kv_heads);
        if qh == 0 || kh == 0 || qh % kh != 0 || qhd % qh != 0 || khd % kh != 0 || vhd % kh != 0 || qhd / qh != khd / kh {
            return Err(OpError::attribute("q_num_heads", format!("{qh} query and {kh} key/value heads do not fit shapes {:?}, {:?}, {:?}", q.shape(), k.shape(), v.shape())));
        }
        let (dk, dv, group) = (qhd / qh, vhd / kh, qh / kh);
        let (qs, ks, vs) = (super::f64_values(q, 0)?, super::f64_values(k, 1)?, super::f64_values(v, 2)?);
        let optional = |i: usize| inputs.get(i).copied().flatten();
        let mut state = match optional(3) {
            Some(s) if s.shape() == [b, kh, dk, dv] => super::f64_values(s, 3)?,
            Some(s) => return Err(OpError::input(3, format!("past state {:?} must be [{b}, {kh}, {dk}, {dv}]", s.shape()))),
            None => vec![0.0; b * kh * dk * dv],
        };
        let state_dtype = optional(3).map_or(q.dtype(), Tensor::dtype);
        let decay = optional(4).map(|d| Ok::<_, OpError>((super::f64_values(d, 4)?, d.shape().last().copied().unwrap_or(0)))).transpose()?;
        let beta = optional(5).map(|d| Ok::<_, OpError>((super::f64_values(d, 5)?, d.shape().last().copied().unwrap_or(0)))).transpose()?;
        if self.gated != decay.is_some() || self.delta != beta.is_some() {
            return Err(OpError::input(4, "the update rule's decay and beta inputs must be given exactly when it uses them"));
        }
        let scale = if self.scale == 0.0 { 1.0 / (dk as f64).sqrt() } else { self.scale as f64 };
        let mut out = vec![0.0; b * t * qh * dv];
        let mut value = vec![0.0; dv];
        for bi in 0..b {
            for step in 0..t {
                for h in 0..kh {
                    let s = &mut state[(bi * kh + h) * dk * dv..][..dk * dv];
                    if let Some((d, width)) = &decay {
                        for i in 0..dk {
                            let g = if *width == kh { d[(bi * t + step) * kh + h] } else { d[((bi * t + step) * kh + h) * dk + i] };
                            s[i * dv..][..dv].iter_mut().for_each(|x| *x *= g.exp());
                        }
                    }
                    let key = |i: usize| at(&ks, t, kh, dk, (bi, h, step, i));
                    for (m, val) in value.iter_mut().enumerate() {
                        *val = at(&vs, t, kh, dv, (bi, h, step, m));
                    }
                    if let Some((beta, width)) = &beta {
                        let bt = beta[(bi * t + step) * width + if *width == 1 { 0 } else { h }];
                        for (m, val) in value.iter_mut().enumerate() {
                            let retrieved: f64 = (0..dk).map(|i| s[i * dv + m] * key(i)).sum();
                            *val = bt * (*val - retrieved);
                        }
                    }
                    for i in 0..dk {
                        let ki = key(i);
                        s[i * dv..][..dv].iter_mut().zip(&value).for_each(|(x, &val)| *x += ki * val);
                    }
                    for qi in h * group..(h + 1) * group {
                        for m in 0..dv {
                            let read: f64 = (0..dk).map(|i| at(&qs, t, qh, dk, (bi, qi, step, i)) * s[i * dv + m]).sum();
                            out[((bi * t + step) * qh + qi) * dv + m] = scale * read;
                        }
                    }
                }
            }
        }
        super::write_f64(output(outputs, 0)?, q.dtype(), &[b, t, qh * dv], &out)?;
        if let Some(present) = outputs.get_mut(1) {
            super::write_f64(present, state_dtype, &[b, kh, dk, dv], &state)?;
        }
        Ok(())
    }
}

fn linear_attention(node: &Node) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let (gated, delta) = match a.string("update_rule", "gated_delta")?.as_str() {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        other => return Err(OpError::attribute("update_rule", format!("{other:?} is not linear, gated, delta or gated_delta"))),
    };
    let heads = |name: &str| -> Result<usize, OpError> {
        let h = a.int(name, 0)?;
        usize::try_from(h).ok().filter(|&h| h > 0).ok_or_else(|| OpError::attribute(name, format!("{h} must be positive")))
    };
    Ok(Box::new(LinearAttention { q_heads: heads("q_num_heads")?, kv_heads: heads("kv_num_heads")?, scale: a.float("scale", 0.0)?, gated, delta }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("CausalConvWithState", |n, _| {
        let silu = match Attrs(n).string("activation", "none")?.as_str() {
            "none" => false,
            "silu" | "swish" => true,
            other => return Err(OpError::attribute("activation", format!("{other:?} is not none, silu or swish"))),
        };
        Ok(Box::new(CausalConv { silu }))
    });
    ops.insert("LinearAttention", |n, _| linear_attention(n));
}
