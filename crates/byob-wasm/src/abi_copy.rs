//! The copy ABI: the shape of Emscripten's Wasm Audio Worklet callback.
//! The host copies inputs and parameters into the module's scratch space
//! and the outputs out of it, every quantum, as Emscripten does.
//!
//! ```c
//! typedef struct { int numberOfChannels; int samplesPerChannel; float *data; } AudioSampleFrame;
//! typedef struct { int length; float *data; } AudioParamFrame;
//! int process(int numInputs, const AudioSampleFrame *inputs, int numOutputs, AudioSampleFrame *outputs,
//!             int numParams, const AudioParamFrame *params, void *userData);
//! ```

use crate::host::{arm, sync_memory, HostState};
use crate::{LoadError, Loaded};
use byob_audio::worklet::{ProcessIo, ProcessorDefinition, ProcessorInit, WorkletProcessor, CHANNEL_BYTES};
use byob_audio::{AudioParamDescriptor, MAX_CHANNELS, RENDER_QUANTUM_SIZE};
use std::sync::Arc;
use wasmtime::{Memory, Store, TypedFunc, ValType};

const ABI: &str = "copy";
const SAMPLE_FRAME_BYTES: usize = 12;
const PARAM_FRAME_BYTES: usize = 8;

pub(crate) fn definition(loaded: Loaded, parameter_descriptors: Vec<AudioParamDescriptor>) -> Result<ProcessorDefinition, LoadError> {
    use ValType::{F32, I32};
    loaded.check_memory(ABI)?;
    loaded.check_func("malloc", &[I32], &[I32], ABI, true)?;
    loaded.check_func("process", &[I32, I32, I32, I32, I32, I32, I32], &[I32], ABI, true)?;
    let has_init = loaded.check_func("init", &[F32], &[I32], ABI, false)?;
    crate::abi_byob::check_imports(&loaded, ABI)?;
    let loaded = Arc::new(loaded);
    let params = parameter_descriptors.len();
    let factory = move |init: &mut ProcessorInit<'_>| -> Result<Box<dyn WorkletProcessor>, String> {
        instantiate(&loaded, init, params, has_init).map_err(|e| e.to_string())
    };
    Ok(ProcessorDefinition { parameter_descriptors, factory: Arc::new(factory), port_layout: None })
}

/// Where the host's scratch space lies in the module's memory.
struct Scratch {
    input_frames: usize,
    output_frames: usize,
    param_frames: usize,
    /// Per input, per output and per parameter: the data area.
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    params: Vec<usize>,
}

fn instantiate(loaded: &Loaded, init: &mut ProcessorInit<'_>, params: usize, has_init: bool) -> Result<Box<dyn WorkletProcessor>, LoadError> {
    let mut store = loaded.store(init.sample_rate, params);
    arm(&mut store, loaded.limits.ticks() * crate::INIT_CALLS);
    let linker = crate::abi_byob::linker(&loaded.engine).map_err(|e| loaded.trap("linking", e))?;
    let instance = linker.instantiate(&mut store, &loaded.module).map_err(|e| loaded.trap("instantiation", e))?;
    let memory = instance.get_memory(&mut store, "memory").expect("checked at load");
    store.data_mut().wasm_memory = Some(memory);
    let typed = |e| loaded.trap("looking up exports", e);
    let malloc: TypedFunc<i32, i32> = instance.get_typed_func(&mut store, "malloc").map_err(typed)?;
    let process: TypedFunc<(i32, i32, i32, i32, i32, i32, i32), i32> = instance.get_typed_func(&mut store, "process").map_err(typed)?;
    let user_data = if has_init {
        let f: TypedFunc<f32, i32> = instance.get_typed_func(&mut store, "init").map_err(typed)?;
        f.call(&mut store, init.sample_rate).map_err(|e| loaded.trap("init", e))?
    } else {
        0
    };
    // One allocation for everything, 16-byte aligned inside.
    let (n_in, n_out) = (init.number_of_inputs, init.number_of_outputs);
    let align = |x: usize| x.next_multiple_of(16);
    let frames = align(n_in * SAMPLE_FRAME_BYTES) + align(n_out * SAMPLE_FRAME_BYTES) + align(params * PARAM_FRAME_BYTES);
    let data = (n_in + n_out) * MAX_CHANNELS * CHANNEL_BYTES + params * CHANNEL_BYTES;
    let base = malloc.call(&mut store, (frames + data + 16) as i32).map_err(|e| loaded.trap("malloc", e))?;
    if base <= 0 || base as usize + frames + data + 16 > memory.data_size(&store) {
        return Err(LoadError::Invalid { module: loaded.name.to_string(), what: format!("malloc({}) returned {base}", frames + data + 16) });
    }
    let mut at = align(base as usize);
    let mut take = |bytes: usize| {
        let start = at;
        at += align(bytes);
        start
    };
    let input_frames = take(n_in * SAMPLE_FRAME_BYTES);
    let output_frames = take(n_out * SAMPLE_FRAME_BYTES);
    let param_frames = take(params * PARAM_FRAME_BYTES);
    let inputs = (0..n_in).map(|_| take(MAX_CHANNELS * CHANNEL_BYTES)).collect();
    let outputs = (0..n_out).map(|_| take(MAX_CHANNELS * CHANNEL_BYTES)).collect();
    let param_data = (0..params).map(|_| take(CHANNEL_BYTES)).collect();
    sync_memory(&mut store);
    let scratch = Scratch { input_frames, output_frames, param_frames, inputs, outputs, params: param_data };
    Ok(Box::new(CopyModule { store, memory, process, user_data, scratch, ticks: loaded.limits.ticks() }))
}

/// A running copy-ABI module.
struct CopyModule {
    store: Store<HostState>,
    memory: Memory,
    process: TypedFunc<(i32, i32, i32, i32, i32, i32, i32), i32>,
    user_data: i32,
    scratch: Scratch,
    ticks: u64,
}

fn put_i32(bytes: &mut [u8], at: usize, value: usize) {
    bytes[at..at + 4].copy_from_slice(&(value as i32).to_le_bytes());
}

impl WorkletProcessor for CopyModule {
    fn process(&mut self, io: &mut ProcessIo<'_>) -> bool {
        let s = &self.scratch;
        let mut copied = 0;
        let bytes = self.memory.data_mut(&mut self.store);
        for (k, &data) in s.inputs.iter().enumerate() {
            let input = io.input(k);
            let frame = s.input_frames + k * SAMPLE_FRAME_BYTES;
            put_i32(bytes, frame, input.len() / RENDER_QUANTUM_SIZE);
            put_i32(bytes, frame + 4, RENDER_QUANTUM_SIZE);
            put_i32(bytes, frame + 8, data);
            let dst: &mut [f32] = bytemuck::cast_slice_mut(&mut bytes[data..data + input.len() * 4]);
            dst.copy_from_slice(input);
            copied += input.len() * 4;
        }
        for (k, &data) in s.outputs.iter().enumerate() {
            let channels = io.output_channels(k);
            let frame = s.output_frames + k * SAMPLE_FRAME_BYTES;
            put_i32(bytes, frame, channels);
            put_i32(bytes, frame + 4, RENDER_QUANTUM_SIZE);
            put_i32(bytes, frame + 8, data);
            bytes[data..data + channels * CHANNEL_BYTES].fill(0);
        }
        for (k, &data) in s.params.iter().enumerate() {
            let values = io.param(k);
            let frame = s.param_frames + k * PARAM_FRAME_BYTES;
            put_i32(bytes, frame, values.len());
            put_i32(bytes, frame + 4, data);
            let dst: &mut [f32] = bytemuck::cast_slice_mut(&mut bytes[data..data + values.len() * 4]);
            dst.copy_from_slice(values);
            copied += values.len() * 4;
        }
        arm(&mut self.store, self.ticks);
        let args = (
            s.inputs.len() as i32,
            s.input_frames as i32,
            s.outputs.len() as i32,
            s.output_frames as i32,
            s.params.len() as i32,
            s.param_frames as i32,
            self.user_data,
        );
        let result = self.process.call(&mut self.store, args);
        sync_memory(&mut self.store);
        let keep_alive = match result {
            Ok(keep_alive) => keep_alive != 0,
            Err(e) => {
                io.fail(format!("process trapped: {e:#}"));
                return false;
            }
        };
        let bytes = self.memory.data(&self.store);
        for (k, &data) in self.scratch.outputs.iter().enumerate() {
            let output = io.output(k);
            let src: &[f32] = bytemuck::cast_slice(&bytes[data..data + output.len() * 4]);
            output.copy_from_slice(src);
            copied += output.len() * 4;
        }
        io.count_copied_bytes(copied);
        keep_alive
    }
}
