//! docker-py from PyPI driving berthd: runs `tests/python/test_docker_py.py` (pytest) against a daemon of its own
//! with a busybox image.
//!
//! The Python side lives in a virtualenv at `$BERTH_PYVENV` (default `${XDG_CACHE_HOME:-$HOME/.cache}/berth/pyvenv`)
//! holding `docker` and `pytest` from PyPI (not Debian's python3-docker). When it is missing or lacks either
//! package the test makes it: `python3 -m venv` (Debian's python3-venv) and `pip install docker pytest`, under a
//! lock file so that parallel runs build it once. `BERTH_PYTEST_K` selects tests (pytest's `-k`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{busybox_image, ok, start};

/// The virtualenv's directory.
fn venv_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_PYVENV").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .expect("neither BERTH_PYVENV, XDG_CACHE_HOME nor HOME is set");
    cache.join("berth").join("pyvenv")
}

/// Whether the venv's python imports both packages from the venv itself.
fn venv_ready(venv: &Path) -> bool {
    let python = venv.join("bin/python");
    let Ok(o) = Command::new(&python)
        .args(["-c", "import docker, pytest; print(docker.__file__)"])
        .env_remove("PYTHONPATH")
        .output()
    else {
        return false;
    };
    o.status.success()
        && String::from_utf8_lossy(&o.stdout)
            .trim()
            .starts_with(&venv.display().to_string())
}

/// Makes the venv if it is not usable; returns its python.
fn ensure_venv() -> PathBuf {
    let venv = venv_dir();
    let parent = venv.parent().expect("the venv path has a parent");
    std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    let lock_path = venv.with_extension("lock");
    let lock = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if !venv_ready(&venv) {
        eprintln!("making the docker-py virtualenv at {}", venv.display());
        let mut c = Command::new("python3");
        c.args(["-m", "venv", "--clear"]).arg(&venv);
        let o = common::run(c);
        assert!(
            o.status.success(),
            "python3 -m venv {} failed (is Debian's python3-venv installed?):\n{}{}",
            venv.display(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let mut c = Command::new(venv.join("bin/python"));
        c.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "docker",
            "pytest",
        ])
        .env_remove("PIP_TARGET")
        .env_remove("PYTHONPATH");
        ok(&common::run(c));
        assert!(
            venv_ready(&venv),
            "{} still cannot import docker and pytest from itself",
            venv.display()
        );
    }
    venv.join("bin/python")
}

#[test]
fn docker_py_drives_containers_exec_logs_volumes_limits_and_attach() {
    let python = ensure_venv();
    let d = start(&[]);
    let image = busybox_image(&d, "pybusybox:latest");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/test_docker_py.py");
    let script = script
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let basetemp = d.dir.path().join("pytest");
    let mut c = Command::new(&python);
    c.args([
        "-m",
        "pytest",
        "-q",
        "-rfE",
        "--tb=short",
        "-p",
        "no:cacheprovider",
        "--basetemp",
    ])
    .arg(&basetemp)
    .arg(&script)
    .args(
        std::env::var("BERTH_PYTEST_K")
            .ok()
            .filter(|k| !k.is_empty())
            .map(|k| vec!["-k".to_string(), k])
            .unwrap_or_default(),
    )
    .current_dir(script.parent().expect("tests/python"))
    .env("DOCKER_HOST", d.host())
    .env("BERTH_TEST_IMAGE", &image)
    .env("PYTHONDONTWRITEBYTECODE", "1")
    .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
    .env_remove("DOCKER_CONTEXT")
    .env_remove("DOCKER_TLS_VERIFY")
    .env_remove("DOCKER_CERT_PATH")
    .env_remove("PYTHONPATH");
    let o = common::run(c);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "docker-py tests failed (exit {:?}):\n{out}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.lines()
            .any(|l| l.contains(" passed") && !l.contains("failed")),
        "no pytest summary:\n{out}"
    );
    // Every test removed what it made.
    let (_, list) = d.json("GET", "/containers/json?all=1", b"");
    assert_eq!(list.as_array().map(Vec::len), Some(0), "containers left: {list}");
    assert!(
        !d.log_text().contains("panicked"),
        "the daemon panicked:\n{}",
        d.log_text()
    );
}
