//! The neural node's cost on the render thread: a Silero VAD node in mode
//! "render" against the same model in ONNX Runtime (the Python
//! `onnxruntime` package, in its own process: scripts/ort-neural-bench.py)
//! fed as an AudioWorklet would feed it, copies included, on the same
//! frames, in one run.
//!
//! byob renders a graph (the speech of examples/graphs/speech.wav, looped,
//! into an "onnx" node, into the destination) quantum by quantum, timing
//! each `render_quantum`, and again without the node (its cost is the
//! difference): at 16 kHz, where the engine mixes straight into
//! the model's input, and at 48 kHz, where the node resamples to the
//! model's 16 kHz (ONNX Runtime's side does not resample: the comparison
//! gives it that). Reported: render time per second of audio, and the
//! worst quantum against a 48 kHz quantum's 2.67 ms.
//!
//! ```sh
//! cargo run --release -p byob-bench --bin neural_node [-- --seconds S]
//! ```
//!
//! `-- --byob-only RATE` renders at RATE alone and writes nothing: a loop
//! to run under a profiler.

use byob_audio::{AudioBuffer, AudioBufferSourceNode, AudioBufferSourceOptions, AudioGraph, AudioNode, AudioWorkletNodeOptions};
use byob_bench::{machine, write_section};
use byob_neural::{create_node, NeuralNodes, OnnxOptions};
use byob_tensor::Tensor;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

const MODEL: &str = "crates/byob-tensor/tests/data/real-models/models/silero_vad.onnx";
const SPEECH: &str = "examples/graphs/speech.wav";

fn fail(message: &str) -> ! {
    eprintln!("neural_node bench: {message}");
    std::process::exit(1)
}

/// (ms of render time per second of audio, worst quantum in ms,
/// inferences) of the graph; without the node (`node` false), of the rest
/// of the graph alone (the source, its own resampling at 48 kHz included).
fn byob(rate: f32, seconds: f64, node: bool) -> (f64, f64, u64) {
    let speech = AudioBuffer::from_wav(&repo(SPEECH)).unwrap_or_else(|e| fail(&e.to_string()));
    let mut options = OnnxOptions::new(repo(MODEL), 512);
    options.context = 64;
    options.sample_rate = Some(16000.0);
    options.constants.push(("sr".into(), Tensor::i64(vec![], vec![16000]).expect("a scalar")));
    options.state.push(("stateN".into(), "state".into()));
    options.output = Some("output".into());
    let mut graph = AudioGraph::new(rate, 1).unwrap_or_else(|e| fail(&e.to_string()));
    let g = &mut graph;
    let player = AudioBufferSourceNode::new(g, AudioBufferSourceOptions { buffer: Some(Arc::new(speech)), loop_: true, ..Default::default() }).unwrap_or_else(|e| fail(&e.to_string()));
    player.start_with(g, 0.0, None, None).unwrap_or_else(|e| fail(&e.to_string()));
    let destination = g.destination();
    let status = if node {
        let (vad, status) = create_node(g, &NeuralNodes::default(), options, AudioWorkletNodeOptions::default()).unwrap_or_else(|e| fail(&e.to_string()));
        g.connect(player.id(), 0, vad.id(), 0).unwrap_or_else(|e| fail(&e.to_string()));
        g.connect(vad.id(), 0, destination, 0).unwrap_or_else(|e| fail(&e.to_string()));
        Some(status)
    } else {
        g.connect(player.id(), 0, destination, 0).unwrap_or_else(|e| fail(&e.to_string()));
        None
    };
    let inferences = || status.as_ref().map_or(0, |s| s.inferences());
    let mut render = graph.compile().unwrap_or_else(|e| fail(&e.to_string()));
    let per_second = (rate / 128.0).round() as usize;
    for _ in 0..per_second {
        std::hint::black_box(render.render_quantum());
    }
    let before = inferences();
    let quanta = (seconds * rate as f64 / 128.0) as usize;
    let (mut total, mut worst) = (0.0f64, 0.0f64);
    for _ in 0..quanta {
        let start = Instant::now();
        std::hint::black_box(render.render_quantum());
        let spent = start.elapsed().as_secs_f64();
        total += spent;
        worst = worst.max(spent);
    }
    let audio = quanta as f64 * 128.0 / rate as f64;
    (total / audio * 1e3, worst * 1e3, inferences() - before)
}

fn ort(seconds: f64) -> (f64, f64, u64) {
    let script = repo("scripts/ort-neural-bench.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--model", &repo(MODEL).display().to_string(), "--audio", &repo(SPEECH).display().to_string(), "--seconds", &seconds.to_string()])
        .output()
        .unwrap_or_else(|e| fail(&format!("python3 {}: {e}", script.display())));
    if !out.status.success() {
        fail(&format!("ONNX Runtime failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| fail(&format!("ONNX Runtime's answer: {e}")));
    let number = |key: &str| answer[key].as_f64().unwrap_or_else(|| fail(&format!("ONNX Runtime gave no {key}")));
    (number("per_second_ms"), number("worst_quantum_ms"), number("inferences") as u64)
}

/// Rounds of the three measurements; the table holds their medians.
const ROUNDS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.iter().position(|a| a == "--seconds").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(60.0);
    if let Some(rate) = args.iter().position(|a| a == "--byob-only").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()) {
        let (per_second, worst, inferences) = byob(rate, seconds, true);
        println!("byob at {rate} Hz: {per_second:.3} ms per second of audio, worst quantum {worst:.3} ms, {inferences} inferences");
        return;
    }
    println!("Silero VAD node vs ONNX Runtime in a worklet, {seconds} s of audio, {ROUNDS} rounds, {}", machine());
    // The engines take turns, round after round; each figure is the median
    // of its rounds (the machine is shared and noisy). byob's node costs
    // its graph's time less the same graph's without it, in each round.
    let mut rounds: Vec<[(f64, f64, u64); 3]> = Vec::new();
    for round in 0..ROUNDS {
        let node_alone = |rate: f32| {
            let (with, without) = (byob(rate, seconds, true), byob(rate, seconds, false));
            (with.0 - without.0, with.1, with.2)
        };
        let measured = [ort(seconds), node_alone(16000.0), node_alone(48000.0)];
        println!("round {}: ONNX Runtime {:.3}, byob node at 16 kHz {:.3}, at 48 kHz {:.3} ms per second of audio", round + 1, measured[0].0, measured[1].0, measured[2].0);
        rounds.push(measured);
    }
    let median = |engine: usize, pick: fn(&(f64, f64, u64)) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(|r| pick(&r[engine])).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (o_second, o_worst, o_inferences) = (median(0, |m| m.0), median(0, |m| m.1), rounds[0][0].2);
    println!("ONNX Runtime       {o_second:8.3} ms per second of audio, worst quantum {o_worst:.3} ms, {o_inferences} inferences");
    let mut rows = format!("| ONNX Runtime 1 thread, worklet copies, 16 kHz | {o_second:.2} | {o_worst:.3} | 1.00 | {o_inferences} |\n");
    for (engine, rate, label) in [(1, 16000.0, "byob onnx node, 16 kHz context (zero copy)"), (2, 48000.0, "byob onnx node, 48 kHz context (resampled to 16 kHz)")] {
        let (b_second, b_worst, b_inferences) = (median(engine, |m| m.0), median(engine, |m| m.1), rounds[0][engine].2);
        println!("byob at {rate:5} Hz   {b_second:8.3} ms per second of audio, worst quantum {b_worst:.3} ms, {b_inferences} inferences, byob/ORT {:.2}", b_second / o_second);
        rows.push_str(&format!("| {label} | {b_second:.2} | {b_worst:.3} | **{:.2}** | {b_inferences} |\n", b_second / o_second));
    }
    let body = format!(
        "## Neural node: Silero VAD in the render quantum vs ONNX Runtime in a worklet\n\n\
         `cargo run --release -p byob-bench --bin neural_node` (`-- --seconds S`, default 60) — {seconds} s of speech (examples/graphs/speech.wav, looped), same run, same machine: {}; the engines take turns for {ROUNDS} rounds, and each figure is the median of its rounds.\n\
         byob: a graph (the speech's source node, the onnx node in mode \"render\", one thread) rendered quantum by quantum, `render_quantum` timed; the node's time is the graph's less the same graph's without the node, in the same round (at 48 kHz the source resamples the 16 kHz speech itself, which is not the node's cost); the worst quantum is the whole graph's. ONNX Runtime (`scripts/ort-neural-bench.py`): each 128-sample quantum copied into the frame buffer as a worklet would, `session.run` (1 intra-op thread, ORT_ENABLE_ALL) when 512 new samples are in; the copies and runs timed. Goal: at most half of ONNX Runtime's time per second of audio; worst quantum under a 48 kHz quantum (2.67 ms) with a margin.\n\n\
         | engine | ms per second of audio | worst quantum ms | time / ORT's | inferences |\n|---|---|---|---|---|\n{rows}",
        machine()
    );
    write_section("neural_node", &body).unwrap_or_else(|e| fail(&format!("BENCHMARKS.md: {e}")));
}
