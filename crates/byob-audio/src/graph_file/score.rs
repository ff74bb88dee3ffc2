//! A graph file's `"score"`: control operations at context times, applied
//! while the graph plays, so that a session of changes can be written down
//! and replayed, live (`byob play`) or offline (`byob render`), with the
//! same result.
//!
//! ```json
//! "score": [
//!   {"time": 0.5, "create": {"id": "o2", "type": "OscillatorNode", "start": 0.5}},
//!   {"time": 0.5, "connect": {"from": "o2", "to": "destination"}},
//!   {"time": 1.0, "node": "o2", "stop": 1.25, "params": {"frequency": [["linearRampToValueAtTime", 880, 1.25]]}},
//!   {"time": 1.5, "disconnect": {"from": "o2"}},
//!   {"time": 1.5, "release": "o2"}
//! ]
//! ```
//!
//! An entry applies at the first render quantum boundary at or after its
//! `time`; entries apply in file order, and times may not go back. Each
//! entry holds one operation: `create` (a node, as in `nodes`), `connect`
//! (as in `connections`), `disconnect` (`from`, and optionally `to`,
//! `output`, `input` or `param`: the spec's overloads), `node` with
//! `start`, `stop` and `params` (as on a node) and `message` (a JSON value
//! posted to an AudioWorkletNode's port), or `release` (the node's handle
//! is dropped: it is freed once nothing it feeds still plays).

use super::json::{self, fail, Object};
use super::nodes::{self, BufferCache};
use super::{connect, GraphFile};
use crate::context::{quantum_at_or_after, AudioContext};
use crate::graph::{AudioGraph, NodeId};
use crate::worklet::ProcessorRegistry;
use serde_json::Value;
use std::collections::HashMap;

/// One parsed entry: its time and where it is in the file.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    time: f64,
    at: String,
    value: Value,
}

const OPERATIONS: [&str; 5] = ["create", "connect", "disconnect", "node", "release"];

/// Checks the score's shape: entries with a time that never goes back and
/// one operation each. What the operations name is checked when applied.
pub(super) fn parse(value: &Value) -> json::Result<Vec<Entry>> {
    let Value::Array(items) = value else {
        return fail("score", format!("expected an array of timed operations, got {}", json::kind(value)));
    };
    let mut entries = Vec::with_capacity(items.len());
    let mut last = 0.0;
    for (i, item) in items.iter().enumerate() {
        let at = format!("score[{i}]");
        let obj = Object::new(item, &at)?;
        let Some(time) = obj.number("time")? else { return fail(&at, "missing \"time\" (seconds of context time)") };
        if !time.is_finite() || time < 0.0 {
            return fail(&obj.path("time"), format!("must be a finite time of at least 0, got {time}"));
        }
        if time < last {
            return fail(&obj.path("time"), format!("{time} comes before the previous entry's {last}: entries are in time order"));
        }
        last = time;
        let ops: Vec<&str> = OPERATIONS.iter().copied().filter(|op| obj.get(op).is_some()).collect();
        if ops.len() != 1 {
            return fail(&at, format!("give exactly one of {} (found {})", OPERATIONS.join(", "), if ops.is_empty() { "none".into() } else { ops.join(", ") }));
        }
        if ops[0] == "node" {
            obj.only(&["time", "node", "start", "stop", "params", "message"])?;
        } else {
            obj.only(&["time", ops[0]])?;
        }
        entries.push(Entry { time, at, value: item.clone() });
    }
    Ok(entries)
}

/// Applies a graph file's score to its graph as time passes.
pub struct ScorePlayer<'a> {
    file: &'a GraphFile,
    registry: &'a ProcessorRegistry,
    ids: HashMap<String, NodeId>,
    buffers: BufferCache,
    next: usize,
}

impl<'a> ScorePlayer<'a> {
    pub(super) fn new(file: &'a GraphFile, registry: &'a ProcessorRegistry, ids: HashMap<String, NodeId>, buffers: BufferCache) -> Self {
        Self { file, registry, ids, buffers, next: 0 }
    }

    /// The entries still to apply.
    pub fn remaining(&self) -> usize {
        self.file.score.len() - self.next
    }

    /// The time of the next entry to apply.
    pub fn next_time(&self) -> Option<f64> {
        self.file.score.get(self.next).map(|e| e.time)
    }

    /// Applies the entries due by the quantum starting at `frame` (those
    /// whose time rounds up to it or before) to `graph`. Errors name the
    /// file and the entry.
    pub fn apply_due(&mut self, graph: &mut AudioGraph, frame: u64) -> Result<(), super::GraphFileError> {
        let sample_rate = graph.sample_rate();
        while let Some(entry) = self.file.score.get(self.next) {
            if quantum_at_or_after(entry.time, sample_rate) > frame {
                break;
            }
            self.next += 1;
            self.apply(graph, entry).map_err(|e| self.file.invalid(e))?;
        }
        Ok(())
    }

    /// Sends to a live context the entries due before its current time plus
    /// `lookahead` seconds: the entries of one quantum as one batch,
    /// stamped with that quantum, so that they apply exactly there (as in
    /// an offline render) if sent ahead of it.
    pub fn send_due(&mut self, ctx: &mut AudioContext, lookahead: f64) -> Result<(), super::GraphFileError> {
        let horizon = ctx.current_time() + lookahead;
        while let Some(time) = self.next_time() {
            let frame = quantum_at_or_after(time, ctx.sample_rate());
            if frame as f64 / ctx.sample_rate() as f64 > horizon {
                break;
            }
            let mut graph = ctx.graph_at(time);
            self.apply_due(&mut graph, frame)?;
        }
        Ok(())
    }

    fn apply(&mut self, graph: &mut AudioGraph, entry: &Entry) -> json::Result<()> {
        let obj = Object::new(&entry.value, &entry.at)?;
        let lookup = |key: &str, obj: &Object| -> json::Result<NodeId> {
            let name = obj.required_string(key)?;
            self.ids.get(name).copied().map_or_else(|| fail(&obj.path(key), format!("no node with id {name:?}")), Ok)
        };
        if let Some(node) = obj.get("create") {
            let obj = Object::new(node, &obj.path("create"))?;
            let id = obj.required_string("id")?;
            if self.ids.contains_key(id) {
                return fail(&obj.at, format!("duplicate id {id:?}"));
            }
            let node = nodes::create(graph, &obj, &mut self.buffers, self.registry)?;
            graph.set_label(node, id);
            self.ids.insert(id.to_string(), node);
        } else if let Some(c) = obj.get("connect") {
            connect(graph, &Object::new(c, &obj.path("connect"))?, &self.ids)?;
        } else if let Some(d) = obj.get("disconnect") {
            let d = Object::new(d, &obj.path("disconnect"))?;
            d.only(&["from", "to", "output", "input", "param"])?;
            let from = lookup("from", &d)?;
            let output = d.count("output")?;
            let result = match (d.get("to").is_some(), d.string("param")?) {
                (false, None) if d.get("input").is_none() => match output {
                    Some(output) => graph.disconnect_output(from, output),
                    None => {
                        graph.disconnect_all(from);
                        Ok(())
                    }
                },
                (false, _) => return fail(&d.at, "\"input\" and \"param\" need \"to\""),
                (true, Some(name)) => {
                    if d.get("input").is_some() {
                        return fail(&d.at, "give either \"input\" or \"param\", not both");
                    }
                    let to = lookup("to", &d)?;
                    let param = graph.param_by_name(to, name).or_else(|e| fail(&d.path("param"), e.to_string()))?;
                    graph.disconnect_param(from, param, output)
                }
                (true, None) => graph.disconnect_node(from, lookup("to", &d)?, output, d.count("input")?),
            };
            result.or_else(|e| fail(&d.at, e.to_string()))?;
        } else if obj.get("release").is_some() {
            let node = lookup("release", &obj)?;
            graph.release(node);
        } else {
            let node = lookup("node", &obj)?;
            nodes::schedule(graph, &obj, node)?;
            if let Some(params) = obj.get("params") {
                nodes::automate(graph, node, &Object::new(params, &obj.path("params"))?)?;
            }
            if let Some(message) = obj.get("message") {
                if graph.type_name(node) != "AudioWorkletNode" {
                    return fail(&obj.path("message"), format!("{} has no port (only AudioWorkletNode takes messages)", graph.label(node)));
                }
                graph.post_message(node, Box::new(message.clone()));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for ScorePlayer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScorePlayer").field("next", &self.next).field("remaining", &self.remaining()).finish()
    }
}
