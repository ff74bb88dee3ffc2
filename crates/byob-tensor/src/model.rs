//! Loading ONNX models into byob's IR: nodes, values, initializers and
//! opsets, with every malformed input reported, never a panic.

use crate::proto;
use crate::tensor::{element_count, Data, DataType, Tensor, TensorError};
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("not a valid ONNX model (truncated or corrupt protobuf): {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("the model has no graph")]
    NoGraph,
    #[error("initializer {name:?}: {what}")]
    Initializer { name: String, what: String },
    #[error("node {node:?} ({op}): attribute {attribute:?}: {what}")]
    Attribute { node: String, op: String, attribute: String, what: String },
    #[error("{what:?}: {reason}")]
    Value { what: String, reason: String },
    #[error("value {value:?} is produced twice: by {first} and by {second}")]
    ProducedTwice { value: String, first: String, second: String },
    #[error("graph output {0:?} is produced by no node, input or initializer")]
    OutputNotProduced(String),
    #[error("the model imports opset {version} of the default domain; byob knows opsets 1 to {MAX_OPSET}")]
    Opset { version: i64 },
}

/// The newest default-domain opset byob knows (onnx 1.22.0's).
pub const MAX_OPSET: i64 = 27;

/// A dimension of a declared shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    /// A named dimension (`batch`), fixed only when inputs arrive.
    Symbolic(String),
    Unknown,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Known(n) => write!(f, "{n}"),
            Self::Symbolic(s) => f.write_str(s),
            Self::Unknown => f.write_str("?"),
        }
    }
}

/// A graph input or output as declared.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub dtype: Option<DataType>,
    pub shape: Option<Vec<Dim>>,
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attribute {
    Float(f32),
    Int(i64),
    String(String),
    Tensor(Tensor),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<String>),
    /// A subgraph (If's branches, Loop's and Scan's bodies).
    Graph(Box<Subgraph>),
}

/// A subgraph and the values of enclosing graphs it reads ("captures",
/// in the order they were first read). The node that holds it lists its
/// captures after its own inputs, so every pass and the session see them
/// as inputs: producers stay alive and run first.
#[derive(Clone, Debug, PartialEq)]
pub struct Subgraph {
    pub graph: Graph,
    pub captures: Vec<String>,
}

/// How deep subgraphs may nest (prost's own limit on nested messages is
/// 100; a branch inside a loop body inside a branch is 3).
pub const MAX_SUBGRAPH_DEPTH: usize = 16;

impl Graph {
    /// The values this graph's nodes read that it does not produce itself
    /// (as an input, an initializer or a node output): what it captures
    /// from enclosing graphs. A nested subgraph's captures are already
    /// inputs of the node holding it.
    fn free_values(&self) -> Vec<String> {
        let produced: std::collections::HashSet<&str> = self
            .inputs
            .iter()
            .map(|v| v.name.as_str())
            .chain(self.initializers.keys().map(String::as_str))
            .chain(self.nodes.iter().flat_map(|n| n.outputs.iter().map(String::as_str)))
            .collect();
        let mut free: Vec<String> = Vec::new();
        let read = self.nodes.iter().flat_map(|n| n.inputs.iter()).chain(self.outputs.iter().map(|v| &v.name));
        for name in read {
            if !name.is_empty() && !produced.contains(name.as_str()) && !free.contains(name) {
                free.push(name.clone());
            }
        }
        free
    }
}

/// One operator application.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's name, or a generated `op_type#index` when it has none.
    pub name: String,
    pub op_type: String,
    pub domain: String,
    /// Input value names; `""` marks an omitted optional input.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attributes: HashMap<String, Attribute>,
}

/// The computation graph.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    /// Graph inputs that are not initializers: what a caller must feed.
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub initializers: HashMap<String, Tensor>,
}

impl Graph {
    /// Each value has one producer (a graph input, an initializer or one
    /// node output) and every graph output has one. ONNX requires both
    /// (static single assignment); a second producer silently replaced the
    /// first before this check.
    fn check_producers(&self) -> Result<(), ModelError> {
        let mut producers: HashMap<&str, String> = HashMap::new();
        let inputs = self.inputs.iter().map(|v| (v.name.as_str(), "a graph input".to_string()));
        let initializers = self.initializers.keys().map(|n| (n.as_str(), "an initializer".to_string()));
        let outputs = self.nodes.iter().flat_map(|n| n.outputs.iter().filter(|o| !o.is_empty()).map(move |o| (o.as_str(), format!("node {:?}", n.name))));
        for (value, producer) in inputs.chain(initializers).chain(outputs) {
            if let Some(first) = producers.insert(value, producer.clone()) {
                return Err(ModelError::ProducedTwice { value: value.to_string(), first, second: producer });
            }
        }
        match self.outputs.iter().find(|o| !producers.contains_key(o.name.as_str())) {
            Some(missing) => Err(ModelError::OutputNotProduced(missing.name.clone())),
            None => Ok(()),
        }
    }
}

/// A loaded model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub ir_version: i64,
    pub producer: String,
    /// Opset version per domain (`""` is the default ONNX domain).
    pub opsets: HashMap<String, i64>,
    pub graph: Graph,
}

/// The largest model file: protobuf's own limit on a message (2 GiB);
/// larger models keep their weights in external data files.
pub const MAX_MODEL_BYTES: u64 = (1 << 31) - 1;

impl Model {
    pub fn load(path: &Path) -> Result<Self, ModelError> {
        let bytes = byob_files::read_regular(path, MAX_MODEL_BYTES, "an ONNX model").map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(&bytes, path.parent())
    }

    /// Decodes a model; `base_dir` locates external data files.
    pub fn from_bytes(bytes: &[u8], base_dir: Option<&Path>) -> Result<Self, ModelError> {
        let proto = proto::ModelProto::decode(bytes)?;
        let graph = proto.graph.ok_or(ModelError::NoGraph)?;
        let opsets = proto.opset_import.iter().map(|o| (o.domain.clone(), o.version)).collect();
        let model = Self { ir_version: proto.ir_version, producer: proto.producer_name, opsets, graph: convert_graph(graph, base_dir, None, 0)? };
        if !(1..=MAX_OPSET).contains(&model.opset()) {
            return Err(ModelError::Opset { version: model.opset() });
        }
        model.graph.check_producers()?;
        Ok(model)
    }

    /// The default-domain opset.
    pub fn opset(&self) -> i64 {
        self.opsets.get("").or_else(|| self.opsets.get("ai.onnx")).copied().unwrap_or(1)
    }
}

/// The constants of the graphs enclosing a subgraph, innermost first:
/// each graph's initializers and the outputs of its `Constant` nodes
/// (exporters put weights in either).
struct Scope<'a> {
    initializers: &'a HashMap<String, Tensor>,
    constant_nodes: &'a HashMap<String, Tensor>,
    outer: Option<&'a Scope<'a>>,
}

impl Scope<'_> {
    fn constant(&self, name: &str) -> Option<&Tensor> {
        self.initializers.get(name).or_else(|| self.constant_nodes.get(name)).or_else(|| self.outer?.constant(name))
    }
}

fn convert_graph(graph: proto::GraphProto, base_dir: Option<&Path>, outer: Option<&Scope>, depth: usize) -> Result<Graph, ModelError> {
    let mut initializers = HashMap::new();
    for t in &graph.initializer {
        initializers.insert(t.name.clone(), tensor_from_proto(t, base_dir)?);
    }
    let inputs = graph.input.iter().filter(|v| !initializers.contains_key(&v.name)).map(value_info).collect::<Result<_, _>>()?;
    let outputs = graph.output.iter().map(value_info).collect::<Result<_, _>>()?;
    let mut constant_nodes = HashMap::new();
    let mut nodes = Vec::with_capacity(graph.node.len());
    for (i, n) in graph.node.into_iter().enumerate() {
        let name = if n.name.is_empty() { format!("{}#{i}", n.op_type) } else { n.name.clone() };
        let scope = Scope { initializers: &initializers, constant_nodes: &constant_nodes, outer };
        let attributes = n
            .attribute
            .iter()
            .map(|a| {
                attribute(a, base_dir, &scope, depth).map(|v| (a.name.clone(), v)).map_err(|what| ModelError::Attribute {
                    node: name.clone(),
                    op: n.op_type.clone(),
                    attribute: a.name.clone(),
                    what,
                })
            })
            .collect::<Result<HashMap<String, Attribute>, ModelError>>()?;
        let mut inputs = n.input;
        let mut graphs: Vec<(&String, &Attribute)> = attributes.iter().filter(|(_, a)| matches!(a, Attribute::Graph(_))).collect();
        graphs.sort_by_key(|(name, _)| *name);
        for (_, attribute) in graphs {
            if let Attribute::Graph(sub) = attribute {
                for capture in &sub.captures {
                    if !inputs.contains(capture) {
                        inputs.push(capture.clone());
                    }
                }
            }
        }
        if let (true, [output], Some(Attribute::Tensor(value))) = (n.op_type == "Constant" && matches!(n.domain.as_str(), "" | "ai.onnx"), n.output.as_slice(), attributes.get("value")) {
            constant_nodes.insert(output.clone(), value.clone());
        }
        nodes.push(Node { name, op_type: n.op_type, domain: n.domain, inputs, outputs: n.output, attributes });
    }
    Ok(Graph { nodes, inputs, outputs, initializers })
}

fn value_info(v: &proto::ValueInfoProto) -> Result<ValueInfo, ModelError> {
    let (dtype, shape) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(proto::type_proto::Value::TensorType(t)) => {
            let shape = t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(proto::tensor_shape_proto::dimension::Value::DimValue(n)) if *n >= 0 => Dim::Known(*n as usize),
                        Some(proto::tensor_shape_proto::dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Symbolic(p.clone()),
                        _ => Dim::Unknown,
                    })
                    .collect()
            });
            (DataType::from_onnx(t.elem_type), shape)
        }
        None => (None, None),
    };
    Ok(ValueInfo { name: v.name.clone(), dtype, shape })
}

fn attribute(a: &proto::AttributeProto, base_dir: Option<&Path>, scope: &Scope, depth: usize) -> Result<Attribute, String> {
    use proto::attribute_type as t;
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| "holds a string that is not UTF-8".to_string());
    Ok(match a.r#type {
        t::FLOAT => Attribute::Float(a.f),
        t::INT => Attribute::Int(a.i),
        t::STRING => Attribute::String(utf8(&a.s)?),
        t::TENSOR => Attribute::Tensor(
            a.t.as_ref()
                .map(|t| tensor_from_proto(t, base_dir).map_err(|e| e.to_string()))
                .transpose()?
                .ok_or_else(|| "should hold a tensor".to_string())?,
        ),
        t::FLOATS => Attribute::Floats(a.floats.clone()),
        t::INTS => Attribute::Ints(a.ints.clone()),
        t::STRINGS => Attribute::Strings(a.strings.iter().map(|s| utf8(s)).collect::<Result<_, _>>()?),
        t::GRAPH if depth >= MAX_SUBGRAPH_DEPTH => return Err(format!("subgraphs nest more than {MAX_SUBGRAPH_DEPTH} deep")),
        t::GRAPH => {
            let graph = *a.g.clone().ok_or_else(|| "should hold a subgraph".to_string())?;
            let mut graph = convert_graph(graph, base_dir, Some(scope), depth + 1).map_err(|e| format!("in the subgraph: {e}"))?;
            // Weights of enclosing graphs that the subgraph reads become its
            // own initializers: constants its session folds and packs once,
            // not inputs handed to it (and sliced, cast, ...) at every run.
            // ONNX forbids a subgraph to reuse an outer name, so the
            // innermost initializer of that name is the one read.
            let (constant, captures): (Vec<String>, Vec<String>) = graph.free_values().into_iter().partition(|c| scope.constant(c).is_some());
            for name in constant {
                let tensor = scope.constant(&name).cloned().unwrap_or_default();
                graph.initializers.insert(name, tensor);
            }
            Attribute::Graph(Box::new(Subgraph { captures, graph }))
        }
        other => return Err(format!("has type {other}, which byob does not support")),
    })
}

/// Decodes a serialized TensorProto (the `.pb` files of ONNX's test data).
pub fn tensor_from_bytes(bytes: &[u8]) -> Result<Tensor, ModelError> {
    tensor_from_proto(&proto::TensorProto::decode(bytes)?, None)
}

/// Decodes a TensorProto: raw data, typed fields, or an external data file.
pub fn tensor_from_proto(t: &proto::TensorProto, base_dir: Option<&Path>) -> Result<Tensor, ModelError> {
    let fail = |what: String| ModelError::Initializer { name: t.name.clone(), what };
    let dtype = DataType::from_onnx(t.data_type).ok_or_else(|| fail(format!("element type {} is not supported", t.data_type)))?;
    let mut shape = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        shape.push(usize::try_from(d).map_err(|_| fail(format!("negative dimension {d}")))?);
    }
    let count = element_count(&shape, dtype).map_err(|e| fail(e.to_string()))?;
    let external;
    let raw: Option<&[u8]> = if t.data_location == 1 {
        external = read_external(t, base_dir, count * dtype.size()).map_err(fail)?;
        Some(&external)
    } else if !t.raw_data.is_empty() {
        Some(&t.raw_data)
    } else {
        None
    };
    let data = match raw {
        Some(bytes) => {
            if bytes.len() != count * dtype.size() {
                return Err(fail(format!("raw data has {} bytes, shape {shape:?} of {dtype} needs {}", bytes.len(), count * dtype.size())));
            }
            decode_raw(dtype, bytes)
        }
        None => match dtype {
            DataType::F32 => Data::F32(t.float_data.clone()),
            DataType::F64 => Data::F64(t.double_data.clone()),
            DataType::I64 => Data::I64(t.int64_data.clone()),
            DataType::I32 => Data::I32(t.int32_data.clone()),
            // The narrow types travel in int32_data (half floats as their
            // bits), the wide unsigned ones in uint64_data.
            DataType::F16 => Data::F16(t.int32_data.iter().map(|&x| half::f16::from_bits(x as u16)).collect()),
            DataType::BF16 => Data::BF16(t.int32_data.iter().map(|&x| half::bf16::from_bits(x as u16)).collect()),
            DataType::I16 => Data::I16(t.int32_data.iter().map(|&x| x as i16).collect()),
            DataType::I8 => Data::I8(t.int32_data.iter().map(|&x| x as i8).collect()),
            DataType::U16 => Data::U16(t.int32_data.iter().map(|&x| x as u16).collect()),
            DataType::U8 => Data::U8(t.int32_data.iter().map(|&x| x as u8).collect()),
            DataType::Bool => Data::Bool(t.int32_data.iter().map(|&x| x != 0).collect()),
            DataType::U64 => Data::U64(t.uint64_data.clone()),
            DataType::U32 => Data::U32(t.uint64_data.iter().map(|&x| x as u32).collect()),
        },
    };
    Tensor::new(shape, data).map_err(|e: TensorError| fail(e.to_string()))
}

/// The elements' little-endian bytes, as TensorProto's raw_data holds them.
pub(crate) fn encode_raw(data: &Data) -> Vec<u8> {
    match data {
        Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::I8(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Data::U8(v) => v.clone(),
        Data::Bool(v) => v.iter().map(|&b| b as u8).collect(),
    }
}

pub(crate) fn decode_raw(dtype: DataType, bytes: &[u8]) -> Data {
    fn chunks<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        bytes.chunks_exact(N).map(|c| f(c.try_into().expect("exact chunks"))).collect()
    }
    match dtype {
        DataType::F32 => Data::F32(chunks(bytes, f32::from_le_bytes)),
        DataType::F64 => Data::F64(chunks(bytes, f64::from_le_bytes)),
        DataType::I64 => Data::I64(chunks(bytes, i64::from_le_bytes)),
        DataType::I32 => Data::I32(chunks(bytes, i32::from_le_bytes)),
        DataType::F16 => Data::F16(chunks(bytes, half::f16::from_le_bytes)),
        DataType::BF16 => Data::BF16(chunks(bytes, half::bf16::from_le_bytes)),
        DataType::I16 => Data::I16(chunks(bytes, i16::from_le_bytes)),
        DataType::U64 => Data::U64(chunks(bytes, u64::from_le_bytes)),
        DataType::U32 => Data::U32(chunks(bytes, u32::from_le_bytes)),
        DataType::U16 => Data::U16(chunks(bytes, u16::from_le_bytes)),
        DataType::I8 => Data::I8(bytes.iter().map(|&b| b as i8).collect()),
        DataType::U8 => Data::U8(bytes.to_vec()),
        DataType::Bool => Data::Bool(bytes.iter().map(|&b| b != 0).collect()),
    }
}

fn read_external(t: &proto::TensorProto, base_dir: Option<&Path>, len: usize) -> Result<Vec<u8>, String> {
    let entry = |key: &str| t.external_data.iter().find(|e| e.key == key).map(|e| e.value.as_str());
    let location = entry("location").ok_or("external data without a location")?;
    let offset: u64 = entry("offset").map(|o| o.parse().map_err(|_| format!("bad offset {o:?}"))).transpose()?.unwrap_or(0);
    if let Some(l) = entry("length") {
        let length: u64 = l.parse().map_err(|_| format!("bad length {l:?}"))?;
        if length != len as u64 {
            return Err(format!("external data length {length} does not match the {len} bytes its shape and type need"));
        }
    }
    let path = external_path(base_dir.unwrap_or(Path::new(".")), location)?;
    let shown = || format!("external data {location:?}");
    let (mut file, size) = byob_files::open_regular(&path).map_err(|e| format!("{}: {e}", shown()))?;
    // The bytes must be there before any is allocated for them.
    if offset.checked_add(len as u64).is_none_or(|end| end > size) {
        return Err(format!("{}: {len} bytes at offset {offset} lie past the end of the file ({size} bytes)", shown()));
    }
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(offset)).map_err(|e| format!("{}: {e}", shown()))?;
    let mut bytes = Vec::new();
    bytes.try_reserve_exact(len).map_err(|_| format!("{}: out of memory reading {len} bytes", shown()))?;
    file.take(len as u64).read_to_end(&mut bytes).map_err(|e| format!("{}: {e}", shown()))?;
    if bytes.len() != len {
        return Err(format!("{}: the file shrank while it was read", shown()));
    }
    Ok(bytes)
}

/// Where external data named `location` lies: inside the model's folder,
/// after every symlink is resolved. The text alone is checked first (no
/// absolute path, no `..`), then the resolved path, so that a symlink in
/// the folder cannot lend the model a file from elsewhere.
fn external_path(base_dir: &Path, location: &str) -> Result<std::path::PathBuf, String> {
    let outside = || format!("external data location {location:?} must be a relative path inside the model's folder");
    let relative = Path::new(location);
    if relative.is_absolute() || relative.components().any(|c| !matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir)) {
        return Err(outside());
    }
    let base_dir = if base_dir.as_os_str().is_empty() { Path::new(".") } else { base_dir };
    let base = base_dir.canonicalize().map_err(|e| format!("the model's folder {}: {e}", base_dir.display()))?;
    let resolved = base.join(relative).canonicalize().map_err(|e| format!("external data {location:?}: {e}"))?;
    if !resolved.starts_with(&base) {
        return Err(format!("external data {location:?} resolves to a file outside the model's folder"));
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn external(dims: &[i64], entries: &[(&str, &str)]) -> proto::TensorProto {
        proto::TensorProto {
            name: "w".into(),
            dims: dims.to_vec(),
            data_type: 1,
            data_location: 1,
            external_data: entries.iter().map(|(k, v)| proto::StringStringEntryProto { key: k.to_string(), value: v.to_string() }).collect(),
            ..Default::default()
        }
    }

    fn error(t: &proto::TensorProto, dir: &Path) -> String {
        tensor_from_proto(t, Some(dir)).unwrap_err().to_string()
    }

    /// Dims whose product wraps, or whose bytes no allocation holds, are
    /// refused before anything is read or allocated.
    #[test]
    fn initializer_sizes_are_checked() {
        let t = proto::TensorProto { name: "w".into(), dims: vec![(1 << 62) + 1, 4], data_type: 1, float_data: vec![0.0; 4], ..Default::default() };
        assert!(error(&t, Path::new(".")).contains("too large"), "{}", error(&t, Path::new(".")));
        let t = external(&[1 << 40, 1 << 30], &[("location", "w.bin")]);
        assert!(error(&t, Path::new(".")).contains("too large"));
    }

    #[test]
    fn external_data_is_read_from_inside_the_model_folder_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("model");
        std::fs::create_dir(&dir).unwrap();
        let bytes: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(dir.join("w.bin"), &bytes).unwrap();
        let secret = root.path().join("secret.bin");
        std::fs::write(&secret, &bytes).unwrap();

        let ok = tensor_from_proto(&external(&[2], &[("location", "w.bin"), ("offset", "4"), ("length", "8")]), Some(&dir)).unwrap();
        assert_eq!(ok.as_f32(), Some(&[2.0, 3.0][..]));

        let e = error(&external(&[3], &[("location", "w.bin"), ("length", "8")]), &dir);
        assert!(e.contains("length 8 does not match the 12 bytes"), "{e}");
        // A declared size the file does not hold: refused before allocating.
        let e = error(&external(&[1 << 40], &[("location", "w.bin")]), &dir);
        assert!(e.contains("past the end of the file (12 bytes)"), "{e}");
        let e = error(&external(&[2], &[("location", "w.bin"), ("offset", "18446744073709551615")]), &dir);
        assert!(e.contains("past the end"), "{e}");
        for location in ["../secret.bin", "/etc/hostname", "a/../../secret.bin"] {
            let e = error(&external(&[3], &[("location", location)]), &dir);
            assert!(e.contains("must be a relative path inside the model's folder"), "{location}: {e}");
        }
        std::os::unix::fs::symlink(&secret, dir.join("link.bin")).unwrap();
        let e = error(&external(&[3], &[("location", "link.bin")]), &dir);
        assert!(e.contains("resolves to a file outside the model's folder"), "{e}");
        // A symlink that stays inside is fine.
        std::os::unix::fs::symlink("w.bin", dir.join("alias.bin")).unwrap();
        assert!(tensor_from_proto(&external(&[3], &[("location", "alias.bin")]), Some(&dir)).is_ok());
        std::fs::create_dir(dir.join("sub")).unwrap();
        let e = error(&external(&[3], &[("location", "sub")]), &dir);
        assert!(e.contains("a folder"), "{e}");
    }

    fn model_bytes(opset: i64, nodes: &[(&str, &[&str], &[&str])], outputs: &[&str]) -> Vec<u8> {
        use prost::Message;
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        let node = |(i, (op, inputs, outs)): (usize, &(&str, &[&str], &[&str]))| proto::NodeProto {
            input: names(inputs),
            output: names(outs),
            name: format!("n{i}"),
            op_type: op.to_string(),
            ..Default::default()
        };
        let value = |name: &&str| proto::ValueInfoProto { name: name.to_string(), r#type: None };
        let graph = proto::GraphProto {
            node: nodes.iter().enumerate().map(node).collect(),
            input: vec![value(&"x")],
            output: outputs.iter().map(value).collect(),
            ..Default::default()
        };
        let model = proto::ModelProto { ir_version: 8, opset_import: vec![proto::OperatorSetIdProto { domain: String::new(), version: opset }], graph: Some(graph), ..Default::default() };
        model.encode_to_vec()
    }

    fn load_error(bytes: &[u8]) -> String {
        Model::from_bytes(bytes, None).unwrap_err().to_string()
    }

    #[test]
    fn graphs_that_break_single_assignment_are_refused() {
        assert!(Model::from_bytes(&model_bytes(13, &[("Relu", &["x"], &["y"])], &["y"]), None).is_ok());
        let twice = model_bytes(13, &[("Relu", &["x"], &["y"]), ("Neg", &["x"], &["y"])], &["y"]);
        assert_eq!(load_error(&twice), "value \"y\" is produced twice: by node \"n0\" and by node \"n1\"");
        let over_input = model_bytes(13, &[("Relu", &["x"], &["x"])], &["x"]);
        assert_eq!(load_error(&over_input), "value \"x\" is produced twice: by a graph input and by node \"n0\"");
        let missing = model_bytes(13, &[("Relu", &["x"], &["y"])], &["y", "z"]);
        assert_eq!(load_error(&missing), "graph output \"z\" is produced by no node, input or initializer");
        assert_eq!(load_error(&model_bytes(99, &[], &["x"])), "the model imports opset 99 of the default domain; byob knows opsets 1 to 27");
    }

    #[test]
    fn models_are_read_from_regular_files_only() {
        let e = Model::load(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.starts_with("/dev/zero: not a regular file"), "{e}");
    }
}
