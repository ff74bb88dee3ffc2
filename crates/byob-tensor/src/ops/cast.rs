//! Cast and CastLike: elements converted to another type as numpy's
//! `astype` does (floats to integers truncate toward zero, integers to
//! narrower integers wrap, anything nonzero to bool is true); and BitCast,
//! which keeps the bits and changes the type (of the same width).

use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::element::Element;
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

fn convert<S: Element, D: Element>(src: &[S], dst: &mut [D]) {
    if S::FLOAT || D::FLOAT {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = D::from_f64(s.to_f64()));
    } else {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = D::from_i64(s.to_i64()));
    }
}

/// `x`'s elements as `to` into `out`.
fn cast_into(x: &Tensor, to: DataType, out: &mut Tensor) -> Result<(), OpError> {
    if x.dtype() == to {
        return Ok(out.copy_from(x.shape(), x.data())?);
    }
    crate::dispatch!(x.dtype(), S => {
        let src = x.elements::<S>().unwrap_or_default();
        crate::dispatch!(to, D => convert::<S, D>(src, out.reset_as::<D>(x.shape())?))
    });
    Ok(())
}

/// Cast to the type of the `to` attribute.
#[derive(Debug)]
struct Cast {
    to: DataType,
}

impl Op for Cast {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        Ok(vec![Fact::new(self.to, required(inputs, 0)?.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        cast_into(required(inputs, 0)?, self.to, output(outputs, 0)?)
    }
}

/// CastLike: to the type of input 1.
#[derive(Debug)]
struct CastLike;

impl Op for CastLike {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        Ok(vec![Fact::new(required(inputs, 1)?.dtype, required(inputs, 0)?.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        cast_into(required(inputs, 0)?, required(inputs, 1)?.dtype(), output(outputs, 0)?)
    }
}

/// BitCast: the same bytes read as another type of the same width.
#[derive(Debug)]
struct BitCast {
    to: DataType,
}

impl Op for BitCast {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        if x.dtype.size() != self.to.size() {
            return Err(OpError::attribute("to", format!("{} is not as wide as {}", self.to, x.dtype)));
        }
        Ok(vec![Fact::new(self.to, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        if x.dtype().size() != self.to.size() {
            return Err(OpError::attribute("to", format!("{} is not as wide as {}", self.to, x.dtype())));
        }
        let data = crate::model::decode_raw(self.to, &crate::model::encode_raw(x.data()));
        Ok(output(outputs, 0)?.copy_from(x.shape(), &data)?)
    }
}

fn cast(node: &crate::model::Node, _: i64) -> Result<Box<dyn Op>, OpError> {
    let code = Attrs(node).int("to", -1)?;
    let to = i32::try_from(code).ok().and_then(DataType::from_onnx).ok_or_else(|| OpError::attribute("to", format!("element type {code} is not one byob carries")))?;
    Ok(Box::new(Cast { to }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("Cast", cast);
    ops.insert("CastLike", |_, _| Ok(Box::new(CastLike)));
    ops.insert("BitCast", |n, _| {
        let code = Attrs(n).int("to", -1)?;
        let to = i32::try_from(code).ok().and_then(DataType::from_onnx).ok_or_else(|| OpError::attribute("to", format!("element type {code} is not one byob carries")))?;
        Ok(Box::new(BitCast { to }))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Data;

    #[test]
    fn casts_truncate_wrap_and_test_nonzero() {
        let mut out = Tensor::default();
        cast_into(&Tensor::f32(vec![3], vec![-1.7, 2.9, 0.0]).unwrap(), DataType::I32, &mut out).unwrap();
        assert_eq!(out.data(), &Data::I32(vec![-1, 2, 0]));
        cast_into(&Tensor::i64(vec![2], vec![(1 << 40) + 5, -1]).unwrap(), DataType::I32, &mut out).unwrap();
        assert_eq!(out.data(), &Data::I32(vec![5, -1]));
        cast_into(&Tensor::f32(vec![2], vec![0.5, 0.0]).unwrap(), DataType::Bool, &mut out).unwrap();
        assert_eq!(out.data(), &Data::Bool(vec![true, false]));
    }
}
