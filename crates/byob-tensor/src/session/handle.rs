//! A run handle: one caller's own run state, for callers that run the same
//! shapes again and again on a thread that must not wait — an audio
//! render thread, typically.
//!
//! [`Session::run_with_binding`] shares its run states among threads behind
//! a mutex and hands the steps to the session's thread pool (a wake-up is
//! a system call). A [`RunHandle`] owns its state, laid out once for its
//! inputs' shapes, and runs every kernel single-threaded on the calling
//! thread: no lock, no hand-over, no thread wakes, and no tensor is
//! allocated once the handle is made. (Kernels may still allocate small
//! working arrays of their own; `docs/neural-node.md` lists the state of
//! that work.)

use super::run::RunState;
use super::{IoBinding, RunError, RunStats, Session};
use crate::device::DeviceError;
use crate::kernels::scratch::Scratch;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// Runs a [`Session`] inline with buffers of its own; see the module docs.
pub struct RunHandle {
    session: Arc<Session>,
    state: RunState,
    binding: IoBinding,
    /// A one-thread pool when the session's has more: kernels handed a
    /// one-thread pool compute inline and never enter it.
    own_pool: Option<rayon::ThreadPool>,
    /// The kernels' working arrays, sized by the first run and lent to
    /// whichever thread runs the handle later.
    scratch: Scratch,
}

impl std::fmt::Debug for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHandle").field("binding", &self.binding).finish_non_exhaustive()
    }
}

impl Session {
    /// A handle that runs this session on `binding`'s inputs (their shapes
    /// fixed from now on) and outputs, on the calling thread. Runs once
    /// here, so that every buffer, the outputs' included, exists before
    /// the first [`RunHandle::run`]. Sessions with steps on a device, and
    /// bindings with tensors on one, cannot run inline.
    pub fn run_handle(self: &Arc<Self>, binding: IoBinding) -> Result<RunHandle, RunError> {
        if let Some(step) = self.steps.iter().find(|s| s.op.waits_on_device()) {
            return Err(RunError::NotInline { node: step.name.clone(), provider: step.op_type.clone() });
        }
        self.check_binding(&binding)?;
        let mut state = self.new_state();
        self.lay_out(&mut state, &binding, &mut RunStats::default(), self.limits)?;
        let own_pool = if self.pool.current_num_threads() == 1 {
            None
        } else {
            Some(rayon::ThreadPoolBuilder::new().num_threads(1).build().map_err(|e| RunError::NotInline { node: String::new(), provider: format!("no thread: {e}") })?)
        };
        let mut handle = RunHandle { session: Arc::clone(self), state, binding, own_pool, scratch: Scratch::default() };
        handle.run()?;
        Ok(handle)
    }
}

impl RunHandle {
    /// Runs the model on the bound inputs, into the bound outputs. Fails,
    /// without running, if an input was rebound with another shape.
    pub fn run(&mut self) -> Result<RunStats, RunError> {
        let session = &*self.session;
        session.check_laid_out(&self.state, &self.binding)?;
        if let Some(name) = self.binding.on_device().next() {
            let error = DeviceError::Validation("a run handle runs on the caller's thread, which cannot wait for a device transfer: bind it on the host".into());
            return Err(RunError::Device { value: name.to_string(), error });
        }
        let pool = self.own_pool.as_ref().unwrap_or(&session.pool);
        let mut stats = RunStats::default();
        let (state, binding, scratch) = (&mut self.state, &mut self.binding, &mut self.scratch);
        let result = scratch.lend(|| {
            let run = session.execute(state, binding, &mut stats, pool, session.limits);
            let mut run = std::pin::pin!(run);
            // Every step computes when polled (none waits on a device), so
            // the first poll finishes the run; no waker is ever woken.
            match run.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                Poll::Ready(result) => result,
                Poll::Pending => unreachable!("a run without device steps completes when polled"),
            }
        });
        session.finish(state, binding);
        result.map(|()| stats)
    }

    /// The bound inputs and outputs, to read in place.
    pub fn binding(&self) -> &IoBinding {
        &self.binding
    }

    /// The bound inputs and outputs: write inputs in place, swap a state
    /// output with its input.
    pub fn binding_mut(&mut self) -> &mut IoBinding {
        &mut self.binding
    }

    pub fn session(&self) -> &Session {
        &self.session
    }
}
