//! Einsum (any equation, with `...` and implicit outputs) and Det.
//!
//! Einsum sums the products of its operands' elements over every index the
//! output does not keep, visiting each combination of index values once
//! (no contraction order is planned: equations in the node tests and in
//! exported models are small). Det is LU with partial pivoting per matrix.
//! Both compute in f64.

use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

fn floats(t: &Tensor, index: usize) -> Result<Vec<f64>, OpError> {
    Ok(crate::dispatch!(t.dtype(), T => t.elements::<T>().unwrap_or_default().iter().map(|v| v.to_f64()).collect()))
        .and_then(|v: Vec<f64>| if t.dtype() == DataType::Bool { Err(OpError::input(index, "bool operands have no products")) } else { Ok(v) })
}

#[derive(Debug)]
struct Einsum {
    equation: String,
}

/// Each operand's index letters (the ellipsis expanded to `rank - letters`
/// upper-case letters from 'A', right-aligned across operands), and the
/// output's.
fn parse(equation: &str, ranks: &[usize]) -> Result<(Vec<Vec<char>>, Vec<char>), String> {
    let equation: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (equation.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(format!("{:?} names {} operands, the node has {}", equation, terms.len(), ranks.len()));
    }
    let ellipsis_len = terms.iter().zip(ranks).map(|(t, &r)| if t.contains("...") { r.saturating_sub(t.replace("...", "").len()) } else { 0 }).max().unwrap_or(0);
    let expand = |term: &str, rank: usize| -> Result<Vec<char>, String> {
        let letters: Vec<char> = term.replace("...", "").chars().collect();
        if letters.iter().any(|c| !c.is_ascii_lowercase() && !c.is_ascii_uppercase()) {
            return Err(format!("{term:?} holds a character that is not an index letter"));
        }
        let mut out = Vec::new();
        match term.split_once("...") {
            Some((before, after)) => {
                let n = rank.checked_sub(letters.len()).ok_or_else(|| format!("{term:?} has more indices than rank {rank}"))?;
                out.extend(before.chars());
                out.extend((ellipsis_len - n..ellipsis_len).map(|k| (b'A' + k as u8) as char));
                out.extend(after.chars());
            }
            None => out.extend(letters),
        }
        if out.len() != rank {
            return Err(format!("{term:?} has {} indices for an operand of rank {rank}", out.len()));
        }
        Ok(out)
    };
    let inputs: Vec<Vec<char>> = terms.iter().zip(ranks).map(|(t, &r)| expand(t, r)).collect::<Result<_, _>>()?;
    let output = match rhs {
        Some(r) => expand(&r, r.replace("...", "").len() + if r.contains("...") { ellipsis_len } else { 0 })?,
        None => {
            // Implicit: the ellipsis, then the letters used once, sorted.
            let mut counts: HashMap<char, usize> = HashMap::new();
            inputs.iter().flatten().filter(|c| c.is_ascii_lowercase()).for_each(|&c| *counts.entry(c).or_default() += 1);
            let mut once: Vec<char> = counts.into_iter().filter(|&(_, n)| n == 1).map(|(c, _)| c).collect();
            once.sort_unstable();
            (0..ellipsis_len).map(|k| (b'A' + k as u8) as char).chain(once).collect()
        }
    };
    Ok((inputs, output))
}

impl Op for Einsum {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let first = required(inputs, 0)?;
        let ranks: Vec<usize> = (0..inputs.len()).map(|i| required(inputs, i).map(|f| f.shape.len())).collect::<Result<_, _>>()?;
        let (_, out) = parse(&self.equation, &ranks).map_err(|e| OpError::attribute("equation", e))?;
        Ok(vec![Fact::new(first.dtype, vec![Dim::Unknown; out.len()])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let operands: Vec<&Tensor> = (0..inputs.len()).map(|i| required(inputs, i)).collect::<Result<_, _>>()?;
        let ranks: Vec<usize> = operands.iter().map(|t| t.rank()).collect();
        let (terms, out) = parse(&self.equation, &ranks).map_err(|e| OpError::attribute("equation", e))?;
        // Every index letter and its size (1 broadcasts, as under an ellipsis).
        let mut letters: Vec<char> = out.clone();
        let mut sizes: HashMap<char, usize> = HashMap::new();
        for (term, t) in terms.iter().zip(&operands) {
            for (&c, &d) in term.iter().zip(t.shape()) {
                let entry = sizes.entry(c).or_insert(d);
                if *entry != d && d != 1 && *entry != 1 {
                    return Err(OpError::attribute("equation", format!("index {c} has sizes {entry} and {d}")));
                }
                *entry = (*entry).max(d);
                if !letters.contains(&c) {
                    letters.push(c);
                }
            }
        }
        let dims: Vec<usize> = letters.iter().map(|c| sizes.get(c).copied().unwrap_or(1)).collect();
        let out_shape: Vec<usize> = out.iter().map(|c| sizes.get(c).copied().unwrap_or(1)).collect();
        let total: usize = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&t| t <= 1 << 32).ok_or_else(|| OpError::attribute("equation", "too many index combinations"))?;
        let values: Vec<Vec<f64>> = operands.iter().enumerate().map(|(i, t)| floats(t, i)).collect::<Result<_, _>>()?;
        // Per operand and per letter, the stride of that letter (0 where absent or broadcast).
        let strides: Vec<Vec<usize>> = terms
            .iter()
            .zip(&operands)
            .map(|(term, t)| {
                letters
                    .iter()
                    .map(|c| {
                        term.iter().enumerate().filter(|&(_, x)| x == c).map(|(k, _)| if t.shape()[k] == 1 { 0 } else { t.shape()[k + 1..].iter().product::<usize>() }).sum()
                    })
                    .collect()
            })
            .collect();
        let out_strides: Vec<usize> = letters.iter().map(|c| out.iter().position(|x| x == c).map_or(0, |k| out_shape[k + 1..].iter().product())).collect();
        let mut y = vec![0.0; out_shape.iter().product()];
        let mut index = vec![0usize; letters.len()];
        for _ in 0..total {
            let product: f64 = values.iter().zip(&strides).map(|(v, s)| v[index.iter().zip(s).map(|(i, s)| i * s).sum::<usize>()]).product();
            y[index.iter().zip(&out_strides).map(|(i, s)| i * s).sum::<usize>()] += product;
            for d in (0..letters.len()).rev() {
                index[d] += 1;
                if index[d] < dims[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        super::write_f64(output(outputs, 0)?, operands[0].dtype(), &out_shape, &y)
    }
}

/// Det: the determinant of each trailing square matrix.
#[derive(Debug)]
struct Det;

fn determinant(mut m: Vec<f64>, n: usize) -> f64 {
    let mut det = 1.0;
    for col in 0..n {
        let pivot = (col..n).max_by(|&a, &b| m[a * n + col].abs().total_cmp(&m[b * n + col].abs())).unwrap_or(col);
        if m[pivot * n + col] == 0.0 {
            return 0.0;
        }
        if pivot != col {
            for k in 0..n {
                m.swap(pivot * n + k, col * n + k);
            }
            det = -det;
        }
        det *= m[col * n + col];
        for row in col + 1..n {
            let f = m[row * n + col] / m[col * n + col];
            for k in col..n {
                m[row * n + k] -= f * m[col * n + k];
            }
        }
    }
    det
}

impl Op for Det {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let rank = x.shape.len();
        if rank < 2 {
            return Err(OpError::input(0, format!("Det needs matrices, got rank {rank}")));
        }
        Ok(vec![Fact::new(x.dtype, x.shape[..rank - 2].to_vec())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let shape = x.shape();
        let rank = shape.len();
        if rank < 2 || shape[rank - 1] != shape[rank - 2] {
            return Err(OpError::input(0, format!("Det needs square matrices, got shape {shape:?}")));
        }
        let n = shape[rank - 1];
        let values = floats(x, 0)?;
        let dets: Vec<f64> = values.chunks(n * n).map(|m| determinant(m.to_vec(), n)).collect();
        let dets = if n == 0 { vec![1.0; shape[..rank - 2].iter().product()] } else { dets };
        super::write_f64(output(outputs, 0)?, x.dtype(), &shape[..rank - 2], &dets)
    }
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("Einsum", |n: &Node, _| Ok(Box::new(Einsum { equation: Attrs(n).string("equation", "")? })));
    ops.insert("Det", |_, _| Ok(Box::new(Det)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equations_parse_with_ellipses_and_implicit_outputs() {
        let (inputs, out) = parse("...ii->...i", &[4]).unwrap();
        assert_eq!((inputs[0].clone(), out), (vec!['A', 'B', 'i', 'i'], vec!['A', 'B', 'i']));
        let (_, out) = parse("ij,jk", &[2, 2]).unwrap();
        assert_eq!(out, vec!['i', 'k']);
        assert!(parse("ij,jk", &[2]).is_err());
        assert!((determinant(vec![2.0, 1.0, 1.0, 3.0], 2) - 5.0).abs() < 1e-12);
    }
}
