//! AudioContext: a graph that plays in real time and changes while it
//! plays. The threading model is in docs/live-context.md; in short:
//!
//! * the control side (the thread that owns the context) builds and changes
//!   the [`AudioGraph`]; each change set becomes one batch of
//!   [`Changes`](crate::graph::Changes), built ready to use (processors,
//!   buffers, a rebuilt wiring), and goes to the render side through a
//!   wait-free queue;
//! * the render side (the device's callback, or the null sink's thread)
//!   applies the batches due before each quantum, renders, and sends back
//!   what the batches replaced, and the node events, through two more
//!   queues;
//! * a third thread frees what came back, so that nothing is freed where
//!   audio is rendered.

use super::capture::Capture;
use super::live_render::{LiveRender, LiveShared};
use super::sink::{Feeder, NullOutput, Shared};
use super::RenderCapacityReport;
use crate::block::{AudioBlock, MAX_CHANNELS};
use crate::buffer::AudioBuffer;
use crate::graph::{AudioGraph, Changes, CompileError, NodeEvent, RenderGraph};
use rtrb::RingBuffer;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use super::live_render::AudioContextState;

/// Batches of changes in the queue at once; more wait on the control side.
const QUEUE: usize = 1024;
/// Node events in flight at once.
const EVENT_QUEUE: usize = 4096;
/// How long `close` waits for the render side to take what was sent.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The spec's `latencyHint`: how large the sink's buffers are.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum LatencyHint {
    /// The lowest latency without glitches: 256 frames.
    #[default]
    Interactive,
    /// 1,024 frames.
    Balanced,
    /// 4,096 frames: fewest wake-ups.
    Playback,
    /// A buffer of about this many seconds (128 frames at least).
    Seconds(f64),
}

impl LatencyHint {
    /// Frames per sink callback at `sample_rate`.
    pub fn buffer_frames(self, sample_rate: f32) -> usize {
        match self {
            Self::Interactive => 256,
            Self::Balanced => 1024,
            Self::Playback => 4096,
            Self::Seconds(s) => (s * sample_rate as f64).round().clamp(128.0, 65536.0) as usize,
        }
    }
}

/// The spec's `sinkId`.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum SinkId {
    /// The system's default output device.
    #[default]
    Default,
    /// The output device of this name.
    Device(String),
    /// `{type: "none"}`: renders at real-time pace without a device.
    None,
    /// No sink: the caller renders by calling [`RenderDriver::fill`] from
    /// its own audio callback (a plugin host's, JACK's), at whatever pace
    /// it keeps. Made with [`AudioContext::with_driver`].
    Driven,
}

impl SinkId {
    /// The device asked for by name, if any.
    pub(super) fn device_name(&self) -> Option<&str> {
        match self {
            Self::Device(name) => Some(name),
            _ => None,
        }
    }
}

/// The spec's AudioContextOptions, and what to capture.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioContextOptions {
    pub latency_hint: LatencyHint,
    /// The device's own rate when `None` (48 kHz on the null sink).
    pub sample_rate: Option<f32>,
    pub sink_id: SinkId,
    /// The destination's channels.
    pub number_of_channels: usize,
    /// Keeps the first this many frames rendered (null sink only), for
    /// [`AudioContext::take_capture`]; room for them is taken up front.
    pub capture_frames: usize,
    /// Opens the context `suspended` (the spec's initial state, before the
    /// user agent allows it to start): build the graph, then `resume`, and
    /// it starts from time 0.
    pub start_suspended: bool,
}

impl Default for AudioContextOptions {
    fn default() -> Self {
        Self {
            latency_hint: LatencyHint::default(),
            sample_rate: None,
            sink_id: SinkId::Default,
            number_of_channels: 2,
            capture_frames: 0,
            start_suspended: false,
        }
    }
}

/// Why a live context could not be opened or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioContextError {
    #[error("sampleRate {0} is outside 3000..=768000 Hz (NotSupportedError)")]
    SampleRate(f32),
    #[error("numberOfChannels {0} is out of range 1..={MAX_CHANNELS} (NotSupportedError)")]
    Channels(usize),
    #[error("the context is closed (InvalidStateError)")]
    Closed,
    #[error("capture_frames needs sinkId {{type: \"none\"}}: a device's callback cannot hand its audio back")]
    CaptureNeedsNullSink,
    #[error("SinkId::Driven is opened with AudioContext::with_driver, which hands back the RenderDriver to call")]
    DriverNeeded,
    #[error("this build has no audio output devices (byob-audio's \"realtime\" feature; for the byob CLI: `cargo build --release -p byob-cli --features play`, which needs libasound2-dev on Linux); play on the null sink instead (sinkId {{type: \"none\"}}, `byob play --sink none`)")]
    NoDeviceSupport,
    #[cfg(feature = "realtime")]
    #[error(transparent)]
    Device(#[from] super::PlaybackError),
    #[error(transparent)]
    Compile(#[from] CompileError),
    #[error("the render side took {applied} of {sent} batches of changes within {CLOSE_TIMEOUT:?} (the device stopped calling?)")]
    Stalled { applied: u64, sent: u64 },
}

/// The spec's AudioTimestamp.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AudioTimestamp {
    /// The context time of the sample now leaving the speakers.
    pub context_time: f64,
    /// Milliseconds since the context was created, when it left.
    pub performance_time: f64,
}

/// What the context's free thread has freed: batches of changes the render
/// side finished with, and the nodes released in them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freed {
    pub batches: u64,
    pub nodes: u64,
}

type Listener = Box<dyn FnMut(&NodeEvent, &AudioGraph) + Send>;

/// The spec's AudioContext: plays its graph on a device or the null sink
/// and takes changes while it plays.
///
/// ```
/// use byob_audio::*;
///
/// let options = AudioContextOptions { sink_id: SinkId::None, ..Default::default() };
/// let mut ctx = AudioContext::new(options)?;
/// {
///     let mut graph = ctx.graph();
///     let osc = OscillatorNode::new(&mut graph, OscillatorOptions::default())?;
///     let destination = graph.destination();
///     graph.connect(osc.id(), 0, destination, 0)?;
///     let now = graph.current_time();
///     osc.start(&mut graph, now)?;
///     osc.stop(&mut graph, now + 0.05)?;
/// } // applied at the next quantum, as one change
/// std::thread::sleep(std::time::Duration::from_millis(100));
/// ctx.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AudioContext {
    graph: AudioGraph,
    changes: rtrb::Producer<Changes>,
    /// Batches the queue had no room for yet, oldest first.
    waiting: std::collections::VecDeque<Changes>,
    events: rtrb::Consumer<NodeEvent>,
    listeners: Vec<Listener>,
    sent: u64,
    live: Arc<LiveShared>,
    sink: Arc<Shared>,
    stop: Arc<AtomicBool>,
    free_stop: Arc<AtomicBool>,
    render_thread: Option<JoinHandle<Feeder<LiveRender>>>,
    device_thread: Option<JoinHandle<()>>,
    free_thread: Option<JoinHandle<()>>,
    freed: Arc<(AtomicU64, AtomicU64)>,
    capture: Option<AudioBuffer>,
    driver: Option<RenderDriver>,
    base_latency: f64,
    created: Instant,
}

impl AudioContext {
    /// Opens the sink and starts rendering (the context is `running`,
    /// unless the options say to start `suspended`).
    pub fn new(options: AudioContextOptions) -> Result<Self, AudioContextError> {
        if options.sink_id == SinkId::Driven {
            return Err(AudioContextError::DriverNeeded);
        }
        Self::open(options)
    }

    fn open(options: AudioContextOptions) -> Result<Self, AudioContextError> {
        let channels = options.number_of_channels;
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(AudioContextError::Channels(channels));
        }
        if options.capture_frames > 0 && options.sink_id != SinkId::None {
            return Err(AudioContextError::CaptureNeedsNullSink);
        }
        let sample_rate = match options.sample_rate {
            Some(rate) => rate,
            None => Self::preferred_sample_rate(&options.sink_id, channels)?,
        };
        if !(3000.0..=768000.0).contains(&sample_rate) {
            return Err(AudioContextError::SampleRate(sample_rate));
        }
        let mut graph = AudioGraph::new(sample_rate, channels).map_err(|_| AudioContextError::Channels(channels))?;
        let mut render = RenderGraph::new(sample_rate);
        if let Some(mut first) = graph.commit()? {
            render.apply(&mut first);
        }
        let (changes, changes_in) = RingBuffer::new(QUEUE);
        let (garbage_out, garbage) = RingBuffer::new(QUEUE);
        let (events_out, events) = RingBuffer::new(EVENT_QUEUE);
        let live = Arc::new(LiveShared::default());
        live.set_state(if options.start_suspended { AudioContextState::Suspended } else { AudioContextState::Running });
        let mut silence = AudioBlock::new();
        silence.make_silent(channels);
        let quanta = LiveRender {
            graph: render,
            changes: changes_in,
            garbage: garbage_out,
            events: events_out,
            shared: live.clone(),
            silence,
            capture: Capture::new(channels, options.capture_frames),
        };
        let sink = Arc::new(Shared::default());
        let buffer_frames = options.latency_hint.buffer_frames(sample_rate);
        let feeder = Feeder::new(quanta, usize::MAX, channels, sink.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let free_stop = Arc::new(AtomicBool::new(false));
        let freed: Arc<(AtomicU64, AtomicU64)> = Arc::default();
        let mut ctx = Self {
            graph,
            changes,
            waiting: std::collections::VecDeque::new(),
            events,
            listeners: Vec::new(),
            sent: 0,
            live,
            sink,
            stop: stop.clone(),
            free_stop: free_stop.clone(),
            render_thread: None,
            device_thread: None,
            free_thread: Some(spawn_free_thread(garbage, free_stop, freed.clone())),
            freed,
            capture: None,
            driver: None,
            base_latency: buffer_frames as f64 / sample_rate as f64,
            created: Instant::now(),
        };
        match &options.sink_id {
            SinkId::None => ctx.render_thread = Some(NullOutput::new(channels, buffer_frames).spawn(feeder, stop)),
            SinkId::Driven => ctx.driver = Some(RenderDriver { feeder }),
            device => ctx.device_thread = Some(ctx.open_device(device, feeder, sample_rate, buffer_frames)?),
        }
        Ok(ctx)
    }

    /// A context whose render side the caller drives: the returned
    /// [`RenderDriver`] renders into the caller's buffers, on the caller's
    /// (real-time) thread, with the same guarantees as the built-in sinks.
    pub fn with_driver(mut options: AudioContextOptions) -> Result<(Self, RenderDriver), AudioContextError> {
        options.sink_id = SinkId::Driven;
        options.capture_frames = 0;
        let mut ctx = Self::open(options)?;
        let driver = ctx.driver.take().expect("a driven context makes its driver");
        Ok((ctx, driver))
    }

    /// The rate a context on `sink` runs at when not told: the device's
    /// own, as in the spec; 48 kHz without a device.
    #[cfg(feature = "realtime")]
    fn preferred_sample_rate(sink: &SinkId, channels: usize) -> Result<f32, AudioContextError> {
        match sink {
            SinkId::None | SinkId::Driven => Ok(48000.0),
            device => Ok(super::RealtimeOutput::open_with(device.device_name(), channels, None, None)?.sample_rate()),
        }
    }

    /// The rate a context on `sink` runs at when not told: the device's
    /// own, as in the spec; 48 kHz without a device.
    #[cfg(not(feature = "realtime"))]
    fn preferred_sample_rate(sink: &SinkId, _: usize) -> Result<f32, AudioContextError> {
        match sink {
            SinkId::None | SinkId::Driven => Ok(48000.0),
            _ => Err(AudioContextError::NoDeviceSupport),
        }
    }

    #[cfg(feature = "realtime")]
    fn open_device(&mut self, sink: &SinkId, feeder: Feeder<LiveRender>, sample_rate: f32, buffer_frames: usize) -> Result<JoinHandle<()>, AudioContextError> {
        super::realtime::spawn_device(sink, feeder, sample_rate, buffer_frames, self.stop.clone()).inspect_err(|_| self.stop_threads())
    }

    #[cfg(not(feature = "realtime"))]
    fn open_device(&mut self, _: &SinkId, _: Feeder<LiveRender>, _: f32, _: usize) -> Result<JoinHandle<()>, AudioContextError> {
        self.stop_threads();
        Err(AudioContextError::NoDeviceSupport)
    }

    /// The graph, to change: the changes made through the returned guard
    /// reach the render side together, at the next quantum, when it drops
    /// (or at [`LiveGraph::commit`]). Node events that came back since the
    /// last call are handled first.
    pub fn graph(&mut self) -> LiveGraph<'_> {
        // Releases the events call for travel with the guard's batch.
        self.handle_events();
        let now = self.current_time();
        self.graph.set_current_time(now);
        LiveGraph { ctx: self, at_frame: None }
    }

    /// As [`graph`](Self::graph), for changes that take effect at context
    /// time `time` (rounded up to a quantum boundary), or at the next
    /// quantum if that has passed: how a score is played. Batches must be
    /// sent in time order: a later one waits behind an earlier one.
    pub fn graph_at(&mut self, time: f64) -> LiveGraph<'_> {
        self.handle_events();
        let frame = quantum_at_or_after(time, self.graph.sample_rate());
        self.graph.set_current_time(frame as f64 / self.graph.sample_rate() as f64);
        LiveGraph { ctx: self, at_frame: Some(frame) }
    }

    /// Calls `listener` with every node event (`ended`, `processorerror`,
    /// topology changes), on the control side, when events are handled.
    pub fn add_event_listener(&mut self, listener: impl FnMut(&NodeEvent, &AudioGraph) + Send + 'static) {
        self.listeners.push(Box::new(listener));
    }

    /// Handles the node events that came back: listeners are called, and
    /// ended sources are released (their render state freed).
    pub fn poll_events(&mut self) {
        if self.handle_events() {
            self.send_changes(None);
        }
    }

    /// Takes the events that came back; whether there were any.
    fn handle_events(&mut self) -> bool {
        self.flush();
        let mut any = false;
        while let Ok(event) = self.events.pop() {
            self.graph.handle_event(&event);
            for listener in &mut self.listeners {
                listener(&event, &self.graph);
            }
            any = true;
        }
        any
    }

    fn send_changes(&mut self, at_frame: Option<u64>) {
        if self.state() == AudioContextState::Closed {
            return;
        }
        // A playing graph refuses cycles at `connect`, so commit succeeds.
        let Ok(Some(mut batch)) = self.graph.commit() else { return };
        batch.at_frame = at_frame;
        self.waiting.push_back(batch);
        self.sent += 1;
        self.flush();
    }

    /// Moves waiting batches into the queue, in order, while it has room.
    /// A control side that runs far ahead of the render side (or a device
    /// that stopped calling) never blocks and never loses a change.
    fn flush(&mut self) {
        while let Some(batch) = self.waiting.pop_front() {
            if let Err(rtrb::PushError::Full(back)) = self.changes.push(batch) {
                self.waiting.push_front(back);
                return;
            }
        }
    }

    pub fn state(&self) -> AudioContextState {
        self.live.state()
    }

    /// Resumes rendering after [`suspend`](Self::suspend).
    pub fn resume(&mut self) -> Result<(), AudioContextError> {
        self.set_state(AudioContextState::Running)
    }

    /// Stops the clock: the sink plays silence and `currentTime` holds
    /// (changes are still applied).
    pub fn suspend(&mut self) -> Result<(), AudioContextError> {
        self.set_state(AudioContextState::Suspended)
    }

    fn set_state(&mut self, state: AudioContextState) -> Result<(), AudioContextError> {
        if self.state() == AudioContextState::Closed {
            return Err(AudioContextError::Closed);
        }
        self.live.set_state(state);
        Ok(())
    }

    /// Applies every change sent (whatever time it was given), stops the
    /// sink, frees what the render side gave back and joins every thread.
    /// A second call does nothing.
    pub fn close(&mut self) -> Result<(), AudioContextError> {
        if self.state() == AudioContextState::Closed {
            return Ok(());
        }
        self.poll_events();
        self.live.closing.store(true, Ordering::Release);
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        let mut result = Ok(());
        while self.live.applied.load(Ordering::Acquire) < self.sent {
            self.flush();
            if Instant::now() > deadline {
                result = Err(AudioContextError::Stalled { applied: self.live.applied.load(Ordering::Acquire), sent: self.sent });
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.live.set_state(AudioContextState::Closed);
        self.stop_threads();
        result
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(render) = self.render_thread.take() {
            if let Ok(mut feeder) = render.join() {
                self.capture = feeder.quanta().capture.take(self.graph.sample_rate());
            }
        }
        if let Some(device) = self.device_thread.take() {
            let _ = device.join();
        }
        // The render side has stopped: what it sent back is all there is.
        self.free_stop.store(true, Ordering::Release);
        if let Some(free) = self.free_thread.take() {
            let _ = free.join();
        }
        self.live.set_state(AudioContextState::Closed);
    }

    /// The audio played, once closed, when the context was opened with
    /// `capture_frames`.
    pub fn take_capture(&mut self) -> Option<AudioBuffer> {
        self.capture.take()
    }

    pub fn sample_rate(&self) -> f32 {
        self.graph.sample_rate()
    }

    /// The time of the next quantum the render side will play, in seconds.
    pub fn current_time(&self) -> f64 {
        self.live.frame.load(Ordering::Acquire) as f64 / self.graph.sample_rate() as f64
    }

    /// Latency between the graph and the sink: one sink buffer.
    pub fn base_latency(&self) -> f64 {
        self.base_latency
    }

    /// Latency from the sink to the speakers, as the device reports it (0
    /// on the null sink).
    pub fn output_latency(&self) -> f64 {
        f64::from_bits(self.sink.output_latency.load(Ordering::Relaxed))
    }

    pub fn get_output_timestamp(&self) -> AudioTimestamp {
        AudioTimestamp {
            context_time: (self.current_time() - self.base_latency - self.output_latency()).max(0.0),
            performance_time: self.created.elapsed().as_secs_f64() * 1000.0,
        }
    }

    /// The spec's `renderCapacity`: the last complete update interval (1 s).
    pub fn render_capacity(&self) -> RenderCapacityReport {
        self.sink.interval.load()
    }

    /// The render capacity since the context started.
    pub fn render_capacity_overall(&self) -> RenderCapacityReport {
        self.sink.whole.load()
    }

    /// Whether the render thread runs at real-time priority (the system
    /// may refuse it; it then runs at normal priority).
    pub fn real_time_priority(&self) -> bool {
        self.sink.real_time.load(Ordering::Relaxed)
    }

    /// What the free thread has freed so far.
    pub fn freed(&self) -> Freed {
        Freed { batches: self.freed.0.load(Ordering::Acquire), nodes: self.freed.1.load(Ordering::Acquire) }
    }

    /// Node events lost because the control side did not take them in
    /// time (the queue holds 4,096).
    pub fn events_dropped(&self) -> u64 {
        self.live.events_dropped.load(Ordering::Relaxed)
    }
}

impl Drop for AudioContext {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The render side of a context made by [`AudioContext::with_driver`].
pub struct RenderDriver {
    feeder: Feeder<LiveRender>,
}

impl RenderDriver {
    /// Renders into `interleaved` (frames × the context's channels): applies
    /// the changes due, renders as many quanta as needed and measures the
    /// render capacity. Allocates nothing, takes no lock, makes no system
    /// call.
    pub fn fill(&mut self, interleaved: &mut [f32]) {
        self.feeder.fill(interleaved);
    }
}

/// Changes to a live context's graph, sent as one batch when dropped.
pub struct LiveGraph<'a> {
    ctx: &'a mut AudioContext,
    at_frame: Option<u64>,
}

impl LiveGraph<'_> {
    /// Sends the changes now (dropping the guard does the same).
    pub fn commit(self) {}
}

impl std::ops::Deref for LiveGraph<'_> {
    type Target = AudioGraph;
    fn deref(&self) -> &AudioGraph {
        &self.ctx.graph
    }
}

impl std::ops::DerefMut for LiveGraph<'_> {
    fn deref_mut(&mut self) -> &mut AudioGraph {
        &mut self.ctx.graph
    }
}

impl Drop for LiveGraph<'_> {
    fn drop(&mut self) {
        self.ctx.send_changes(self.at_frame);
    }
}

/// The first quantum boundary at or after `time`.
pub fn quantum_at_or_after(time: f64, sample_rate: f32) -> u64 {
    let quantum = crate::block::RENDER_QUANTUM_SIZE as f64;
    let frames = (time.max(0.0) * sample_rate as f64 / quantum - 1e-9).ceil().max(0.0);
    frames as u64 * crate::block::RENDER_QUANTUM_SIZE as u64
}

/// The thread that frees what the render side sent back, until `stop` and
/// the queue is empty.
fn spawn_free_thread(mut garbage: rtrb::Consumer<Changes>, stop: Arc<AtomicBool>, freed: Arc<(AtomicU64, AtomicU64)>) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("byob-free".into())
        .spawn(move || loop {
            let stopping = stop.load(Ordering::Acquire);
            while let Ok(batch) = garbage.pop() {
                let nodes = batch.released() as u64;
                drop(batch);
                freed.1.fetch_add(nodes, Ordering::Release);
                freed.0.fetch_add(1, Ordering::Release);
            }
            if stopping {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        })
        .expect("the system starts a thread")
}
