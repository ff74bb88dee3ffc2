//! The live AudioContext against the offline one: a score of thousands of
//! random control operations, applied while the graph plays on the null
//! sink, must give the samples the same score gives offline; `close` loses
//! no change; opening a device that is not there is an error, not a panic.

use byob_audio::graph_file::GraphFile;
use byob_audio::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SAMPLE_RATE: f32 = 24000.0;
const SECONDS: f64 = 3.0;

/// xorshift64*: a fixed, seeded sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Oscillator,
    Constant,
    BufferSource,
    Gain,
    Biquad,
    Panner,
    Delay,
    Merger,
    ByobGain,
    Follower,
}

impl Kind {
    const ALL: [Kind; 10] = [
        Kind::Oscillator,
        Kind::Constant,
        Kind::BufferSource,
        Kind::Gain,
        Kind::Biquad,
        Kind::Panner,
        Kind::Delay,
        Kind::Merger,
        Kind::ByobGain,
        Kind::Follower,
    ];

    fn is_source(self) -> bool {
        matches!(self, Kind::Oscillator | Kind::Constant | Kind::BufferSource)
    }

    fn inputs(self) -> usize {
        match self {
            k if k.is_source() => 0,
            Kind::Merger => 6,
            _ => 1,
        }
    }

    /// Its AudioParams and a range of values for each.
    fn params(self) -> &'static [(&'static str, f64, f64)] {
        match self {
            Kind::Oscillator => &[("frequency", 60.0, 2000.0), ("detune", -300.0, 300.0)],
            Kind::Constant => &[("offset", -0.5, 0.5)],
            Kind::BufferSource => &[("playbackRate", 0.5, 2.0)],
            Kind::Gain | Kind::ByobGain => &[("gain", 0.0, 0.8)],
            Kind::Biquad => &[("frequency", 100.0, 5000.0), ("Q", 0.1, 5.0), ("gain", -6.0, 6.0)],
            Kind::Panner => &[("pan", -1.0, 1.0)],
            Kind::Delay => &[("delayTime", 0.0, 0.05)],
            Kind::Merger | Kind::Follower => &[],
        }
    }
}

struct Node {
    id: String,
    kind: Kind,
    started: bool,
    /// Its handle was dropped: the score never names it again.
    released: bool,
}

/// Generates a valid score: connections only from earlier nodes to later
/// ones (or the destination), so no cycle is ever closed; each operation
/// is one the spec accepts in the state the score has reached.
struct ScoreMaker {
    rng: Rng,
    nodes: Vec<Node>,
    /// (from, to, input) for inputs; to = usize::MAX is the destination.
    inputs: Vec<(usize, usize, usize)>,
    params: Vec<(usize, usize, &'static str)>,
    entries: Vec<Value>,
}

impl ScoreMaker {
    fn node_json(&mut self, kind: Kind, id: &str) -> Value {
        let rng = &mut self.rng;
        match kind {
            Kind::Oscillator => {
                let types = ["sine", "square", "sawtooth", "triangle"];
                json!({"id": id, "type": "OscillatorNode", "options": {"type": types[rng.below(4)], "frequency": rng.range(60.0, 1500.0)}})
            }
            Kind::Constant => json!({"id": id, "type": "ConstantSourceNode", "options": {"offset": rng.range(-0.3, 0.3)}}),
            Kind::BufferSource => {
                let channels: Vec<Vec<f64>> = (0..1 + rng.below(2)).map(|_| (0..200).map(|_| rng.range(-0.5, 0.5)).collect()).collect();
                json!({"id": id, "type": "AudioBufferSourceNode", "options": {"buffer": {"channelData": channels}, "loop": rng.below(2) == 0}})
            }
            Kind::Gain => json!({"id": id, "type": "GainNode", "options": {"gain": rng.range(0.0, 0.8)}}),
            Kind::Biquad => {
                let types = ["lowpass", "highpass", "bandpass", "peaking", "allpass"];
                json!({"id": id, "type": "BiquadFilterNode", "options": {"type": types[rng.below(5)], "frequency": rng.range(200.0, 4000.0)}})
            }
            Kind::Panner => json!({"id": id, "type": "StereoPannerNode", "options": {"pan": rng.range(-1.0, 1.0)}}),
            Kind::Delay => json!({"id": id, "type": "DelayNode", "options": {"maxDelayTime": 0.1, "delayTime": rng.range(0.0, 0.05)}}),
            Kind::Merger => json!({"id": id, "type": "ChannelMergerNode", "options": {"numberOfInputs": 6}}),
            // BYOB: regions for two channels; a wider input is rejected and
            // mixed down to the registered count.
            Kind::ByobGain => json!({"id": id, "type": "AudioWorkletNode", "processor": "gain", "options": {"processorOptions": {"maxChannels": 2}}}),
            // Re-registers a larger region on every topology change.
            Kind::Follower => json!({"id": id, "type": "AudioWorkletNode", "processor": "channel-follower", "options": {"processorOptions": {"maxChannels": 6}}}),
        }
    }

    fn push(&mut self, time: f64, op: Value) {
        let mut entry = op.as_object().expect("an object").clone();
        entry.insert("time".into(), json!(time));
        self.entries.push(Value::Object(entry));
    }

    fn step(&mut self, time: f64) {
        let choice = self.rng.below(100);
        let n = self.nodes.len();
        if choice < 12 || n < 4 {
            let kind = Kind::ALL[self.rng.below(Kind::ALL.len())];
            let id = format!("n{n}");
            let node = self.node_json(kind, &id);
            self.push(time, json!({"create": node}));
            self.nodes.push(Node { id, kind, started: false, released: false });
        } else if choice < 40 {
            let from = self.rng.below(n);
            if self.nodes[from].released {
                return;
            }
            let targets: Vec<usize> = (from + 1..n).filter(|&t| self.nodes[t].kind.inputs() > 0 && !self.nodes[t].released).collect();
            if self.rng.below(4) == 0 || targets.is_empty() {
                self.connect_input(time, from, usize::MAX, 0);
            } else {
                let to = targets[self.rng.below(targets.len())];
                let params = self.nodes[to].kind.params();
                if !params.is_empty() && self.rng.below(4) == 0 {
                    let name = params[self.rng.below(params.len())].0;
                    self.push(time, json!({"connect": {"from": self.nodes[from].id, "to": self.nodes[to].id, "param": name}}));
                    if !self.params.contains(&(from, to, name)) {
                        self.params.push((from, to, name));
                    }
                } else {
                    let input = self.rng.below(self.nodes[to].kind.inputs());
                    self.connect_input(time, from, to, input);
                }
            }
        } else if choice < 52 {
            self.disconnect(time);
        } else if choice < 66 {
            let unstarted: Vec<usize> = (0..n).filter(|&i| self.nodes[i].kind.is_source() && !self.nodes[i].started && !self.nodes[i].released).collect();
            if let Some(&i) = unstarted.get(self.rng.below(unstarted.len().max(1))) {
                self.nodes[i].started = true;
                let when = time + self.rng.range(0.0, 0.05);
                self.push(time, json!({"node": self.nodes[i].id, "start": when}));
            }
        } else if choice < 76 {
            let started: Vec<usize> = (0..n).filter(|&i| self.nodes[i].started && !self.nodes[i].released).collect();
            if let Some(&i) = started.get(self.rng.below(started.len().max(1))) {
                let when = time + self.rng.range(0.0, 0.3);
                self.push(time, json!({"node": self.nodes[i].id, "stop": when}));
            }
        } else if choice < 97 {
            self.automate(time);
        } else {
            let i = self.rng.below(n);
            if !self.nodes[i].released {
                self.nodes[i].released = true;
                self.push(time, json!({"release": self.nodes[i].id}));
            }
        }
    }

    fn connect_input(&mut self, time: f64, from: usize, to: usize, input: usize) {
        let to_id = if to == usize::MAX { "destination".to_string() } else { self.nodes[to].id.clone() };
        self.push(time, json!({"connect": {"from": self.nodes[from].id, "to": to_id, "input": input}}));
        if !self.inputs.contains(&(from, to, input)) {
            self.inputs.push((from, to, input));
        }
    }

    /// One of the spec's disconnect overloads, on connections that exist.
    fn disconnect(&mut self, time: f64) {
        let total = self.inputs.len() + self.params.len();
        if total == 0 {
            return;
        }
        let k = self.rng.below(total);
        let to_id = |s: &Self, to: usize| if to == usize::MAX { "destination".to_string() } else { s.nodes[to].id.clone() };
        if k < self.inputs.len() {
            let (from, to, input) = self.inputs[k];
            if self.nodes[from].released {
                return;
            }
            type Gone = Box<dyn Fn(&(usize, usize, usize)) -> bool>;
            let (op, gone): (Value, Gone) = match self.rng.below(3) {
                0 => (json!({"disconnect": {"from": self.nodes[from].id}}), Box::new(move |e: &(usize, usize, usize)| e.0 == from)),
                1 => (
                    json!({"disconnect": {"from": self.nodes[from].id, "to": to_id(self, to)}}),
                    Box::new(move |e: &(usize, usize, usize)| e.0 == from && e.1 == to),
                ),
                _ => (
                    json!({"disconnect": {"from": self.nodes[from].id, "to": to_id(self, to), "output": 0, "input": input}}),
                    Box::new(move |e: &(usize, usize, usize)| *e == (from, to, input)),
                ),
            };
            let all = matches!(op["disconnect"].as_object().map(|o| o.len()), Some(1));
            self.push(time, op);
            self.inputs.retain(|e| !gone(e));
            if all {
                self.params.retain(|e| e.0 != from);
            }
        } else {
            let (from, to, name) = self.params[k - self.inputs.len()];
            if self.nodes[from].released {
                return;
            }
            self.push(time, json!({"disconnect": {"from": self.nodes[from].id, "to": self.nodes[to].id, "param": name}}));
            self.params.retain(|e| *e != (from, to, name));
        }
    }

    fn automate(&mut self, time: f64) {
        let with_params: Vec<usize> = (0..self.nodes.len()).filter(|&i| !self.nodes[i].kind.params().is_empty() && !self.nodes[i].released).collect();
        let Some(&i) = with_params.get(self.rng.below(with_params.len().max(1))) else { return };
        let params = self.nodes[i].kind.params();
        let (name, lo, hi) = params[self.rng.below(params.len())];
        let rng = &mut self.rng;
        let at = time + rng.range(0.0, 0.2);
        let value = rng.range(lo, hi);
        let call = match rng.below(6) {
            0 => json!(["setValueAtTime", value, at]),
            1 => json!(["linearRampToValueAtTime", value, at]),
            2 if lo > 0.0 => json!(["exponentialRampToValueAtTime", value, at]),
            3 => json!(["setTargetAtTime", value, at, rng.range(0.005, 0.1)]),
            4 => json!(["cancelAndHoldAtTime", at]),
            _ => json!(["cancelScheduledValues", at]),
        };
        self.push(time, json!({"node": self.nodes[i].id, "params": {name: [call]}}));
    }
}

fn random_score(seed: u64, operations: usize) -> Value {
    let mut maker = ScoreMaker { rng: Rng(seed), nodes: Vec::new(), inputs: Vec::new(), params: Vec::new(), entries: Vec::new() };
    let mut time = 0.0;
    while maker.entries.len() < operations {
        maker.step(time);
        time += maker.rng.range(0.0, 2.0 * (SECONDS - 0.2) / operations as f64);
    }
    json!({
        "sampleRate": SAMPLE_RATE,
        "length": (SAMPLE_RATE as f64 * SECONDS) as usize,
        "numberOfChannels": 2,
        "score": maker.entries[..operations],
    })
}

fn offline(file: &GraphFile) -> AudioBuffer {
    let registry = ProcessorRegistry::with_examples();
    let (ctx, mut player) = file.offline_score_context(None, None, &registry, DEFAULT_MEMORY_LIMIT).unwrap();
    ctx.render_changing(|_| {}, |graph, frame| player.apply_due(graph, frame).map_err(|e| e.to_string())).unwrap().buffer
}

/// Plays `file` on the null sink, sending its score ahead of time.
fn live(file: &GraphFile, events: Arc<AtomicU64>) -> (AudioBuffer, AudioContext) {
    let registry = ProcessorRegistry::with_examples();
    let options = AudioContextOptions {
        sample_rate: Some(file.sample_rate()),
        sink_id: SinkId::None,
        number_of_channels: file.number_of_channels(),
        capture_frames: file.length(),
        start_suspended: true,
        ..Default::default()
    };
    let mut ctx = AudioContext::new(options).unwrap();
    ctx.add_event_listener(move |_, _| {
        events.fetch_add(1, Ordering::Relaxed);
    });
    let mut player = file.build_playing(&mut ctx.graph(), &registry).unwrap();
    ctx.resume().unwrap();
    let end = file.length() as f64 / file.sample_rate() as f64;
    while ctx.current_time() < end + 0.05 {
        // A second ahead: robust to a control thread descheduled for a
        // while on a loaded machine; most of the score still arrives while
        // the graph plays.
        player.send_due(&mut ctx, 1.0).unwrap();
        ctx.poll_events();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(player.remaining(), 0);
    ctx.close().unwrap();
    (ctx.take_capture().expect("captured"), ctx)
}

fn assert_same(offline: &AudioBuffer, live: &AudioBuffer) {
    assert_eq!(offline.length(), live.length());
    for c in 0..offline.number_of_channels() {
        let (a, b) = (offline.channel_data(c), live.channel_data(c));
        if let Some(i) = (0..a.len()).find(|&i| a[i] != b[i]) {
            panic!("channel {c} differs first at frame {i} (quantum {}): offline {} live {}", i / 128, a[i], b[i]);
        }
    }
}

#[test]
fn a_random_score_played_live_renders_what_it_renders_offline() {
    let score = random_score(0x5eed_0017, 3000);
    let file = GraphFile::parse(&score.to_string(), Path::new("random-score.json")).unwrap();
    assert_eq!(file.score_len(), 3000);
    let expected = offline(&file);
    let peak = expected.channel_data(0).iter().fold(0.0f32, |m, s| m.max(s.abs()));
    assert!(peak > 0.05, "the score makes sound (peak {peak})");
    let events = Arc::new(AtomicU64::new(0));
    let (played, ctx) = live(&file, events.clone());
    assert_same(&expected, &played);
    // Ended sources came back as events and were freed on the free thread.
    assert!(events.load(Ordering::Relaxed) > 0);
    let freed = ctx.freed();
    assert!(freed.nodes > 0 && freed.batches > 100, "{freed:?}");
    assert_eq!(ctx.state(), AudioContextState::Closed);
}

/// A worklet whose region holds two channels gets a six-channel input
/// while playing: it is offered the change before its next `process`,
/// rejects it, and the engine mixes down to two, as offline.
#[test]
fn a_topology_change_while_playing_is_negotiated_as_offline() {
    let score = json!({
        "sampleRate": SAMPLE_RATE, "length": 12000, "numberOfChannels": 2,
        "nodes": [
            {"id": "w", "type": "AudioWorkletNode", "processor": "gain", "options": {"processorOptions": {"maxChannels": 2}}},
            {"id": "m", "type": "ChannelMergerNode", "options": {"numberOfInputs": 6}},
            {"id": "c", "type": "ConstantSourceNode", "options": {"offset": 0.25}, "start": 0}
        ],
        "connections": [{"from": "w", "to": "destination"}, {"from": "c", "to": "w"}],
        "score": [
            {"time": 0.1, "connect": {"from": "c", "to": "m", "input": 4}},
            {"time": 0.1, "connect": {"from": "m", "to": "w"}},
            {"time": 0.2, "node": "w", "message": {"inPlace": true}},
            {"time": 0.3, "disconnect": {"from": "m"}},
            {"time": 0.4, "node": "w", "message": {"inPlace": false}}
        ]
    });
    let file = GraphFile::parse(&score.to_string(), Path::new("topology.json")).unwrap();
    let expected = offline(&file);
    let events = Arc::new(AtomicU64::new(0));
    let (played, _) = live(&file, events.clone());
    assert_same(&expected, &played);
    // Mono, then six channels (rejected), then mono again.
    assert!(events.load(Ordering::Relaxed) >= 1);
    // The gain passes the constant through whether its regions are two or
    // one (re-registered through the port at 0.2 s and back at 0.4 s).
    let left = played.channel_data(0);
    let at = |t: f64| left[(t * SAMPLE_RATE as f64) as usize];
    for t in [0.05, 0.15, 0.25, 0.35, 0.45] {
        assert!(at(t) > 0.0, "silent at {t} s");
    }
}

/// Batches sent right before `close` are all applied, whatever their time,
/// and every one comes back to be freed; the threads are joined.
#[test]
fn close_applies_every_change_in_flight() {
    let options = AudioContextOptions { sink_id: SinkId::None, sample_rate: Some(SAMPLE_RATE), capture_frames: 4800, ..Default::default() };
    let mut ctx = AudioContext::new(options).unwrap();
    // More than the queue holds: the rest wait on the control side.
    for i in 0..3000 {
        let mut graph = ctx.graph_at(10.0 + i as f64);
        let source = ConstantSourceNode::new(&mut graph, ConstantSourceOptions { offset: 0.001 }).unwrap();
        let destination = graph.destination();
        graph.connect(source.id(), 0, destination, 0).unwrap();
        source.start(&mut graph, 0.0).unwrap();
    }
    ctx.close().unwrap();
    assert_eq!(ctx.state(), AudioContextState::Closed);
    assert_eq!(ctx.freed().batches, 3000);
    assert!(matches!(ctx.resume(), Err(AudioContextError::Closed)));
}

#[test]
fn a_device_that_is_not_there_is_an_error() {
    let options = AudioContextOptions { sink_id: SinkId::Device("no such device".into()), ..Default::default() };
    let error = AudioContext::new(options).err().expect("no device of that name");
    assert!(!error.to_string().is_empty());
    // The default device: present or not, never a panic.
    if let Err(e) = AudioContext::new(AudioContextOptions::default()) {
        assert!(!e.to_string().is_empty());
    }
    let capture = AudioContextOptions { capture_frames: 10, ..Default::default() };
    assert!(matches!(AudioContext::new(capture), Err(AudioContextError::CaptureNeedsNullSink)));
    let driven = AudioContextOptions { sink_id: SinkId::Driven, ..Default::default() };
    assert!(matches!(AudioContext::new(driven), Err(AudioContextError::DriverNeeded)));
}

#[test]
fn time_and_state() {
    let options = AudioContextOptions { sink_id: SinkId::None, latency_hint: LatencyHint::Balanced, ..Default::default() };
    let mut ctx = AudioContext::new(options).unwrap();
    assert_eq!(ctx.state(), AudioContextState::Running);
    assert_eq!(ctx.base_latency(), 1024.0 / 48000.0);
    std::thread::sleep(Duration::from_millis(100));
    let t = ctx.current_time();
    assert!(t > 0.0);
    ctx.suspend().unwrap();
    std::thread::sleep(Duration::from_millis(60));
    let held = ctx.current_time();
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(ctx.current_time(), held, "the clock holds while suspended");
    ctx.resume().unwrap();
    let stamp = ctx.get_output_timestamp();
    assert!(stamp.context_time <= ctx.current_time() && stamp.performance_time > 0.0);
    ctx.close().unwrap();
    ctx.close().unwrap();
}

