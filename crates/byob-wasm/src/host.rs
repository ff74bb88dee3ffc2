//! The store state shared by every ABI, and the two places where the host
//! reaches across the WebAssembly boundary without Rust's help: the
//! instance's linear memory lent to the engine, and the registrar that the
//! `byob.register_buffer` import forwards to during a call into the module.
//! This is the crate's only `unsafe` code.

use byob_audio::worklet::{ByobMemory, RegisterBuffers};
use wasmtime::{AsContext, AsContextMut, Memory};

/// A registrar borrowed for the duration of one call into the module.
struct RegistrarPtr(*mut (dyn RegisterBuffers + 'static));

// SAFETY: the pointer is only set while a call into the module runs on the
// thread that owns the borrowed registrar (see `with_registrar`), and it is
// cleared before that call returns; a store moved to another thread never
// carries a live pointer.
unsafe impl Send for RegistrarPtr {}

/// What the host keeps in a module's store.
pub(crate) struct HostState {
    pub sample_rate: f32,
    /// The instance's exported memory, once instantiated.
    pub wasm_memory: Option<Memory>,
    /// The same memory as the engine sees it (regions are lent from it).
    pub lent: Option<ByobMemory>,
    /// PARAM regions (byob ABI kind 4): byte offset per parameter.
    pub param_regions: Vec<Option<usize>>,
    registrar: Option<RegistrarPtr>,
}

impl HostState {
    pub fn new(sample_rate: f32, params: usize) -> Self {
        Self { sample_rate, wasm_memory: None, lent: None, param_regions: vec![None; params], registrar: None }
    }

    /// The lent memory and the registrar of the call in progress, if any.
    pub fn memory_and_registrar(&mut self) -> (Option<&ByobMemory>, Option<&mut dyn RegisterBuffers>) {
        let registrar = self.registrar.as_ref().map(|p| p.0);
        // SAFETY: the pointer was made from a `&mut dyn RegisterBuffers` that
        // `with_registrar` holds borrowed for the whole call into the module,
        // during which this is the only path to it; the returned borrow is
        // tied to `&mut self`, so it cannot outlive the call either.
        let registrar = registrar.map(|ptr| unsafe { &mut *ptr });
        (self.lent.as_ref(), registrar)
    }
}

/// Clears the registrar slot when a call ends, however it ends.
struct ClearRegistrar<'a, T: AsContextMut<Data = HostState>>(&'a mut T);

impl<T: AsContextMut<Data = HostState>> Drop for ClearRegistrar<'_, T> {
    fn drop(&mut self) {
        self.0.as_context_mut().data_mut().registrar = None;
    }
}

/// Runs `call` (a call into the module) with `registrar` reachable from the
/// `byob.register_buffer` import.
pub(crate) fn with_registrar<T: AsContextMut<Data = HostState>, R>(
    store: &mut T,
    registrar: &mut dyn RegisterBuffers,
    call: impl FnOnce(&mut T) -> R,
) -> R {
    let short: *mut (dyn RegisterBuffers + '_) = registrar;
    // SAFETY: only the trait object's lifetime bound is erased. The pointer
    // is stored for the duration of `call` and cleared by the guard before
    // this function returns (also on unwinding), while `registrar` stays
    // mutably borrowed by this function, so it is never used after the
    // borrow ends.
    let erased: *mut (dyn RegisterBuffers + 'static) = unsafe { std::mem::transmute(short) };
    store.as_context_mut().data_mut().registrar = Some(RegistrarPtr(erased));
    let guard = ClearRegistrar(store);
    call(&mut *guard.0)
}

/// Lends the instance's memory to the engine (after instantiation) or tells
/// the engine where it is now (after any call that may have grown it).
pub(crate) fn sync_memory(store: &mut impl AsContextMut<Data = HostState>) {
    let Some(memory) = store.as_context().data().wasm_memory else { return };
    let base = memory.data_ptr(store.as_context());
    let len = memory.data_size(store.as_context());
    let mut context = store.as_context_mut();
    let state = context.data_mut();
    match &state.lent {
        // SAFETY: wasmtime keeps a memory's bytes valid and page-aligned at
        // `data_ptr` for `data_size` bytes until the next call that can grow
        // it; we re-sync after every such call, before the engine touches a
        // region again, and the store (which owns the memory) lives in the
        // processor, which outlives the engine's use of its regions. A
        // WebAssembly memory never shrinks.
        Some(lent) => unsafe { lent.refresh(base, len) },
        // SAFETY: as above, for the first sync.
        None => state.lent = Some(unsafe { ByobMemory::external(base, len) }),
    }
}
