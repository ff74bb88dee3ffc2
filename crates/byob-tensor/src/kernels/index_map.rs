//! The kernel behind Slice, Split, Pad, Tile and Expand: each output
//! coordinate along each axis maps to an input coordinate on that axis, or
//! to nothing (Pad's constant). One walk over the output copies the mapped
//! elements, a row of the last axis at a time.

use super::row_major_strides;
use crate::element::Element;

/// Per axis, for each output coordinate, the input coordinate it reads
/// (`None`: the fill value).
pub(crate) type AxisMaps = Vec<Vec<Option<usize>>>;

/// The output shape of `maps`.
pub(crate) fn mapped_shape(maps: &AxisMaps) -> Vec<usize> {
    maps.iter().map(Vec::len).collect()
}

/// Fills `out` (of shape [`mapped_shape`]) from `x` (of `shape`) through
/// `maps`, which must lie within `shape`.
pub(crate) fn gather_mapped<T: Element>(x: &[T], shape: &[usize], maps: &AxisMaps, fill: T, out: &mut [T]) {
    let out_shape: super::Dims = maps.iter().map(Vec::len).collect();
    gather_by(x, shape, &out_shape, |axis, o| maps[axis][o], fill, out);
}

/// As [`gather_mapped`], each axis's map a function (axis, output
/// coordinate) → input coordinate rather than a list: no allocation, for
/// maps as cheap to compute as to look up (Pad's).
///
/// Trailing axes copied whole (a Pad or Slice of [.., T, 1], of
/// [N, C, H, W] along H) move as blocks, and consecutive input coordinates
/// as one run: a row of single values each copied on its own was most of
/// basic-pitch's Pad and Slice time.
pub(crate) fn gather_by<T: Copy>(x: &[T], shape: &[usize], out_shape: &[usize], map: impl Fn(usize, usize) -> Option<usize>, fill: T, out: &mut [T]) {
    if shape.is_empty() {
        if let (Some(o), Some(&v)) = (out.first_mut(), x.first()) {
            *o = v;
        }
        return;
    }
    let identity = |d: usize| out_shape[d] == shape[d] && (0..shape[d]).all(|j| map(d, j) == Some(j));
    let Some(TrailingBlocks { axis, block, view }) = TrailingBlocks::new(shape, out_shape, identity) else { return };
    let strides = row_major_strides(shape);
    for_each_row(&view, out, |index, row| {
        let Some(base) = index.iter().enumerate().try_fold(0usize, |acc, (d, &i)| map(d, i).map(|c| acc + c * strides[d])) else {
            row.fill(fill);
            return;
        };
        let n = row.len() / block;
        let mut j = 0;
        while j < n {
            let Some(c) = map(axis, j) else {
                row[j * block..][..block].fill(fill);
                j += 1;
                continue;
            };
            let mut run = 1;
            while j + run < n && map(axis, j + run) == Some(c + run) {
                run += 1;
            }
            let (dst, src) = (&mut row[j * block..][..run * block], &x[base + c * strides[axis]..][..run * block]);
            if let ([d], [s]) = (&mut *dst, src) {
                *d = *s;
            } else {
                dst.copy_from_slice(src);
            }
            j += run;
        }
    });
}

/// A copy's output seen with its trailing axes that are copied whole
/// (`whole(d)`, never axis 0) folded into blocks: rows of the view run
/// along `axis`, each of its elements a block of `block` contiguous values
/// in both input and output.
pub(crate) struct TrailingBlocks {
    pub axis: usize,
    pub block: usize,
    /// The output's shape up to `axis`, `axis` counted in values.
    pub view: super::Dims,
}

impl TrailingBlocks {
    /// `None` when the output is empty (a whole axis of size 0). `shape`
    /// must not be empty.
    pub(crate) fn new(shape: &[usize], out_shape: &[usize], whole: impl Fn(usize) -> bool) -> Option<Self> {
        let mut k = shape.len();
        while k > 1 && whole(k - 1) {
            k -= 1;
        }
        let block: usize = shape[k..].iter().product();
        let mut view: super::Dims = out_shape[..k].into();
        view[k - 1] *= block;
        (block > 0).then_some(Self { axis: k - 1, block, view })
    }
}

/// Calls `f(index of the outer axes, row)` for each row (along the last
/// axis) of `out`, of shape `out_shape`, in order. Nothing for rank 0 or
/// an empty `out`.
pub(crate) fn for_each_row<T>(out_shape: &[usize], out: &mut [T], mut f: impl FnMut(&[usize], &mut [T])) {
    let Some((&len, outer)) = out_shape.split_last() else { return };
    if out.is_empty() {
        return;
    }
    let mut index: super::Dims = smallvec::smallvec![0; outer.len()];
    for row in out.chunks_mut(len) {
        f(&index, row);
        for d in (0..outer.len()).rev() {
            index[d] += 1;
            if index[d] < outer[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_select_and_fill() {
        // 2×3 → rows reversed, columns [2, pad, 0].
        let x = [1, 2, 3, 4, 5, 6];
        let maps = vec![vec![Some(1), Some(0)], vec![Some(2), None, Some(0)]];
        let mut out = [0i64; 6];
        gather_mapped(&x, &[2, 3], &maps, -1, &mut out);
        assert_eq!(out, [6, -1, 4, 3, -1, 1]);
        let mut by = [0i64; 6];
        gather_by(&x, &[2, 3], &[2, 3], |axis, o| maps[axis][o], -1, &mut by);
        assert_eq!(by, out);
    }

    /// Trailing axes copied whole move as blocks; the result is the same.
    #[test]
    fn whole_trailing_axes_move_as_blocks() {
        // 3×2×2: axis 0 reversed and padded at the front, axes 1 and 2 whole.
        let x: Vec<i64> = (0..12).collect();
        let maps = vec![vec![None, Some(2), Some(1), Some(0)], vec![Some(0), Some(1)], vec![Some(0), Some(1)]];
        let mut out = [0i64; 16];
        gather_mapped(&x, &[3, 2, 2], &maps, -1, &mut out);
        assert_eq!(out, [-1, -1, -1, -1, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3]);
        // The middle axis sliced, the last whole.
        let maps = vec![vec![Some(0), Some(2)], vec![Some(1)], vec![Some(0), Some(1)]];
        let mut out = [0i64; 4];
        gather_mapped(&x, &[3, 2, 2], &maps, -1, &mut out);
        assert_eq!(out, [2, 3, 10, 11]);
    }
}
