//! The node's options: `processorOptions` in a graph file, [`OnnxOptions`]
//! from Rust. Checked here, at the boundary; what depends on the model is
//! checked when it loads ([`crate::NeuralModel`]).

use byob_tensor::tensor::TensorError;
use byob_tensor::Tensor;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Where inference runs (see docs/neural-node.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Inside the render quantum in which a frame completes, on the render
    /// thread: one frame of latency.
    #[default]
    Render,
    /// On an inference thread, behind lock-free queues: a fixed, larger
    /// latency, and a slow model never delays a quantum.
    Worker,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Render => "render",
            Self::Worker => "worker",
        }
    }
}

/// Which execution provider runs the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ep {
    #[default]
    Cpu,
    WebGpu,
}

/// How a multichannel input tensor holds its channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// `[1, N]`: one channel.
    #[default]
    Mono,
    /// `[1, channels, N]`.
    ChannelsFirst,
    /// `[1, N, channels]`.
    ChannelsLast,
}

/// The options of an `"onnx"` processor, as in `processorOptions`.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxOptions {
    /// The model file.
    pub model: PathBuf,
    /// The model's sample rate; `None`: the context's.
    pub sample_rate: Option<f32>,
    /// New samples (at the model's rate) per inference.
    pub frame: usize,
    /// Samples of the previous frames prepended to each frame.
    pub context: usize,
    /// The input tensor fed with audio; `None`: the model's first input.
    pub input: Option<String>,
    /// How the input tensor holds channels, and how many.
    pub layout: Layout,
    pub channels: usize,
    /// Other inputs, fixed for every inference.
    pub constants: Vec<(String, Tensor)>,
    /// (output, input) pairs carried from one inference to the next.
    pub state: Vec<(String, String)>,
    /// The output tensor; `None`: the model's first output.
    pub output: Option<String>,
    pub mode: Mode,
    /// Mode "worker": seconds an inference may take, from the quantum in
    /// which its frame completes to the one in which its result is due
    /// (rounded up to whole quanta); `None`: chosen from the model's
    /// measured worst inference time.
    pub deadline: Option<f64>,
    pub ep: Ep,
}

impl OnnxOptions {
    /// Options with defaults for everything but the model and the frame.
    pub fn new(model: impl Into<PathBuf>, frame: usize) -> Self {
        Self {
            model: model.into(),
            sample_rate: None,
            frame,
            context: 0,
            input: None,
            layout: Layout::Mono,
            channels: 1,
            constants: Vec::new(),
            state: Vec::new(),
            output: None,
            mode: Mode::Render,
            deadline: None,
            ep: Ep::Cpu,
        }
    }
}

/// A bad option: the key, from `processorOptions`, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("processorOptions.{key}: {what}")]
pub struct OptionError {
    pub key: String,
    pub what: String,
}

fn bad(key: &str, what: impl Into<String>) -> OptionError {
    OptionError { key: key.to_string(), what: what.into() }
}

/// The most samples a frame (or its context) may hold: ten minutes at
/// 48 kHz, far beyond any streaming model, far below an allocation that
/// could take the machine down.
pub const MAX_FRAME: usize = 48_000 * 600;

const KEYS: [&str; 13] = ["model", "sampleRate", "frame", "context", "input", "layout", "channels", "constants", "state", "output", "mode", "deadline", "ep"];

/// The longest `deadline`: a minute.
pub const MAX_DEADLINE_SECONDS: f64 = 60.0;

impl OnnxOptions {
    /// Reads `processorOptions`; a relative `model` path is taken from
    /// `base` (the graph file's folder).
    pub fn from_json(value: &Value, base: &Path) -> Result<Self, OptionError> {
        let Value::Object(map) = value else { return Err(bad("model", "processorOptions must be an object naming at least \"model\" and \"frame\"")) };
        if let Some(key) = map.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(bad(key, format!("unknown key (known: {})", KEYS.join(", "))));
        }
        let model = match map.get("model") {
            Some(Value::String(s)) if !s.is_empty() => base.join(s),
            Some(_) => return Err(bad("model", "expected the model file's path, a string")),
            None => return Err(bad("model", "required: the ONNX model file")),
        };
        let frame = count(map, "frame")?.ok_or_else(|| bad("frame", "required: new samples per inference"))?;
        if frame == 0 {
            return Err(bad("frame", "must be at least 1"));
        }
        let mut options = Self::new(model, frame);
        options.context = count(map, "context")?.unwrap_or(0);
        options.sample_rate = match map.get("sampleRate") {
            None => None,
            Some(v) => match v.as_f64() {
                Some(r) if (1.0..=768_000.0).contains(&r) && r.fract() == 0.0 => Some(r as f32),
                _ => return Err(bad("sampleRate", format!("expected a whole number of Hz from 1 to 768000, got {v}"))),
            },
        };
        options.input = string(map, "input")?;
        options.output = string(map, "output")?;
        options.layout = match string(map, "layout")?.as_deref() {
            None => Layout::Mono,
            Some("channels-first") => Layout::ChannelsFirst,
            Some("channels-last") => Layout::ChannelsLast,
            Some(other) => return Err(bad("layout", format!("{other:?} is not a layout (channels-first: [1, channels, N]; channels-last: [1, N, channels])"))),
        };
        options.channels = count(map, "channels")?.unwrap_or(1);
        match (options.layout, options.channels) {
            (_, 0) | (_, 33..) => return Err(bad("channels", "must be from 1 to 32")),
            (Layout::Mono, c) if c > 1 => return Err(bad("channels", "more than one channel needs a \"layout\" (channels-first or channels-last)")),
            _ => {}
        }
        options.mode = match string(map, "mode")?.as_deref() {
            None | Some("render") => Mode::Render,
            Some("worker") => Mode::Worker,
            Some(other) => return Err(bad("mode", format!("{other:?} is not a mode (render or worker)"))),
        };
        options.deadline = match map.get("deadline") {
            None => None,
            Some(v) => Some(v.as_f64().ok_or_else(|| bad("deadline", format!("expected seconds, a number, got {v}")))?),
        };
        options.ep = match string(map, "ep")?.as_deref() {
            None | Some("cpu") => Ep::Cpu,
            Some("webgpu") => Ep::WebGpu,
            Some(other) => return Err(bad("ep", format!("{other:?} is not an execution provider (cpu or webgpu)"))),
        };
        if let Some(value) = map.get("constants") {
            let Value::Object(constants) = value else { return Err(bad("constants", "expected an object: input name → {\"int64\": value}")) };
            for (name, v) in constants {
                let key = format!("constants.{name}");
                options.constants.push((name.clone(), constant(v).map_err(|what| bad(&key, what))?));
            }
        }
        if let Some(value) = map.get("state") {
            let Value::Object(pairs) = value else { return Err(bad("state", "expected an object: output name → input name")) };
            for (output, input) in pairs {
                let Value::String(input) = input else { return Err(bad(&format!("state.{output}"), "expected the name of the input it feeds")) };
                options.state.push((output.clone(), input.clone()));
            }
        }
        options.check().map_err(|(key, what)| bad(key, what))?;
        Ok(options)
    }

    /// What holds whatever the options came from: sizes and combinations.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.frame == 0 || self.frame > MAX_FRAME {
            return Err(("frame", format!("must be from 1 to {MAX_FRAME} samples, got {}", self.frame)));
        }
        if self.context > MAX_FRAME {
            return Err(("context", format!("must be at most {MAX_FRAME} samples, got {}", self.context)));
        }
        if self.ep == Ep::WebGpu && self.mode == Mode::Render {
            return Err(("ep", "webgpu runs only in mode \"worker\": its results come back asynchronously, never within a render quantum".into()));
        }
        if let Some(deadline) = self.deadline {
            if self.mode != Mode::Worker {
                return Err(("deadline", "only mode \"worker\" has a deadline (mode \"render\" infers within the quantum)".into()));
            }
            if !(deadline > 0.0 && deadline <= MAX_DEADLINE_SECONDS) {
                return Err(("deadline", format!("must be more than 0 and at most {MAX_DEADLINE_SECONDS} seconds, got {deadline}")));
            }
        }
        Ok(())
    }
}

fn count(map: &Map<String, Value>, key: &str) -> Result<Option<usize>, OptionError> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n as usize <= MAX_FRAME => Ok(Some(n as usize)),
            _ => Err(bad(key, format!("expected a whole number from 0 to {MAX_FRAME}, got {v}"))),
        },
    }
}

fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, OptionError> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(bad(key, format!("expected a string, got {v}"))),
    }
}

/// The most values a constant may hold in a graph file.
const MAX_CONSTANT_VALUES: usize = 1 << 16;

/// `{"int64": 16000}`, `{"float": [0.5, 1]}`, with an optional `"shape"`
/// (default: a scalar for a number, one dimension for an array).
fn constant(value: &Value) -> Result<Tensor, String> {
    let Value::Object(map) = value else { return Err("expected {\"int64\": …}, {\"int32\": …}, {\"float\": …} or {\"bool\": …}".into()) };
    let types: Vec<&String> = map.keys().filter(|k| *k != "shape").collect();
    let [kind] = types[..] else { return Err("name exactly one element type: int64, int32, float or bool".into()) };
    let values = match &map[kind.as_str()] {
        Value::Array(items) => items.clone(),
        single => vec![single.clone()],
    };
    if values.len() > MAX_CONSTANT_VALUES {
        return Err(format!("{} values, more than the {MAX_CONSTANT_VALUES} a constant may hold", values.len()));
    }
    let shape: Vec<usize> = match map.get("shape") {
        None if matches!(map[kind.as_str()], Value::Array(_)) => vec![values.len()],
        None => vec![],
        Some(Value::Array(dims)) => dims.iter().map(|d| d.as_u64().map(|d| d as usize).ok_or_else(|| format!("shape: {d} is not a dimension"))).collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("shape: expected an array of dimensions, got {other}")),
    };
    let number = |v: &Value| v.as_f64().ok_or_else(|| format!("{v} is not a number"));
    let whole = |v: &Value| v.as_i64().ok_or_else(|| format!("{v} is not a whole number"));
    let tensor: Result<Tensor, TensorError> = match kind.as_str() {
        "int64" => Tensor::i64(shape, values.iter().map(whole).collect::<Result<_, _>>()?),
        "int32" => Tensor::new(shape, byob_tensor::Data::I32(values.iter().map(|v| whole(v).and_then(|n| i32::try_from(n).map_err(|_| format!("{n} does not fit int32")))).collect::<Result<_, _>>()?)),
        "float" => Tensor::f32(shape, values.iter().map(|v| number(v).map(|x| x as f32)).collect::<Result<_, _>>()?),
        "bool" => Tensor::new(shape, byob_tensor::Data::Bool(values.iter().map(|v| v.as_bool().ok_or_else(|| format!("{v} is not true or false"))).collect::<Result<_, _>>()?)),
        other => return Err(format!("{other:?} is not an element type (int64, int32, float or bool)")),
    };
    tensor.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<OnnxOptions, OptionError> {
        OnnxOptions::from_json(&v, Path::new("/graphs"))
    }

    #[test]
    fn the_issue_example_parses() {
        let o = parse(json!({"model": "silero_vad.onnx", "sampleRate": 16000, "frame": 512, "context": 64, "input": "input",
            "constants": {"sr": {"int64": 16000}}, "state": {"stateN": "state"}, "output": "output", "mode": "render", "ep": "cpu"}))
        .unwrap();
        assert_eq!(o.model, Path::new("/graphs/silero_vad.onnx"));
        assert_eq!((o.frame, o.context, o.sample_rate), (512, 64, Some(16000.0)));
        assert_eq!(o.constants, vec![("sr".to_string(), Tensor::i64(vec![], vec![16000]).unwrap())]);
        assert_eq!(o.state, vec![("stateN".to_string(), "state".to_string())]);
    }

    #[test]
    fn bad_options_name_their_key() {
        let key = |v: Value| parse(v).unwrap_err().key;
        assert_eq!(key(json!({"frame": 512})), "model");
        assert_eq!(key(json!({"model": "m.onnx"})), "frame");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 0})), "frame");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 512, "colour": 1})), "colour");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 512, "ep": "webgpu"})), "ep");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 512, "sampleRate": -3})), "sampleRate");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 512, "constants": {"sr": {"int64": 1.5}}})), "constants.sr");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 512, "constants": {"sr": {"int64": [1, 2], "shape": [3]}}})), "constants.sr");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 512, "state": {"stateN": 3}})), "state.stateN");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 512, "channels": 2})), "channels");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 1e12})), "frame");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 512, "deadline": 0.01})), "deadline");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 512, "mode": "worker", "deadline": -1})), "deadline");
        assert_eq!(key(json!({"model": "m.onnx", "frame": 512, "mode": "worker", "deadline": "soon"})), "deadline");
    }
}
