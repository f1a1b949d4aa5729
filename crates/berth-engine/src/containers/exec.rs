//! `docker exec`: an exec is created (checked, remembered), started (`berth-runtime exec --process` with pipes,
//! or with a pty received on a console socket), resized and inspected. Execs live in the daemon's memory, as
//! dockerd's; the process is a child of the daemon, which records its exit code.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ProcessConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{ContainerError, ContainerService, Result, Status, names, spec};

/// One exec.
#[derive(Debug)]
struct Exec {
    id: String,
    container: String,
    config: ExecConfig,
    state: Mutex<ExecState>,
}

#[derive(Debug, Default)]
struct ExecState {
    started: bool,
    running: bool,
    exit_code: Option<i64>,
    pid: i64,
    /// The pty master, for resize.
    master: Option<Arc<OwnedFd>>,
}

/// The execs of every container.
#[derive(Debug, Default)]
pub struct ExecService {
    execs: Mutex<HashMap<String, Arc<Exec>>>,
}

impl ExecService {
    fn get(&self, id: &str) -> Result<Arc<Exec>> {
        self.execs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| ContainerError::NotFound(format!("exec instance {id}")))
    }

    /// Forgets the execs of a removed container.
    pub(crate) fn forget_container(&self, container: &str) {
        self.execs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, e| e.container != container);
    }
}

/// The streams of a started exec: with a tty raw bytes, else docker's multiplexed frames.
pub struct ExecIo {
    /// Whether the exec has a tty.
    pub tty: bool,
    /// What the process writes.
    pub output: Pin<Box<dyn AsyncRead + Send>>,
    /// Its stdin (None when not attached).
    pub input: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Becomes true once the exit code is recorded: the stream must not end before (a client inspects the exec
    /// as soon as its stream ends).
    pub exited: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for ExecIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecIo")
            .field("tty", &self.tty)
            .finish_non_exhaustive()
    }
}

/// Copies a reader into `w` as docker frames of `stream` (1 stdout, 2 stderr).
async fn frames(
    mut r: impl AsyncRead + Unpin,
    w: Arc<tokio::sync::Mutex<tokio::io::DuplexStream>>,
    stream: u8,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut frame = Vec::with_capacity(8 + n);
        frame.extend_from_slice(&[stream, 0, 0, 0]);
        frame.extend_from_slice(&(n as u32).to_be_bytes());
        frame.extend_from_slice(&buf[..n]);
        if w.lock().await.write_all(&frame).await.is_err() {
            return;
        }
    }
}

fn set_winsize(fd: &OwnedFd, height: u16, width: u16) -> Result<()> {
    let ws = rustix::termios::Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(fd.as_fd(), ws)
        .map_err(|e| ContainerError::System(format!("cannot resize the exec's terminal: {e}")))
}

impl ContainerService {
    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, name: &str, config: ExecConfig) -> Result<String> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();
        match rec.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(ContainerError::Conflict(format!(
                    "Container {} is paused, unpause the container before exec",
                    rec.id
                )));
            }
            _ => {
                return Err(ContainerError::Conflict(format!(
                    "Container {} is not running",
                    rec.id
                )));
            }
        }
        if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(ContainerError::Invalid("No exec command specified".into()));
        }
        let id = names::new_id();
        let exec = Arc::new(Exec {
            id: id.clone(),
            container: rec.id.clone(),
            config,
            state: Mutex::new(ExecState::default()),
        });
        self.execs
            .execs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), exec.clone());
        e.execs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(id.clone());
        let cmd = exec.config.cmd.clone().unwrap_or_default().join(" ");
        self.event(&rec, &format!("exec_create: {cmd}"), &[("execID", &id)]);
        Ok(id)
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, id: &str) -> Result<ExecInspectResponse> {
        let x = self.execs.get(id)?;
        let st = x.state.lock().unwrap_or_else(PoisonError::into_inner);
        let cmd = x.config.cmd.clone().unwrap_or_default();
        Ok(ExecInspectResponse {
            can_remove: Some(false),
            detach_keys: Some(x.config.detach_keys.clone().unwrap_or_default()),
            id: Some(x.id.clone()),
            running: Some(st.running),
            exit_code: st.exit_code,
            process_config: Some(ProcessConfig {
                privileged: Some(x.config.privileged.unwrap_or(false)),
                user: Some(x.config.user.clone().unwrap_or_default()),
                tty: Some(x.config.tty.unwrap_or(false)),
                entrypoint: cmd.first().cloned(),
                arguments: Some(cmd.iter().skip(1).cloned().collect()),
            }),
            open_stdin: Some(x.config.attach_stdin.unwrap_or(false)),
            open_stderr: Some(x.config.attach_stderr.unwrap_or(false)),
            open_stdout: Some(x.config.attach_stdout.unwrap_or(false)),
            container_id: Some(x.container.clone()),
            pid: Some(st.pid),
        })
    }

    /// What `POST /exec/{id}/start` checks before it answers: the exec exists and has not run, its container
    /// runs. Returns whether the exec has a tty.
    pub fn exec_check(&self, id: &str) -> Result<bool> {
        let x = self.execs.get(id)?;
        if x.state.lock().unwrap_or_else(PoisonError::into_inner).started {
            return Err(ContainerError::Conflict(format!(
                "Exec command {id} has already run"
            )));
        }
        let rec = self.get(&x.container)?;
        if rec.state.status != Status::Running {
            return Err(ContainerError::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        Ok(x.config.tty.unwrap_or(false))
    }

    /// `POST /exec/{id}/resize`.
    pub fn exec_resize(&self, id: &str, height: u16, width: u16) -> Result<()> {
        let x = self.execs.get(id)?;
        let master = x
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .master
            .clone();
        match master {
            Some(m) => set_winsize(&m, height, width),
            None => Ok(()),
        }
    }

    /// `POST /exec/{id}/start`: runs the process; the streams unless detached.
    pub async fn exec_start(self: &Arc<Self>, id: &str, detach: bool) -> Result<Option<ExecIo>> {
        let x = self.execs.get(id)?;
        {
            let mut st = x.state.lock().unwrap_or_else(PoisonError::into_inner);
            if st.started {
                return Err(ContainerError::Conflict(format!(
                    "Exec command {id} has already run"
                )));
            }
            st.started = true;
            st.running = true;
        }
        let result = self.exec_spawn(&x, detach).await;
        if result.is_err() {
            let mut st = x.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.running = false;
            st.exit_code = Some(126);
        }
        result
    }

    async fn exec_spawn(self: &Arc<Self>, x: &Arc<Exec>, detach: bool) -> Result<Option<ExecIo>> {
        let rec = self.get(&x.container)?;
        if rec.state.status != Status::Running {
            return Err(ContainerError::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let run = self.run_dir(&rec.id);
        let cfg_path = run.join("config.json");
        let data = std::fs::read(&cfg_path)
            .map_err(|e| ContainerError::System(format!("cannot read {}: {e}", cfg_path.display())))?;
        let base: oci_spec::runtime::Spec = serde_json::from_slice(&data)
            .map_err(|e| ContainerError::System(format!("cannot parse {}: {e}", cfg_path.display())))?;
        let tty = x.config.tty.unwrap_or(false);
        let process = spec::exec_process(&base, &x.config, &self.layers(&rec.id).merged())
            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        let short = &x.id[..12];
        let pfile = run.join(format!("exec-{short}.json"));
        let pdata = serde_json::to_vec(&process).map_err(|e| ContainerError::System(e.to_string()))?;
        std::fs::write(&pfile, pdata)
            .map_err(|e| ContainerError::System(format!("cannot write {}: {e}", pfile.display())))?;
        let mut cmd = tokio::process::Command::new(&self.cfg.runtime);
        // The pid file exists once the process runs: without it, a failure is the runtime's (126, as dockerd).
        let pid_file = run.join(format!("exec-{short}.pid"));
        cmd.arg("--root")
            .arg(self.runtime_root())
            .arg("exec")
            .arg("--process")
            .arg(&pfile)
            .arg("--pid-file")
            .arg(&pid_file);
        let attach_in = x.config.attach_stdin.unwrap_or(false) && !detach;
        let attach_out =
            !detach && (x.config.attach_stdout.unwrap_or(false) || x.config.attach_stderr.unwrap_or(false));
        // Short: a unix socket path must stay under 108 bytes.
        let sock_dir = self.cfg.exec_root.join("x");
        std::fs::create_dir_all(&sock_dir)
            .map_err(|e| ContainerError::System(format!("cannot create {}: {e}", sock_dir.display())))?;
        let sock_path = sock_dir.join(format!("{short}.sock"));
        let listener = if tty {
            let _ = std::fs::remove_file(&sock_path);
            let l = tokio::net::UnixListener::bind(&sock_path).map_err(|e| {
                ContainerError::System(format!("cannot listen on {}: {e}", sock_path.display()))
            })?;
            cmd.arg("--console-socket").arg(&sock_path);
            Some(l)
        } else {
            None
        };
        cmd.arg(&rec.id);
        use std::process::Stdio;
        cmd.stdin(if attach_in && !tty {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(if attach_out && !tty {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| ContainerError::System(format!("cannot run the runtime: {e}")))?;
        x.state.lock().unwrap_or_else(PoisonError::into_inner).pid = child.id().map(i64::from).unwrap_or(0);

        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let mut io = None;
        if let Some(l) = listener {
            let accepted = tokio::select! {
                a = l.accept() => a.ok(),
                _ = child.wait() => None,
            };
            let _ = std::fs::remove_file(&sock_path);
            let Some((stream, _)) = accepted else {
                let out = child.wait_with_output().await.ok();
                let msg = out
                    .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                    .unwrap_or_default();
                return Err(ContainerError::Invalid(if msg.is_empty() {
                    "the exec did not start".into()
                } else {
                    msg
                }));
            };
            let std_stream = stream
                .into_std()
                .map_err(|e| ContainerError::System(e.to_string()))?;
            std_stream
                .set_nonblocking(false)
                .map_err(|e| ContainerError::System(e.to_string()))?;
            let master = tokio::task::spawn_blocking(move || berth_oci::console::recv_fd(std_stream.as_fd()))
                .await
                .map_err(|e| ContainerError::System(e.to_string()))?
                .map_err(|e| ContainerError::System(e.to_string()))?;
            let master = Arc::new(master);
            x.state.lock().unwrap_or_else(PoisonError::into_inner).master = Some(master.clone());
            if !detach {
                let rd = master
                    .try_clone()
                    .map_err(|e| ContainerError::System(e.to_string()))?;
                let wr = master
                    .try_clone()
                    .map_err(|e| ContainerError::System(e.to_string()))?;
                io = Some(ExecIo {
                    tty: true,
                    output: Box::pin(tokio::fs::File::from_std(std::fs::File::from(rd))),
                    input: attach_in.then(|| {
                        Box::pin(tokio::fs::File::from_std(std::fs::File::from(wr)))
                            as Pin<Box<dyn AsyncWrite + Send>>
                    }),
                    exited: done_rx.clone(),
                });
            }
        } else if attach_out || attach_in {
            let (w, r) = tokio::io::duplex(64 * 1024);
            let w = Arc::new(tokio::sync::Mutex::new(w));
            let mut tasks = Vec::new();
            if let Some(out) = child.stdout.take() {
                tasks.push(tokio::spawn(frames(out, w.clone(), 1)));
            }
            if let Some(err) = child.stderr.take() {
                tasks.push(tokio::spawn(frames(err, w.clone(), 2)));
            }
            tokio::spawn(async move {
                for t in tasks {
                    let _ = t.await;
                }
                let _ = w.lock().await.shutdown().await;
            });
            io = Some(ExecIo {
                tty: false,
                output: Box::pin(r),
                input: child
                    .stdin
                    .take()
                    .map(|s| Box::pin(s) as Pin<Box<dyn AsyncWrite + Send>>),
                exited: done_rx.clone(),
            });
        }
        let rec2 = rec.clone();
        let svc = self.clone();
        let x2 = x.clone();
        let mut stderr = if tty || !attach_out {
            child.stderr.take()
        } else {
            None
        };
        self.event(
            &rec,
            &format!(
                "exec_start: {}",
                x.config.cmd.clone().unwrap_or_default().join(" ")
            ),
            &[("execID", &x.id)],
        );
        tokio::spawn(async move {
            let mut err_text = Vec::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_end(&mut err_text).await;
            }
            let status = child.wait().await;
            let started = pid_file.exists();
            let code = match status {
                Ok(s) if !s.success() && !started => 126,
                Ok(s) => s.code().map(i64::from).unwrap_or_else(|| {
                    128 + i64::from(std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(9))
                }),
                Err(_) => 126,
            };
            let _ = tokio::fs::remove_file(&pid_file).await;
            {
                let mut st = x2.state.lock().unwrap_or_else(PoisonError::into_inner);
                st.running = false;
                st.exit_code = Some(code);
                st.master = None;
            }
            let _ = done_tx.send(true);
            let _ = tokio::fs::remove_file(svc.run_dir(&rec2.id).join(format!("exec-{}.json", &x2.id[..12])))
                .await;
            if !err_text.is_empty() && code != 0 {
                tracing::debug!(exec = %x2.id, error = %String::from_utf8_lossy(&err_text).trim(), "exec failed");
            }
            svc.event(
                &rec2,
                "exec_die",
                &[("execID", &x2.id), ("exitCode", &code.to_string())],
            );
        });
        Ok(io)
    }
}
