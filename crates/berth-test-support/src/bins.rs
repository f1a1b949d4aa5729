//! Where the binaries under test are: next to the running test executable, or where the environment says.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Environment variable that overrides the path of `berth-runtime`.
pub const RUNTIME_ENV: &str = "BERTH_RUNTIME";
/// Environment variable that overrides the path of `berth-check`.
pub const CHECK_ENV: &str = "BERTH_CHECK";

/// Why a binary could not be found.
#[derive(Debug, Error)]
pub enum BinError {
    /// The path of the running executable is unknown.
    #[error("could not find the path of the running test executable")]
    CurrentExe(#[source] std::io::Error),
    /// The binary is not where it should be.
    #[error(
        "{name} is not at {path}: run `cargo build` (or `cargo build -p {name}`) before the tests, or set {env} \
         to its path; `cargo test -p <crate>` builds only the binaries of the crate under test"
    )]
    Missing {
        /// The binary's name.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
        /// The variable that overrides the path.
        env: String,
    },
}

/// The directory cargo puts binaries in for the running test: the test executable lives in
/// `target/<triple>/<profile>/deps/`, the binaries one level up.
pub fn target_dir() -> Result<PathBuf, BinError> {
    let exe = std::env::current_exe().map_err(BinError::CurrentExe)?;
    let dir = exe.parent().unwrap_or(Path::new("/"));
    Ok(if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    }
    .to_path_buf())
}

/// Finds binary `name`: the path in `env` if it is set, else `name` in [`target_dir`].
pub fn locate(name: &str, env: &str) -> Result<PathBuf, BinError> {
    let path = match std::env::var_os(env) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => target_dir()?.join(name),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(BinError::Missing {
            name: name.to_string(),
            path,
            env: env.to_string(),
        })
    }
}

/// The `berth-runtime` binary.
///
/// # Panics
/// When it is missing, with a message saying to run `cargo build`.
pub fn runtime_bin() -> PathBuf {
    locate("berth-runtime", RUNTIME_ENV).unwrap_or_else(|e| panic!("{e}"))
}

/// The `berth-check` binary.
///
/// # Panics
/// When it is missing, with a message saying to run `cargo build`.
pub fn check_bin() -> PathBuf {
    locate("berth-check", CHECK_ENV).unwrap_or_else(|e| panic!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_dir_is_the_parent_of_deps() {
        let dir = target_dir().unwrap();
        let exe = std::env::current_exe().unwrap();
        assert!(exe.starts_with(&dir));
        assert_ne!(dir.file_name().unwrap(), "deps");
    }

    #[test]
    fn missing_binary_error_says_what_to_do() {
        let err = locate("berth-no-such-binary", "BERTH_TEST_SUPPORT_UNSET_VARIABLE").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cargo build") && text.contains("berth-no-such-binary"),
            "{text}"
        );
    }
}
