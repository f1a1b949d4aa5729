//! `berth-monitor <state-dir>`: see the `berth_monitor` crate documentation.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(berth_monitor::launch::main(&args));
}
