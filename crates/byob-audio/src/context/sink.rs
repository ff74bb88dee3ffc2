//! What every sink's callback does: render quanta into the interleaved
//! buffers a device (or the null sink) asks for, whatever their size, and
//! measure the render capacity; and the null sink itself, the spec's
//! `sinkId: {type: "none"}`, which plays at real-time pace without a device.

use super::capacity::{CapacityCell, RenderCapacityMeter, RenderCapacityReport};
use crate::block::{AudioBlock, RENDER_QUANTUM_SIZE};
use crate::graph::RenderGraph;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the control side looks at a playing sink.
const POLL: Duration = Duration::from_millis(20);

/// The figures a playing sink shares with the control side.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Set once every frame was delivered.
    pub done: AtomicBool,
    /// The last complete update interval's render capacity.
    pub interval: CapacityCell,
    /// The render capacity since playback began.
    pub whole: CapacityCell,
    /// Whether the render thread got real-time priority.
    pub real_time: AtomicBool,
    /// The device's latency from callback to playback, in seconds (f64
    /// bits); 0 on the null sink.
    pub output_latency: AtomicU64,
}

impl Shared {
    /// Asks for real-time (FIFO) scheduling of the calling thread, once,
    /// before it renders; systems that refuse (no privilege, no rtkit
    /// limit) leave it at normal priority, which is recorded.
    pub fn promote_current_thread(&self) {
        use thread_priority::ThreadPriority;
        #[cfg(unix)]
        let promoted = {
            use thread_priority::unix::{set_thread_priority_and_policy, thread_native_id, RealtimeThreadSchedulePolicy, ThreadSchedulePolicy};
            let fifo = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
            set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Max, fifo).is_ok()
        };
        #[cfg(not(unix))]
        let promoted = thread_priority::set_current_thread_priority(ThreadPriority::Max).is_ok();
        self.real_time.store(promoted, Ordering::Relaxed);
    }

    /// Waits until playback is done, handing each new interval's render
    /// capacity to `on_capacity`; `failed` says whether the sink failed
    /// meanwhile (and why).
    pub fn wait<E>(&self, mut on_capacity: impl FnMut(RenderCapacityReport), mut failed: impl FnMut() -> Option<E>) -> Result<RenderCapacityReport, E> {
        let mut reported = 0.0;
        while !self.done.load(Ordering::Acquire) {
            if let Some(e) = failed() {
                return Err(e);
            }
            let latest = self.interval.load();
            if latest.timestamp > reported {
                reported = latest.timestamp;
                on_capacity(latest);
            }
            std::thread::sleep(POLL);
        }
        Ok(self.whole.load())
    }
}

/// What a sink plays: a render graph, or a live context's render side,
/// which applies the control side's changes before each quantum.
pub(super) trait Quanta: Send + 'static {
    fn sample_rate(&self) -> f32;
    fn render_quantum(&mut self) -> &AudioBlock;
}

impl Quanta for RenderGraph {
    fn sample_rate(&self) -> f32 {
        RenderGraph::sample_rate(self)
    }

    fn render_quantum(&mut self) -> &AudioBlock {
        RenderGraph::render_quantum(self)
    }
}

/// A sink callback's state: the graph, the quantum being played out, and
/// the capacity meters. Runs on the render thread: it does not allocate,
/// lock or make system calls (its clock is read through the vDSO).
pub(super) struct Feeder<Q> {
    graph: Q,
    pending: AudioBlock,
    /// Frames of `pending` already delivered.
    read: usize,
    remaining: usize,
    channels: usize,
    interval: RenderCapacityMeter,
    whole: RenderCapacityMeter,
    shared: Arc<Shared>,
}

impl<Q: Quanta> Feeder<Q> {
    /// Plays `frames` frames of `graph` into buffers of `channels`
    /// interleaved channels (a mono graph plays on every channel).
    pub fn new(graph: Q, frames: usize, channels: usize, shared: Arc<Shared>) -> Self {
        let interval = RenderCapacityMeter::new(1.0);
        let whole = RenderCapacityMeter::new(f64::INFINITY);
        Self { graph, pending: AudioBlock::new(), read: RENDER_QUANTUM_SIZE, remaining: frames, channels, interval, whole, shared }
    }

    #[cfg(feature = "realtime")]
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Interleaved channels per frame.
    #[cfg(feature = "realtime")]
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// What it plays.
    pub fn quanta(&mut self) -> &mut Q {
        &mut self.graph
    }

    /// Fills one interleaved buffer; silence once every frame was played.
    pub fn fill(&mut self, data: &mut [f32]) {
        let started = Instant::now();
        for frame in data.chunks_mut(self.channels) {
            if self.remaining == 0 {
                frame.fill(0.0);
                continue;
            }
            if self.read == RENDER_QUANTUM_SIZE {
                self.pending.copy_from(self.graph.render_quantum());
                self.read = 0;
            }
            let channels = self.pending.number_of_channels();
            for (c, sample) in frame.iter_mut().enumerate() {
                *sample = self.pending.channel(c.min(channels - 1))[self.read];
            }
            self.read += 1;
            self.remaining -= 1;
        }
        let render = started.elapsed().as_secs_f64();
        let audio = (data.len() / self.channels) as f64 / self.graph.sample_rate() as f64;
        if let Some(report) = self.interval.record(render, audio) {
            self.shared.interval.store(&report);
        }
        self.whole.record(render, audio);
        self.shared.whole.store(&self.whole.report());
        if self.remaining == 0 {
            self.shared.done.store(true, Ordering::Release);
        }
    }
}

/// The spec's null sink (`sinkId: {type: "none"}`): a thread that asks
/// for buffers at the pace a device would and discards them, for servers,
/// tests and CI, where no device exists.
#[derive(Clone, Copy, Debug)]
pub struct NullOutput {
    channels: usize,
    buffer_frames: usize,
}

impl NullOutput {
    /// A sink of `channels` channels that asks for `buffer_frames` frames
    /// per callback, as a device with that buffer size would.
    pub fn new(channels: usize, buffer_frames: usize) -> Self {
        Self { channels: channels.max(1), buffer_frames: buffer_frames.max(1) }
    }

    /// Plays `frames` frames of `graph` at real-time pace, as
    /// [`RealtimeOutput::play`](super::RealtimeOutput) does on a device:
    /// `on_capacity` gets each second's render capacity, the result is the
    /// whole playback's.
    pub fn play(self, graph: RenderGraph, frames: usize, on_capacity: impl FnMut(RenderCapacityReport)) -> RenderCapacityReport {
        let shared = Arc::new(Shared::default());
        let feeder = Feeder::new(graph, frames, self.channels, shared.clone());
        let render = self.spawn(feeder, Arc::default());
        let whole = shared.wait(on_capacity, || None::<()>).unwrap_or_default();
        let _ = render.join();
        whole
    }

    /// Frames per callback.
    pub fn buffer_frames(&self) -> usize {
        self.buffer_frames
    }

    /// Starts the sink's thread, promoted to real-time priority where the
    /// system allows; it calls `feeder` at real-time pace until every frame
    /// was delivered or `stop` is set.
    pub(super) fn spawn<Q: Quanta>(self, mut feeder: Feeder<Q>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Feeder<Q>> {
        let (channels, buffer_frames) = (self.channels, self.buffer_frames);
        let sample_rate = feeder.graph.sample_rate() as f64;
        std::thread::Builder::new()
            .name("byob-render".into())
            .spawn(move || {
                feeder.shared.promote_current_thread();
                let mut buffer = vec![0.0f32; buffer_frames * channels];
                let start = Instant::now();
                let mut delivered = 0u64;
                while !feeder.shared.done.load(Ordering::Acquire) && !stop.load(Ordering::Acquire) {
                    feeder.fill(&mut buffer);
                    delivered += buffer_frames as u64;
                    // The next callback comes when the device would have
                    // played this buffer: on an absolute schedule, so waits
                    // do not drift.
                    let due = start + Duration::from_secs_f64(delivered as f64 / sample_rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                feeder
            })
            .expect("the system starts a thread")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AudioGraph, AudioNode, AudioScheduledSourceNode, ConstantSourceNode, ConstantSourceOptions};

    fn constant(value: f32) -> RenderGraph {
        let mut graph = AudioGraph::new(48000.0, 1).unwrap();
        let source = ConstantSourceNode::new(&mut graph, ConstantSourceOptions { offset: value }).unwrap();
        let destination = graph.destination();
        graph.connect(source.id(), 0, destination, 0).unwrap();
        source.start(&mut graph, 0.0).unwrap();
        graph.compile().unwrap()
    }

    /// Buffers of 100 frames, a size no quantum boundary matches: every
    /// frame of the 250 asked for arrives once, on both channels, then
    /// silence; filling them allocates nothing.
    #[test]
    fn buffers_of_any_size_get_every_frame_once() {
        let shared = Arc::new(Shared::default());
        let mut feeder = Feeder::new(constant(0.5), 250, 2, shared.clone());
        let mut played = Vec::new();
        for _ in 0..3 {
            let mut buffer = [1.0f32; 200];
            assert_no_alloc::assert_no_alloc(|| feeder.fill(&mut buffer));
            played.extend_from_slice(&buffer);
        }
        assert!(played[..500].iter().all(|&s| s == 0.5) && played[500..].iter().all(|&s| s == 0.0));
        assert!(shared.done.load(Ordering::Acquire));
        assert_eq!(shared.whole.load().callbacks, 3);
    }

    /// A quarter second on the null sink takes a quarter second, not less.
    #[test]
    fn the_null_sink_plays_at_real_time_pace() {
        let started = Instant::now();
        let whole = NullOutput::new(1, 512).play(constant(0.1), 12000, |_| {});
        assert!(started.elapsed() >= Duration::from_millis(230), "{:?}", started.elapsed());
        assert!(whole.callbacks >= 23 && whole.peak_load >= whole.average_load, "{whole:?}");
    }
}
