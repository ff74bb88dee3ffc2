//! The recurrent operators LSTM, GRU and RNN: forward, reverse and
//! bidirectional; both layouts; per-batch `sequence_lens` (steps past a
//! sequence's end give zeros in Y and leave its state as it was); initial
//! states; LSTM's peepholes and `input_forget`; `clip`; and every activation
//! the operators' definition lists, with their alpha and beta.
//!
//! Gate orders follow the definition: LSTM's weights hold the input,
//! output, forget and cell gates (iofc), GRU's update, reset and hidden
//! (zrh). Each step multiplies the step's input and the previous hidden
//! state by the gate weights (in f32), adds the biases, and applies the
//! cell's equations.

use super::linalg::{f32_fact, f32_input, optional_f32_input};
use super::{Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Activation {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f32, f32),
    LeakyRelu(f32),
    ThresholdedRelu(f32),
    ScaledTanh(f32, f32),
    HardSigmoid(f32, f32),
    Elu(f32),
    Softsign,
    Softplus,
}

impl Activation {
    /// The named activation, taking its alpha and beta from the front of
    /// the lists when it has them (defaults otherwise, as ONNX Runtime does).
    fn parse(name: &str, alphas: &mut std::slice::Iter<f32>, betas: &mut std::slice::Iter<f32>) -> Result<Self, OpError> {
        let mut alpha = |d: f32| alphas.next().copied().unwrap_or(d);
        Ok(match name.to_ascii_lowercase().as_str() {
            "relu" => Self::Relu,
            "tanh" => Self::Tanh,
            "sigmoid" => Self::Sigmoid,
            "affine" => Self::Affine(alpha(1.0), betas.next().copied().unwrap_or(0.0)),
            "leakyrelu" => Self::LeakyRelu(alpha(0.01)),
            "thresholdedrelu" => Self::ThresholdedRelu(alpha(1.0)),
            "scaledtanh" => Self::ScaledTanh(alpha(1.0), betas.next().copied().unwrap_or(1.0)),
            "hardsigmoid" => Self::HardSigmoid(alpha(0.2), betas.next().copied().unwrap_or(0.5)),
            "elu" => Self::Elu(alpha(1.0)),
            "softsign" => Self::Softsign,
            "softplus" => Self::Softplus,
            _ => return Err(OpError::attribute("activations", format!("{name:?} is not an activation of the recurrent operators"))),
        })
    }

    #[inline]
    fn apply(self, x: f32) -> f32 {
        match self {
            Self::Relu => x.max(0.0),
            // Rational approximations (error below 1e-6): libm's tanhf
            // and expf cost more than the cell's arithmetic.
            Self::Tanh => crate::kernels::fast_math::tanh(x),
            Self::Sigmoid => crate::kernels::fast_math::sigmoid(x),
            Self::Affine(a, b) => a * x + b,
            Self::LeakyRelu(a) => {
                if x < 0.0 {
                    a * x
                } else {
                    x
                }
            }
            Self::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            Self::ScaledTanh(a, b) => a * crate::kernels::fast_math::tanh(b * x),
            Self::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Self::Elu(a) => {
                if x < 0.0 {
                    a * (x.exp() - 1.0)
                } else {
                    x
                }
            }
            Self::Softsign => x / (1.0 + x.abs()),
            Self::Softplus => x.exp().ln_1p(),
        }
    }
}

/// The largest `hidden_size` a recurrent cell may declare.
const MAX_HIDDEN: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Lstm { input_forget: bool },
    Gru { linear_before_reset: bool },
    Rnn,
}

impl Cell {
    fn gates(self) -> usize {
        match self {
            Self::Lstm { .. } => 4,
            Self::Gru { .. } => 3,
            Self::Rnn => 1,
        }
    }

    fn activations(self) -> usize {
        match self {
            Self::Lstm { .. } => 3,
            Self::Gru { .. } => 2,
            Self::Rnn => 1,
        }
    }

    fn default_activations(self) -> &'static [&'static str] {
        match self {
            Self::Lstm { .. } => &["Sigmoid", "Tanh", "Tanh"],
            Self::Gru { .. } => &["Sigmoid", "Tanh"],
            Self::Rnn => &["Tanh"],
        }
    }
}

#[derive(Debug)]
struct Recurrent {
    cell: Cell,
    hidden: usize,
    directions: usize,
    reverse: bool,
    /// Per direction, the cell's activations.
    activations: Vec<Vec<Activation>>,
    clip: Option<f32>,
    /// Layout 1: batch first.
    batch_first: bool,
}

/// `out[g] += Σ_k x[k] · w[g][k]` for the `rows` rows of `w` (row-major,
/// `x.len()` columns).
fn accumulate_product(x: &[f32], w: &[f32], out: &mut [f32]) {
    super::linalg::sgemm(out.len(), 1, x.len(), w, false, x, false, out, 1.0, true, None);
}

impl Recurrent {
    /// The shapes of Y and of the states, for sizes of type `D` (known
    /// sizes at run time, facts when inferring).
    fn outputs_shapes<D: Clone>(&self, seq: D, batch: D, d: D, h: D) -> ([D; 4], [D; 3]) {
        if self.batch_first {
            ([batch.clone(), seq, d.clone(), h.clone()], [batch, d, h])
        } else {
            ([seq, d.clone(), batch.clone(), h.clone()], [d, batch, h])
        }
    }
}

impl Op for Recurrent {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        if x.shape.len() != 3 {
            return Err(OpError::input(0, format!("X must have rank 3, got {}", x.shape.len())));
        }
        let (seq, batch) = if self.batch_first { (x.shape[1].clone(), x.shape[0].clone()) } else { (x.shape[0].clone(), x.shape[1].clone()) };
        let (y, state) = self.outputs_shapes(seq, batch, Dim::Known(self.directions), Dim::Known(self.hidden));
        let mut facts = vec![Fact::new(DataType::F32, y.to_vec()), Fact::new(DataType::F32, state.to_vec())];
        if matches!(self.cell, Cell::Lstm { .. }) {
            facts.push(Fact::new(DataType::F32, state.to_vec()));
        }
        Ok(facts)
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (xs, x) = f32_input(inputs, 0)?;
        let &[a, b, input_size] = xs else { return Err(OpError::input(0, format!("X must have rank 3, got shape {xs:?}"))) };
        let (seq, batch) = if self.batch_first { (b, a) } else { (a, b) };
        let (hidden, dirs, gates) = (self.hidden, self.directions, self.cell.gates());
        let (ws, w) = f32_input(inputs, 1)?;
        let (rs, r) = f32_input(inputs, 2)?;
        if ws != [dirs, gates * hidden, input_size] || rs != [dirs, gates * hidden, hidden] {
            return Err(OpError::input(1, format!("W {ws:?} and R {rs:?} must be [{dirs}, {}, {input_size}] and [{dirs}, {}, {hidden}]", gates * hidden, gates * hidden)));
        }
        let bias = optional_f32_input(inputs, 3)?;
        if bias.is_some_and(|(s, _)| s != [dirs, 2 * gates * hidden]) {
            return Err(OpError::input(3, format!("B must be [{dirs}, {}]", 2 * gates * hidden)));
        }
        // X of no features may claim any number of steps and sequences:
        // the sizes are checked, and bounded by what the output Y may take,
        // before anything is sized by them.
        let lstm = matches!(self.cell, Cell::Lstm { .. });
        let too_large = || OpError::Shape(format!("{seq} steps × {dirs} directions × {batch} sequences × {hidden} hidden values is more working space than a tensor may take"));
        let state_len = dirs.checked_mul(batch).and_then(|n| n.checked_mul(hidden)).ok_or_else(too_large)?;
        let y_len = state_len.checked_mul(seq).ok_or_else(too_large)?;
        let limit = outputs.first().map_or(isize::MAX as usize, Tensor::max_bytes).min(isize::MAX as usize);
        let total = state_len
            .checked_mul(1 + usize::from(lstm))
            .and_then(|n| n.checked_add(y_len))
            .and_then(|n| n.checked_add(2 * gates * hidden + 3 * hidden))
            .filter(|&n| n.checked_mul(4).is_some_and(|bytes| bytes <= limit))
            .ok_or_else(too_large)?;
        let lengths: smallvec::SmallVec<[usize; 8]> = match inputs.get(4).copied().flatten() {
            None => smallvec::smallvec![seq; batch],
            Some(t) => {
                let v = super::axes::ints(t, 4, "sequence_lens")?;
                if v.len() != batch || v.iter().any(|&l| l < 0 || l as usize > seq) {
                    return Err(OpError::input(4, format!("sequence_lens {v:?} must hold one length in 0..={seq} per batch entry ({batch})")));
                }
                v.into_iter().map(|l| l as usize).collect()
            }
        };
        let peepholes = if lstm { optional_f32_input(inputs, 7)? } else { None };
        if peepholes.is_some_and(|(s, _)| s != [dirs, 3 * hidden]) {
            return Err(OpError::input(7, format!("P must be [{dirs}, {}]", 3 * hidden)));
        }
        // The states, Y and the gates' working space, in one buffer the
        // thread keeps between calls.
        crate::kernels::scratch::with_columns(total, |scratch| {
            let (h_state, rest) = scratch.split_at_mut(state_len);
            let (c_state, rest) = rest.split_at_mut(if lstm { state_len } else { 0 });
            let (y, rest) = rest.split_at_mut(y_len);
            let (g, rest) = rest.split_at_mut(gates * hidden);
            let (recurrent, rest) = rest.split_at_mut(gates * hidden);
            let (gate, next) = rest.split_at_mut(2 * hidden);
            // States arrive as [dirs, batch, hidden] (layout 1: [batch, dirs, hidden]).
            let state_input = |index: usize, dst: &mut [f32]| -> Result<(), OpError> {
                match optional_f32_input(inputs, index)? {
                    None => dst.fill(0.0),
                    Some((s, v)) => {
                        let expected = if self.batch_first { [batch, dirs, hidden] } else { [dirs, batch, hidden] };
                        if s != expected {
                            return Err(OpError::input(index, format!("initial state {s:?} must be {expected:?}")));
                        }
                        if self.batch_first {
                            swap_first_axes(v, batch, dirs, hidden, dst);
                        } else {
                            dst.copy_from_slice(v);
                        }
                    }
                }
                Ok(())
            };
            state_input(5, h_state)?;
            if lstm {
                state_input(6, c_state)?;
            }
            self.run(Sequences { x, w, r, bias, peepholes, lengths: &lengths, seq, batch, input_size }, Buffers { h_state, c_state, y, g, recurrent, gate, next });
            let (y_shape, state_shape) = self.outputs_shapes(seq, batch, dirs, hidden);
            if let Some(out) = outputs.get_mut(0) {
                let out = out.reset_f32(&y_shape)?;
                if self.batch_first {
                    batch_first_y(y, seq, dirs, batch, hidden, out);
                } else {
                    out.copy_from_slice(y);
                }
            }
            for (k, values) in [(1, &*h_state), (2, &*c_state)] {
                let Some(out) = outputs.get_mut(k).filter(|_| !values.is_empty()) else { continue };
                let out = out.reset_f32(&state_shape)?;
                if self.batch_first {
                    swap_first_axes(values, dirs, batch, hidden, out);
                } else {
                    out.copy_from_slice(values);
                }
            }
            Ok(())
        })
    }
}

/// A run's inputs, checked.
struct Sequences<'a> {
    x: &'a [f32],
    w: &'a [f32],
    r: &'a [f32],
    bias: Option<(&'a [usize], &'a [f32])>,
    peepholes: Option<(&'a [usize], &'a [f32])>,
    lengths: &'a [usize],
    seq: usize,
    batch: usize,
    input_size: usize,
}

/// A run's states (in layout 0), Y (in layout 0) and working space.
struct Buffers<'a> {
    h_state: &'a mut [f32],
    c_state: &'a mut [f32],
    y: &'a mut [f32],
    g: &'a mut [f32],
    recurrent: &'a mut [f32],
    gate: &'a mut [f32],
    next: &'a mut [f32],
}

impl Recurrent {
    /// Runs every direction over every sequence, leaving the last states
    /// in the buffers and every step's hidden state in Y.
    fn run(&self, inputs: Sequences<'_>, buffers: Buffers<'_>) {
        let Sequences { x, w, r, bias, peepholes, lengths, seq, batch, input_size } = inputs;
        let Buffers { h_state, c_state, y, g, recurrent, gate, next } = buffers;
        let (hidden, dirs, gates) = (self.hidden, self.directions, self.cell.gates());
        for d in 0..dirs {
            let reverse = self.reverse || d == 1;
            let (w, r) = (&w[d * gates * hidden * input_size..][..gates * hidden * input_size], &r[d * gates * hidden * hidden..][..gates * hidden * hidden]);
            let (wb, rb) = match bias {
                Some((_, v)) => (&v[d * 2 * gates * hidden..][..gates * hidden], &v[(d * 2 + 1) * gates * hidden..][..gates * hidden]),
                None => (&[][..], &[][..]),
            };
            let p = peepholes.map(|(_, v)| &v[d * 3 * hidden..][..3 * hidden]);
            let act = &self.activations[d];
            for bi in 0..batch {
                let len = lengths[bi];
                let h = &mut h_state[(d * batch + bi) * hidden..][..hidden];
                let mut c = if c_state.is_empty() { None } else { Some(&mut c_state[(d * batch + bi) * hidden..][..hidden]) };
                for step in 0..len {
                    let t = if reverse { len - 1 - step } else { step };
                    let xt = if self.batch_first { &x[(bi * seq + t) * input_size..][..input_size] } else { &x[(t * batch + bi) * input_size..][..input_size] };
                    g.fill(0.0);
                    accumulate_product(xt, w, g);
                    if !wb.is_empty() {
                        g.iter_mut().zip(wb).for_each(|(g, b)| *g += b);
                    }
                    recurrent.fill(0.0);
                    accumulate_product(h, r, recurrent);
                    if !rb.is_empty() {
                        recurrent.iter_mut().zip(rb).for_each(|(g, b)| *g += b);
                    }
                    let clip = |v: f32| self.clip.map_or(v, |c| v.clamp(-c, c));
                    match self.cell {
                        Cell::Rnn => {
                            for k in 0..hidden {
                                h[k] = act[0].apply(clip(g[k] + recurrent[k]));
                            }
                        }
                        Cell::Gru { linear_before_reset } => {
                            // Update and reset gates first: the candidate
                            // reads the reset-gated state of every unit.
                            for k in 0..2 * hidden {
                                gate[k] = act[0].apply(clip(g[k] + recurrent[k]));
                            }
                            let (z, reset) = gate.split_at(hidden);
                            let candidate_weights = &r[2 * hidden * hidden..];
                            for k in 0..hidden {
                                let candidate = if linear_before_reset {
                                    g[2 * hidden + k] + reset[k] * recurrent[2 * hidden + k]
                                } else {
                                    let row = &candidate_weights[k * hidden..][..hidden];
                                    let gated: f32 = (0..hidden).map(|j| reset[j] * h[j] * row[j]).sum();
                                    g[2 * hidden + k] + gated + rb.get(2 * hidden + k).copied().unwrap_or(0.0)
                                };
                                next[k] = (1.0 - z[k]) * act[1].apply(clip(candidate)) + z[k] * h[k];
                            }
                            h.copy_from_slice(next);
                        }
                        Cell::Lstm { input_forget } => {
                            let c = c.as_deref_mut().expect("LSTM has a cell state");
                            for k in 0..hidden {
                                let pre = |gate: usize| g[gate * hidden + k] + recurrent[gate * hidden + k];
                                let peep = |slot: usize, v: f32| p.map_or(0.0, |p| p[slot * hidden + k] * v);
                                let i = act[0].apply(clip(pre(0) + peep(0, c[k])));
                                let f = if input_forget { 1.0 - i } else { act[0].apply(clip(pre(2) + peep(2, c[k]))) };
                                let candidate = act[1].apply(clip(pre(3)));
                                c[k] = f * c[k] + i * candidate;
                                let o = act[0].apply(clip(pre(1) + peep(1, c[k])));
                                h[k] = o * act[2].apply(c[k]);
                            }
                        }
                    }
                    y[((t * dirs + d) * batch + bi) * hidden..][..hidden].copy_from_slice(h);
                }
            }
        }
    }
}

/// [a, b, n] → [b, a, n].
fn swap_first_axes(v: &[f32], a: usize, b: usize, n: usize, out: &mut [f32]) {
    for i in 0..a {
        for j in 0..b {
            out[(j * a + i) * n..][..n].copy_from_slice(&v[(i * b + j) * n..][..n]);
        }
    }
}

/// Y from [seq, dirs, batch, hidden] to [batch, seq, dirs, hidden].
fn batch_first_y(v: &[f32], seq: usize, dirs: usize, batch: usize, hidden: usize, out: &mut [f32]) {
    for t in 0..seq {
        for d in 0..dirs {
            for b in 0..batch {
                out[((b * seq + t) * dirs + d) * hidden..][..hidden].copy_from_slice(&v[((t * dirs + d) * batch + b) * hidden..][..hidden]);
            }
        }
    }
}

fn recurrent(cell: Cell, node: &Node) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let hidden = a.int("hidden_size", 0)?;
    // Bounded so that the weights' row counts (up to 2·4·hidden) and the
    // recurrence's hidden² never wrap; a real cell is far smaller.
    let hidden = usize::try_from(hidden).ok().filter(|&h| h > 0 && h <= MAX_HIDDEN).ok_or_else(|| OpError::attribute("hidden_size", format!("{hidden} must be from 1 to {MAX_HIDDEN}")))?;
    let (directions, reverse) = match a.string("direction", "forward")?.as_str() {
        "forward" => (1, false),
        "reverse" => (1, true),
        "bidirectional" => (2, false),
        other => return Err(OpError::attribute("direction", format!("{other:?} is not forward, reverse or bidirectional"))),
    };
    let names: Vec<String> = match a.get("activations") {
        Some(crate::model::Attribute::Strings(v)) => v.clone(),
        Some(other) => return Err(OpError::attribute("activations", format!("expected strings, got {other:?}"))),
        None => cell.default_activations().iter().map(|s| s.to_string()).collect(),
    };
    let per = cell.activations();
    let names: Vec<String> = if names.len() == per && directions == 2 { names.iter().chain(names.iter()).cloned().collect() } else { names };
    if names.len() != per * directions {
        return Err(OpError::attribute("activations", format!("{} given, {} needed ({per} per direction)", names.len(), per * directions)));
    }
    let (alphas, betas) = (a.floats("activation_alpha")?.unwrap_or_default(), a.floats("activation_beta")?.unwrap_or_default());
    let (mut alphas, mut betas) = (alphas.iter(), betas.iter());
    let parsed: Vec<Activation> = names.iter().map(|n| Activation::parse(n, &mut alphas, &mut betas)).collect::<Result<_, _>>()?;
    let clip = a.get("clip").map(|_| a.float("clip", 0.0)).transpose()?;
    let cell = match cell {
        Cell::Lstm { .. } => Cell::Lstm { input_forget: a.int("input_forget", 0)? != 0 },
        Cell::Gru { .. } => Cell::Gru { linear_before_reset: a.int("linear_before_reset", 0)? != 0 },
        Cell::Rnn => Cell::Rnn,
    };
    Ok(Box::new(Recurrent { cell, hidden, directions, reverse, activations: parsed.chunks(per).map(<[Activation]>::to_vec).collect(), clip, batch_first: a.int("layout", 0)? != 0 }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("LSTM", |n, _| recurrent(Cell::Lstm { input_forget: false }, n));
    ops.insert("GRU", |n, _| recurrent(Cell::Gru { linear_before_reset: false }, n));
    ops.insert("RNN", |n, _| recurrent(Cell::Rnn, n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attribute, Node};
    use crate::test_util::pool;
    use std::collections::HashMap;

    fn lstm(hidden: i64) -> Result<Box<dyn Op>, OpError> {
        let attributes = HashMap::from([("hidden_size".to_string(), Attribute::Int(hidden))]);
        recurrent(Cell::Lstm { input_forget: false }, &Node { name: "lstm".into(), op_type: "LSTM".into(), domain: String::new(), inputs: vec![], outputs: vec!["y".into()], attributes })
    }

    /// X with no features holds no values whatever its step count: a
    /// crafted 2⁴⁰ steps must be refused, not sized (it once aborted on the
    /// working space's allocation); a hidden size past any real cell too.
    #[test]
    fn crafted_sizes_are_errors() {
        let op = lstm(2).unwrap();
        let x = Tensor::f32(vec![1 << 40, 1, 0], vec![]).unwrap();
        let w = Tensor::f32(vec![1, 8, 0], vec![]).unwrap();
        let r = Tensor::f32(vec![1, 8, 2], vec![0.0; 16]).unwrap();
        let mut outputs = vec![Tensor::with_max_bytes(1 << 30)];
        let result = op.eval(&[Some(&x), Some(&w), Some(&r)], &mut outputs, &pool(1));
        assert!(matches!(&result, Err(OpError::Shape(m)) if m.contains("working space")), "{result:?}");
        // As many sequences, refused before one length per sequence is made.
        let x = Tensor::f32(vec![1, 1 << 40, 0], vec![]).unwrap();
        let result = op.eval(&[Some(&x), Some(&w), Some(&r)], &mut outputs, &pool(1));
        assert!(matches!(&result, Err(OpError::Shape(m)) if m.contains("working space")), "{result:?}");
        assert!(lstm(1 << 40).is_err() && lstm(0).is_err());
    }
}
