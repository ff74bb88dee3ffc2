//! `byob render` and `byob play`.

use anyhow::{bail, Context, Result};
use byob_audio::graph_file::GraphFile;
use byob_audio::SampleFormat;
use byob_files::Outputs;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    F32,
    S16,
    S24,
}

#[derive(Args)]
pub struct RenderArgs {
    /// The graph file (JSON).
    graph: PathBuf,
    /// Where to write the WAV file.
    #[arg(short, long)]
    output: PathBuf,
    /// Override the file's sampleRate (Hz).
    #[arg(long)]
    sample_rate: Option<f32>,
    /// Override the file's length (frames).
    #[arg(long, conflicts_with = "duration")]
    length: Option<usize>,
    /// Override the file's length (seconds).
    #[arg(long)]
    duration: Option<f64>,
    /// Sample format of the WAV file.
    #[arg(long, value_enum, default_value = "f32")]
    format: Format,
    /// Also draw the waveform and a spectrogram to this PNG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The most memory the render's result and its nodes' delay lines may
    /// take, in MiB (default 4096).
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    max_memory_mib: usize,
    #[command(flatten)]
    wasm: WasmArgs,
}

#[derive(Args)]
pub struct WasmArgs {
    /// How long one call into a WebAssembly module may run before it is
    /// stopped and the node fails (milliseconds).
    #[arg(long, default_value_t = 1.0, value_name = "MS")]
    wasm_time_limit: f64,
    /// The most linear memory one WebAssembly node may have (MiB); its
    /// `memory.grow` past this returns -1.
    #[arg(long, default_value_t = byob_wasm::Limits::default().max_memory_bytes >> 20, value_name = "MIB")]
    wasm_max_memory_mib: usize,
    /// The most functions a WebAssembly module may define, checked before
    /// it is compiled.
    #[arg(long, default_value_t = byob_wasm::Limits::default().max_functions, value_name = "N")]
    wasm_max_functions: usize,
    /// The largest function body a WebAssembly module may hold (KiB),
    /// checked before it is compiled.
    #[arg(long, default_value_t = byob_wasm::Limits::default().max_function_bytes >> 10, value_name = "KIB")]
    wasm_max_function_kib: usize,
}

impl WasmArgs {
    /// The example processors, the neural node (`"onnx"`, models taken
    /// from `graph`'s folder, each node made added to `nodes`), plus
    /// WebAssembly modules named in graph files.
    fn registry(&self, graph: &std::path::Path, nodes: &byob_neural::NeuralNodes) -> Result<byob_audio::ProcessorRegistry> {
        const MAX_MS: f64 = 60_000.0;
        if !(self.wasm_time_limit > 0.0 && self.wasm_time_limit <= MAX_MS) {
            bail!("--wasm-time-limit must be a number of milliseconds above 0 and at most {MAX_MS}, got {}", self.wasm_time_limit);
        }
        let max_memory_bytes = crate::mib_to_bytes("--wasm-max-memory-mib", self.wasm_max_memory_mib)?;
        // Compile time grows with both: bounded so that a module still
        // compiles in seconds.
        const MAX_FUNCTIONS: usize = 1_000_000;
        const MAX_FUNCTION_KIB: usize = 64 << 10;
        if !(1..=MAX_FUNCTIONS).contains(&self.wasm_max_functions) {
            bail!("--wasm-max-functions must be from 1 to {MAX_FUNCTIONS}, got {}", self.wasm_max_functions);
        }
        if !(1..=MAX_FUNCTION_KIB).contains(&self.wasm_max_function_kib) {
            bail!("--wasm-max-function-kib must be from 1 to {MAX_FUNCTION_KIB}, got {}", self.wasm_max_function_kib);
        }
        let limits = byob_wasm::Limits {
            max_time_per_call: Duration::from_secs_f64(self.wasm_time_limit / 1000.0),
            max_memory_bytes,
            max_functions: self.wasm_max_functions,
            max_function_bytes: self.wasm_max_function_kib << 10,
        };
        let mut registry = byob_audio::ProcessorRegistry::with_examples();
        registry.set_module_loader(std::sync::Arc::new(byob_wasm::WasmHost::new(limits)?));
        byob_neural::register(&mut registry, graph.parent().unwrap_or(std::path::Path::new("")), nodes)?;
        Ok(registry)
    }
}

#[derive(Args)]
pub struct PlayArgs {
    /// The graph file (JSON).
    graph: PathBuf,
    /// Override the file's length (seconds).
    #[arg(long)]
    duration: Option<f64>,
    /// Where to play: the default output device, or none (the Web Audio
    /// null sink: real-time pace, no device; for servers and CI).
    #[arg(long, value_enum, default_value = "default")]
    sink: SinkKind,
    #[command(flatten)]
    wasm: WasmArgs,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum SinkKind {
    Default,
    None,
}

/// Frames the null sink asks for per callback: 256, a common device
/// buffer (5.3 ms at 48 kHz), and no multiple of the 128-frame quantum's
/// boundaries needs to line up with it.
const NULL_SINK_BUFFER_FRAMES: usize = 256;

/// An opened sink.
enum Sink {
    #[cfg(feature = "play")]
    Device(byob_audio::RealtimeOutput),
    Null(byob_audio::NullOutput),
}

fn length_override(sample_rate: f32, length: Option<usize>, duration: Option<f64>) -> Result<Option<usize>> {
    match duration {
        Some(d) if !(d.is_finite() && d > 0.0) => bail!("--duration must be a positive number of seconds, got {d}"),
        Some(d) => Ok(Some((d * sample_rate as f64).round().max(1.0) as usize)),
        None => Ok(length),
    }
}

pub fn render(args: RenderArgs) -> Result<()> {
    // Every output is checked, and given its temporary file, before the
    // render starts: a render whose result cannot be written is not begun.
    let mut outputs = Outputs::new();
    outputs.stage(&args.output)?;
    if let Some(png) = &args.plot {
        if !png.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            bail!("--plot {}: the plot is a PNG file; name it NAME.png", png.display());
        }
        outputs.stage(png)?;
    }
    let file = GraphFile::load(&args.graph)?;
    let sample_rate = args.sample_rate.unwrap_or(file.sample_rate());
    let length = length_override(sample_rate, args.length, args.duration)?;
    let memory_limit = crate::mib_to_bytes("--max-memory-mib", args.max_memory_mib)?;
    let neural = byob_neural::NeuralNodes::new(byob_neural::Clock::Offline);
    let ctx = file.offline_context_limited(args.sample_rate, length, &args.wasm.registry(&args.graph, &neural)?, memory_limit)?;
    let total = ctx.length();
    let format = match args.format {
        Format::F32 => SampleFormat::F32,
        Format::S16 => SampleFormat::S16,
        Format::S24 => SampleFormat::S24,
    };
    check_wav_size(total, file.number_of_channels(), format)?;

    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let rendered = ctx.render(|done| {
        // Only renders that take longer than a moment get a bar.
        if bar.is_none() && started.elapsed() > Duration::from_millis(300) {
            let b = ProgressBar::new(total as u64);
            b.set_style(
                ProgressStyle::with_template("{spinner} rendering [{bar:40}] {percent}% ({eta} left)")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar = Some(b);
        }
        if let Some(b) = &bar {
            b.set_position(done as u64);
        }
    })
    // A cycle without a DelayNode is found only when the graph compiles.
    .with_context(|| args.graph.display().to_string())?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let wall = started.elapsed().as_secs_f64();
    for event in &rendered.processor_errors {
        // The spec's processorerror: that node went silent, the rest played on.
        eprintln!("warning: processorerror in node {:?}: {} (it output silence from then on)", event.node, event.message);
    }
    report_neural_nodes(&neural);
    let buffer = rendered.buffer;
    if let Some((count, first)) = buffer.non_finite_samples() {
        eprintln!("warning: {count} sample(s) are NaN or infinite (the first at frame {first}); the WAV file holds 0 in their place");
    }
    let staged = outputs.staged_mut();
    buffer.write_wav_to(staged[0].file(), format).with_context(|| format!("writing {}", args.output.display()))?;
    if let Some(png) = staged.get(1) {
        crate::plot::draw(&buffer, png.temp_path()).with_context(|| format!("drawing {}", png.target().display()))?;
    }
    outputs.commit()?;
    let seconds = total as f64 / sample_rate as f64;
    println!(
        "rendered {total} frames ({seconds:.3} s, {} ch @ {sample_rate} Hz) in {wall:.3} s: {:.1}x real time -> {}",
        buffer.number_of_channels(),
        seconds / wall.max(1e-9),
        args.output.display()
    );
    Ok(())
}

/// One line per neural node: what ran, how late, how often, what it copied.
fn report_neural_nodes(nodes: &byob_neural::NeuralNodes) {
    for (i, status) in nodes.statuses().iter().enumerate() {
        let copied = match (status.zero_copy(), status.bytes_copied_out()) {
            (true, 0) => "zero-copy input".to_string(),
            (true, out) => format!("zero-copy input, {out} bytes copied out"),
            (false, out) => format!("{} bytes copied", status.bytes_copied_in() + out),
        };
        let ep = match status.gpu_steps() {
            Some((gpu, all)) => format!(", ep webgpu ({gpu} of {all} steps on the GPU)"),
            None => String::new(),
        };
        println!(
            "neural node {} ({}): mode {}{ep}, latency {:.1} ms, {} inferences, {} deadlines missed, {}",
            i + 1,
            status.model().file_name().map_or_else(|| status.model().display().to_string(), |n| n.to_string_lossy().into_owned()),
            status.mode().name(),
            status.latency_seconds() * 1000.0,
            status.inferences(),
            status.deadlines_missed(),
            copied,
        );
    }
}

/// A WAV file's sizes are 32-bit: a render longer than it can hold is
/// refused before it starts, not after.
fn check_wav_size(frames: usize, channels: usize, format: SampleFormat) -> Result<()> {
    let bytes_per_sample = u128::from(format.bits() / 8);
    let bytes = frames as u128 * channels as u128 * bytes_per_sample;
    // The RIFF size counts the data and the 36 header bytes after it.
    if bytes + 36 > u32::MAX as u128 {
        bail!("{frames} frames × {channels} channels of {bytes_per_sample}-byte samples is {bytes} bytes, more than a WAV file holds (4 GiB); shorten the render with --duration or --length, or use --format s16");
    }
    Ok(())
}

pub fn play(args: PlayArgs) -> Result<()> {
    let file = GraphFile::load(&args.graph)?;
    let channels = file.number_of_channels();
    let (sink, sample_rate, name) = match args.sink {
        SinkKind::None => (Sink::Null(byob_audio::NullOutput::new(channels, NULL_SINK_BUFFER_FRAMES)), file.sample_rate(), "the null sink (no device)".to_string()),
        SinkKind::Default => open_device(channels)?,
    };
    let length = length_override(sample_rate, None, args.duration)?
        .unwrap_or_else(|| (file.length() as f64 * sample_rate as f64 / file.sample_rate() as f64).round() as usize);
    let mut graph = byob_audio::AudioGraph::new(sample_rate, channels)?;
    let neural = byob_neural::NeuralNodes::new(byob_neural::Clock::RealTime);
    file.build(&mut graph, &args.wasm.registry(&args.graph, &neural)?)?;
    println!("playing {} on {name} at {sample_rate} Hz", args.graph.display());
    // The spec's render capacity, each second of audio, on a live line.
    let bar = ProgressBar::new(length as u64);
    bar.set_style(ProgressStyle::with_template("{spinner} playing [{bar:40}] {msg}").expect("static template").progress_chars("=> "));
    let mut on_capacity = |second: byob_audio::RenderCapacityReport| {
        bar.set_position((second.timestamp * sample_rate as f64) as u64);
        bar.set_message(capacity_text(&second));
    };
    let render = graph.compile()?;
    let whole = match sink {
        #[cfg(feature = "play")]
        Sink::Device(output) => output.play(render, length, &mut on_capacity)?,
        Sink::Null(output) => output.play(render, length, &mut on_capacity),
    };
    bar.finish_and_clear();
    println!("render capacity: {}, over {} callbacks", capacity_text(&whole), whole.callbacks);
    report_neural_nodes(&neural);
    Ok(())
}

fn capacity_text(report: &byob_audio::RenderCapacityReport) -> String {
    format!("load {:.1}% average, {:.1}% peak, underruns {:.1}%", report.average_load * 100.0, report.peak_load * 100.0, report.underrun_ratio * 100.0)
}

/// The default output device, its rate and its name.
#[cfg(feature = "play")]
fn open_device(channels: usize) -> Result<(Sink, f32, String)> {
    let output = byob_audio::RealtimeOutput::open(channels)?;
    let (rate, name) = (output.sample_rate(), output.device_name().to_string());
    Ok((Sink::Device(output), rate, name))
}

#[cfg(not(feature = "play"))]
fn open_device(_: usize) -> Result<(Sink, f32, String)> {
    bail!("this byob was built without real-time audio output; rebuild it with `cargo build --release -p byob-cli --features play` (needs libasound2-dev on Linux), or play on the null sink with --sink none")
}
