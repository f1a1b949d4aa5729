//! Start, exit, stop, kill, restart, pause, remove, wait, rename, resize, attach, list and prune.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::{ContainerPruneResponse, ContainerSummary, ContainerWaitResponse};
use tokio::net::UnixStream;
use tokio::sync::oneshot;

use super::monitor::{self, ExitRecord, MonitorSpec};
use super::record::{Record, Status};
use super::spec::{self, MountKind, NsMode, ResolvedMount};
use super::{ContainerError, ContainerService, Entry, Result, Snapshot, start_failure_code, store};
use crate::filters::Filters;
use crate::time::now_nanos;

/// `POST /containers/{id}/wait?condition=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Return at once if it is not running, else when it exits.
    NotRunning,
    /// The next exit, even if it is not running now.
    NextExit,
    /// When it is removed.
    Removed,
}

impl WaitCondition {
    /// Parses docker's names ("" is not-running).
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "not-running" => Ok(Self::NotRunning),
            "next-exit" => Ok(Self::NextExit),
            "removed" => Ok(Self::Removed),
            other => Err(ContainerError::Invalid(format!("invalid condition: \"{other}\""))),
        }
    }
}

/// An attach waiting for the next start.
#[derive(Debug)]
pub(crate) struct PendingAttach {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tx: oneshot::Sender<UnixStream>,
}

/// Where an attach reads and writes.
#[derive(Debug)]
pub struct AttachTarget {
    /// The container has a tty (raw stream) rather than multiplexed frames.
    pub tty: bool,
    /// The monitor's attach stream: at once when running, else at the next start (None if it never comes).
    pub stream: oneshot::Receiver<UnixStream>,
}

/// A signal's number (docker's names and numbers); the runtime gets the name the user gave.
fn parse_signal(s: &str) -> Result<i32> {
    spec::validate::parse_signal(s.trim())
        .map_err(|_| ContainerError::Invalid(format!("Invalid signal: {s}")))
}

impl ContainerService {
    /// `POST /containers/{id}/start`. Returns false if it was already running (HTTP 304).
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<bool> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        self.start_locked(&e).await
    }

    pub(crate) async fn start_locked(self: &Arc<Self>, e: &Arc<Entry>) -> Result<bool> {
        let rec = e.snapshot();
        match rec.state.status {
            Status::Running | Status::Paused => return Ok(false),
            Status::Removing | Status::Dead => {
                return Err(ContainerError::Conflict(format!(
                    "cannot start container {}: it is being removed",
                    rec.id
                )));
            }
            _ => {}
        }
        match self.launch(e, &rec).await {
            Ok((spawned, monitor_pid, started_at)) => {
                let snap = {
                    let mut r = e.rec();
                    r.state.status = Status::Running;
                    r.state.pid = spawned;
                    r.state.monitor_pid = monitor_pid;
                    r.state.started_at = started_at;
                    r.state.exit_code = 0;
                    r.state.error.clear();
                    r.state.oom_killed = false;
                    r.state.manually_stopped = false;
                    r.has_been_started = true;
                    r.clone()
                };
                self.save(&snap)?;
                self.event(&snap, "start", &[]);
                e.tx.send_modify(|s| s.running = true);
                self.clone().watch_exit(e.clone());
                Ok(true)
            }
            Err(err) => {
                let msg = err.to_string();
                self.cleanup_run(&rec).await;
                let snap = {
                    let mut r = e.rec();
                    r.state.exit_code = start_failure_code(&msg);
                    r.state.error = msg;
                    r.clear_network_live();
                    r.state.pid = 0;
                    r.state.status = if r.has_been_started {
                        Status::Exited
                    } else {
                        Status::Created
                    };
                    r.clone()
                };
                let _ = self.save(&snap);
                e.tx.send_modify(|s| {
                    s.exits += 1;
                    s.exit_code = snap.state.exit_code;
                });
                e.pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clear();
                if snap.host_config.auto_remove.unwrap_or(false) {
                    // As dockerd: a `--rm` container that cannot start is removed (after this operation's lock).
                    let svc = self.clone();
                    let id = snap.id.clone();
                    tokio::spawn(async move {
                        let _ = svc.remove(&id, true, true).await;
                    });
                }
                Err(err)
            }
        }
    }

    /// Mounts the root, writes the bundle, starts the monitor (which creates the container), connects waiting
    /// attaches, and starts the program.
    async fn launch(self: &Arc<Self>, e: &Arc<Entry>, rec: &Record) -> Result<(i64, i64, i64)> {
        let id = rec.id.clone();
        let run = self.run_dir(&id);
        let _ = std::fs::remove_dir_all(&run);
        std::fs::create_dir_all(&run)
            .map_err(|err| ContainerError::System(format!("cannot create {}: {err}", run.display())))?;
        let merged = {
            let svc = self.clone();
            let rec = rec.clone();
            tokio::task::spawn_blocking(move || svc.mount_root(&rec))
                .await
                .map_err(|err| ContainerError::System(err.to_string()))??
        };
        tracing::debug!(container = %id, "root mounted");
        let mounts = self.resolve_mounts(rec, &merged)?;
        let ns = |mode: &str, kind: &str| -> Result<NsMode> {
            if mode == "host" {
                return Ok(NsMode::Host);
            }
            if let Some(other) = mode.strip_prefix("container:") {
                let o = self.lookup(other)?.snapshot();
                if !o.state.status.is_running() {
                    return Err(ContainerError::Conflict(format!(
                        "cannot join the {kind} namespace of container {}: it is not running",
                        o.id
                    )));
                }
                return Ok(NsMode::Path(PathBuf::from(format!(
                    "/proc/{}/ns/{kind}",
                    o.state.pid
                ))));
            }
            Ok(NsMode::Private)
        };
        let hc = &rec.host_config;
        // A remapped container's network namespace must belong to its user namespace (sysfs and net sysctls need
        // that): the runtime makes it, and the interfaces are added between create and start (as docker does).
        // Otherwise berthd makes it first and the runtime joins it.
        let net_after_create = !rec.networks.is_empty() && self.remap_for(hc).is_some();
        let net = if rec.networks.is_empty() {
            ns(hc.network_mode.as_deref().unwrap_or(""), "net")?
        } else if net_after_create {
            NsMode::Private
        } else {
            NsMode::Own(self.connect_networks(e, rec, None).await?)
        };
        let ipc = ns(hc.ipc_mode.as_deref().unwrap_or(""), "ipc")?;
        let pid = ns(hc.pid_mode.as_deref().unwrap_or(""), "pid")?;
        let uts = ns(hc.uts_mode.as_deref().unwrap_or(""), "uts")?;
        let cgroups_path = self.cgroups_path(rec);
        let cdir = self.dirs.container(&id);
        let use_init = hc.init.unwrap_or(false);
        // As dockerd: a container on another container's network takes that container's hostname.
        let hostname = match hc
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("container:"))
        {
            Some(other) => {
                let h = self
                    .lookup(other)?
                    .rec()
                    .config
                    .hostname
                    .clone()
                    .unwrap_or_default();
                super::create::write_file(&cdir, "hostname", format!("{h}\n"))?;
                h
            }
            None => rec.config.hostname.clone().unwrap_or_default(),
        };
        let input = spec::SpecInput {
            id: &id,
            hostname: &hostname,
            config: &rec.config,
            host: hc,
            image: &rec.config,
            rootfs: &merged,
            mounts: &mounts,
            etc: spec::EtcFiles {
                hostname: cdir.join("hostname"),
                hosts: cdir.join("hosts"),
                resolv_conf: cdir.join("resolv.conf"),
            },
            cgroups_path: &cgroups_path,
            net,
            ipc,
            pid,
            uts,
            init: use_init.then_some(self.cfg.init.as_path()),
            userns: self
                .remap_for(hc)
                .map(|r| (r.oci_uid_mappings(), r.oci_gid_mappings())),
        };
        let oci = spec::build(&input).map_err(|err| ContainerError::Invalid(err.to_string()))?;
        let config = run.join("config.json");
        let data = serde_json::to_vec(&oci).map_err(|err| ContainerError::System(err.to_string()))?;
        std::fs::write(&config, data)
            .map_err(|err| ContainerError::System(format!("cannot write {}: {err}", config.display())))?;
        let log = spec::log_settings(hc).map_err(|err| ContainerError::Invalid(err.to_string()))?;
        let log_path = rec.log_path(&self.dirs);
        let mspec = MonitorSpec {
            id: id.clone(),
            runtime: self.cfg.runtime.clone(),
            runtime_root: self.runtime_root(),
            bundle: run.clone(),
            tty: rec.config.tty.unwrap_or(false),
            open_stdin: rec.config.open_stdin.unwrap_or(false),
            stdin_once: rec.config.stdin_once.unwrap_or(false),
            log_path: (log.driver != "none" && !log_path.is_empty()).then(|| PathBuf::from(&log_path)),
            log_max_size: log.max_size,
            log_max_files: log.max_files.max(1),
            cgroups_path,
        };
        tracing::debug!(container = %id, "bundle written");
        let spawned = monitor::spawn(&self.cfg.monitor, &run, &mspec).await?;
        tracing::debug!(container = %id, pid = spawned.pid, "created by the monitor");
        if net_after_create && let Err(err) = self.connect_networks(e, rec, Some(spawned.pid)).await {
            // Undo the create: the runtime deletes the container, the monitor then ends.
            let _ = self.runtime(&["delete", "--force", &id], None).await;
            let _ = tokio::time::timeout(Duration::from_secs(10), monitor::wait(&run)).await;
            return Err(err);
        }
        let pending: Vec<PendingAttach> = std::mem::take(
            &mut *e
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for p in pending {
            if let Ok(s) = monitor::attach(&run, p.stdin, p.stdout, p.stderr).await {
                let _ = p.tx.send(s);
            }
        }
        // Taken before the program runs: a program that ends at once must not finish before it started.
        let started_at = now_nanos();
        if let Err(err) = monitor::start(&run).await {
            // The monitor deletes the container and exits; wait for that so nothing is left mounted under it.
            let _ = tokio::time::timeout(Duration::from_secs(10), monitor::wait(&run)).await;
            return Err(err.into());
        }
        tracing::debug!(container = %id, "started");
        for m in &rec.mounts {
            if let Some(n) = &m.name {
                self.events.publish(crate::volumes::VolumeService::mount_event(
                    n,
                    &id,
                    m.destination.as_deref().unwrap_or(""),
                    m.rw.unwrap_or(true),
                    m.propagation.as_deref().unwrap_or(""),
                ));
            }
        }
        Ok((spawned.pid, spawned.monitor_pid, started_at))
    }

    /// Makes the container's network namespace and its interfaces on each of its networks (the network of its
    /// network mode first: `eth0`, with the default route), writes its hosts and resolv.conf, publishes its
    /// ports, and records what it got before anything runs in it (so a daemon restart finds it).
    /// `created`: the pid of a created container whose own network namespace is used (remapped containers).
    async fn connect_networks(&self, e: &Arc<Entry>, rec: &Record, created: Option<i64>) -> Result<PathBuf> {
        use crate::networks::{Member, port_requests};
        let mode = rec.host_config.network_mode.clone().unwrap_or_default();
        let mut order: Vec<(&String, &crate::networks::EndpointConfig)> = rec.networks.iter().collect();
        order.sort_by_key(|(name, _)| (**name != mode, (*name).clone()));
        let mut nets = Vec::new();
        for (name, ep) in &order {
            let net = self
                .networks
                .get(&ep.network_id)
                .map_err(|_| crate::networks::NetworkError::NotFound((*name).clone()))?;
            nets.push(net);
        }
        let path = match created {
            Some(pid) => self.networks.adopt_netns(&rec.id, pid).await?,
            None => self.networks.create_netns(&rec.id).await?,
        };
        let member = Member {
            id: &rec.id,
            name: &rec.name,
        };
        let mut live = Vec::new();
        for (i, ((name, ep), net)) in order.iter().zip(&nets).enumerate() {
            let a = self
                .networks
                .attach(&member, &path, net, ep, &format!("eth{i}"), i == 0)
                .await?;
            live.push(((*name).clone(), a));
        }
        let hc = &rec.host_config;
        let hostname = rec.config.hostname.clone().unwrap_or_default();
        let ips: Vec<std::net::Ipv4Addr> = live.iter().map(|(_, a)| a.ip).collect();
        let cdir = self.dirs.container(&rec.id);
        super::create::write_file(
            &cdir,
            "hosts",
            super::create::hosts_text(&hostname, &mode, hc, &ips),
        )?;
        let (servers, host_resolv) = self.networks.resolv_conf(&nets);
        super::create::write_file(
            &cdir,
            "resolv.conf",
            super::create::resolv_text(&host_resolv, Some(&servers), hc, &mode),
        )?;
        let requests = port_requests(
            hc.port_bindings.as_ref(),
            &rec.config.exposed_ports.clone().unwrap_or_default(),
            hc.publish_all_ports.unwrap_or(false),
        )?;
        let published = match live.first() {
            Some((_, a)) => self.networks.publish(&rec.id, a.ip, &requests).await?,
            None => Vec::new(),
        };
        let snap = {
            let mut r = e.rec();
            for (name, a) in &live {
                if let Some(ep) = r.networks.get_mut(name) {
                    ep.live = Some(a.clone());
                }
            }
            r.ports = published;
            r.clone()
        };
        self.save(&snap)?;
        Ok(path)
    }

    /// The cgroup of a container: `<parent>/<id>`, the parent from `--cgroup-parent` or the daemon's.
    pub(crate) fn cgroups_path(&self, rec: &Record) -> String {
        let parent = rec
            .host_config
            .cgroup_parent
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| self.cfg.cgroup_parent.clone());
        format!("/{}/{}", parent.trim_matches('/'), rec.id)
    }

    /// Volumes mounted (and filled from the image on first use), binds and tmpfs as the spec wants them.
    fn resolve_mounts(&self, rec: &Record, merged: &std::path::Path) -> Result<Vec<ResolvedMount>> {
        let requests = spec::parse_mounts(&rec.config, &rec.host_config, &rec.config)
            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        let mut out = Vec::new();
        for (r, mp) in requests.iter().zip(rec.mounts.iter()) {
            let resolved = match &r.kind {
                MountKind::Bind { source } => {
                    if !source.exists() {
                        return Err(ContainerError::Invalid(format!(
                            "invalid mount config for type \"bind\": bind source path does not exist: {}",
                            source.display()
                        )));
                    }
                    r.resolve(None)
                }
                MountKind::Volume { no_copy, .. } => {
                    let name = mp.name.clone().unwrap_or_default();
                    if !no_copy {
                        self.volumes
                            .copy_up(&name, merged, &r.destination)
                            .map_err(|e| ContainerError::System(e.to_string()))?;
                    }
                    let source = self
                        .volumes
                        .mount(&name, &rec.id)
                        .map_err(|e| ContainerError::System(e.to_string()))?;
                    r.resolve(Some(&source))
                }
                MountKind::Tmpfs { .. } => r.resolve(None),
            };
            out.push(resolved.map_err(|e| ContainerError::Invalid(e.to_string()))?);
        }
        Ok(out)
    }

    /// Undoes a run: the runtime's container (if any is left), the root mount, volume mounts, the run dir.
    pub(crate) async fn cleanup_run(&self, rec: &Record) {
        let id = rec.id.clone();
        // The monitor deletes the runtime's container when it ends; only a monitor that died leaves one.
        if self.runtime_root().join(&id).exists() {
            let _ = self.runtime(&["delete", "--force", &id], None).await;
        }
        let ly = self.layers(&id);
        let _ = tokio::task::spawn_blocking(move || ly.unmount()).await;
        for m in &rec.mounts {
            if let Some(n) = &m.name {
                let _ = self.volumes.unmount(n, &id);
            }
        }
        let _ = std::fs::remove_dir_all(self.run_dir(&id));
        if !rec.networks.is_empty() || self.networks.netns_path(&id).exists() {
            self.networks.release_container(&id).await;
        }
    }

    /// Follows a running container until it exits, then records the exit.
    pub(crate) fn watch_exit(self: Arc<Self>, e: Arc<Entry>) {
        tokio::spawn(async move {
            let run = self.run_dir(&e.id());
            let exit = match monitor::wait(&run).await {
                Ok(x) => x,
                Err(err) => monitor::exit_record(&run).unwrap_or_else(|| ExitRecord {
                    exit_code: 255,
                    oom_killed: false,
                    finished_at: String::new(),
                    error: format!("the container's monitor ended without recording an exit: {err}"),
                }),
            };
            self.finish(&e, exit).await;
        });
    }

    /// Records an exit: state, cleanup, events, then the restart policy or `--rm`.
    pub(crate) async fn finish(self: &Arc<Self>, e: &Arc<Entry>, exit: ExitRecord) {
        let rec = e.snapshot();
        if !rec.state.status.is_running() && rec.state.status != Status::Restarting {
            return;
        }
        self.cleanup_run(&rec).await;
        let finished = crate::time::parse_rfc3339(&exit.finished_at)
            .unwrap_or_else(now_nanos)
            .max(rec.state.started_at);
        // Decided before the exit is saved: a container that restarts goes from running to restarting without
        // being seen as exited in between.
        let restart =
            !rec.host_config.auto_remove.unwrap_or(false) && self.should_restart(&rec, exit.exit_code);
        let snap = {
            let mut r = e.rec();
            r.state.status = if restart {
                Status::Restarting
            } else {
                Status::Exited
            };
            r.state.pid = 0;
            r.state.monitor_pid = 0;
            r.state.exit_code = exit.exit_code;
            r.state.oom_killed = exit.oom_killed;
            r.state.finished_at = finished;
            r.state.error = exit.error.clone();
            r.clear_network_live();
            r.clone()
        };
        let _ = self.save(&snap);
        if exit.oom_killed {
            self.event(&snap, "oom", &[]);
        }
        let code = exit.exit_code.to_string();
        self.event(&snap, "die", &[("exitCode", &code)]);
        e.tx.send_modify(|s| {
            s.running = false;
            s.exits += 1;
            s.exit_code = exit.exit_code;
        });
        if snap.host_config.auto_remove.unwrap_or(false) {
            let svc = self.clone();
            let id = snap.id.clone();
            tokio::spawn(async move {
                if let Err(err) = svc.remove(&id, true, true).await {
                    tracing::warn!(container = %id, error = %err, "cannot auto-remove the container");
                }
            });
            return;
        }
        if restart {
            // docker's "restarting" state while the back-off runs (`ps` shows "Restarting (code) ...").
            let svc = self.clone();
            let e = e.clone();
            let delay = Duration::from_millis(100 << snap.restart_count.clamp(0, 10));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _op = e.op.lock().await;
                let now = e.snapshot();
                if now.state.manually_stopped
                    || now.state.status != Status::Restarting
                    || e.tx.borrow().removed
                {
                    return;
                }
                e.rec().restart_count += 1;
                if let Err(err) = svc.start_locked(&e).await {
                    tracing::warn!(container = %e.id(), error = %err, "the restart policy could not restart the container");
                } else {
                    let r = e.snapshot();
                    svc.event(&r, "restart", &[]);
                }
            });
        }
    }

    fn should_restart(&self, rec: &Record, code: i64) -> bool {
        if rec.state.manually_stopped {
            return false;
        }
        let Some(p) = &rec.host_config.restart_policy else {
            return false;
        };
        let name = p.name.map(|n| n.to_string()).unwrap_or_default();
        match name.as_str() {
            "always" | "unless-stopped" => true,
            "on-failure" => {
                let max = p.maximum_retry_count.unwrap_or(0);
                code != 0 && (max == 0 || rec.restart_count < max)
            }
            _ => false,
        }
    }

    /// `POST /containers/{id}/stop`. Returns false if it was not running (HTTP 304).
    pub async fn stop(
        self: &Arc<Self>,
        name: &str,
        signal: Option<&str>,
        timeout: Option<i64>,
    ) -> Result<bool> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        self.stop_locked(&e, signal, timeout, true).await
    }

    pub(crate) async fn stop_locked(
        self: &Arc<Self>,
        e: &Arc<Entry>,
        signal: Option<&str>,
        timeout: Option<i64>,
        manual: bool,
    ) -> Result<bool> {
        let rec = e.snapshot();
        if rec.state.status == Status::Restarting {
            // Stopping a container between two runs cancels the restart.
            let snap = {
                let mut r = e.rec();
                r.state.status = Status::Exited;
                r.state.manually_stopped |= manual;
                r.clone()
            };
            self.save(&snap)?;
            self.event(&snap, "stop", &[]);
            return Ok(true);
        }
        if !rec.state.status.is_running() {
            return Ok(false);
        }
        if manual {
            let snap = {
                let mut r = e.rec();
                r.state.manually_stopped = true;
                r.clone()
            };
            self.save(&snap)?;
        }
        let sig = signal
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .or_else(|| rec.config.stop_signal.clone().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "SIGTERM".into());
        parse_signal(&sig)?;
        let timeout = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let mut rx = e.tx.subscribe();
        let _ = self.runtime(&["kill", &rec.id, &sig], None).await;
        if rec.state.status == Status::Paused {
            let _ = self.runtime(&["resume", &rec.id], None).await;
        }
        let exited = async { rx.wait_for(|s| !s.running).await.map(|_| ()).map_err(|_| ()) };
        let done = if timeout < 0 {
            exited.await.is_ok()
        } else {
            tokio::time::timeout(Duration::from_secs(timeout as u64), exited)
                .await
                .is_ok()
        };
        if !done {
            let _ = self.runtime(&["kill", &rec.id, "SIGKILL"], None).await;
            let mut rx = e.tx.subscribe();
            let _ = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| !s.running)).await;
        }
        let r = e.snapshot();
        self.event(&r, "stop", &[]);
        Ok(true)
    }

    /// `POST /containers/{id}/restart`.
    pub async fn restart(
        self: &Arc<Self>,
        name: &str,
        signal: Option<&str>,
        timeout: Option<i64>,
    ) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        self.stop_locked(&e, signal, timeout, false).await?;
        self.start_locked(&e).await?;
        let r = e.snapshot();
        self.event(&r, "restart", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/kill`.
    pub async fn kill(self: &Arc<Self>, name: &str, signal: Option<&str>) -> Result<()> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();
        let sig = signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL");
        let n = parse_signal(sig)?;
        if !rec.state.status.is_running() {
            return Err(ContainerError::Conflict(format!(
                "Cannot kill container: {name}: Container {} is not running",
                rec.id
            )));
        }
        if n == 9 || n == 15 {
            let mut r = e.rec();
            r.state.manually_stopped = true;
        }
        let num = n.to_string();
        self.runtime(&["kill", &rec.id, &num], None).await?;
        if rec.state.status == Status::Paused && n == 9 {
            let _ = self.runtime(&["resume", &rec.id], None).await;
        }
        self.event(&rec, "kill", &[("signal", &num)]);
        Ok(())
    }

    /// `POST /containers/{id}/pause`.
    pub async fn pause(self: &Arc<Self>, name: &str) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let rec = e.snapshot();
        match rec.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(ContainerError::Conflict(format!(
                    "Container {} is already paused",
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
        self.runtime(&["pause", &rec.id], None).await?;
        let snap = {
            let mut r = e.rec();
            r.state.status = Status::Paused;
            r.clone()
        };
        self.save(&snap)?;
        self.event(&snap, "pause", &[]);
        Ok(())
    }

    /// `POST /containers/{id}/unpause`.
    pub async fn unpause(self: &Arc<Self>, name: &str) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let rec = e.snapshot();
        if rec.state.status != Status::Paused {
            return Err(ContainerError::Conflict(format!(
                "Container {} is not paused",
                rec.id
            )));
        }
        self.runtime(&["resume", &rec.id], None).await?;
        let snap = {
            let mut r = e.rec();
            r.state.status = Status::Running;
            r.clone()
        };
        self.save(&snap)?;
        self.event(&snap, "unpause", &[]);
        Ok(())
    }

    /// `DELETE /containers/{id}?force=&v=`.
    pub async fn remove(self: &Arc<Self>, name: &str, force: bool, volumes: bool) -> Result<()> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        if e.tx.borrow().removed {
            return Err(ContainerError::NotFound(name.to_string()));
        }
        let rec = e.snapshot();
        if rec.state.status == Status::Restarting {
            if !force {
                return Err(ContainerError::Conflict(format!(
                    "cannot remove container \"/{}\": container is restarting: stop the container before removing or force remove",
                    rec.name
                )));
            }
            e.rec().state.manually_stopped = true;
        }
        if rec.state.status.is_running() {
            if !force {
                let what = if rec.state.status == Status::Paused {
                    "container is paused and must be unpaused first"
                } else {
                    "container is running: stop the container before removing or force remove"
                };
                return Err(ContainerError::Conflict(format!(
                    "cannot remove container \"/{}\": {what}",
                    rec.name
                )));
            }
            let mut rx = e.tx.subscribe();
            let _ = self.runtime(&["kill", &rec.id, "SIGKILL"], None).await;
            if rec.state.status == Status::Paused {
                let _ = self.runtime(&["resume", &rec.id], None).await;
            }
            if tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| !s.running))
                .await
                .is_err()
            {
                return Err(ContainerError::System(format!(
                    "cannot remove container {}: it did not exit after SIGKILL",
                    rec.id
                )));
            }
        }
        let rec = {
            let mut r = e.rec();
            r.state.status = Status::Removing;
            r.clone()
        };
        // Recorded first: a daemon that dies from here on finishes the removal when it starts again.
        self.save(&rec)?;
        self.cleanup_run(&rec).await;
        let ly = self.layers(&rec.id);
        tokio::task::spawn_blocking(move || ly.remove())
            .await
            .map_err(|err| ContainerError::System(err.to_string()))??;
        let cdir = self.dirs.container(&rec.id);
        if self.owned(&cdir) {
            let _ = std::fs::remove_dir_all(&cdir);
        }
        store::remove(&self.db, &rec.id)?;
        self.entries_mut().remove(&rec.id);
        self.execs.forget_container(&rec.id);
        if volumes {
            for m in &rec.mounts {
                if let Some(n) = &m.name
                    && self
                        .volumes
                        .inspect(n)
                        .is_ok_and(|v| v.labels.contains_key(crate::volumes::ANONYMOUS_LABEL))
                {
                    let _ = self.volumes.remove(n, false);
                }
            }
        }
        self.event(&rec, "destroy", &[]);
        e.tx.send_modify(|s| s.removed = true);
        Ok(())
    }

    /// `POST /containers/{id}/wait`: checks the container and returns the future of its answer.
    pub fn wait(
        &self,
        name: &str,
        cond: WaitCondition,
    ) -> Result<impl std::future::Future<Output = ContainerWaitResponse> + Send + 'static> {
        let e = self.lookup(name)?;
        let mut rx = e.tx.subscribe();
        let start = *rx.borrow();
        let e2 = e.clone();
        Ok(async move {
            let _ = match cond {
                WaitCondition::NotRunning => rx.wait_for(|s| !s.running || s.removed).await.map(|_| ()),
                WaitCondition::NextExit => rx
                    .wait_for(|s| s.exits > start.exits || s.removed)
                    .await
                    .map(|_| ()),
                WaitCondition::Removed => rx.wait_for(|s| s.removed).await.map(|_| ()),
            };
            let snap: Snapshot = *e2.tx.borrow();
            // A start that failed is reported by the start call itself; the wait only carries the exit code
            // (the docker CLI prints a wait error as a second failure).
            ContainerWaitResponse {
                status_code: snap.exit_code,
                error: None,
            }
        })
    }

    /// `POST /containers/{id}/rename?name=`.
    pub async fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        let e = self.lookup(name)?;
        let _names = self.names.lock().await;
        let new = new_name.strip_prefix('/').unwrap_or(new_name);
        if new.is_empty() {
            return Err(ContainerError::Invalid(
                "Neither old nor new names may be empty".into(),
            ));
        }
        if !super::names::valid_name(new) {
            return Err(ContainerError::Invalid(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let old = e.rec().name.clone();
        if old == new {
            return Err(ContainerError::Conflict(
                "Renaming a container with the same name as its current name".to_string(),
            ));
        }
        if let Ok(other) = self.lookup(&format!("/{new}"))
            && other.rec().name == new
        {
            return Err(ContainerError::Conflict(format!(
                "Conflict. The container name \"/{new}\" is already in use by container \"{}\". You have to \
                 remove (or rename) that container to be able to reuse that name.",
                other.id()
            )));
        }
        let snap = {
            let mut r = e.rec();
            r.name = new.to_string();
            r.clone()
        };
        if let Err(err) = self.save(&snap) {
            e.rec().name = old;
            return Err(err);
        }
        self.event(&snap, "rename", &[("oldName", &format!("/{old}"))]);
        Ok(())
    }

    /// `POST /containers/{id}/resize?h=&w=`.
    pub async fn resize(&self, name: &str, height: u16, width: u16) -> Result<()> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();
        if !rec.state.status.is_running() {
            return Err(ContainerError::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        if !rec.config.tty.unwrap_or(false) {
            return Ok(());
        }
        monitor::resize(&self.run_dir(&rec.id), height, width).await?;
        Ok(())
    }

    /// `POST /containers/{id}/attach`: the stream now if it runs, else at its next start.
    pub async fn attach(&self, name: &str, stdin: bool, stdout: bool, stderr: bool) -> Result<AttachTarget> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();
        let tty = rec.config.tty.unwrap_or(false);
        let (tx, rx) = oneshot::channel();
        if rec.state.status.is_running() {
            let s = monitor::attach(&self.run_dir(&rec.id), stdin, stdout, stderr).await?;
            let _ = tx.send(s);
        } else {
            e.pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(PendingAttach {
                    stdin,
                    stdout,
                    stderr,
                    tx,
                });
        }
        self.event(&rec, "attach", &[]);
        Ok(AttachTarget { tty, stream: rx })
    }

    /// `GET /containers/json`.
    pub fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        size: bool,
        filters: &Filters,
    ) -> Result<Vec<ContainerSummary>> {
        filters
            .validate(&[
                "id", "name", "label", "status", "exited", "ancestor", "before", "since", "volume",
                "network", "health", "is-task", "expose", "publish",
            ])
            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        let mut recs: Vec<Record> = self.entries().values().map(|e| e.snapshot()).collect();
        recs.sort_by_key(|r| std::cmp::Reverse(r.created));
        let pos = |name: &str| -> Result<i64> { Ok(self.lookup(name)?.snapshot().created) };
        let before = filters.get("before").first().map(|n| pos(n)).transpose()?;
        let since = filters.get("since").first().map(|n| pos(n)).transpose()?;
        let statuses = filters.get("status");
        for s in &statuses {
            if !matches!(
                *s,
                "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
            ) {
                return Err(ContainerError::Invalid(format!("invalid filter 'status={s}'")));
            }
        }
        let all = all || !statuses.is_empty() || filters.contains("exited");
        let ancestors: Vec<String> = filters
            .get("ancestor")
            .iter()
            .filter_map(|a| self.images.resolve(a).ok())
            .collect();
        let mut out = Vec::new();
        for r in recs {
            if !all && !r.state.status.is_running() {
                continue;
            }
            if !filters.get("id").is_empty() && !filters.get("id").iter().any(|p| r.id.starts_with(p)) {
                continue;
            }
            if !filters.get("name").is_empty()
                && !filters.get("name").iter().any(|p| {
                    let p = p.strip_prefix('/').unwrap_or(p);
                    r.name.contains(p)
                })
            {
                continue;
            }
            if !statuses.is_empty() && !statuses.contains(&r.state.status.as_str()) {
                continue;
            }
            if filters.contains("exited") {
                let codes: HashSet<String> = filters.get("exited").iter().map(|s| s.to_string()).collect();
                if r.state.status != Status::Exited || !codes.contains(&r.state.exit_code.to_string()) {
                    continue;
                }
            }
            if !filters.match_labels("label", &r.config.labels.clone().unwrap_or_default()) {
                continue;
            }
            if filters.contains("ancestor") && !ancestors.contains(&r.image_id) {
                continue;
            }
            if let Some(b) = before
                && r.created >= b
            {
                continue;
            }
            if let Some(s) = since
                && r.created <= s
            {
                continue;
            }
            if filters.contains("volume")
                && !filters.get("volume").iter().any(|v| {
                    r.mounts
                        .iter()
                        .any(|m| m.name.as_deref() == Some(*v) || m.destination.as_deref() == Some(*v))
                })
            {
                continue;
            }
            let sz = size.then(|| {
                let rw = self.layers(&r.id).upper_size() as i64;
                let base: i64 = r.lowers.iter().map(|l| super::layers::dir_size(l) as i64).sum();
                (rw, rw + base)
            });
            out.push(r.summary(sz));
            if limit.is_some_and(|l| l > 0 && out.len() >= l) {
                break;
            }
        }
        Ok(out)
    }

    /// `GET /containers/{id}/json?size=`.
    pub fn inspect(&self, name: &str, size: bool) -> Result<bollard_stubs::models::ContainerInspectResponse> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();
        let mut v = rec.inspect(&self.layers_root, &self.dirs);
        let execs = e
            .execs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        v.exec_ids = (!execs.is_empty()).then_some(execs);
        if size {
            let rw = self.layers(&rec.id).upper_size() as i64;
            let base: i64 = rec.lowers.iter().map(|l| super::layers::dir_size(l) as i64).sum();
            v.size_rw = Some(rw);
            v.size_root_fs = Some(rw + base);
        }
        Ok(v)
    }

    /// `POST /containers/prune`.
    pub async fn prune(self: &Arc<Self>, filters: &Filters) -> Result<ContainerPruneResponse> {
        filters
            .validate(&["until", "label", "label!"])
            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        let until = match filters.get("until").first() {
            Some(u) => Some(
                crate::time::parse_api_timestamp(u)
                    .ok_or_else(|| ContainerError::Invalid(format!("invalid filter 'until={u}'")))?,
            ),
            None => None,
        };
        let candidates: Vec<Record> = self
            .entries()
            .values()
            .map(|e| e.snapshot())
            .filter(|r| matches!(r.state.status, Status::Created | Status::Exited | Status::Dead))
            .filter(|r| until.is_none_or(|u| r.created < u))
            .filter(|r| filters.match_labels("label", &r.config.labels.clone().unwrap_or_default()))
            .collect();
        let mut deleted = Vec::new();
        let mut reclaimed = 0i64;
        for r in candidates {
            let size = self.layers(&r.id).upper_size() as i64;
            if self.remove(&r.id, false, false).await.is_ok() {
                deleted.push(r.id);
                reclaimed += size;
            }
        }
        self.events.publish(crate::events::Event::new(
            "container",
            "prune",
            "",
            &[("reclaimed", &reclaimed.to_string())],
        ));
        Ok(ContainerPruneResponse {
            containers_deleted: Some(deleted),
            space_reclaimed: Some(reclaimed),
        })
    }

    /// `GET /containers/{id}/top?ps_args=`: the host's `ps` filtered to the container's processes.
    pub async fn top(
        &self,
        name: &str,
        ps_args: &str,
    ) -> Result<bollard_stubs::models::ContainerTopResponse> {
        let rec = self.get(name)?;
        if !rec.state.status.is_running() {
            return Err(ContainerError::Conflict(format!(
                "Container {} is not running",
                rec.id
            )));
        }
        let cg = berth_cgroups::Cgroup::new(Some(&self.cgroups_path(&rec)), &rec.id)
            .map_err(|e| ContainerError::System(e.to_string()))?;
        let pids: HashSet<String> = cg
            .pids()
            .map_err(|e| ContainerError::System(e.to_string()))?
            .into_iter()
            .map(|p| p.to_string())
            .collect();
        let args: Vec<&str> = if ps_args.trim().is_empty() {
            vec!["-ef"]
        } else {
            ps_args.split_whitespace().collect()
        };
        let out = tokio::process::Command::new("ps")
            .args(&args)
            .output()
            .await
            .map_err(|e| ContainerError::System(format!("cannot run ps: {e}")))?;
        if !out.status.success() {
            return Err(ContainerError::Invalid(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or("");
        let titles: Vec<String> = header.split_whitespace().map(str::to_string).collect();
        let pid_col = titles
            .iter()
            .position(|t| t == "PID")
            .ok_or_else(|| ContainerError::Invalid("Couldn't find PID field in ps output".into()))?;
        let mut processes = Vec::new();
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < titles.len() || !pids.contains(fields[pid_col]) {
                continue;
            }
            let mut row: Vec<String> = fields[..titles.len() - 1].iter().map(|s| s.to_string()).collect();
            row.push(fields[titles.len() - 1..].join(" "));
            processes.push(row);
        }
        Ok(bollard_stubs::models::ContainerTopResponse {
            titles: Some(titles),
            processes: Some(processes),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("term").unwrap(), 15);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert!(
            parse_signal("FOO")
                .unwrap_err()
                .to_string()
                .contains("Invalid signal: FOO")
        );
    }

    #[test]
    fn wait_conditions() {
        assert_eq!(WaitCondition::parse("").unwrap(), WaitCondition::NotRunning);
        assert_eq!(WaitCondition::parse("removed").unwrap(), WaitCondition::Removed);
        assert!(WaitCondition::parse("never").is_err());
    }
}
