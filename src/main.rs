//! `qkd`: the command-line front end of qkd-distill.
//!
//! Exit codes: 0 = key produced (or the command succeeded), 1 = run completed but produced no
//! key (security abort, too little data), 2 = error (bad input, bad arguments, I/O).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
