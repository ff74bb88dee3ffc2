//! What a neural node reports while it renders, shared with its owner.

use crate::options::Mode;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Counters of one neural node, updated by the render thread.
#[derive(Debug)]
pub struct NeuralStatus {
    pub(crate) model: PathBuf,
    pub(crate) mode: Mode,
    pub(crate) latency_seconds: f64,
    pub(crate) zero_copy: bool,
    pub(crate) gpu_steps: Option<(usize, usize)>,
    pub(crate) inferences: AtomicU64,
    pub(crate) deadlines_missed: AtomicU64,
    pub(crate) bytes_copied_in: AtomicU64,
    pub(crate) bytes_copied_out: AtomicU64,
    pub(crate) context_bytes_moved: AtomicU64,
    pub(crate) error: OnceLock<String>,
}

impl NeuralStatus {
    pub(crate) fn new(model: PathBuf, mode: Mode, latency_seconds: f64, zero_copy: bool, gpu_steps: Option<(usize, usize)>) -> Self {
        Self {
            model,
            mode,
            latency_seconds,
            zero_copy,
            gpu_steps,
            inferences: AtomicU64::new(0),
            deadlines_missed: AtomicU64::new(0),
            bytes_copied_in: AtomicU64::new(0),
            bytes_copied_out: AtomicU64::new(0),
            context_bytes_moved: AtomicU64::new(0),
            error: OnceLock::new(),
        }
    }

    pub fn model(&self) -> &std::path::Path {
        &self.model
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// From an input sample to the first output sample its frame's
    /// inference affects, in seconds: one frame, plus the resamplers'
    /// delay and up to a quantum when the model's rate is not the
    /// context's.
    pub fn latency_seconds(&self) -> f64 {
        self.latency_seconds
    }

    /// Whether the engine mixes the input straight into the model's input
    /// tensor (no copy between them).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// With ep "webgpu": how many of the model's steps run on the GPU, of
    /// how many (the CPU runs the rest).
    pub fn gpu_steps(&self) -> Option<(usize, usize)> {
        self.gpu_steps
    }

    pub fn inferences(&self) -> u64 {
        self.inferences.load(Ordering::Relaxed)
    }

    /// Inferences whose result came too late (mode "worker").
    pub fn deadlines_missed(&self) -> u64 {
        self.deadlines_missed.load(Ordering::Relaxed)
    }

    /// Bytes copied from the engine's mix into the model's input (0 on the
    /// zero-copy path; resampling and multichannel layouts copy).
    pub fn bytes_copied_in(&self) -> u64 {
        self.bytes_copied_in.load(Ordering::Relaxed)
    }

    /// Bytes copied from the model's output to the node's output (audio
    /// outputs; a control value is written, not copied).
    pub fn bytes_copied_out(&self) -> u64 {
        self.bytes_copied_out.load(Ordering::Relaxed)
    }

    /// Bytes moved inside the input tensor to carry each frame's last
    /// `context` samples to the front for the next one (unavoidable: the
    /// model reads one contiguous input).
    pub fn context_bytes_moved(&self) -> u64 {
        self.context_bytes_moved.load(Ordering::Relaxed)
    }

    /// Why the node stopped, if it did (its processorerror).
    pub fn error(&self) -> Option<&str> {
        self.error.get().map(String::as_str)
    }

    pub(crate) fn add(counter: &AtomicU64, bytes: usize) {
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}
