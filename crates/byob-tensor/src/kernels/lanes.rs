//! Channels-last loops that fold many inputs into one pixel's channels (a
//! pool's window, a depthwise convolution's taps) keep the running values
//! of a block of channels in registers and store each output once: a fold
//! through the output slice loads and stores it again for every tap
//! (MaxPool 3×3 on ResNet50's 112×112×64 map: 0.19 ms, now 0.06 as in
//! ONNX Runtime; ShuffleNet's depthwise convolutions 5% faster).
//!
//! A block is a fixed-size array, so the compiler keeps it in vector
//! registers: 32 channels, two AVX-512 vectors, two chains of sums for the
//! processor to overlap (blocks of 16 measured slower on depthwise
//! convolutions, whose multiply-adds wait on each other; a block of 64 was
//! kept on the stack and folded there, 3× slower). The channels that do
//! not fill a block go in narrower ones. A pixel's taps are found once
//! ([`PixelTaps`]), not once per block.

use super::window::Geo3;
use std::ops::Range;

/// Work on one block of channels: `W` channels from `first`.
pub(crate) trait ChannelBlock {
    fn block<const W: usize>(&mut self, first: usize);
}

/// Calls `f` on blocks covering channels `0..c`, widest first (32, 16, 8,
/// 4, then single channels).
#[inline(always)]
pub(crate) fn for_channel_blocks(c: usize, f: &mut impl ChannelBlock) {
    let mut first = 0;
    macro_rules! blocks {
        ($($w:literal)*) => {$(
            while c - first >= $w {
                f.block::<$w>(first);
                first += $w;
            }
        )*};
    }
    blocks!(32 16 8 4 1);
}

/// `W` values of `slice` from `first`, as an array.
///
/// # Panics
/// When the slice is too short (a caller's bug).
#[inline(always)]
pub(crate) fn block_of<const W: usize>(slice: &[f32], first: usize) -> &[f32; W] {
    slice[first..first + W].try_into().expect("a block inside the slice")
}

/// The taps of one output pixel of a 2-D window that lie inside a
/// channels-last plane [H, W, C].
pub(crate) struct PixelTaps {
    ys: Range<usize>,
    xs: Range<usize>,
    kw: usize,
    /// Where tap (ys.start, xs.start) reads in the plane.
    first: usize,
    /// Plane values between taps along y and along x.
    step_y: usize,
    step_x: usize,
}

impl PixelTaps {
    /// Output pixel (oy, ox) of `g` (whose axes 1 and 2 are y and x) on
    /// planes of `c` channels.
    #[inline(always)]
    pub fn new(g: &Geo3, c: usize, oy: usize, ox: usize) -> Self {
        let (ys, xs) = (g.taps_along(1, oy), g.taps_along(2, ox));
        let iw = g.input[2];
        let (y0, x0) = (g.position(1, oy, ys.start), g.position(2, ox, xs.start));
        // Empty ranges have no tap to place: start anywhere.
        let first = if ys.is_empty() || xs.is_empty() { 0 } else { (y0 as usize * iw + x0 as usize) * c };
        Self { ys, xs, kw: g.kernel[2], first, step_y: g.dilation[1] * iw * c, step_x: g.dilation[2] * c }
    }

    /// Calls `f(tap, at)` for each tap inside the plane, row by row: `tap`
    /// is its index in the kernel (ky·kw + kx), `at` where its channels
    /// start in the plane.
    #[inline(always)]
    pub fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        let mut row = self.first;
        for ky in self.ys.clone() {
            let mut at = row;
            for kx in self.xs.clone() {
                f(ky * self.kw + kx, at);
                at += self.step_x;
            }
            row += self.step_y;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Seen(Vec<(usize, usize)>);

    impl ChannelBlock for Seen {
        fn block<const W: usize>(&mut self, first: usize) {
            self.0.push((first, W));
        }
    }

    #[test]
    fn blocks_cover_every_channel_once_widest_first() {
        for c in 0..200 {
            let mut seen = Seen(Vec::new());
            for_channel_blocks(c, &mut seen);
            let mut next = 0;
            for &(first, w) in &seen.0 {
                assert_eq!(first, next, "c = {c}: blocks {:?}", seen.0);
                next += w;
            }
            assert_eq!(next, c);
            assert!(seen.0.windows(2).all(|p| p[0].1 >= p[1].1), "c = {c}: {:?}", seen.0);
        }
        let mut seen = Seen(Vec::new());
        for_channel_blocks(93, &mut seen);
        assert_eq!(seen.0, [(0, 32), (32, 32), (64, 16), (80, 8), (88, 4), (92, 1)]);
    }
}
