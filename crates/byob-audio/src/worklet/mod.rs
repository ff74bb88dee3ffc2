//! AudioWorklet-style processors that bring their own buffers (BYOB).
//!
//! A [`WorkletProcessor`] runs inside an [`AudioWorkletNode`]. Left alone it
//! works like a spec AudioWorkletProcessor: the engine copies each input
//! into arrays it owns, calls `process`, and copies the outputs out. A
//! processor can instead lend regions of its own [`ByobMemory`] to the
//! engine with `register_buffers`: the engine then mixes inputs straight
//! into those regions and downstream nodes read outputs straight out of
//! them — no copies. Channel-count changes are negotiated with
//! [`WorkletProcessor::channel_topology_change`]; the control side can ask
//! for new registrations at a quantum boundary through the node's port
//! ([`AudioWorkletNode::post_message`], [`WorkletProcessor::on_message`]).
//!
//! What follows is docs/byob.md, whose example is compiled and run as a test.
//!
#![doc = include_str!("../../../../docs/byob.md")]

pub mod examples;
mod node;
mod processor;
mod registration;
mod registry;

pub use crate::lent::{ByobMemory, CHANNEL_BYTES, REGION_ALIGNMENT};
pub use crate::node::PortMessage;
pub use node::{AudioWorkletNode, AudioWorkletNodeOptions, WorkletStatus};
pub use processor::{PortKind, ProcessIo, ProcessorInit, RegisterBuffers, Registrar, TopologyChange, TopologyResponse, WorkletProcessor};
pub use registration::{BufferKind, RegistrationError};
pub use registry::{ModuleLoader, PortLayout, ProcessorDefinition, ProcessorFactory, ProcessorRegistry, RegisterProcessorError};
