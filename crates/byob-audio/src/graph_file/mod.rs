//! JSON graph files that mirror the Web Audio API's own names.
//!
//! ```json
//! {
//!   "sampleRate": 48000, "length": 96000, "numberOfChannels": 2,
//!   "nodes": [
//!     {"id": "osc", "type": "OscillatorNode", "options": {"type": "sawtooth", "frequency": 220},
//!      "start": 0, "stop": 1.5,
//!      "params": {"frequency": [["setValueAtTime", 220, 0], ["exponentialRampToValueAtTime", 880, 1.0]]}},
//!     {"id": "g", "type": "GainNode", "options": {"gain": 0.3}}
//!   ],
//!   "connections": [{"from": "osc", "to": "g"}, {"from": "g", "to": "destination"}]
//! }
//! ```
//!
//! `type` is the interface name; `options` holds the members of that node's
//! options dictionary (AudioNodeOptions included); `params` lists AudioParam
//! method calls with the spec's argument order; `start`/`stop` take a time or
//! the spec's argument list; the top three keys are OfflineAudioContext's
//! constructor arguments. Paths are relative to the graph file. Unknown keys
//! are errors. A `score` lists changes to make while the graph plays (see
//! [`score`]). An `AudioWorkletNode` names its processor beside `type`:
//! `{"id": "g", "type": "AudioWorkletNode", "processor": "gain", "options": {...}}`.

mod json;
mod strict;
mod nodes;
pub mod score;

pub use score::ScorePlayer;

use crate::context::{ContextError, OfflineAudioContext};
use crate::graph::{AudioGraph, NodeId};
use crate::worklet::ProcessorRegistry;
use json::{fail, Located, Object};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a graph file could not be loaded or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}:{column}: malformed JSON: {message}")]
    Json { path: PathBuf, line: usize, column: usize, message: String },
    #[error("{path}: {at}: {message}")]
    Invalid { path: PathBuf, at: String, message: String },
}

/// A parsed graph file, ready to be built at any sample rate.
#[derive(Debug, Clone)]
pub struct GraphFile {
    path: PathBuf,
    root: Value,
    sample_rate: f32,
    length: usize,
    number_of_channels: usize,
    score: Vec<score::Entry>,
}

/// The largest graph file read (JSON text; a million automation events
/// take about 40 MB).
pub const MAX_GRAPH_FILE_BYTES: u64 = 256 << 20;

impl GraphFile {
    pub fn load(path: &Path) -> Result<Self, GraphFileError> {
        Self::from_json(read_json(path, "a graph file")?, path)
    }

    /// Parses `text` as if read from `path` (relative file names resolve
    /// against its folder).
    pub fn parse(text: &str, path: &Path) -> Result<Self, GraphFileError> {
        Self::from_json(parse_json(text, path)?, path)
    }

    fn from_json(root: Value, path: &Path) -> Result<Self, GraphFileError> {
        let located = |e: Located| GraphFileError::Invalid { path: path.to_path_buf(), at: e.at, message: e.message };
        let top = Object::new(&root, "").map_err(located)?;
        top.only(&["sampleRate", "length", "numberOfChannels", "nodes", "connections", "score"]).map_err(located)?;
        let sample_rate = top.number("sampleRate").map_err(located)?.unwrap_or(48000.0) as f32;
        let length = match top.get("length") {
            None => return Err(located(Located { at: "length".into(), message: "missing (frames to render)".into() })),
            Some(v) => {
                let frames = json::number(v, "length").map_err(located)?;
                if frames < 1.0 || frames.fract() != 0.0 {
                    return Err(located(Located {
                        at: "length".into(),
                        message: format!("must be a whole number of frames, at least 1, got {frames}"),
                    }));
                }
                frames as usize
            }
        };
        let number_of_channels = top.count("numberOfChannels").map_err(located)?.unwrap_or(2);
        for key in ["nodes", "connections"] {
            if let Some(v) = top.get(key) {
                if !v.is_array() {
                    return Err(located(Located { at: key.into(), message: format!("expected an array, got {}", json::kind(v)) }));
                }
            }
        }
        let score = top.get("score").map(score::parse).transpose().map_err(located)?.unwrap_or_default();
        Ok(Self { path: path.to_path_buf(), root, sample_rate, length, number_of_channels, score })
    }

    /// Entries in the file's score.
    pub fn score_len(&self) -> usize {
        self.score.len()
    }

    /// Drops the file's score.
    pub fn clear_score(&mut self) {
        self.score.clear();
    }

    /// Plays the score in the file at `path` instead of this file's own:
    /// a JSON object holding only `"score"`, or a whole graph file whose
    /// score is taken. Its ids must name this file's nodes or nodes it
    /// creates.
    pub fn load_score(&mut self, path: &Path) -> Result<(), GraphFileError> {
        let root = read_json(path, "a score file")?;
        let located = |e: Located| GraphFileError::Invalid { path: path.to_path_buf(), at: e.at, message: e.message };
        let top = Object::new(&root, "").map_err(located)?;
        if top.map.keys().any(|k| k != "score") {
            self.score = Self::from_json(root, path)?.score;
            return Ok(());
        }
        let Some(score) = top.get("score") else {
            return Err(located(Located { at: "score".into(), message: "missing (the timed operations to play)".into() }));
        };
        self.score = score::parse(score).map_err(located)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    pub fn length(&self) -> usize {
        self.length
    }

    pub fn number_of_channels(&self) -> usize {
        self.number_of_channels
    }

    /// An offline context with the file's graph, at the file's sample rate
    /// and length unless overridden; AudioWorkletNodes use the example
    /// processors.
    pub fn offline_context(&self, sample_rate: Option<f32>, length: Option<usize>) -> Result<OfflineAudioContext, GraphFileError> {
        self.offline_context_with(sample_rate, length, &ProcessorRegistry::with_examples())
    }

    /// As [`offline_context`](Self::offline_context), with AudioWorkletNode
    /// processors looked up in `registry`.
    pub fn offline_context_with(
        &self,
        sample_rate: Option<f32>,
        length: Option<usize>,
        registry: &ProcessorRegistry,
    ) -> Result<OfflineAudioContext, GraphFileError> {
        self.offline_context_limited(sample_rate, length, registry, crate::DEFAULT_MEMORY_LIMIT)
    }

    /// As [`offline_context_with`](Self::offline_context_with), under a
    /// memory limit (see [`AudioGraph::set_memory_limit`]).
    pub fn offline_context_limited(
        &self,
        sample_rate: Option<f32>,
        length: Option<usize>,
        registry: &ProcessorRegistry,
        memory_limit: usize,
    ) -> Result<OfflineAudioContext, GraphFileError> {
        self.offline_score_context(sample_rate, length, registry, memory_limit).map(|(ctx, _)| ctx)
    }

    /// As [`offline_context_limited`](Self::offline_context_limited), with
    /// the player of the file's score, for
    /// [`OfflineAudioContext::render_changing`].
    pub fn offline_score_context<'a>(
        &'a self,
        sample_rate: Option<f32>,
        length: Option<usize>,
        registry: &'a ProcessorRegistry,
        memory_limit: usize,
    ) -> Result<(OfflineAudioContext, ScorePlayer<'a>), GraphFileError> {
        let sample_rate = sample_rate.unwrap_or(self.sample_rate);
        let length = length.unwrap_or(self.length);
        let mut ctx = OfflineAudioContext::new(self.number_of_channels, length, sample_rate).map_err(|e| {
            let at = match e {
                ContextError::Channels(_) => "numberOfChannels",
                ContextError::Length(_) => "length",
                _ => "sampleRate",
            };
            self.invalid(Located { at: at.into(), message: e.to_string() })
        })?;
        ctx.graph().set_memory_limit(memory_limit);
        let player = self.build_playing(ctx.graph(), registry)?;
        Ok((ctx, player))
    }

    /// Adds the file's nodes and connections to `graph`.
    pub fn build(&self, graph: &mut AudioGraph, registry: &ProcessorRegistry) -> Result<(), GraphFileError> {
        self.build_playing(graph, registry).map(drop)
    }

    /// Adds the file's nodes and connections to `graph`, and returns the
    /// player of its score, which knows the nodes by their ids.
    pub fn build_playing<'a>(&'a self, graph: &mut AudioGraph, registry: &'a ProcessorRegistry) -> Result<ScorePlayer<'a>, GraphFileError> {
        let (ids, buffers) = self.build_located(graph, registry).map_err(|e| self.invalid(e))?;
        Ok(ScorePlayer::new(self, registry, ids, buffers))
    }

    fn invalid(&self, e: Located) -> GraphFileError {
        GraphFileError::Invalid { path: self.path.clone(), at: e.at, message: e.message }
    }

    fn build_located(&self, graph: &mut AudioGraph, registry: &ProcessorRegistry) -> json::Result<(HashMap<String, NodeId>, nodes::BufferCache)> {
        let base = self.path.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut ids: HashMap<String, NodeId> = HashMap::new();
        ids.insert("destination".into(), graph.destination());
        let empty = Vec::new();
        let nodes = self.root.get("nodes").and_then(Value::as_array).unwrap_or(&empty);
        let mut buffers = nodes::BufferCache::new(base);
        for (i, node) in nodes.iter().enumerate() {
            let at = format!("nodes[{i}]");
            let obj = Object::new(node, &at)?;
            let id = obj.required_string("id")?;
            let at = format!("nodes[{i}] (id {id:?})");
            let obj = Object::new(node, &at)?;
            if ids.contains_key(id) {
                return fail(&at, format!("duplicate id {id:?} (\"destination\" is reserved)"));
            }
            let node_id = nodes::create(graph, &obj, &mut buffers, registry)?;
            graph.set_label(node_id, id);
            ids.insert(id.to_string(), node_id);
        }
        let connections = self.root.get("connections").and_then(Value::as_array).unwrap_or(&empty);
        for (i, connection) in connections.iter().enumerate() {
            connect(graph, &Object::new(connection, &format!("connections[{i}]"))?, &ids)?;
        }
        Ok((ids, buffers))
    }
}

/// The JSON in the file at `path` (`what` names it in errors).
fn read_json(path: &Path, what: &str) -> Result<Value, GraphFileError> {
    let io = |source| GraphFileError::Io { path: path.to_path_buf(), source };
    let bytes = byob_files::read_regular(path, MAX_GRAPH_FILE_BYTES, what).map_err(io)?;
    let text = String::from_utf8(bytes).map_err(|_| io(std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")))?;
    parse_json(&text, path)
}

/// `text` as strict JSON; errors name `path`, line and column.
fn parse_json(text: &str, path: &Path) -> Result<Value, GraphFileError> {
    strict::parse(text).map_err(|e| GraphFileError::Json { path: path.to_path_buf(), line: e.line(), column: e.column(), message: e.to_string() })
}

fn connect(graph: &mut AudioGraph, c: &Object, ids: &HashMap<String, NodeId>) -> json::Result<()> {
    c.only(&["from", "to", "output", "input", "param"])?;
    let lookup = |key: &str| -> json::Result<NodeId> {
        let name = c.required_string(key)?;
        ids.get(name).copied().map_or_else(|| fail(&c.path(key), format!("no node with id {name:?}")), Ok)
    };
    let (from, to) = (lookup("from")?, lookup("to")?);
    let output = c.count("output")?.unwrap_or(0);
    let result = match c.string("param")? {
        Some(name) => {
            if c.get("input").is_some() {
                return fail(&c.at, "give either \"input\" or \"param\", not both");
            }
            let param = graph.param_by_name(to, name).or_else(|e| fail(&c.path("param"), e.to_string()))?;
            graph.connect_param(from, output, param)
        }
        None => graph.connect(from, output, to, c.count("input")?.unwrap_or(0)),
    };
    result.or_else(|e| fail(&c.at, e.to_string()))
}
