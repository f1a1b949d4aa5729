//! `berth-init PROGRAM [ARGUMENT...]`: Docker's `--init`; see `berth_monitor::init`.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    std::process::exit(berth_monitor::init::run(&args));
}
