//! Element rearrangements: DepthToSpace (DCR and CRD), SpaceToDepth,
//! ReverseSequence and CenterCropPad. Each output element reads one input
//! element (or, for CenterCropPad's padding, zero).

use super::axes::{ints, normalize_axis};
use crate::kernels::index_map::{gather_mapped, AxisMaps};
use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::Dim;
use crate::tensor::Tensor;
use std::collections::HashMap;

/// Copies `x` into `shape` where output element `o` reads `source(o)`.
fn remap(x: &Tensor, shape: &[usize], out: &mut Tensor, source: impl Fn(usize) -> usize) -> Result<(), OpError> {
    crate::dispatch!(x.dtype(), T => {
        let v = x.elements::<T>().unwrap_or_default();
        out.reset_as::<T>(shape)?.iter_mut().enumerate().for_each(|(o, y)| *y = v[source(o)]);
    });
    Ok(())
}

/// DepthToSpace and SpaceToDepth on [N, C, H, W] with block size `b`.
#[derive(Debug)]
struct Depth {
    to_space: bool,
    block: usize,
    /// DepthToSpace's CRD mode (column, row, depth); DCR otherwise.
    crd: bool,
}

impl Depth {
    fn output_shape(&self, [n, c, h, w]: [usize; 4]) -> Result<[usize; 4], OpError> {
        let b = self.block;
        if self.to_space {
            if c % (b * b) != 0 {
                return Err(OpError::input(0, format!("{c} channels do not divide into blocks of {b}×{b}")));
            }
            Ok([n, c / (b * b), h * b, w * b])
        } else {
            if h % b != 0 || w % b != 0 {
                return Err(OpError::input(0, format!("{h}×{w} does not divide into blocks of {b}")));
            }
            Ok([n, c * b * b, h / b, w / b])
        }
    }
}

impl Op for Depth {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        let shape = match x.concrete_shape().as_deref() {
            Some(&[n, c, h, w]) => self.output_shape([n, c, h, w])?.into_iter().map(Dim::Known).collect(),
            _ => vec![Dim::Unknown; 4],
        };
        Ok(vec![Fact::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let &[n, c, h, w] = x.shape() else { return Err(OpError::input(0, format!("expected [N, C, H, W], got {:?}", x.shape()))) };
        let out_shape = self.output_shape([n, c, h, w])?;
        let [_, oc, oh, ow] = out_shape;
        let b = self.block;
        remap(x, &out_shape, output(outputs, 0)?, |o| {
            let (ni, rest) = (o / (oc * oh * ow), o % (oc * oh * ow));
            let (ci, yi, xi) = (rest / (oh * ow), (rest / ow) % oh, rest % ow);
            if self.to_space {
                let (by, bx) = (yi % b, xi % b);
                let source_c = if self.crd { (ci * b + by) * b + bx } else { (by * b + bx) * oc + ci };
                ((ni * c + source_c) * h + yi / b) * w + xi / b
            } else {
                // SpaceToDepth is DCR's inverse: channel = (by·b + bx)·C + c.
                let (block, source_c) = (ci / c, ci % c);
                let (by, bx) = (block / b, block % b);
                ((ni * c + source_c) * h + yi * b + by) * w + xi * b + bx
            }
        })
    }
}

/// ReverseSequence: the first `lengths[i]` elements of each sequence
/// reversed along the time axis.
#[derive(Debug)]
struct ReverseSequence {
    time_axis: usize,
    batch_axis: usize,
}

impl Op for ReverseSequence {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![Fact::new(x.dtype, x.shape.clone())])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let lengths = ints(required(inputs, 1)?, 1, "sequence_lens")?;
        let shape = x.shape();
        if shape.len() < 2 || self.time_axis.max(self.batch_axis) > 1 || lengths.len() != shape[self.batch_axis] || lengths.iter().any(|&l| l < 0 || l as usize > shape[self.time_axis]) {
            return Err(OpError::input(1, format!("sequence_lens {lengths:?} do not fit shape {shape:?}")));
        }
        let inner: usize = shape[2..].iter().product();
        let t_stride = if self.time_axis == 0 { shape[1] * inner } else { inner };
        remap(x, shape, output(outputs, 0)?, |o| {
            let (outer, rest) = (o / (shape[1] * inner), o % (shape[1] * inner));
            let (first, second) = (outer, rest / inner);
            let (t, bi) = if self.time_axis == 0 { (first, second) } else { (second, first) };
            let len = lengths[bi] as usize;
            let source_t = if t < len { len - 1 - t } else { t };
            o + source_t * t_stride - t * t_stride
        })
    }
}

/// CenterCropPad: each listed axis cropped or zero-padded about its centre
/// to the given size (an odd difference puts the extra element at the end
/// when cropping and at the start when padding, as the operator's function
/// computes).
#[derive(Debug)]
struct CenterCropPad {
    axes: Option<Vec<i64>>,
}

impl Op for CenterCropPad {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = required(inputs, 0)?;
        Ok(vec![Fact::new(x.dtype, vec![Dim::Unknown; x.shape.len()])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let x = required(inputs, 0)?;
        let sizes = ints(required(inputs, 1)?, 1, "shape")?;
        let rank = x.rank();
        let axes: Vec<usize> = match &self.axes {
            None => (0..rank).collect(),
            Some(a) => a.iter().map(|&a| normalize_axis(a, rank).ok_or_else(|| OpError::attribute("axes", format!("{a} is out of range for rank {rank}")))).collect::<Result<_, _>>()?,
        };
        if sizes.len() != axes.len() || sizes.iter().any(|&s| s < 0) {
            return Err(OpError::input(1, format!("shape {sizes:?} must hold one size of at least 0 per axis ({})", axes.len())));
        }
        let mut maps: AxisMaps = x.shape().iter().map(|&d| (0..d).map(Some).collect()).collect();
        for (&a, &size) in axes.iter().zip(&sizes) {
            let (dim, size) = (x.shape()[a] as i64, size);
            maps[a] = if size <= dim {
                let start = (dim - size) / 2;
                (0..size).map(|i| Some((start + i) as usize)).collect()
            } else {
                let before = (size - dim) / 2;
                (0..size).map(|i| (i - before >= 0 && i - before < dim).then(|| (i - before) as usize)).collect()
            };
        }
        let shape: Vec<usize> = maps.iter().map(Vec::len).collect();
        let out = output(outputs, 0)?;
        crate::dispatch!(x.dtype(), T => gather_mapped::<T>(x.elements::<T>().unwrap_or_default(), x.shape(), &maps, T::default(), out.reset_as::<T>(&shape)?));
        Ok(())
    }
}

fn block(node: &crate::model::Node) -> Result<usize, OpError> {
    let b = Attrs(node).int("blocksize", 0)?;
    usize::try_from(b).ok().filter(|&b| b > 0).ok_or_else(|| OpError::attribute("blocksize", format!("{b} must be positive")))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("DepthToSpace", |n, _| {
        let crd = match Attrs(n).string("mode", "DCR")?.as_str() {
            "DCR" => false,
            "CRD" => true,
            other => return Err(OpError::attribute("mode", format!("{other:?} is neither DCR nor CRD"))),
        };
        Ok(Box::new(Depth { to_space: true, block: block(n)?, crd }))
    });
    ops.insert("SpaceToDepth", |n, _| Ok(Box::new(Depth { to_space: false, block: block(n)?, crd: false })));
    ops.insert("ReverseSequence", |n, _| {
        let a = Attrs(n);
        let axis = |name: &str, default: i64| -> Result<usize, OpError> {
            let v = a.int(name, default)?;
            usize::try_from(v).ok().filter(|&v| v <= 1).ok_or_else(|| OpError::attribute(name, format!("{v} must be 0 or 1")))
        };
        let (time_axis, batch_axis) = (axis("time_axis", 0)?, axis("batch_axis", 1)?);
        if time_axis == batch_axis {
            return Err(OpError::attribute("batch_axis", "must differ from time_axis"));
        }
        Ok(Box::new(ReverseSequence { time_axis, batch_axis }))
    });
    ops.insert("CenterCropPad", |n, _| Ok(Box::new(CenterCropPad { axes: Attrs(n).ints("axes")? })));
}
