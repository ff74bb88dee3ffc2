//! Memory that a processor owns and lends to the engine, and the engine's
//! views into it. This is the only module of the crate with `unsafe` code.
//!
//! The ownership argument, in one place:
//!
//! * A [`ByobMemory`] is a heap allocation, 16-byte aligned, zeroed, that
//!   never moves or shrinks while any handle or lease to it exists (the
//!   allocation is reference-counted; the last owner frees it) — or external
//!   memory (a WebAssembly instance's), whose owner promises the same through
//!   the `unsafe` constructor and tells the engine when it moved.
//! * The processor holds the only `ByobMemory` handle (it is not `Clone`).
//!   The handle gives no direct access to the bytes; the processor reaches
//!   them only through [`crate::worklet::ProcessIo`], which hands out slices of
//!   ranges that are *not* lent at that moment, borrowed from the
//!   `ProcessIo` itself.
//! * The engine reaches lent ranges through [`LentRegion`]s, created only
//!   after registration checked that regions lent at the same time do not
//!   overlap (an in-place port's one region serves its input and its
//!   output, which the processor then sees only as the output).
//! * Everything happens on the render thread once a graph renders: the
//!   processor and the engine take turns within one call stack, so a slice
//!   made here never lives across a turn of the other side.

use crate::quantum::{Channel, RENDER_QUANTUM_SIZE};
use std::alloc::Layout;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of one channel of one render quantum (128 frames of f32).
pub const CHANNEL_BYTES: usize = RENDER_QUANTUM_SIZE * 4;

/// The alignment registration requires of a region's offset.
pub const REGION_ALIGNMENT: usize = 16;

struct Allocation {
    /// The base address; for external memory it is refreshed when the owner
    /// may have moved it (a WebAssembly memory that grew).
    ptr: AtomicPtr<u8>,
    len: AtomicUsize,
    /// `Some` when this allocation owns the bytes (and frees them).
    owned: Option<Layout>,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        if let Some(layout) = self.owned {
            // SAFETY: an owned `ptr` came from `alloc_zeroed` with this
            // `layout`, never changes, and is freed once, here, when the
            // last handle or lease goes away.
            unsafe { std::alloc::dealloc(*self.ptr.get_mut(), layout) }
        }
    }
}

impl Allocation {
    fn base(&self) -> *mut u8 {
        self.ptr.load(Ordering::Relaxed)
    }
}

/// Memory that a processor owns and lends to the engine with
/// `register_buffers`.
pub struct ByobMemory {
    allocation: Arc<Allocation>,
    id: u64,
}

impl std::fmt::Debug for ByobMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByobMemory").field("id", &self.id).field("len", &self.len()).finish()
    }
}

impl ByobMemory {
    /// `bytes` of zeroed memory, 16-byte aligned. Allocate it in the
    /// processor's constructor: never on the render thread.
    pub fn new(bytes: usize) -> Self {
        let layout = Layout::from_size_align(bytes.max(REGION_ALIGNMENT), REGION_ALIGNMENT).expect("size fits in isize");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout)).as_ptr();
        Self::with_allocation(Allocation { ptr: AtomicPtr::new(ptr), len: AtomicUsize::new(layout.size()), owned: Some(layout) })
    }

    /// Memory that something else owns, such as a WebAssembly instance's
    /// linear memory, lent through this handle.
    ///
    /// # Safety
    ///
    /// `base..base + len` must be valid for reads and writes of plain bytes,
    /// 16-byte aligned, and stay so — at the address last given to
    /// [`refresh`](Self::refresh) — for as long as any region registered from
    /// this memory is used by the engine (the engine uses regions only while
    /// rendering, while the processor that owns the memory is alive). The
    /// owner must not touch lent regions while the engine renders, except
    /// through the slices `process` hands out. Memory may grow, never shrink.
    pub unsafe fn external(base: *mut u8, len: usize) -> Self {
        assert!((base as usize).is_multiple_of(REGION_ALIGNMENT), "external memory must be 16-byte aligned");
        Self::with_allocation(Allocation { ptr: AtomicPtr::new(base), len: AtomicUsize::new(len), owned: None })
    }

    /// Records where external memory lives now (a WebAssembly memory may
    /// move when it grows) and its new size. Regions registered earlier stay
    /// valid: memory only grows, and they are re-read from the new base.
    ///
    /// # Safety
    ///
    /// As for [`external`](Self::external), for the new `base` and `len`;
    /// `len` is not smaller than before.
    pub unsafe fn refresh(&self, base: *mut u8, len: usize) {
        assert!(self.allocation.owned.is_none(), "only external memory moves");
        assert!(len >= self.len(), "memory never shrinks");
        assert!((base as usize).is_multiple_of(REGION_ALIGNMENT), "external memory must be 16-byte aligned");
        self.allocation.ptr.store(base, Ordering::Relaxed);
        self.allocation.len.store(len, Ordering::Relaxed);
    }

    fn with_allocation(allocation: Allocation) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self { allocation: Arc::new(allocation), id: NEXT_ID.fetch_add(1, Ordering::Relaxed) }
    }

    /// Where it starts now (for external memory, as last refreshed).
    pub fn base(&self) -> *const u8 {
        self.allocation.base()
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.allocation.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Identifies the memory in registrations and errors.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A region of it for the engine; `offset` and `max_len` were checked
    /// against the memory's size and alignment by registration.
    pub(crate) fn lend(&self, offset: usize, max_len: usize) -> LentRegion {
        assert!(offset.is_multiple_of(REGION_ALIGNMENT) && offset + max_len <= self.len(), "registration validates regions");
        LentRegion { allocation: self.allocation.clone(), memory: self.id, offset, max_len }
    }

    /// A slice of `len` floats at `offset` bytes, for the processor, or
    /// `None` if the range is out of bounds, misaligned or lent. Holding the
    /// node's table of lent regions exclusively for as long as the slice
    /// lives is what makes it the only view of that range.
    pub(crate) fn unlent_floats<'a>(
        &'a self,
        registrations: &'a mut impl LendingTable,
        offset: usize,
        len: usize,
    ) -> Option<&'a mut [f32]> {
        if !registrations.available(self, offset, len) {
            return None;
        }
        // SAFETY: `available` checked the range is inside the allocation,
        // 4-byte aligned and overlaps no region lent to the engine (nor one
        // replaced during the current call); the memory is initialised
        // (zeroed, then only f32 bit patterns). The exclusive borrow of the
        // registration table lasts as long as the slice, so neither another
        // `unlent_floats` slice nor a new registration can overlap it meanwhile.
        Some(unsafe { std::slice::from_raw_parts_mut(self.allocation.base().add(offset).cast::<f32>(), len) })
    }
}

/// The table of the regions a processor lent from its memory (the
/// worklet node's registrations): what says which ranges are free for the
/// processor to touch.
pub(crate) trait LendingTable {
    /// Whether `offset..offset + len * 4` of `memory` is in bounds,
    /// f32-aligned and neither lent nor retired during the current call.
    fn available(&self, memory: &ByobMemory, offset: usize, len: usize) -> bool;
}

/// The engine's view of one lent region: planar f32, channel `c` at
/// `offset + c * 512` bytes. It keeps the memory alive.
#[derive(Clone)]
pub(crate) struct LentRegion {
    allocation: Arc<Allocation>,
    memory: u64,
    offset: usize,
    max_len: usize,
}

impl LentRegion {
    /// How many whole channels fit.
    pub fn capacity_channels(&self) -> usize {
        self.max_len / CHANNEL_BYTES
    }

    pub fn memory_id(&self) -> u64 {
        self.memory
    }

    /// The byte range it covers in its memory.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.max_len
    }

    fn base(&self) -> *mut Channel {
        // SAFETY: `offset + max_len <= len` was asserted in `lend` and memory
        // never shrinks, so the pointer stays inside the allocation.
        unsafe { self.allocation.base().add(self.offset).cast::<Channel>() }
    }

    pub fn channels(&self, channels: usize) -> &[Channel] {
        assert!(channels <= self.capacity_channels());
        // SAFETY: in bounds (asserted), aligned (16-byte offset, Channel
        // needs 4), initialised (the memory was zeroed and only ever holds
        // f32 bit patterns); no mutable view of this region is alive while
        // the engine reads it (see the module docs).
        unsafe { std::slice::from_raw_parts(self.base(), channels) }
    }

    pub fn channels_mut(&mut self, channels: usize) -> &mut [Channel] {
        assert!(channels <= self.capacity_channels());
        // SAFETY: as in `channels`; the `&mut self` borrow and the
        // non-overlap of simultaneously lent regions make this the only
        // view of the range while it lives.
        unsafe { std::slice::from_raw_parts_mut(self.base(), channels) }
    }
}
