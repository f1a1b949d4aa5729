//! Builds `berth-exec`, the exec trampoline that `exe_guard` embeds (source: `trampoline/main.rs`).
//!
//! The trampoline is a freestanding `#![no_std]` program. It is compiled by invoking `$RUSTC` directly for the
//! crate's target, with no start files, no libc and static linking, so the build needs nothing beyond the stable
//! toolchain that builds the rest of the crate (no extra rustup target, no C toolchain beyond the linker rustc
//! already uses). The result, a few KiB, lands in `$OUT_DIR/berth-exec`, where `exe_guard` picks it up with
//! `include_bytes!`.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Source of the trampoline, relative to the crate root.
const SOURCE: &str = "trampoline/main.rs";
/// File name of the built trampoline inside `OUT_DIR`.
const OUTPUT: &str = "berth-exec";
/// Upper bound on the trampoline's size. It is copied into a memfd for every container, so it has to stay tiny;
/// a larger file means that something (usually `core::fmt` through a panic path) slipped in.
const MAX_SIZE: u64 = 16 * 1024;

fn main() {
    println!("cargo:rerun-if-changed={SOURCE}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");

    let manifest_dir = PathBuf::from(required_env("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(required_env("OUT_DIR"));
    let target = required_env("TARGET").to_string_lossy().into_owned();
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let source = manifest_dir.join(SOURCE);
    let output = out_dir.join(OUTPUT);

    let mut cmd = Command::new(&rustc);
    cmd.arg("--edition=2024")
        .args(["--crate-type", "bin", "--crate-name", "berth_exec"])
        .arg("--target")
        .arg(&target)
        .args(["-C", "panic=abort"])
        .args(["-C", "opt-level=s"])
        .args(["-C", "codegen-units=1"])
        .args(["-C", "debuginfo=0"])
        .args(["-C", "debug-assertions=off"])
        .args(["-C", "overflow-checks=off"])
        .args(["-C", "force-unwind-tables=no"])
        .args(["-C", "relocation-model=static"])
        .args(["-C", "target-feature=+crt-static"])
        .args(["-C", "strip=symbols"])
        .args(["-C", "link-arg=-nostartfiles"])
        .args(["-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-static"])
        .args(["-C", "link-arg=-Wl,--build-id=none"])
        .arg("-o")
        .arg(&output)
        .arg(&source)
        // Flags meant for the crate being built (e.g. `+crt-static` from .cargo/config.toml, or coverage
        // instrumentation) must not leak into the freestanding trampoline.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        let mut arg = OsString::from("linker=");
        arg.push(linker);
        cmd.arg("-C").arg(arg);
    }

    let result = match cmd.output() {
        Ok(result) => result,
        Err(err) => fail(&format!(
            "could not run the Rust compiler {} to build the exec trampoline {}: {err}",
            Path::new(&rustc).display(),
            source.display()
        )),
    };
    if !result.status.success() {
        fail(&format!(
            "building the exec trampoline {} for target {target} failed ({}):\n{}{}",
            source.display(),
            result.status,
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        ));
    }

    check_output(&output, &target);
}

/// Checks that the trampoline is an ELF executable of sane size.
fn check_output(output: &Path, target: &str) {
    let bytes = match fs::read(output) {
        Ok(bytes) => bytes,
        Err(err) => fail(&format!(
            "reading the built exec trampoline {} failed: {err}",
            output.display()
        )),
    };
    if !bytes.starts_with(b"\x7fELF") {
        fail(&format!(
            "the built exec trampoline {} for target {target} is not an ELF file",
            output.display()
        ));
    }
    let size = bytes.len() as u64;
    if size > MAX_SIZE {
        fail(&format!(
            "the built exec trampoline {} is {size} bytes, more than the {MAX_SIZE} bytes it should take; \
             check trampoline/main.rs for code that can panic or format",
            output.display()
        ));
    }
}

fn required_env(name: &str) -> OsString {
    match env::var_os(name) {
        Some(value) => value,
        None => fail(&format!("cargo did not set {name} for the build script")),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
