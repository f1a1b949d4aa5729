//! The json-file log, in Docker's format: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2026-11-29T00:00:00.123456789Z"}`.
//!
//! Output is split at `'\n'` ([`LineSplitter`]); a partial line is written when 16 KiB have accumulated or at
//! the end of the stream (without the `'\n'`). [`JsonLog`] rotates before a write would make the file exceed
//! the maximum size: `log.(n-1)` → `log.n`, …, `log` → `log.1`, keeping `max_files` files in total; with one
//! file it truncates instead.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use crate::frame::Stream;

/// The longest partial line kept before it is written as an entry of its own (Docker's 16 KiB).
pub const MAX_PARTIAL: usize = 16 * 1024;

/// Why the log could not be written.
#[derive(Debug, Error)]
pub enum LogError {
    /// The log file could not be opened.
    #[error("cannot open the log file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An entry could not be written.
    #[error("cannot write to the log file {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Rotation failed.
    #[error("cannot rotate the log file {path}: {source}")]
    Rotate {
        /// The file being renamed or truncated.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Cuts a stream of output into log entries: lines with their `'\n'`, and partial lines of [`MAX_PARTIAL`]
/// bytes.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// A splitter with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `data`; `emit` gets every complete entry, in order.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
        while !data.is_empty() {
            let room = MAX_PARTIAL - self.partial.len();
            let window = &data[..data.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) if self.partial.is_empty() => {
                    emit(&data[..=i]);
                    data = &data[i + 1..];
                }
                Some(i) => {
                    self.partial.extend_from_slice(&data[..=i]);
                    emit(&self.partial);
                    self.partial.clear();
                    data = &data[i + 1..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    data = &data[window.len()..];
                    if self.partial.len() == MAX_PARTIAL {
                        emit(&self.partial);
                        self.partial.clear();
                    }
                }
            }
        }
        if self.partial.is_empty() && self.partial.capacity() > MAX_PARTIAL {
            self.partial.shrink_to(0);
        }
    }

    /// The end of the stream: emits what is pending (a line without `'\n'`).
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
        self.partial.shrink_to(0);
    }

    /// Whether part of a line is pending.
    pub fn has_partial(&self) -> bool {
        !self.partial.is_empty()
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: &'a str,
    time: &'a str,
}

/// A json-file log with size-based rotation.
#[derive(Debug)]
pub struct JsonLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
    line: Vec<u8>,
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl JsonLog {
    /// Opens (appends to) `path`; `max_size` 0 never rotates; `max_files` counts the current file.
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> Result<Self, LogError> {
        let file = open_append(path)?;
        let size = file
            .metadata()
            .map_err(|source| LogError::Open {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
            line: Vec::new(),
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one entry of `stream` with `text` (invalid UTF-8 becomes U+FFFD) stamped `time`.
    pub fn write_entry(&mut self, stream: Stream, text: &[u8], time: &str) -> Result<(), LogError> {
        self.line.clear();
        let entry = Entry {
            log: &String::from_utf8_lossy(text),
            stream: stream.name(),
            time,
        };
        serde_json::to_writer(&mut self.line, &entry).map_err(|e| LogError::Write {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.line.push(b'\n');
        let len = self.line.len() as u64;
        if self.max_size > 0 && self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        let result = self.file.write_all(&self.line);
        if self.line.capacity() > 2 * MAX_PARTIAL {
            self.line = Vec::new();
        }
        result.map_err(|source| LogError::Write {
            path: self.path.clone(),
            source,
        })?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LogError::Rotate { path, source }
        };
        if self.max_files <= 1 {
            self.file.set_len(0).map_err(err(&self.path))?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.max_files - 1).rev() {
            let from = numbered(&self.path, n);
            match std::fs::rename(&from, numbered(&self.path, n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(&from)(e)),
            }
        }
        std::fs::rename(&self.path, numbered(&self.path, 1)).map_err(err(&self.path))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut splitter = LineSplitter::new();
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(chunk, |e| out.push(e.to_vec()));
        }
        splitter.finish(|e| out.push(e.to_vec()));
        out
    }

    #[test]
    fn lines_are_split_at_newlines_across_chunks() {
        assert_eq!(
            split(&[b"a\nb", b"c\n\nd"]),
            vec![b"a\n".to_vec(), b"bc\n".to_vec(), b"\n".to_vec(), b"d".to_vec()]
        );
        assert_eq!(split(&[b"x\n"]), vec![b"x\n".to_vec()]);
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn long_partial_lines_are_cut_at_16k() {
        let long = vec![b'x'; MAX_PARTIAL * 2 + 10];
        let mut data = long.clone();
        data.push(b'\n');
        let out = split(&[&data[..100], &data[100..]]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].len(), MAX_PARTIAL);
        assert_eq!(out[1].len(), MAX_PARTIAL);
        assert_eq!(out[2], b"xxxxxxxxxx\n");
        assert_eq!(out.concat(), data);
    }

    #[test]
    fn a_partial_line_stays_pending_until_finish() {
        let mut splitter = LineSplitter::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        splitter.push(b"no newline", |e| out.push(e.to_vec()));
        assert!(out.is_empty());
        assert!(splitter.has_partial());
        splitter.finish(|e| out.push(e.to_vec()));
        assert_eq!(out, vec![b"no newline".to_vec()]);
        assert!(!splitter.has_partial());
    }

    fn entries(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    const TIME: &str = "2026-11-29T00:00:00.123456789Z";

    #[test]
    fn entries_have_docker_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut log = JsonLog::open(&path, 0, 1).unwrap();
        log.write_entry(Stream::Stdout, b"hello \"x\"\n", TIME).unwrap();
        log.write_entry(Stream::Stderr, b"bad \xff", TIME).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"log":"hello \"x\"\n","stream":"stdout","time":"2026-11-29T00:00:00.123456789Z"}"#
        );
        let all = entries(&path);
        assert_eq!(all[1]["log"], "bad \u{fffd}");
        assert_eq!(all[1]["stream"], "stderr");
        // Reopening appends.
        drop(log);
        let mut log = JsonLog::open(&path, 0, 1).unwrap();
        log.write_entry(Stream::Stdout, b"third\n", TIME).unwrap();
        assert_eq!(entries(&path).len(), 3);
    }

    #[test]
    fn rotation_keeps_max_files_and_never_exceeds_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let one_entry = {
            let mut probe = JsonLog::open(&dir.path().join("probe"), 0, 1).unwrap();
            probe.write_entry(Stream::Stdout, b"line 00\n", TIME).unwrap();
            std::fs::metadata(probe.path()).unwrap().len()
        };
        // Room for three entries per file.
        let max = one_entry * 3 + 1;
        let mut log = JsonLog::open(&path, max, 3).unwrap();
        for i in 0..20 {
            log.write_entry(Stream::Stdout, format!("line {i:02}\n").as_bytes(), TIME)
                .unwrap();
        }
        let files: Vec<PathBuf> = vec![path.clone(), numbered(&path, 1), numbered(&path, 2)];
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() <= max, "{}", f.display());
        }
        assert!(!numbered(&path, 3).exists());
        let mut lines: Vec<String> = Vec::new();
        for f in files.iter().rev() {
            lines.extend(entries(f).iter().map(|e| e["log"].as_str().unwrap().to_string()));
        }
        let expected: Vec<String> = (12..20).map(|i| format!("line {i:02}\n")).collect();
        assert_eq!(
            lines, expected,
            "the newest lines (two files of three, the current one of two), oldest first"
        );
    }

    #[test]
    fn one_file_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut log = JsonLog::open(&path, 150, 1).unwrap();
        for i in 0..10 {
            log.write_entry(Stream::Stderr, format!("l{i}\n").as_bytes(), TIME)
                .unwrap();
        }
        assert!(!numbered(&path, 1).exists());
        let all = entries(&path);
        assert!(!all.is_empty() && all.len() < 10);
        assert_eq!(all.last().unwrap()["log"], "l9\n");
        assert!(std::fs::metadata(&path).unwrap().len() <= 150);
    }

    #[test]
    fn an_entry_larger_than_the_limit_is_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut log = JsonLog::open(&path, 10, 2).unwrap();
        log.write_entry(Stream::Stdout, b"first\n", TIME).unwrap();
        log.write_entry(Stream::Stdout, b"second\n", TIME).unwrap();
        assert_eq!(entries(&path)[0]["log"], "second\n");
        assert_eq!(entries(&numbered(&path, 1))[0]["log"], "first\n");
    }
}
