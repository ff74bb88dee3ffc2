//! End-to-end tests of the `byob` binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use support::{byob, examples, npy};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn renders_every_example_graph() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let graph = entry.unwrap().path();
        if graph.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let wav = dir.path().join("out.wav");
        let png = dir.path().join("out.png");
        let output = byob(&["render", graph.to_str().unwrap(), "-o", wav.to_str().unwrap(), "--plot", png.to_str().unwrap()]);
        assert!(output.status.success(), "{}: {}", graph.display(), stderr(&output));
        let summary = String::from_utf8_lossy(&output.stdout);
        assert!(summary.contains("frames") && summary.contains("real time"), "summary line: {summary}");
        let reader = hound::WavReader::open(&wav).unwrap();
        let spec = reader.spec();
        assert_eq!((spec.bits_per_sample, spec.sample_format), (32, hound::SampleFormat::Float));
        let text: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&graph).unwrap()).unwrap();
        assert_eq!(reader.duration() as u64, text["length"].as_u64().unwrap(), "{}", graph.display());
        assert_eq!(spec.channels as u64, text["numberOfChannels"].as_u64().unwrap());
        let peak = hound::WavReader::open(&wav).unwrap().samples::<f32>().map(|s| s.unwrap().abs()).fold(0.0, f32::max);
        assert!(peak > 0.01, "{} rendered silence", graph.display());
        assert!(std::fs::metadata(&png).unwrap().len() > 1000, "plot written");
    }
}

#[test]
fn overrides_and_pcm_formats() {
    let dir = tempfile::tempdir().unwrap();
    let graph = examples().join("synth.json");
    for (format, bits) in [("s16", 16), ("s24", 24)] {
        let wav = dir.path().join(format!("{format}.wav"));
        let output = byob(&[
            "render",
            graph.to_str().unwrap(),
            "-o",
            wav.to_str().unwrap(),
            "--format",
            format,
            "--sample-rate",
            "44100",
            "--duration",
            "0.5",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        let reader = hound::WavReader::open(&wav).unwrap();
        assert_eq!(reader.spec().bits_per_sample, bits);
        assert_eq!(reader.spec().sample_rate, 44100);
        assert_eq!(reader.duration(), 22050);
    }
}

/// Each bad graph fails with one line naming the place, exit status 1, no
/// panic, and the previous output file untouched.
#[test]
fn bad_input_is_reported_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("{\"length\": 10,", "malformed JSON"),
        (r#"{"length": 128, "nodes": [{"id": "a", "type": "FooNode"}]}"#, "unknown node type"),
        (r#"{"length": 128, "nodes": [{"id": "a", "type": "GainNode", "options": {"gian": 1}}]}"#, "(id \"a\").options: unknown key \"gian\""),
        (r#"{"length": 128, "nodes": [{"id": "o", "type": "OscillatorNode", "params": {"frequnecy": []}}]}"#, "(id \"o\").params.frequnecy"),
        (r#"{"length": 128, "nodes": [{"id": "g", "type": "GainNode"}], "connections": [{"from": "g", "to": "destination", "output": 3}]}"#, "output 3"),
        (r#"{"length": 128, "connections": [{"from": "nowhere", "to": "destination"}]}"#, "no node with id \"nowhere\""),
        (r#"{"length": 128, "nodes": [{"id": "g", "type": "GainNode", "params": {"gain": [["exponentialRampToValueAtTime", 0, 1]]}}]}"#, "(id \"g\").params.gain[0]"),
        (r#"{"length": 128, "nodes": [{"id": "d", "type": "DelayNode", "options": {"maxDelayTime": 0.5, "delayTime": 2}}]}"#, "(id \"d\").options"),
        (r#"{"length": -5}"#, "length"),
        (r#"{"length": 128, "nodes": [{"id": "s", "type": "AudioBufferSourceNode", "options": {"buffer": {"file": "missing.wav"}}}]}"#, "(id \"s\").options.buffer.file"),
        (r#"{"length": 128, "nodes": [{"id": "g", "type": "GainNode"}, {"id": "h", "type": "GainNode"}], "connections": [{"from": "g", "to": "h"}, {"from": "h", "to": "g"}]}"#, "cycle without a DelayNode"),
        (r#"{"length": 128, "sampleRate": 10}"#, "sampleRate"),
    ];
    let wav = dir.path().join("keep.wav");
    std::fs::write(&wav, b"previous contents").unwrap();
    for (i, (json, expected)) in cases.iter().enumerate() {
        let graph = dir.path().join(format!("bad{i}.json"));
        std::fs::write(&graph, json).unwrap();
        let output = byob(&["render", graph.to_str().unwrap(), "-o", wav.to_str().unwrap()]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "case {i}: {message}");
        assert!(message.contains(expected), "case {i}: expected {expected:?} in {message:?}");
        assert!(message.starts_with("error: ") && message.trim_end().lines().count() == 1, "case {i}: one line: {message:?}");
        assert!(!message.contains("panicked"), "case {i}: {message}");
        assert_eq!(std::fs::read(&wav).unwrap(), b"previous contents", "case {i}: output untouched");
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with(".byob-")).collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn play_without_a_device_fails_cleanly() {
    let graph = examples().join("synth.json");
    let output = byob(&["play", graph.to_str().unwrap(), "--duration", "0.05"]);
    let message = stderr(&output);
    assert!(!message.contains("panicked"), "{message}");
    if !output.status.success() {
        // ALSA may print its own diagnostics first; ours is the last line.
        let last = message.trim_end().lines().last().unwrap_or("");
        assert!(last.starts_with("error: ") && last.contains("output"), "{message}");
    }
}

fn light_model(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../byob-tensor/tests/data/onnx-1.22.0/light").join(format!("light_{name}.onnx"))
}

/// The input ONNX's runner uses for light models, arange(n) / n, as .npy.
fn squeezenet_input(dir: &Path) -> PathBuf {
    let n = 3 * 224 * 224;
    let values: Vec<f32> = (0..n).map(|i| (i as f64 / n as f64) as f32).collect();
    npy(dir, "in.npy", "(1, 3, 224, 224)", &values)
}

/// `byob info` lists a model's subgraphs, nested ones under their node's,
/// with the operators of each (Silero VAD: If branches holding the LSTM).
#[test]
fn info_lists_subgraphs() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../byob-tensor/tests/data/real-models/models/silero_vad.onnx");
    let info = byob(&["info", model.to_str().unwrap(), "--ep", "cpu"]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = String::from_utf8_lossy(&info.stdout);
    let listing = text.split_once("subgraphs (as in the file").map(|(_, rest)| rest).unwrap_or_else(|| panic!("no subgraphs listed: {text}"));
    assert!(listing.contains("  If If_0.then_branch: 113 node(s)") && listing.contains("Conv ×6"), "{listing}");
    // The LSTM is in a branch nested one level down.
    assert!(listing.lines().any(|l| l.starts_with("    If ") && l.contains("LSTM")), "{listing}");
}

/// `byob run` on a light model with an .npy input writes the output as
/// .npy, prints latencies, and writes the stats JSON; `byob info` lists the
/// inputs, outputs and where each node runs.
#[test]
fn run_and_info_on_an_onnx_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = light_model("squeezenet");
    let info = byob(&["info", model.to_str().unwrap()]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("data_0 float [1, 3, 224, 224]") && text.contains("Conv") && text.contains("cpu"), "{text}");
    let input = squeezenet_input(dir.path());
    let out = dir.path().join("out");
    let stats = dir.path().join("stats.json");
    let run = byob(&[
        "run",
        model.to_str().unwrap(),
        "--ep",
        "cpu",
        "--input",
        &format!("data_0={}", input.display()),
        "--output-dir",
        out.to_str().unwrap(),
        "--repeat",
        "2",
        "--threads",
        "1",
        "--stats-json",
        stats.to_str().unwrap(),
        "--profile",
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let printed = String::from_utf8_lossy(&run.stdout);
    assert!(printed.contains("median"), "latencies printed");
    assert!(printed.contains("profile:") && printed.contains("PackedConv"), "profile printed: {printed}");
    let written: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(written[0].ends_with(".npy") && !written[0].contains('/'));
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(stats["latencies_ms"].as_array().unwrap().len(), 2);
    let profile = stats["profile"].as_array().unwrap();
    assert!(!profile.is_empty() && profile.iter().all(|s| s["median_ms"].as_f64().unwrap() >= 0.0 && s["op"].is_string()), "{profile:?}");
}

/// `--no-winograd` plans every 3×3 convolution as direct: `info` counts
/// none, and `run` takes it too.
#[test]
fn winograd_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let model = light_model("squeezenet");
    let model = model.to_str().unwrap();
    for (extra, counted) in [(None, "(6 of them 3×3 convolutions by Winograd's algorithm)"), (Some("--no-winograd"), "(0 of them")] {
        let info = byob(&[&["info", model, "--ep", "cpu"][..], extra.as_slice()].concat());
        assert!(info.status.success(), "{}", stderr(&info));
        let text = String::from_utf8_lossy(&info.stdout);
        assert!(text.contains(counted), "{extra:?}: {text}");
    }
    let input = format!("data_0={}", squeezenet_input(dir.path()).display());
    let run = byob(&["run", model, "--ep", "cpu", "--input", &input, "--no-winograd"]);
    assert!(run.status.success(), "{}", stderr(&run));
}

#[test]
fn onnx_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let model = light_model("squeezenet");
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, &std::fs::read(&model).unwrap()[..1000]).unwrap();
    let bad_npy = dir.path().join("bad.npy");
    std::fs::write(&bad_npy, b"not numpy").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["run".into(), corrupt.display().to_string()], "not a valid ONNX model"),
        (vec!["run".into(), model.display().to_string()], "missing input(s) [\"data_0\"]; the model expects: data_0 float [1, 3, 224, 224]"),
        (vec!["run".into(), model.display().to_string(), "--input".into(), format!("data_0={}", bad_npy.display())], "not a valid .npy file"),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = byob(&args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {message}");
        assert!(message.contains(expected), "{args:?}: expected {expected:?} in {message}");
        assert!(!message.contains("panicked"), "{message}");
    }
}

/// `--ep webgpu` (lavapipe in CI) gives the CPU's result, reports the GPU
/// Without a desktop session (no XDG_RUNTIME_DIR: a server, CI, ssh),
/// opening the GPU prints none of the two "error: XDG_RUNTIME_DIR is
/// invalid" lines that Mesa's device-select layer prints there.
#[test]
fn opening_the_gpu_outside_a_session_prints_no_error() {
    let model = light_model("squeezenet");
    let mut info = std::process::Command::new(env!("CARGO_BIN_EXE_byob"));
    info.args(["info", model.to_str().unwrap(), "--ep", "webgpu"]);
    for var in ["XDG_RUNTIME_DIR", "NODEVICE_SELECT", "MESA_VK_DEVICE_SELECT"] {
        info.env_remove(var);
    }
    let output = info.output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!stderr(&output).contains("error"), "{}", stderr(&output));
}

/// counters (no GPU buffer created after the first run), and `info` and
/// `--ep auto` say the GPU takes the nodes.
#[test]
fn webgpu_runs_match_cpu_runs() {
    let dir = tempfile::tempdir().unwrap();
    let model = light_model("squeezenet");
    let input = squeezenet_input(dir.path());
    let run = |ep: &str, extra: &[&str]| {
        let tag = format!("{ep}{}", extra.join(""));
        let out = dir.path().join(&tag);
        let stats = dir.path().join(format!("{tag}.json"));
        let input_arg = format!("data_0={}", input.display());
        let mut args = vec!["run", model.to_str().unwrap(), "--ep", ep, "--input", &input_arg, "--output-dir", out.to_str().unwrap(), "--repeat", "3", "--stats-json", stats.to_str().unwrap()];
        args.extend(extra);
        let output = byob(&args);
        assert!(output.status.success(), "--ep {ep}: {}", stderr(&output));
        let file = std::fs::read_dir(&out).unwrap().next().unwrap().unwrap().path();
        let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        (byob_tensor::npy::read(&file).unwrap(), stats, stderr(&output))
    };
    let (cpu, _, _) = run("cpu", &[]);
    let (gpu, stats, said) = run("webgpu", &[]);
    assert!(said.contains("execution provider: webgpu"), "{said}");
    assert_eq!(cpu.shape(), gpu.shape());
    for (a, b) in cpu.as_f32().unwrap().iter().zip(gpu.as_f32().unwrap()) {
        assert!((a - b).abs() <= 1e-4 * a.abs() + 1e-6, "cpu {a} vs webgpu {b}");
    }
    assert_eq!(stats["provider"], "webgpu");
    let allocations: Vec<u64> = stats["gpu_buffer_allocations_per_run"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(allocations.len(), 3);
    assert!(allocations[0] > 0 && allocations[1..] == [0, 0], "{allocations:?}");
    assert!(stats["gpu_peak_bytes"][2].as_u64().unwrap() >= stats["gpu_lower_bound_bytes"][2].as_u64().unwrap());
    // Outputs kept on the GPU: the same values, read back once at the end,
    // none per run (the counters are cumulative).
    let (kept, stats, _) = run("webgpu", &["--outputs-on-gpu"]);
    assert_eq!(kept.as_f32().unwrap(), gpu.as_f32().unwrap());
    let downloads: Vec<u64> = stats["gpu_host_downloads"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(downloads.windows(2).all(|w| w[0] == w[1]), "{downloads:?}");
    assert_eq!(stats["device_transfers_per_run"], serde_json::json!([0, 0, 0]));
    let refused = byob(&["run", model.to_str().unwrap(), "--ep", "cpu", "--outputs-on-gpu"]);
    assert!(!refused.status.success() && stderr(&refused).contains("--outputs-on-gpu needs the WebGPU provider"), "{}", stderr(&refused));
    let info = byob(&["info", model.to_str().unwrap(), "--ep", "auto"]);
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success() && text.contains("webgpu") && text.contains("Conv"), "{text}{}", stderr(&info));
}

/// The VAD-gated voice: the neural node reports itself; bad processor
/// options name the node and the key, and nothing is written.
#[test]
fn neural_nodes_report_and_refuse_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("vad.wav");
    let graph = examples().join("vad-gate.json");
    let output = byob(&["render", graph.to_str().unwrap(), "-o", wav.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("neural node 1 (silero_vad.onnx): mode render, latency 32.0 ms, 299 inferences, 0 deadlines missed, zero-copy input"), "{stdout}");

    let text = std::fs::read_to_string(&graph).unwrap();
    let model = examples().join("../../crates/byob-tensor/tests/data/real-models/models/silero_vad.onnx");
    let speech = examples().join("speech.wav");
    let text = text.replace("../../crates/byob-tensor/tests/data/real-models/models/silero_vad.onnx", model.to_str().unwrap()).replace("\"speech.wav\"", &format!("{:?}", speech.to_str().unwrap()));
    let cases = [
        (text.replace("\"stateN\": \"state\"", "\"stateM\": \"state\""), "processorOptions.state.stateM: the model has no output \"stateM\""),
        (text.replace("\"frame\": 512", "\"frame\": 0"), "processorOptions.frame"),
        (text.replace("\"mode\": \"render\"", "\"mode\": \"realtime\""), "processorOptions.mode"),
        (text.replace("\"mode\": \"render\"", "\"mode\": \"worker\", \"deadline\": -1"), "processorOptions.deadline"),
        (text.replace("\"ep\": \"cpu\"", "\"ep\": \"webgpu\""), "processorOptions.ep: webgpu runs only in mode \"worker\""),
        (text.replace(model.to_str().unwrap(), "missing.onnx"), "processorOptions.model"),
        (text.replace("{\"sr\": {\"int64\": 16000}}", "{}"), "processorOptions.constants: the model's input \"sr\" is fed by nothing"),
    ];
    // Mode "worker": the same node on the inference thread, later by its
    // deadline, on the WebGPU provider (a software adapter where there is
    // no GPU); offline, nothing is missed.
    let worker = dir.path().join("worker.json");
    std::fs::write(&worker, text.replace("\"mode\": \"render\", \"ep\": \"cpu\"", "\"mode\": \"worker\", \"ep\": \"webgpu\"")).unwrap();
    let output = byob(&["render", worker.to_str().unwrap(), "-o", wav.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("neural node 1 (silero_vad.onnx): mode worker, ep webgpu (") && stdout.contains(" steps on the GPU), latency "), "{stdout}");
    assert!(stdout.contains(" ms, 299 inferences, 0 deadlines missed, zero-copy input"), "{stdout}");

    let out = dir.path().join("never.wav");
    for (i, (json, expected)) in cases.iter().enumerate() {
        let bad = dir.path().join(format!("bad{i}.json"));
        std::fs::write(&bad, json).unwrap();
        let output = byob(&["render", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "case {i}: {message}");
        assert!(message.contains("(id \"vad\")") && message.contains(expected), "case {i}: expected {expected:?} in {message:?}");
        assert!(message.trim_end().lines().count() == 1 && !message.contains("panicked"), "case {i}: {message:?}");
        assert!(!out.exists(), "case {i}: nothing written");
    }
}

/// `byob play --sink none` plays on the spec's null sink, with no device:
/// at real-time pace, reporting the render capacity of its callbacks.
#[test]
fn play_on_the_null_sink() {
    let graph = examples().join("chord.json");
    let output = byob(&["play", graph.to_str().unwrap(), "--sink", "none", "--duration", "0.3"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("on the null sink (no device) at 44100 Hz"), "{said}");
    let callbacks: usize = said.split("over ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{said}"));
    // 0.3 s at 44.1 kHz in 256-frame buffers, and the few the sink asked
    // for while the context was closing.
    let expected = (0.3f64 * 44100.0 / 256.0).ceil() as usize;
    assert!((expected..expected + 10).contains(&callbacks), "{said}");
    assert!(said.contains("render capacity: load "), "{said}");
}

/// A graph whose notes and effects come from its score: played live on
/// the null sink (changes sent while it plays), it captures exactly the
/// samples `byob render` writes.
#[test]
fn a_score_played_live_captures_what_render_writes() {
    let dir = tempfile::tempdir().unwrap();
    let graph = examples().join("live-notes.json");
    let (offline, live) = (dir.path().join("offline.wav"), dir.path().join("live.wav"));
    let output = byob(&["render", graph.to_str().unwrap(), "-o", offline.to_str().unwrap(), "--duration", "2.5"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let output = byob(&["play", graph.to_str().unwrap(), "--sink", "none", "--duration", "2.5", "--capture", live.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("with a score of 119 changes") && said.contains("nodes released and freed off the render thread"), "{said}");
    let samples = |path: &Path| hound::WavReader::open(path).unwrap().into_samples::<f32>().map(Result::unwrap).collect::<Vec<f32>>();
    let (a, b) = (samples(&offline), samples(&live));
    assert_eq!(a.len(), 2 * 120000);
    assert!(a == b, "live and offline differ first at sample {:?}", a.iter().zip(&b).position(|(x, y)| x != y));
    // A score entry that names no node fails with its place in the file.
    let score = dir.path().join("bad-score.json");
    std::fs::write(&score, r#"{"score": [{"time": 0.5, "node": "nobody", "stop": 1}]}"#).unwrap();
    let output = byob(&["render", graph.to_str().unwrap(), "-o", offline.to_str().unwrap(), "--score", score.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("score[0].node: no node with id \"nobody\""), "{}", stderr(&output));
}
