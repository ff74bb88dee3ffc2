//! Crafted inputs, as a hostile user would make them: each must end in one
//! clean line of error and exit status 1, never a panic, a signal or a
//! wrong result, and must leave no output behind.

use byob_tensor::proto::{self, attribute_type, type_proto, TensorProto};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn byob(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_byob")).args(args).output().expect("byob runs")
}

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
    let output = value(&node.output[0], &[None, None, None, None][..0]);
    let graph = proto::GraphProto { node: vec![node], name: "g".into(), initializer, input: inputs, output: vec![output], ..Default::default() };
    let model = proto::ModelProto { ir_version: 8, opset_import: vec![proto::OperatorSetIdProto { domain: String::new(), version: 13 }], graph: Some(graph), ..Default::default() };
    let path = dir.join(name);
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

fn node(op: &str, inputs: &[&str], attribute: Vec<proto::AttributeProto>) -> proto::NodeProto {
    proto::NodeProto { input: inputs.iter().map(|s| s.to_string()).collect(), output: vec!["y".into()], name: "n".into(), op_type: op.into(), attribute, ..Default::default() }
}

/// A float32 `.npy` file with `header_shape` in its header and `values`
/// after it, whatever they number.
fn npy(dir: &Path, name: &str, header_shape: &str, values: &[f32]) -> PathBuf {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {header_shape}, }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
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
