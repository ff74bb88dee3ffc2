//! # byob-neural
//!
//! The neural node: an ONNX model inside byob's audio graph, reading the
//! audio where the engine mixed it and writing its result where the next
//! node reads it. A built-in worklet processor, `"onnx"`, configured by
//! `processorOptions` as Web Audio code configures any AudioWorkletNode:
//!
//! * `frame` new samples per inference, `context` samples of the previous
//!   frames before them, `constants` and `state` for the model's other
//!   inputs (Silero VAD's sample rate and LSTM state);
//! * a one-value output is held for the frame's samples as a control
//!   signal (it can drive an AudioParam); a `[1, frame]` output is audio;
//! * the inference for frame `k` (input samples `[k·frame, (k+1)·frame)`)
//!   runs in the render quantum in which the frame completes, on the
//!   render thread, and its result occupies output samples
//!   `[(k+1)·frame, (k+2)·frame)`: one frame of latency;
//! * where each quantum lands whole inside a frame, the model's input
//!   tensor *is* the node's input buffer: the engine mixes straight into
//!   it (BYOB), and nothing copies audio between the engine and the model.
//!
//! This crate sits above `byob-audio` and `byob-tensor`, which never meet
//! otherwise. What follows is docs/neural-node.md.
//!
#![doc = include_str!("../../../docs/neural-node.md")]

// `unsafe` lives in one module, `zero_copy`, where the model's input
// tensor is lent to the engine; everything else is safe code.
#![deny(unsafe_code)]

mod model;
mod options;
mod processor;
mod resample;
mod status;
mod worker;
#[allow(unsafe_code)]
mod zero_copy;

pub use model::{NeuralError, NeuralModel, OutputKind};
pub use options::{Ep, Layout, Mode, OnnxOptions, OptionError, MAX_DEADLINE_SECONDS, MAX_FRAME};
pub use processor::OnnxProcessor;
pub use status::NeuralStatus;
pub use worker::{Clock, Offload, WorkerQueue};

use byob_audio::worklet::{AudioWorkletNode, AudioWorkletNodeOptions, ProcessorDefinition, ProcessorRegistry, RegisterProcessorError, WorkletProcessor};
use byob_audio::{AudioGraph, NodeError};
use std::path::Path;
use std::sync::{Arc, Mutex};
use worker::InferenceThread;

/// The name graph files give the processor: `"processor": "onnx"`.
pub const PROCESSOR_NAME: &str = "onnx";

/// The neural nodes of one context: how its quanta are paced, the
/// inference thread that serves its nodes in mode "worker" (started with
/// the first of them), and each node's status, for reporting (the CLI
/// prints each one's mode, latency and counters after a render).
#[derive(Clone, Debug, Default)]
pub struct NeuralNodes(Arc<Shared>);

#[derive(Default)]
struct Shared {
    clock: Clock,
    statuses: Mutex<Vec<Arc<NeuralStatus>>>,
    thread: Mutex<Option<InferenceThread>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuralNodes").field("clock", &self.clock).finish_non_exhaustive()
    }
}

impl NeuralNodes {
    /// The neural nodes of a context whose quanta `clock` paces.
    pub fn new(clock: Clock) -> Self {
        Self(Arc::new(Shared { clock, ..Shared::default() }))
    }

    pub fn clock(&self) -> Clock {
        self.0.clock
    }

    pub fn statuses(&self) -> Vec<Arc<NeuralStatus>> {
        self.0.statuses.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn add(&self, status: Arc<NeuralStatus>) {
        self.0.statuses.lock().unwrap_or_else(|e| e.into_inner()).push(status);
    }

    /// Serves `offload` on the context's inference thread (started here if
    /// it is not yet running): the hook by which any processor runs a
    /// session in mode "worker". `pool` holds every job the processor will
    /// use; how many it holds bounds how many may be out at once. Call it
    /// in the processor's constructor, never on the render thread.
    pub fn offload<O: Offload>(&self, offload: O, pool: Vec<O::Job>) -> std::io::Result<WorkerQueue<O::Job>> {
        let mut thread = self.0.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_none() {
            *thread = Some(InferenceThread::spawn(self.0.clock)?);
        }
        Ok(worker::attach(thread.as_ref().expect("started above"), self.0.clock, offload, pool))
    }
}

/// Registers the `"onnx"` processor: model paths in `processorOptions`
/// are taken from `base` (a graph file's folder), and every node made is
/// one of `nodes`.
pub fn register(registry: &mut ProcessorRegistry, base: &Path, nodes: &NeuralNodes) -> Result<(), RegisterProcessorError> {
    let (base, nodes) = (base.to_path_buf(), nodes.clone());
    registry.register(PROCESSOR_NAME, Vec::new(), move |init| {
        let options = OnnxOptions::from_json(init.processor_options, &base).map_err(|e| e.to_string())?;
        let processor = OnnxProcessor::new(&options, init, &nodes).map_err(|e| e.to_string())?;
        nodes.add(processor.status().clone());
        Ok(Box::new(processor) as Box<dyn WorkletProcessor>)
    })
}

/// Creates an `"onnx"` node from Rust, one of `nodes`: the session is
/// built here, on the calling (control) thread. `node` gives the worklet
/// options other than `processorOptions` (defaults: one input, one
/// output, mono).
pub fn create_node(graph: &mut AudioGraph, nodes: &NeuralNodes, options: OnnxOptions, node: AudioWorkletNodeOptions) -> Result<(AudioWorkletNode, Arc<NeuralStatus>), NodeError> {
    let slot: Arc<Mutex<Option<Arc<NeuralStatus>>>> = Arc::default();
    let (made, factory_nodes) = (slot.clone(), nodes.clone());
    let definition = ProcessorDefinition {
        parameter_descriptors: Vec::new(),
        factory: Arc::new(move |init| {
            let processor = OnnxProcessor::new(&options, init, &factory_nodes).map_err(|e| e.to_string())?;
            factory_nodes.add(processor.status().clone());
            *made.lock().unwrap_or_else(|e| e.into_inner()) = Some(processor.status().clone());
            Ok(Box::new(processor) as Box<dyn WorkletProcessor>)
        }),
        port_layout: None,
    };
    let handle = AudioWorkletNode::from_definition(graph, &definition, PROCESSOR_NAME, node)?;
    let status = slot.lock().unwrap_or_else(|e| e.into_inner()).take().expect("the factory ran");
    Ok((handle, status))
}
