//! The store state shared by every ABI, and the two places where the host
//! reaches across the WebAssembly boundary without Rust's help: the
//! instance's linear memory lent to the engine, and the registrar that the
//! `byob.register_buffer` import forwards to during a call into the module.
//! This is the crate's only `unsafe` code.

use byob_audio::worklet::{ByobMemory, RegisterBuffers};
use std::time::Duration;
use wasmtime::{AsContext, AsContextMut, Memory, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};

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
    /// PARAM regions (byob ABI kind 4): byte range per parameter.
    pub param_regions: Vec<Option<std::ops::Range<usize>>>,
    /// The audio regions registered so far, by (kind bits, port): a PARAM
    /// region may not overlap them, nor they it.
    pub audio_regions: Vec<((u32, usize), std::ops::Range<usize>)>,
    registrar: Option<RegistrarPtr>,
    /// This thread's CPU time when the current call first ran past its
    /// wall-clock deadline (see [`install_watchdog`]).
    overrun_since: Option<Duration>,
    /// wasmtime's limiter: the instance's memory bound.
    pub store_limits: StoreLimits,
}

impl HostState {
    pub fn new(sample_rate: f32, params: usize, max_memory_bytes: usize) -> Self {
        let store_limits = StoreLimitsBuilder::new().memory_size(max_memory_bytes).instances(1).build();
        Self { sample_rate, wasm_memory: None, lent: None, param_regions: vec![None; params], audio_regions: Vec::new(), registrar: None, overrun_since: None, store_limits }
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
        // Nothing moved (the usual case): nothing to tell the engine.
        Some(lent) if lent.len() == len && lent.base() == base => {}
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

/// Starts the clock for one call into the module: `ticks` epoch ticks of
/// wall-clock time before the watchdog looks at it.
pub(crate) fn arm(store: &mut Store<HostState>, ticks: u64) {
    store.data_mut().overrun_since = None;
    store.set_epoch_deadline(ticks);
}

/// Stops calls that run too long. The epoch deadline is wall-clock time,
/// which also passes while the thread is preempted (a busy machine), so
/// reaching it only starts a second check: the call is interrupted once this
/// thread has spent `limit` more CPU time in it. A call that was merely
/// descheduled finishes; a module that spins is stopped after at most twice
/// the limit. Calls within the limit never get here, so the render path
/// makes no system call.
pub(crate) fn install_watchdog(store: &mut Store<HostState>, limit: Duration) {
    store.epoch_deadline_callback(move |mut context| {
        let now = thread_cpu_time();
        let state = context.data_mut();
        match state.overrun_since {
            None => {
                state.overrun_since = Some(now);
                Ok(UpdateDeadline::Continue(1))
            }
            Some(since) if now.saturating_sub(since) >= limit => {
                wasmtime::bail!("interrupted: the call ran longer than its time limit ({limit:?})")
            }
            Some(_) => Ok(UpdateDeadline::Continue(1)),
        }
    });
}

/// CPU time this thread has used.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is
    // supported on every Linux and BSD this crate targets.
    let result = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if result != 0 {
        // No CPU clock: count the wall-clock overrun as CPU time.
        return Duration::MAX;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}
