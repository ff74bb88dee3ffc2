//! Processors by name, as `registerProcessor` makes them known.

use super::processor::{ProcessorInit, WorkletProcessor};
use crate::param::AudioParamDescriptor;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Builds a processor for a new node (runs on the control thread).
pub type ProcessorFactory = Arc<dyn Fn(&mut ProcessorInit<'_>) -> Result<Box<dyn WorkletProcessor>, String> + Send + Sync>;

/// A registered processor: its static `parameterDescriptors` and its constructor.
#[derive(Clone)]
pub struct ProcessorDefinition {
    pub parameter_descriptors: Vec<AudioParamDescriptor>,
    pub factory: ProcessorFactory,
    /// Ports the processor fixes itself (a Faust module's channel counts);
    /// nodes then take these unless their options say otherwise.
    pub port_layout: Option<PortLayout>,
}

/// Channel counts of a processor's inputs and outputs, fixed by the code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortLayout {
    pub input_channels: Vec<usize>,
    pub output_channels: Vec<usize>,
}

/// Why a processor could not be registered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterProcessorError {
    #[error("a processor named {0:?} is already registered (NotSupportedError)")]
    Duplicate(String),
    #[error("the processor name must not be empty (NotSupportedError)")]
    EmptyName,
    #[error("parameter {name:?}: {what} (InvalidStateError)")]
    Descriptor { name: String, what: String },
}

/// Loads processors from module files (WebAssembly): graph files name them
/// with `"module"` and `"abi"` instead of `"processor"`.
pub trait ModuleLoader: Send + Sync {
    /// Compiles `path` for `abi`; `parameter_descriptors` are the graph
    /// file's node-level declarations (`None` when it gives none). The error
    /// says what is wrong with the module.
    fn load(&self, path: &std::path::Path, abi: &str, parameter_descriptors: Option<Vec<AudioParamDescriptor>>) -> Result<ProcessorDefinition, String>;
}

/// The processors nodes can be created from: the equivalent of
/// `AudioWorkletGlobalScope.registerProcessor`, plus an optional loader for
/// processors compiled to WebAssembly.
#[derive(Clone, Default)]
pub struct ProcessorRegistry {
    processors: BTreeMap<String, ProcessorDefinition>,
    module_loader: Option<Arc<dyn ModuleLoader>>,
}

impl ProcessorRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding the example processors shipped with byob (see
    /// [`super::examples`]).
    pub fn with_examples() -> Self {
        let mut registry = Self::new();
        super::examples::register_all(&mut registry);
        registry
    }

    pub fn register(
        &mut self,
        name: &str,
        parameter_descriptors: Vec<AudioParamDescriptor>,
        factory: impl Fn(&mut ProcessorInit<'_>) -> Result<Box<dyn WorkletProcessor>, String> + Send + Sync + 'static,
    ) -> Result<(), RegisterProcessorError> {
        if name.is_empty() {
            return Err(RegisterProcessorError::EmptyName);
        }
        if self.processors.contains_key(name) {
            return Err(RegisterProcessorError::Duplicate(name.to_string()));
        }
        for (i, d) in parameter_descriptors.iter().enumerate() {
            let fail = |what: String| Err(RegisterProcessorError::Descriptor { name: d.name.clone(), what });
            if parameter_descriptors[..i].iter().any(|other| other.name == d.name) {
                return fail("is declared twice".into());
            }
            if !(d.min_value <= d.default_value && d.default_value <= d.max_value) {
                return fail(format!("defaultValue {} is outside minValue {}..=maxValue {}", d.default_value, d.min_value, d.max_value));
            }
        }
        self.processors
            .insert(name.to_string(), ProcessorDefinition { parameter_descriptors, factory: Arc::new(factory), port_layout: None });
        Ok(())
    }

    /// Lets graph files load processors from modules through `loader`.
    pub fn set_module_loader(&mut self, loader: Arc<dyn ModuleLoader>) {
        self.module_loader = Some(loader);
    }

    pub fn module_loader(&self) -> Option<&dyn ModuleLoader> {
        self.module_loader.as_deref()
    }

    pub fn get(&self, name: &str) -> Option<&ProcessorDefinition> {
        self.processors.get(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.processors.keys().map(String::as_str)
    }
}
