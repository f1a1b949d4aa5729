//! Reading a container's json-file log (`<cid>-json.log`, written by `berth-monitor`) as `GET
//! /containers/{id}/logs` does: the rotated files (`.N` … `.1`, oldest first) and then the live one, filtered by
//! stream, `since` and `until`, the last `tail` lines, optional timestamps, and `follow`, which keeps reading as
//! the monitor writes (across rotations and truncations) until the container has stopped and the file is read to
//! its end.
//!
//! Semantics follow dockerd's: `tail` counts the lines of both streams before the `since`/`until` and stream
//! filters; `tail=0` shows no past lines; entries at or after `since` and not after `until` are shown.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

/// How often a follower looks for new output.
const POLL: Duration = Duration::from_millis(100);

/// Reading a log failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A log file cannot be opened or read.
    #[error("cannot read the log file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A `tail` value that is neither `all` nor a number.
    #[error("invalid value for \"tail\": {0:?} is neither \"all\" nor a number of lines")]
    BadTail(String),
    /// A `since`/`until` value that is not a timestamp.
    #[error("invalid value for \"{key}\": {value:?} is not a unix timestamp or an RFC 3339 time")]
    BadTime {
        /// `since` or `until`.
        key: &'static str,
        /// The value given.
        value: String,
    },
}

impl crate::errdefs::HasKind for LogError {
    fn kind(&self) -> crate::errdefs::ErrorKind {
        match self {
            Self::Read { .. } => crate::errdefs::ErrorKind::System,
            Self::BadTail(_) | Self::BadTime { .. } => crate::errdefs::ErrorKind::InvalidParameter,
        }
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (frame type 1).
    Stdout,
    /// Standard error (frame type 2).
    Stderr,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The stream.
    pub stream: Stream,
    /// When the monitor read it, unix nanoseconds.
    pub time: i64,
    /// The text, with its `\n` (a partial line has none).
    pub line: Vec<u8>,
}

impl LogEntry {
    /// The bytes docker sends for the entry: the line, after `<RFC 3339, 9 fraction digits> ` with timestamps.
    pub fn render(&self, timestamps: bool) -> Vec<u8> {
        if !timestamps {
            return self.line.clone();
        }
        let mut out = fixed_nanos(self.time).into_bytes();
        out.push(b' ');
        out.extend_from_slice(&self.line);
        out
    }

    /// [`Self::render`] in a multiplexed frame (`[stream, 0, 0, 0, len u32 BE]`), for containers without a tty.
    pub fn frame(&self, timestamps: bool) -> Vec<u8> {
        let body = self.render(timestamps);
        let mut out = Vec::with_capacity(body.len() + 8);
        out.push(match self.stream {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        });
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }
}

/// Go's `RFC3339NanoFixed` in UTC: `2024-01-02T03:04:05.000000000Z`.
pub fn fixed_nanos(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let base = crate::time::rfc3339_nanos(secs * 1_000_000_000);
    format!("{}.{frac:09}Z", base.trim_end_matches('Z'))
}

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Show standard output.
    pub stdout: bool,
    /// Show standard error.
    pub stderr: bool,
    /// Only entries at or after this time (unix nanoseconds).
    pub since: Option<i64>,
    /// Only entries at or before this time (unix nanoseconds); a follower stops once it has passed.
    pub until: Option<i64>,
    /// Only the last N lines of the existing log (`None`: all of them).
    pub tail: Option<usize>,
    /// Keep reading new output until the container stops.
    pub follow: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            stdout: true,
            stderr: true,
            since: None,
            until: None,
            tail: None,
            follow: false,
        }
    }
}

impl LogOptions {
    /// Sets `tail`, `since` and `until` from the query values as dockerd parses them: `tail` is `all` (or empty,
    /// or negative) or a count; `since` and `until` are unix seconds (with a fraction) or RFC 3339, `0`/empty
    /// meaning unset.
    pub fn apply_query(&mut self, tail: &str, since: &str, until: &str) -> Result<(), LogError> {
        let tail = match tail.trim() {
            "" | "all" => None,
            t => match t.parse::<i64>() {
                Ok(n) if n < 0 => None,
                Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
                Err(_) => return Err(LogError::BadTail(t.to_string())),
            },
        };
        let time = |key: &'static str, v: &str| -> Result<Option<i64>, LogError> {
            match v.trim() {
                "" | "0" => Ok(None),
                v => crate::time::parse_api_timestamp(v)
                    .map(Some)
                    .ok_or_else(|| LogError::BadTime {
                        key,
                        value: v.to_string(),
                    }),
            }
        };
        self.since = time("since", since)?;
        self.until = time("until", until)?;
        self.tail = tail;
        Ok(())
    }

    /// Offers an entry to `emit`: false when reading must stop (past `until`, or the client left).
    fn offer(&self, e: LogEntry, emit: &mut dyn FnMut(LogEntry) -> bool) -> bool {
        if self.past_until(&e) {
            return false;
        }
        !self.wants(&e) || emit(e)
    }

    fn wants(&self, e: &LogEntry) -> bool {
        let stream_ok = match e.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        stream_ok && self.since.is_none_or(|s| e.time >= s)
    }

    fn past_until(&self, e: &LogEntry) -> bool {
        self.until.is_some_and(|u| e.time > u)
    }
}

/// The files of a log, oldest first: `<path>.N` … `<path>.1`, then `<path>` (those that exist).
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut rotated = Vec::new();
    for n in 1.. {
        let p = rotated_name(path, n);
        if !p.exists() {
            break;
        }
        rotated.push(p);
    }
    rotated.reverse();
    if path.exists() {
        rotated.push(path.to_owned());
    }
    rotated
}

fn rotated_name(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

#[derive(Deserialize)]
struct RawLine {
    log: String,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    time: String,
}

/// Parses one JSON line of the log; `None` for lines that are not a log entry.
pub fn parse_line(line: &[u8]) -> Option<LogEntry> {
    let raw: RawLine = serde_json::from_slice(line).ok()?;
    let stream = match raw.stream.as_str() {
        "stderr" => Stream::Stderr,
        _ => Stream::Stdout,
    };
    Some(LogEntry {
        stream,
        time: crate::time::parse_rfc3339(&raw.time).unwrap_or(0),
        line: raw.log.into_bytes(),
    })
}

/// Splits complete lines off a buffer; what follows the last `\n` stays in it.
fn take_lines(buf: &mut Vec<u8>, mut each: impl FnMut(&[u8])) {
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + i];
        if !line.is_empty() {
            each(line);
        }
        start += i + 1;
    }
    buf.drain(..start);
}

/// Reads the whole existing log (no follow): the entries to show, in order.
pub fn read_all(path: &Path, opts: &LogOptions) -> Result<Vec<LogEntry>, LogError> {
    let mut out = Vec::new();
    let mut r = Reader::new(path, opts.clone());
    r.history(&mut |e| {
        out.push(e);
        true
    })?;
    Ok(out)
}

/// Streams the log in a blocking task: the existing entries, then, with `follow`, new ones until `stopped()`
/// says the container has stopped and the log has been read to its end, or the receiver is dropped. An error
/// ends the stream.
pub fn stream(
    path: PathBuf,
    opts: LogOptions,
    stopped: impl Fn() -> bool + Send + 'static,
) -> mpsc::Receiver<Result<LogEntry, LogError>> {
    let (tx, rx) = mpsc::channel(256);
    tokio::task::spawn_blocking(move || {
        let mut r = Reader::new(&path, opts);
        let mut send = |e: LogEntry| tx.blocking_send(Ok(e)).is_ok();
        let res = r.run(&mut send, &stopped, &|| tx.is_closed());
        if let Err(e) = res {
            let _ = tx.blocking_send(Err(e));
        }
    });
    rx
}

/// The open live file of a follower.
struct Live {
    file: File,
    ino: u64,
    pos: u64,
    buf: Vec<u8>,
}

struct Reader {
    path: PathBuf,
    opts: LogOptions,
}

impl Reader {
    fn new(path: &Path, opts: LogOptions) -> Self {
        Self {
            path: path.to_owned(),
            opts,
        }
    }

    fn read_err(&self, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
        let path = path.to_owned();
        move |source| LogError::Read { path, source }
    }

    /// Emits the existing entries; returns the live file opened at the point reading stopped (for a follower),
    /// or `None` when there is no live file. `emit` returning false stops everything (the client left).
    fn history(&mut self, emit: &mut dyn FnMut(LogEntry) -> bool) -> Result<Option<Live>, LogError> {
        let files = log_files(&self.path);
        // The live file is opened first so that a rotation while the rotated files are read loses nothing: its
        // content is read from this descriptor whatever its name becomes.
        let live = match File::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.read_err(&self.path)(e)),
        };
        let mut tail: VecDeque<LogEntry> = VecDeque::new();
        let cap = self.opts.tail;
        let mut stop = false;
        let mut handle = |e: LogEntry, tail: &mut VecDeque<LogEntry>, stop: &mut bool| {
            if *stop {
                return;
            }
            match cap {
                Some(0) => {}
                Some(n) => {
                    if tail.len() == n {
                        tail.pop_front();
                    }
                    tail.push_back(e);
                }
                None => *stop = !self.opts.offer(e, emit),
            }
        };
        for f in files.iter().filter(|f| **f != self.path) {
            let mut file = match File::open(f) {
                Ok(file) => file,
                // Rotated away while we listed: its lines are in the next file.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.read_err(f)(e)),
            };
            let mut data = Vec::new();
            file.read_to_end(&mut data).map_err(self.read_err(f))?;
            data.push(b'\n');
            take_lines(&mut data, |l| {
                if let Some(e) = parse_line(l) {
                    handle(e, &mut tail, &mut stop);
                }
            });
        }
        let mut live = match live {
            Some(file) => {
                let meta = file.metadata().map_err(self.read_err(&self.path))?;
                Some(Live {
                    file,
                    ino: meta.ino(),
                    pos: 0,
                    buf: Vec::new(),
                })
            }
            None => None,
        };
        if let Some(l) = live.as_mut() {
            let mut data = Vec::new();
            l.file.read_to_end(&mut data).map_err(self.read_err(&self.path))?;
            l.pos = data.len() as u64;
            // A last line without its `\n` is still being written: a follower completes it later.
            take_lines(&mut data, |line| {
                if let Some(e) = parse_line(line) {
                    handle(e, &mut tail, &mut stop);
                }
            });
            l.buf = data;
        }
        for e in tail {
            if stop {
                break;
            }
            stop = !self.opts.offer(e, emit);
        }
        if stop {
            return Ok(None);
        }
        Ok(live)
    }

    /// History, then following.
    fn run(
        &mut self,
        emit: &mut dyn FnMut(LogEntry) -> bool,
        stopped: &dyn Fn() -> bool,
        gone: &dyn Fn() -> bool,
    ) -> Result<(), LogError> {
        let mut finished = false;
        let mut emit_checked = |e: LogEntry, opts: &LogOptions, finished: &mut bool| {
            if !*finished {
                *finished = !opts.offer(e, emit);
            }
        };
        let mut live = {
            let mut stop_all = false;
            let mut em = |e: LogEntry| {
                let mut f = false;
                emit_checked(e, &self.opts, &mut f);
                if f {
                    stop_all = true;
                }
                !f
            };
            let live = Reader::new(&self.path, self.opts.clone()).history(&mut em)?;
            if stop_all || !self.opts.follow {
                return Ok(());
            }
            live
        };
        loop {
            // Whether the container had stopped before this round of reading: then the round reads everything
            // it wrote.
            let was_stopped = stopped();
            if let Some(l) = live.as_mut() {
                self.drain(l, &mut |e| {
                    emit_checked(e, &self.opts, &mut finished);
                })?;
            }
            if finished || gone() {
                return Ok(());
            }
            // Rotation (a new file under the name) or a file that appeared.
            match std::fs::metadata(&self.path) {
                Ok(meta) if live.as_ref().is_none_or(|l| l.ino != meta.ino()) => {
                    if let Some(l) = live.as_mut() {
                        // Whatever was appended to the old file before it was renamed.
                        self.drain(l, &mut |e| emit_checked(e, &self.opts, &mut finished))?;
                    }
                    match File::open(&self.path) {
                        Ok(file) => {
                            live = Some(Live {
                                file,
                                ino: meta.ino(),
                                pos: 0,
                                buf: Vec::new(),
                            });
                            continue;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(self.read_err(&self.path)(e)),
                    }
                }
                _ => {}
            }
            if was_stopped {
                return Ok(());
            }
            if self.opts.until.is_some_and(|u| crate::time::now_nanos() > u) {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
    }

    /// Reads what was appended to the live file (from the start again if it was truncated).
    fn drain(&self, l: &mut Live, each: &mut dyn FnMut(LogEntry)) -> Result<(), LogError> {
        let len = l.file.metadata().map_err(self.read_err(&self.path))?.len();
        if len < l.pos {
            l.file
                .seek(SeekFrom::Start(0))
                .map_err(self.read_err(&self.path))?;
            l.pos = 0;
            l.buf.clear();
        }
        let mut chunk = Vec::new();
        let n = (&l.file)
            .read_to_end(&mut chunk)
            .map_err(self.read_err(&self.path))?;
        l.pos += n as u64;
        l.buf.extend_from_slice(&chunk);
        take_lines(&mut l.buf, |line| {
            if let Some(e) = parse_line(line) {
                each(e);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn line(stream: &str, t: i64, text: &str) -> String {
        format!(
            "{}\n",
            serde_json::json!({"log": text, "stream": stream, "time": crate::time::rfc3339_nanos(t)})
        )
    }

    fn texts(v: &[LogEntry]) -> Vec<String> {
        v.iter()
            .map(|e| String::from_utf8_lossy(&e.line).into_owned())
            .collect()
    }

    const S: i64 = 1_700_000_000_000_000_000;

    fn sample(dir: &Path) -> PathBuf {
        let p = dir.join("c-json.log");
        std::fs::write(
            rotated_name(&p, 2),
            line("stdout", S, "one\n") + &line("stderr", S + 1, "two\n"),
        )
        .unwrap();
        std::fs::write(rotated_name(&p, 1), line("stdout", S + 2, "three\n")).unwrap();
        std::fs::write(
            &p,
            line("stderr", S + 3, "four\n") + "garbage\n" + &line("stdout", S + 4, "five"),
        )
        .unwrap();
        p
    }

    #[test]
    fn reads_rotated_files_with_filters_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample(dir.path());
        assert_eq!(log_files(&p).len(), 3);
        let all = read_all(&p, &LogOptions::default()).unwrap();
        assert_eq!(texts(&all), vec!["one\n", "two\n", "three\n", "four\n", "five"]);
        assert_eq!(all[1].stream, Stream::Stderr);
        let o = |f: &dyn Fn(&mut LogOptions)| {
            let mut o = LogOptions::default();
            f(&mut o);
            texts(&read_all(&p, &o).unwrap())
        };
        assert_eq!(o(&|o| o.stderr = false), vec!["one\n", "three\n", "five"]);
        assert_eq!(o(&|o| o.stdout = false), vec!["two\n", "four\n"]);
        assert_eq!(o(&|o| o.tail = Some(2)), vec!["four\n", "five"]);
        assert_eq!(o(&|o| o.tail = Some(0)), Vec::<String>::new());
        // tail counts both streams, then the stream filter applies (as dockerd).
        assert_eq!(
            o(&|o| {
                o.tail = Some(2);
                o.stdout = false
            }),
            vec!["four\n"]
        );
        assert_eq!(o(&|o| o.since = Some(S + 3)), vec!["four\n", "five"]);
        assert_eq!(o(&|o| o.until = Some(S + 1)), vec!["one\n", "two\n"]);
        assert!(
            read_all(&dir.path().join("absent.log"), &LogOptions::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn renders_timestamps_and_frames() {
        let e = LogEntry {
            stream: Stream::Stderr,
            time: S + 5,
            line: b"x\n".to_vec(),
        };
        assert_eq!(e.render(true), b"2023-11-14T22:13:20.000000005Z x\n");
        assert_eq!(e.frame(false), vec![2, 0, 0, 0, 0, 0, 0, 2, b'x', b'\n']);
        let mut o = LogOptions::default();
        o.apply_query("10", "1700000000", "").unwrap();
        assert_eq!((o.tail, o.since, o.until), (Some(10), Some(S), None));
        o.apply_query("all", "", "").unwrap();
        assert_eq!(o.tail, None);
        assert!(o.apply_query("ten", "", "").is_err());
        assert!(o.apply_query("", "yesterday", "").is_err());
    }

    #[tokio::test]
    async fn follows_across_rotation_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        std::fs::write(&p, line("stdout", S, "old\n")).unwrap();
        let stopped = Arc::new(AtomicBool::new(false));
        let s2 = stopped.clone();
        let opts = LogOptions {
            follow: true,
            tail: Some(1),
            ..LogOptions::default()
        };
        let mut rx = stream(p.clone(), opts, move || s2.load(Ordering::SeqCst));
        async fn next(
            rx: &mut mpsc::Receiver<Result<LogEntry, LogError>>,
        ) -> Option<Result<LogEntry, LogError>> {
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("an entry within 5 s")
        }
        assert_eq!(next(&mut rx).await.unwrap().unwrap().line, b"old\n");
        // Appended in two writes: a line is only emitted once complete.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        let l = line("stdout", S + 1, "new\n");
        f.write_all(&l.as_bytes()[..10]).unwrap();
        std::thread::sleep(Duration::from_millis(250));
        f.write_all(&l.as_bytes()[10..]).unwrap();
        assert_eq!(next(&mut rx).await.unwrap().unwrap().line, b"new\n");
        // Rotation: the old file gets one more line after the rename, then a new file appears.
        std::fs::rename(&p, rotated_name(&p, 1)).unwrap();
        f.write_all(line("stderr", S + 2, "late\n").as_bytes()).unwrap();
        drop(f);
        std::fs::write(&p, line("stdout", S + 3, "rotated\n")).unwrap();
        assert_eq!(next(&mut rx).await.unwrap().unwrap().line, b"late\n");
        assert_eq!(next(&mut rx).await.unwrap().unwrap().line, b"rotated\n");
        // Truncation (max-file 1) starts over.
        std::fs::write(&p, line("stdout", S + 4, "t\n")).unwrap();
        assert_eq!(next(&mut rx).await.unwrap().unwrap().line, b"t\n");
        // Stopped: what was written before is still read, then the stream ends.
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(line("stdout", S + 5, "last\n").as_bytes()).unwrap();
        stopped.store(true, Ordering::SeqCst);
        assert_eq!(next(&mut rx).await.unwrap().unwrap().line, b"last\n");
        assert!(next(&mut rx).await.is_none());
    }
}
