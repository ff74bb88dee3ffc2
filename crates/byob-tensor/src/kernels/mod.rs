//! The CPU's kernel machinery, apart from the operators' semantics in
//! [`crate::ops`]: what several operators' CPU kernels share and what needs
//! SIMD instructions or careful loop shapes. Nothing here reads a node or
//! its attributes; the operators resolve those and call in.
//!
//! - [`microkernel`]: byob's GEMM (panels, 12×32 tiles, epilogues), the
//!   vector dot product, loops compiled per instruction set; the crate's
//!   only `unsafe` code.
//! - [`winograd`]: Winograd's minimal filtering for 3×3 convolutions.
//! - [`lanes`]: channels-last loops over blocks of channels in registers.
//! - [`window`]: sliding-window geometry resolved for sizes.
//! - [`transpose`]: tiled and strided transposes.
//! - [`index_map`]: the one copy kernel behind Slice, Split, Pad, Tile, Expand.
//! - [`fast_math`]: erf, exp, tanh and sigmoid as straight-line f32 arithmetic.
//! - [`sums`]: f32 runs summed in f64 in independent chains.
//! - [`scratch`]: working arrays kept per thread between calls.

pub(crate) mod fast_math;
pub(crate) mod index_map;
pub(crate) mod lanes;
pub(crate) mod microkernel;
pub(crate) mod scratch;
pub(crate) mod sums;
pub mod transpose;
pub(crate) mod winograd;
pub mod window;

/// Sizes or strides on the stack for ranks up to eight.
pub(crate) type Dims = smallvec::SmallVec<[usize; 8]>;

/// Each axis's element stride in a row-major tensor of `shape` (public:
/// the GPU kernels lay out their index arithmetic the same way).
pub fn row_major_strides(shape: &[usize]) -> smallvec::SmallVec<[usize; 8]> {
    let mut strides: Dims = smallvec::smallvec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    strides
}
