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
    quiet_vulkan_device_select();
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
/// Mesa's Vulkan device-select layer, asked to order the GPUs, connects to
/// a Wayland display, which prints "error: XDG_RUNTIME_DIR is invalid or
/// not set in the environment." twice on stderr where no session is (a
/// server, CI, ssh) though nothing failed. With no session there is no
/// display whose GPU to prefer, and byob picks its adapter itself, so the
/// layer is switched off there (`NODEVICE_SELECT`), unless the user chose
/// a device through it (`MESA_VK_DEVICE_SELECT`). Runs first in `main`,
/// before any thread exists that could read the environment.
fn quiet_vulkan_device_select() {
    let runtime_dir_valid = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    let user_chose = ["NODEVICE_SELECT", "MESA_VK_DEVICE_SELECT"].iter().any(|v| std::env::var_os(v).is_some());
    if !runtime_dir_valid && !user_chose {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

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
