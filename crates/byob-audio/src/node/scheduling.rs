//! start()/stop() scheduling shared by the AudioScheduledSourceNodes.

use crate::block::RENDER_QUANTUM_SIZE;
use crate::graph::NodeError;

/// The node types that take `start` and `stop`.
pub const SCHEDULED_SOURCES: [&str; 3] = ["OscillatorNode", "ConstantSourceNode", "AudioBufferSourceNode"];

/// A `start` or `stop` call on a scheduled source, checked on the control
/// side and applied by the source's processor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScheduleCall {
    /// `start(when, offset, duration)`; only AudioBufferSourceNode takes
    /// the last two.
    Start { when: f64, offset: Option<f64>, duration: Option<f64> },
    Stop { when: f64 },
}

/// When a scheduled source plays: from the first frame at or after `start`
/// to the last frame before `stop`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Schedule {
    start: Option<f64>,
    stop: Option<f64>,
    /// Once a source has stopped it stays stopped: a later `stop` with a
    /// later time does not restart it (spec: AudioScheduledSourceNode.stop).
    finished: bool,
}

impl Schedule {
    /// Refuses what the spec refuses: a second `start` or a `stop` before
    /// `start` (InvalidStateError), then times out of range (RangeError).
    pub fn check(&self, call: &ScheduleCall) -> Result<(), NodeError> {
        match *call {
            ScheduleCall::Start { when, offset, duration } => {
                // The spec checks the started state before the arguments.
                if self.start.is_some() {
                    return Err(NodeError::InvalidState { what: "start() may be called only once".into() });
                }
                NodeError::check_range("when", when, 0.0, f64::MAX)?;
                if let Some(offset) = offset {
                    NodeError::check_range("offset", offset, 0.0, f64::MAX)?;
                }
                if let Some(duration) = duration {
                    NodeError::check_range("duration", duration, 0.0, f64::MAX)?;
                }
            }
            ScheduleCall::Stop { when } => {
                if self.start.is_none() {
                    return Err(NodeError::InvalidState { what: "stop() called before start()".into() });
                }
                NodeError::check_range("when", when, 0.0, f64::MAX)?;
            }
        }
        Ok(())
    }

    /// Records a call that [`check`](Self::check) accepted.
    pub fn apply(&mut self, call: &ScheduleCall) {
        match *call {
            ScheduleCall::Start { when, .. } => self.start = Some(when),
            ScheduleCall::Stop { when } => self.stop = Some(when),
        }
    }

    pub fn start_time(&self) -> Option<f64> {
        self.start
    }

    /// As [`playing_range`](Self::playing_range), for the render side: a
    /// source found finished stays finished.
    pub fn advance(&mut self, first_frame: u64, sample_rate: f32) -> (std::ops::Range<usize>, bool) {
        if self.finished {
            return (0..0, true);
        }
        let (range, finished) = self.playing_range(first_frame, sample_rate);
        self.finished = finished;
        (range, finished)
    }

    /// The frames of the quantum beginning at `first_frame` during which the
    /// source plays, as a range of offsets into the quantum (possibly empty),
    /// and whether the source has finished for good.
    pub fn playing_range(&self, first_frame: u64, sample_rate: f32) -> (std::ops::Range<usize>, bool) {
        let Some(start) = self.start else {
            return (0..0, false);
        };
        let sr = sample_rate as f64;
        let start_frame = first_frame_at_or_after(start * sr);
        // A stop at or before the start means the source never plays.
        let stop_frame = self.stop.map_or(f64::INFINITY, |s| first_frame_at_or_after(s * sr).max(start_frame));
        let q0 = first_frame as f64;
        let q1 = q0 + RENDER_QUANTUM_SIZE as f64;
        let from = (start_frame - q0).clamp(0.0, RENDER_QUANTUM_SIZE as f64) as usize;
        let to = (stop_frame - q0).clamp(0.0, RENDER_QUANTUM_SIZE as f64) as usize;
        let finished = stop_frame <= q1;
        (from..to.max(from), finished)
    }
}

/// The first frame whose time is at or after `position` (in frames). A time
/// written as `k / sampleRate` can come back as `k + 1e-12` frames; that is
/// frame `k`, not `k + 1`.
fn first_frame_at_or_after(position: f64) -> f64 {
    let nearest = position.round();
    if (position - nearest).abs() < 1e-6 {
        nearest
    } else {
        position.ceil()
    }
}

/// The start()/stop() methods of the spec's AudioScheduledSourceNode.
pub trait AudioScheduledSourceNode: super::AudioNode {
    fn start(&self, graph: &mut crate::graph::AudioGraph, when: f64) -> Result<(), NodeError> {
        graph.schedule(self.id(), ScheduleCall::Start { when, offset: None, duration: None })
    }

    fn stop(&self, graph: &mut crate::graph::AudioGraph, when: f64) -> Result<(), NodeError> {
        graph.schedule(self.id(), ScheduleCall::Stop { when })
    }
}
