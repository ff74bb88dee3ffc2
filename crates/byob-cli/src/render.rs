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
    score: ScoreArgs,
    #[command(flatten)]
    wasm: WasmArgs,
}

#[derive(Args)]
pub struct ScoreArgs {
    /// Apply the score in this file (`{"score": [...]}` or a graph file)
    /// instead of the graph file's own.
    #[arg(long, value_name = "FILE", conflicts_with = "no_score")]
    score: Option<PathBuf>,
    /// Ignore the graph file's score.
    #[arg(long)]
    no_score: bool,
}

impl ScoreArgs {
    /// `file`, with the score these options ask for.
    fn load(&self, graph: &std::path::Path) -> Result<GraphFile> {
        let mut file = GraphFile::load(graph)?;
        if let Some(path) = &self.score {
            file.load_score(path)?;
        }
        if self.no_score {
            file.clear_score();
        }
        Ok(file)
    }
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
    /// An output device by name, instead of the default one.
    #[arg(long, value_name = "NAME", conflicts_with = "sink")]
    device: Option<String>,
    /// The sink's buffer: interactive (256 frames), balanced (1024),
    /// playback (4096), or a number of seconds.
    #[arg(long, default_value = "interactive", value_parser = parse_latency_hint)]
    latency_hint: byob_audio::LatencyHint,
    /// Also write what the null sink played to this WAV file (f32), to
    /// compare with `byob render`.
    #[arg(long, value_name = "WAV")]
    capture: Option<PathBuf>,
    #[command(flatten)]
    score: ScoreArgs,
    #[command(flatten)]
    wasm: WasmArgs,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum SinkKind {
    Default,
    None,
}

fn parse_latency_hint(text: &str) -> Result<byob_audio::LatencyHint, String> {
    use byob_audio::LatencyHint;
    match text {
        "interactive" => Ok(LatencyHint::Interactive),
        "balanced" => Ok(LatencyHint::Balanced),
        "playback" => Ok(LatencyHint::Playback),
        seconds => match seconds.parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 && s <= 10.0 => Ok(LatencyHint::Seconds(s)),
            _ => Err(format!("expected interactive, balanced, playback or a number of seconds above 0 and at most 10, got {seconds:?}")),
        },
    }
}

/// How far ahead of the render side the score's changes are sent: late
/// enough to be a change while playing, early enough to land on their
/// quantum even when the control thread is descheduled for a while.
const SCORE_LOOKAHEAD: f64 = 0.2;

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
    let file = args.score.load(&args.graph)?;
    let sample_rate = args.sample_rate.unwrap_or(file.sample_rate());
    let length = length_override(sample_rate, args.length, args.duration)?;
    let memory_limit = crate::mib_to_bytes("--max-memory-mib", args.max_memory_mib)?;
    let neural = byob_neural::NeuralNodes::new(byob_neural::Clock::Offline);
    let registry = args.wasm.registry(&args.graph, &neural)?;
    let (ctx, mut score) = file.offline_score_context(args.sample_rate, length, &registry, memory_limit)?;
    let total = ctx.length();
    let format = match args.format {
        Format::F32 => SampleFormat::F32,
        Format::S16 => SampleFormat::S16,
        Format::S24 => SampleFormat::S24,
    };
    check_wav_size(total, file.number_of_channels(), format)?;

    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let progress = |done| {
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
    };
    let rendered = ctx
        .render_changing(progress, |graph, frame| score.apply_due(graph, frame).map_err(|e| e.to_string()))
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
    use byob_audio::{AudioContext, AudioContextOptions, NodeEventKind, SinkId};
    let file = args.score.load(&args.graph)?;
    let sink_id = match (&args.device, args.sink) {
        (Some(name), _) => SinkId::Device(name.clone()),
        (None, SinkKind::None) => SinkId::None,
        (None, SinkKind::Default) => SinkId::Default,
    };
    if args.capture.is_some() && sink_id != SinkId::None {
        bail!("--capture needs --sink none: a device's audio is not handed back");
    }
    let mut outputs = Outputs::new();
    if let Some(path) = &args.capture {
        outputs.stage(path)?;
    }
    // The file's length (or --duration) at a rate: the null sink plays at
    // the file's, a device at its own, which the context finds.
    let length_at = |rate: f32| -> Result<usize> {
        Ok(length_override(rate, None, args.duration)?.unwrap_or_else(|| (file.length() as f64 * rate as f64 / file.sample_rate() as f64).round() as usize))
    };
    // Checked before a device opens; the length the null sink captures.
    let file_length = length_at(file.sample_rate())?;
    if args.capture.is_some() {
        check_wav_size(file_length, file.number_of_channels(), SampleFormat::F32)?;
    }
    let options = AudioContextOptions {
        latency_hint: args.latency_hint,
        sample_rate: (sink_id == SinkId::None).then_some(file.sample_rate()),
        sink_id: sink_id.clone(),
        number_of_channels: file.number_of_channels(),
        capture_frames: if args.capture.is_some() { file_length } else { 0 },
        start_suspended: true,
    };
    let mut ctx = AudioContext::new(options)?;
    let sample_rate = ctx.sample_rate();
    let length = length_at(sample_rate)?;
    let neural = byob_neural::NeuralNodes::new(byob_neural::Clock::RealTime);
    let registry = args.wasm.registry(&args.graph, &neural)?;
    let mut score = file.build_playing(&mut ctx.graph(), &registry)?;
    ctx.add_event_listener(|event, graph| {
        if event.kind == NodeEventKind::ProcessorError {
            eprintln!("warning: processorerror in node {:?} (it outputs silence from now on)", graph.label(event.node));
        }
    });
    let name = match &sink_id {
        SinkId::None => "the null sink (no device)".to_string(),
        SinkId::Device(name) => name.clone(),
        _ => "the default output device".to_string(),
    };
    let scored = if file.score_len() > 0 { format!(", with a score of {} changes", file.score_len()) } else { String::new() };
    println!("playing {} on {name} at {sample_rate} Hz{scored}", args.graph.display());
    ctx.resume()?;
    // The spec's render capacity, each second of audio, on a live line.
    let bar = ProgressBar::new(length as u64);
    bar.set_style(ProgressStyle::with_template("{spinner} playing [{bar:40}] {msg}").expect("static template").progress_chars("=> "));
    let end = length as f64 / sample_rate as f64;
    while ctx.current_time() < end {
        score.send_due(&mut ctx, SCORE_LOOKAHEAD).with_context(|| args.graph.display().to_string())?;
        ctx.poll_events();
        bar.set_position((ctx.current_time() * sample_rate as f64) as u64);
        let second = ctx.render_capacity();
        if second.callbacks > 0 {
            bar.set_message(capacity_text(&second));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ctx.close()?;
    bar.finish_and_clear();
    let whole = ctx.render_capacity_overall();
    let priority = if ctx.real_time_priority() { "real-time priority" } else { "normal priority (real-time refused by the system)" };
    println!("render capacity: {}, over {} callbacks ({} underruns), at {priority}", capacity_text(&whole), whole.callbacks, whole.underruns);
    let freed = ctx.freed();
    if score.remaining() < file.score_len() {
        println!("score: {} changes applied in {} batches; {} nodes released and freed off the render thread", file.score_len(), freed.batches, freed.nodes);
    }
    report_neural_nodes(&neural);
    if let Some(path) = &args.capture {
        let buffer = ctx.take_capture().context("the null sink kept no capture")?;
        let staged = outputs.staged_mut();
        buffer.write_wav_to(staged[0].file(), SampleFormat::F32).with_context(|| format!("writing {}", path.display()))?;
        outputs.commit()?;
        println!("captured {} frames -> {}", buffer.length(), path.display());
    }
    Ok(())
}

fn capacity_text(report: &byob_audio::RenderCapacityReport) -> String {
    format!("load {:.1}% average, {:.1}% peak, underruns {:.1}%", report.average_load * 100.0, report.peak_load * 100.0, report.underrun_ratio * 100.0)
}

