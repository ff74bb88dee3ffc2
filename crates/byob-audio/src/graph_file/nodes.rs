//! Building each node type from its JSON description.

use super::json::{self, fail, numbers, Located, Object};
use crate::buffer::AudioBuffer;
use crate::graph::{AudioGraph, AudioNodeOptions, NodeError, NodeId};
use crate::mixing::{ChannelCountMode, ChannelInterpretation};
use crate::node::biquad_filter::{BiquadFilterNode, BiquadFilterOptions, BiquadFilterType};
use crate::node::buffer_source::{AudioBufferSourceNode, AudioBufferSourceOptions};
use crate::node::channel_merger::{ChannelMergerNode, ChannelMergerOptions};
use crate::node::channel_splitter::{ChannelSplitterNode, ChannelSplitterOptions};
use crate::node::constant_source::{ConstantSourceNode, ConstantSourceOptions};
use crate::node::delay::{DelayNode, DelayOptions};
use crate::node::gain::{GainNode, GainOptions};
use crate::node::oscillator::{OscillatorNode, OscillatorOptions, OscillatorType};
use crate::node::periodic_wave::{PeriodicWave, PeriodicWaveOptions};
use crate::node::stereo_panner::{StereoPannerNode, StereoPannerOptions};
use crate::node::{AudioNode, ScheduleCall};
use crate::param::{AudioParamDescriptor, AutomationRate};
use crate::worklet::{AudioWorkletNode, AudioWorkletNodeOptions, ProcessorRegistry};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

const NODE_OPTIONS: [&str; 3] = ["channelCount", "channelCountMode", "channelInterpretation"];

/// WAV files read once per graph, however many nodes use them.
pub struct BufferCache {
    /// The graph file's folder: relative paths resolve against it.
    pub base: PathBuf,
    loaded: HashMap<PathBuf, Arc<AudioBuffer>>,
}

impl BufferCache {
    pub fn new(base: PathBuf) -> Self {
        Self { base, loaded: HashMap::new() }
    }

    fn get(&mut self, value: &Value, at: &str, sample_rate: f32) -> json::Result<Arc<AudioBuffer>> {
        let obj = Object::new(value, at)?;
        obj.only(&["file", "sampleRate", "channelData"])?;
        if let Some(file) = obj.string("file")? {
            if obj.get("channelData").is_some() || obj.get("sampleRate").is_some() {
                return fail(at, "give either \"file\" or \"channelData\" (with an optional \"sampleRate\"), not both");
            }
            let path = self.base.join(file);
            if let Some(buffer) = self.loaded.get(&path) {
                return Ok(buffer.clone());
            }
            let buffer = Arc::new(AudioBuffer::from_wav(&path).or_else(|e| fail(&obj.path("file"), e.to_string()))?);
            self.loaded.insert(path, buffer.clone());
            return Ok(buffer);
        }
        let Some(data) = obj.get("channelData") else {
            return fail(at, "needs \"file\" (a WAV file) or \"channelData\" (arrays of samples)");
        };
        let channels_at = obj.path("channelData");
        let Value::Array(channels) = data else {
            return fail(&channels_at, "expected an array of channels, each an array of numbers");
        };
        let channels = channels
            .iter()
            .enumerate()
            .map(|(c, v)| numbers(v, &format!("{channels_at}[{c}]")))
            .collect::<json::Result<Vec<_>>>()?;
        let rate = obj.f32("sampleRate")?.unwrap_or(sample_rate);
        Ok(Arc::new(AudioBuffer::new(rate, channels).or_else(|e| fail(at, e.to_string()))?))
    }
}

/// Creates the node `obj` describes, with its params and schedule.
pub fn create(graph: &mut AudioGraph, obj: &Object, buffers: &mut BufferCache, registry: &ProcessorRegistry) -> json::Result<NodeId> {
    let type_name = obj.required_string("type")?;
    if type_name == "AudioWorkletNode" {
        obj.only(&["id", "type", "processor", "module", "abi", "parameterDescriptors", "options", "params"])?;
    } else {
        obj.only(&["id", "type", "options", "params", "start", "stop"])?;
    }
    let empty = Value::Object(Default::default());
    let options = Object::new(obj.get("options").unwrap_or(&empty), &obj.path("options"))?;
    let node_error = |e: NodeError| Located { at: options.at.clone(), message: e.to_string() };
    let node = node_options(&options)?;
    let sample_rate = graph.sample_rate();
    let scheduled = crate::node::SCHEDULED_SOURCES.contains(&type_name);
    if !scheduled {
        for key in ["start", "stop"] {
            if obj.get(key).is_some() {
                return fail(&obj.path(key), format!("{type_name} is not a scheduled source; only OscillatorNode, ConstantSourceNode and AudioBufferSourceNode take start/stop"));
            }
        }
    }
    let id = match type_name {
        "OscillatorNode" => {
            options.only(&with_node_options(&["type", "frequency", "detune", "periodicWave"]))?;
            let defaults = OscillatorOptions::default();
            let periodic_wave = match options.get("periodicWave") {
                None => None,
                Some(v) => Some(periodic_wave(v, &options.path("periodicWave"), sample_rate)?),
            };
            let type_ = options.choice("type", OscillatorType::from_name, "sine, square, sawtooth, triangle, custom")?;
            let osc = OscillatorNode::new(
                graph,
                OscillatorOptions {
                    type_: type_.unwrap_or(defaults.type_),
                    frequency: options.f32("frequency")?.unwrap_or(defaults.frequency),
                    detune: options.f32("detune")?.unwrap_or(defaults.detune),
                    periodic_wave,
                    node,
                },
            )
            .map_err(node_error)?;
            schedule(graph, obj, osc.id())?;
            osc.id()
        }
        "GainNode" => {
            options.only(&with_node_options(&["gain"]))?;
            let gain = options.f32("gain")?.unwrap_or(1.0);
            GainNode::new(graph, GainOptions { gain, node }).map_err(node_error)?.id()
        }
        "ConstantSourceNode" => {
            options.only(&["offset"])?;
            let offset = options.f32("offset")?.unwrap_or(1.0);
            let source = ConstantSourceNode::new(graph, ConstantSourceOptions { offset }).map_err(node_error)?;
            schedule(graph, obj, source.id())?;
            source.id()
        }
        "BiquadFilterNode" => {
            options.only(&with_node_options(&["type", "Q", "detune", "frequency", "gain"]))?;
            let d = BiquadFilterOptions::default();
            let names = "lowpass, highpass, bandpass, lowshelf, highshelf, peaking, notch, allpass";
            BiquadFilterNode::new(
                graph,
                BiquadFilterOptions {
                    type_: options.choice("type", BiquadFilterType::from_name, names)?.unwrap_or(d.type_),
                    q: options.f32("Q")?.unwrap_or(d.q),
                    detune: options.f32("detune")?.unwrap_or(d.detune),
                    frequency: options.f32("frequency")?.unwrap_or(d.frequency),
                    gain: options.f32("gain")?.unwrap_or(d.gain),
                    node,
                },
            )
            .map_err(node_error)?
            .id()
        }
        "DelayNode" => {
            options.only(&with_node_options(&["maxDelayTime", "delayTime"]))?;
            let d = DelayOptions::default();
            DelayNode::new(
                graph,
                DelayOptions {
                    max_delay_time: options.number("maxDelayTime")?.unwrap_or(d.max_delay_time),
                    delay_time: options.f32("delayTime")?.unwrap_or(d.delay_time),
                    node,
                },
            )
            .map_err(node_error)?
            .id()
        }
        "AudioBufferSourceNode" => {
            options.only(&["buffer", "detune", "loop", "loopStart", "loopEnd", "playbackRate"])?;
            let d = AudioBufferSourceOptions::default();
            let buffer = match options.get("buffer") {
                None | Some(Value::Null) => None,
                Some(v) => Some(buffers.get(v, &options.path("buffer"), sample_rate)?),
            };
            let source = AudioBufferSourceNode::new(
                graph,
                AudioBufferSourceOptions {
                    buffer,
                    detune: options.f32("detune")?.unwrap_or(d.detune),
                    loop_: options.boolean("loop")?.unwrap_or(d.loop_),
                    loop_start: options.number("loopStart")?.unwrap_or(d.loop_start),
                    loop_end: options.number("loopEnd")?.unwrap_or(d.loop_end),
                    playback_rate: options.f32("playbackRate")?.unwrap_or(d.playback_rate),
                },
            )
            .map_err(node_error)?;
            schedule(graph, obj, source.id())?;
            source.id()
        }
        "StereoPannerNode" => {
            options.only(&with_node_options(&["pan"]))?;
            let pan = options.f32("pan")?.unwrap_or(0.0);
            StereoPannerNode::new(graph, StereoPannerOptions { pan, node }).map_err(node_error)?.id()
        }
        "ChannelSplitterNode" => {
            options.only(&with_node_options(&["numberOfOutputs"]))?;
            let number_of_outputs = options.count("numberOfOutputs")?.unwrap_or(6);
            ChannelSplitterNode::new(graph, ChannelSplitterOptions { number_of_outputs, node }).map_err(node_error)?.id()
        }
        "ChannelMergerNode" => {
            options.only(&with_node_options(&["numberOfInputs"]))?;
            let number_of_inputs = options.count("numberOfInputs")?.unwrap_or(6);
            ChannelMergerNode::new(graph, ChannelMergerOptions { number_of_inputs, node }).map_err(node_error)?.id()
        }
        "AudioWorkletNode" => {
            options.only(&with_node_options(&["numberOfInputs", "numberOfOutputs", "outputChannelCount", "parameterData", "processorOptions"]))?;
            let worklet_options = worklet_options(&options, node)?;
            match (obj.string("processor")?, obj.string("module")?) {
                (Some(processor), None) => {
                    for key in ["abi", "parameterDescriptors"] {
                        if obj.get(key).is_some() {
                            return fail(&obj.path(key), format!("{key:?} goes with \"module\"; a registered processor declares its own"));
                        }
                    }
                    AudioWorkletNode::new(graph, registry, processor, worklet_options).map_err(node_error)?.id()
                }
                (None, Some(module)) => {
                    let abi = obj.required_string("abi")?;
                    let descriptors = match obj.get("parameterDescriptors") {
                        None => None,
                        Some(v) => Some(parameter_descriptors(v, &obj.path("parameterDescriptors"))?),
                    };
                    let Some(loader) = registry.module_loader() else {
                        return fail(&obj.path("module"), "this build of byob cannot load WebAssembly modules");
                    };
                    let path = buffers.base.join(module);
                    let definition = loader.load(&path, abi, descriptors).or_else(|e| fail(&obj.path("module"), e))?;
                    AudioWorkletNode::from_definition(graph, &definition, module, worklet_options).map_err(node_error)?.id()
                }
                _ => return fail(&obj.at, "an AudioWorkletNode needs either \"processor\" (a registered processor) or \"module\" with \"abi\""),
            }
        }
        other => {
            return fail(
                &obj.path("type"),
                format!("unknown node type {other:?} (known: OscillatorNode, GainNode, ConstantSourceNode, BiquadFilterNode, DelayNode, AudioBufferSourceNode, StereoPannerNode, ChannelSplitterNode, ChannelMergerNode, AudioWorkletNode)"),
            )
        }
    };
    if let Some(params) = obj.get("params") {
        automate(graph, id, &Object::new(params, &obj.path("params"))?)?;
    }
    Ok(id)
}

/// The spec's AudioParamDescriptor members, with the spec's defaults.
fn parameter_descriptors(value: &Value, at: &str) -> json::Result<Vec<AudioParamDescriptor>> {
    let Value::Array(items) = value else {
        return fail(at, "expected an array of AudioParamDescriptor objects");
    };
    // Each parameter is a buffer and a timeline the render keeps.
    const MAX_PARAMETERS: usize = 4096;
    if items.len() > MAX_PARAMETERS {
        return fail(at, format!("{} parameters, more than the {MAX_PARAMETERS} a node may have", items.len()));
    }
    let mut names = std::collections::HashSet::new();
    let mut descriptors = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let d = Object::new(item, &format!("{at}[{i}]"))?;
        d.only(&["name", "defaultValue", "minValue", "maxValue", "automationRate"])?;
        let name = d.required_string("name")?;
        let descriptor = AudioParamDescriptor::new(
            name,
            d.f32("defaultValue")?.unwrap_or(0.0),
            d.f32("minValue")?.unwrap_or(-f32::MAX),
            d.f32("maxValue")?.unwrap_or(f32::MAX),
            d.choice("automationRate", AutomationRate::from_name, "a-rate, k-rate")?.unwrap_or_default(),
        );
        if !(descriptor.min_value <= descriptor.default_value && descriptor.default_value <= descriptor.max_value) {
            return fail(&d.at, format!("defaultValue {} is outside minValue..=maxValue", descriptor.default_value));
        }
        if !names.insert(name) {
            return fail(&d.at, format!("parameter {name:?} is declared twice"));
        }
        descriptors.push(descriptor);
    }
    Ok(descriptors)
}

/// The spec's AudioWorkletNodeOptions.
fn worklet_options(options: &Object, node: AudioNodeOptions) -> json::Result<AudioWorkletNodeOptions> {
    let d = AudioWorkletNodeOptions::default();
    let output_channel_count = match options.get("outputChannelCount") {
        None => None,
        Some(Value::Array(items)) => {
            let at = options.path("outputChannelCount");
            Some(items.iter().enumerate().map(|(i, v)| json::count(v, &format!("{at}[{i}]"))).collect::<json::Result<_>>()?)
        }
        Some(_) => return fail(&options.path("outputChannelCount"), "expected an array of channel counts"),
    };
    let mut parameter_data = Vec::new();
    if let Some(data) = options.get("parameterData") {
        let data = Object::new(data, &options.path("parameterData"))?;
        for (name, value) in data.map {
            parameter_data.push((name.clone(), json::number(value, &data.path(name))? as f32));
        }
    }
    Ok(AudioWorkletNodeOptions {
        number_of_inputs: options.count("numberOfInputs")?.unwrap_or(d.number_of_inputs),
        number_of_outputs: options.count("numberOfOutputs")?.unwrap_or(d.number_of_outputs),
        output_channel_count,
        parameter_data,
        processor_options: options.get("processorOptions").cloned().unwrap_or(Value::Null),
        node,
    })
}

fn with_node_options(own: &[&'static str]) -> Vec<&'static str> {
    own.iter().chain(NODE_OPTIONS.iter()).copied().collect()
}

fn node_options(options: &Object) -> json::Result<AudioNodeOptions> {
    Ok(AudioNodeOptions {
        channel_count: options.count("channelCount")?,
        channel_count_mode: options.choice("channelCountMode", ChannelCountMode::from_name, "max, clamped-max, explicit")?,
        channel_interpretation: options.choice("channelInterpretation", ChannelInterpretation::from_name, "speakers, discrete")?,
    })
}

fn periodic_wave(value: &Value, at: &str, sample_rate: f32) -> json::Result<PeriodicWave> {
    let obj = Object::new(value, at)?;
    obj.only(&["real", "imag", "disableNormalization"])?;
    let real = obj.get("real").map(|v| numbers(v, &obj.path("real"))).transpose()?;
    let imag = obj.get("imag").map(|v| numbers(v, &obj.path("imag"))).transpose()?;
    let disable_normalization = obj.boolean("disableNormalization")?.unwrap_or(false);
    PeriodicWave::new(sample_rate, PeriodicWaveOptions { real, imag, disable_normalization }).or_else(|e| fail(at, e.to_string()))
}

/// `start`: a time or the spec's argument list; `stop`: a time.
pub fn schedule(graph: &mut AudioGraph, obj: &Object, node: NodeId) -> json::Result<()> {
    let buffer_source = graph.type_name(node) == "AudioBufferSourceNode";
    if let Some(start) = obj.get("start") {
        let at = obj.path("start");
        let args: Vec<f64> = match start {
            Value::Array(items) => {
                items.iter().enumerate().map(|(i, v)| json::number(v, &format!("{at}[{i}]"))).collect::<json::Result<_>>()?
            }
            v => vec![json::number(v, &at)?],
        };
        let max_args = if buffer_source { 3 } else { 1 };
        if args.is_empty() || args.len() > max_args {
            return fail(&at, format!("start takes 1 to {max_args} arguments (when{}), got {}", if max_args == 3 { ", offset, duration" } else { "" }, args.len()));
        }
        let call = ScheduleCall::Start { when: args[0], offset: args.get(1).copied(), duration: args.get(2).copied() };
        graph.schedule(node, call).or_else(|e| fail(&at, e.to_string()))?;
    }
    if let Some(stop) = obj.get("stop") {
        let at = obj.path("stop");
        let when = json::number(stop, &at)?;
        graph.schedule(node, ScheduleCall::Stop { when }).or_else(|e| fail(&at, e.to_string()))?;
    }
    Ok(())
}

/// `params`: for each AudioParam name, either a list of method calls or an
/// object `{"value": v, "automationRate": "k-rate", "events": [...]}`.
pub fn automate(graph: &mut AudioGraph, node: NodeId, params: &Object) -> json::Result<()> {
    let now = graph.current_time();
    for (name, value) in params.map {
        let at = params.path(name);
        let id = graph.param_by_name(node, name).or_else(|e| fail(&at, e.to_string()))?;
        let mut param = graph.param(id);
        let events = match value {
            Value::Object(_) => {
                let obj = Object::new(value, &at)?;
                obj.only(&["value", "automationRate", "events"])?;
                if let Some(v) = obj.f32("value")? {
                    param.set_value(v).or_else(|e| fail(&obj.path("value"), e.to_string()))?;
                }
                if let Some(rate) = obj.choice("automationRate", AutomationRate::from_name, "a-rate, k-rate")? {
                    param.set_automation_rate(rate).or_else(|e| fail(&obj.path("automationRate"), e.to_string()))?;
                }
                obj.get("events")
            }
            other => Some(other),
        };
        let Some(events) = events else { continue };
        let events_at = if value.is_object() { format!("{at}.events") } else { at.clone() };
        let Value::Array(events) = events else {
            return fail(&events_at, "expected an array of method calls such as [\"setValueAtTime\", 1, 0]");
        };
        for (i, event) in events.iter().enumerate() {
            let event_at = format!("{events_at}[{i}]");
            let Some((Value::String(method), args)) = event.as_array().and_then(|a| a.split_first()) else {
                return fail(&event_at, "expected [\"methodName\", arguments...]");
            };
            call(param.timeline(), method, args, &event_at, now)?;
        }
    }
    Ok(())
}

fn call(timeline: &mut crate::param::Timeline, method: &str, args: &[Value], at: &str, now: f64) -> json::Result<()> {
    let expected = match method {
        "setValueAtTime" | "linearRampToValueAtTime" | "exponentialRampToValueAtTime" => 2,
        "setTargetAtTime" | "setValueCurveAtTime" => 3,
        "cancelScheduledValues" | "cancelAndHoldAtTime" => 1,
        other => {
            return fail(at, format!("unknown AudioParam method {other:?} (expected setValueAtTime, linearRampToValueAtTime, exponentialRampToValueAtTime, setTargetAtTime, setValueCurveAtTime, cancelScheduledValues or cancelAndHoldAtTime)"))
        }
    };
    if args.len() != expected {
        return fail(at, format!("{method} takes {expected} argument(s), got {}", args.len()));
    }
    let n = |i: usize| json::number(&args[i], &format!("{at}[{}]", i + 1));
    // `now`: 0 before rendering starts, a score entry's time after.
    let result = match method {
        "setValueAtTime" => timeline.set_value_at_time(n(0)? as f32, n(1)?),
        "linearRampToValueAtTime" => timeline.linear_ramp_to_value_at_time(n(0)? as f32, n(1)?, now),
        "exponentialRampToValueAtTime" => timeline.exponential_ramp_to_value_at_time(n(0)? as f32, n(1)?, now),
        "setTargetAtTime" => timeline.set_target_at_time(n(0)? as f32, n(1)?, n(2)?),
        "setValueCurveAtTime" => {
            let values = numbers(&args[0], &format!("{at}[1]"))?;
            timeline.set_value_curve_at_time(&values, n(1)?, n(2)?)
        }
        "cancelScheduledValues" => timeline.cancel_scheduled_values(n(0)?),
        _ => timeline.cancel_and_hold_at_time(n(0)?),
    };
    result.or_else(|e| fail(at, e.to_string()))
}
