//! Modules from `faust -lang wasm`. The module carries its JSON description
//! at the start of its memory; its DSP state lives at address 0 (`dsp` = 0)
//! and takes `size` bytes. The host places Faust's input and output pointer
//! tables and the channel buffers after that state, points the tables at the
//! buffers, and registers the buffers with the engine: `compute` then reads
//! the engine's mix and writes what downstream nodes read. No copies.

use crate::host::{arm, sync_memory, HostState};
use crate::{LoadError, Loaded};
use byob_audio::worklet::{BufferKind, PortLayout, ProcessIo, ProcessorDefinition, ProcessorInit, WorkletProcessor, CHANNEL_BYTES};
use byob_audio::{AudioParamDescriptor, AutomationRate, MAX_CHANNELS, RENDER_QUANTUM_SIZE};
use serde_json::Value;
use std::sync::Arc;
use wasmtime::{Linker, Memory, Store, TypedFunc, ValType};

const ABI: &str = "faust";
const PAGE: usize = 65536;

/// One control of the Faust program: where its value lives.
#[derive(Clone, Debug)]
struct Control {
    /// Byte offset of the FAUSTFLOAT zone in the module's memory.
    index: usize,
}

/// What the module's JSON says.
#[derive(Clone, Debug)]
struct Description {
    inputs: usize,
    outputs: usize,
    /// Bytes of DSP state from address 0.
    size: usize,
    controls: Vec<Control>,
    descriptors: Vec<AudioParamDescriptor>,
}

fn invalid(loaded: &Loaded, what: impl Into<String>) -> LoadError {
    LoadError::Invalid { module: loaded.name.to_string(), what: what.into() }
}

pub(crate) fn definition(loaded: Loaded) -> Result<ProcessorDefinition, LoadError> {
    use ValType::I32;
    loaded.check_memory(ABI)?;
    loaded.check_func("init", &[I32, I32], &[], ABI, true)?;
    loaded.check_func("compute", &[I32, I32, I32, I32], &[], ABI, true)?;
    // Instantiate once, off the render thread, to read the JSON — before
    // `init`, whose DSP state at address 0 overwrites it.
    let (store, memory, _) = instantiate(&loaded, None)?;
    let description = describe(&loaded, &json_at_start(&loaded, &store, memory)?)?;
    if description.inputs > MAX_CHANNELS || description.outputs > MAX_CHANNELS {
        return Err(invalid(&loaded, format!("{} inputs and {} outputs: at most {MAX_CHANNELS} each", description.inputs, description.outputs)));
    }
    let port_layout = PortLayout {
        input_channels: if description.inputs > 0 { vec![description.inputs] } else { Vec::new() },
        output_channels: if description.outputs > 0 { vec![description.outputs] } else { Vec::new() },
    };
    let parameter_descriptors = description.descriptors.clone();
    let loaded = Arc::new(loaded);
    let description = Arc::new(description);
    let factory = move |init: &mut ProcessorInit<'_>| -> Result<Box<dyn WorkletProcessor>, String> {
        start(&loaded, &description, init).map_err(|e| e.to_string())
    };
    Ok(ProcessorDefinition { parameter_descriptors, factory: Arc::new(factory), port_layout: Some(port_layout) })
}

type Compute = TypedFunc<(i32, i32, i32, i32), ()>;

/// Instantiates the module and, given a sample rate, calls its `init`.
fn instantiate(loaded: &Loaded, sample_rate: Option<f32>) -> Result<(Store<HostState>, Memory, Compute), LoadError> {
    let mut store = loaded.store(sample_rate.unwrap_or(0.0), 0);
    // Faust's init may fill large tables.
    arm(&mut store, loaded.limits.ticks() * crate::INIT_CALLS * 10);
    let mut linker = Linker::new(&loaded.engine);
    crate::math::define_env(&mut linker, &loaded.module, &loaded.name)?;
    crate::math::define_globals(&mut linker, &mut store, &loaded.module).map_err(|e| loaded.trap("linking", e))?;
    let instance = linker.instantiate(&mut store, &loaded.module).map_err(|e| loaded.trap("instantiation", e))?;
    let memory = instance.get_memory(&mut store, "memory").expect("checked at load");
    store.data_mut().wasm_memory = Some(memory);
    let init: TypedFunc<(i32, i32), ()> = instance.get_typed_func(&mut store, "init").map_err(|e| loaded.trap("looking up init", e))?;
    let compute: Compute = instance.get_typed_func(&mut store, "compute").map_err(|e| loaded.trap("looking up compute", e))?;
    if let Some(sample_rate) = sample_rate {
        init.call(&mut store, (0, sample_rate.round() as i32)).map_err(|e| loaded.trap("init", e))?;
    }
    Ok((store, memory, compute))
}

/// The NUL-terminated JSON the Faust compiler puts at address 0.
fn json_at_start(loaded: &Loaded, store: &Store<HostState>, memory: Memory) -> Result<Value, LoadError> {
    let bytes = memory.data(store);
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(0);
    let text = std::str::from_utf8(&bytes[..end]).map_err(|_| invalid(loaded, "the JSON at address 0 is not UTF-8"))?;
    serde_json::from_str(text).map_err(|e| invalid(loaded, format!("no Faust JSON description at address 0 ({e}); was it compiled with `faust -lang wasm`?")))
}

fn describe(loaded: &Loaded, json: &Value) -> Result<Description, LoadError> {
    let count = |key: &str| json.get(key).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| invalid(loaded, format!("the Faust JSON has no {key:?}")));
    let (inputs, outputs, size) = (count("inputs")?, count("outputs")?, count("size")?);
    let mut controls = Vec::new();
    let mut descriptors = Vec::new();
    // A stack walk in document order: push children reversed, pop the first.
    let mut pending: Vec<&Value> = json.get("ui").and_then(Value::as_array).map(|ui| ui.iter().rev().collect()).unwrap_or_default();
    while let Some(item) = pending.pop() {
        if let Some(items) = item.get("items").and_then(Value::as_array) {
            pending.extend(items.iter().rev());
            continue;
        }
        let kind = item.get("type").and_then(Value::as_str).unwrap_or("");
        if !matches!(kind, "hslider" | "vslider" | "nentry" | "button" | "checkbox") {
            continue; // bargraphs and the like are outputs of the program
        }
        let field = |key: &str, default: f64| item.get(key).and_then(Value::as_f64).unwrap_or(default) as f32;
        let address = item.get("address").and_then(Value::as_str).ok_or_else(|| invalid(loaded, format!("a {kind} has no address")))?;
        let index = item.get("index").and_then(Value::as_u64).ok_or_else(|| invalid(loaded, format!("{address} has no index")))? as usize;
        let (init, min, max) = (field("init", 0.0), field("min", 0.0), field("max", 1.0));
        if index.checked_add(4).is_none_or(|end| end > size) {
            return Err(invalid(loaded, format!("{address}: index {index} lies outside the DSP state ({size} bytes)")));
        }
        if !(init.is_finite() && min.is_finite() && max.is_finite() && min <= max) {
            return Err(invalid(loaded, format!("{address}: range min {min}, max {max}, init {init} is not a finite range with min <= max")));
        }
        // Faust reads its controls once per compute call: k-rate.
        descriptors.push(AudioParamDescriptor::new(address, init.clamp(min, max), min, max, AutomationRate::KRate));
        controls.push(Control { index });
    }
    Ok(Description { inputs, outputs, size, controls, descriptors })
}

fn start(loaded: &Loaded, description: &Description, init: &mut ProcessorInit<'_>) -> Result<Box<dyn WorkletProcessor>, LoadError> {
    let (mut store, memory, compute) = instantiate(loaded, Some(init.sample_rate))?;
    // Layout after the DSP state: pointer tables, then the channel buffers.
    let align = |x: usize| x.next_multiple_of(16);
    let input_table = align(description.size);
    let output_table = align(input_table + 4 * description.inputs);
    let input_region = align(output_table + 4 * description.outputs);
    let output_region = input_region + description.inputs * CHANNEL_BYTES;
    let end = output_region + description.outputs * CHANNEL_BYTES;
    let have = memory.data_size(&store);
    if end > have {
        memory.grow(&mut store, (end - have).div_ceil(PAGE) as u64).map_err(|e| loaded.trap("growing memory", e))?;
    }
    let bytes = memory.data_mut(&mut store);
    for c in 0..description.inputs {
        let at = input_table + 4 * c;
        bytes[at..at + 4].copy_from_slice(&((input_region + c * CHANNEL_BYTES) as i32).to_le_bytes());
    }
    for c in 0..description.outputs {
        let at = output_table + 4 * c;
        bytes[at..at + 4].copy_from_slice(&((output_region + c * CHANNEL_BYTES) as i32).to_le_bytes());
    }
    sync_memory(&mut store);
    let lent = store.data().lent.as_ref().expect("synced just now");
    if description.inputs > 0 {
        init.register_buffers(lent, input_region, description.inputs * CHANNEL_BYTES, BufferKind::Input, 0)
            .map_err(|e| invalid(loaded, format!("registering the input buffers: {e}")))?;
    }
    if description.outputs > 0 {
        init.register_buffers(lent, output_region, description.outputs * CHANNEL_BYTES, BufferKind::Output, 0)
            .map_err(|e| invalid(loaded, format!("registering the output buffers: {e}")))?;
    }
    Ok(Box::new(FaustModule {
        store,
        memory,
        compute,
        controls: description.controls.clone(),
        tables: (input_table as i32, output_table as i32),
        ticks: loaded.limits.ticks(),
    }))
}

/// A running Faust module.
struct FaustModule {
    store: Store<HostState>,
    memory: Memory,
    compute: Compute,
    controls: Vec<Control>,
    tables: (i32, i32),
    ticks: u64,
}

impl WorkletProcessor for FaustModule {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        let bytes = self.memory.data_mut(&mut self.store);
        for (k, control) in self.controls.iter().enumerate() {
            let value = io.param(k)[0];
            bytes[control.index..control.index + 4].copy_from_slice(&value.to_le_bytes());
        }
        arm(&mut self.store, self.ticks);
        let result = self.compute.call(&mut self.store, (0, RENDER_QUANTUM_SIZE as i32, self.tables.0, self.tables.1));
        sync_memory(&mut self.store);
        if let Err(e) = result {
            io.fail(format!("compute trapped: {e:#}"));
            return false;
        }
        true
    }
}
