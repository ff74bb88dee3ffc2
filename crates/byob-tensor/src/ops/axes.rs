//! Axes: normalising them, and reading them from an attribute or, in newer
//! opsets, from an input (Squeeze, Unsqueeze, the reductions).

use super::{show, Attrs, Fact, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};

/// `axis` in `[-rank, rank - 1]`, made non-negative.
pub(crate) fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    (-r..r).contains(&axis).then(|| if axis < 0 { axis + r } else { axis } as usize)
}


/// A shape's, axes' or indices' integers: on the stack for up to eight, so
/// that kernels reading a small shape or axes input allocate nothing.
pub(crate) type Ints = smallvec::SmallVec<[i64; 8]>;

/// Integer elements of a shape/axes/indices input.
pub(crate) fn ints(t: &Tensor, index: usize, what: &str) -> Result<Ints, OpError> {
    match t.data() {
        crate::tensor::Data::I64(v) => Ok(v.iter().copied().collect()),
        crate::tensor::Data::I32(v) => Ok(v.iter().map(|&i| i64::from(i)).collect()),
        _ => Err(OpError::input(index, format!("{what} must be int64, got {}", t.dtype()))),
    }
}

pub(crate) fn check_int_fact(f: &Fact, index: usize, what: &str) -> Result<(), OpError> {
    match f.dtype {
        DataType::I64 | DataType::I32 => Ok(()),
        other => Err(OpError::input(index, format!("{what} must be int64, got {other}"))),
    }
}

/// The integer values of a constant input fact, if known.
pub(crate) fn fact_ints(f: &Fact, index: usize, what: &str) -> Result<Option<Ints>, OpError> {
    check_int_fact(f, index, what)?;
    f.value.as_ref().map(|t| ints(t, index, what)).transpose()
}


/// Axes from an attribute (older opsets) or input 1.
#[derive(Debug, Clone)]
pub(crate) enum Axes {
    Attribute(Option<Vec<i64>>),
    Input,
}

impl Axes {
    pub(crate) fn of_facts(&self, inputs: &[Option<&Fact>]) -> Result<AxesFact, OpError> {
        match self {
            Self::Attribute(axes) => Ok(axes.as_deref().map_or(AxesFact::Absent, |a| AxesFact::Known(Ints::from_slice(a)))),
            Self::Input => match inputs.get(1).copied().flatten() {
                None => Ok(AxesFact::Absent),
                Some(f) => {
                    if f.shape.len() > 1 {
                        return Err(OpError::input(1, format!("axes must be 1-D, got rank {}", f.shape.len())));
                    }
                    Ok(match fact_ints(f, 1, "axes")? {
                        Some(v) => AxesFact::Known(v),
                        None => AxesFact::Count(match f.shape.first() {
                            None => Some(1),
                            Some(Dim::Known(k)) => Some(*k),
                            _ => None,
                        }),
                    })
                }
            },
        }
    }

    pub(crate) fn of_tensors(&self, inputs: &[Option<&Tensor>]) -> Result<Option<Ints>, OpError> {
        match self {
            Self::Attribute(axes) => Ok(axes.as_deref().map(Ints::from_slice)),
            Self::Input => match inputs.get(1).copied().flatten() {
                None => Ok(None),
                Some(t) if t.rank() > 1 => Err(OpError::input(1, format!("axes must be 1-D, got shape {:?}", t.shape()))),
                Some(t) => ints(t, 1, "axes").map(Some),
            },
        }
    }

    pub(crate) fn error(&self, what: String) -> OpError {
        match self {
            Self::Attribute(_) => OpError::attribute("axes", what),
            Self::Input => OpError::input(1, what),
        }
    }
}

/// What is known of the axes before running.
pub(crate) enum AxesFact {
    Absent,
    Known(Ints),
    /// Not constant; how many, if known.
    Count(Option<usize>),
}

/// The axes of `node` at `opset`: an input from opset `input_since` on
/// (13 for Squeeze and ReduceSum, 18 for the other reductions), the
/// attribute before.
pub(crate) fn axes_builder(node: &Node, opset: i64, input_since: i64, required_attr: bool) -> Result<Axes, OpError> {
    if opset >= input_since {
        return Ok(Axes::Input);
    }
    let axes = Attrs(node).ints("axes")?;
    if required_attr && axes.is_none() {
        return Err(OpError::attribute("axes", "required"));
    }
    Ok(Axes::Attribute(axes))
}

/// Axes or dimensions, on the stack for ranks up to eight.
pub(crate) use crate::kernels::Dims;

/// Normalized, distinct axes of a tensor of rank `rank`.
pub(crate) fn unique_axes(axes: &[i64], rank: usize) -> Result<Dims, String> {
    let mut out = Dims::new();
    for &a in axes {
        let n = normalize_axis(a, rank).ok_or_else(|| format!("axis {a} is out of range for rank {rank}"))?;
        if out.contains(&n) {
            return Err(format!("axis {a} appears twice in {}", show(axes)));
        }
        out.push(n);
    }
    Ok(out)
}

