//! A live context's render side: before each quantum it applies the batches
//! of changes that are due, sends what they replaced back to be freed, and
//! reports node events; all through wait-free queues (rtrb), so it never
//! allocates, locks or makes a system call.

use super::capture::Capture;
use super::sink::Quanta;
use crate::block::AudioBlock;
use crate::graph::{Changes, NodeEvent, RenderGraph};
use rtrb::{Consumer, Producer};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// The spec's AudioContextState.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioContextState {
    Suspended,
    Running,
    Closed,
}

impl AudioContextState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Suspended,
            1 => Self::Running,
            _ => Self::Closed,
        }
    }
}

/// What the render side shares with the control side, in atomics.
#[derive(Debug, Default)]
pub(super) struct LiveShared {
    state: AtomicU8,
    /// The frame at which the next quantum starts.
    pub frame: AtomicU64,
    /// Batches of changes applied so far.
    pub applied: AtomicU64,
    /// Set by `close`: apply every batch still queued, whatever its time.
    pub closing: AtomicBool,
    /// Events the control side's queue had no room for.
    pub events_dropped: AtomicU64,
}

impl LiveShared {
    pub fn state(&self) -> AudioContextState {
        AudioContextState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, state: AudioContextState) {
        self.state.store(state as u8, Ordering::Release);
    }
}

/// The render side of a live context, run by its sink's callback.
pub(super) struct LiveRender {
    pub graph: RenderGraph,
    pub changes: Consumer<Changes>,
    pub garbage: Producer<Changes>,
    pub events: Producer<NodeEvent>,
    pub shared: std::sync::Arc<LiveShared>,
    /// What a suspended context plays.
    pub silence: AudioBlock,
    pub capture: Capture,
}

impl LiveRender {
    /// Applies the batches due at the coming quantum, as long as the queue
    /// back has room for what they replace.
    fn apply_due(&mut self) {
        let frame = self.graph.current_frame();
        let closing = self.shared.closing.load(Ordering::Acquire);
        let mut applied = 0;
        while !self.garbage.is_full() {
            let due = match self.changes.peek() {
                Ok(next) => closing || next.at_frame().is_none_or(|at| at <= frame),
                Err(_) => false,
            };
            if !due {
                break;
            }
            let Ok(mut batch) = self.changes.pop() else { break };
            self.graph.apply(&mut batch);
            // Room was checked above; the batch now holds what it replaced.
            let _ = self.garbage.push(batch);
            applied += 1;
        }
        if applied > 0 {
            self.shared.applied.fetch_add(applied, Ordering::Release);
        }
    }
}

impl Quanta for LiveRender {
    fn sample_rate(&self) -> f32 {
        self.graph.sample_rate()
    }

    fn render_quantum(&mut self) -> &AudioBlock {
        self.apply_due();
        if self.shared.state() != AudioContextState::Running {
            return &self.silence;
        }
        let Self { graph, events, shared, capture, .. } = self;
        shared.frame.store(graph.current_frame() + crate::block::RENDER_QUANTUM_SIZE as u64, Ordering::Release);
        let block = graph.render_quantum_with(|event| {
            if events.push(event).is_err() {
                shared.events_dropped.fetch_add(1, Ordering::Relaxed);
            }
        });
        capture.record(block);
        block
    }
}
