//! Linear quantisation: QuantizeLinear and DequantizeLinear (per tensor,
//! per axis, or per block), DynamicQuantizeLinear, QLinearMatMul and
//! MatMulInteger, on the 8- and 16-bit integer types. Values are computed
//! in f64 and rounded half to even, then saturated to the target type.

use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

fn values(t: &Tensor) -> Vec<f64> {
    crate::dispatch!(t.dtype(), T => t.elements::<T>().unwrap_or_default().iter().map(|v| v.to_f64()).collect())
}

fn quantized_type(dtype: DataType, index: usize) -> Result<(f64, f64), OpError> {
    Ok(match dtype {
        DataType::U8 => (0.0, 255.0),
        DataType::I8 => (-128.0, 127.0),
        DataType::U16 => (0.0, 65535.0),
        DataType::I16 => (-32768.0, 32767.0),
        DataType::I32 => (i32::MIN as f64, i32::MAX as f64),
        other => return Err(OpError::input(index, format!("{other} is not a quantized type byob carries"))),
    })
}

fn emit(out: &mut Tensor, dtype: DataType, shape: &[usize], v: &[f64]) -> Result<(), OpError> {
    crate::dispatch!(dtype, T => out.reset_as::<T>(shape)?.iter_mut().zip(v).for_each(|(o, &x)| *o = T::from_f64(x)));
    Ok(())
}

/// For each element of `shape`, the index of its scale: one for all, one
/// per position on `axis`, or one per block of `block` positions there.
fn scale_index(shape: &[usize], scale_shape: &[usize], axis: i64, block: usize) -> Result<Vec<usize>, OpError> {
    let count: usize = shape.iter().product();
    if scale_shape.iter().product::<usize>() == 1 {
        return Ok(vec![0; count]);
    }
    let a = super::axes::normalize_axis(axis, shape.len()).ok_or_else(|| OpError::attribute("axis", format!("{axis} is out of range for rank {}", shape.len())))?;
    let inner: usize = shape[a + 1..].iter().product();
    if block == 0 {
        if scale_shape != [shape[a]] {
            return Err(OpError::input(1, format!("a scale of shape {scale_shape:?} for axis {a} of {shape:?}")));
        }
        return Ok((0..count).map(|i| (i / inner) % shape[a]).collect());
    }
    // Blocked: the scale has the input's shape with axis a divided into blocks.
    let blocks = shape[a].div_ceil(block);
    let mut expected = shape.to_vec();
    expected[a] = blocks;
    if scale_shape != expected {
        return Err(OpError::input(1, format!("a blocked scale must have shape {expected:?}, got {scale_shape:?}")));
    }
    Ok((0..count)
        .map(|i| {
            let (outer, rest) = (i / (shape[a] * inner), i % (shape[a] * inner));
            let (position, within) = (rest / inner, rest % inner);
            (outer * blocks + position / block) * inner + within
        })
        .collect())
}

#[derive(Debug)]
struct Quantize {
    dequantize: bool,
    axis: i64,
    block: usize,
    output_dtype: Option<DataType>,
}

impl Op for Quantize {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (x, scale) = (required(inputs, 0)?, required(inputs, 1)?);
        let dtype = if self.dequantize { scale.dtype } else { inputs.get(2).copied().flatten().map(|z| z.dtype).or(self.output_dtype).unwrap_or(DataType::U8) };
        Ok(vec![Fact::new(dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (x, scale) = (required(inputs, 0)?, required(inputs, 1)?);
        let zero = inputs.get(2).copied().flatten();
        let index = scale_index(x.shape(), scale.shape(), self.axis, self.block)?;
        let (xs, scales) = (values(x), values(scale));
        let zeros = zero.map(values);
        let zero_at = |i: usize| zeros.as_ref().map_or(0.0, |z| if z.len() == 1 { z[0] } else { z[index[i]] });
        if self.dequantize {
            quantized_type(x.dtype(), 0)?;
            let y: Vec<f64> = xs.iter().enumerate().map(|(i, &v)| (v - zero_at(i)) * scales[index[i]]).collect();
            return emit(output(outputs, 0)?, scale.dtype(), x.shape(), &y);
        }
        let dtype = zero.map(Tensor::dtype).or(self.output_dtype).unwrap_or(DataType::U8);
        let (lo, hi) = quantized_type(dtype, 2)?;
        let y: Vec<f64> = xs.iter().enumerate().map(|(i, &v)| ((v / scales[index[i]]).round_ties_even() + zero_at(i)).clamp(lo, hi)).collect();
        emit(output(outputs, 0)?, dtype, x.shape(), &y)
    }
}

/// DynamicQuantizeLinear: uint8 with the scale and zero point that map
/// the input's range (widened to include 0) onto 0..=255.
#[derive(Debug)]
struct DynamicQuantize;

impl Op for DynamicQuantize {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![Fact::new(DataType::U8, x.shape.clone()), Fact::new(DataType::F32, vec![]), Fact::new(DataType::U8, vec![])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let xs: Vec<f64> = values(x).into_iter().map(|v| v as f32 as f64).collect();
        let (min, max) = xs.iter().fold((0.0f64, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let scale = ((max - min) / 255.0) as f32 as f64;
        let zero = if scale == 0.0 { 0.0 } else { (-min / scale).round_ties_even().clamp(0.0, 255.0) };
        // The quotient in float32, as the operator's function body divides.
        let y: Vec<f64> = xs.iter().map(|&v| if scale == 0.0 { zero } else { (((v as f32 / scale as f32) as f64).round_ties_even() + zero).clamp(0.0, 255.0) }).collect();
        emit(output(outputs, 0)?, DataType::U8, x.shape(), &y)?;
        emit(output(outputs, 1)?, DataType::F32, &[], &[scale])?;
        emit(output(outputs, 2)?, DataType::U8, &[], &[zero])
    }
}

/// Matrix product with numpy's batch broadcasting, in f64.
fn matmul(a: &[f64], a_shape: &[usize], b: &[f64], b_shape: &[usize]) -> Result<(Vec<f64>, Vec<usize>), OpError> {
    let (mut ash, mut bsh) = (a_shape.to_vec(), b_shape.to_vec());
    if ash.len() == 1 {
        ash.insert(0, 1);
    }
    if bsh.len() == 1 {
        bsh.push(1);
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        return Err(OpError::input(1, format!("cannot multiply {a_shape:?} by {b_shape:?}")));
    }
    let batch = super::binary::broadcast_shapes(&ash[..ash.len() - 2], &bsh[..bsh.len() - 2])?;
    let mut shape = batch.to_vec();
    shape.extend([m, n]);
    let mut out = vec![0.0; shape.iter().product()];
    let batches = batch.iter().product::<usize>();
    let mut a_offsets = Vec::with_capacity(batches);
    let mut b_offsets = Vec::with_capacity(batches);
    super::compare::broadcast_walk([&ash[..ash.len() - 2], &bsh[..bsh.len() - 2]], &batch, |_, [i, j]| {
        a_offsets.push(i * m * k);
        b_offsets.push(j * k * n);
    });
    if batch.is_empty() {
        (a_offsets, b_offsets) = (vec![0], vec![0]);
    }
    for (t, (ao, bo)) in a_offsets.iter().zip(&b_offsets).enumerate() {
        for i in 0..m {
            for j in 0..n {
                out[(t * m + i) * n + j] = (0..k).map(|l| a[ao + i * k + l] * b[bo + l * n + j]).sum();
            }
        }
    }
    Ok((out, shape))
}

/// QLinearMatMul (quantized in, quantized out) and MatMulInteger (int32 out).
#[derive(Debug)]
struct QuantizedMatMul {
    /// QLinearMatMul; otherwise MatMulInteger.
    requantize: bool,
}

impl Op for QuantizedMatMul {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let a = required(inputs, 0)?;
        let dtype = if self.requantize { required(inputs, 7)?.dtype } else { DataType::I32 };
        Ok(vec![Fact::new(dtype, vec![Dim::Unknown; a.shape.len()])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (a_index, b_index) = if self.requantize { (0, 3) } else { (0, 1) };
        let (a, b) = (required(inputs, a_index)?, required(inputs, b_index)?);
        quantized_type(a.dtype(), a_index)?;
        quantized_type(b.dtype(), b_index)?;
        let zero = |i: usize| inputs.get(i).copied().flatten().map(values).and_then(|v| v.first().copied()).unwrap_or(0.0);
        let (a_zero, b_zero) = if self.requantize { (zero(2), zero(5)) } else { (zero(2), zero(3)) };
        let av: Vec<f64> = values(a).into_iter().map(|v| v - a_zero).collect();
        let bv: Vec<f64> = values(b).into_iter().map(|v| v - b_zero).collect();
        let (product, shape) = matmul(&av, a.shape(), &bv, b.shape())?;
        if !self.requantize {
            return emit(output(outputs, 0)?, DataType::I32, &shape, &product);
        }
        let scale = |i: usize| -> Result<f64, OpError> { values(required(inputs, i)?).first().copied().ok_or_else(|| OpError::input(i, "expected a scale")) };
        let factor = scale(1)? * scale(4)? / scale(6)?;
        let y_zero = zero(7);
        let dtype = required(inputs, 7)?.dtype();
        let (lo, hi) = quantized_type(dtype, 7)?;
        let y: Vec<f64> = product.iter().map(|&v| ((v * factor).round_ties_even() + y_zero).clamp(lo, hi)).collect();
        emit(output(outputs, 0)?, dtype, &shape, &y)
    }
}

fn quantize(dequantize: bool, node: &Node) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let block = a.int("block_size", 0)?;
    let output_dtype = match a.int("output_dtype", 0)? {
        0 => None,
        code => Some(i32::try_from(code).ok().and_then(DataType::from_onnx).ok_or_else(|| OpError::attribute("output_dtype", format!("element type {code} is not one byob carries")))?),
    };
    Ok(Box::new(Quantize { dequantize, axis: a.int("axis", 1)?, block: usize::try_from(block).map_err(|_| OpError::attribute("block_size", format!("{block} is negative")))?, output_dtype }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("QuantizeLinear", |n, _| quantize(false, n));
    ops.insert("DequantizeLinear", |n, _| quantize(true, n));
    ops.insert("DynamicQuantizeLinear", |_, _| Ok(Box::new(DynamicQuantize)));
    ops.insert("QLinearMatMul", |_, _| Ok(Box::new(QuantizedMatMul { requantize: true })));
    ops.insert("MatMulInteger", |_, _| Ok(Box::new(QuantizedMatMul { requantize: false })));
}
