//! The CPU's channels-last pools: `MaxPool` and `AveragePool` (2-D) and the
//! global pools on X [N, H, W, C], every window folded along the contiguous
//! channels (vectorised for the processor's widest registers), rows of
//! output in parallel. Attributes and divisors are those of the NCHW
//! kernels ([`super::pool`]).

use crate::kernels::window::Geo3;
use crate::kernels::lanes::{block_of, for_channel_blocks, ChannelBlock, PixelTaps};
use super::linalg::{f32_fact, f32_input};
use crate::kernels::microkernel::{vectorized_rows, VectorLoop};
use super::pool::{average_kind, inverse_counts, read_pool, Kind, Pool};
use super::{output, Fact, Op, OpError};
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};

fn nhwc_input<'a>(inputs: &[Option<&'a Tensor>]) -> Result<(&'a [usize], &'a [f32]), OpError> {
    let (xs, x) = f32_input(inputs, 0)?;
    if xs.len() != 4 {
        return Err(OpError::input(0, format!("a channels-last pool needs [N, H, W, C], got shape {xs:?}")));
    }
    Ok((xs, x))
}

fn nhwc_fact<'a>(inputs: &[Option<&'a Fact>]) -> Result<&'a Fact, OpError> {
    let x = f32_fact(inputs, 0)?;
    if x.shape.len() != 4 {
        return Err(OpError::input(0, format!("a channels-last pool needs [N, H, W, C], got rank {}", x.shape.len())));
    }
    Ok(x)
}

#[derive(Debug)]
struct WindowPool(Pool);

impl Op for WindowPool {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = nhwc_fact(inputs)?;
        let mut shape = vec![x.shape[0].clone()];
        shape.extend(self.0.window.dims(&x.shape[1..3], Some(&self.0.kernel))?);
        shape.push(x.shape[3].clone());
        Ok(vec![Fact::new(DataType::F32, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (xs, x) = nhwc_input(inputs)?;
        let axes = self.0.window.geometry(&xs[1..3], &self.0.kernel)?;
        let g = Geo3::new(&axes).ok_or_else(|| OpError::input(0, "expected 2 spatial axes"))?;
        let ([_, oh, ow], c) = (g.output, xs[3]);
        let y = output(outputs, 0)?.reset_f32(&[xs[0], oh, ow, c])?;
        let inverse = match self.0.kind {
            Kind::Max => None,
            Kind::Average { count_include_pad } => Some(inverse_counts(&g, &axes, count_include_pad)),
            // The layout pass never rewrites LpPool (not a channels-last op).
            Kind::Lp { .. } => return Err(OpError::Unsupported { op: "LpPool (channels-last)".into(), opset: 0 }),
        };
        vectorized_rows(y, ow * c, threads, &WindowRows { x, g, c, inverse });
        Ok(())
    }
}

/// The rows of a windowed pool's output (one image row each).
struct WindowRows<'a> {
    x: &'a [f32],
    g: Geo3,
    c: usize,
    /// AveragePool's 1 / divisor per output pixel; `None` for MaxPool.
    inverse: Option<Vec<f32>>,
}

impl VectorLoop for WindowRows<'_> {
    #[inline(always)]
    fn run(&self, r: usize, out: &mut [f32]) {
        let (g, c) = (&self.g, self.c);
        let ([_, ih, iw], [_, oh, ow]) = (g.input, g.output);
        let (image, oy) = (r / oh, r % oh);
        let plane = &self.x[image * ih * iw * c..][..ih * iw * c];
        for (ox, out) in out.chunks_exact_mut(c).enumerate() {
            let scale = self.inverse.as_ref().map(|inverse| inverse[oy * ow + ox]);
            for_channel_blocks(c, &mut PixelFold { plane, taps: PixelTaps::new(g, c, oy, ox), scale, out });
        }
    }
}

/// One output pixel of a windowed pool, a block of channels at a time.
struct PixelFold<'a> {
    plane: &'a [f32],
    taps: PixelTaps,
    /// The average's 1 / divisor; `None` for the maximum.
    scale: Option<f32>,
    out: &'a mut [f32],
}

impl ChannelBlock for PixelFold<'_> {
    #[inline(always)]
    fn block<const W: usize>(&mut self, first: usize) {
        let max = self.scale.is_none();
        let mut acc = [if max { f32::NEG_INFINITY } else { 0.0 }; W];
        self.taps.for_each(|_, at| {
            let src = block_of::<W>(self.plane, at + first);
            if max {
                // NaN inputs are skipped, as by `f32::max` (the sums never
                // become NaN), in one instruction rather than three.
                acc.iter_mut().zip(src).for_each(|(a, &s)| *a = if s > *a { s } else { *a });
            } else {
                acc.iter_mut().zip(src).for_each(|(a, &s)| *a += s);
            }
        });
        if let Some(scale) = self.scale {
            acc.iter_mut().for_each(|a| *a *= scale);
        }
        self.out[first..first + W].copy_from_slice(&acc);
    }
}

#[derive(Debug)]
struct GlobalPool {
    max: bool,
}

impl Op for GlobalPool {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = nhwc_fact(inputs)?;
        Ok(vec![Fact::new(DataType::F32, vec![x.shape[0].clone(), Dim::Known(1), Dim::Known(1), x.shape[3].clone()])])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (xs, x) = nhwc_input(inputs)?;
        let (pixels, c) = (xs[1] * xs[2], xs[3]);
        let y = output(outputs, 0)?.reset_f32(&[xs[0], 1, 1, c])?;
        vectorized_rows(y, c, threads, &GlobalRows { x, pixels, c, max: self.max });
        Ok(())
    }
}

/// The rows of a global pool's output (one image each).
struct GlobalRows<'a> {
    x: &'a [f32],
    pixels: usize,
    c: usize,
    max: bool,
}

impl VectorLoop for GlobalRows<'_> {
    #[inline(always)]
    fn run(&self, image: usize, acc: &mut [f32]) {
        let (x, pixels, c, max) = (self.x, self.pixels, self.c, self.max);
        {
            acc.fill(if max { f32::NEG_INFINITY } else { 0.0 });
            for src in x[image * pixels * c..][..pixels * c].chunks_exact(c) {
                if max {
                    acc.iter_mut().zip(src).for_each(|(a, &s)| *a = a.max(s));
                } else {
                    acc.iter_mut().zip(src).for_each(|(a, &s)| *a += s);
                }
            }
            if !max {
                let scale = 1.0 / pixels as f32;
                acc.iter_mut().for_each(|a| *a *= scale);
            }
        }
    }
}

/// The channels-last kernel of a pool node, if it is one.
pub(crate) fn build(node: &Node) -> Option<Result<Box<dyn Op>, OpError>> {
    let pool = |kind| read_pool(node, kind).map(|p| Box::new(WindowPool(p)) as Box<dyn Op>);
    Some(match node.op_type.as_str() {
        "MaxPool" => pool(Kind::Max),
        "AveragePool" => average_kind(node).and_then(pool),
        "GlobalMaxPool" => Ok(Box::new(GlobalPool { max: true })),
        "GlobalAveragePool" => Ok(Box::new(GlobalPool { max: false })),
        _ => return None,
    })
}
