//! `berth-init [--] PROGRAM [ARGUMENT...]`: Docker's `--init`; see `berth_monitor::init`. A leading `--` is
//! accepted and skipped, as tini (docker-init) does, since dockerd and Berth's spec run `docker-init -- CMD`.

fn main() {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    std::process::exit(berth_monitor::init::run(&args));
}
