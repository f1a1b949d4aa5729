//! The in-container check binary; see the library documentation for the subcommands.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use berth_check::probe;
use serde::Serialize;

const USAGE: &str =
    "usage: berth-check [report | write <path> | sleep <seconds> [tag...] | exit <code> | fds]";

fn print_json<T: Serialize>(value: &T) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, value)
        .map_err(std::io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-check: could not write the report to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("berth-check: {message}\n{USAGE}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["report"] => print_json(&probe::collect_report()),
        ["fds"] => print_json(&probe::collect_fds()),
        ["write", path] => print_json(&probe::write_file(Path::new(path))),
        ["sleep", seconds, ..] => match seconds.parse::<f64>() {
            Ok(s) if s.is_finite() && s >= 0.0 => {
                std::thread::sleep(Duration::from_secs_f64(s));
                ExitCode::SUCCESS
            }
            _ => usage_error(&format!("{seconds:?} is not a number of seconds")),
        },
        ["exit", code] => match code.parse::<i32>() {
            // Through process::exit so that codes above 255 reach the kernel as given (it keeps the low byte).
            Ok(code) => std::process::exit(code),
            Err(_) => usage_error(&format!("{code:?} is not an exit code")),
        },
        _ => usage_error(&format!("unknown arguments {args:?}")),
    }
}
