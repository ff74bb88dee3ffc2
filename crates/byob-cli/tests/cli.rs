//! End-to-end tests of the `byob` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn byob(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_byob")).args(args).output().expect("byob runs")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/graphs")
}

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
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with(".tmp")).collect();
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
