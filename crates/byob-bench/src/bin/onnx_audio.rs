//! The audio models people ship, byob's CPU provider versus ONNX Runtime's
//! CPU provider (the Python `onnxruntime` package, in its own process:
//! scripts/ort-audio-bench.py), same thread count, in one run:
//!
//! * Silero VAD's 32 ms streaming step (silero_vad.onnx, 16 kHz, batch 1,
//!   the state each call returns fed to the next): latency per call,
//!   including everything `run` does;
//! * Silero VAD over 60 s of audio as one sequence (the 16k_sequence export);
//! * basic-pitch on a 2-second window;
//! * the transformer encoder of the tests (scripts/transformer_encoder.py)
//!   at sequence lengths 64 and 256, batch 1.
//!
//! The models are the committed real-model test data
//! (crates/byob-tensor/tests/data/real-models/models). The engines take
//! turns case by case, byob first, each on inputs of the same shape; the
//! table goes into BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release -p byob-bench --bin onnx_audio [-- --threads N]
//! ```
//!
//! `-- --byob-only CASE [--calls N]` times byob alone on one case (1,000
//! calls unless told) and writes nothing:
//! a loop to run under a profiler.

use byob_bench::{machine, noise, write_section};
use byob_tensor::{SessionBuilder, Tensor};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../byob-tensor/tests/data/real-models/models")
}

fn fail(message: &str) -> ! {
    eprintln!("onnx_audio bench: {message}");
    std::process::exit(1)
}

fn median_ms(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2] * 1e3
}

/// Times `calls` runs of `run` after `warmup` untimed ones.
fn timed(calls: usize, warmup: usize, mut run: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        run();
    }
    median_ms(
        (0..calls)
            .map(|_| {
                let start = Instant::now();
                run();
                start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn ort(case: &str, calls: usize, threads: usize) -> f64 {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ort-audio-bench.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--models", &models().display().to_string(), "--threads", &threads.to_string(), "--case", case, "--calls", &calls.to_string()])
        .output()
        .unwrap_or_else(|e| fail(&format!("python3 {}: {e}", script.display())));
    if !out.status.success() {
        fail(&format!("ONNX Runtime ({case}) failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| fail(&format!("ONNX Runtime's answer: {e}")));
    answer["median_ms"].as_f64().unwrap_or_else(|| fail("ONNX Runtime gave no median"))
}

fn session(name: &str, threads: usize) -> byob_tensor::Session {
    SessionBuilder::new().with_intra_op_threads(threads).commit_from_file(models().join(name)).unwrap_or_else(|e| fail(&format!("{name}: {e}")))
}

fn byob(case: &str, calls: usize, threads: usize) -> f64 {
    match case {
        "vad_step" => {
            let s = session("silero_vad.onnx", threads);
            let chunk = Tensor::f32(vec![1, 576], noise(576, 1).iter().map(|v| v * 0.1).collect()).expect("shape");
            let sr = Tensor::i64(vec![], vec![16000]).expect("scalar");
            let mut state = Tensor::f32(vec![2, 1, 128], vec![0.0; 256]).expect("shape");
            let mut step = || {
                let mut out = s.run(vec![("input".into(), chunk.clone()), ("state".into(), state.clone()), ("sr".into(), sr.clone())]).unwrap_or_else(|e| fail(&e.to_string()));
                state = out.swap_remove(1).1;
            };
            timed(calls, 50, &mut step)
        }
        "vad_60s" => {
            let s = session("silero_vad_16k_sequence.onnx", threads);
            let x = Tensor::f32(vec![1875, 576], noise(1875 * 576, 2).iter().map(|v| v * 0.1).collect()).expect("shape");
            let h = Tensor::f32(vec![1, 1, 128], vec![0.0; 128]).expect("shape");
            timed(calls, 2, || {
                s.run(vec![("input".into(), x.clone()), ("h".into(), h.clone()), ("c".into(), h.clone())]).unwrap_or_else(|e| fail(&e.to_string()));
            })
        }
        "basic_pitch" => {
            let s = session("basic_pitch_nmp.onnx", threads);
            let name = s.inputs().next().expect("one input").name.clone();
            let x = Tensor::f32(vec![1, 43844, 1], noise(43844, 3).iter().map(|v| v * 0.1).collect()).expect("shape");
            timed(calls, 3, || {
                s.run(vec![(name.clone(), x.clone())]).unwrap_or_else(|e| fail(&e.to_string()));
            })
        }
        "encoder_64" | "encoder_256" => {
            let s = session("transformer_encoder.onnx", threads);
            let seq: usize = case["encoder_".len()..].parse().expect("a length");
            let x = Tensor::f32(vec![1, seq, 128], noise(seq * 128, 4)).expect("shape");
            let mask = Tensor::new(vec![1, seq], byob_tensor::Data::Bool(vec![true; seq])).expect("shape");
            timed(calls, 5, || {
                s.run(vec![("x".into(), x.clone()), ("mask".into(), mask.clone())]).unwrap_or_else(|e| fail(&e.to_string()));
            })
        }
        other => fail(&format!("unknown case {other}")),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.iter().position(|a| a == "--threads").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(2);
    if let Some(case) = args.iter().position(|a| a == "--byob-only").and_then(|i| args.get(i + 1)) {
        let calls = args.iter().position(|a| a == "--calls").and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(1000);
        println!("{case}: byob {:.3} ms", byob(case, calls, threads));
        return;
    }
    let cases = [
        ("vad_step", "Silero VAD 32 ms streaming step (silero_vad.onnx, 16 kHz, batch 1, state carried), per call", 2000, "half of ONNX Runtime's"),
        ("vad_60s", "Silero VAD, 60 s of audio as one sequence (16k_sequence export, 1,875 chunks)", 7, "≤ 1.0"),
        ("basic_pitch", "basic-pitch nmp.onnx, one 2-second window (43,844 samples)", 21, "≤ 1.0"),
        ("encoder_64", "transformer encoder (2 layers, d 128, 4 heads), batch 1, sequence 64", 201, "≤ 1.0"),
        ("encoder_256", "transformer encoder (2 layers, d 128, 4 heads), batch 1, sequence 256", 51, "≤ 1.0"),
    ];
    let mut rows = String::new();
    println!("byob vs ONNX Runtime on the audio models, {threads} thread(s) each, {}", machine());
    for (case, label, calls, goal) in cases {
        let b = byob(case, calls, threads);
        let o = ort(case, calls, threads);
        println!("{case:12} byob {b:9.3} ms   ORT {o:9.3} ms   byob/ORT {:.2}   ({calls} runs)", b / o);
        rows.push_str(&format!("| {label} | {b:.3} | {o:.3} | **{:.2}** | {goal} | {calls} |\n", b / o));
    }
    let body = format!(
        "## ONNX inference on audio models: byob CPU vs ONNX Runtime CPU\n\n\
         `cargo run --release -p byob-bench --bin onnx_audio` (`-- --threads N`, default 2) — median latency, the engines in turns case by case (ONNX Runtime in its own Python process, `scripts/ort-audio-bench.py`, timing `session.run`; byob timing `Session::run`, inputs and outputs as owned tensors), same run, same machine: {}.\n\
         Threads: {threads} for each (byob `with_intra_op_threads`, ONNX Runtime intra_op_num_threads with ORT_ENABLE_ALL). Models: the real-model test data (Silero VAD 6.2.3, basic-pitch 0.4.0, the seeded transformer encoder), whose outputs match ONNX Runtime's in the test suite.\n\n\
         | case | byob ms | ORT ms | byob/ORT | goal | runs |\n|---|---|---|---|---|---|\n{rows}",
        machine()
    );
    write_section("onnx_audio", &body).unwrap_or_else(|e| fail(&format!("BENCHMARKS.md: {e}")));
}
