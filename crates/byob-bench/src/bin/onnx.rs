//! ONNX CPU inference latency: byob's CPU provider versus ONNX Runtime's CPU
//! provider (the Python `onnxruntime` package) and versus the `tract` crate,
//! in one run with the same thread count, on ResNet50, SqueezeNet and
//! ShuffleNet with random weights and a 4-layer MLP with batch 64.
//!
//! ```sh
//! scripts/make-bench-models.py     # once: writes target/bench-models (run for you if missing)
//! cargo run --release -p byob-bench --bin onnx [-- --threads N] [--runs R] [--only NAME]
//! cargo run --release -p byob-bench --bin onnx -- --profile resnet50   # where the time goes
//! cargo run --release -p byob-bench --bin onnx -- --byob-only resnet50 --runs 50   # byob alone (for perf)
//! ```
//!
//! Other flags: `--models DIR` (default target/bench-models), `--engines
//! byob,ort,tract` (which take turns; fewer writes no table), `--pause-ms MS`
//! between turns (default 2; before it, the engines' spinning worker threads
//! are waited for until they stop, read from `/proc`).
//!
//! ONNX Runtime runs in a Python subprocess (`scripts/ort-bench.py --serve`)
//! that times each `session.run` itself and answers over a pipe, so the three
//! engines take turns run by run and a slow spell of the machine hits them
//! alike. Every engine's output is compared with ONNX Runtime's first. Writes
//! its table into BENCHMARKS.md unless `--only`, `--engines`, `--profile` or
//! `--byob-only` is given. A mismatch beyond 1e-3 is printed loudly and makes
//! the exit status 2.

use byob_tensor::session::{Session, SessionBuilder};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use tract_onnx::prelude::{tvec, Framework, InferenceModelExt, IntoRunnable, IntoTValue, TypedSimplePlan};

/// Relative error above which outputs are called a mismatch.
const TOLERANCE: f64 = 1e-3;
/// Timed rounds per model aim at about this much wall time in all...
const BUDGET_SECONDS: f64 = 6.0;
/// ...but never more rounds than this.
const MAX_RUNS: usize = 300;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace exists")
}

fn arg<T: std::str::FromStr>(name: &str) -> Option<T> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    let value = args.get(i + 1).unwrap_or_else(|| fail(&format!("{name} needs a value")));
    Some(value.parse().unwrap_or_else(|_| fail(&format!("{name} {value}: not a valid value"))))
}

fn fail(message: &str) -> ! {
    eprintln!("onnx bench: {message}");
    std::process::exit(1)
}

fn median(times: &[f64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// max |a - b| / max |b|: the error relative to the reference's scale, so
/// near-zero softmax entries do not blow it up.
fn relative_error(ours: &[f32], reference: &[f32]) -> f64 {
    if ours.len() != reference.len() {
        return f64::INFINITY;
    }
    let scale = reference.iter().fold(0f64, |m, &r| m.max(f64::from(r).abs())).max(f64::MIN_POSITIVE);
    let diff = ours.iter().zip(reference).fold(0f64, |m, (&a, &b)| if a.is_nan() || b.is_nan() { f64::INFINITY } else { m.max(f64::from(a - b).abs()) });
    diff / scale
}

/// The 1-minute load average: the machine is shared, and this says how busy.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next().map(String::from)).unwrap_or_else(|| "?".into())
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| fail(&format!("{}: {e}", path.display())));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// One benchmark model from manifest.json.
struct Model {
    name: String,
    description: String,
    path: PathBuf,
    input_name: String,
    input_shape: Vec<usize>,
    input: Vec<f32>,
}

fn load_manifest(dir: &Path) -> Vec<Model> {
    let manifest = dir.join("manifest.json");
    if !manifest.exists() {
        eprintln!("{} is missing: running scripts/make-bench-models.py", manifest.display());
        let status = Command::new("python3")
            .arg(workspace().join("scripts/make-bench-models.py"))
            .arg("--out")
            .arg(dir)
            .status()
            .unwrap_or_else(|e| fail(&format!("python3: {e}")));
        if !status.success() {
            fail("scripts/make-bench-models.py failed");
        }
    }
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| fail(&format!("{}: {e}", manifest.display())));
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| fail(&format!("{}: {e}", manifest.display())));
    value["models"]
        .as_array()
        .unwrap_or_else(|| fail("manifest.json has no models"))
        .iter()
        .map(|m| {
            let input_shape: Vec<usize> = m["input"]["shape"].as_array().expect("input shape").iter().map(|d| d.as_u64().expect("a dimension") as usize).collect();
            let input = read_f32(&dir.join(m["input"]["file"].as_str().expect("input file")));
            assert_eq!(input.len(), input_shape.iter().product::<usize>(), "{}: input file size", m["name"]);
            Model {
                name: m["name"].as_str().expect("name").into(),
                description: m["description"].as_str().unwrap_or("").into(),
                path: dir.join(m["file"].as_str().expect("file")),
                input_name: m["input"]["name"].as_str().expect("input name").into(),
                input_shape,
                input,
            }
        })
        .collect()
}

/// Whether any thread of process `pid` but `except` (a thread id) is
/// running, from Linux's `/proc` (`None` where it cannot be read). Its
/// scheduler statistics are only brought up to date at clock ticks, 4 ms
/// apart; a thread's state is current.
fn running(pid: u32, except: Option<&str>) -> Option<bool> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        if except.is_some_and(|tid| task.file_name() == tid) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // "tid (name) S ...": the state follows the name's last ')'.
        let state = stat[stat.rfind(')')? + 1..].split_whitespace().next()?;
        if state == "R" {
            return Some(true);
        }
    }
    Some(false)
}

/// ONNX Runtime in a Python subprocess, one JSON line each way.
struct Ort {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    version: String,
}

impl Ort {
    fn start(models: &Path, threads: usize) -> Ort {
        let script = workspace().join("scripts/ort-bench.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("--serve")
            .arg("--models")
            .arg(models)
            .arg("--threads")
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("python3 {}: {e}", script.display())));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut ort = Ort { child, stdin, stdout, version: String::new() };
        let ready = ort.read();
        ort.version = ready["onnxruntime"].as_str().unwrap_or("?").to_string();
        ort
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        if self.stdout.read_line(&mut line).unwrap_or(0) == 0 {
            fail("scripts/ort-bench.py ended early (is onnxruntime installed? `pip install onnxruntime`)");
        }
        let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| fail(&format!("scripts/ort-bench.py said {line:?}: {e}")));
        if let Some(error) = value.get("error") {
            fail(&format!("scripts/ort-bench.py: {error}"));
        }
        value
    }

    fn ask(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").and_then(|()| self.stdin.flush()).unwrap_or_else(|e| fail(&format!("scripts/ort-bench.py: {e}")));
        self.read()
    }

    /// Times `runs` runs; `record` ones count towards the medians it reports at the end.
    fn time(&mut self, model: &str, runs: usize, record: bool) -> Vec<f64> {
        let answer = self.ask(json!({"cmd": "time", "model": model, "runs": runs, "record": record}));
        answer["seconds"].as_array().expect("seconds").iter().map(|s| s.as_f64().expect("a time")).collect()
    }

    fn output(&mut self, model: &str) -> Vec<f32> {
        let answer = self.ask(json!({"cmd": "output", "model": model}));
        read_f32(Path::new(answer["file"].as_str().expect("file")))
    }

    /// Waits until the engines' worker threads have stopped spinning, ONNX
    /// Runtime's (with `allow_spinning`, its default, they keep a core busy
    /// for some 30 ms after each run) and this process's own (byob's keep
    /// spinning for 10 ms after a run), so that no engine's turn shares the
    /// cores with another's leftovers. Gives up after a second.
    fn wait_until_idle(&self) {
        let me = std::fs::read_link("/proc/thread-self").ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        let busy = || running(self.child.id(), None) == Some(true) || running(std::process::id(), me.as_deref()) == Some(true);
        let deadline = Instant::now() + Duration::from_secs(1);
        while busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// ORT's medians in milliseconds, by model, over the recorded runs.
    fn quit(mut self) -> Value {
        let medians = self.ask(json!({"cmd": "quit"}));
        let _ = self.child.wait();
        medians
    }
}

struct Byob {
    session: Session,
}

impl Byob {
    fn new(model: &Model, threads: usize) -> Byob {
        let session = SessionBuilder::new().with_intra_op_threads(threads).commit_from_file(&model.path).unwrap_or_else(|e| fail(&format!("byob: {}: {e}", model.path.display())));
        Byob { session }
    }

    fn input(model: &Model) -> Vec<(String, byob_tensor::Tensor)> {
        vec![(model.input_name.clone(), byob_tensor::Tensor::f32(model.input_shape.clone(), model.input.clone()).expect("input fits its shape"))]
    }

    /// Seconds for one run; the input is built and the output dropped untimed.
    fn time(&self, model: &Model) -> f64 {
        let feeds = Byob::input(model);
        let start = Instant::now();
        let out = self.session.run(feeds).unwrap_or_else(|e| fail(&format!("byob: {}: {e}", model.name)));
        let t = start.elapsed().as_secs_f64();
        drop(std::hint::black_box(out));
        t
    }

    fn output(&self, model: &Model) -> Vec<f32> {
        let out = self.session.run(Byob::input(model)).unwrap_or_else(|e| fail(&format!("byob: {}: {e}", model.name)));
        out[0].1.as_f32().expect("an f32 output").to_vec()
    }
}

struct Tract {
    plan: std::sync::Arc<TypedSimplePlan>,
    input: tract_onnx::prelude::Tensor,
}

impl Tract {
    fn new(model: &Model) -> Tract {
        let plan = tract_onnx::onnx()
            .model_for_path(&model.path)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .unwrap_or_else(|e| fail(&format!("tract: {}: {e:?}", model.path.display())));
        let input = tract_onnx::prelude::Tensor::from_shape(&model.input_shape, &model.input).expect("input fits its shape");
        Tract { plan, input }
    }

    fn time(&self, model: &Model) -> f64 {
        let feeds = tvec!(self.input.clone().into_tvalue());
        let start = Instant::now();
        let out = self.plan.run(feeds).unwrap_or_else(|e| fail(&format!("tract: {}: {e:?}", model.name)));
        let t = start.elapsed().as_secs_f64();
        drop(std::hint::black_box(out));
        t
    }

    fn output(&self, model: &Model) -> Vec<f32> {
        let out = self.plan.run(tvec!(self.input.clone().into_tvalue())).unwrap_or_else(|e| fail(&format!("tract: {}: {e:?}", model.name)));
        out[0].to_plain_array_view::<f32>().expect("an f32 output").iter().copied().collect()
    }
}

struct Row {
    name: String,
    description: String,
    byob_ms: f64,
    ort_ms: f64,
    tract_ms: f64,
    /// Fastest runs: byob, ORT, tract.
    best: [f64; 3],
    byob_error: f64,
    tract_error: f64,
    runs: usize,
}

fn main() {
    let threads: usize = arg("--threads").unwrap_or(2);
    let min_runs: usize = arg("--runs").unwrap_or(15).max(10);
    let only: Option<String> = arg("--only");
    let pause = Duration::from_millis(arg("--pause-ms").unwrap_or(2));
    // `--engines byob,ort,tract` (the default): which take turns; with fewer,
    // no table is written (for finding out how they disturb each other).
    let engines_arg: String = arg("--engines").unwrap_or_else(|| "byob,ort,tract".into());
    let engines = ["byob", "ort", "tract"].map(|e| engines_arg.split(',').any(|x| x == e));
    let profile: Option<String> = arg("--profile");
    let dir: PathBuf = arg::<String>("--models").map_or_else(|| workspace().join("target/bench-models"), PathBuf::from);
    let models = load_manifest(&dir);
    if let Some(name) = &profile {
        let model = models.iter().find(|m| &m.name == name).unwrap_or_else(|| fail(&format!("--profile {name}: no such model")));
        return profile_model(model, &dir, threads);
    }
    // `--byob-only NAME`: byob alone on one model, for `perf record`.
    if let Some(name) = arg::<String>("--byob-only") {
        let model = models.iter().find(|m| m.name == name).unwrap_or_else(|| fail(&format!("--byob-only {name}: no such model")));
        let byob = Byob::new(model, threads);
        byob.time(model);
        let times: Vec<f64> = (0..min_runs).map(|_| byob.time(model)).collect();
        println!("{name}: byob median {:.2} ms, min {:.2} ms over {min_runs} runs, {threads} thread(s)", median(&times) * 1e3, times.iter().fold(f64::MAX, |a, &b| a.min(b)) * 1e3);
        return;
    }
    // tract runs single-threaded unless given an executor: give it the same
    // thread count (its matrix products then run on a rayon pool of that size).
    if threads > 1 {
        tract_linalg::multithread::set_default_executor(tract_linalg::multithread::Executor::multithread(threads));
    }
    let load_before = load_average();
    let mut ort = Ort::start(&dir, threads);
    println!("byob vs ONNX Runtime {} vs tract-onnx 0.23.9, {threads} thread(s) each, {}", ort.version, byob_bench::machine());
    let mut rows = Vec::new();
    let mut mismatches = Vec::new();
    for model in &models {
        if only.as_ref().is_some_and(|o| o != &model.name) {
            continue;
        }
        let byob = Byob::new(model, threads);
        let tract = Tract::new(model);
        // Correctness first: both against ONNX Runtime on the same input.
        let reference = ort.output(&model.name);
        let byob_error = relative_error(&byob.output(model), &reference);
        let tract_error = relative_error(&tract.output(model), &reference);
        for (engine, error) in [("byob", byob_error), ("tract", tract_error)] {
            if error.is_nan() || error > TOLERANCE {
                eprintln!("\n!!!!! MISMATCH: {engine} on {}: max relative error {error:.2e} against ONNX Runtime (tolerance {TOLERANCE:.0e}) !!!!!\n", model.name);
                mismatches.push(format!("{engine} on {} ({error:.2e})", model.name));
            }
        }
        // Warm-up, which also sizes the number of rounds.
        let mut round = 0.0;
        for _ in 0..3 {
            round = byob.time(model) + ort.time(&model.name, 1, false)[0] + tract.time(model);
        }
        let runs = ((BUDGET_SECONDS / round).ceil() as usize).clamp(min_runs, MAX_RUNS);
        // In turns, the starting engine rotating from round to round.
        let mut times: [Vec<f64>; 3] = Default::default();
        for r in 0..runs {
            for k in 0..3 {
                let engine = (r + k) % 3;
                if !engines[engine] {
                    continue;
                }
                // Let the previous engine's spinning workers go idle (seen
                // in /proc), then
                // one untimed run: each engine is timed warm, its threads
                // awake (an idle virtual CPU takes long to wake; ONNX
                // Runtime's workers spin for tens of milliseconds after a
                // run and rayon's sleep, so timing a first run after the
                // other engines' turns measured wake-ups, not inference).
                ort.wait_until_idle();
                std::thread::sleep(pause);
                let t = match engine {
                    0 => {
                        byob.time(model);
                        byob.time(model)
                    }
                    1 => {
                        ort.time(&model.name, 1, false);
                        ort.time(&model.name, 1, true)[0]
                    }
                    _ => {
                        tract.time(model);
                        tract.time(model)
                    }
                };
                times[engine].push(t);
            }
        }
        let [byob_ms, ort_ms, tract_ms] = [0, 1, 2].map(|e| if engines[e] { median(&times[e]) * 1e3 } else { f64::NAN });
        // The fastest run of each too: on a shared machine other work only
        // ever adds time, so these say what each engine can do undisturbed.
        let [byob_best, ort_best, tract_best] = [0, 1, 2].map(|e| times[e].iter().fold(f64::NAN, |a, &b| a.min(b)) * 1e3);
        println!(
            "{:<11} byob {byob_ms:8.2} ms   ORT {ort_ms:8.2} ms   tract {tract_ms:8.2} ms   byob/ORT {:5.2}   byob/tract {:5.2}   ({runs} runs; max rel. error vs ORT: byob {byob_error:.1e}, tract {tract_error:.1e})",
            model.name,
            byob_ms / ort_ms,
            byob_ms / tract_ms
        );
        println!("{:<11} fastest runs: byob {byob_best:.2} ms, ORT {ort_best:.2} ms, tract {tract_best:.2} ms: byob/ORT {:.2}, byob/tract {:.2}", "", byob_best / ort_best, byob_best / tract_best);
        rows.push(Row { name: model.name.clone(), description: model.description.clone(), byob_ms, ort_ms, tract_ms, best: [byob_best, ort_best, tract_best], byob_error, tract_error, runs });
    }
    let load_after = load_average();
    println!("load average (1 min) {load_before} before, {load_after} after");
    // ORT's own medians (over the same runs) must agree with ours.
    let ort_version = ort.version.clone();
    let medians = ort.quit();
    for row in &rows {
        let theirs = medians["median_ms"][&row.name].as_f64().unwrap_or(f64::NAN);
        if (theirs - row.ort_ms).abs() > 1e-6 * row.ort_ms.max(1.0) {
            eprintln!("note: ort-bench.py reports {theirs:.3} ms for {}, the bench {:.3} ms", row.name, row.ort_ms);
        }
    }
    if !mismatches.is_empty() {
        eprintln!("\n!!!!! OUTPUT MISMATCH beyond {TOLERANCE:.0e}: {} !!!!!", mismatches.join(", "));
    }
    if only.is_some() || engines.contains(&false) {
        std::process::exit(if mismatches.is_empty() { 0 } else { 2 });
    }
    let table: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "| {} | {:.2} | {:.2} | {:.2} | **{:.2}** | **{:.2}** | {:.2} / {:.2} / {:.2}: {:.2}, {:.2} | {:.0e} | {:.0e} | {} |",
                r.description,
                r.byob_ms,
                r.ort_ms,
                r.tract_ms,
                r.byob_ms / r.ort_ms,
                r.byob_ms / r.tract_ms,
                r.best[0],
                r.best[1],
                r.best[2],
                r.best[0] / r.best[1],
                r.best[0] / r.best[2],
                r.byob_error,
                r.tract_error,
                r.runs
            )
        })
        .collect();
    let body = format!(
        "## ONNX inference: byob CPU vs ONNX Runtime CPU vs tract\n\n\
         `scripts/make-bench-models.py && cargo run --release -p byob-bench --bin onnx` (`-- --threads N`, default 2; \
         `-- --profile resnet50` for where the time goes) — median latency of one inference, \
         warm-up first, then the three engines in turns, each turn one untimed run and one timed run (so every engine is timed \
         with its threads awake), started once the previous engine's threads have stopped spinning (seen in /proc: ONNX Runtime's \
         spin some 30 ms after a run, byob's 10 ms); same run, same machine: {machine} \
         (shared: 1-minute load average {load_before} before the run, {load_after} after).\n\n\
         Threads: {threads} for each. byob: `with_intra_op_threads({threads})`. ONNX Runtime {ort} (Python `onnxruntime`, CPU provider): \
         intra_op_num_threads={threads}, inter_op_num_threads=1, ORT_ENABLE_ALL, timed around `session.run` in its own process. \
         tract-onnx 0.23.9: `into_optimized()` plan, with a {threads}-thread `multithread-mm` executor (its matrix products and large \
         elementwise ops run on {threads} threads, the rest on one).\n\n\
         Models: the architectures of the ONNX 1.22.0 light models with random weights (He-normal Conv, near-identity BatchNormalization, \
         fixed seed; opset 9), input 1×3×224×224; MLP 784→1024→1024→1024→10 (Gemm+Relu), batch 64. \
         Error = max |engine − ORT| / max |ORT| on the output. Goal: byob/ORT ≤ 1.0 on every model (never above 1.5), byob/tract < 1.\n\n\
         The machine is shared, so other work can only add time: the fastest run of each engine is given too (byob / ORT / tract ms: byob/ORT, byob/tract).\n\n\
         | model | byob ms | ORT ms | tract ms | byob/ORT | byob/tract | fastest runs | byob error | tract error | runs |\n\
         |---|---|---|---|---|---|---|---|---|---|\n{table}",
        machine = byob_bench::machine(),
        ort = ort_version,
        table = table.join("\n"),
    );
    byob_bench::write_section("onnx", &body).expect("BENCHMARKS.md is writable");
    if !mismatches.is_empty() {
        std::process::exit(2);
    }
}

fn shape_of(v: &Value) -> Vec<usize> {
    v.as_array().map(|a| a.iter().map(|d| d.as_u64().unwrap_or(0) as usize).collect()).unwrap_or_default()
}

fn show_shape(s: &[usize]) -> String {
    s.iter().map(ToString::to_string).collect::<Vec<_>>().join("×")
}

/// Where byob's time goes on one model, next to ONNX Runtime's profiler:
/// byob times each node as a model of its own (written by
/// `scripts/make-bench-models.py --nodes NAME`, BatchNormalization folded as
/// byob does), through nothing but the public session API.
fn profile_model(model: &Model, dir: &Path, threads: usize) {
    let nodes_dir = dir.join(format!("nodes-{}", model.name));
    if !nodes_dir.join("nodes.json").exists() {
        let status = Command::new("python3")
            .arg(workspace().join("scripts/make-bench-models.py"))
            .args(["--out".as_ref(), dir.as_os_str(), "--nodes".as_ref(), model.name.as_ref()])
            .status()
            .unwrap_or_else(|e| fail(&format!("python3: {e}")));
        if !status.success() {
            fail("scripts/make-bench-models.py --nodes failed");
        }
    }
    let text = std::fs::read_to_string(nodes_dir.join("nodes.json")).unwrap_or_else(|e| fail(&format!("nodes.json: {e}")));
    let nodes: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| fail(&format!("nodes.json: {e}")));
    // ONNX Runtime first, then it is left idle.
    let mut ort = Ort::start(dir, threads);
    ort.time(&model.name, 3, false);
    let ort_ms = median(&ort.time(&model.name, 15, true)) * 1e3;
    let prof = ort.ask(json!({"cmd": "profile", "model": model.name, "runs": 20}));
    ort.quit();
    let ort_nodes: std::collections::HashMap<String, f64> = prof["per_node_ms"].as_object().expect("per_node_ms").iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0))).collect();
    let byob = Byob::new(model, threads);
    for _ in 0..3 {
        byob.time(model);
    }
    let byob_ms = median(&(0..15).map(|_| byob.time(model)).collect::<Vec<_>>()) * 1e3;
    println!("{}: whole model, {threads} thread(s): byob {byob_ms:.2} ms, ONNX Runtime {ort_ms:.2} ms (its profiler: {:.2} ms per run in {} nodes after its fusions)\n", model.name, prof["model_run_ms"].as_f64().unwrap_or(0.0), prof["optimized_nodes"]);
    println!("{:>3} {:<10} {:<16} {:<14} {:>9} {:>8} {:>9} {:>8}  ORT node", "#", "op", "output", "weight", "byob ms", "GFLOP/s", "ORT ms", "byob/ORT");
    let mut claimed = std::collections::HashSet::new();
    let mut by_op: Vec<(String, f64, usize)> = Vec::new();
    let (mut total, mut matched_byob, mut matched_ort, mut unmatched) = (0.0, 0.0, 0.0, 0.0);
    let mut gaps: Vec<(f64, String)> = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let op = node["op"].as_str().unwrap_or("?");
        let path = nodes_dir.join(node["file"].as_str().expect("file"));
        let session = SessionBuilder::new().with_intra_op_threads(threads).commit_from_file(&path).unwrap_or_else(|e| fail(&format!("byob: {}: {e}", path.display())));
        let feeds: Vec<(String, Vec<usize>, Vec<f32>)> = node["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .enumerate()
            .map(|(k, x)| {
                let shape = shape_of(&x["shape"]);
                let data = byob_bench::noise(shape.iter().product(), (i * 8 + k + 1) as u32);
                (x["name"].as_str().expect("name").to_string(), shape, data)
            })
            .collect();
        let run = || {
            let feeds = feeds.iter().map(|(n, s, d)| (n.clone(), byob_tensor::Tensor::f32(s.clone(), d.clone()).expect("fits"))).collect();
            let start = Instant::now();
            let out = session.run(feeds).unwrap_or_else(|e| fail(&format!("byob: {}: {e}", path.display())));
            let t = start.elapsed().as_secs_f64();
            drop(std::hint::black_box(out));
            t
        };
        let first = (0..2).map(|_| run()).fold(0.0, f64::max);
        let runs = ((0.3 / first).ceil() as usize).clamp(10, 200);
        let ms = median(&(0..runs).map(|_| run()).collect::<Vec<_>>()) * 1e3;
        total += ms;
        match by_op.iter_mut().find(|(o, ..)| o == op) {
            Some(entry) => {
                entry.1 += ms;
                entry.2 += 1;
            }
            None => by_op.push((op.to_string(), ms, 1)),
        }
        let flops = node["flops"].as_f64().unwrap_or(0.0);
        let gflops = if flops > 0.0 { format!("{:.1}", flops / (ms * 1e-3) / 1e9) } else { String::new() };
        // ONNX Runtime's node for this one: named after the node's output or
        // after the Relu/Sum it fused, with "_nchwc" on x86; or after its
        // own name ("fused NAME" once it took in an activation).
        let mut candidates = vec![node["output"].as_str().unwrap_or("").to_string()];
        candidates.extend(node["fused_outputs"].as_array().into_iter().flatten().filter_map(|o| o.as_str().map(String::from)));
        let name = node["name"].as_str().unwrap_or("");
        let ort_match = candidates
            .iter()
            .flat_map(|c| [format!("{c}_nchwc"), c.clone()])
            .chain([name.to_string(), format!("fused {name}")])
            .find(|k| !k.is_empty() && ort_nodes.contains_key(k) && !claimed.contains(k));
        let (ort_col, ratio_col, ort_name) = match &ort_match {
            Some(k) => {
                claimed.insert(k.clone());
                let t = ort_nodes[k];
                matched_byob += ms;
                matched_ort += t;
                gaps.push((ms - t, format!("#{i} {op} {} ({})", show_shape(&shape_of(&node["output_shape"])), k)));
                (format!("{t:.3}"), format!("{:.2}", ms / t), k.as_str())
            }
            None => {
                unmatched += ms;
                (String::from("-"), String::new(), "(fused or absent)")
            }
        };
        let weight = node["weight_shape"].as_array().map(|_| show_shape(&shape_of(&node["weight_shape"]))).unwrap_or_default();
        println!("{i:>3} {op:<10} {:<16} {weight:<14} {ms:>9.3} {gflops:>8} {ort_col:>9} {ratio_col:>8}  {ort_name}", show_shape(&shape_of(&node["output_shape"])));
    }
    println!("\nbyob, node by node ({} single-node sessions): {total:.2} ms in all (whole model: {byob_ms:.2} ms)", nodes.len());
    for (op, ms, count) in &by_op {
        println!("  {op:<18} {count:>3} nodes {ms:>9.2} ms  {:>5.1} %", 100.0 * ms / total);
    }
    println!("ONNX Runtime, by op type (its profiler, in the whole model; its Conv and FusedGemm include the BatchNormalization, Relu and Sum it fused):");
    let mut ort_ops: Vec<(String, f64)> = prof["per_op_ms"].as_object().expect("per_op_ms").iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(0.0))).collect();
    ort_ops.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (op, ms) in ort_ops {
        println!("  {op:<18} {ms:>9.2} ms");
    }
    println!("Nodes matched with ORT's: byob {matched_byob:.2} ms (each node alone) vs ORT {matched_ort:.2} ms (with what it fused into them): {:.2}", matched_byob / matched_ort);
    println!("byob nodes with no ORT counterpart (fused away there: Relu, Sum, ...): {unmatched:.2} ms");
    gaps.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("Largest gaps, byob minus ORT (ms):");
    for (gap, what) in gaps.iter().take(12) {
        println!("  {gap:+8.3}  {what}");
    }
}
