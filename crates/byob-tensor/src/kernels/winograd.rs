//! 3×3 convolutions with stride 1 by Winograd's minimal filtering (Lavin
//! and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016),
//! which ONNX Runtime's CPU provider does not use.
//!
//! F(m×m, 3×3) makes a tile of m×m output pixels from the (m+2)² input
//! pixels under it: each channel's input tile d becomes V = Bᵀ d B, each
//! pair of channels' 3×3 kernel g becomes U = G g Gᵀ (once, at session
//! creation), and the tile's output is Aᵀ M A with M = Σ_c V_c ⊙ U_c. For
//! each of the (m+2)² positions ξ that sum is a matrix product over the
//! channels, V_ξ [tiles × C] · U_ξ [C × M], run on byob's GEMM with U_ξ
//! packed as any weights are. A layer then takes (m+2)²/m² products per
//! output pixel and channel pair instead of 9: 4 with m = 2 (2.25× fewer
//! multiply-adds), 2.25 with m = 4 (4× fewer).
//!
//! Larger tiles round worse (the transforms scale values by up to 100 with
//! m = 4, still within a few 1e-6 of ONNX Runtime on ResNet50's output),
//! and the transformed weights take (m+2)²/9 times the memory (4× with
//! m = 4), so [`tile_for`] takes m = 4 where an image has enough tiles to
//! amortise reading them, m = 2 on smaller images (7×7), and leaves the
//! smallest ones and layers of few channels to the direct convolution.
//!
//! A run goes by blocks of tile rows sized to stay in cache: every tile's
//! input transform (in parallel over tiles), the (m+2)² products (in
//! parallel over ξ), then every tile's output transform, with the bias,
//! residual and Relu, stored where the pixels lie (in parallel over rows of
//! tiles). The transforms run along contiguous channels, compiled for the
//! widest vectors as the depthwise loops are.

use super::window::Geo3;
use super::scratch::with_columns;
use super::lanes::{block_of, for_channel_blocks, ChannelBlock};
use super::microkernel::{gemm_packed, pack, packed_len, vectorized, Epilogue, Lhs, Residual, VectorLoop};
use rayon::prelude::*;

/// The matrices of F(M×M, 3×3) on input tiles of A = M + 2 pixels a side.
struct Transform<const A: usize, const M: usize> {
    /// Bᵀ: input tile to transformed tile (rows and columns alike).
    bt: [[f32; A]; A],
    /// G: kernel to transformed kernel (f64: its sixths and twenty-fourths
    /// are rounded once, at the end).
    g: [[f64; 3]; A],
    /// Aᵀ: transformed product to output tile.
    at: [[f32; A]; M],
}

/// F(2×2, 3×3): 16 products per 4 output pixels.
const F2: Transform<4, 2> = Transform {
    bt: [[1., 0., -1., 0.], [0., 1., 1., 0.], [0., -1., 1., 0.], [0., 1., 0., -1.]],
    g: [[1., 0., 0.], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0., 0., 1.]],
    at: [[1., 1., 1., 0.], [0., 1., -1., -1.]],
};

/// F(4×4, 3×3): 36 products per 16 output pixels (interpolation points 0,
/// ±1, ±2 and ∞).
const F4: Transform<6, 4> = Transform {
    bt: [
        [4., 0., -5., 0., 1., 0.],
        [0., -4., -4., 1., 1., 0.],
        [0., 4., -4., -1., 1., 0.],
        [0., -2., -1., 2., 1., 0.],
        [0., 2., -1., -2., 1., 0.],
        [0., 4., 0., -5., 0., 1.],
    ],
    g: [
        [1. / 4., 0., 0.],
        [-1. / 6., -1. / 6., -1. / 6.],
        [-1. / 6., 1. / 6., -1. / 6.],
        [1. / 24., 1. / 12., 1. / 6.],
        [1. / 24., -1. / 12., 1. / 6.],
        [0., 0., 1.],
    ],
    at: [[1., 1., 1., 1., 1., 0.], [0., 1., -1., 2., -2., 0.], [0., 1., 1., 4., 4., 0.], [0., 1., -1., 8., -8., 1.]],
};

/// Fewest tiles per image (rows of each product) for either transform.
const MIN_TILES: usize = 16;

/// Fewest input and output channels: each product sums over the input
/// channels, and with fewer than 32 the transforms and the stores of the
/// sums weigh as much as the multiply-adds saved (SqueezeNet's 16 channels
/// at 55×55 measured 1.06-1.09× the time of the direct convolution, whose
/// sums have 144 terms).
const MIN_CHANNELS: usize = 32;

/// The output tile side m for a 3×3, stride-1, one-group convolution from
/// `c` to `m` channels whose output images are `output` [height, width],
/// or `None` where the direct convolution is the better choice.
///
/// Measured layer by layer against the direct convolution (single-layer
/// models, variants taking turns): m = 4 where an image has 16 tiles of
/// 4×4 (56×56 by 64 channels: 0.66× the time; 28×28 by 128: 0.37×; 14×14
/// by 256: 0.30×, m = 2 0.37×; 13×13 by 48 to 192: 0.65×, m = 2 0.77×),
/// else m = 2 where it has 16 tiles of 2×2 (7×7 by 512: 0.79×, m = 4
/// 0.84× alone and 1.1× inside ResNet50, its 4 tiles too few for the 38 MB
/// of weights of 36 products), else direct.
pub(crate) fn tile_for(output: [usize; 2], c: usize, m: usize) -> Option<usize> {
    let tiles = |side: usize| output[0].div_ceil(side) * output[1].div_ceil(side);
    if c < MIN_CHANNELS || m < MIN_CHANNELS {
        return None;
    }
    [4, 2].into_iter().find(|&side| tiles(side) >= MIN_TILES)
}

/// Whether `tile` is a side that [`tile_for`] may choose.
pub(crate) fn is_tile(tile: usize) -> bool {
    matches!(tile, 2 | 4)
}

/// Whether a convolution with this kernel [height, width], number of
/// groups, strides and dilations (absent: 1) is one Winograd's transforms
/// compute: 3×3, one group, strides and dilations 1 (pads of any size).
pub(crate) fn applies(kernel: [usize; 2], group: usize, strides: Option<&[usize]>, dilations: Option<&[usize]>) -> bool {
    let ones = |v: Option<&[usize]>| v.is_none_or(|v| v.iter().all(|&s| s == 1));
    kernel == [3, 3] && group == 1 && ones(strides) && ones(dilations)
}

/// Values of the packed transformed weights.
pub(crate) fn weights_len(tile: usize, c: usize, m: usize) -> usize {
    (tile + 2) * (tile + 2) * packed_len(c, m)
}

/// Transforms weights `w` [m, c, 3, 3] for output tiles of side `tile`
/// (one of [`is_tile`]'s) and packs them: (tile + 2)² GEMM operands
/// [c × m], one after the other.
pub(crate) fn pack_weights(tile: usize, w: &[f32], c: usize, m: usize) -> Vec<f32> {
    match tile {
        2 => F2.pack(w, c, m),
        _ => F4.pack(w, c, m),
    }
}

/// One evaluation's operands (checked by the caller).
pub(crate) struct Operands<'a> {
    /// [N, H, W, c].
    pub x: &'a [f32],
    /// From [`pack_weights`].
    pub w: &'a [f32],
    pub bias: Option<&'a [f32]>,
    /// Laid out as the output, pixels `stride` apart from channel 0.
    pub residual: Residual<'a>,
    pub g: &'a Geo3,
    pub c: usize,
    pub m: usize,
    pub relu: bool,
    /// The output's channels are `offset..offset + m` of pixels `stride`
    /// values apart.
    pub offset: usize,
    pub stride: usize,
}

/// Computes the convolution into `y` with output tiles of side `tile`.
pub(crate) fn run(tile: usize, o: &Operands, y: &mut [f32], threads: &rayon::ThreadPool) {
    match tile {
        2 => F2.run(o, y, threads),
        _ => F4.run(o, y, threads),
    }
}

/// Scratch values (transformed inputs and products) a block of tile rows
/// may take, unless the weights are larger (2 MB measured 5% faster than
/// 1 MB on ResNet50's 56×56 and 28×28 layers, 4 MB no faster).
const BLOCK_VALUES: usize = 512 * 1024;

/// Values of padding after each tile's transformed input and each
/// product, a precaution: rows of the products' left operands (and the
/// products an output transform reads together) would otherwise often lie
/// a power of two apart (F(2×2, 3×3) on 64 channels: 4 KiB) and share a
/// few L1 cache sets. No difference was measured either way.
const SKEW: usize = 16;

impl<const A: usize, const M: usize> Transform<A, M> {
    fn pack(&self, w: &[f32], c: usize, m: usize) -> Vec<f32> {
        // (G g Gᵀ)[r][s] of the kernel g from input channel p to output
        // channel j, in f64, rounded once.
        let transformed = |(r, s): (usize, usize), p: usize, j: usize| {
            let g = &w[(j * c + p) * 9..][..9];
            let gg = |b: usize| (0..3).map(|a| self.g[r][a] * g[a * 3 + b] as f64).sum::<f64>();
            (0..3).map(|b| gg(b) * self.g[s][b]).sum::<f64>() as f32
        };
        let mut packed = Vec::with_capacity(A * A * packed_len(c, m));
        for xi in 0..A * A {
            packed.extend(pack(c, m, |p, j| transformed((xi / A, xi % A), p, j)));
        }
        packed
    }

    fn run(&self, o: &Operands, y: &mut [f32], threads: &rayon::ThreadPool) {
        let [_, oh, ow] = o.g.output;
        let (th, tw) = (oh.div_ceil(M), ow.div_ceil(M));
        let tile_values = A * A * o.c + SKEW;
        // Every block reads all the weights: blocks at least as large.
        let budget = BLOCK_VALUES.max(A * A * o.c * o.m);
        let rows_per_block = (budget / (tw * (tile_values + A * A * o.m))).clamp(1, th);
        let u_len = packed_len(o.c, o.m);
        let image_values = oh * ow * o.stride;
        for (image, y) in y.chunks_mut(image_values).enumerate() {
            for ty0 in (0..th).step_by(rows_per_block) {
                let tile_rows = rows_per_block.min(th - ty0);
                let tiles = tile_rows * tw;
                let plane = tiles * o.m + SKEW;
                with_columns(tiles * tile_values + A * A * plane, |scratch| {
                    // v: [tile][ξ][c]; products: [ξ][tile][m].
                    let (v, products) = scratch.split_at_mut(tiles * tile_values);
                    let inputs = InputTiles { t: self, o, image, ty0, tw };
                    threads.install(|| v.par_chunks_mut(tile_values).enumerate().for_each(|(t, v)| vectorized(&inputs, t, v)));
                    let v = &*v;
                    threads.install(|| {
                        products.par_chunks_mut(plane).enumerate().for_each(|(xi, product)| {
                            let lhs = Lhs::matrix(&v[xi * o.c..], tile_values, o.c);
                            gemm_packed(tiles, o.m, lhs, &o.w[xi * u_len..][..u_len], product, o.m, Epilogue::default(), None);
                        });
                    });
                    let outputs = OutputTiles { t: self, o, products, plane, image, ty0, tw };
                    let rows = y[ty0 * M * ow * o.stride..].par_chunks_mut(M * ow * o.stride).take(tile_rows);
                    threads.install(|| rows.enumerate().for_each(|(r, out)| vectorized(&outputs, r, out)));
                });
            }
        }
    }

    /// The transformed input of tile (ty, tx) of `image` into `v` [ξ][c].
    #[inline(always)]
    fn input_tile(&self, o: &Operands, image: usize, ty: usize, tx: usize, v: &mut [f32]) {
        let ([_, ih, iw], [_, top, left]) = (o.g.input, o.g.pad);
        let mut at = [[None; A]; A];
        for (i, row) in at.iter_mut().enumerate() {
            let iy = (ty * M + i).checked_sub(top).filter(|&iy| iy < ih);
            for (j, at) in row.iter_mut().enumerate() {
                let ix = (tx * M + j).checked_sub(left).filter(|&ix| ix < iw);
                *at = iy.zip(ix).map(|(iy, ix)| ((image * ih + iy) * iw + ix) * o.c);
            }
        }
        for_channel_blocks(o.c, &mut InputTile { t: self, x: o.x, at: &at, c: o.c, v });
    }

    /// Stores tile `t` of the block, tile (ty, tx) of `image`, into `out`:
    /// the output rows of its row of tiles.
    #[inline(always)]
    fn output_tile(&self, o: &Operands, products: &[f32], plane: usize, (t, image, ty, tx): (usize, usize, usize, usize), out: &mut [f32]) {
        let [_, oh, ow] = o.g.output;
        // Per pixel: where it lies in `out`, and its index in the output.
        let mut pixels = [[None; M]; M];
        for (p, row) in pixels.iter_mut().enumerate() {
            for (q, pixel) in row.iter_mut().enumerate() {
                let (oy, ox) = (ty * M + p, tx * M + q);
                *pixel = (oy < oh && ox < ow).then(|| ((p * ow + ox) * o.stride + o.offset, (image * oh + oy) * ow + ox));
            }
        }
        let at = &products[t * o.m..];
        for_channel_blocks(o.m, &mut OutputTile { t: self, o, products: at, plane, pixels: &pixels, out });
    }
}

/// A block's input transforms, each tile's compiled for the widest
/// vectors (see [`VectorLoop`]): tile `index` into `out` [ξ][c].
struct InputTiles<'a, const A: usize, const M: usize> {
    t: &'a Transform<A, M>,
    o: &'a Operands<'a>,
    image: usize,
    /// The block's first row of tiles, and tiles per row.
    ty0: usize,
    tw: usize,
}

impl<const A: usize, const M: usize> VectorLoop for InputTiles<'_, A, M> {
    #[inline(always)]
    fn run(&self, index: usize, out: &mut [f32]) {
        self.t.input_tile(self.o, self.image, self.ty0 + index / self.tw, index % self.tw, out)
    }
}

/// A block's output transforms: row of tiles `index` into `out`, its rows
/// of output pixels.
struct OutputTiles<'a, const A: usize, const M: usize> {
    t: &'a Transform<A, M>,
    o: &'a Operands<'a>,
    /// Product ξ at `ξ · plane`, [tiles × m] each.
    products: &'a [f32],
    plane: usize,
    image: usize,
    ty0: usize,
    tw: usize,
}

impl<const A: usize, const M: usize> VectorLoop for OutputTiles<'_, A, M> {
    #[inline(always)]
    fn run(&self, index: usize, out: &mut [f32]) {
        for tx in 0..self.tw {
            self.t.output_tile(self.o, self.products, self.plane, (index * self.tw + tx, self.image, self.ty0 + index, tx), out);
        }
    }
}

/// `Σ_i coefficients[i] · vectors[i]`, skipping the zeros (the compiler
/// folds the constant coefficients once the loops are unrolled). The
/// transforms use plain loops, not `std::array::from_fn`, which was not
/// inlined: it ran as baseline code, a tenth of a layer's time.
#[inline(always)]
fn combine<const A: usize, const W: usize>(coefficients: &[f32; A], vectors: &[[f32; W]; A]) -> [f32; W] {
    let mut sum = [0.0; W];
    for (&k, v) in coefficients.iter().zip(vectors) {
        if k != 0.0 {
            sum.iter_mut().zip(v).for_each(|(s, &v)| *s += k * v);
        }
    }
    sum
}

/// A tile's input transform, a block of channels at a time.
struct InputTile<'a, const A: usize, const M: usize> {
    t: &'a Transform<A, M>,
    x: &'a [f32],
    /// Where each input pixel's channels start in `x`; `None` in the pads.
    at: &'a [[Option<usize>; A]; A],
    c: usize,
    v: &'a mut [f32],
}

impl<const A: usize, const M: usize> ChannelBlock for InputTile<'_, A, M> {
    #[inline(always)]
    fn block<const W: usize>(&mut self, first: usize) {
        let bt = &self.t.bt;
        // Bᵀ d, column by column, then (Bᵀ d) B row by row.
        let mut left = [[[0.0; W]; A]; A];
        for j in 0..A {
            let mut column = [[0.0; W]; A];
            for (value, at) in column.iter_mut().zip(self.at) {
                if let Some(at) = at[j] {
                    *value = *block_of::<W>(self.x, at + first);
                }
            }
            for (r, row) in left.iter_mut().enumerate() {
                row[j] = combine(&bt[r], &column);
            }
        }
        for (r, row) in left.iter().enumerate() {
            for (s, coefficients) in bt.iter().enumerate() {
                self.v[(r * A + s) * self.c + first..][..W].copy_from_slice(&combine(coefficients, row));
            }
        }
    }
}

/// A tile's output transform, epilogue and store, a block of channels at
/// a time.
struct OutputTile<'a, const A: usize, const M: usize> {
    t: &'a Transform<A, M>,
    o: &'a Operands<'a>,
    /// Product ξ of the tile at `ξ · plane`.
    products: &'a [f32],
    plane: usize,
    pixels: &'a [[Option<(usize, usize)>; M]; M],
    out: &'a mut [f32],
}

impl<const A: usize, const M: usize> ChannelBlock for OutputTile<'_, A, M> {
    #[inline(always)]
    fn block<const W: usize>(&mut self, first: usize) {
        let (at, o) = (&self.t.at, self.o);
        // Aᵀ P, column by column, then (Aᵀ P) A row by row.
        let mut left = [[[0.0; W]; A]; M];
        for s in 0..A {
            let mut column = [[0.0; W]; A];
            for (r, value) in column.iter_mut().enumerate() {
                *value = *block_of::<W>(self.products, (r * A + s) * self.plane + first);
            }
            for (p, row) in left.iter_mut().enumerate() {
                row[s] = combine(&at[p], &column);
            }
        }
        let bias = o.bias.map(|b| block_of::<W>(b, first));
        for (p, row) in left.iter().enumerate() {
            for (q, coefficients) in at.iter().enumerate() {
                let Some((pos, pixel)) = self.pixels[p][q] else { continue };
                let mut value = combine(coefficients, row);
                if let Some(bias) = bias {
                    value.iter_mut().zip(bias).for_each(|(v, &b)| *v += b);
                }
                let residual = match o.residual {
                    Residual::None => None,
                    Residual::Matrix(r) => Some(block_of::<W>(r, pixel * o.stride + first)),
                    Residual::InC => Some(block_of::<W>(self.out, pos + first)),
                };
                if let Some(residual) = residual {
                    value.iter_mut().zip(residual).for_each(|(v, &r)| *v += r);
                }
                if o.relu {
                    value.iter_mut().for_each(|v| *v = v.max(0.0));
                }
                self.out[pos + first..][..W].copy_from_slice(&value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{pool, values};

    /// A case: `images` images of `h × w` by `c` channels to `m`, pads
    /// (top, left, bottom, right).
    struct Case {
        images: usize,
        size: [usize; 2],
        c: usize,
        m: usize,
        pads: [usize; 4],
    }

    impl Case {
        fn geometry(&self) -> Geo3 {
            let [h, w] = self.size;
            let [top, left, bottom, right] = self.pads;
            Geo3 { input: [1, h, w], kernel: [1, 3, 3], stride: [1; 3], dilation: [1; 3], pad: [0, top, left], output: [1, h + top + bottom - 2, w + left + right - 2] }
        }

        /// The convolution in f64, straight from its definition, with the
        /// bias, an optional residual and Relu: [N, OH, OW, m].
        fn reference(&self, x: &[f32], w: &[f32], bias: &[f32], residual: Option<&[f32]>, relu: bool) -> Vec<f64> {
            let g = self.geometry();
            let ([_, ih, iw], [_, oh, ow], [_, top, left]) = (g.input, g.output, g.pad);
            let (c, m) = (self.c, self.m);
            let mut y = Vec::new();
            for n in 0..self.images {
                for oy in 0..oh {
                    for ox in 0..ow {
                        for j in 0..m {
                            let mut sum = bias[j] as f64;
                            for (ky, kx) in (0..3).flat_map(|ky| (0..3).map(move |kx| (ky, kx))) {
                                let (Some(iy), Some(ix)) = ((oy + ky).checked_sub(top).filter(|&v| v < ih), (ox + kx).checked_sub(left).filter(|&v| v < iw)) else { continue };
                                for p in 0..c {
                                    sum += x[((n * ih + iy) * iw + ix) * c + p] as f64 * w[((j * c + p) * 3 + ky) * 3 + kx] as f64;
                                }
                            }
                            if let Some(r) = residual {
                                sum += r[y.len()] as f64;
                            }
                            y.push(if relu { sum.max(0.0) } else { sum });
                        }
                    }
                }
            }
            y
        }
    }

    fn check(case: &Case, tile: usize, relu: bool, residual: Option<bool>, threads: usize) {
        let g = case.geometry();
        let ([_, h, w], [_, oh, ow]) = (g.input, g.output);
        let (c, m) = (case.c, case.m);
        let x = values(case.images * h * w * c, 1);
        let weights = values(m * c * 9, 2);
        let bias = values(m, 3);
        let outputs = case.images * oh * ow * m;
        let shortcut = values(outputs, 4);
        let expected = case.reference(&x, &weights, &bias, residual.map(|_| &shortcut[..]), relu);
        let packed = pack_weights(tile, &weights, c, m);
        assert_eq!(packed.len(), weights_len(tile, c, m));
        // In C: the output starts as the shortcut; otherwise as garbage.
        let mut y = if residual == Some(true) { shortcut.clone() } else { vec![f32::NAN; outputs] };
        let residual = match residual {
            None => Residual::None,
            Some(false) => Residual::Matrix(&shortcut),
            Some(true) => Residual::InC,
        };
        let operands = Operands { x: &x, w: &packed, bias: Some(&bias), residual, g: &g, c, m, relu, offset: 0, stride: m };
        run(tile, &operands, &mut y, &pool(threads));
        // Each output sums 9·c products of values in [-1, 1).
        let tolerance = 1e-5 * (9 * c) as f64;
        for (i, (&got, &want)) in y.iter().zip(&expected).enumerate() {
            assert!((got as f64 - want).abs() <= tolerance, "tile {tile}, {:?} → {oh}×{ow}, pads {:?}, element {i}: {got} vs {want}", case.size, case.pads);
        }
    }

    #[test]
    fn matches_the_direct_convolution() {
        let cases = [
            // Whole tiles, "same" pads.
            Case { images: 1, size: [8, 8], c: 3, m: 5, pads: [1; 4] },
            // Partial tiles on the bottom and right, no pads, two images.
            Case { images: 2, size: [9, 11], c: 4, m: 7, pads: [0; 4] },
            // Uneven pads; channels past a block of 32 (40 = 32 + 8).
            Case { images: 1, size: [7, 10], c: 40, m: 37, pads: [2, 0, 1, 2] },
            // Several blocks of tile rows (BLOCK_VALUES).
            Case { images: 1, size: [130, 62], c: 64, m: 33, pads: [1; 4] },
            // An empty input whose pads alone make an output row.
            Case { images: 1, size: [0, 3], c: 3, m: 4, pads: [2, 1, 1, 1] },
        ];
        for case in &cases {
            for tile in [2, 4] {
                check(case, tile, false, None, 1);
                check(case, tile, true, Some(false), 2);
                check(case, tile, true, Some(true), 2);
            }
        }
    }

    #[test]
    fn writes_a_slice_of_a_wider_output() {
        let case = Case { images: 1, size: [6, 6], c: 5, m: 3, pads: [1; 4] };
        let g = case.geometry();
        let (x, weights, bias) = (values(6 * 6 * 5, 5), values(3 * 5 * 9, 6), values(3, 7));
        let expected = case.reference(&x, &weights, &bias, None, false);
        for tile in [2, 4] {
            let packed = pack_weights(tile, &weights, 5, 3);
            // Channels 2..5 of pixels 8 values apart; the rest untouched.
            let mut y = vec![-7.0; 6 * 6 * 8];
            let operands = Operands { x: &x, w: &packed, bias: Some(&bias), residual: Residual::None, g: &g, c: 5, m: 3, relu: false, offset: 2, stride: 8 };
            run(tile, &operands, &mut y, &pool(2));
            for (pixel, values) in y.chunks(8).enumerate() {
                assert!(values[..2].iter().chain(&values[5..]).all(|&v| v == -7.0), "tile {tile}: pixel {pixel} written outside its channels");
                for (j, &v) in values[2..5].iter().enumerate() {
                    assert!((v as f64 - expected[pixel * 3 + j]).abs() < 1e-4, "tile {tile}: pixel {pixel} channel {j}: {v} vs {}", expected[pixel * 3 + j]);
                }
            }
        }
    }

    #[test]
    fn tiles_follow_image_size_and_weights() {
        // ResNet50's stages and SqueezeNet's fire modules.
        assert_eq!(tile_for([56, 56], 64, 64), Some(4));
        assert_eq!(tile_for([28, 28], 128, 128), Some(4));
        assert_eq!(tile_for([14, 14], 256, 256), Some(4));
        assert_eq!(tile_for([7, 7], 512, 512), Some(2));
        assert_eq!(tile_for([13, 13], 48, 192), Some(4));
        assert_eq!(tile_for([6, 6], 512, 512), None);
        assert_eq!(tile_for([55, 55], 16, 64), None);
    }
}
