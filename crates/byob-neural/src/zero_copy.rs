//! The model's tensors lent to the engine as BYOB memory: the input, so
//! that the engine mixes each quantum straight into the tensor the first
//! kernel reads, and an audio output's two tensors, so that it reads each
//! quantum where the model wrote it. The crate's only `unsafe` code.

use byob_audio::worklet::{ByobMemory, REGION_ALIGNMENT};

/// A [`ByobMemory`] over `values`, or `None` when they are not aligned as
/// registration requires (the node then copies).
///
/// The caller (the node) must keep the promise of
/// [`ByobMemory::external`] for as long as the memory is registered: the
/// values stay where they are (the tensor is never resized: the run handle
/// fixed its shape, and moving a tensor moves its header, not its values)
/// and are touched only while the engine is not rendering into them.
pub(crate) fn lend(values: &mut [f32]) -> Option<ByobMemory> {
    let base = values.as_mut_ptr().cast::<u8>();
    if !(base as usize).is_multiple_of(REGION_ALIGNMENT) {
        return None;
    }
    // SAFETY: `values` is a live allocation of `len` bytes of plain f32,
    // 16-byte aligned (checked). It is a tensor's storage (the input, a
    // worker job's input, or one of an audio output's two), which the node
    // owns beside this memory (dropped together) and which never moves or
    // shrinks: the shapes are fixed, so nothing resizes it, and exchanging
    // tensors moves their headers, not their values. The node and the
    // model's kernels touch it only in `process` (or, for a worker job's
    // input, on the inference thread while no region of it is lent), where
    // the engine is not rendering, and never in the region lent for the
    // quantum: the context shift writes below the next input region, the
    // kernels only read the input, and an inference writes the output
    // tensor that is not the one being played.
    Some(unsafe { ByobMemory::external(base, std::mem::size_of_val(values)) })
}
