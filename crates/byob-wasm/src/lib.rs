//! # byob-wasm
//!
//! WebAssembly audio processors for byob, compiled with wasmtime. Three
//! ABIs (see docs/wasm-abi.md):
//!
//! * **byob** — the module registers regions of its own linear memory with
//!   the `byob.register_buffer` import; the engine mixes inputs straight into
//!   them and reads outputs straight out of them. No copies.
//! * **copy** — the shape of Emscripten's Wasm Audio Worklet callback: the
//!   host copies inputs and parameters into the module's scratch space and
//!   outputs out of it every quantum, as Emscripten does.
//! * **faust** — modules from `faust -lang wasm`: the host reads the JSON the
//!   module carries, maps its controls to AudioParams and points Faust's
//!   input and output tables at registered regions, so `compute` works in
//!   place. No copies.
//!
//! A module can never take the engine down: traps, endless loops (stopped
//! by epoch interruption after a configurable time per quantum) and memory
//! growth are contained; a module that does not speak its ABI fails to load
//! with an error that names what is wrong.
//!
//! ```no_run
//! use byob_wasm::{Abi, WasmHost};
//! let host = WasmHost::new(Default::default())?;
//! let definition = host.load("gain.wasm".as_ref(), Abi::Byob, None)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod abi_byob;
mod abi_copy;
mod faust;
mod host;
mod math;

use byob_audio::worklet::{ModuleLoader, ProcessorDefinition};
use byob_audio::AudioParamDescriptor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Engine, ExternType, FuncType, Module, ValType};

/// How often the epoch ticker advances: the granularity of the wall-clock
/// deadline, which only starts the CPU-time check (see `Limits`); coarse
/// enough that the ticker thread costs a busy machine next to nothing.
const TICK: Duration = Duration::from_micros(500);

/// Which ABI a module speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Abi {
    Byob,
    Copy,
    Faust,
}

impl Abi {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "byob" => Some(Self::Byob),
            "copy" => Some(Self::Copy),
            "faust" => Some(Self::Faust),
            _ => None,
        }
    }
}

/// The largest module file read: far above any audio processor's (a Faust
/// program compiles to tens of kilobytes), far below what takes the
/// compiler minutes.
pub const MAX_MODULE_BYTES: u64 = 64 << 20;

/// Limits applied to every module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How long one call into a module may run before it is interrupted
    /// and treated as a trap. Default 1 ms: well under one quantum
    /// (2.67 ms at 48 kHz). Past this much wall-clock time, a call is
    /// stopped once it has used this much more CPU time, so that a call
    /// merely preempted on a busy machine is not mistaken for a runaway
    /// one; a spinning module is stopped within twice the limit.
    pub max_time_per_call: Duration,
    /// The most linear memory one instance may have, in bytes: a module
    /// that asks for more at instantiation fails to load, and
    /// `memory.grow` past it returns -1, as the WebAssembly spec lets a
    /// host decide. Default 256 MiB.
    pub max_memory_bytes: usize,
    /// The most functions a module may define, checked before compiling
    /// (compile time grows with them). Default 10,000.
    pub max_functions: usize,
    /// The largest function body in bytes, checked before compiling (a
    /// Faust program's `compute` is tens of kilobytes; a crafted 7.5 MB
    /// body took the compiler over 20 s). Default 1 MiB.
    pub max_function_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_time_per_call: Duration::from_millis(1), max_memory_bytes: 256 << 20, max_functions: 10_000, max_function_bytes: 1 << 20 }
    }
}

impl Limits {
    pub(crate) fn ticks(&self) -> u64 {
        (self.max_time_per_call.as_nanos().div_ceil(TICK.as_nanos()) as u64).max(1)
    }
}

/// Why a module could not be loaded. Raised before rendering starts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{module}: not a valid WebAssembly module: {message}")]
    Compile { module: String, message: String },
    #[error("unknown ABI {0:?} (expected byob, copy or faust)")]
    UnknownAbi(String),
    #[error("{module}: missing export {export:?} ({expected}), required by the {abi} ABI")]
    MissingExport { module: String, export: String, expected: String, abi: &'static str },
    #[error("{module}: export {export:?} has the wrong type: expected {expected}, found {found}")]
    WrongExportType { module: String, export: String, expected: String, found: String },
    #[error("{module}: imports {import:?}, which the {abi} ABI does not provide")]
    UnsupportedImport { module: String, import: String, abi: &'static str },
    #[error("{module}: import {import:?} has the wrong type: expected {expected}, found {found}")]
    WrongImportType { module: String, import: String, expected: String, found: String },
    #[error("{module}: {what}")]
    Invalid { module: String, what: String },
    #[error("{module}: {during} trapped: {message}")]
    Trap { module: String, during: &'static str, message: String },
    #[error("{module}: byob_init returned {code}; the node cannot load")]
    InitFailed { module: String, code: i32 },
    #[error("could not set up the WebAssembly engine: {0}")]
    Engine(String),
}

/// Compiles and hosts WebAssembly processors.
#[derive(Clone)]
pub struct WasmHost {
    engine: Engine,
    limits: Limits,
}

impl WasmHost {
    pub fn new(limits: Limits) -> Result<Self, LoadError> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| LoadError::Engine(e.to_string()))?;
        start_ticker(&engine);
        Ok(Self { engine, limits })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Compiles a `.wasm` or `.wat` file (off the render thread) and checks
    /// it speaks `abi`. `parameter_descriptors` declare the parameters of the
    /// byob and copy ABIs (PARAM port `i` is descriptor `i`); Faust modules
    /// declare their own.
    pub fn load(&self, path: &Path, abi: Abi, parameter_descriptors: Option<Vec<AudioParamDescriptor>>) -> Result<ProcessorDefinition, LoadError> {
        let bytes = byob_files::read_regular(path, MAX_MODULE_BYTES, "a WebAssembly module").map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
        self.load_bytes(&path.display().to_string(), &bytes, abi, parameter_descriptors)
    }

    /// As [`load`](Self::load), from bytes (binary or text format).
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        abi: Abi,
        parameter_descriptors: Option<Vec<AudioParamDescriptor>>,
    ) -> Result<ProcessorDefinition, LoadError> {
        let compile_error = |message: String| LoadError::Compile { module: name.to_string(), message };
        if bytes.is_empty() {
            return Err(compile_error("the file is empty".into()));
        }
        let binary = if bytes.starts_with(b"\0asm") { std::borrow::Cow::Borrowed(bytes) } else { wat::parse_bytes(bytes).map_err(|e| compile_error(e.to_string()))? };
        check_shape(&binary, &self.limits).map_err(|what| LoadError::Invalid { module: name.to_string(), what })?;
        let module = Module::new(&self.engine, &binary).map_err(|e| compile_error(format!("{e:#}")))?;
        let loaded = Loaded { engine: self.engine.clone(), module, name: Arc::from(name), limits: self.limits };
        match abi {
            Abi::Byob => abi_byob::definition(loaded, parameter_descriptors.unwrap_or_default()),
            Abi::Copy => abi_copy::definition(loaded, parameter_descriptors.unwrap_or_default()),
            Abi::Faust => {
                if parameter_descriptors.is_some() {
                    return Err(LoadError::Invalid {
                        module: name.to_string(),
                        what: "a Faust module declares its own parameters; parameterDescriptors are for the byob and copy ABIs".into(),
                    });
                }
                faust::definition(loaded)
            }
        }
    }
}

/// Refuses a module whose functions are too many or too large to compile
/// in reasonable time, before the compiler sees it. Malformed sections are
/// left to the compiler, which reports them.
fn check_shape(binary: &[u8], limits: &Limits) -> Result<(), String> {
    for payload in wasmparser::Parser::new(0).parse_all(binary) {
        match payload {
            Ok(wasmparser::Payload::CodeSectionStart { count, .. }) if count as usize > limits.max_functions => {
                return Err(format!("{count} functions, more than the {} allowed (byob_wasm::Limits::max_functions; byob render --wasm-max-functions)", limits.max_functions));
            }
            Ok(wasmparser::Payload::CodeSectionEntry(body)) if body.range().len() > limits.max_function_bytes => {
                return Err(format!(
                    "a function body of {} bytes, more than the {} allowed (byob_wasm::Limits::max_function_bytes; byob render --wasm-max-function-kib)",
                    body.range().len(),
                    limits.max_function_bytes
                ));
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

impl ModuleLoader for WasmHost {
    fn load(&self, path: &Path, abi: &str, parameter_descriptors: Option<Vec<AudioParamDescriptor>>) -> Result<ProcessorDefinition, String> {
        let abi = Abi::from_name(abi).ok_or_else(|| LoadError::UnknownAbi(abi.to_string()).to_string())?;
        WasmHost::load(self, path, abi, parameter_descriptors).map_err(|e| e.to_string())
    }
}

/// Time allowed for one-off calls (`byob_init`, `malloc`, Faust's `init`),
/// which may prepare tables: this many calls' worth.
pub(crate) const INIT_CALLS: u64 = 100;

/// A compiled module on its way to becoming a processor definition.
pub(crate) struct Loaded {
    pub engine: Engine,
    pub module: Module,
    pub name: Arc<str>,
    pub limits: Limits,
}

impl Loaded {
    /// A store for one instance, with the watchdog that enforces the time limit.
    pub fn store(&self, sample_rate: f32, params: usize) -> wasmtime::Store<host::HostState> {
        let mut store = wasmtime::Store::new(&self.engine, host::HostState::new(sample_rate, params, self.limits.max_memory_bytes));
        store.limiter(|state| &mut state.store_limits);
        host::install_watchdog(&mut store, self.limits.max_time_per_call);
        store
    }

    /// Checks that export `name` is a function of type `params -> results`.
    pub fn check_func(&self, name: &str, params: &[ValType], results: &[ValType], abi: &'static str, required: bool) -> Result<bool, LoadError> {
        let expected = FuncType::new(&self.engine, params.iter().cloned(), results.iter().cloned());
        match self.module.get_export(name) {
            None if required => Err(LoadError::MissingExport {
                module: self.name.to_string(),
                export: name.into(),
                expected: format!("func {}", describe(&expected)),
                abi,
            }),
            None => Ok(false),
            Some(ExternType::Func(found)) if FuncType::eq(&found, &expected) => Ok(true),
            Some(found) => Err(LoadError::WrongExportType {
                module: self.name.to_string(),
                export: name.into(),
                expected: format!("func {}", describe(&expected)),
                found: describe_extern(&found),
            }),
        }
    }

    /// Checks that the module exports a linear memory named `memory`.
    pub fn check_memory(&self, abi: &'static str) -> Result<(), LoadError> {
        match self.module.get_export("memory") {
            Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => Ok(()),
            Some(found) => Err(LoadError::WrongExportType {
                module: self.name.to_string(),
                export: "memory".into(),
                expected: "a 32-bit, unshared linear memory".into(),
                found: describe_extern(&found),
            }),
            None => Err(LoadError::MissingExport {
                module: self.name.to_string(),
                export: "memory".into(),
                expected: "memory".into(),
                abi,
            }),
        }
    }

    /// A wasmtime error from instantiation or a call, as a load error.
    pub fn trap(&self, during: &'static str, error: wasmtime::Error) -> LoadError {
        LoadError::Trap { module: self.name.to_string(), during, message: format!("{error:#}") }
    }
}

pub(crate) fn describe(ty: &FuncType) -> String {
    let list = |types: &mut dyn Iterator<Item = ValType>| types.map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
    format!("({}) -> ({})", list(&mut ty.params()), list(&mut ty.results()))
}

pub(crate) fn describe_extern(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => format!("func {}", describe(f)),
        ExternType::Global(_) => "a global".into(),
        ExternType::Table(_) => "a table".into(),
        ExternType::Memory(_) => "a memory".into(),
        ExternType::Tag(_) => "a tag".into(),
    }
}

/// Advances the engine's epoch every [`TICK`] on a background thread (not
/// the render thread) for as long as the engine lives, so that calls into
/// modules can be interrupted.
fn start_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("byob-wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })
        .expect("spawning the epoch thread");
}
