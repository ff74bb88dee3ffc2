//! Faust programs rendered through byob against the same programs compiled
//! by Faust to C++ and run natively.
//!
//! Each program in `tests/faust/` is compiled twice: `faust -lang wasm`
//! (hosted by byob-wasm with `Abi::Faust`, rendered by an
//! OfflineAudioContext) and `faust -a driver.cpp -lang cpp` + `g++` (the
//! native reference; see `tests/faust/driver.cpp`; `-fp` so that C++
//! evaluates sums in the same order as the wasm code). Both get the same
//! sample rate, the same control values (set by full Faust address) and the
//! same input signal, and must agree within 1e-5 per sample. Controls are
//! k-rate on both sides: the driver calls `compute` every 128 frames, as
//! byob renders quanta, and a change "at block B" is applied natively
//! before block B's compute and in byob by `setValueAtTime` just before
//! frame 128 * B.
//!
//! Every sample is bit-identical today (the tolerance is there for libm
//! differences between machines).
//!
//! `faust` and `g++` must be on PATH: without them these tests fail (they
//! do not skip). Build products land in `target/tmp/faust/<program>/`, with
//! the last outputs of each test (`<test>.byob.f32`, `<test>.native.f32`,
//! planar raw f32) for inspection.

use byob_audio::worklet::{AudioWorkletNode, AudioWorkletNodeOptions, ProcessorDefinition};
use byob_audio::{
    AudioBuffer, AudioBufferSourceNode, AudioBufferSourceOptions, AudioNode, AudioParamDescriptor, AudioScheduledSourceNode,
    AutomationRate, OfflineAudioContext,
};
use byob_wasm::{Abi, LoadError, Limits, WasmHost};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

const SR: f32 = 48000.0;
/// One second: 375 render quanta.
const FRAMES: usize = 48000;
const QUANTUM: usize = 128;
const TOLERANCE: f32 = 1e-5;

// ------------------------------------------------------------ compilation

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faust")
}

/// Runs a tool, failing the test with a clear message when it is missing
/// or fails.
fn run_tool(command: &mut Command, what: &str) -> Vec<u8> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!(
            "{what}: cannot run `{program}` ({e}). These tests need Faust (`faust`, with its libraries) and `g++` on PATH; \
             install them (CI does) — the tests fail rather than skip without them."
        )
    });
    if !output.status.success() {
        panic!("{what}: `{command:?}` failed ({}):\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    output.stdout
}

fn check_tools() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        run_tool(Command::new("faust").arg("--version"), "checking for Faust");
        run_tool(Command::new("g++").arg("--version"), "checking for g++");
    });
}

/// A program compiled both ways.
struct Compiled {
    name: &'static str,
    wasm: PathBuf,
    native: PathBuf,
    dir: PathBuf,
}

fn compile(name: &'static str) -> Compiled {
    check_tools();
    let src = source_dir();
    let dsp = src.join(format!("{name}.dsp"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faust").join(name);
    // Built in a folder of this process's own, then renamed into place, so
    // that test processes running at once never see half-written files.
    let build = dir.join(format!("build-{}", std::process::id()));
    std::fs::create_dir_all(&build).expect("creating the build folder");
    let wasm = format!("{name}.wasm");
    run_tool(Command::new("faust").arg("-lang").arg("wasm").arg(&dsp).arg("-o").arg(build.join(&wasm)), &format!("compiling {name}.dsp to wasm"));
    let cpp = format!("{name}.cpp");
    // -fp (full parentheses): without it the C++ backend prints the FIR's
    // `a + (b + c)` as `a + b + c`, which C++ evaluates as `(a + b) + c`,
    // while the wasm backend keeps the tree; float sums then round
    // differently (a sawtooth drifted by 4e-5 within a second, a resonant
    // filter by 2e-3).
    run_tool(
        Command::new("faust").arg("-fp").arg("-a").arg(src.join("driver.cpp")).arg("-lang").arg("cpp").arg(&dsp).arg("-o").arg(build.join(&cpp)),
        &format!("compiling {name}.dsp to C++"),
    );
    run_tool(
        Command::new("g++").args(["-O1", "-ffp-contract=off", "-fno-fast-math", "-std=c++14"]).arg(build.join(&cpp)).arg("-o").arg(build.join(name)),
        &format!("building the native {name}"),
    );
    for file in [wasm.as_str(), cpp.as_str(), name] {
        std::fs::rename(build.join(file), dir.join(file)).expect("moving a build product into place");
    }
    let _ = std::fs::remove_dir_all(&build);
    Compiled { name, wasm: dir.join(wasm), native: dir.join(name), dir }
}

/// Each program is compiled once per test process, whichever test needs it
/// first.
fn program(name: &'static str) -> &'static Compiled {
    static CACHE: Mutex<Vec<(&'static str, &'static OnceLock<Compiled>)>> = Mutex::new(Vec::new());
    let cell = {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        match cache.iter().find(|(n, _)| *n == name) {
            Some((_, cell)) => *cell,
            None => {
                let cell: &'static OnceLock<Compiled> = Box::leak(Box::new(OnceLock::new()));
                cache.push((name, cell));
                cell
            }
        }
    };
    cell.get_or_init(|| compile(name))
}

fn host() -> WasmHost {
    WasmHost::new(Limits::default()).expect("a wasm host")
}

fn load(program: &Compiled) -> ProcessorDefinition {
    host().load(&program.wasm, Abi::Faust, None).unwrap_or_else(|e| panic!("loading {}: {e}", program.wasm.display()))
}

// ------------------------------------------------------------- rendering

/// A control change at the start of 128-frame block `block`.
#[derive(Clone, Copy, Debug)]
struct Change {
    block: usize,
    address: &'static str,
    value: f32,
}

struct Render<'a> {
    inputs: &'a [Vec<f32>],
    outputs: usize,
    params: &'a [(&'static str, f32)],
    changes: &'a [Change],
}

fn render_native(program: &Compiled, render: &Render<'_>) -> Vec<Vec<f32>> {
    let mut args = vec![FRAMES.to_string(), (SR as u32).to_string()];
    if render.inputs.is_empty() {
        args.push("-".into());
    } else {
        // Tests and test processes run at once: an input file of their own.
        let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
        let input = program.dir.join(format!("input-{}-{thread}.f32", std::process::id()));
        let bytes: Vec<u8> = render.inputs.iter().flatten().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(&input, bytes).expect("writing the input signal");
        args.push(input.display().to_string());
    }
    let remove = |args: &[String]| {
        if !render.inputs.is_empty() {
            let _ = std::fs::remove_file(&args[2]);
        }
    };
    args.extend(render.params.iter().map(|(a, v)| format!("{a}={v:?}")));
    args.extend(render.changes.iter().map(|c| format!("@{}:{}={:?}", c.block, c.address, c.value)));
    let out = run_tool(Command::new(&program.native).args(&args), &format!("running the native {}", program.name));
    remove(&args);
    assert_eq!(out.len(), render.outputs * FRAMES * 4, "native {}: output size", program.name);
    let samples: Vec<f32> = out.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    samples.chunks_exact(FRAMES).map(<[f32]>::to_vec).collect()
}

struct ByobRender {
    channels: Vec<Vec<f32>>,
    bytes_copied: u64,
    quanta: u64,
}

fn render_byob(definition: &ProcessorDefinition, name: &str, render: &Render<'_>) -> ByobRender {
    let mut ctx = OfflineAudioContext::new(render.outputs, FRAMES, SR).expect("an offline context");
    let g = ctx.graph();
    let options = AudioWorkletNodeOptions {
        parameter_data: render.params.iter().map(|(a, v)| (a.to_string(), *v)).collect(),
        ..AudioWorkletNodeOptions::default()
    };
    let node = AudioWorkletNode::from_definition(g, definition, name, options).expect("a Faust node");
    if !render.inputs.is_empty() {
        let buffer = std::sync::Arc::new(AudioBuffer::new(SR, render.inputs.to_vec()).expect("an input buffer"));
        let src = AudioBufferSourceNode::new(g, AudioBufferSourceOptions { buffer: Some(buffer), ..Default::default() }).expect("a source");
        src.start(g, 0.0).expect("starting the source");
        g.connect(src.id(), 0, node.id(), 0).expect("source -> Faust");
    }
    let destination = g.destination();
    g.connect(node.id(), 0, destination, 0).expect("Faust -> destination");
    for change in render.changes {
        let param = node.parameter(change.address).unwrap_or_else(|| panic!("{name} has no parameter {}", change.address));
        // Half a frame early: the first frame at or after it is the block's
        // first frame, whatever the rounding of frame / SR.
        let time = ((change.block * QUANTUM) as f64 - 0.5).max(0.0) / SR as f64;
        g.param(param).set_value_at_time(change.value, time).expect("scheduling a change");
    }
    let status = node.status().clone();
    let rendered = ctx.render(|_| {}).expect("rendering");
    assert!(rendered.processor_errors.is_empty(), "{name}: processor errors: {:?}", rendered.processor_errors);
    assert_eq!(status.error(), None, "{name}: the processor failed");
    let buffer = rendered.buffer;
    assert_eq!(buffer.number_of_channels(), render.outputs);
    ByobRender {
        channels: (0..render.outputs).map(|c| buffer.channel_data(c).to_vec()).collect(),
        bytes_copied: status.bytes_copied(),
        quanta: status.quanta(),
    }
}

/// The largest |a - b| over all channels and frames: (difference, channel,
/// frame). A NaN anywhere makes it NaN.
fn worst_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f32, usize, usize) {
    let mut worst = (0.0f32, 0, 0);
    for (c, (a, b)) in a.iter().zip(b).enumerate() {
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            let d = (x - y).abs();
            if d > worst.0 || (d.is_nan() && !worst.0.is_nan()) {
                worst = (d, c, i);
            }
        }
    }
    worst
}

/// Renders both ways, compares, and returns the largest difference.
fn compare(name: &'static str, render: Render<'_>) -> f32 {
    let program = program(name);
    let definition = load(program);
    let byob = render_byob(&definition, name, &render);
    let native = render_native(program, &render);
    assert_eq!(byob.quanta as usize, FRAMES / QUANTUM, "{name}: quanta rendered");
    assert_eq!(byob.bytes_copied, 0, "{name}: the Faust node should copy nothing");
    // Kept for inspection: planar raw f32, as the driver writes them.
    let test = std::thread::current().name().unwrap_or("main").replace("::", "-");
    for (what, channels) in [("byob", &byob.channels), ("native", &native)] {
        let bytes: Vec<u8> = channels.iter().flatten().flat_map(|s| s.to_le_bytes()).collect();
        let _ = std::fs::write(program.dir.join(format!("{test}.{what}.f32")), bytes);
    }
    for (c, n) in native.iter().enumerate() {
        let rms = (n.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / FRAMES as f64).sqrt();
        assert!(rms > 1e-3, "{name}: native channel {c} is (nearly) silent (rms {rms}); the comparison would prove nothing");
    }
    let (d, c, i) = worst_difference(&byob.channels, &native);
    println!("{name}: max |byob - native| = {d:e} (channel {c}, frame {i})");
    assert!(
        d <= TOLERANCE,
        "{name}: byob and native differ by {d:e} at channel {c}, frame {i} (block {}): byob {}, native {}",
        i / QUANTUM,
        byob.channels[c][i],
        native[c][i]
    );
    d
}

// ------------------------------------------------------------ input signals

/// A deterministic white noise in [-1, 1).
fn noise(seed: u32, frames: usize) -> Vec<f32> {
    let mut x = seed;
    (0..frames)
        .map(|_| {
            x = x.wrapping_mul(1664525).wrapping_add(1013904223);
            (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// An exponential sine sweep from `f0` to `f1` Hz over the whole length.
fn sweep(f0: f64, f1: f64, amplitude: f64, frames: usize) -> Vec<f32> {
    let duration = frames as f64 / SR as f64;
    let k = (f1 / f0).ln();
    (0..frames)
        .map(|n| {
            let t = n as f64 / SR as f64;
            let phase = 2.0 * std::f64::consts::PI * f0 * duration / k * ((t / duration * k).exp() - 1.0);
            (amplitude * phase.sin()) as f32
        })
        .collect()
}

/// `signal` with everything from `from` on silenced (to hear tails).
fn gated(mut signal: Vec<f32>, from: usize) -> Vec<f32> {
    signal[from..].iter_mut().for_each(|s| *s = 0.0);
    signal
}

fn mix(a: &[f32], b: &[f32], gb: f32) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + gb * y).collect()
}

// ------------------------------------------------------------ comparisons

#[test]
fn oscillator_matches_native() {
    compare(
        "osc",
        Render { inputs: &[], outputs: 1, params: &[("/osc/freq", 330.0), ("/osc/gain", 0.7), ("/osc/sawmix", 0.4)], changes: &[] },
    );
}

#[test]
fn oscillator_with_changes_at_quantum_boundaries_matches_native() {
    let changes = [
        Change { block: 100, address: "/osc/freq", value: 1234.5 },
        Change { block: 100, address: "/osc/sawmix", value: 0.8 },
        Change { block: 250, address: "/osc/gain", value: 0.2 },
        Change { block: 251, address: "/osc/freq", value: 61.0 },
    ];
    compare("osc", Render { inputs: &[], outputs: 1, params: &[("/osc/freq", 330.0)], changes: &changes });
}

#[test]
fn filter_matches_native() {
    let input = mix(&sweep(20.0, 18000.0, 0.6, FRAMES), &noise(1, FRAMES), 0.2);
    compare(
        "filter",
        Render {
            inputs: &[input],
            outputs: 1,
            params: &[("/filter/lowpass/cutoff", 2500.0), ("/filter/lowpass/q", 7.5), ("/filter/highpass", 150.0), ("/filter/drive", 3.0)],
            changes: &[],
        },
    );
}

#[test]
fn filter_with_checkbox_and_nentry_changes_matches_native() {
    let input = mix(&sweep(40.0, 12000.0, 0.8, FRAMES), &noise(2, FRAMES), 0.1);
    let changes = [
        Change { block: 60, address: "/filter/bypass", value: 1.0 },
        Change { block: 120, address: "/filter/bypass", value: 0.0 },
        Change { block: 120, address: "/filter/drive", value: 7.0 },
        Change { block: 200, address: "/filter/lowpass/cutoff", value: 300.0 },
        Change { block: 300, address: "/filter/lowpass/q", value: 18.0 },
    ];
    compare("filter", Render { inputs: &[input], outputs: 1, params: &[], changes: &changes });
}

#[test]
fn stereo_delay_matches_native() {
    // Sound for 0.4 s, then the echoes' tail.
    let left = gated(mix(&sweep(100.0, 8000.0, 0.5, FRAMES), &noise(3, FRAMES), 0.1), FRAMES * 2 / 5);
    let right = gated(noise(4, FRAMES).iter().map(|s| 0.4 * s).collect(), FRAMES / 4);
    compare(
        "stereo",
        Render {
            inputs: &[left, right],
            outputs: 2,
            params: &[
                ("/stereo/delay/time", 87.3),
                ("/stereo/delay/feedback", 0.6),
                ("/stereo/delay/mix", 0.7),
                ("/stereo/mod/depth", 55.0),
                ("/stereo/mod/rate", 1.9),
                ("/stereo/pan", 0.35),
            ],
            changes: &[Change { block: 180, address: "/stereo/pan", value: 0.8 }],
        },
    );
}

#[test]
fn karplus_strong_feedback_matches_native() {
    // Pluck, release, pluck again at another pitch: button presses at
    // quantum boundaries.
    let changes = [
        Change { block: 0, address: "/karplus/pluck", value: 1.0 },
        Change { block: 90, address: "/karplus/pluck", value: 0.0 },
        Change { block: 150, address: "/karplus/note", value: 64.0 },
        Change { block: 150, address: "/karplus/pluck", value: 1.0 },
        Change { block: 151, address: "/karplus/pluck", value: 0.0 },
        Change { block: 260, address: "/karplus/damping", value: 0.9 },
    ];
    compare("karplus", Render { inputs: &[], outputs: 1, params: &[("/karplus/level", 0.9), ("/karplus/note", 45.0)], changes: &changes });
}

#[test]
fn math_functions_and_discrete_controls_match_native() {
    let input = sweep(50.0, 5000.0, 0.3, FRAMES);
    let changes = [
        Change { block: 70, address: "/math/invert", value: 1.0 },
        Change { block: 140, address: "/math/hold", value: 1.0 },
        Change { block: 190, address: "/math/hold", value: 0.0 },
        Change { block: 190, address: "/math/steps", value: 11.0 },
        Change { block: 300, address: "/math/rate", value: 17.25 },
    ];
    compare("math", Render { inputs: &[input], outputs: 2, params: &[("/math/rate", 2.75), ("/math/steps", 4.0)], changes: &changes });
}

/// The comparison is sharp enough to see a change applied one quantum late:
/// the same change at block 100 in byob and at block 101 natively differs.
#[test]
fn a_change_one_quantum_late_is_detected() {
    let program = program("osc");
    let definition = load(program);
    let at = |block| [Change { block, address: "/osc/freq", value: 1234.5 }];
    let (on_time, late) = (at(100), at(101));
    let byob = render_byob(&definition, "osc", &Render { inputs: &[], outputs: 1, params: &[], changes: &on_time });
    let native_late = render_native(program, &Render { inputs: &[], outputs: 1, params: &[], changes: &late });
    let native_on_time = render_native(program, &Render { inputs: &[], outputs: 1, params: &[], changes: &on_time });
    let (d, _, i) = worst_difference(&byob.channels, &native_late);
    assert!(d > 0.01 && i / QUANTUM >= 100, "a change one quantum late went unseen: {d:e} at frame {i}");
    let (d, _, _) = worst_difference(&byob.channels, &native_on_time);
    assert!(d <= TOLERANCE, "{d:e}");
}

// ------------------------------------------------------- what the host reads

fn descriptor(name: &str, default: f32, min: f32, max: f32) -> AudioParamDescriptor {
    AudioParamDescriptor::new(name, default, min, max, AutomationRate::KRate)
}

fn by_name(descriptors: &[AudioParamDescriptor]) -> HashMap<String, AudioParamDescriptor> {
    descriptors.iter().map(|d| (d.name.clone(), d.clone())).collect()
}

#[test]
fn parameter_descriptors_come_from_the_faust_json() {
    // Values as written in the .dsp files; buttons and checkboxes are 0..1
    // with default 0. Every control is k-rate (Faust reads it once per
    // compute call).
    let expected: [(&'static str, Vec<AudioParamDescriptor>); 5] = [
        ("osc", vec![descriptor("/osc/freq", 440.0, 20.0, 5000.0), descriptor("/osc/gain", 0.5, 0.0, 1.0), descriptor("/osc/sawmix", 0.25, 0.0, 1.0)]),
        (
            "filter",
            vec![
                descriptor("/filter/lowpass/cutoff", 1000.0, 50.0, 15000.0),
                descriptor("/filter/lowpass/q", 2.0, 0.5, 20.0),
                descriptor("/filter/highpass", 80.0, 10.0, 2000.0),
                descriptor("/filter/drive", 1.0, 1.0, 8.0),
                descriptor("/filter/bypass", 0.0, 0.0, 1.0),
            ],
        ),
        (
            "stereo",
            vec![
                descriptor("/stereo/delay/time", 120.0, 1.0, 500.0),
                descriptor("/stereo/delay/feedback", 0.45, 0.0, 0.95),
                descriptor("/stereo/delay/mix", 0.5, 0.0, 1.0),
                descriptor("/stereo/mod/depth", 30.0, 0.0, 200.0),
                descriptor("/stereo/mod/rate", 0.7, 0.01, 10.0),
                descriptor("/stereo/pan", 0.3, 0.0, 1.0),
            ],
        ),
        (
            "karplus",
            vec![
                descriptor("/karplus/pluck", 0.0, 0.0, 1.0),
                descriptor("/karplus/note", 57.0, 24.0, 96.0),
                descriptor("/karplus/damping", 0.3, 0.0, 1.0),
                descriptor("/karplus/level", 0.8, 0.0, 1.0),
            ],
        ),
        (
            "math",
            vec![
                descriptor("/math/rate", 3.5, 0.1, 50.0),
                descriptor("/math/steps", 5.0, 1.0, 16.0),
                descriptor("/math/invert", 0.0, 0.0, 1.0),
                descriptor("/math/hold", 0.0, 0.0, 1.0),
            ],
        ),
    ];
    for (name, expected) in expected {
        let definition = load(program(name));
        let got = &definition.parameter_descriptors;
        assert_eq!(got.len(), expected.len(), "{name}: {got:#?}");
        assert_eq!(by_name(got), by_name(&expected), "{name}: descriptors");
        // Channel counts from the JSON too.
        let layout = definition.port_layout.as_ref().expect("a Faust module fixes its ports");
        let (ins, outs) = match name {
            "osc" | "karplus" => (0, 1),
            "filter" => (1, 1),
            "stereo" => (2, 2),
            _ => (1, 2),
        };
        assert_eq!(layout.input_channels, if ins > 0 { vec![ins] } else { vec![] }, "{name}: inputs");
        assert_eq!(layout.output_channels, vec![outs], "{name}: outputs");
    }
}

/// The order of the JSON's `ui` (which the host means to keep).
fn json_order(wasm: &Path) -> Vec<String> {
    let bytes = std::fs::read(wasm).unwrap();
    let start = bytes.windows(7).position(|w| w == b"{\"name\"").expect("the JSON in the data segment");
    let text = String::from_utf8_lossy(&bytes[start..]);
    let json: serde_json::Value = serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>().next().unwrap().expect("the JSON");
    fn walk(item: &serde_json::Value, out: &mut Vec<String>) {
        if let Some(items) = item.get("items").and_then(|i| i.as_array()) {
            items.iter().for_each(|i| walk(i, out));
        } else if let Some(address) = item.get("address").and_then(|a| a.as_str()) {
            out.push(address.to_string());
        }
    }
    let mut out = Vec::new();
    json["ui"].as_array().unwrap().iter().for_each(|i| walk(i, &mut out));
    out
}

/// The descriptors come in the JSON's order.
#[test]
fn parameter_descriptors_keep_the_json_order() {
    for name in ["osc", "filter", "stereo", "karplus", "math"] {
        let program = program(name);
        let names: Vec<String> = load(program).parameter_descriptors.iter().map(|d| d.name.clone()).collect();
        assert_eq!(names, json_order(&program.wasm), "{name}: descriptor order");
    }
}

#[test]
fn a_whole_render_copies_nothing() {
    // `compare` checks bytes_copied == 0 for every program; here the count is
    // also checked on its own for a program with inputs and outputs.
    let program = program("stereo");
    let definition = load(program);
    let inputs = [noise(5, FRAMES), noise(6, FRAMES)];
    let render = Render { inputs: &inputs, outputs: 2, params: &[], changes: &[] };
    let byob = render_byob(&definition, "stereo", &render);
    assert_eq!(byob.quanta as usize, FRAMES / QUANTUM);
    assert_eq!(byob.bytes_copied, 0);
}

// ------------------------------------------------------- not a Faust module

fn load_error(name: &str, wat: &str) -> String {
    match host().load_bytes(name, wat.as_bytes(), Abi::Faust, None) {
        Ok(_) => panic!("{name} loaded as a Faust module"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_byob_module_is_not_a_faust_module() {
    let gain = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/modules/gain.wat");
    let error = host().load(&gain, Abi::Faust, None).err().expect("gain.wat (byob ABI) should not load as a Faust module");
    let message = error.to_string();
    assert!(matches!(error, LoadError::MissingExport { .. } | LoadError::WrongExportType { .. } | LoadError::UnsupportedImport { .. } | LoadError::Invalid { .. }), "{error:?}");
    assert!(message.contains("gain.wat") && message.contains("faust"), "the error should name the module and the ABI: {message}");
}

#[test]
fn a_module_without_faust_json_fails_to_load_clearly() {
    // The Faust exports, but no JSON at address 0.
    let message = load_error(
        "no-json.wat",
        r#"(module (memory (export "memory") 1)
             (func (export "init") (param i32 i32))
             (func (export "compute") (param i32 i32 i32 i32)))"#,
    );
    assert!(message.contains("no-json.wat") && message.contains("JSON"), "{message}");
    // Wrong signatures.
    let message = load_error(
        "bad-compute.wat",
        r#"(module (memory (export "memory") 1)
             (func (export "init") (param i32 i32))
             (func (export "compute") (param i32 i32)))"#,
    );
    assert!(message.contains("bad-compute.wat") && message.contains("compute") && message.contains("wrong type"), "{message}");
    // No memory.
    let message = load_error("no-memory.wat", r#"(module (func (export "init") (param i32 i32)))"#);
    assert!(message.contains("memory") && message.contains("faust"), "{message}");
    // Imports a function Faust never asks for.
    let message = load_error(
        "odd-import.wat",
        r#"(module (import "env" "_launch_missilesf" (func (param f32) (result f32)))
             (memory (export "memory") 1)
             (func (export "init") (param i32 i32))
             (func (export "compute") (param i32 i32 i32 i32)))"#,
    );
    assert!(message.contains("env._launch_missilesf"), "{message}");
    // A Faust module does not take parameter descriptors.
    let program = program("osc");
    let error = host().load(&program.wasm, Abi::Faust, Some(vec![descriptor("x", 0.0, 0.0, 1.0)])).err().expect("descriptors should be refused");
    assert!(error.to_string().contains("declares its own parameters"), "{error}");
}

/// A Faust module whose JSON (at address 0) is `json`.
fn with_json(json: &str) -> String {
    let escaped = json.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"(module (memory (export "memory") 1)
             (data (i32.const 0) "{escaped}\00")
             (func (export "init") (param i32 i32))
             (func (export "compute") (param i32 i32 i32 i32)))"#
    )
}

/// Crafted control descriptions are refused with the control named: an
/// index whose end wraps past the DSP state's bounds check, a range with
/// min above max (f32::clamp once panicked on it).
#[test]
fn crafted_faust_controls_are_refused() {
    let control = |fields: &str| with_json(&format!(r#"{{"inputs": 0, "outputs": 1, "size": 64, "ui": [{{"type": "hslider", "address": "/x/gain", {fields}}}]}}"#));
    let message = load_error("wrap.wat", &control(r#""index": 18446744073709551615, "init": 0, "min": 0, "max": 1"#));
    assert!(message.contains("/x/gain: index 18446744073709551615 lies outside the DSP state (64 bytes)"), "{message}");
    let message = load_error("range.wat", &control(r#""index": 8, "init": 0.5, "min": 1, "max": 0"#));
    assert!(message.contains("/x/gain: range min 1, max 0, init 0.5 is not a finite range with min <= max"), "{message}");
    let message = load_error("huge.wat", &control(r#""index": 8, "init": 0, "min": 0, "max": 1e300"#));
    assert!(message.contains("not a finite range"), "{message}");
}
