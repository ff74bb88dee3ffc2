//! WebAssembly processors, in one run:
//! 1. per-quantum host overhead of a WebAssembly gain (×0.5), 1, 2 and 8
//!    channels, byob ABI versus copy ABI (a chain of 16 nodes against the
//!    same graph without them, per node);
//! 2. a Faust reverb (`dm.zita_light`, stereo) hosted through the byob ABI
//!    versus the same program compiled natively to C++ (`g++ -O3`).
//!
//! `cargo run --release -p byob-bench --bin wasm [-- --quick]`; needs
//! `faust` and `g++`. Writes its tables into BENCHMARKS.md.

use byob_audio as byob;
use byob_audio::worklet::{AudioWorkletNodeOptions, ProcessorDefinition, WorkletStatus};
use byob_audio::{AudioNode as _, AudioScheduledSourceNode as _};
use byob_wasm::{Abi, Limits, WasmHost};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const SAMPLE_RATE: f32 = 48000.0;
const CHAIN: usize = 16;

/// byob ABI: input and output regions for 8 channels, no parameters; the
/// loop is SIMD (4 samples a step) in both modules, so that the host's
/// share of the time is what the table compares.
const BYOB_GAIN: &str = r#"(module
  (import "byob" "register_buffer" (func $register (param i32 i32 i32 i32) (result i32)))
  (import "byob" "channel_count" (func $channels (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "byob_init") (param f32 i32) (result i32)
    (local $r i32)
    (local.set $r (call $register (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 4096)))
    (if (local.get $r) (then (return (local.get $r))))
    (call $register (i32.const 2) (i32.const 0) (i32.const 4096) (i32.const 4096)))
  (func (export "byob_process") (param $frames i32) (result i32)
    (local $end i32) (local $p i32)
    (local.set $end (i32.shl (i32.mul (call $channels (i32.const 1) (i32.const 0)) (local.get $frames)) (i32.const 2)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (v128.store offset=4096 (local.get $p) (f32x4.mul (v128.load (local.get $p)) (f32x4.splat (f32.const 0.5))))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br $next)))
    (i32.const 1)))"#;

/// copy ABI (Emscripten's callback shape), the same loop.
const COPY_GAIN: &str = r#"(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "malloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.div_u (local.get $size) (i32.const 65536)) (i32.const 1))))))
    (local.get $p))
  (func (export "process") (param $numInputs i32) (param $inputs i32) (param $numOutputs i32) (param $outputs i32) (param i32 i32 i32) (result i32)
    (local $end i32) (local $p i32) (local $in i32) (local $out i32)
    (local.set $end (i32.shl (i32.mul (i32.load (local.get $inputs)) (i32.load offset=4 (local.get $inputs))) (i32.const 2)))
    (local.set $in (i32.load offset=8 (local.get $inputs)))
    (local.set $out (i32.load offset=8 (local.get $outputs)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (v128.store (i32.add (local.get $out) (local.get $p)) (f32x4.mul (v128.load (i32.add (local.get $in) (local.get $p))) (f32x4.splat (f32.const 0.5))))
      (local.set $p (i32.add (local.get $p) (i32.const 16)))
      (br $next)))
    (i32.const 1)))"#;

fn signal(channels: usize, frames: usize) -> Vec<Vec<f32>> {
    let mut state = 1u32;
    (0..channels)
        .map(|_| {
            (0..frames)
                .map(|_| {
                    state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                    (state >> 8) as f32 / 16777216.0 - 0.5
                })
                .collect()
        })
        .collect()
}

/// A looping source into `nodes` worklet nodes of `definition` in a chain.
fn graph(channels: usize, frames: usize, definition: Option<&ProcessorDefinition>, nodes: usize) -> (byob::OfflineAudioContext, Option<Arc<WorkletStatus>>) {
    let mut ctx = byob::OfflineAudioContext::new(channels, frames, SAMPLE_RATE).unwrap();
    let g = ctx.graph();
    let destination = g.destination();
    let buffer = Arc::new(byob::AudioBuffer::new(SAMPLE_RATE, signal(channels, 48000)).unwrap());
    let src = byob::AudioBufferSourceNode::new(g, byob::AudioBufferSourceOptions { buffer: Some(buffer), loop_: true, ..Default::default() }).unwrap();
    src.start(g, 0.0).unwrap();
    let mut previous = src.id();
    let mut status = None;
    if let Some(definition) = definition {
        for _ in 0..nodes {
            let node = byob::AudioWorkletNode::from_definition(g, definition, "module", AudioWorkletNodeOptions::default()).unwrap();
            g.connect(previous, 0, node.id(), 0).unwrap();
            previous = node.id();
            status = Some(node.status().clone());
        }
    }
    g.connect(previous, 0, destination, 0).unwrap();
    (ctx, status)
}

fn gains(host: &WasmHost, runs: usize, seconds: f64) -> String {
    let byob_gain = host.load_bytes("byob-gain.wat", BYOB_GAIN.as_bytes(), Abi::Byob, None).unwrap();
    let copy_gain = host.load_bytes("copy-gain.wat", COPY_GAIN.as_bytes(), Abi::Copy, None).unwrap();
    let frames = (SAMPLE_RATE as f64 * seconds) as usize;
    let quanta = (frames / 128) as f64;
    let mut rows = Vec::new();
    for channels in [1usize, 2, 8] {
        let definitions = [None, Some(&byob_gain), Some(&copy_gain)];
        let t = byob_bench::interleaved_medians(runs, 3, |case| graph(channels, frames, definitions[case], CHAIN).0, |_, ctx| {
            std::hint::black_box(ctx.start_rendering().unwrap());
        });
        let per_node = |with: f64| (with - t[0]) / (quanta * CHAIN as f64) * 1e9;
        let (byob_ns, copy_ns) = (per_node(t[1]), per_node(t[2]));
        let copied = |definition| {
            let (ctx, status) = graph(channels, 128 * 100, Some(definition), 1);
            ctx.start_rendering().unwrap();
            let status = status.unwrap();
            status.bytes_copied() / status.quanta()
        };
        let (byob_copied, copy_copied) = (copied(&byob_gain), copied(&copy_gain));
        println!("wasm gain, {channels} ch: byob ABI {byob_ns:.0} ns/quantum ({byob_copied} B copied), copy ABI {copy_ns:.0} ({copy_copied} B); ratio {:.2}", byob_ns / copy_ns);
        rows.push(format!("| {channels} | {byob_ns:.0} | {copy_ns:.0} | **{:.2}** | {byob_copied} | {copy_copied} |", byob_ns / copy_ns));
    }
    format!(
        "### WebAssembly gain: host overhead per quantum\n\n\
         A chain of {CHAIN} nodes, each a WebAssembly gain (×0.5, the same SIMD loop in both modules), on a looping source, \
         {seconds} s at {SAMPLE_RATE} Hz, median of {runs} renders taken in turns; per node per quantum = (render with the chain − \
         without) / ({CHAIN} × quanta). Goals: 0 bytes copied on the byob ABI; byob at most half the copy ABI's overhead at 8 channels.\n\n\
         | channels | byob ABI ns/quantum | copy ABI ns/quantum | byob/copy | bytes copied per quantum, byob | bytes copied per quantum, copy |\n\
         |---|---|---|---|---|---|\n{}",
        rows.join("\n")
    )
}

/// Compiles `dsp` with Faust to wasm (for byob) and to C++ with the native
/// architecture file (built with g++ -O3).
fn build_faust(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("faust");
    let wasm = dir.join("reverb.wasm");
    let cpp = dir.join("reverb.cpp");
    let native = dir.join("reverb-native");
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e} (install faust and g++)"));
        assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(Command::new("faust").args(["-lang", "wasm"]).arg(here.join("reverb.dsp")).arg("-o").arg(&wasm));
    run(Command::new("faust").arg("-a").arg(here.join("native.cpp")).args(["-lang", "cpp"]).arg(here.join("reverb.dsp")).arg("-o").arg(&cpp));
    run(Command::new("g++").args(["-O3", "-std=c++17"]).arg(&cpp).arg("-o").arg(&native));
    (wasm, native)
}

fn reverb(host: &WasmHost, runs: usize, seconds: f64) -> String {
    let dir = std::env::temp_dir().join(format!("byob-bench-faust-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (wasm, native) = build_faust(&dir);
    let definition = host.load(&wasm, Abi::Faust, None).unwrap();
    let frames = (SAMPLE_RATE as f64 * seconds) as usize;
    let definitions = [None, Some(&definition)];
    let t = byob_bench::interleaved_medians(runs, 2, |case| graph(2, frames, definitions[case], 1).0, |_, ctx| {
        std::hint::black_box(ctx.start_rendering().unwrap());
    });
    let hosted = t[1] - t[0];
    let mut native_times: Vec<f64> = (0..runs)
        .map(|_| {
            let out = Command::new(&native).arg(frames.to_string()).arg((SAMPLE_RATE as u32).to_string()).output().unwrap();
            String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
        })
        .collect();
    native_times.sort_by(f64::total_cmp);
    let native_time = native_times[runs / 2];
    let (rtf_hosted, rtf_native) = (seconds / hosted, seconds / native_time);
    let _ = std::fs::remove_dir_all(&dir);
    println!("faust zita_light: byob-hosted {rtf_hosted:.1}x real time, native {rtf_native:.1}x, ratio {:.2}", rtf_hosted / rtf_native);
    format!(
        "### Faust reverb: hosted WebAssembly versus native C++\n\n\
         `dm.zita_light` (stereo Zita reverb), {seconds} s of stereo noise at {SAMPLE_RATE} Hz, median of {runs}: \
         byob = (render with the Faust node − without) through the byob host (wasmtime, zero copies); native = time in \
         `compute()` of the same program compiled by Faust to C++ with `g++ -O3`, same 128-frame blocks. Goal: hosted at least 0.5× native.\n\n\
         | program | byob-hosted real-time factor | native real-time factor | hosted/native |\n|---|---|---|---|\n\
         | dm.zita_light | {rtf_hosted:.1}x | {rtf_native:.1}x | **{:.2}** |",
        rtf_hosted / rtf_native
    )
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (runs, seconds) = if quick { (3, 5.0) } else { (7, 20.0) };
    // Generous limit: the benchmark measures speed, not fault handling.
    let host = WasmHost::new(Limits { max_time_per_call: std::time::Duration::from_millis(50), ..Limits::default() }).unwrap();
    let gain_table = gains(&host, runs, seconds);
    let reverb_table = reverb(&host, runs, seconds);
    let body = format!(
        "## WebAssembly processors: byob ABI vs copy ABI, Faust hosted vs native\n\n\
         `cargo run --release -p byob-bench --bin wasm` — same run, same machine: {}.\n\n{gain_table}\n\n{reverb_table}",
        byob_bench::machine()
    );
    byob_bench::write_section("wasm", &body).expect("BENCHMARKS.md is writable");
}
