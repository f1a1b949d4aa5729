//! The monitor proper: creates the container with the runtime, then one `poll` loop over the container's
//! output, its stdin, the socket's clients and a signalfd for SIGCHLD, until the container is gone.
//!
//! Output is read as soon as it is there, logged, and queued to every attach client that asked for it; a
//! client whose queue would pass [`MAX_CLIENT_QUEUE`] loses that chunk instead of stalling the container.
//! Input from attach clients is queued (at most [`MAX_STDIN_QUEUE`]) and written when the container's stdin
//! can take it; while the queue is full the clients are not read.

use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::config::{CONSOLE_SOCKET_FILE, EXIT_FILE, MonitorConfig, PID_FILE, SOCKET_FILE};
use crate::exit::{ExitRecord, exit_code, write_atomic};
use crate::frame::{self, Stream};
use crate::log::{JsonLog, LineSplitter};
use crate::protocol::{self, MAX_REQUEST_LINE, Request};
use crate::runtime::{Runtime, error_message};
use crate::sys;

/// The most output queued for one attach client before chunks are dropped for it.
pub const MAX_CLIENT_QUEUE: usize = 1024 * 1024;
/// The most input queued for the container's stdin before the clients are no longer read.
pub const MAX_STDIN_QUEUE: usize = 64 * 1024;
/// The most clients served at once; more are closed at once.
pub const MAX_CLIENTS: usize = 256;
/// How long output is still read after the container's init exited (processes that kept its stdout).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long attach clients and waiters are given to take their last bytes before the monitor exits.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the runtime's console connection may take to arrive after a successful create.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the loop must be idle before the program pages it mapped are dropped again.
const IDLE_TRIM: Duration = Duration::from_secs(1);
/// One read from the container.
const READ_CHUNK: usize = 16 * 1024;

/// Where the container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Created, waiting for `start` (until the deadline).
    Created,
    /// Started.
    Running,
    /// The init is gone (or never ran): reading the rest of the output until the deadline.
    Exited,
    /// exit.json written, container deleted: giving clients their last bytes until the deadline.
    Finishing,
}

/// What a client connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Its request line has not arrived yet.
    Request,
    /// Attached.
    Attach { stdin: bool, stdout: bool, stderr: bool },
    /// Waiting for the exit.
    Waiter,
    /// Answered: closed once its queue is written.
    Closing,
}

#[derive(Debug)]
struct Client {
    sock: UnixStream,
    kind: Kind,
    request: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    read_eof: bool,
    dead: bool,
    dropped: u64,
}

impl Client {
    fn new(sock: UnixStream) -> Self {
        Self {
            sock,
            kind: Kind::Request,
            request: Vec::new(),
            out: Vec::new(),
            sent: 0,
            read_eof: false,
            dead: false,
            dropped: 0,
        }
    }

    fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Queues `bytes` whatever the queue holds (replies are small).
    fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    /// Queues one frame of output, unless the queue is full.
    fn queue_frame(&mut self, stream: Stream, data: &[u8]) {
        if self.pending() + frame::HEADER_LEN + data.len() > MAX_CLIENT_QUEUE {
            self.dropped += data.len() as u64;
            return;
        }
        self.out.extend_from_slice(&frame::header(stream, data.len()));
        self.out.extend_from_slice(data);
    }

    /// Writes what the socket takes.
    fn flush(&mut self) {
        while self.pending() > 0 {
            match rustix::net::send(&self.sock, &self.out[self.sent..], SendFlags::NOSIGNAL) {
                Ok(n) => self.sent += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => break,
                Err(_) => {
                    self.dead = true;
                    break;
                }
            }
        }
        if self.pending() == 0 {
            self.out.clear();
            self.sent = 0;
            if self.out.capacity() > 64 * 1024 {
                self.out = Vec::new();
            }
            if self.kind == Kind::Closing {
                self.dead = true;
            }
        } else if self.sent > MAX_CLIENT_QUEUE / 2 {
            self.out.drain(..self.sent);
            self.sent = 0;
        }
    }
}

/// One output of the container: a pipe (stdout or stderr) or the pty master (all output, as stdout).
#[derive(Debug)]
struct Output {
    fd: OwnedFd,
    stream: Stream,
}

/// Where the container's stdin goes.
#[derive(Debug)]
enum Stdin {
    /// Not open (no open_stdin, closed by stdin_once, or the container closed it).
    Closed,
    /// The write end of the stdin pipe.
    Pipe(OwnedFd),
    /// The pty master (the first output).
    Pty,
}

/// The monitor of one container.
#[derive(Debug)]
pub struct Monitor {
    config: MonitorConfig,
    state_dir: PathBuf,
    signals: OwnedFd,
    listener: UnixListener,
    pid: i32,
    phase: Phase,
    deadline: Option<Instant>,
    outputs: [Option<Output>; 2],
    /// The pty master, for resize (shared with `outputs[0]`).
    tty: bool,
    stdin: Stdin,
    stdin_queue: Vec<u8>,
    /// Close the stdin pipe once the queue is written (stdin_once).
    stdin_close: bool,
    clients: Vec<Client>,
    log: Option<JsonLog>,
    splitters: [LineSplitter; 2],
    exit: Option<ExitRecord>,
    deleted: bool,
    /// Drop the start-up pages at the end of this loop iteration (see [`sys::drop_startup_pages`]).
    trim: bool,
    /// Whether the pages were dropped since the last event (they are dropped again after [`IDLE_TRIM`]
    /// without events).
    trimmed: bool,
    /// m.sock has been removed (the last step before exiting).
    unlinked: bool,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("cannot {what}: {e}")
}

/// Binds a unix socket at `path` with mode 0600, replacing a stale socket file (but not a live one).
fn bind_socket(path: &Path) -> Result<UnixListener, String> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(format!("{} is served by another process", path.display()));
        }
        std::fs::remove_file(path).map_err(|e| io_err(&format!("remove {}", path.display()), e))?;
    }
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let listener = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = listener.map_err(|e| io_err(&format!("bind {}", path.display()), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| io_err(&format!("configure {}", path.display()), e))?;
    Ok(listener)
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| io_err("create a pipe", e))
}

/// Reads what a non-blocking descriptor holds now (at most 64 KiB).
fn read_available(fd: BorrowedFd<'_>) -> Vec<u8> {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while text.len() < 64 * 1024 {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
    text
}

/// Waits for the runtime's connection on the console socket and receives the pty master.
fn receive_console(listener: &UnixListener) -> Result<OwnedFd, String> {
    let deadline = Instant::now() + CONSOLE_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                conn.set_nonblocking(false)
                    .map_err(|e| io_err("configure the console connection", e))?;
                conn.set_read_timeout(Some(CONSOLE_TIMEOUT))
                    .map_err(|e| io_err("configure the console connection", e))?;
                return sys::recv_fd(conn.as_fd()).map_err(|e| e.to_string());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err("the runtime did not send the container's terminal".to_string());
                }
                let mut fds = [PollFd::new(listener, PollFlags::IN)];
                let timeout = rustix::time::Timespec::try_from(left).unwrap_or_default();
                let _ = rustix::event::poll(&mut fds, Some(&timeout));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("accept on the console socket", e)),
        }
    }
}

impl Monitor {
    /// Binds the socket, runs `runtime create` with the container's stdio, and returns the monitor of the
    /// created container; the error is the message for the report (the runtime's own on a failed create).
    /// `signals` is a signalfd for SIGCHLD.
    pub fn create(config: MonitorConfig, state_dir: PathBuf, signals: OwnedFd) -> Result<Self, String> {
        let log = match &config.log_path {
            Some(path) => Some(
                JsonLog::open(path, config.log_max_size, config.log_max_files).map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        let socket = state_dir.join(SOCKET_FILE);
        let listener = bind_socket(&socket)?;
        let result = Self::create_container(&config, &state_dir);
        let (pid, outputs, stdin) = match result {
            Ok(parts) => parts,
            Err(message) => {
                let _ = std::fs::remove_file(&socket);
                return Err(message);
            }
        };
        let deadline = Some(Instant::now() + config.start_timeout());
        Ok(Self {
            tty: config.tty,
            config,
            state_dir,
            signals,
            listener,
            pid,
            phase: Phase::Created,
            deadline,
            outputs,
            stdin,
            stdin_queue: Vec::new(),
            stdin_close: false,
            clients: Vec::new(),
            log,
            splitters: [LineSplitter::new(), LineSplitter::new()],
            exit: None,
            deleted: false,
            trim: true,
            trimmed: false,
            unlinked: false,
        })
    }

    /// Runs `runtime create`; returns the init's pid, the outputs and stdin.
    #[allow(clippy::type_complexity)]
    fn create_container(
        config: &MonitorConfig,
        state_dir: &Path,
    ) -> Result<(i32, [Option<Output>; 2], Stdin), String> {
        let runtime = Runtime::new(config);
        let pid_file = state_dir.join(PID_FILE);
        let _ = std::fs::remove_file(&pid_file);
        let console_path = state_dir.join(CONSOLE_SOCKET_FILE);
        // What the runtime gets, what the monitor keeps, and where the runtime's messages are read from.
        let console;
        let mut cmd;
        let (mut out_read, mut err_read, mut stdin_write) = (None, None, None);
        let messages: OwnedFd;
        if config.tty {
            console = Some(bind_socket(&console_path)?);
            cmd = runtime.create_command(&pid_file, Some(&console_path));
            let (r, w) = pipe()?;
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(w);
            messages = r;
        } else {
            console = None;
            cmd = runtime.create_command(&pid_file, None);
            if config.open_stdin {
                let (r, w) = pipe()?;
                cmd.stdin(r);
                stdin_write = Some(w);
            } else {
                cmd.stdin(Stdio::null());
            }
            let (r, w) = pipe()?;
            cmd.stdout(w);
            out_read = Some(r);
            let (r, w) = pipe()?;
            cmd.stderr(w);
            messages = r.try_clone().map_err(|e| io_err("duplicate a pipe", e))?;
            err_read = Some(r);
        }
        let spawned = cmd.spawn();
        // The container's ends of the pipes must not stay open here, or their EOF would never come.
        drop(cmd);
        let remove_console = || {
            if console.is_some() {
                let _ = std::fs::remove_file(&console_path);
            }
        };
        let mut child = spawned.map_err(|e| {
            remove_console();
            io_err(&format!("run {}", config.runtime.display()), e)
        })?;
        let status = child.wait().map_err(|e| {
            remove_console();
            io_err(&format!("wait for {} create", config.runtime.display()), e)
        })?;
        // Everything the runtime printed is in the pipe now; the container prints nothing before `start`.
        sys::set_nonblocking(&messages).map_err(|e| e.to_string())?;
        let printed = read_available(messages.as_fd());
        drop(messages);
        if !status.success() {
            remove_console();
            return Err(error_message(&config.runtime, "create", status, &printed));
        }
        // From here on the container exists: a failure deletes it.
        let fail = |message: String| {
            remove_console();
            let _ = runtime.delete_force();
            message
        };
        let pid = std::fs::read_to_string(&pid_file)
            .map_err(|e| io_err(&format!("read {}", pid_file.display()), e))
            .and_then(|text| {
                text.trim()
                    .parse::<i32>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("{} holds no pid: {text:?}", pid_file.display()))
            })
            .map_err(fail)?;
        let nonblocking = |fd: &OwnedFd| sys::set_nonblocking(fd).map_err(|e| fail(e.to_string()));
        if let Some(console) = &console {
            let master = receive_console(console).map_err(fail)?;
            remove_console();
            nonblocking(&master)?;
            let outputs = [
                Some(Output {
                    fd: master,
                    stream: Stream::Stdout,
                }),
                None,
            ];
            let stdin = if config.open_stdin {
                Stdin::Pty
            } else {
                Stdin::Closed
            };
            return Ok((pid, outputs, stdin));
        }
        let mut outputs = [None, None];
        for (slot, (fd, stream)) in outputs.iter_mut().zip([
            (out_read.take(), Stream::Stdout),
            (err_read.take(), Stream::Stderr),
        ]) {
            if let Some(fd) = fd {
                nonblocking(&fd)?;
                *slot = Some(Output { fd, stream });
            }
        }
        let stdin = match stdin_write.take() {
            Some(fd) => {
                nonblocking(&fd)?;
                Stdin::Pipe(fd)
            }
            None => Stdin::Closed,
        };
        Ok((pid, outputs, stdin))
    }

    /// The container init's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Serves until the container is gone; returns the monitor's exit code.
    pub fn run(&mut self) -> i32 {
        loop {
            if self.phase == Phase::Exited && self.outputs.iter().all(Option::is_none) {
                self.finish();
            }
            if self.phase == Phase::Finishing && self.clients.is_empty() {
                if self.unlinked {
                    break;
                }
                // No new connection can arrive once the socket file is gone; the ones already queued
                // are still answered (wait gets the record), so that nobody sees a reset connection.
                let _ = std::fs::remove_file(self.state_dir.join(SOCKET_FILE));
                self.unlinked = true;
                self.accept();
                continue;
            }
            let now = Instant::now();
            if let Some(deadline) = self.deadline
                && now >= deadline
            {
                match self.phase {
                    Phase::Created => self.start_timed_out(),
                    Phase::Exited => self.finish(),
                    Phase::Finishing => break,
                    Phase::Running => self.deadline = None,
                }
                continue;
            }
            let mut timeout = self.deadline.map(|d| d.saturating_duration_since(now));
            if !self.trimmed {
                timeout = Some(timeout.map_or(IDLE_TRIM, |t| t.min(IDLE_TRIM)));
            }
            self.poll_once(timeout);
        }
        if !self.unlinked {
            let _ = std::fs::remove_file(self.state_dir.join(SOCKET_FILE));
        }
        0
    }

    fn poll_once(&mut self, timeout: Option<Duration>) {
        #[derive(Clone, Copy)]
        enum Token {
            Signals,
            Listener,
            Output(usize),
            StdinPipe,
            Client(usize),
        }
        let stdin_wants = !self.stdin_queue.is_empty();
        let stdin_room = self.stdin_queue.len() < MAX_STDIN_QUEUE;
        let mut tokens = Vec::with_capacity(4 + self.clients.len());
        let mut fds = Vec::with_capacity(4 + self.clients.len());
        tokens.push(Token::Signals);
        fds.push(PollFd::new(&self.signals, PollFlags::IN));
        tokens.push(Token::Listener);
        fds.push(PollFd::new(&self.listener, PollFlags::IN));
        for (i, output) in self.outputs.iter().enumerate() {
            if let Some(output) = output {
                let mut flags = PollFlags::IN;
                if i == 0 && matches!(self.stdin, Stdin::Pty) && stdin_wants {
                    flags |= PollFlags::OUT;
                }
                tokens.push(Token::Output(i));
                fds.push(PollFd::new(&output.fd, flags));
            }
        }
        if let Stdin::Pipe(fd) = &self.stdin
            && stdin_wants
        {
            tokens.push(Token::StdinPipe);
            fds.push(PollFd::new(fd, PollFlags::OUT));
        }
        for (i, client) in self.clients.iter().enumerate() {
            let mut flags = PollFlags::empty();
            let reads = match client.kind {
                Kind::Request => true,
                Kind::Attach { .. } => !client.read_eof && stdin_room,
                Kind::Waiter => !client.read_eof,
                Kind::Closing => false,
            };
            if reads {
                flags |= PollFlags::IN;
            }
            if client.pending() > 0 {
                flags |= PollFlags::OUT;
            }
            tokens.push(Token::Client(i));
            fds.push(PollFd::new(&client.sock, flags));
        }
        let timeout = timeout.map(|t| rustix::time::Timespec::try_from(t).unwrap_or_default());
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => return,
            Err(_) => {
                // Nothing a retry would fix is expected here; do not spin.
                std::thread::sleep(Duration::from_millis(10));
                return;
            }
        }
        let ready: Vec<(Token, PollFlags)> = tokens
            .into_iter()
            .zip(fds.iter().map(PollFd::revents))
            .filter(|(_, r)| !r.is_empty())
            .collect();
        drop(fds);
        if ready.is_empty() {
            if !self.trimmed {
                // Idle: what the last burst of work mapped is not needed while nothing happens.
                self.trimmed = true;
                sys::drop_startup_pages();
            }
            return;
        }
        self.trimmed = false;
        for (token, revents) in ready {
            match token {
                Token::Output(i) => {
                    if revents.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                        self.read_output(i);
                    }
                    if revents.contains(PollFlags::OUT) {
                        self.write_stdin();
                    }
                }
                Token::StdinPipe => self.write_stdin(),
                Token::Signals => self.reap(),
                Token::Listener => self.accept(),
                Token::Client(i) => {
                    if revents.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                        self.read_client(i);
                    }
                    // Both directions closed (or broken): nobody reads what would be sent; poll would
                    // report it again at once.
                    if revents.intersects(PollFlags::HUP | PollFlags::ERR) {
                        self.hang_up(i);
                    }
                }
            }
        }
        for client in &mut self.clients {
            if client.pending() > 0 && !client.dead {
                client.flush();
            }
        }
        if !self.stdin_queue.is_empty() || self.stdin_close {
            self.write_stdin();
        }
        self.remove_dead_clients();
        if self.trim {
            self.trim = false;
            sys::drop_startup_pages();
        }
    }

    /// Reads what output `i` holds; at EOF (EIO for a pty) it is closed.
    fn read_output(&mut self, i: usize) {
        let mut buf = [0u8; READ_CHUNK];
        for _ in 0..4 {
            let Some(output) = &self.outputs[i] else {
                return;
            };
            let stream = output.stream;
            match rustix::io::read(&output.fd, &mut buf) {
                Ok(0) => return self.close_output(i),
                Ok(n) => self.output(i, stream, &buf[..n]),
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return,
                // EIO: the pty's slave has no holder left; anything else ends the stream too.
                Err(_) => return self.close_output(i),
            }
        }
    }

    /// Logs a chunk of output and queues it to the attach clients that asked for its stream.
    fn output(&mut self, i: usize, stream: Stream, data: &[u8]) {
        if let Some(log) = &mut self.log {
            let time = crate::time::now();
            let mut failed = false;
            self.splitters[i].push(data, |entry| {
                if !failed && log.write_entry(stream, entry, &time).is_err() {
                    failed = true;
                }
            });
            if failed {
                // A full disk must not stop the container: logging ends, attach goes on.
                self.log = None;
            }
        }
        for client in &mut self.clients {
            if let Kind::Attach { stdout, stderr, .. } = client.kind {
                let wanted = match stream {
                    Stream::Stdout => stdout,
                    Stream::Stderr => stderr,
                };
                if wanted {
                    client.queue_frame(stream, data);
                }
            }
        }
    }

    fn close_output(&mut self, i: usize) {
        if let Some(output) = self.outputs[i].take() {
            if let Some(log) = &mut self.log {
                let time = crate::time::now();
                self.splitters[i].finish(|entry| {
                    let _ = log.write_entry(output.stream, entry, &time);
                });
            }
            if i == 0 && matches!(self.stdin, Stdin::Pty) {
                self.stdin = Stdin::Closed;
                self.stdin_queue = Vec::new();
            }
        }
    }

    /// Writes queued input to the container's stdin; closes the pipe when stdin_once asked for it.
    fn write_stdin(&mut self) {
        loop {
            if self.stdin_queue.is_empty() {
                break;
            }
            let fd = match &self.stdin {
                Stdin::Closed => {
                    self.stdin_queue = Vec::new();
                    break;
                }
                Stdin::Pipe(fd) => fd.as_fd(),
                Stdin::Pty => match &self.outputs[0] {
                    Some(output) => output.fd.as_fd(),
                    None => {
                        self.stdin = Stdin::Closed;
                        continue;
                    }
                },
            };
            match rustix::io::write(fd, &self.stdin_queue) {
                Ok(n) => {
                    self.stdin_queue.drain(..n);
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => break,
                Err(_) => {
                    // The container closed its stdin.
                    if matches!(self.stdin, Stdin::Pipe(_)) {
                        self.stdin = Stdin::Closed;
                    }
                    self.stdin_queue = Vec::new();
                    break;
                }
            }
        }
        if self.stdin_queue.capacity() > MAX_STDIN_QUEUE && self.stdin_queue.is_empty() {
            self.stdin_queue = Vec::new();
        }
        if self.stdin_close && self.stdin_queue.is_empty() {
            self.stdin_close = false;
            if matches!(self.stdin, Stdin::Pipe(_)) {
                self.stdin = Stdin::Closed;
            }
        }
    }

    /// The end of an attach client's input: with stdin_once, the container's stdin ends too.
    fn stdin_ended(&mut self) {
        if !self.config.stdin_once {
            return;
        }
        match self.stdin {
            Stdin::Pipe(_) => self.stdin_close = true,
            // As dockerd: a terminal's input is never closed when a client goes (a detach, ctrl-p ctrl-q, must
            // leave the shell running); only a pipe's is.
            Stdin::Pty => {}
            Stdin::Closed => {}
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, _)) => {
                    if self.clients.len() >= MAX_CLIENTS || sock.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.clients.push(Client::new(sock));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn read_client(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        loop {
            let client = &mut self.clients[i];
            if client.dead || client.read_eof {
                return;
            }
            let attach_stdin = matches!(client.kind, Kind::Attach { stdin: true, .. })
                && !matches!(self.stdin, Stdin::Closed);
            let room = if attach_stdin {
                (MAX_STDIN_QUEUE.saturating_sub(self.stdin_queue.len())).min(buf.len())
            } else {
                buf.len()
            };
            if room == 0 {
                return;
            }
            match rustix::io::read(&client.sock, &mut buf[..room]) {
                Ok(0) => {
                    client.read_eof = true;
                    match client.kind {
                        Kind::Request => client.dead = true,
                        Kind::Attach { stdin: true, .. } => self.stdin_ended(),
                        _ => {}
                    }
                    return;
                }
                Ok(n) => match client.kind {
                    Kind::Request => {
                        client.request.extend_from_slice(&buf[..n]);
                        if let Some(end) = client.request.iter().position(|&b| b == b'\n') {
                            let request = std::mem::take(&mut client.request);
                            self.handle_request(i, &request[..end], &request[end + 1..]);
                        } else if client.request.len() > MAX_REQUEST_LINE {
                            client.queue(&protocol::error_reply("the request line is too long"));
                            client.kind = Kind::Closing;
                            return;
                        }
                    }
                    Kind::Attach { .. } if attach_stdin => {
                        self.stdin_queue.extend_from_slice(&buf[..n]);
                    }
                    // Input nobody asked for is read and dropped, so that EOF and hang-ups are seen.
                    _ => {}
                },
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return,
                Err(_) => {
                    client.dead = true;
                    return;
                }
            }
        }
    }

    /// The client hung up: its stdin (if any) ends and it is removed.
    fn hang_up(&mut self, i: usize) {
        let client = &mut self.clients[i];
        if client.dead {
            return;
        }
        client.dead = true;
        if matches!(client.kind, Kind::Attach { stdin: true, .. }) && !client.read_eof {
            client.read_eof = true;
            self.stdin_ended();
        }
    }

    fn remove_dead_clients(&mut self) {
        let mut i = 0;
        while i < self.clients.len() {
            if self.clients[i].dead {
                let client = self.clients.swap_remove(i);
                if matches!(client.kind, Kind::Attach { stdin: true, .. }) && !client.read_eof {
                    self.stdin_ended();
                }
            } else {
                i += 1;
            }
        }
    }

    fn status_reply(&self) -> Vec<u8> {
        let state = match self.phase {
            Phase::Created => "created",
            Phase::Running => "running",
            Phase::Exited | Phase::Finishing => "exited",
        };
        protocol::status_reply(self.pid, state, self.exit.as_ref().map(|e| e.exit_code))
    }

    fn wait_reply(&self) -> Vec<u8> {
        match &self.exit {
            Some(exit) => protocol::wait_reply(exit),
            None => protocol::error_reply("the container has not exited"),
        }
    }

    fn handle_request(&mut self, i: usize, line: &[u8], rest: &[u8]) {
        let request = match protocol::parse(line) {
            Ok(request) => request,
            Err(message) => {
                let client = &mut self.clients[i];
                client.queue(&protocol::error_reply(&message));
                client.kind = Kind::Closing;
                return;
            }
        };
        let (reply, kind) = match request {
            Request::Start => (self.start(), Kind::Closing),
            Request::Status => (self.status_reply(), Kind::Closing),
            Request::Resize { height, width } => (self.resize(height, width), Kind::Closing),
            Request::Wait if self.phase == Phase::Finishing => (self.wait_reply(), Kind::Closing),
            Request::Wait => (Vec::new(), Kind::Waiter),
            Request::Attach { .. } if self.phase == Phase::Finishing => (protocol::ok_reply(), Kind::Closing),
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => {
                let stdin = stdin && !matches!(self.stdin, Stdin::Closed);
                if stdin && !rest.is_empty() {
                    self.stdin_queue.extend_from_slice(rest);
                }
                (
                    protocol::ok_reply(),
                    Kind::Attach {
                        stdin,
                        stdout,
                        stderr,
                    },
                )
            }
        };
        let client = &mut self.clients[i];
        client.queue(&reply);
        client.kind = kind;
    }

    fn resize(&self, height: u16, width: u16) -> Vec<u8> {
        let master = match (&self.outputs[0], self.tty) {
            (Some(output), true) => &output.fd,
            (_, false) => return protocol::error_reply("the container has no terminal"),
            (None, true) => return protocol::error_reply("the container's terminal is closed"),
        };
        let size = rustix::termios::Winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        match rustix::termios::tcsetwinsize(master, size) {
            Ok(()) => protocol::ok_reply(),
            Err(e) => protocol::error_reply(&format!("cannot resize the terminal: {e}")),
        }
    }

    fn start(&mut self) -> Vec<u8> {
        match self.phase {
            Phase::Created => {}
            Phase::Running => return protocol::error_reply("the container is already running"),
            Phase::Exited | Phase::Finishing => {
                return protocol::error_reply("the container has exited");
            }
        }
        match Runtime::new(&self.config).start() {
            Ok(()) => {
                self.phase = Phase::Running;
                self.deadline = None;
                // Running the runtime mapped code the steady state does not need.
                self.trim = true;
                protocol::ok_reply()
            }
            Err(message) => {
                self.fail(message.clone());
                protocol::error_reply(&message)
            }
        }
    }

    fn start_timed_out(&mut self) {
        let timeout = self.config.start_timeout();
        self.fail(format!(
            "the container was not started within {} ms and was deleted",
            timeout.as_millis()
        ));
    }

    /// The container will not run: delete it and record why.
    fn fail(&mut self, message: String) {
        let _ = Runtime::new(&self.config).delete_force();
        self.deleted = true;
        self.enter_exited(ExitRecord {
            exit_code: -1,
            oom_killed: false,
            finished_at: crate::time::now(),
            error: Some(message),
        });
    }

    fn enter_exited(&mut self, record: ExitRecord) {
        if self.exit.is_none() {
            self.exit = Some(record);
        }
        self.phase = Phase::Exited;
        self.deadline = Some(Instant::now() + DRAIN_TIMEOUT);
    }

    /// Reaps every child that has ended; the init's end is the container's exit.
    fn reap(&mut self) {
        sys::drain_signalfd(self.signals.as_fd());
        loop {
            match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    if pid.as_raw_nonzero().get() == self.pid && (status.exited() || status.signaled()) {
                        let oom_killed =
                            berth_cgroups::Cgroup::new(self.config.cgroups_path.as_deref(), &self.config.id)
                                .and_then(|cgroup| cgroup.oom_kill_count())
                                .is_ok_and(|count| count > 0);
                        self.enter_exited(ExitRecord {
                            exit_code: exit_code(status),
                            oom_killed,
                            finished_at: crate::time::now(),
                            error: None,
                        });
                    }
                }
                Ok(None) => return,
                Err(Errno::INTR) => {}
                Err(_) => return,
            }
        }
    }

    /// The output is read: write exit.json, delete the container, answer the waiters, close the attach
    /// connections (once their queues are written, within [`FLUSH_TIMEOUT`]).
    fn finish(&mut self) {
        for i in 0..self.outputs.len() {
            self.close_output(i);
        }
        self.stdin = Stdin::Closed;
        self.stdin_queue = Vec::new();
        let record = self.exit.clone().unwrap_or_else(|| ExitRecord {
            exit_code: -1,
            oom_killed: false,
            finished_at: crate::time::now(),
            error: Some("the monitor lost track of the container".to_string()),
        });
        let _ = write_atomic(&self.state_dir.join(EXIT_FILE), &record);
        if !self.deleted {
            let _ = Runtime::new(&self.config).delete_force();
            self.deleted = true;
        }
        self.phase = Phase::Finishing;
        self.deadline = Some(Instant::now() + FLUSH_TIMEOUT);
        let wait = self.wait_reply();
        for client in &mut self.clients {
            match client.kind {
                Kind::Waiter => {
                    client.queue(&wait);
                    client.kind = Kind::Closing;
                }
                Kind::Attach { .. } => client.kind = Kind::Closing,
                Kind::Request | Kind::Closing => {}
            }
            client.flush();
        }
        self.remove_dead_clients();
    }
}
