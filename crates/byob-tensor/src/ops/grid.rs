//! Sampling at computed positions: GridSample (opsets 16 and 20; nearest,
//! linear and cubic in any number of spatial dimensions; zeros, border and
//! reflection padding; align_corners) and AffineGrid (2-D and 3-D), as the
//! operators' reference implementations compute them, in f64.

use super::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::Tensor;
use std::collections::HashMap;


#[derive(Debug, Clone, Copy, PartialEq)]
enum Interpolation {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Padding {
    Zeros,
    Border,
    Reflection,
}

#[derive(Debug)]
struct GridSample {
    mode: Interpolation,
    padding: Padding,
    align_corners: bool,
}

/// Folds `x` back into [lo, hi] by reflecting at the nearer border.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let range = hi - lo;
    if x < lo {
        let dx = lo - x;
        let n = (dx / range).trunc();
        let r = dx - n * range;
        if n as i64 % 2 == 0 { lo + r } else { hi - r }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / range).trunc();
        let r = dx - n * range;
        if n as i64 % 2 == 0 { hi - r } else { lo + r }
    } else {
        x
    }
}

fn cubic_weights(t: f64) -> [f64; 4] {
    let k = |x: f64| super::resize::cubic(-0.75, x);
    [k(t + 1.0), k(t), k(1.0 - t), k(2.0 - t)]
}

impl GridSample {
    /// The input index a tap at integer position `i` reads on an axis of
    /// `len` (None: a zero).
    fn index(&self, i: i64, len: usize, border: (f64, f64)) -> Option<usize> {
        match self.padding {
            Padding::Zeros => (0..len as i64).contains(&i).then_some(i as usize),
            Padding::Border => Some(i.clamp(0, len as i64 - 1) as usize),
            Padding::Reflection => Some((reflect(i as f64, border.0, border.1) as i64).clamp(0, len as i64 - 1) as usize),
        }
    }

    /// Per axis, (input index or None, weight) taps for coordinate `x`.
    fn taps(&self, x: f64, len: usize, border: (f64, f64)) -> Vec<(Option<usize>, f64)> {
        match self.mode {
            Interpolation::Nearest => vec![(self.index(x as i64, len, border), 1.0)],
            Interpolation::Linear => {
                let x0 = x.floor();
                let t = x - x0;
                vec![(self.index(x0 as i64, len, border), 1.0 - t), (self.index(x0 as i64 + 1, len, border), t)]
            }
            Interpolation::Cubic => {
                let x0 = x.floor();
                let w = cubic_weights(x - x0);
                (0..4).map(|k| (self.index(x0 as i64 - 1 + k as i64, len, border), w[k])).collect()
            }
        }
    }
}

impl Op for GridSample {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let (x, grid) = (required(inputs, 0)?, required(inputs, 1)?);
        let mut shape = x.shape.iter().take(2).cloned().collect::<Vec<_>>();
        shape.extend(grid.shape.iter().skip(1).take(grid.shape.len().saturating_sub(2)).cloned());
        if shape.len() < 2 {
            shape = vec![Dim::Unknown; x.shape.len()];
        }
        Ok(vec![Fact::new(x.dtype, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let (x, grid) = (required(inputs, 0)?, required(inputs, 1)?);
        let (xs, gs) = (x.shape(), grid.shape());
        let dims = xs.len().saturating_sub(2);
        if dims == 0 || gs.len() != xs.len() || gs[0] != xs[0] || gs[gs.len() - 1] != dims {
            return Err(OpError::input(1, format!("grid {gs:?} does not fit input {xs:?}")));
        }
        let (values, coords) = (super::f64_values(x, 0)?, super::f64_values(grid, 1)?);
        let (n, c) = (xs[0], xs[1]);
        let spatial = &xs[2..];
        let in_size: usize = spatial.iter().product();
        let out_spatial = &gs[1..gs.len() - 1];
        let out_size: usize = out_spatial.iter().product();
        let borders: Vec<(f64, f64)> = spatial.iter().map(|&d| if self.align_corners { (0.0, d as f64 - 1.0) } else { (-0.5, d as f64 - 0.5) }).collect();
        let mut y = vec![0.0; n * c * out_size];
        for ni in 0..n {
            for o in 0..out_size {
                // Grid coordinates list the innermost axis first.
                let point = &coords[(ni * out_size + o) * dims..][..dims];
                let mut taps: Vec<Vec<(Option<usize>, f64)>> = Vec::with_capacity(dims);
                for i in 0..dims {
                    let (len, normalized) = (spatial[i], point[dims - 1 - i]);
                    let mut v = if self.align_corners { (normalized + 1.0) / 2.0 * (len as f64 - 1.0) } else { ((normalized + 1.0) * len as f64 - 1.0) / 2.0 };
                    if self.mode == Interpolation::Nearest {
                        v = v.round_ties_even();
                    }
                    let (lo, hi) = borders[i];
                    if v < lo || v > hi {
                        match self.padding {
                            Padding::Border => v = v.clamp(0.0, len as f64 - 1.0),
                            Padding::Reflection => v = reflect(v, lo, hi),
                            Padding::Zeros => {}
                        }
                    }
                    taps.push(self.taps(v, len, borders[i]));
                }
                // Every combination of taps across the axes.
                let combinations: usize = taps.iter().map(Vec::len).product();
                let mut choice = vec![0usize; dims];
                for k in 0..combinations {
                    let mut rest = k;
                    for i in (0..dims).rev() {
                        choice[i] = rest % taps[i].len();
                        rest /= taps[i].len();
                    }
                    let mut weight = 1.0;
                    let mut offset = Some(0usize);
                    for i in 0..dims {
                        let (index, w) = taps[i][choice[i]];
                        weight *= w;
                        offset = offset.zip(index).map(|(off, idx)| off * spatial[i] + idx);
                    }
                    if let Some(offset) = offset {
                        for ci in 0..c {
                            y[(ni * c + ci) * out_size + o] += weight * values[(ni * c + ci) * in_size + offset];
                        }
                    }
                }
            }
        }
        let mut shape = vec![n, c];
        shape.extend_from_slice(out_spatial);
        super::write_f64(output(outputs, 0)?, x.dtype(), &shape, &y)
    }
}

/// AffineGrid: the sampling grid of an affine transformation, for
/// GridSample.
#[derive(Debug)]
struct AffineGrid {
    align_corners: bool,
}

impl Op for AffineGrid {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let theta = required(inputs, 0)?;
        Ok(vec![Fact::new(theta.dtype, vec![Dim::Unknown; theta.shape.len() + 1])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], _: &rayon::ThreadPool) -> Result<(), OpError> {
        let theta = required(inputs, 0)?;
        let size = super::axes::ints(required(inputs, 1)?, 1, "size")?;
        let dims = size.len().saturating_sub(2);
        if !(dims == 2 || dims == 3) || theta.shape() != [size[0] as usize, dims, dims + 1] || size.iter().any(|&s| s < 1) {
            return Err(OpError::input(0, format!("theta {:?} and size {size:?} must be [N, 2, 3] and [N, C, H, W] (or 3-D)", theta.shape())));
        }
        let t = super::f64_values(theta, 0)?;
        let spatial: Vec<usize> = size[2..].iter().map(|&s| s as usize).collect();
        let base = |len: usize, i: usize| -> f64 {
            if self.align_corners {
                if len == 1 { -1.0 } else { -1.0 + 2.0 * i as f64 / (len - 1) as f64 }
            } else {
                -1.0 + (2 * i + 1) as f64 / len as f64
            }
        };
        let count: usize = spatial.iter().product();
        let n = size[0] as usize;
        let mut grid = vec![0.0; n * count * dims];
        for ni in 0..n {
            for p in 0..count {
                // Homogeneous point (x, y[, z], 1), x along the innermost axis.
                let mut rest = p;
                let mut point = vec![1.0; dims + 1];
                for i in (0..dims).rev() {
                    point[dims - 1 - i] = base(spatial[i], rest % spatial[i]);
                    rest /= spatial[i];
                }
                for r in 0..dims {
                    grid[(ni * count + p) * dims + r] = (0..=dims).map(|k| t[(ni * dims + r) * (dims + 1) + k] * point[k]).sum();
                }
            }
        }
        let mut shape = vec![n];
        shape.extend_from_slice(&spatial);
        shape.push(dims);
        super::write_f64(output(outputs, 0)?, theta.dtype(), &shape, &grid)
    }
}

fn grid_sample(node: &Node) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let mode = match a.string("mode", "linear")?.as_str() {
        "nearest" => Interpolation::Nearest,
        "linear" | "bilinear" => Interpolation::Linear,
        "cubic" | "bicubic" => Interpolation::Cubic,
        other => return Err(OpError::attribute("mode", format!("{other:?} is not nearest, linear or cubic"))),
    };
    let padding = match a.string("padding_mode", "zeros")?.as_str() {
        "zeros" => Padding::Zeros,
        "border" => Padding::Border,
        "reflection" => Padding::Reflection,
        other => return Err(OpError::attribute("padding_mode", format!("{other:?} is not zeros, border or reflection"))),
    };
    Ok(Box::new(GridSample { mode, padding, align_corners: a.int("align_corners", 0)? != 0 }))
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("GridSample", |n, _| grid_sample(n));
    ops.insert("AffineGrid", |n, _| Ok(Box::new(AffineGrid { align_corners: Attrs(n).int("align_corners", 0)? != 0 })));
}
