//! Transposes: any permutation of a tensor's axes, simplified first (size-1
//! axes dropped, axes that stay adjacent merged), then as batched tiled
//! matrix transposes where it reduces to one, or as strided row copies.
//! Behind the Transpose operator, the channels-last fallbacks, a channel
//! shuffle and the stacking of Scan outputs.

use crate::tensor::{Tensor, TensorError};
use rayon::prelude::*;

/// Outputs with more elements than this are transposed in parallel.
const PARALLEL: usize = 32 * 1024;

/// Drops size-1 axes and merges runs of axes that stay adjacent: returns
/// the simplified input dims and permutation.
fn simplify(shape: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let mut renumber = vec![usize::MAX; shape.len()];
    let mut dims = Vec::new();
    for (a, &d) in shape.iter().enumerate() {
        if d != 1 {
            renumber[a] = dims.len();
            dims.push(d);
        }
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for p in perm.iter().filter(|&&p| shape[p] != 1).map(|&p| renumber[p]) {
        match groups.last_mut() {
            Some(g) if g.last() == Some(&(p.wrapping_sub(1))) => g.push(p),
            _ => groups.push(vec![p]),
        }
    }
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| groups[g][0]);
    let merged = order.iter().map(|&g| groups[g].iter().map(|&a| dims[a]).product()).collect();
    let mut position = vec![0; groups.len()];
    for (i, &g) in order.iter().enumerate() {
        position[g] = i;
    }
    (merged, position)
}

const TILE: usize = 32;

/// Output rows `c0..` of the transpose of a `rows x cols` matrix, in tiles.
fn transpose_2d<T: Copy>(src: &[T], rows: usize, cols: usize, dst: &mut [T], c0: usize) {
    // A few rows (a channel shuffle's groups, an image's colours):
    // interleaved, with the row count known to the compiler so that it
    // vectorises.
    match rows {
        2 => return interleave::<T, 2>(src, cols, dst, c0),
        3 => return interleave::<T, 3>(src, cols, dst, c0),
        4 => return interleave::<T, 4>(src, cols, dst, c0),
        8 => return interleave::<T, 8>(src, cols, dst, c0),
        _ => {}
    }
    let c_end = c0 + dst.len() / rows;
    for ct in (c0..c_end).step_by(TILE) {
        for r0 in (0..rows).step_by(TILE) {
            let r1 = (r0 + TILE).min(rows);
            for c in ct..(ct + TILE).min(c_end) {
                let d = &mut dst[(c - c0) * rows + r0..(c - c0) * rows + r1];
                d.iter_mut().enumerate().for_each(|(k, o)| *o = src[(r0 + k) * cols + c]);
            }
        }
    }
}

/// Output rows `c0..` of the transpose of the `R x cols` matrix `src`:
/// its rows interleaved.
fn interleave<T: Copy, const R: usize>(src: &[T], cols: usize, dst: &mut [T], c0: usize) {
    let n = dst.len() / R;
    let rows: [&[T]; R] = std::array::from_fn(|r| &src[r * cols + c0..][..n]);
    for (c, out) in dst.chunks_exact_mut(R).enumerate() {
        for (o, row) in out.iter_mut().zip(rows) {
            *o = row[c];
        }
    }
}

/// Any permutation: rows along the last output axis, copied when
/// contiguous in the input, gathered with a stride otherwise.
fn transpose_strided<T: Copy>(src: &[T], dims: &[usize], perm: &[usize], dst: &mut [T]) {
    let rank = dims.len();
    let strides = super::row_major_strides(dims);
    let od: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let os: Vec<usize> = perm.iter().map(|&p| strides[p]).collect();
    let (len, step) = (od[rank - 1], os[rank - 1]);
    let mut idx = vec![0; rank - 1];
    let mut offset = 0;
    for row in dst.chunks_exact_mut(len) {
        if step == 1 {
            row.copy_from_slice(&src[offset..offset + len]);
        } else {
            row.iter_mut().enumerate().for_each(|(k, o)| *o = src[offset + k * step]);
        }
        let mut d = rank - 1;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            offset += os[d];
            if idx[d] < od[d] {
                break;
            }
            offset -= od[d] * os[d];
            idx[d] = 0;
        }
    }
}

/// Transposes `src` of `shape` by `perm` into `dst` (of the same length).
fn transpose<T: Copy + Send + Sync>(src: &[T], shape: &[usize], perm: &[usize], dst: &mut [T], threads: &rayon::ThreadPool) {
    let (dims, perm) = simplify(shape, perm);
    let n = src.len();
    if n == 0 || perm.iter().enumerate().all(|(i, &p)| i == p) {
        dst.copy_from_slice(src);
        return;
    }
    let rank = dims.len();
    let batched = match perm.as_slice() {
        [1, 0] => Some((1, dims[0], dims[1])),
        [0, 2, 1] => Some((dims[0], dims[1], dims[2])),
        _ => None,
    };
    match batched {
        Some((batches, rows, cols)) => {
            let size = rows * cols;
            let matrices = |d: &mut [T], s: &[T]| d.chunks_exact_mut(size).zip(s.chunks_exact(size)).for_each(|(d, s)| transpose_2d(s, rows, cols, d, 0));
            if n <= PARALLEL {
                matrices(dst, src);
            } else if batches > 1 {
                // Small matrices (a channel shuffle's, one per pixel) go
                // to the threads a few thousand elements at a time.
                let chunk = size * (PARALLEL / 8).div_ceil(size);
                threads.install(|| dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| matrices(d, s)));
            } else {
                // Output rows in chunks of a few thousand values.
                let chunk = (PARALLEL / 8).div_ceil(rows).next_multiple_of(TILE);
                threads.install(|| dst.par_chunks_mut(chunk * rows).enumerate().for_each(|(i, d)| transpose_2d(src, rows, cols, d, i * chunk)));
            }
        }
        None if rank >= 2 => transpose_strided(src, &dims, &perm, dst),
        None => dst.copy_from_slice(src),
    }
}

/// `out` becomes `x` transposed by `perm` (a permutation of its axes).
pub(crate) fn transpose_into(x: &Tensor, perm: &[usize], out: &mut Tensor, threads: &rayon::ThreadPool) -> Result<(), TensorError> {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
    transpose_view(x, x.shape(), perm, &shape, out, threads)
}

/// `out` becomes `x`'s elements viewed in shape `view`, transposed by
/// `perm`, viewed in shape `shape` (same element counts, checked by the
/// caller): a Reshape, Transpose, Reshape chain without its copies.
pub(crate) fn transpose_view(x: &Tensor, view: &[usize], perm: &[usize], shape: &[usize], out: &mut Tensor, threads: &rayon::ThreadPool) -> Result<(), TensorError> {
    let out = out.reset(x.dtype(), shape)?;
    crate::dispatch!(x.dtype(), T => transpose::<T>(T::slice(x.data()).unwrap_or_default(), view, perm, T::slice_mut(out).unwrap_or_default(), threads));
    Ok(())
}
