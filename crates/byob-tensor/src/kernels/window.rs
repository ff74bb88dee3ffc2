//! Sliding-window geometry resolved for sizes: one spatial axis of a
//! window ([`Axis`], as ONNX's `Window` semantics resolve it in
//! `ops::window`), and three of them as the CPU's convolution, pool and
//! Winograd loops walk them ([`Geo3`]).

/// One spatial axis of a sliding window, resolved for an input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    pub input: usize,
    pub kernel: usize,
    pub stride: usize,
    pub dilation: usize,
    pub pad_begin: usize,
    pub pad_end: usize,
    pub output: usize,
}

impl Axis {
    /// An axis of size 1 that changes nothing, to pad lower ranks.
    pub const UNIT: Axis = Axis { input: 1, kernel: 1, stride: 1, dilation: 1, pad_begin: 0, pad_end: 0, output: 1 };
}

/// A window on three spatial axes (1-D and 2-D padded in front with
/// axes of size 1), so that one set of kernels serves every rank.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Geo3 {
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub dilation: [usize; 3],
    pub pad: [usize; 3],
    pub output: [usize; 3],
}

impl Geo3 {
    /// `None` for more than 3 spatial axes.
    pub fn new(axes: &[Axis]) -> Option<Self> {
        if axes.len() > 3 {
            return None;
        }
        let mut a = [Axis::UNIT; 3];
        a[3 - axes.len()..].copy_from_slice(axes);
        Some(Self {
            input: a.map(|a| a.input),
            kernel: a.map(|a| a.kernel),
            stride: a.map(|a| a.stride),
            dilation: a.map(|a| a.dilation),
            pad: a.map(|a| a.pad_begin),
            output: a.map(|a| a.output),
        })
    }

    pub fn input_size(&self) -> usize {
        self.input.iter().product()
    }

    pub fn kernel_size(&self) -> usize {
        self.kernel.iter().product()
    }

    pub fn output_size(&self) -> usize {
        self.output.iter().product()
    }

    /// Where kernel tap `k` of output `o` reads on `axis` (may be outside).
    #[inline]
    pub fn position(&self, axis: usize, o: usize, k: usize) -> isize {
        (o * self.stride[axis] + k * self.dilation[axis]) as isize - self.pad[axis] as isize
    }

    /// Position of kernel tap `k` of output 0 on `axis`.
    #[inline]
    pub fn offset(&self, axis: usize, k: usize) -> isize {
        self.position(axis, 0, k)
    }

    /// The outputs `lo..hi` on `axis` whose tap at `offset` lies inside the
    /// input: `0 <= o·stride + offset < input`.
    pub fn valid_range(&self, axis: usize, offset: isize) -> (usize, usize) {
        let (out, s, len) = (self.output[axis], self.stride[axis] as isize, self.input[axis] as isize);
        let lo = if offset >= 0 { 0 } else { ((-offset + s - 1) / s) as usize }.min(out);
        let hi = if len - offset <= 0 { 0 } else { ((len - offset + s - 1) / s) as usize }.clamp(lo, out);
        (lo, hi)
    }

    /// For each tap of the innermost axis: its offset and valid output range.
    /// On the stack for kernels up to 256 wide (an STFT's window as a
    /// convolution), 6 KiB.
    pub fn inner_taps(&self) -> smallvec::SmallVec<[(isize, usize, usize); 256]> {
        (0..self.kernel[2])
            .map(|e| {
                let off = self.offset(2, e);
                let (lo, hi) = self.valid_range(2, off);
                (off, lo, hi)
            })
            .collect()
    }

    /// The input row (innermost axis) read by output (z, y) at taps (a, b),
    /// or `None` when it lies in the padding.
    #[inline]
    pub fn input_row(&self, z: usize, y: usize, a: usize, b: usize) -> Option<usize> {
        let iz = self.position(0, z, a);
        let iy = self.position(1, y, b);
        if iz < 0 || iz as usize >= self.input[0] || iy < 0 || iy as usize >= self.input[1] {
            return None;
        }
        Some((iz as usize * self.input[1] + iy as usize) * self.input[2])
    }

    /// The kernel taps along spatial `axis` that output position `o` sees
    /// inside the input: the `k` with 0 ≤ o·stride + k·dilation − pad <
    /// input. For the channels-last kernels, which fold each tap's row of
    /// channels in plain nested loops (an iterator of (tap, pixel) pairs
    /// cost more than the folding on small channel counts).
    #[inline(always)]
    pub fn taps_along(&self, axis: usize, o: usize) -> std::ops::Range<usize> {
        let (start, d, p) = (o * self.stride[axis], self.dilation[axis], self.pad[axis]);
        let lo = p.saturating_sub(start).div_ceil(d);
        let hi = (self.input[axis] + p).saturating_sub(start).div_ceil(d).min(self.kernel[axis]);
        lo.min(hi)..hi
    }

    pub(crate) fn pointwise(&self) -> bool {
        self.kernel == [1; 3] && self.stride == [1; 3] && self.pad == [0; 3] && self.output == self.input
    }
}
