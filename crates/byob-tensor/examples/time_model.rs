//! Times a model on the CPU provider: `cargo run --release -p byob-tensor
//! --example time_model -- MODEL.onnx [RUNS] [THREADS]`. Inputs are
//! filled with a ramp in their declared shapes (unknown dimensions as 1);
//! runs reuse their bound buffers, as a serving loop would.

use byob_tensor::{Dim, IoBinding, SessionBuilder, Tensor};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: time_model MODEL.onnx [RUNS] [THREADS]")?;
    let runs: usize = args.next().map_or(Ok(20), |r| r.parse())?;
    let threads: usize = args.next().map_or(Ok(2), |t| t.parse())?;
    let session = SessionBuilder::new().with_intra_op_threads(threads).commit_from_file(&model)?;
    let mut binding = IoBinding::new();
    for v in session.inputs() {
        let shape: Vec<usize> = v.shape.iter().flatten().map(|d| if let Dim::Known(n) = d { *n } else { 1 }).collect();
        let n: usize = shape.iter().product();
        binding.bind_input(v.name.clone(), Tensor::f32(shape, (0..n).map(|i| (i % 255) as f32 / 255.0).collect())?);
    }
    session.run_with_binding(&mut binding)?;
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            session.run_with_binding(&mut binding).map(|_| start.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    times.sort_by(f64::total_cmp);
    println!("{model}: {runs} runs on {threads} threads: min {:.2} ms, median {:.2} ms", times[0], times[runs / 2]);
    Ok(())
}
