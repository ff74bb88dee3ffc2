//! `byob run` and `byob info`: ONNX models.

use anyhow::{bail, Context, Result};
use byob_tensor::{npy, DataType, IoBinding, ModelError, RunStats, Session, SessionBuilder, SessionError, StepTime, Tensor};
use byob_webgpu::WebGpuProvider;
use clap::{Args, ValueEnum};
use byob_files::Outputs;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Ep {
    Cpu,
    Webgpu,
    Auto,
}

#[derive(Args)]
pub struct RunArgs {
    /// The model (.onnx).
    model: PathBuf,
    /// Execution provider.
    #[arg(long, value_enum, default_value = "auto")]
    ep: Ep,
    /// An input: NAME=FILE.npy (repeat for each input).
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    inputs: Vec<String>,
    /// Write each output to DIR/NAME.npy.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Run this many times and print the minimum and median latency.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Threads for parallel kernels (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Write per-run latencies and memory statistics as JSON.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Time every step and print where the time goes (median over the
    /// runs; also in --stats-json).
    #[arg(long)]
    profile: bool,
    /// Convolve every 3×3 layer directly: no Winograd transforms (less
    /// memory for weights, less rounding).
    #[arg(long)]
    no_winograd: bool,
    /// The most memory one tensor the model computes may take, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    max_tensor_mib: usize,
    /// The most memory the tensors of one run may hold at once, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 16384)]
    max_run_mib: usize,
    /// Keep the outputs on the GPU during the runs (IO binding with GPU
    /// buffers: no read-back per run) and bring them to the host once at
    /// the end: the latency of a model whose results feed more GPU work.
    #[arg(long)]
    outputs_on_gpu: bool,
}

#[derive(Args)]
pub struct InfoArgs {
    /// The model (.onnx).
    model: PathBuf,
    /// Execution provider to plan with.
    #[arg(long, value_enum, default_value = "auto")]
    ep: Ep,
    /// Plan every 3×3 convolution as direct (see `byob run --no-winograd`).
    #[arg(long)]
    no_winograd: bool,
}

/// A session and the provider chosen for it.
struct Prepared {
    session: Session,
    /// For the user: which provider, and why.
    chosen: String,
    /// The WebGPU provider, when it takes part (for its counters).
    gpu: Option<WebGpuProvider>,
}

/// The WebGPU provider for `--ep webgpu|auto`: `Err` says why there is none.
fn webgpu() -> std::result::Result<WebGpuProvider, String> {
    WebGpuProvider::new().map_err(|e| e.to_string())
}

/// How to build a session, from the command line.
struct Options {
    ep: Ep,
    threads: Option<usize>,
    profile: bool,
    winograd: bool,
    max_tensor_mib: usize,
    max_run_mib: usize,
}

fn session(model: &PathBuf, Options { ep, threads, profile, winograd, max_tensor_mib, max_run_mib }: Options) -> Result<Prepared> {
    let (gpu, chosen) = match ep {
        Ep::Cpu => (None, "cpu".to_string()),
        Ep::Webgpu => {
            let gpu = webgpu().map_err(|e| anyhow::anyhow!("--ep webgpu: {e}"))?;
            let chosen = format!("webgpu on {} (cpu for the rest)", gpu.adapter_description());
            (Some(gpu), chosen)
        }
        Ep::Auto => match webgpu() {
            Ok(gpu) => {
                let chosen = format!("webgpu on {} (auto: an adapter is present; cpu for the rest)", gpu.adapter_description());
                (Some(gpu), chosen)
            }
            Err(why) => (None, format!("cpu (auto: no WebGPU: {why})")),
        },
    };
    let max_tensor_bytes = crate::mib_to_bytes("--max-tensor-mib", max_tensor_mib)?;
    let max_run_bytes = crate::mib_to_bytes("--max-run-mib", max_run_mib)?;
    let mut builder = SessionBuilder::new().with_profiling(profile).with_winograd(winograd).with_max_tensor_bytes(max_tensor_bytes).with_max_run_bytes(max_run_bytes);
    if let Some(gpu) = &gpu {
        builder = builder.with_provider(Box::new(gpu.clone()));
    }
    if let Some(t) = threads {
        if !(1..=MAX_THREADS).contains(&t) {
            bail!("--threads must be from 1 to {MAX_THREADS}, got {t}");
        }
        builder = builder.with_intra_op_threads(t);
    }
    // A file that could not be read is named by its error already; the
    // others get "loading" and the file before them.
    let session = builder.commit_from_file(model).map_err(|e| match e {
        SessionError::Model(ModelError::Io { .. }) => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context(format!("loading {}", model.display())),
    })?;
    Ok(Prepared { session, chosen, gpu })
}

/// A value name as a file name: path separators and other unsafe characters replaced.
fn file_name(name: &str) -> String {
    let cleaned: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).collect();
    match cleaned.trim_matches('.') {
        "" => "output".into(),
        s => s.to_string(),
    }
}

fn shape_text(shape: &Option<Vec<byob_tensor::Dim>>) -> String {
    shape.as_ref().map_or("?".into(), |s| format!("[{}]", s.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")))
}

/// The most runs `--repeat` asks for: each keeps its statistics.
const MAX_REPEAT: usize = 1_000_000;
/// The most threads `--threads` asks for.
const MAX_THREADS: usize = 1024;

pub fn run(args: RunArgs) -> Result<()> {
    if !(1..=MAX_REPEAT).contains(&args.repeat) {
        bail!("--repeat must be from 1 to {MAX_REPEAT}, got {}", args.repeat);
    }
    // The statistics file is checked before the model runs; the outputs,
    // whose names only the session knows, before the first is written.
    let mut outputs = Outputs::new();
    if let Some(path) = &args.stats_json {
        outputs.stage(path)?;
    }
    let Prepared { session, chosen, gpu } = session(&args.model, Options { ep: args.ep, threads: args.threads, profile: args.profile, winograd: !args.no_winograd, max_tensor_mib: args.max_tensor_mib, max_run_mib: args.max_run_mib })?;
    eprintln!("execution provider: {chosen}");
    // Inputs and outputs stay bound across repeats: from the second run on,
    // nothing is copied in or allocated.
    let mut binding = IoBinding::new();
    let mut named = std::collections::HashSet::new();
    for spec in &args.inputs {
        let Some((name, file)) = spec.split_once('=') else {
            bail!("--input {spec:?}: expected NAME=FILE.npy");
        };
        if !named.insert(name) {
            bail!("--input {name}: the input is given twice");
        }
        binding.bind_input(name, npy::read(file.as_ref())?);
    }
    if args.outputs_on_gpu {
        let Some(gpu) = &gpu else { bail!("--outputs-on-gpu needs the WebGPU provider (--ep webgpu, or auto with an adapter)") };
        // GPU tensors are float32; other outputs come back to the host.
        for v in session.outputs().filter(|v| v.dtype.is_none_or(|d| d == DataType::F32)) {
            binding.keep_output_on_device(v.name.clone(), gpu.device());
        }
    }
    let mut latencies = Vec::new();
    let mut stats = Vec::new();
    let mut gpu_stats = Vec::new();
    for _ in 0..args.repeat {
        let start = Instant::now();
        let s = session.run_with_binding(&mut binding)?;
        if let Some(gpu) = gpu.as_ref().filter(|_| args.outputs_on_gpu) {
            // The run returned once its work was submitted: time the work.
            pollster::block_on(gpu.context().idle()).context("waiting for the GPU")?;
        }
        latencies.push(start.elapsed().as_secs_f64() * 1e3);
        stats.push(s);
        if let Some(gpu) = &gpu {
            gpu_stats.push(gpu.counters());
        }
    }
    let mut results: Vec<(String, Tensor)> = Vec::new();
    for v in session.outputs() {
        let tensor = match binding.output_on_device(&v.name) {
            Some(on_gpu) => Some(pollster::block_on(on_gpu.to_host()).with_context(|| format!("reading output {:?} back from the GPU", v.name))?),
            None => binding.take_output(&v.name),
        };
        results.extend(tensor.map(|t| (v.name.clone(), t)));
    }
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut files: std::collections::HashMap<String, &str> = std::collections::HashMap::new();
        for (name, tensor) in &results {
            let file = format!("{}.npy", file_name(name));
            if let Some(other) = files.insert(file.clone(), name) {
                bail!("--output-dir {}: outputs {other:?} and {name:?} would both be written to {file}", dir.display());
            }
            let path = dir.join(&file);
            npy::check_rank(&path, tensor)?;
            let staged = outputs.stage(&path)?;
            npy::write_to(staged.file(), tensor).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    for (name, tensor) in &results {
        println!("{name}: {} {:?}", tensor.dtype(), tensor.shape());
    }
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let (min, median) = (sorted[0], sorted[sorted.len() / 2]);
    println!("{} run(s): min {min:.3} ms, median {median:.3} ms", args.repeat);
    let profile = args.profile.then(|| step_medians(&stats));
    if let Some(profile) = &profile {
        print_profile(profile);
    }
    if let Some(path) = &args.stats_json {
        let mut json = serde_json::json!({
            "provider": if gpu.is_some() { "webgpu" } else { "cpu" },
            "latencies_ms": latencies,
            "peak_intermediate_bytes": stats.iter().map(|s| s.peak_intermediate_bytes).collect::<Vec<_>>(),
            "planned_bytes": stats.iter().map(|s| s.planned_bytes).collect::<Vec<_>>(),
            "allocations_per_run": stats.iter().map(|s| s.tensor_allocations).collect::<Vec<_>>(),
            "device_transfers_per_run": stats.iter().map(|s| s.device_transfers).collect::<Vec<_>>(),
        });
        if let Some(profile) = &profile {
            json["profile"] = profile.iter().map(|(t, ms)| serde_json::json!({"node": t.node, "op": t.op, "median_ms": ms})).collect();
        }
        if !gpu_stats.is_empty() {
            json["gpu_buffer_allocations_per_run"] = gpu_stats.iter().map(|c| c.last_run_buffer_allocations).collect();
            json["gpu_peak_bytes"] = gpu_stats.iter().map(|c| c.peak_bytes).collect();
            json["gpu_lower_bound_bytes"] = gpu_stats.iter().map(|c| c.lower_bound_bytes).collect();
            json["gpu_host_uploads"] = gpu_stats.iter().map(|c| c.host_uploads).collect();
            json["gpu_host_downloads"] = gpu_stats.iter().map(|c| c.host_downloads).collect();
        }
        use std::io::Write;
        let file = outputs.staged_mut()[0].file();
        file.write_all((serde_json::to_string_pretty(&json)? + "\n").as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    }
    outputs.commit()?;
    Ok(())
}

/// Each step and its median time in milliseconds over the runs.
fn step_medians(stats: &[RunStats]) -> Vec<(StepTime, f64)> {
    let steps = stats.first().map_or(0, |s| s.steps.len());
    (0..steps)
        .map(|i| {
            let mut ms: Vec<f64> = stats.iter().filter_map(|s| s.steps.get(i)).map(|t| t.seconds * 1e3).collect();
            ms.sort_by(f64::total_cmp);
            (stats[0].steps[i].clone(), ms[ms.len() / 2])
        })
        .collect()
}

/// Time by operator, then the slowest steps.
fn print_profile(profile: &[(StepTime, f64)]) {
    let total: f64 = profile.iter().map(|(_, ms)| ms).sum();
    let mut by_op: Vec<(&str, usize, f64)> = Vec::new();
    for (step, ms) in profile {
        match by_op.iter_mut().find(|(op, ..)| *op == step.op) {
            Some(entry) => (entry.1, entry.2) = (entry.1 + 1, entry.2 + ms),
            None => by_op.push((&step.op, 1, *ms)),
        }
    }
    by_op.sort_by(|a, b| b.2.total_cmp(&a.2));
    println!("profile: {} steps, {total:.3} ms (sum of each step's median)", profile.len());
    for (op, count, ms) in by_op {
        println!("  {op:<20} {count:>4} step(s) {ms:>9.3} ms {:>5.1} %", 100.0 * ms / total.max(f64::MIN_POSITIVE));
    }
    let mut slowest: Vec<&(StepTime, f64)> = profile.iter().collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("slowest steps:");
    for (step, ms) in slowest.into_iter().take(10) {
        println!("  {ms:>9.3} ms  {:<20} {}", step.op, step.node);
    }
}

pub fn info(args: InfoArgs) -> Result<()> {
    use std::io::Write;
    let Prepared { session, chosen, .. } = session(&args.model, Options { ep: args.ep, threads: None, profile: false, winograd: !args.no_winograd, max_tensor_mib: byob_tensor::DEFAULT_MAX_TENSOR_BYTES >> 20, max_run_mib: byob_tensor::DEFAULT_MAX_RUN_BYTES >> 20 })?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "model: {}", args.model.display())?;
    writeln!(out, "opset: {}", session.opset())?;
    writeln!(out, "inputs:")?;
    for v in session.inputs() {
        writeln!(out, "  {} {} {}", v.name, v.dtype.map_or("?".into(), |d| d.to_string()), shape_text(&v.shape))?;
    }
    writeln!(out, "outputs:")?;
    for v in session.outputs() {
        writeln!(out, "  {} {} {}", v.name, v.dtype.map_or("?".into(), |d| d.to_string()), shape_text(&v.shape))?;
    }
    let o = session.optimizations();
    writeln!(
        out,
        "optimizations: {} node(s) folded into constants, {} dead or pass-through node(s) removed, {} node(s) fused (BatchNormalization, Relu and shortcut Adds into convolutions, channel shuffles, Concats of convolutions), {} Gemm weight(s) prepacked, {} node(s) made channels-last, {} node(s) with weights packed for the CPU ({} of them 3×3 convolutions by Winograd's algorithm), {} step(s) that may compute in place over an input",
        o.folded, o.removed, o.fused, o.prepacked, o.channels_last, o.packed, o.winograd, o.in_place
    )?;
    writeln!(out, "nodes ({}, provider {chosen}):", session.placements().len())?;
    for p in session.placements() {
        writeln!(out, "  {:<12} {:<24} {}", p.provider, p.op_type, p.name)?;
    }
    // The session shows the graph after its passes; subgraphs are listed
    // as the file holds them.
    let model = byob_tensor::Model::load(&args.model)?;
    let mut listing = String::new();
    list_subgraphs(&model.graph, 1, &mut listing);
    if !listing.is_empty() {
        write!(out, "subgraphs (as in the file; each runs as a session of its own):\n{listing}")?;
    }
    Ok(())
}

/// One line per subgraph of `graph`'s nodes, nested ones indented below
/// their node's: where it is, its size, and its operators with counts.
fn list_subgraphs(graph: &byob_tensor::model::Graph, depth: usize, listing: &mut String) {
    for node in &graph.nodes {
        let mut bodies: Vec<(&String, &byob_tensor::Subgraph)> = node
            .attributes
            .iter()
            .filter_map(|(name, a)| match a {
                byob_tensor::model::Attribute::Graph(sub) => Some((name, sub.as_ref())),
                _ => None,
            })
            .collect();
        bodies.sort_by_key(|(name, _)| *name);
        for (attribute, sub) in bodies {
            let mut counts: Vec<(&str, usize)> = Vec::new();
            for n in &sub.graph.nodes {
                match counts.iter_mut().find(|(op, _)| *op == n.op_type) {
                    Some((_, k)) => *k += 1,
                    None => counts.push((&n.op_type, 1)),
                }
            }
            let ops: Vec<String> = counts.iter().map(|(op, k)| if *k == 1 { op.to_string() } else { format!("{op} ×{k}") }).collect();
            let reads = if sub.captures.is_empty() { String::new() } else { format!(", reads {} outer value(s)", sub.captures.len()) };
            listing.push_str(&format!("{}{} {}.{}: {} node(s){reads}: {}\n", "  ".repeat(depth), node.op_type, node.name, attribute, sub.graph.nodes.len(), ops.join(", ")));
            list_subgraphs(&sub.graph, depth + 1, listing);
        }
    }
}
