//! `attach`, and the hijacked streams `run`, `start -a` and `exec` share: the HTTP upgrade of
//! `POST /containers/{id}/attach` or `POST /exec/{id}/start` (see [`Client::upgrade`]), docker's 8-byte
//! multiplexed frames without a TTY (raw bytes with one), the local terminal in raw mode while a TTY is attached,
//! the detach keys (ctrl-p ctrl-q by default) read from our stdin, the terminal size sent on start and on
//! SIGWINCH (`POST .../resize`), and the signals we receive forwarded to the container (`POST .../kill`) when it has
//! no TTY.
//!
//! Our stdin is read by a plain thread (not tokio's blocking pool, whose pending read would keep the process from
//! exiting) and handed over through a channel.

use std::io::{IsTerminal as _, Write as _};
use std::os::fd::AsFd as _;

use clap::Args;
use hyper::Method;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use crate::client::{self, Client, ClientError};
use crate::{CmdResult, Ctx, Failure};

/// docker's default detach sequence: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

/// `attach`.
#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Container.
    pub container: String,
    /// Do not attach STDIN.
    #[arg(long = "no-stdin")]
    pub no_stdin: bool,
    /// Proxy all received signals to the process.
    #[arg(long = "sig-proxy", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub sig_proxy: bool,
    /// Override the key sequence for detaching a container.
    #[arg(long = "detach-keys")]
    pub detach_keys: Option<String>,
}

/// Parses docker's detach-keys syntax: a comma-separated list of `ctrl-<char>` or single characters
/// (`ctrl-p,ctrl-q`, `ctrl-a,x`).
pub fn parse_detach_keys(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for key in s.split(',') {
        let lower = key.to_lowercase();
        if let Some(c) = lower.strip_prefix("ctrl-") {
            let b = match c.as_bytes() {
                [b @ b'a'..=b'z'] => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => return Err(format!("Unknown character: '{c}'")),
            };
            out.push(b);
        } else if key.len() == 1 {
            out.push(key.as_bytes()[0]);
        } else {
            return Err(format!("Unknown character: '{key}'"));
        }
    }
    if out.is_empty() {
        return Err("no detach keys given".to_string());
    }
    Ok(out)
}

/// The detach keys for `--detach-keys` (or the default); an invalid value falls back to the default, as docker.
pub fn detach_keys(flag: Option<&str>) -> Vec<u8> {
    flag.and_then(|s| parse_detach_keys(s).ok())
        .unwrap_or_else(|| DEFAULT_DETACH_KEYS.to_vec())
}

/// One frame of docker's multiplexed stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// 0 stdin, 1 stdout, 2 stderr, 3 a daemon error.
    pub stream: u8,
    /// The payload.
    pub data: &'a [u8],
}

/// Splits docker's multiplexed stream (`[stream, 0, 0, 0, len: u32 BE]` then `len` bytes) into frames, across
/// reads of any size.
#[derive(Debug, Default)]
pub struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    /// Adds `data` and hands every complete frame to `f`; a partial frame stays buffered.
    pub fn push(&mut self, data: &[u8], mut f: impl FnMut(Frame<'_>)) {
        self.buf.extend_from_slice(data);
        let mut at = 0;
        while self.buf.len() - at >= 8 {
            let h = &self.buf[at..at + 8];
            let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
            if self.buf.len() - at - 8 < len {
                break;
            }
            f(Frame {
                stream: h[0],
                data: &self.buf[at + 8..at + 8 + len],
            });
            at += 8 + len;
        }
        self.buf.drain(..at);
    }

    /// Bytes of an incomplete frame left at the end of the stream.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// Watches the input for the detach sequence, as docker's escape proxy: bytes that could start the sequence are
/// held back until it either completes (detach; they are dropped) or stops matching (they are sent).
#[derive(Debug)]
pub struct EscapeProxy {
    keys: Vec<u8>,
    matched: usize,
}

impl EscapeProxy {
    /// A proxy for `keys` (empty: never detaches).
    pub fn new(keys: Vec<u8>) -> Self {
        Self { keys, matched: 0 }
    }

    /// Filters `input`: the bytes to forward, and whether the detach sequence was completed.
    pub fn feed(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        if self.keys.is_empty() {
            out.extend_from_slice(input);
            return (out, false);
        }
        for &b in input {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
                continue;
            }
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    self.matched = 0;
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

/// The local terminal in raw mode, restored on drop.
pub struct RawTerminal {
    orig: rustix::termios::Termios,
}

impl RawTerminal {
    /// Puts stdin's terminal in raw mode; `None` when stdin is not a terminal.
    pub fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let orig = rustix::termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = orig.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(stdin.as_fd(), rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(Self { orig })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin().as_fd(),
            rustix::termios::OptionalActions::Now,
            &self.orig,
        );
    }
}

/// Reads our stdin on a thread of its own; the channel closes at EOF or on a read error.
pub fn stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rustix::io::read(stdin.as_fd(), &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// A hijacked connection.
pub struct Hijacked {
    io: TokioIo<Upgraded>,
    multiplexed: bool,
}

impl std::fmt::Debug for Hijacked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hijacked")
            .field("multiplexed", &self.multiplexed)
            .finish()
    }
}

/// Upgrades `path` (attach or exec start). The stream is multiplexed when the daemon says so in its content type,
/// otherwise when the container (or exec) has no TTY.
pub async fn hijack(
    c: &Client,
    path: &str,
    body: client::ReqBody,
    tty: bool,
) -> Result<Hijacked, ClientError> {
    let (content_type, io) = c.upgrade(Method::POST, path, body).await?;
    // API 1.42+ daemons say which it is; older ones call both "raw-stream".
    let multiplexed = content_type.as_deref() == Some("application/vnd.docker.multiplexed-stream") || !tty;
    Ok(Hijacked { io, multiplexed })
}

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The daemon closed the output (the container or exec ended, or the daemon detached us).
    Output,
    /// The user typed the detach keys.
    Detached,
}

/// What to do with our side of a hijacked stream.
#[derive(Debug)]
pub struct StreamOpts {
    /// Send our stdin.
    pub stdin: bool,
    /// The container has a TTY: the terminal goes raw and the detach keys apply.
    pub tty: bool,
    /// The detach keys (only with a TTY).
    pub detach_keys: Vec<u8>,
    /// Whether any output stream was asked for (without one, the end of stdin ends the stream).
    pub output: bool,
}

/// Writes `data` to our stdout, or stderr for stream 2, flushed at once.
pub fn write_out(stream: u8, data: &[u8]) -> std::io::Result<()> {
    if stream == 2 {
        let mut e = std::io::stderr().lock();
        e.write_all(data)?;
        e.flush()
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(data)?;
        o.flush()
    }
}

async fn pump_output(
    mut r: tokio::io::ReadHalf<TokioIo<Upgraded>>,
    multiplexed: bool,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut demux = Demux::default();
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => {
                return Err(Failure::from(format!(
                    "error reading the container's output: {e}"
                )));
            }
        };
        if !multiplexed {
            write_out(1, &buf[..n])?;
            continue;
        }
        let mut err = None;
        demux.push(&buf[..n], |f| {
            if err.is_some() {
                return;
            }
            match f.stream {
                3 => {
                    err = Some(Failure::from(format!(
                        "Error from daemon in stream: {}",
                        String::from_utf8_lossy(f.data)
                    )))
                }
                s => {
                    if let Err(e) = write_out(s, f.data) {
                        err = Some(Failure::from(e));
                    }
                }
            }
        });
        if let Some(e) = err {
            return Err(e);
        }
    }
    if demux.pending() > 0 {
        return Err(Failure::from("the daemon's stream ended inside a frame"));
    }
    Ok(())
}

async fn pump_input(
    mut w: tokio::io::WriteHalf<TokioIo<Upgraded>>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut proxy: EscapeProxy,
) -> Ended {
    while let Some(chunk) = rx.recv().await {
        let (data, detached) = proxy.feed(&chunk);
        if !data.is_empty() && w.write_all(&data).await.is_err() {
            break;
        }
        if detached {
            return Ended::Detached;
        }
        let _ = w.flush().await;
    }
    // EOF on our stdin: close our write side so the daemon can close the container's stdin.
    let _ = w.shutdown().await;
    Ended::Output
}

/// Copies the hijacked stream to our stdout/stderr and our stdin to it until the output ends or the user detaches.
pub async fn stream(h: Hijacked, opts: StreamOpts) -> Result<Ended, Failure> {
    let _raw = if opts.tty && opts.stdin {
        RawTerminal::enter()
    } else {
        None
    };
    let (r, w) = tokio::io::split(h.io);
    let out = pump_output(r, h.multiplexed);
    tokio::pin!(out);
    if !opts.stdin {
        drop(w);
        out.await?;
        return Ok(Ended::Output);
    }
    let keys = if opts.tty { opts.detach_keys } else { Vec::new() };
    let inp = pump_input(w, stdin_reader(), EscapeProxy::new(keys));
    tokio::pin!(inp);
    let mut input_done = false;
    loop {
        tokio::select! {
            r = &mut out => {
                r?;
                return Ok(Ended::Output);
            }
            e = &mut inp, if !input_done => {
                if e == Ended::Detached {
                    return Ok(Ended::Detached);
                }
                input_done = true;
                if !opts.output {
                    return Ok(Ended::Output);
                }
            }
        }
    }
}

/// The size of our terminal (stdout), as (height, width).
pub fn terminal_size() -> Option<(u16, u16)> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    let ws = rustix::termios::tcgetwinsize(out.as_fd()).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

async fn resize(c: &Client, prefix: &str, h: u16, w: u16) -> Result<(), ClientError> {
    let path = client::query(
        &format!("{prefix}/resize"),
        &[("h", &h.to_string()), ("w", &w.to_string())],
    );
    c.call(Method::POST, &path, &[], client::empty())
        .await
        .map(|_| ())
}

/// Sends the terminal size to `prefix` (`/containers/{id}` or `/exec/{id}`) now (retrying briefly, as docker:
/// the process may not be ready yet) and on every SIGWINCH until the task is dropped.
pub fn spawn_resizer(c: Client, prefix: String) -> Option<tokio::task::JoinHandle<()>> {
    terminal_size()?;
    Some(tokio::spawn(async move {
        if let Some((h, w)) = terminal_size() {
            for attempt in 0..5u64 {
                if resize(&c, &prefix, h, w).await.is_ok() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10 * (attempt + 1))).await;
            }
        }
        let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((h, w)) = terminal_size() {
                let _ = resize(&c, &prefix, h, w).await;
            }
        }
    }))
}

/// Forwards the signals a user sends to the CLI (INT, TERM, HUP, QUIT, USR1, USR2, ALRM) to the container, as
/// docker's `--sig-proxy`.
pub fn spawn_signal_proxy(c: Client, id: String) -> tokio::task::JoinHandle<()> {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let kinds = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
            (SignalKind::quit(), "SIGQUIT"),
            (SignalKind::user_defined1(), "SIGUSR1"),
            (SignalKind::user_defined2(), "SIGUSR2"),
            (SignalKind::alarm(), "SIGALRM"),
        ];
        let (tx, mut rx) = mpsc::unbounded_channel::<&'static str>();
        for (kind, name) in kinds {
            let Ok(mut s) = signal(kind) else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(name).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        while let Some(name) = rx.recv().await {
            let path = client::query(&format!("/containers/{id}/kill"), &[("signal", name)]);
            let _ = c.call(Method::POST, &path, &[], client::empty()).await;
        }
    })
}

/// Waits for `condition` on a container (docker's `waitExitOrRemoved`): the request is sent, and its response
/// headers awaited (the daemon sends them at once, registering the wait before we start the container), then the
/// returned task reads the exit status. A daemon that holds the headers back is given a second before we go on.
pub async fn wait_for(
    c: &Client,
    id: &str,
    condition: &str,
) -> tokio::task::JoinHandle<Result<i64, Failure>> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
    let c = c.clone();
    let path = client::query(&format!("/containers/{id}/wait"), &[("condition", condition)]);
    let task = tokio::spawn(async move {
        let resp = c.call(Method::POST, &path, &[], client::empty()).await;
        let _ = ready_tx.send(());
        let v = client::body_json(resp?).await?;
        exit_status(&v)
    });
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ready_rx).await;
    task
}

/// The status of a wait response (`{"StatusCode": N, "Error": {"Message": ...}}`).
pub fn exit_status(v: &serde_json::Value) -> Result<i64, Failure> {
    if let Some(m) = v
        .get("Error")
        .and_then(|e| e.get("Message"))
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty())
    {
        return Err(Failure::from(format!("Error waiting for container: {m}")));
    }
    Ok(v.get("StatusCode")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0))
}

/// An exit status as the CLI's own exit code (0 is success).
pub fn status_failure(status: i64) -> CmdResult {
    if status == 0 {
        return Ok(());
    }
    Err(Failure {
        message: String::new(),
        code: u8::try_from(status.rem_euclid(256)).unwrap_or(1),
    })
}

/// The path of `POST /containers/{id}/attach` for a stream of the chosen standard streams, with the detach keys
/// (the daemon's default when `None`).
pub fn attach_path(id: &str, stdin: bool, stdout: bool, stderr: bool, detach_keys: Option<&str>) -> String {
    let on = |b: bool| if b { "1" } else { "" };
    client::query(
        &format!("/containers/{id}/attach"),
        &[
            ("stream", "1"),
            ("stdin", on(stdin)),
            ("stdout", on(stdout)),
            ("stderr", on(stderr)),
            ("detachKeys", detach_keys.unwrap_or("")),
        ],
    )
}

/// The end of an attached session (`attach`, `start -a`) once its stream `ended`: the terminal resizer and the
/// signal proxy stop; a detach leaves the container running, otherwise its exit status becomes the CLI's.
pub async fn finish(
    ended: Result<Ended, Failure>,
    resizer: Option<tokio::task::JoinHandle<()>>,
    proxy: Option<tokio::task::JoinHandle<()>>,
    wait: tokio::task::JoinHandle<Result<i64, Failure>>,
) -> CmdResult {
    if let Some(r) = resizer {
        r.abort();
    }
    if let Some(p) = proxy {
        p.abort();
    }
    if ended? == Ended::Detached {
        wait.abort();
        return Ok(());
    }
    let status = wait
        .await
        .map_err(|e| Failure::from(format!("waiting for the container failed: {e}")))??;
    status_failure(status)
}

/// `attach`.
pub async fn attach(ctx: &Ctx, a: AttachArgs) -> CmdResult {
    let c = ctx.client().await?;
    let info = c.get_json(&format!("/containers/{}/json", a.container)).await?;
    let state = info.get("State").cloned().unwrap_or_default();
    let flag = |k: &str| state.get(k).and_then(serde_json::Value::as_bool).unwrap_or(false);
    if !flag("Running") {
        return Err(Failure::from(
            "You cannot attach to a stopped container, start it first",
        ));
    }
    if flag("Paused") {
        return Err(Failure::from(
            "You cannot attach to a paused container, unpause it first",
        ));
    }
    if flag("Restarting") {
        return Err(Failure::from(
            "You cannot attach to a restarting container, wait until it is running",
        ));
    }
    let id = info
        .get("Id")
        .and_then(|x| x.as_str())
        .unwrap_or(&a.container)
        .to_string();
    let config = info.get("Config").cloned().unwrap_or_default();
    let cflag = |k: &str| {
        config
            .get(k)
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    let tty = cflag("Tty");
    let stdin = !a.no_stdin && cflag("OpenStdin");
    if stdin && tty && !std::io::stdin().is_terminal() {
        return Err(Failure::from("the input device is not a TTY"));
    }
    let path = attach_path(&id, stdin, true, true, a.detach_keys.as_deref());
    let wait = wait_for(&c, &id, "not-running").await;
    let h = hijack(&c, &path, client::empty(), tty).await?;
    let resizer = if tty {
        spawn_resizer(c.clone(), format!("/containers/{id}"))
    } else {
        None
    };
    let proxy = (!tty && a.sig_proxy).then(|| spawn_signal_proxy(c.clone(), id.clone()));
    let ended = stream(
        h,
        StreamOpts {
            stdin,
            tty,
            detach_keys: detach_keys(a.detach_keys.as_deref()),
            output: true,
        },
    )
    .await;
    finish(ended, resizer, proxy, wait).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
        let mut v = vec![stream, 0, 0, 0];
        v.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn demux_splits_frames_across_reads() {
        let mut all = frame(1, b"hello\n");
        all.extend(frame(2, b"oops"));
        all.extend(frame(1, b""));
        all.extend(frame(1, &[b'x'; 70_000]));
        // Feed in every possible chunking of a small step, then a byte at a time.
        for step in [1usize, 3, 7, 8, 9, 4096, all.len()] {
            let mut d = Demux::default();
            let mut got: Vec<(u8, Vec<u8>)> = Vec::new();
            for chunk in all.chunks(step) {
                d.push(chunk, |f| got.push((f.stream, f.data.to_vec())));
            }
            assert_eq!(d.pending(), 0, "step {step}");
            assert_eq!(got.len(), 4, "step {step}");
            assert_eq!(got[0], (1, b"hello\n".to_vec()));
            assert_eq!(got[1], (2, b"oops".to_vec()));
            assert_eq!(got[2], (1, Vec::new()));
            assert_eq!(got[3].1.len(), 70_000);
        }
        let mut d = Demux::default();
        let mut n = 0;
        d.push(&frame(1, b"abc")[..9], |_| n += 1);
        assert_eq!((n, d.pending()), (0, 9));
    }

    #[test]
    fn detach_keys_parse_and_match() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![0x10, 0x11]);
        assert_eq!(parse_detach_keys("ctrl-a,x,ctrl-@").unwrap(), vec![1, b'x', 0]);
        assert!(parse_detach_keys("ctrl-1").is_err());
        assert!(parse_detach_keys("abc").is_err());
        assert_eq!(detach_keys(Some("nonsense")), DEFAULT_DETACH_KEYS.to_vec());

        let mut p = EscapeProxy::new(DEFAULT_DETACH_KEYS.to_vec());
        assert_eq!(p.feed(b"ls\r"), (b"ls\r".to_vec(), false));
        // ctrl-p then something else: both go through.
        assert_eq!(p.feed(&[0x10]), (Vec::new(), false));
        assert_eq!(p.feed(b"a"), (vec![0x10, b'a'], false));
        // ctrl-p ctrl-p ctrl-q: the first ctrl-p is sent, then detach.
        assert_eq!(p.feed(&[0x10, 0x10, 0x11]), (vec![0x10], true));
        // Split across reads.
        assert_eq!(p.feed(b"x\x10"), (b"x".to_vec(), false));
        assert_eq!(p.feed(b"\x11"), (Vec::new(), true));
        let mut none = EscapeProxy::new(Vec::new());
        assert_eq!(none.feed(&[0x10, 0x11]), (vec![0x10, 0x11], false));
    }

    #[test]
    fn wait_status() {
        assert_eq!(exit_status(&serde_json::json!({"StatusCode": 3})).unwrap(), 3);
        assert_eq!(
            exit_status(&serde_json::json!({"StatusCode": 0, "Error": {"Message": ""}})).unwrap(),
            0
        );
        assert!(exit_status(&serde_json::json!({"StatusCode": 0, "Error": {"Message": "x"}})).is_err());
        assert!(status_failure(0).is_ok());
        assert_eq!(status_failure(137).unwrap_err().code, 137);
        assert_eq!(status_failure(256 + 3).unwrap_err().code, 3);
    }
}
