//! Crafted inputs, as a hostile user would make them: each must end in one
//! clean line of error and exit status 1, never a panic, a signal or a
//! wrong result, and must leave no output behind.

mod support;

use byob_tensor::proto::{self, attribute_type, type_proto, TensorProto};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{byob, examples, npy};

/// A float tensor type whose dimensions are all symbolic (`None`) or known.
fn value(name: &str, dims: &[Option<i64>]) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = |(i, d): (usize, &Option<i64>)| Dimension { value: Some(d.map_or_else(|| Value::DimParam(format!("{name}{i}")), Value::DimValue)) };
    let shape = proto::TensorShapeProto { dim: dims.iter().enumerate().map(dim).collect() };
    let tensor = type_proto::Tensor { elem_type: 1, shape: Some(shape) };
    proto::ValueInfoProto { name: name.into(), r#type: Some(proto::TypeProto { value: Some(type_proto::Value::TensorType(tensor)) }) }
}

/// A one-node model, written to `dir/name`.
fn model(dir: &Path, name: &str, node: proto::NodeProto, inputs: Vec<proto::ValueInfoProto>, initializer: Vec<TensorProto>) -> PathBuf {
    graph_model(dir, name, vec![node], inputs, initializer)
}

/// A model whose outputs are its nodes' first outputs.
fn graph_model(dir: &Path, name: &str, nodes: Vec<proto::NodeProto>, inputs: Vec<proto::ValueInfoProto>, initializer: Vec<TensorProto>) -> PathBuf {
    let output = nodes.iter().map(|n| value(&n.output[0], &[])).collect();
    let graph = proto::GraphProto { node: nodes, name: "g".into(), initializer, input: inputs, output, ..Default::default() };
    let model = proto::ModelProto { ir_version: 8, opset_import: vec![proto::OperatorSetIdProto { domain: String::new(), version: 13 }], graph: Some(graph), ..Default::default() };
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

fn node(op: &str, inputs: &[&str], attribute: Vec<proto::AttributeProto>) -> proto::NodeProto {
    proto::NodeProto { input: inputs.iter().map(|s| s.to_string()).collect(), output: vec!["y".into()], name: "n".into(), op_type: op.into(), attribute, ..Default::default() }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The files in `dir`, by name.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Exit status 1, one line on stderr that contains `expected`, nothing in
/// the output folder.
fn assert_refused(args: &[&str], expected: &str, out: &Path) {
    let output = byob(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("execution provider:")).collect();
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(errors.len(), 1, "one line: {stderr}");
    assert!(errors[0].contains(expected), "{args:?}: expected {expected:?} in {stderr}");
    assert!(!out.exists() || std::fs::read_dir(out).unwrap().next().is_none(), "{args:?} wrote an output");
}

/// The memory-unsafe crash of the hardening issue: a 144-byte `.npy` whose
/// shape (2^62 + 1, 4) wraps to 4 elements once reached a MatMul with
/// symbolic dimensions, whose GEMM read out of bounds.
#[test]
fn a_shape_whose_size_wraps_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &Path| p.display().to_string();
    let m = model(dir.path(), "matmul.onnx", node("MatMul", &["a", "b"], vec![]), vec![value("a", &[None, None]), value("b", &[None, None])], vec![]);
    let a = npy(dir.path(), "a.npy", "(4611686018427387905, 4)", &[1.0; 4]);
    assert_eq!(std::fs::metadata(&a).unwrap().len(), 144);
    let b = npy(dir.path(), "b.npy", "(4, 1)", &[1.0; 4]);
    let out = dir.path().join("out");
    let args = ["run", &path(&m), "--ep", "cpu", "--input", &format!("a={}", path(&a)), "--input", &format!("b={}", path(&b)), "--output-dir", &path(&out)];
    assert_refused(&args, "shape [4611686018427387905, 4] is too large", &out);
}

/// Conv pads of 2^62 once made an output whose size wrapped, written as a
/// `.npy` claiming 2^62 rows over a few values, with status 0.
#[test]
fn window_pads_that_overflow_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = |p: &Path| p.display().to_string();
    let pads = proto::AttributeProto { name: "pads".into(), r#type: attribute_type::INTS, ints: vec![1 << 62, 0, 1 << 62, 0], ..Default::default() };
    let w = TensorProto { name: "w".into(), dims: vec![1, 1, 1, 1], data_type: 1, float_data: vec![1.0], ..Default::default() };
    let m = model(dir.path(), "conv.onnx", node("Conv", &["x", "w"], vec![pads]), vec![value("x", &[Some(1), Some(1), Some(2), Some(2)])], vec![w]);
    let x = npy(dir.path(), "x.npy", "(1, 1, 2, 2)", &[1.0; 4]);
    let out = dir.path().join("out");
    let args = ["run", &path(&m), "--ep", "cpu", "--input", &format!("x={}", path(&x)), "--output-dir", &path(&out)];
    assert_refused(&args, "too large", &out);
}

/// Initializer dims whose product wraps are refused at load.
#[test]
fn initializer_dims_that_overflow_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = TensorProto { name: "w".into(), dims: vec![(1 << 62) + 1, 4], data_type: 1, float_data: vec![1.0; 4], ..Default::default() };
    let m = model(dir.path(), "add.onnx", node("Add", &["x", "w"], vec![]), vec![value("x", &[None, None])], vec![w]);
    let out = dir.path().join("out");
    assert_refused(&["info", &m.display().to_string(), "--ep", "cpu"], "initializer \"w\": shape [4611686018427387905, 4] of float is too large", &out);
}

/// A FIFO or a device named as a model or an input is refused at once,
/// instead of blocking forever or reading without end.
#[test]
fn only_regular_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let fifo = dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for file in [fifo.display().to_string(), "/dev/zero".into()] {
        assert_refused(&["info", &file, "--ep", "cpu"], &format!("error: {file}: not a regular file (a FIFO, socket or device)"), &out);
    }
    let m = model(dir.path(), "matmul.onnx", node("MatMul", &["a", "b"], vec![]), vec![value("a", &[None, None]), value("b", &[None, None])], vec![]);
    let args = ["run", &m.display().to_string(), "--ep", "cpu", "--input", &format!("a={}", fifo.display()), "--input", "b=/dev/zero"];
    assert_refused(&args, "not a regular file", &out);
}

/// Outputs that cannot all be written are refused before the render
/// starts, and nothing is written: `--plot` onto `-o`, a plot in a missing
/// folder, a plot that is not a PNG, a symbolic link, a FIFO.
#[test]
fn render_outputs_are_checked_before_the_render() {
    let dir = tempfile::tempdir().unwrap();
    let graph = examples().join("synth.json");
    let graph = graph.to_str().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(at("kept.wav"), "kept").unwrap();
    std::os::unix::fs::symlink(at("kept.wav"), at("link.wav")).unwrap();
    assert!(Command::new("mkfifo").arg(at("fifo.wav")).status().unwrap().success());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![at("out.png"), "--plot".into(), at("./out.png")], "is also where another output of this command goes"),
        (vec![at("out.wav"), "--plot".into(), at("missing/p.png")], "does not exist"),
        (vec![at("out.wav"), "--plot".into(), at("p.jpg")], "the plot is a PNG file"),
        (vec![at("link.wav")], "is a symbolic link"),
        (vec![at("fifo.wav")], "is not a regular file"),
        (vec![at("missing/out.wav")], "does not exist"),
    ];
    let before = listing(dir.path());
    for (outputs, expected) in cases {
        let args: Vec<&str> = ["render", graph, "-o"].into_iter().chain(outputs.iter().map(String::as_str)).collect();
        assert_refused(&args, expected, &dir.path().join("no-output-folder"));
        assert_eq!(listing(dir.path()), before, "{args:?} changed the folder");
    }
    assert_eq!(std::fs::read_to_string(at("kept.wav")).unwrap(), "kept");
}

/// New outputs get the permissions the umask gives (0644 under 022), not
/// a temporary file's 0600; a render with a plot commits both.
#[test]
fn outputs_get_the_umask_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (wav, png) = (dir.path().join("a.wav"), dir.path().join("a.png"));
    let output = Command::new("sh")
        .args(["-c", &format!("umask 022 && exec {} render {} -o {} --plot {}", env!("CARGO_BIN_EXE_byob"), examples().join("synth.json").display(), wav.display(), png.display())])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for path in [&wav, &png] {
        assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o644, "{}", path.display());
    }
    assert_eq!(listing(dir.path()), ["a.png", "a.wav"]);
}

/// Killed mid-render, byob removes the temporary file of its output.
#[test]
fn a_killed_render_leaves_no_temporary_file() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("long.wav");
    let mut child = Command::new(env!("CARGO_BIN_EXE_byob"))
        .args(["render", &examples().join("synth.json").display().to_string(), "-o", &wav.display().to_string(), "--duration", "3000", "--format", "s16"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The output is staged before the render starts: wait for its file.
    let staged = || listing(dir.path()).iter().any(|n| n.starts_with(".byob-"));
    let start = std::time::Instant::now();
    while !staged() && start.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(staged(), "the render never staged its output");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

/// Two outputs whose names map to one file (`a/b` and `a_b`), and a
/// statistics file in a missing folder, are errors before anything is
/// written; so are a repeated input and out-of-range flags.
#[test]
fn run_outputs_and_flags_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let mut relu = node("Relu", &["x"], vec![]);
    relu.output = vec!["a/b".into()];
    let mut neg = node("Neg", &["x"], vec![]);
    (neg.output, neg.name) = (vec!["a_b".into()], "m".into());
    let m = graph_model(dir.path(), "two.onnx", vec![relu, neg], vec![value("x", &[Some(2)])], vec![]);
    let x = npy(dir.path(), "x.npy", "(2,)", &[1.0, -1.0]);
    let (m, input) = (m.display().to_string(), format!("x={}", x.display()));
    let out = dir.path().join("out");
    let run = |extra: &[&str]| -> Vec<String> { ["run", m.as_str(), "--ep", "cpu", "--input", input.as_str()].iter().chain(extra).map(|s| s.to_string()).collect() };
    assert_refused(&strs(&run(&["--output-dir", &at("out")])), "outputs \"a/b\" and \"a_b\" would both be written to a_b.npy", &out);
    assert_refused(&strs(&run(&["--stats-json", &at("missing/s.json"), "--output-dir", &at("out2")])), "does not exist", &dir.path().join("out2"));
    assert_refused(&strs(&run(&["--input", input.as_str()])), "--input x: the input is given twice", &out);
    assert_refused(&strs(&run(&["--repeat", "1000000000"])), "--repeat must be from 1 to 1000000", &out);
    assert_refused(&strs(&run(&["--threads", "100000"])), "--threads must be from 1 to 1024", &out);
    assert_refused(&["render", &examples().join("synth.json").display().to_string(), "-o", &at("w.wav"), "--wasm-time-limit", "1e30"], "--wasm-time-limit must be", &out);
    assert_refused(&["render", &examples().join("synth.json").display().to_string(), "-o", &at("w.wav"), "--wasm-max-functions", "0"], "--wasm-max-functions must be from 1", &out);
    // The compile limits are flags, and the refusal names the flag.
    let wasm = examples().join("wasm-gain.json").display().to_string();
    assert_refused(&["render", &wasm, "-o", &at("w.wav"), "--wasm-max-function-kib", "100000"], "--wasm-max-function-kib must be from 1", &out);
    assert_refused(&["render", &wasm, "-o", &at("w.wav"), "--wasm-max-functions", "1"], "byob render --wasm-max-functions", &out);
    assert!(!dir.path().join("w.wav").exists());
}

/// A folder for graph files with an empty output folder inside: the
/// folder, the output folder and the WAV path to render to.
fn render_scratch() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("out");
    std::fs::create_dir(&folder).unwrap();
    let out = folder.join("o.wav").display().to_string();
    (dir, folder, out)
}

/// Writes `json` to `dir/name` and returns the path.
fn write_graph(dir: &Path, name: &str, json: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, json).unwrap();
    path.display().to_string()
}

/// Sizes past the limits are refused before anything is allocated or
/// rendered, each with the limit named: a render longer than a WAV file
/// holds, a DelayNode past the memory limit, processor options that size
/// memory, a Faust-free worklet with 1e12 channels.
#[test]
fn render_sizes_past_the_limits_are_refused() {
    let (dir, folder, out) = render_scratch();
    let graph = |json: &str| write_graph(dir.path(), &format!("g{}.json", json.len()), json);
    let long = graph(r#"{"length": 1e12}"#);
    assert_refused(&["render", &long, "-o", &out], "more than a WAV file holds (4 GiB)", &folder);
    let synth = examples().join("synth.json").display().to_string();
    assert_refused(&["render", &synth, "-o", &out, "--length", "600000000"], "more than a WAV file holds", &folder);
    assert_refused(&["render", &synth, "-o", &out, "--duration", "1e300"], "more than a WAV file holds", &folder);
    let delay = graph(r#"{"length": 128, "sampleRate": 768000, "nodes": [{"id": "d", "type": "DelayNode", "options": {"maxDelayTime": 179, "channelCount": 32, "channelCountMode": "explicit"}}]}"#);
    assert_refused(&["render", &delay, "-o", &out], "past the memory limit of 4294967296 bytes", &folder);
    assert_refused(&["render", &synth, "-o", &out, "--max-memory-mib", "0"], "the rendered buffer of 96000 frames needs 768000 bytes, past the memory limit of 0 bytes", &folder);
    for (processor, option) in [("gain", "maxChannels"), ("ping-pong", "delayQuanta")] {
        let json = format!(r#"{{"length": 128, "nodes": [{{"id": "w", "type": "AudioWorkletNode", "processor": "{processor}", "options": {{"processorOptions": {{"{option}": 1e12}}}}}}]}}"#);
        assert_refused(&["render", &graph(&json), "-o", &out], &format!("processorOptions.{option} must be a whole number from 0 to"), &folder);
    }
}

/// Graph files that would silently mean something else, or whose error
/// once lacked the file's name: a key given twice, a cycle without a
/// DelayNode (found when the graph compiles), 100,000 parameter
/// descriptors (once 15 s of quadratic checking).
#[test]
fn graph_file_errors_name_the_file_and_place() {
    let (dir, folder, out) = render_scratch();
    let graph = |name: &str, json: &str| write_graph(dir.path(), name, json);
    let twice = graph("twice.json", r#"{"length": 128, "nodes": [{"id": "g", "type": "GainNode", "options": {"gain": 1, "gain": 0}}]}"#);
    assert_refused(&["render", &twice, "-o", &out], "twice.json:1:", &folder);
    assert_refused(&["render", &twice, "-o", &out], "the key \"gain\" appears twice in one object", &folder);
    let cycle = graph(
        "cycle.json",
        r#"{"length": 128, "nodes": [{"id": "g", "type": "GainNode"}, {"id": "h", "type": "GainNode"}], "connections": [{"from": "g", "to": "h"}, {"from": "h", "to": "g"}]}"#,
    );
    assert_refused(&["render", &cycle, "-o", &out], &format!("{cycle}: cycle without a DelayNode"), &folder);
    let descriptors: Vec<String> = (0..100_000).map(|i| format!(r#"{{"name": "p{i}"}}"#)).collect();
    let many = graph(
        "many.json",
        &format!(r#"{{"length": 128, "nodes": [{{"id": "w", "type": "AudioWorkletNode", "module": "x.wasm", "abi": "byob", "parameterDescriptors": [{}]}}]}}"#, descriptors.join(", ")),
    );
    assert_refused(&["render", &many, "-o", &out], "100000 parameters, more than the 4096 a node may have", &folder);
}

/// A ConstantOfShape of 10^10 elements (40 GB) fails with the tensor limit
/// named, at the default limit and at a lowered one, before allocating.
#[test]
fn tensors_past_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let shape = |n: i64| TensorProto { name: "shape".into(), dims: vec![1], data_type: 7, int64_data: vec![n], ..Default::default() };
    let big = model(dir.path(), "big.onnx", node("ConstantOfShape", &["shape"], vec![]), vec![], vec![shape(10_000_000_000)]);
    let big = big.display().to_string();
    assert_refused(&["run", &big, "--ep", "cpu", "--output-dir", &out.display().to_string()], "needs 40000000000 bytes, more than the 4294967296 a tensor may take", &out);
    let small = model(dir.path(), "small.onnx", node("ConstantOfShape", &["shape"], vec![]), vec![], vec![shape(1 << 20)]);
    let small = small.display().to_string();
    assert_refused(&["run", &small, "--ep", "cpu", "--max-tensor-mib", "1"], "needs 4194304 bytes, more than the 1048576 a tensor may take", &out);
    let run = byob(&["run", &small, "--ep", "cpu", "--max-tensor-mib", "4"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
}

/// Three 4 MiB tensors whose sizes only the run knows (ConstantOfShape of
/// a computed shape), each within the tensor limit: the third is refused
/// under a 10 MiB run limit, with the run limit named; 16 MiB holds them.
#[test]
fn runs_past_their_total_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let to_int64 = proto::AttributeProto { name: "to".into(), r#type: attribute_type::INT, i: 7, ..Default::default() };
    let named = |op: &str, input: &str, output: &str, attribute: Vec<proto::AttributeProto>| proto::NodeProto { output: vec![output.into()], name: output.into(), ..node(op, &[input], attribute) };
    let mut nodes = vec![named("Cast", "x", "s", vec![to_int64])];
    nodes.extend(["y1", "y2", "y3"].map(|y| named("ConstantOfShape", "s", y, vec![])));
    let m = graph_model(dir.path(), "three.onnx", nodes, vec![value("x", &[Some(1)])], vec![]).display().to_string();
    let x = npy(dir.path(), "x.npy", "(1,)", &[(1 << 20) as f32]);
    let input = format!("x={}", x.display());
    let out_dir = out.display().to_string();
    let args = |mib: &'static str| vec!["run", &m, "--ep", "cpu", "--input", &input, "--output-dir", &out_dir, "--max-run-mib", mib];
    assert_refused(&args("10"), "node \"y3\" (ConstantOfShape): needs 4194304 bytes with 8388616 already held, more than the 10485760 one run's tensors may hold (SessionBuilder::with_max_run_bytes; byob run --max-run-mib)", &out);
    let run = byob(&args("16"));
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert_eq!(listing(&out), ["s.npy", "y1.npy", "y2.npy", "y3.npy"]);
}
