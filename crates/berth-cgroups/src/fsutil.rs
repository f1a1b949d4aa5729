//! Small file helpers: one open/write/close per value, errors that name the file and the value.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Writes `value` to `dir/file` (no O_CREAT: a missing file is reported as a missing controller).
pub(crate) fn write(dir: &Path, file: &str, value: &str, controller: &str) -> Result<()> {
    let path = dir.join(file);
    match write_raw(&path, value) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::ControllerMissing {
            controller: controller.to_owned(),
            path,
            value: value.to_owned(),
        }),
        Err(source) => Err(Error::Write {
            path,
            value: value.to_owned(),
            source,
        }),
    }
}

/// Like [`write`], but a missing file is not an error (returns `false`).
pub(crate) fn write_if_exists(dir: &Path, file: &str, value: &str) -> Result<bool> {
    let path = dir.join(file);
    match write_raw(&path, value) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(Error::Write {
            path,
            value: value.to_owned(),
            source,
        }),
    }
}

/// One open(O_WRONLY|O_TRUNC|O_CLOEXEC), one write, one close.
pub(crate) fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(value.as_bytes())
}

/// Reads a whole cgroup file.
pub(crate) fn read(path: &Path) -> Result<String> {
    read_raw(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads a whole file, `None` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>> {
    match read_raw(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn read_raw(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut s = String::with_capacity(64);
    f.read_to_string(&mut s)?;
    Ok(s)
}

/// Reads a file holding one unsigned number; "max" reads as `u64::MAX`; a missing file is `None`.
pub(crate) fn read_u64_opt(path: &Path) -> Result<Option<u64>> {
    let Some(s) = read_opt(path)? else {
        return Ok(None);
    };
    parse_u64(path, s.trim()).map(Some)
}

pub(crate) fn parse_u64(path: &Path, s: &str) -> Result<u64> {
    if s == "max" {
        return Ok(u64::MAX);
    }
    s.parse::<u64>()
        .or_else(|_| s.parse::<i64>().map(|v| if v < 0 { u64::MAX } else { v as u64 }))
        .map_err(|_| Error::Parse {
            path: path.to_owned(),
            content: s.to_owned(),
        })
}

/// Parses "key value" lines (cpu.stat, memory.stat, memory.events, ...).
pub(crate) fn parse_flat_keyed(content: &str) -> impl Iterator<Item = (&str, u64)> {
    content.lines().filter_map(|l| {
        let mut it = l.split_whitespace();
        let k = it.next()?;
        let v = it.next()?.parse().ok()?;
        Some((k, v))
    })
}

/// Returns the value of `key` in a flat-keyed file's content.
pub(crate) fn keyed_value(content: &str, key: &str) -> Option<u64> {
    parse_flat_keyed(content).find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// Creates `path` and any missing parents, deepest existing ancestor first; returns the directories it
/// created, outermost first. Tries the leaf first so that the common case (parent exists) costs one mkdir.
pub(crate) fn mkdir_p(path: &Path, created: &mut Vec<PathBuf>) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {
            created.push(path.to_owned());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = path.parent().ok_or_else(|| Error::Mkdir {
                path: path.to_owned(),
                source: e,
            })?;
            mkdir_p(parent, created)?;
            match fs::create_dir(path) {
                Ok(()) => {
                    created.push(path.to_owned());
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(source) => Err(Error::Mkdir {
                    path: path.to_owned(),
                    source,
                }),
            }
        }
        Err(source) => Err(Error::Mkdir {
            path: path.to_owned(),
            source,
        }),
    }
}

/// How long [`rmdir_tree`] keeps retrying a busy cgroup.
const RMDIR_PATIENCE: Duration = Duration::from_millis(1000);

/// Removes a cgroup directory and its child cgroups (children first), retrying EBUSY for a short while
/// (processes that were just killed leave their cgroup asynchronously). A missing directory is fine.
pub(crate) fn rmdir_tree(path: &Path) -> Result<()> {
    let deadline = Instant::now() + RMDIR_PATIENCE;
    let mut pause = Duration::from_millis(1);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if retryable(&e) => {
                // Child cgroups (cgroup files do not count; v1 says EBUSY, v2 ENOTEMPTY): remove them
                // first; then retry, as processes that were just killed leave asynchronously.
                remove_children(path)?;
                match fs::remove_dir(path) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) if retryable(&e) && Instant::now() < deadline => {}
                    Err(source) => {
                        return Err(Error::Rmdir {
                            path: path.to_owned(),
                            source,
                        });
                    }
                }
            }
            Err(source) => {
                return Err(Error::Rmdir {
                    path: path.to_owned(),
                    source,
                });
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Removes a parent directory this crate created, unless something else lives in it now.
pub(crate) fn rmdir_if_unused(path: &Path) -> Result<()> {
    match fs::remove_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if retryable(&e) => Ok(()),
        Err(source) => Err(Error::Rmdir {
            path: path.to_owned(),
            source,
        }),
    }
}

fn retryable(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::ENOTEMPTY))
}

fn remove_children(path: &Path) -> Result<()> {
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// Collects `path` and every cgroup directory below it.
pub(crate) fn subtree(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    out.push(path.to_owned());
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            subtree(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// Reads the pids of `cgroup.procs` in `path` and in every cgroup below it.
pub(crate) fn pids_recursive(path: &Path) -> Result<Vec<i32>> {
    let mut dirs = Vec::new();
    subtree(path, &mut dirs)?;
    let mut pids = Vec::new();
    for dir in dirs {
        let file = dir.join("cgroup.procs");
        let Some(content) = read_opt(&file)? else {
            continue;
        };
        for line in content.lines() {
            let pid = line.trim().parse::<i32>().map_err(|_| Error::Parse {
                path: file.clone(),
                content: line.to_owned(),
            })?;
            pids.push(pid);
        }
    }
    Ok(pids)
}
