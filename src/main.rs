//! `qkd`: the command-line front end of qkd-distill.
//!
//! Exit codes: 0 = key produced (or the command succeeded), 1 = run completed but produced no
//! key (security abort, too little data), 2 = error (bad input, bad arguments, I/O), 141 =
//! standard output was closed by its reader (`qkd … | head`), as for a Unix tool ended by
//! SIGPIPE: the command stops quietly, its files are as complete as for any other stop.

mod cli;

use std::process::ExitCode;

/// The exit code when stdout is closed under the command.
const CLOSED_STDOUT: i32 = 141;

fn main() -> ExitCode {
    // `println!` panics when the reader of a pipe went away; that is not a failure of the
    // command: leave quietly instead of printing a panic and exiting 101.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(CLOSED_STDOUT);
        }
        default_hook(info);
    }));
    match cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
