//! Shared helpers for the side-by-side benchmarks: timing, machine facts and
//! writing result tables into BENCHMARKS.md.

pub mod engine_graphs;

use std::path::Path;
use std::time::Instant;

/// The median wall time of `runs` calls of `run`, in seconds, each on a
/// fresh value from `setup` (which is not timed).
pub fn median_seconds<T>(runs: usize, mut setup: impl FnMut() -> T, mut run: impl FnMut(T)) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let input = setup();
            let start = Instant::now();
            run(input);
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Median wall times of several cases measured in turns (case 0, 1, ...,
/// then again), so that a slow spell of a noisy machine hits every case
/// alike. `setup(case)` is not timed; `run` is.
pub fn interleaved_medians<T>(runs: usize, cases: usize, mut setup: impl FnMut(usize) -> T, mut run: impl FnMut(usize, T)) -> Vec<f64> {
    let mut times = vec![Vec::with_capacity(runs); cases];
    for _ in 0..runs {
        for (case, t) in times.iter_mut().enumerate() {
            let input = setup(case);
            let start = Instant::now();
            run(case, input);
            t.push(start.elapsed().as_secs_f64());
        }
    }
    times
        .into_iter()
        .map(|mut t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect()
}

/// Deterministic uniform noise in [-1, 1) (xorshift): the same input for
/// every engine of a benchmark.
pub fn noise(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

/// One line describing the machine, for the tables.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cpu}, {cores} cores available, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Replaces the section between `<!-- begin NAME -->` and `<!-- end NAME -->`
/// in BENCHMARKS.md (appending it if absent), so each benchmark owns its table.
pub fn write_section(name: &str, body: &str) -> std::io::Result<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n\nEvery table here is written by the benchmark named in its section.\n".into());
    let begin = format!("<!-- begin {name} -->");
    let end = format!("<!-- end {name} -->");
    let section = format!("{begin}\n{body}\n{end}");
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if e > b => format!("{}{}{}", &old[..b], section, &old[e + end.len()..]),
        _ => format!("{}\n{}\n", old.trim_end(), section),
    };
    let temp = path.with_extension("md.tmp");
    std::fs::write(&temp, new)?;
    std::fs::rename(temp, path)
}
