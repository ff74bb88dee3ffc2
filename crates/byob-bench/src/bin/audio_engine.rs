//! Offline render speed of byob versus the `web-audio-api` crate on four
//! graphs, in one run: real-time factor of each and their ratio.
//!
//! `cargo run --release -p byob-bench --bin audio_engine` (add `-- --quick`
//! for fewer repetitions). Writes its table into BENCHMARKS.md.

use byob_audio as byob;
use byob_bench::engine_graphs::{byob_graph, peer_graph, FRAMES, NAMES, SAMPLE_RATE, SECONDS};
use web_audio_api::context::{BaseAudioContext as _, OfflineAudioContext as PeerContext};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 7 };
    let names = NAMES;
    // `--only N`: time one graph without writing the table (for profiling).
    let only: Option<usize> = std::env::args().skip_while(|a| a != "--only").nth(1).and_then(|n| n.parse().ok());
    let mut rows = Vec::new();
    for (case, name) in names.iter().enumerate() {
        if only.is_some_and(|o| o != case) {
            continue;
        }
        // Both engines in turns, so a slow spell of the machine hits both.
        enum Ctx {
            Ours(byob::OfflineAudioContext),
            Peer(PeerContext),
        }
        let t = byob_bench::interleaved_medians(
            runs,
            2,
            |engine| {
                if engine == 0 {
                    let mut ctx = byob::OfflineAudioContext::new(2, FRAMES, SAMPLE_RATE).unwrap();
                    let destination = ctx.graph().destination();
                    byob_graph(ctx.graph(), case, destination);
                    Ctx::Ours(ctx)
                } else {
                    let ctx = PeerContext::new(2, FRAMES, SAMPLE_RATE);
                    peer_graph(&ctx, case, &ctx.destination());
                    Ctx::Peer(ctx)
                }
            },
            |_, ctx| match ctx {
                Ctx::Ours(ctx) => {
                    std::hint::black_box(ctx.start_rendering().unwrap());
                }
                Ctx::Peer(mut ctx) => {
                    std::hint::black_box(ctx.start_rendering_sync());
                }
            },
        );
        let (ours, peer) = (t[0], t[1]);
        let (rtf_ours, rtf_peer) = (SECONDS / ours, SECONDS / peer);
        println!("{name}: byob {rtf_ours:.1}x real time, web-audio-api {rtf_peer:.1}x, ratio {:.2}", rtf_ours / rtf_peer);
        rows.push(format!("| {name} | {rtf_ours:.1}x | {rtf_peer:.1}x | **{:.2}** |", rtf_ours / rtf_peer));
    }
    if only.is_some() {
        return;
    }
    let body = format!(
        "## Audio engine: offline render speed, byob vs web-audio-api {}\n\n\
         `cargo run --release -p byob-bench --bin audio_engine` — {SECONDS} s of stereo at {SAMPLE_RATE} Hz per graph, \
         median of {runs} renders taken in turns (timing starts at startRendering for both; building the graph and its buffers is not timed), same run, same machine: {}.\n\
         Real-time factor = seconds of audio / seconds of wall time; ratio = byob / web-audio-api (goal: at least 1.5).\n\n\
         | graph | byob | web-audio-api | ratio |\n|---|---|---|---|\n{}",
        "1.7",
        byob_bench::machine(),
        rows.join("\n")
    );
    byob_bench::write_section("audio_engine", &body).expect("BENCHMARKS.md is writable");
}
