//! # byob-files
//!
//! The files byob's users name, read and written with the care a hostile
//! input deserves. Both halves of byob (`byob-audio`, `byob-tensor`) and
//! the CLI use it; it depends on neither.
//!
//! - **Inputs** ([`open_regular`], [`read_regular`]): regular files only, so
//!   that a FIFO cannot block a read forever and `/dev/zero` cannot grow a
//!   buffer without end, sized before a byte is read and capped.
//! - **Outputs** ([`Outputs`], [`write_atomically`]): every output of one
//!   command is checked (its folder exists; it is not a link, a file with
//!   other hard links, a FIFO, a device or a folder; no two share a path) and written to a temporary
//!   file beside it before the first is renamed into place, so a failed
//!   command leaves nothing half-written and damages nothing. New files get
//!   the permissions the umask gives, as any command-line tool's do; a
//!   replaced file keeps its own. Temporary files still pending are listed for a signal handler to
//!   remove ([`remove_pending`]).
//!
//! ```no_run
//! use std::io::Write;
//! let mut outputs = byob_files::Outputs::new();
//! writeln!(outputs.stage("a.txt".as_ref())?.file(), "first")?;
//! writeln!(outputs.stage("b.txt".as_ref())?.file(), "second")?;
//! outputs.commit()?; // both appear, or neither
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod input;
mod output;

pub use input::{open_regular, read_regular};
pub use output::{remove_pending, write_atomically, OutputError, Outputs, Staged};
