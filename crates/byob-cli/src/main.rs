//! `byob`: render Web Audio graphs offline, play them, and run ONNX models.

mod infer;
mod plot;
mod render;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "byob", version, about = "bring-your-own-buffer audio and inference runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Render a JSON audio graph offline to a WAV file.
    Render(render::RenderArgs),
    /// Play a JSON audio graph through the default output device.
    Play(render::PlayArgs),
    /// Run an ONNX model on .npy inputs.
    Run(infer::RunArgs),
    /// Show an ONNX model's inputs, outputs, opsets and where each node runs.
    Info(infer::InfoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Killed mid-render, byob leaves no temporary file behind (130: the
    // shell's code for a command ended by a signal). Without a handler
    // the signal still ends the process, leaving them.
    let _ = ctrlc::set_handler(|| {
        byob_files::remove_pending();
        std::process::exit(130);
    });
    let result = match cli.command {
        Command::Render(args) => render::render(args),
        Command::Play(args) => render::play(args),
        Command::Run(args) => infer::run(args),
        Command::Info(args) => infer::info(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `byob info | head`: the reader left; that is not an error.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// A size flag given in MiB, in bytes.
fn mib_to_bytes(flag: &str, mib: usize) -> anyhow::Result<usize> {
    mib.checked_mul(1 << 20).ok_or_else(|| anyhow::anyhow!("{flag} {mib} is too large"))
}

/// An error and its causes as one line: a cause whose text the line
/// already holds is left out (an I/O error that a message quoted, then
/// gave as its source), and line breaks inside a message (a decoder's
/// excerpt) become spaces.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
