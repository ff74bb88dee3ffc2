//! The CPU's operators on weights packed once, at session creation, by
//! the packing pass (`passes::pack`, domain `com.byob.packed`), all on byob's own GEMM
//! ([`crate::kernels::microkernel`]):
//!
//! - `PackedMatMul`: `Y [..., n] = A [..., k] · B + bias`, what `Gemm` (with
//!   `transA = 0` and a per-column C) and `MatMul` by a constant matrix
//!   become; alpha and beta are folded into B and the bias.
//! - `PackedConv`: a 2-D convolution on channels-last activations
//!   (X [N, H, W, C], Y [N, OH, OW, M]). A pointwise convolution reads X in
//!   place as the left operand ([N·H·W × C], one product per group); any
//!   other one-group convolution reads its windows in place too, one
//!   product per image whose rows of A are pieced from one run per kernel
//!   row (from a padded copy when the windows reach past the input);
//!   grouped and dilated ones copy blocks of output pixels' windows
//!   (tap-major, channels contiguous: whole rows of C values at a time) and
//!   multiply each block while it is in cache; depthwise convolutions skip
//!   the GEMM and run along the contiguous channels. The output may be a
//!   slice of a wider tensor's channels (see `ConcatConvs`).
//!
//! Both take an optional fused `Relu` (`activation`), applied as each tile
//! of output is stored. `PackedConv` also takes an optional residual
//! (input 3, the output's shape), added before the activation: the `Add`
//! of a ResNet shortcut, fused by the shortcut fusion pass (`passes::fuse`).

use super::window::Window;
use crate::kernels::window::Geo3;
use crate::kernels::scratch::with_columns;
use crate::kernels::lanes::{block_of, for_channel_blocks, ChannelBlock, PixelTaps};
use super::linalg::{f32_fact, f32_input, known, optional_f32_input};
use crate::kernels::microkernel::{gemm_packed, packed_len, vectorized_rows, Epilogue, Lhs, Residual, VectorLoop, MAX_RUNS};
use super::{output, Attrs, Builder, Fact, Op, OpError};
use crate::kernels::winograd;
use crate::model::{Dim, Node};
use crate::tensor::{DataType, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

fn positive(a: &Attrs, name: &str) -> Result<usize, OpError> {
    let v = a.int(name, 0)?;
    usize::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| OpError::attribute(name, format!("must be positive, got {v}")))
}

/// Checks the packed weights' length and the bias against `n` columns.
fn weights<'a>(inputs: &[Option<&'a Tensor>], expected: usize, n: usize) -> Result<(&'a [f32], Option<&'a [f32]>), OpError> {
    let (_, w) = f32_input(inputs, 1)?;
    if w.len() != expected {
        return Err(OpError::input(1, format!("packed weights must have {expected} values, got {}", w.len())));
    }
    let bias = match optional_f32_input(inputs, 2)? {
        Some((_, b)) if b.len() != n => return Err(OpError::input(2, format!("the bias must have {n} values, got {}", b.len()))),
        other => other.map(|(_, b)| b),
    };
    Ok((w, bias))
}

/// `PackedMatMul`.
#[derive(Debug)]
struct PackedMatMul {
    k: usize,
    n: usize,
    relu: bool,
}

impl Op for PackedMatMul {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let a = f32_fact(inputs, 0)?;
        match a.shape.last().map(known) {
            None => return Err(OpError::input(0, "A must have at least one dimension")),
            Some(Some(k)) if k != self.k => return Err(OpError::Shape(format!("A has {k} columns, the weights {} rows", self.k))),
            _ => {}
        }
        let mut shape = a.shape[..a.shape.len() - 1].to_vec();
        shape.push(Dim::Known(self.n));
        Ok(vec![Fact::new(DataType::F32, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (sa, a) = f32_input(inputs, 0)?;
        if sa.last() != Some(&self.k) {
            return Err(OpError::input(0, format!("A must end in {} columns, got shape {sa:?}", self.k)));
        }
        let (w, bias) = weights(inputs, packed_len(self.k, self.n), self.n)?;
        let mut shape = sa[..sa.len() - 1].to_vec();
        shape.push(self.n);
        let rows = sa[..sa.len() - 1].iter().product();
        let y = output(outputs, 0)?.reset_f32(&shape)?;
        // With k = 0 the kernel stores the bias (and Relu) alone.
        gemm_packed(rows, self.n, Lhs::matrix(a, self.k, self.k), w, y, self.n, Epilogue { bias, residual: Residual::None, relu: self.relu }, Some(threads));
        Ok(())
    }
}

fn packed_matmul(node: &Node, _opset: i64) -> Result<Box<dyn Op>, OpError> {
    let a = Attrs(node);
    let k = a.int("k", -1)?;
    let k = usize::try_from(k).map_err(|_| OpError::attribute("k", format!("must be non-negative, got {k}")))?;
    Ok(Box::new(PackedMatMul { k, n: positive(&a, "n")?, relu: a.fused_relu()? }))
}

/// Whether a convolution with `cg` input channels per group, `m` outputs
/// and `group` groups is depthwise: its packed weights are then [taps, C]
/// (see the packing pass), not GEMM panels.
pub(crate) fn depthwise(cg: usize, m: usize, group: usize) -> bool {
    cg == 1 && m == group
}

/// `PackedConv`.
#[derive(Debug)]
pub(super) struct PackedConv {
    window: Window,
    /// Kernel height and width.
    kernel: [usize; 2],
    group: usize,
    /// Input channels per group.
    cg: usize,
    /// Output channels.
    m: usize,
    relu: bool,
    /// Whether the node adds a residual (input 3).
    residual: bool,
    /// The output tile side of a Winograd convolution (see
    /// [`crate::kernels::winograd`]), whose weights are packed for it.
    winograd: Option<usize>,
}

impl PackedConv {
    /// One input and one output channel per group: weights [taps, C].
    fn depthwise(&self) -> bool {
        depthwise(self.cg, self.m, self.group)
    }

    /// Values of one group's packed weights.
    fn group_len(&self) -> usize {
        packed_len(self.kernel[0] * self.kernel[1] * self.cg, self.m / self.group)
    }

    fn weights_len(&self) -> usize {
        if let Some(tile) = self.winograd {
            winograd::weights_len(tile, self.cg, self.m)
        } else if self.depthwise() {
            self.kernel[0] * self.kernel[1] * self.m
        } else {
            self.group * self.group_len()
        }
    }
}

/// Output pixels per block of the im2col path (a multiple of every tile
/// height).
const BLOCK_PIXELS: usize = 144;

/// Values of im2col windows worth copying on several threads.
const COPY_IN_PARALLEL: usize = 1 << 15;

/// Packed weights (values) that every thread may read whole: beyond, few
/// pixels are better served by splitting the weights between threads.
const SMALL_WEIGHTS: usize = 1 << 18;

impl Op for PackedConv {
    fn infer(&self, inputs: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        let x = f32_fact(inputs, 0)?;
        if x.shape.len() != 4 {
            return Err(OpError::input(0, format!("a channels-last Conv needs [N, H, W, C], got rank {}", x.shape.len())));
        }
        if let Some(c) = known(&x.shape[3]) {
            if c != self.cg * self.group {
                return Err(OpError::input(0, format!("{c} channels, the weights expect {} × {} groups", self.cg, self.group)));
            }
        }
        let mut shape = vec![x.shape[0].clone()];
        shape.extend(self.window.dims(&x.shape[1..3], Some(&self.kernel))?);
        shape.push(Dim::Known(self.m));
        Ok(vec![Fact::new(DataType::F32, shape)])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], threads: &rayon::ThreadPool) -> Result<(), OpError> {
        let (conv, shape) = self.operands(inputs)?;
        let y = output(outputs, 0)?;
        let y = match conv.residual {
            Residual::InC if y.shape() != shape || y.as_f32().is_none() => {
                return Err(OpError::Shape(format!("the residual lent in place as the output is {:?} {:?}, not f32 {shape:?}", y.dtype(), y.shape())));
            }
            Residual::InC => y.as_f32_mut().expect("checked to be f32"),
            _ => y.reset_f32(&shape)?,
        };
        conv.run(y, threads);
        Ok(())
    }

    /// The residual: the session may lend its tensor as the output.
    fn in_place_input(&self) -> Option<usize> {
        self.residual.then_some(3)
    }
}

impl PackedConv {
    /// The operands of one evaluation (checked) and the output's shape; the
    /// output placed alone in its tensor. A declared residual that is
    /// absent was lent in place, as the output (see [`Op::in_place_input`]).
    pub(super) fn operands<'a>(&'a self, inputs: &[Option<&'a Tensor>]) -> Result<(Conv2d<'a>, [usize; 4]), OpError> {
        let (xs, x) = f32_input(inputs, 0)?;
        if xs.len() != 4 || xs[3] != self.cg * self.group {
            return Err(OpError::input(0, format!("expected [N, H, W, {}], got shape {xs:?}", self.cg * self.group)));
        }
        let (w, bias) = weights(inputs, self.weights_len(), self.m)?;
        let axes = self.window.geometry(&xs[1..3], &self.kernel)?;
        let g = Geo3::new(&axes).ok_or_else(|| OpError::input(0, "expected 2 spatial axes"))?;
        let shape = [xs[0], g.output[1], g.output[2], self.m];
        let residual = match optional_f32_input(inputs, 3)? {
            Some((rs, _)) if rs != shape => return Err(OpError::input(3, format!("the residual must have the output's shape {shape:?}, got {rs:?}"))),
            Some((_, r)) => Residual::Matrix(r),
            None if self.residual => Residual::InC,
            None => Residual::None,
        };
        Ok((Conv2d { op: self, x, w, bias, residual, g, offset: 0, stride: self.m }, shape))
    }

    pub(super) fn output_channels(&self) -> usize {
        self.m
    }

    /// Whether the output can go to a slice of a wider tensor's channels
    /// (see [`Conv2d::offset`]).
    pub(super) fn places_anywhere(&self) -> bool {
        !self.depthwise()
    }
}

/// One evaluation's operands.
pub(super) struct Conv2d<'a> {
    op: &'a PackedConv,
    x: &'a [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    /// Added to the output before the activation (a shortcut), laid out as
    /// the output (alone in its tensor).
    residual: Residual<'a>,
    g: Geo3,
    /// The output's channels are `offset..offset + m` of pixels `stride`
    /// channels apart (a channel Concat's part of its output).
    pub offset: usize,
    pub stride: usize,
}

impl Conv2d<'_> {
    fn channels(&self) -> usize {
        self.op.cg * self.op.group
    }

    /// Computes the output into `y`, whose pixels are `stride` values
    /// apart (in the channels `offset..`). Depthwise convolutions need
    /// their own tensor (`offset` 0, `stride` m).
    pub(super) fn run(&self, y: &mut [f32], threads: &rayon::ThreadPool) {
        let g = &self.g;
        if y.is_empty() {
            return;
        }
        if let Some(tile) = self.op.winograd {
            let (op, c) = (self.op, self.channels());
            let operands = winograd::Operands { x: self.x, w: self.w, bias: self.bias, residual: self.residual, g, c, m: op.m, relu: op.relu, offset: self.offset, stride: self.stride };
            winograd::run(tile, &operands, y, threads);
        } else if self.op.depthwise() {
            assert!(self.offset == 0 && self.stride == self.op.m, "a depthwise convolution writes a tensor of its own");
            self.depthwise(y, threads);
        } else if g.kernel == [1; 3] && g.stride == [1; 3] && g.pad == [0; 3] && g.output == g.input {
            self.pointwise(y, threads);
        } else if self.reads_in_place() {
            self.windows_in_place(y, threads);
        } else {
            self.blocks(y, threads);
        }
    }

    /// Whether the windows can be read where they lie, one run of kw·C
    /// values per kernel row (one group, no dilation across).
    fn reads_in_place(&self) -> bool {
        let (op, g) = (self.op, &self.g);
        op.group == 1 && g.dilation[2] == 1 && op.kernel[0] <= MAX_RUNS
    }

    /// One product per image whose rows of A are the output pixels'
    /// windows read in place (see [`Lhs`]): from the input, or from a copy
    /// of it with the pads made real when the windows reach past it. No
    /// im2col copy.
    fn windows_in_place(&self, y: &mut [f32], threads: &rayon::ThreadPool) {
        let (op, g, c) = (self.op, &self.g, self.channels());
        let ([_, ih, iw], [_, oh, ow]) = (g.input, g.output);
        let ([_, sy, sx], [_, dy, _], [_, top, left]) = (g.stride, g.dilation, g.pad);
        let [kh, kw] = op.kernel;
        // The rows and columns the windows span.
        let (sh, sw) = ((oh - 1) * sy + (kh - 1) * dy + 1, (ow - 1) * sx + kw);
        let images = self.x.len() / (ih * iw * c);
        let mut compute = |source: &[f32], (height, width): (usize, usize)| {
            for (image, out) in y.chunks_mut(oh * ow * self.stride).enumerate() {
                let mut runs = [0; MAX_RUNS];
                for (ky, run) in runs[..kh].iter_mut().enumerate() {
                    *run = ((image * height + ky * dy) * width) * c;
                }
                let lhs = Lhs { data: source, runs: &runs[..kh], run_len: kw * c, row_stride: sx * c, per_line: ow, line_stride: sy * width * c };
                gemm_packed(oh * ow, op.m, lhs, self.w, &mut out[self.offset..], self.stride, self.epilogue(0, image * oh * ow), Some(threads));
            }
        };
        if top == 0 && left == 0 && sh <= ih && sw <= iw {
            return compute(self.x, (ih, iw));
        }
        with_columns(images * sh * sw * c, |padded| {
            threads.install(|| {
                padded.par_chunks_mut(sw * c).enumerate().for_each(|(r, row)| {
                    let (image, iy) = (r / sh, (r % sh).checked_sub(top).filter(|&iy| iy < ih));
                    let Some(iy) = iy else { return row.fill(0.0) };
                    let (lead, copied) = (left.min(sw), iw.min(sw.saturating_sub(left)));
                    row[..lead * c].fill(0.0);
                    row[lead * c..][..copied * c].copy_from_slice(&self.x[((image * ih + iy) * iw) * c..][..copied * c]);
                    row[(lead + copied) * c..].fill(0.0);
                })
            });
            compute(padded, (sh, sw))
        })
    }

    /// The epilogue of group `gi`'s product for output pixels `first..`.
    fn epilogue(&self, gi: usize, first: usize) -> Epilogue<'_> {
        let mg = self.op.m / self.op.group;
        // The residual is laid out as the output (checked by `operands`; a
        // placed output has none).
        let residual = match self.residual {
            Residual::Matrix(r) => Residual::Matrix(&r[first * self.stride + gi * mg..]),
            other => other,
        };
        Epilogue { bias: self.bias.map(|b| &b[gi * mg..][..mg]), residual, relu: self.op.relu }
    }

    /// Where group `gi`'s output channels start in a row of the output.
    fn column(&self, gi: usize) -> usize {
        self.offset + gi * (self.op.m / self.op.group)
    }

    /// Each group's product straight on the input.
    fn pointwise(&self, y: &mut [f32], threads: &rayon::ThreadPool) {
        let (op, c) = (self.op, self.channels());
        let (mg, rows) = (op.m / op.group, y.len() / self.stride);
        for gi in 0..op.group {
            let w = &self.w[gi * op.group_len()..][..op.group_len()];
            gemm_packed(rows, mg, Lhs::matrix(&self.x[gi * op.cg..], c, op.cg), w, &mut y[self.column(gi)..], self.stride, self.epilogue(gi, 0), Some(threads));
        }
    }

    /// Blocks of output pixels: their windows copied (im2col), then one
    /// product per group.
    fn blocks(&self, y: &mut [f32], threads: &rayon::ThreadPool) {
        let op = self.op;
        let kg = op.kernel[0] * op.kernel[1] * op.cg;
        let mg = op.m / op.group;
        let block = |(first, out): (usize, &mut [f32]), pool: Option<&rayon::ThreadPool>| {
            let rows = out.len() / self.stride;
            with_columns(rows * kg, |col| {
                for gi in 0..op.group {
                    match pool {
                        // The product runs on every thread, so does the
                        // copy (a 14×14 layer's windows are 1.8 MB), in
                        // whole rows of windows per task.
                        Some(pool) if rows * kg >= COPY_IN_PARALLEL => {
                            let per_task = COPY_IN_PARALLEL.div_ceil(kg);
                            pool.install(|| {
                                col.par_chunks_mut(per_task * kg).enumerate().for_each(|(t, windows)| {
                                    for r in 0..windows.len() / kg {
                                        self.window_of(first + t * per_task + r, gi, &mut windows[r * kg..]);
                                    }
                                })
                            });
                        }
                        _ => {
                            for r in 0..rows {
                                self.window_of(first + r, gi, &mut col[r * kg..]);
                            }
                        }
                    }
                    let w = &self.w[gi * op.group_len()..][..op.group_len()];
                    gemm_packed(rows, mg, Lhs::matrix(col, kg, kg), w, &mut out[self.column(gi)..], self.stride, self.epilogue(gi, first), pool);
                }
            });
        };
        // Blocks of pixels in parallel, each multiplied on its thread, as
        // long as there are enough of them or the weights are small enough
        // for every thread to read them all; otherwise (a few pixels, large
        // weights: a network's last stages) one block at a time, its product
        // split over panels of weights.
        let pixels = y.len() / self.stride;
        let threads_n = threads.current_num_threads();
        let blocks = pixels.div_ceil(BLOCK_PIXELS);
        let small_weights = kg * op.m <= SMALL_WEIGHTS;
        let per_block = if blocks >= 2 * threads_n || !small_weights || pixels < 12 * threads_n {
            BLOCK_PIXELS
        } else {
            // A multiple of the threads, of at most BLOCK_PIXELS each.
            pixels.div_ceil(blocks.div_ceil(threads_n) * threads_n)
        };
        if threads_n > 1 && pixels.div_ceil(per_block) >= threads_n && (small_weights || blocks >= 2 * threads_n) {
            threads.install(|| y.par_chunks_mut(per_block * self.stride).enumerate().for_each(|(b, out)| block((b * per_block, out), None)));
        } else {
            y.chunks_mut(per_block * self.stride).enumerate().for_each(|(b, out)| block((b * per_block, out), Some(threads)));
        }
    }

    /// Row `dst[..kh·kw·cg]` (tap-major) of the im2col matrix: what output
    /// pixel `pixel` sees of group `gi`'s channels, zeros in the pads. May
    /// write garbage past the row, into `dst`'s next rows (see [`copy_run`]).
    fn window_of(&self, pixel: usize, gi: usize, dst: &mut [f32]) {
        let (op, g, c) = (self.op, &self.g, self.channels());
        let [_, oh, ow] = g.output;
        let [_, ih, iw] = g.input;
        let [kh, kw] = op.kernel;
        let (image, oy, ox) = (pixel / (oh * ow), (pixel / ow) % oh, pixel % ow);
        let plane = &self.x[image * ih * iw * c..][..ih * iw * c];
        let cg = op.cg;
        let x0 = g.position(2, ox, 0);
        let x_last = g.position(2, ox, kw - 1);
        // One copy per kernel row when its taps are contiguous and inside.
        let whole_rows = op.group == 1 && g.dilation[2] == 1 && x0 >= 0 && (x_last as usize) < iw;
        for ky in 0..kh {
            let iy = g.position(1, oy, ky);
            if iy < 0 || iy as usize >= ih {
                dst[ky * kw * cg..][..kw * cg].fill(0.0);
                continue;
            }
            let line = &plane[iy as usize * iw * c..];
            if whole_rows {
                copy_run(&mut dst[ky * kw * cg..], &line[x0 as usize * c..], kw * c);
                continue;
            }
            let row = &mut dst[ky * kw * cg..][..kw * cg];
            for (kx, tap) in row.chunks_exact_mut(cg).enumerate() {
                let ix = g.position(2, ox, kx);
                if ix < 0 || ix as usize >= iw {
                    tap.fill(0.0);
                } else {
                    tap.copy_from_slice(&line[ix as usize * c + gi * cg..][..cg]);
                }
            }
        }
    }

    /// Depthwise: every output pixel sums its taps along the channels.
    fn depthwise(&self, y: &mut [f32], threads: &rayon::ThreadPool) {
        vectorized_rows(y, self.g.output[2] * self.channels(), threads, self);
    }

}

impl VectorLoop for Conv2d<'_> {
    /// Output row `r` (over images and rows) of a depthwise convolution.
    #[inline(always)]
    fn run(&self, r: usize, out: &mut [f32]) {
        let (g, c) = (&self.g, self.channels());
        let oh = g.output[1];
        let [_, ih, iw] = g.input;
        let (image, oy) = (r / oh, r % oh);
        let plane = &self.x[image * ih * iw * c..][..ih * iw * c];
        let residual = match self.residual {
            Residual::Matrix(res) => Some(&res[r * out.len()..][..out.len()]),
            _ => None,
        };
        if c == 1 && g.dilation[2] == 1 {
            return self.single_channel_row(oy, plane, residual, out);
        }
        for (ox, out) in out.chunks_exact_mut(c).enumerate() {
            let residual = residual.map(|res| &res[ox * c..][..c]);
            let taps = PixelTaps::new(g, c, oy, ox);
            for_channel_blocks(c, &mut DepthwisePixel { conv: self, plane, taps, residual, out });
        }
    }
}

impl Conv2d<'_> {
    /// Output row `oy` of a one-channel convolution (an anti-aliasing
    /// filter over audio, 256 taps at stride 2 in basic-pitch): each output
    /// is, per kernel row, one dot product of its taps with a contiguous
    /// run of the input (the GEMM module's vector dot product). Blocks of
    /// one channel left the vector lanes all but empty (basic-pitch's
    /// filters 9 ms, now a fraction of one).
    #[inline(always)]
    fn single_channel_row(&self, oy: usize, plane: &[f32], residual: Option<&[f32]>, out: &mut [f32]) {
        let g = &self.g;
        let [_, _, kw] = g.kernel;
        let iw = g.input[2];
        for (ox, o) in out.iter_mut().enumerate() {
            let mut acc = self.bias.map_or(0.0, |b| b[0]);
            let xs = g.taps_along(2, ox);
            // (An output whose window lies all in the padding sums nothing.)
            let rows = if xs.is_empty() { 0..0 } else { g.taps_along(1, oy) };
            for ky in rows {
                let iy = (oy * g.stride[1] + ky * g.dilation[1]) - g.pad[1];
                let ix = ox * g.stride[2] + xs.start - g.pad[2];
                acc += crate::kernels::microkernel::dot(&self.w[ky * kw + xs.start..ky * kw + xs.end], &plane[iy * iw + ix..][..xs.len()]);
            }
            acc += match self.residual {
                Residual::InC => *o,
                _ => residual.map_or(0.0, |res| res[ox]),
            };
            *o = if self.op.relu { acc.max(0.0) } else { acc };
        }
    }
}

/// One output pixel of a depthwise convolution, a block of channels at a
/// time.
struct DepthwisePixel<'a> {
    conv: &'a Conv2d<'a>,
    plane: &'a [f32],
    taps: PixelTaps,
    /// The pixel's residual when it is not in `out` already.
    residual: Option<&'a [f32]>,
    out: &'a mut [f32],
}

impl ChannelBlock for DepthwisePixel<'_> {
    #[inline(always)]
    fn block<const W: usize>(&mut self, first: usize) {
        let (conv, c) = (self.conv, self.conv.channels());
        let mut acc = conv.bias.map_or([0.0; W], |b| *block_of::<W>(b, first));
        self.taps.for_each(|tap, at| {
            let (src, w) = (block_of::<W>(self.plane, at + first), block_of::<W>(conv.w, tap * c + first));
            acc.iter_mut().zip(src).zip(w).for_each(|((a, &s), &w)| *a += s * w);
        });
        let residual = match conv.residual {
            Residual::InC => Some(&*self.out),
            _ => self.residual,
        };
        if let Some(res) = residual {
            acc.iter_mut().zip(block_of::<W>(res, first)).for_each(|(a, &s)| *a += s);
        }
        if conv.op.relu {
            acc.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        self.out[first..first + W].copy_from_slice(&acc);
    }
}

/// Whether a `PackedConv` node adds a residual (names an input 3).
pub(crate) fn adds_residual(node: &Node) -> bool {
    node.inputs.get(3).is_some_and(|r| !r.is_empty())
}

fn packed_conv(node: &Node, _opset: i64) -> Result<Box<dyn Op>, OpError> {
    Ok(Box::new(read_packed_conv(node, adds_residual(node))?))
}

/// A `PackedConv` from its node's attributes, adding a residual (input 3)
/// or not.
pub(super) fn read_packed_conv(node: &Node, residual: bool) -> Result<PackedConv, OpError> {
    let a = Attrs(node);
    let window = Window::from_attrs(&a, false)?;
    let kernel = match window.kernel.as_deref() {
        Some(&[h, w]) => [h, w],
        _ => return Err(OpError::attribute("kernel_shape", "a packed Conv needs two kernel sizes")),
    };
    window.check(2)?;
    let (group, cg, m) = (positive(&a, "group")?, positive(&a, "input_channels")?, positive(&a, "output_channels")?);
    if m % group != 0 {
        return Err(OpError::attribute("group", format!("{group} does not divide {m} output channels")));
    }
    let winograd = match a.int("winograd_tile", 0)? {
        0 => None,
        tile => {
            let fits = usize::try_from(tile).ok().filter(|&t| winograd::is_tile(t) && winograd::applies(kernel, group, window.strides.as_deref(), window.dilations.as_deref()));
            Some(fits.ok_or_else(|| OpError::attribute("winograd_tile", format!("{tile} needs tiles of 2 or 4 on a one-group 3×3 Conv with strides and dilations 1")))?)
        }
    };
    Ok(PackedConv { window, kernel, group, cg, m, relu: a.fused_relu()?, residual, winograd })
}

/// Copies `src[..len]` to `dst[..len]`. A short run (a first layer's
/// window row: 3 channels × 3 or 7 taps) moves as one fixed-size block of
/// 16 or 32 values when both slices have room for it, since a `memcpy`
/// call per run cost more than the copy (the values written past `len`
/// are garbage for the caller to overwrite).
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32], len: usize) {
    fn block<const N: usize>(dst: &mut [f32], src: &[f32]) {
        let values: [f32; N] = src[..N].try_into().expect("N values");
        dst[..N].copy_from_slice(&values);
    }
    let room = dst.len().min(src.len());
    match len {
        ..=16 if room >= 16 => block::<16>(dst, src),
        ..=32 if room >= 32 => block::<32>(dst, src),
        _ => dst[..len].copy_from_slice(&src[..len]),
    }
}

/// The packed operators' types.
pub const PACKED_OPS: [&str; 4] = ["PackedConv", "PackedMatMul", "ChannelShuffle", "ConcatConvs"];

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("PackedConv", packed_conv);
    ops.insert("PackedMatMul", packed_matmul);
    ops.insert("ChannelShuffle", super::shuffle::channel_shuffle);
    ops.insert("ConcatConvs", super::concat_convs::concat_convs);
}
