//! The kernel behind Slice, Split, Pad, Tile and Expand: each output
//! coordinate along each axis maps to an input coordinate on that axis, or
//! to nothing (Pad's constant). One walk over the output copies the mapped
//! elements, a row of the last axis at a time.

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
pub(crate) fn gather_by<T: Copy>(x: &[T], shape: &[usize], out_shape: &[usize], map: impl Fn(usize, usize) -> Option<usize>, fill: T, out: &mut [T]) {
    let strides = row_major_strides(shape);
    let last = shape.len().saturating_sub(1);
    for_each_row(out_shape, out, |index, row| {
        let base = index.iter().enumerate().try_fold(0usize, |acc, (d, &i)| map(d, i).map(|c| acc + c * strides[d]));
        match base {
            None => row.fill(fill),
            Some(base) => row.iter_mut().enumerate().for_each(|(j, o)| *o = map(last, j).map_or(fill, |c| x[base + c])),
        }
    });
    if shape.is_empty() && !out.is_empty() {
        out[0] = x[0];
    }
}

/// Each axis's stride in a row-major tensor of `shape`.
pub(crate) fn row_major_strides(shape: &[usize]) -> super::Dims {
    let mut strides: super::Dims = smallvec::smallvec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
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
}
