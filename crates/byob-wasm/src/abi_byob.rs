//! The byob ABI, version 1 (docs/wasm-abi.md): the module lends regions of
//! its linear memory through the `byob.register_buffer` import.

use crate::host::{arm, sync_memory, with_registrar, HostState};
use crate::{LoadError, Loaded};
use byob_audio::worklet::{
    BufferKind, PortKind, ProcessIo, ProcessorDefinition, ProcessorInit, Registrar, RegistrationError,
    TopologyChange, TopologyResponse, WorkletProcessor, CHANNEL_BYTES,
};
use byob_audio::{AudioParamDescriptor, RENDER_QUANTUM_SIZE};
use std::sync::Arc;
use wasmtime::{Caller, Engine, ExternType, FuncType, Linker, Store, TypedFunc, ValType};

const ABI: &str = "byob";

/// `register_buffer` and `channel_count` results (docs/wasm-abi.md).
pub(crate) mod codes {
    pub const NO_SUCH_PORT: i32 = -1;
    pub const OUT_OF_BOUNDS: i32 = -2;
    pub const MISALIGNED: i32 = -3;
    pub const TOO_SMALL: i32 = -4;
    pub const OVERLAP: i32 = -5;
    pub const IN_USE: i32 = -6;
    pub const BAD_KIND: i32 = -7;
    pub const NOT_NOW: i32 = -8;
    pub const NEGATIVE: i32 = -9;
}

/// PARAM regions: `register_buffer(4, param, offset, max_bytes)`.
const PARAM_KIND: i32 = 4;

fn error_code(e: &RegistrationError) -> i32 {
    match e {
        RegistrationError::NoSuchPort { .. } => codes::NO_SUCH_PORT,
        RegistrationError::OutOfBounds { .. } => codes::OUT_OF_BOUNDS,
        RegistrationError::Misaligned { .. } => codes::MISALIGNED,
        RegistrationError::TooSmall { .. } => codes::TOO_SMALL,
        RegistrationError::Overlap { .. } => codes::OVERLAP,
        RegistrationError::InUse { .. } => codes::IN_USE,
        _ => codes::BAD_KIND,
    }
}

/// The imports the byob ABI provides: name and type.
fn provided(engine: &Engine) -> [(&'static str, FuncType); 3] {
    use ValType::{F32, I32};
    [
        ("register_buffer", FuncType::new(engine, [I32, I32, I32, I32], [I32])),
        ("channel_count", FuncType::new(engine, [I32, I32], [I32])),
        ("sample_rate", FuncType::new(engine, [], [F32])),
    ]
}

/// Checks that every import is one the byob ABI provides, with its type.
pub(crate) fn check_imports(loaded: &Loaded, abi: &'static str) -> Result<(), LoadError> {
    let provided = provided(&loaded.engine);
    for import in loaded.module.imports() {
        let full = format!("{}.{}", import.module(), import.name());
        let found = provided.iter().find(|(name, _)| import.module() == "byob" && *name == import.name());
        let Some((_, expected)) = found else {
            return Err(LoadError::UnsupportedImport { module: loaded.name.to_string(), import: full, abi });
        };
        match import.ty() {
            ExternType::Func(ty) if FuncType::eq(&ty, expected) => {}
            other => {
                return Err(LoadError::WrongImportType {
                    module: loaded.name.to_string(),
                    import: full,
                    expected: format!("func {}", crate::describe(expected)),
                    found: crate::describe_extern(&other),
                })
            }
        }
    }
    Ok(())
}

/// The host side of the `byob` imports.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap("byob", "register_buffer", |mut caller: Caller<'_, HostState>, kind: i32, port: i32, offset: i32, max_bytes: i32| -> i32 {
        // The module may have grown its memory during this call.
        sync_memory(&mut caller);
        if port < 0 || offset < 0 || max_bytes < 0 {
            return codes::NEGATIVE;
        }
        let (port, offset, max_bytes) = (port as usize, offset as usize, max_bytes as usize);
        let state = caller.data_mut();
        if kind == PARAM_KIND {
            return register_param(state, port, offset, max_bytes);
        }
        let Some(buffer_kind) = BufferKind::from_bits(kind as u32) else {
            return codes::BAD_KIND;
        };
        let range = offset..offset.saturating_add(max_bytes);
        if state.param_regions.iter().flatten().any(|p| overlaps(p, &range)) {
            return codes::OVERLAP;
        }
        let code = match state.memory_and_registrar() {
            (Some(memory), Some(registrar)) => match registrar.register_buffers(memory, offset, max_bytes, buffer_kind, port) {
                Ok(()) => 0,
                Err(e) => error_code(&e),
            },
            _ => codes::NOT_NOW,
        };
        if code == 0 {
            let key = (kind as u32, port);
            state.audio_regions.retain(|(k, _)| *k != key);
            state.audio_regions.push((key, range));
        }
        code
    })?;
    linker.func_wrap("byob", "channel_count", |mut caller: Caller<'_, HostState>, kind: i32, port: i32| -> i32 {
        let kind = match kind {
            1 => PortKind::Input,
            2 => PortKind::Output,
            _ => return codes::BAD_KIND,
        };
        let Ok(port) = usize::try_from(port) else { return codes::NEGATIVE };
        match caller.data_mut().memory_and_registrar().1 {
            Some(registrar) => registrar.channel_count(kind, port).map_or(codes::NO_SUCH_PORT, |c| c as i32),
            None => codes::NOT_NOW,
        }
    })?;
    linker.func_wrap("byob", "sample_rate", |caller: Caller<'_, HostState>| -> f32 { caller.data().sample_rate })?;
    Ok(linker)
}

fn register_param(state: &mut HostState, port: usize, offset: usize, max_bytes: usize) -> i32 {
    let Some(memory) = &state.lent else { return codes::NOT_NOW };
    if port >= state.param_regions.len() {
        return codes::NO_SUCH_PORT;
    }
    if !offset.is_multiple_of(16) {
        return codes::MISALIGNED;
    }
    if offset.checked_add(max_bytes).is_none_or(|end| end > memory.len()) {
        return codes::OUT_OF_BOUNDS;
    }
    if max_bytes < CHANNEL_BYTES {
        return codes::TOO_SMALL;
    }
    let range = offset..offset + max_bytes;
    let others = state.param_regions.iter().enumerate().filter(|(p, _)| *p != port).filter_map(|(_, r)| r.as_ref());
    if state.audio_regions.iter().map(|(_, r)| r).chain(others).any(|r| overlaps(r, &range)) {
        return codes::OVERLAP;
    }
    state.param_regions[port] = Some(range);
    0
}

fn overlaps(a: &std::ops::Range<usize>, b: &std::ops::Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Writes this quantum's values of every parameter that has a PARAM region
/// (128 values each) into the module's memory.
pub(crate) fn write_params(store: &mut Store<HostState>, io: &mut ProcessIo<'_>) {
    let Some(memory) = store.data().wasm_memory else { return };
    for index in 0..store.data().param_regions.len() {
        let Some(offset) = store.data().param_regions[index].as_ref().map(|r| r.start) else { continue };
        let values = io.param(index);
        let bytes = &mut memory.data_mut(&mut *store)[offset..offset + CHANNEL_BYTES];
        let floats: &mut [f32] = bytemuck::cast_slice_mut(bytes);
        if values.len() == 1 {
            floats.fill(values[0]);
        } else {
            floats.copy_from_slice(values);
        }
        io.count_copied_bytes(CHANNEL_BYTES);
    }
}

pub(crate) fn definition(loaded: Loaded, parameter_descriptors: Vec<AudioParamDescriptor>) -> Result<ProcessorDefinition, LoadError> {
    use ValType::{F32, I32};
    loaded.check_memory(ABI)?;
    loaded.check_func("byob_init", &[F32, I32], &[I32], ABI, true)?;
    loaded.check_func("byob_process", &[I32], &[I32], ABI, true)?;
    let topology = loaded.check_func("byob_topology_change", &[I32, I32, I32], &[I32], ABI, false)?;
    check_imports(&loaded, ABI)?;
    let loaded = Arc::new(loaded);
    let params = parameter_descriptors.len();
    let factory = move |init: &mut ProcessorInit<'_>| -> Result<Box<dyn WorkletProcessor>, String> {
        instantiate(&loaded, init, params, topology).map_err(|e| e.to_string())
    };
    Ok(ProcessorDefinition { parameter_descriptors, factory: Arc::new(factory), port_layout: None })
}

fn instantiate(loaded: &Loaded, init: &mut ProcessorInit<'_>, params: usize, topology: bool) -> Result<Box<dyn WorkletProcessor>, LoadError> {
    let mut store = loaded.store(init.sample_rate, params);
    arm(&mut store, loaded.limits.ticks() * crate::INIT_CALLS);
    let linker = linker(&loaded.engine).map_err(|e| loaded.trap("linking", e))?;
    let instance = linker.instantiate(&mut store, &loaded.module).map_err(|e| loaded.trap("instantiation", e))?;
    let memory = instance.get_memory(&mut store, "memory").expect("checked at load");
    store.data_mut().wasm_memory = Some(memory);
    sync_memory(&mut store);
    let typed = |e| loaded.trap("looking up exports", e);
    let byob_init: TypedFunc<(f32, i32), i32> = instance.get_typed_func(&mut store, "byob_init").map_err(typed)?;
    let process: TypedFunc<i32, i32> = instance.get_typed_func(&mut store, "byob_process").map_err(typed)?;
    let topology_change: Option<TypedFunc<(i32, i32, i32), i32>> =
        if topology { Some(instance.get_typed_func(&mut store, "byob_topology_change").map_err(typed)?) } else { None };
    let sample_rate = init.sample_rate;
    let code = with_registrar(&mut store, init, |s| byob_init.call(s, (sample_rate, RENDER_QUANTUM_SIZE as i32)));
    sync_memory(&mut store);
    match code {
        Ok(0) => {}
        Ok(code) => return Err(LoadError::InitFailed { module: loaded.name.to_string(), code }),
        Err(e) => return Err(loaded.trap("byob_init", e)),
    }
    Ok(Box::new(ByobModule { store, process, topology_change, ticks: loaded.limits.ticks(), trapped: None }))
}

/// A running byob-ABI module.
struct ByobModule {
    store: Store<HostState>,
    process: TypedFunc<i32, i32>,
    topology_change: Option<TypedFunc<(i32, i32, i32), i32>>,
    ticks: u64,
    /// A trap inside `byob_topology_change`, reported at the next `process`.
    trapped: Option<String>,
}

impl WorkletProcessor for ByobModule {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        if let Some(message) = self.trapped.take() {
            io.fail(message);
            return false;
        }
        write_params(&mut self.store, io);
        arm(&mut self.store, self.ticks);
        let process = &self.process;
        let result = with_registrar(&mut self.store, io, |s| process.call(s, RENDER_QUANTUM_SIZE as i32));
        // Regions the engine touches next must be read from where the
        // memory is now.
        sync_memory(&mut self.store);
        match result {
            Ok(keep_alive) => keep_alive != 0,
            Err(e) => {
                io.fail(format!("byob_process trapped: {e:#}"));
                false
            }
        }
    }

    fn channel_topology_change(&mut self, change: TopologyChange, registrar: &mut Registrar<'_>) -> TopologyResponse {
        let Some(handler) = &self.topology_change else {
            return TopologyResponse::AcceptIfFits;
        };
        if self.trapped.is_some() {
            return TopologyResponse::Reject;
        }
        let kind = match change.kind {
            PortKind::Input => 1,
            PortKind::Output => 2,
        };
        arm(&mut self.store, self.ticks);
        let args = (kind, change.port as i32, change.new_channels as i32);
        let result = with_registrar(&mut self.store, registrar, |s| handler.call(s, args));
        sync_memory(&mut self.store);
        match result {
            Ok(1) => TopologyResponse::Accept,
            Ok(0) => TopologyResponse::Reject,
            Ok(other) => {
                self.trapped = Some(format!("byob_topology_change returned {other} (expected 1 to accept or 0 to reject)"));
                TopologyResponse::Reject
            }
            Err(e) => {
                self.trapped = Some(format!("byob_topology_change trapped: {e:#}"));
                TopologyResponse::Reject
            }
        }
    }
}
