//! Control flow: If, Loop and Scan, whose subgraphs run as sessions of
//! their own. They live beside the session rather than among the operators
//! because running a graph is the session's job; the CPU provider
//! registers them with the other builders.
//!
//! A subgraph's captures (the enclosing graphs' values it reads, see
//! [`Subgraph`]) arrive as the node's trailing inputs and are fed to the
//! subgraph's session by name, with its declared inputs (Loop's iteration
//! number and condition, Scan's states and slices) before them.

use crate::model::{Attribute, Graph, Model, Node, Subgraph, ValueInfo};
use crate::ops::{output, required, Attrs, Builder, Fact, Op, OpError};
use crate::session::{Limits, Session, SessionBuilder};
use crate::tensor::{DataType, Tensor};
use std::collections::HashMap;

/// Loops without a trip count stop with an error after this many
/// iterations rather than hang on a condition that never turns false.
pub const MAX_LOOP_ITERATIONS: usize = 1 << 24;

/// A subgraph prepared to run.
#[derive(Debug)]
struct Body {
    attribute: &'static str,
    session: Session,
    /// The names its declared inputs have in the subgraph.
    declared: Vec<String>,
    /// (name in the subgraph, position among the node's inputs) per capture.
    captures: Vec<(String, usize)>,
}

impl Body {
    fn new(node: &Node, attribute: &'static str, opset: i64) -> Result<Self, OpError> {
        let Some(Attribute::Graph(sub)) = node.attributes.get(attribute) else { return Err(OpError::attribute(attribute, "required: a subgraph")) };
        let Subgraph { graph, captures } = sub.as_ref();
        let declared: Vec<String> = graph.inputs.iter().map(|v| v.name.clone()).collect();
        let mut inputs = graph.inputs.clone();
        inputs.extend(captures.iter().map(|name| ValueInfo { name: name.clone(), dtype: None, shape: None }));
        let graph = Graph { inputs, ..graph.clone() };
        let model = Model { ir_version: 8, producer: String::new(), opsets: HashMap::from([(String::new(), opset)]), graph };
        // One thread, which stays idle: the subgraph runs on its node's
        // thread and pool (`run_nested`); a pool per subgraph per node must
        // not multiply the caller's threads. Folded under the limits of the
        // session being built.
        let limits = super::building_limits();
        let builder = SessionBuilder::new().with_intra_op_threads(1).with_intra_op_spinning(false).with_max_tensor_bytes(limits.tensor).with_max_run_bytes(limits.run);
        let session = builder.commit(model).map_err(|e| OpError::Subgraph(format!("{attribute}: {e}")))?;
        let positions = captures
            .iter()
            .map(|name| node.inputs.iter().rposition(|i| i == name).map(|p| (name.clone(), p)).ok_or_else(|| OpError::Subgraph(format!("{attribute}: capture {name:?} is not an input of the node"))))
            .collect::<Result<_, _>>()?;
        Ok(Self { attribute, session, declared, captures: positions })
    }

    /// Runs the subgraph on its declared inputs and the node's captures,
    /// its tensors within `limits`.
    fn run(&self, declared: Vec<Tensor>, node_inputs: &[Option<&Tensor>], pool: &rayon::ThreadPool, limits: Limits) -> Result<Vec<Tensor>, OpError> {
        if declared.len() != self.declared.len() {
            return Err(OpError::Subgraph(format!("{}: takes {} inputs, given {}", self.attribute, self.declared.len(), declared.len())));
        }
        let mut feeds: Vec<(String, Tensor)> = self.declared.iter().cloned().zip(declared).collect();
        for (name, position) in &self.captures {
            let value = node_inputs.get(*position).copied().flatten().ok_or_else(|| OpError::Subgraph(format!("{}: capture {name:?} has no value", self.attribute)))?;
            feeds.push((name.clone(), value.clone()));
        }
        let outputs = self.session.run_nested(feeds, pool, limits).map_err(|e| OpError::Subgraph(format!("{}: {e}", self.attribute)))?;
        Ok(outputs.into_iter().map(|(_, t)| t).collect())
    }
}

/// The limits a node's subgraph runs keep to: no tensor, and no sum of
/// them, past what the node's outputs were lent to take (the session's
/// per-tensor limit, or less when the run's tensors already hold most of
/// what a run may).
fn lent_limits(outputs: &[Tensor]) -> Limits {
    let room = outputs.iter().map(Tensor::max_bytes).min().unwrap_or(usize::MAX);
    Limits { tensor: room, run: room }
}

/// The scan outputs of a Loop or Scan, gathered one iteration at a time,
/// their bytes kept within what the node's outputs may take.
struct ScanParts {
    parts: Vec<Vec<Tensor>>,
    bytes: usize,
    limit: usize,
}

impl ScanParts {
    fn new(limits: Limits) -> Self {
        Self { parts: Vec::new(), bytes: 0, limit: limits.run }
    }

    fn push(&mut self, results: impl Iterator<Item = Tensor>) -> Result<(), OpError> {
        for (k, part) in results.enumerate() {
            self.bytes = self.bytes.saturating_add(part.len() * part.dtype().size());
            if self.bytes > self.limit {
                return Err(OpError::Subgraph(format!("body: its scan outputs so far take {} bytes, more than the {} the node's outputs may (SessionBuilder::with_max_tensor_bytes and with_max_run_bytes)", self.bytes, self.limit)));
            }
            if self.parts.len() <= k {
                self.parts.push(Vec::new());
            }
            self.parts[k].push(part);
        }
        Ok(())
    }
}

fn scalar_bool(t: &Tensor, index: usize) -> Result<bool, OpError> {
    match t.elements::<bool>() {
        Some([v]) => Ok(*v),
        _ => Err(OpError::input(index, format!("the condition must be one bool, got {} {:?}", t.dtype(), t.shape()))),
    }
}

fn write(outputs: &mut [Tensor], values: Vec<Tensor>) -> Result<(), OpError> {
    for (k, value) in values.into_iter().enumerate() {
        if let Some(out) = outputs.get_mut(k) {
            out.copy_from(value.shape(), value.data())?;
        }
    }
    Ok(())
}

/// If: runs one branch; its outputs are the node's.
#[derive(Debug)]
struct If {
    then_branch: Body,
    else_branch: Body,
}

impl Op for If {
    fn infer(&self, _: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        // Known only once a branch runs.
        Ok(vec![])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], pool: &rayon::ThreadPool) -> Result<(), OpError> {
        let branch = if scalar_bool(required(inputs, 0)?, 0)? { &self.then_branch } else { &self.else_branch };
        let limits = lent_limits(outputs);
        write(outputs, branch.run(Vec::new(), inputs, pool, limits)?)
    }
}

/// Stacks equal-shaped tensors along a new axis 0.
fn stack(parts: &[Tensor], dtype: DataType, out: &mut Tensor) -> Result<(), OpError> {
    let item: Vec<usize> = parts.first().map(|t| t.shape().to_vec()).unwrap_or_default();
    if let Some(bad) = parts.iter().find(|t| t.shape() != item || t.dtype() != dtype) {
        return Err(OpError::Subgraph(format!("scan outputs change from {dtype} {item:?} to {} {:?} between iterations", bad.dtype(), bad.shape())));
    }
    let mut shape = vec![parts.len()];
    shape.extend_from_slice(&item);
    crate::dispatch!(dtype, T => {
        let o = out.reset_as::<T>(&shape)?;
        let n = item.iter().product::<usize>();
        for (k, part) in parts.iter().enumerate() {
            o[k * n..(k + 1) * n].copy_from_slice(part.elements::<T>().unwrap_or_default());
        }
    });
    Ok(())
}

/// Loop: runs the body while the trip count and the condition allow,
/// carrying values from each iteration to the next and stacking its scan
/// outputs.
#[derive(Debug)]
struct Loop {
    body: Body,
    /// Loop-carried values (the body's declared inputs after the iteration
    /// number and the condition).
    carried: usize,
}

impl Op for Loop {
    fn infer(&self, _: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        Ok(vec![])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], pool: &rayon::ThreadPool) -> Result<(), OpError> {
        let trip_count = match inputs.first().copied().flatten() {
            None => None,
            Some(t) => Some(t.to_i64_vec().and_then(|v| v.first().copied()).ok_or_else(|| OpError::input(0, "the trip count must be one integer"))?.max(0) as usize),
        };
        let mut condition = inputs.get(1).copied().flatten().map(|t| scalar_bool(t, 1)).transpose()?.unwrap_or(true);
        let mut carried: Vec<Tensor> = (0..self.carried).map(|k| required(inputs, 2 + k).cloned()).collect::<Result<_, _>>()?;
        let limits = lent_limits(outputs);
        let mut scans = ScanParts::new(limits);
        let mut iteration = 0usize;
        while condition && trip_count.is_none_or(|m| iteration < m) {
            if trip_count.is_none() && iteration >= MAX_LOOP_ITERATIONS {
                return Err(OpError::Subgraph(format!("body: the loop has no trip count and ran {MAX_LOOP_ITERATIONS} iterations without its condition turning false")));
            }
            let mut declared = vec![Tensor::i64(vec![], vec![iteration as i64])?, Tensor::new(vec![], crate::tensor::Data::Bool(vec![condition]))?];
            declared.extend(std::mem::take(&mut carried));
            let mut results = self.body.run(declared, inputs, pool, limits)?.into_iter();
            condition = scalar_bool(&results.next().ok_or_else(|| OpError::Subgraph("body: returns no condition".into()))?, 0)?;
            carried = results.by_ref().take(self.carried).collect();
            if carried.len() != self.carried {
                return Err(OpError::Subgraph(format!("body: returns {} loop-carried values, {} expected", carried.len(), self.carried)));
            }
            scans.push(results)?;
            iteration += 1;
        }
        let carried_count = carried.len();
        write(outputs, carried)?;
        let scans = scans.parts;
        for (k, parts) in scans.iter().enumerate() {
            let dtype = parts.first().map_or(DataType::F32, Tensor::dtype);
            stack(parts, dtype, output(outputs, carried_count + k)?)?;
        }
        // A loop that never ran leaves its scan outputs empty.
        for out in outputs.iter_mut().skip(carried_count + scans.len()) {
            out.reset(DataType::F32, &[0])?;
        }
        Ok(())
    }
}

/// Scan (opset 9 and later): runs the body once per slice of the scan
/// inputs, carrying states, and stacks its scan outputs.
#[derive(Debug)]
struct Scan {
    body: Body,
    states: usize,
    scans: usize,
    input_axes: Vec<i64>,
    input_reversed: Vec<bool>,
    output_axes: Vec<i64>,
    output_reversed: Vec<bool>,
}

impl Op for Scan {
    fn infer(&self, _: &[Option<&Fact>]) -> Result<Vec<Fact>, OpError> {
        Ok(vec![])
    }

    fn eval(&self, inputs: &[Option<&Tensor>], outputs: &mut [Tensor], pool: &rayon::ThreadPool) -> Result<(), OpError> {
        let mut states: Vec<Tensor> = (0..self.states).map(|k| required(inputs, k).cloned()).collect::<Result<_, _>>()?;
        let sequences: Vec<&Tensor> = (0..self.scans).map(|k| required(inputs, self.states + k)).collect::<Result<_, _>>()?;
        let mut axes = Vec::with_capacity(self.scans);
        for (k, x) in sequences.iter().enumerate() {
            let axis = self.input_axes.get(k).copied().unwrap_or(0);
            axes.push(crate::ops::normalize_axis(axis, x.rank()).ok_or_else(|| OpError::attribute("scan_input_axes", format!("{axis} is out of range for rank {}", x.rank())))?);
        }
        let length = sequences.first().map_or(0, |x| x.shape()[axes[0]]);
        if sequences.iter().zip(&axes).any(|(x, &a)| x.shape()[a] != length) {
            return Err(OpError::input(self.states, "the scan inputs differ in length along their scan axes"));
        }
        let limits = lent_limits(outputs);
        let mut scans = ScanParts::new(limits);
        for step in 0..length {
            let mut declared = std::mem::take(&mut states);
            for (k, x) in sequences.iter().enumerate() {
                let t = if self.input_reversed.get(k).copied().unwrap_or(false) { length - 1 - step } else { step };
                declared.push(crate::ops::slice::take_along(x, axes[k], t)?);
            }
            let mut results = self.body.run(declared, inputs, pool, limits)?.into_iter();
            states = results.by_ref().take(self.states).collect();
            scans.push(results)?;
        }
        write(outputs, states)?;
        for (k, mut parts) in scans.parts.into_iter().enumerate() {
            if self.output_reversed.get(k).copied().unwrap_or(false) {
                parts.reverse();
            }
            let dtype = parts.first().map_or(DataType::F32, Tensor::dtype);
            let mut stacked = Tensor::with_max_bytes(limits.tensor);
            stack(&parts, dtype, &mut stacked)?;
            let axis = self.output_axes.get(k).copied().unwrap_or(0);
            let target = crate::ops::normalize_axis(axis, stacked.rank()).ok_or_else(|| OpError::attribute("scan_output_axes", format!("{axis} is out of range for rank {}", stacked.rank())))?;
            // Move the new axis 0 to `target`.
            let mut perm: Vec<usize> = (1..stacked.rank()).collect();
            perm.insert(target, 0);
            crate::kernels::transpose::transpose_into(&stacked, &perm, output(outputs, self.states + k)?, pool)?;
        }
        Ok(())
    }
}

fn directions(node: &Node, name: &str, count: usize) -> Result<Vec<bool>, OpError> {
    Ok(Attrs(node).ints(name)?.unwrap_or_else(|| vec![0; count]).into_iter().map(|d| d != 0).collect())
}

pub fn register(ops: &mut HashMap<&'static str, Builder>) {
    ops.insert("If", |node, opset| Ok(Box::new(If { then_branch: Body::new(node, "then_branch", opset)?, else_branch: Body::new(node, "else_branch", opset)? })));
    ops.insert("Loop", |node, opset| {
        let body = Body::new(node, "body", opset)?;
        let carried = body.declared.len().checked_sub(2).ok_or_else(|| OpError::attribute("body", "the body must take the iteration number and the condition"))?;
        Ok(Box::new(Loop { body, carried }))
    });
    ops.insert("Scan", |node, opset| {
        if opset < 9 {
            return Err(OpError::Unsupported { op: "Scan".into(), opset });
        }
        let body = Body::new(node, "body", opset)?;
        let a = Attrs(node);
        let scans = usize::try_from(a.int("num_scan_inputs", 0)?).ok().filter(|&m| m >= 1 && m <= body.declared.len()).ok_or_else(|| OpError::attribute("num_scan_inputs", "must be at least 1 and at most the body's inputs"))?;
        let states = body.declared.len() - scans;
        let outputs = node.outputs.len().saturating_sub(states);
        Ok(Box::new(Scan {
            states,
            scans,
            input_axes: a.ints("scan_input_axes")?.unwrap_or_default(),
            input_reversed: directions(node, "scan_input_directions", scans)?,
            output_axes: a.ints("scan_output_axes")?.unwrap_or_default(),
            output_reversed: directions(node, "scan_output_directions", outputs)?,
            body,
        }))
    });
}
