//! The model's input tensor lent to the engine as BYOB memory, so the
//! engine mixes each quantum straight into the tensor the first kernel
//! reads. The crate's only `unsafe` code.

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
    // 16-byte aligned (checked). It is the input tensor's storage, which
    // the node owns beside this memory (dropped together) and which never
    // moves or shrinks: the run handle's shapes are fixed, so nothing
    // resizes it. The node writes it only in `process`, where the engine
    // is not rendering, and only outside the region lent for the next
    // quantum (the context shift writes below it); the model's kernels
    // read it during `process` too, when the engine has finished mixing.
    Some(unsafe { ByobMemory::external(base, std::mem::size_of_val(values)) })
}
