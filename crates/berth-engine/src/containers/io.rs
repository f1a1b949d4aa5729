//! The container's data seen from outside: logs, stats, and (with the archive module) cp, export and diff.

use std::sync::Arc;

use bollard_stubs::models::ContainerStatsResponse;
use tokio::sync::mpsc;

use super::logs::{self, LogEntry, LogError, LogOptions};
use super::{ContainerError, ContainerService, Result, Status, stats};

impl ContainerService {
    /// The log of a container as a stream of entries, and whether it has a tty (raw output rather than frames).
    pub fn logs(
        &self,
        name: &str,
        opts: LogOptions,
    ) -> Result<(bool, mpsc::Receiver<std::result::Result<LogEntry, LogError>>)> {
        let e = self.lookup(name)?;
        let rec = e.snapshot();
        let path = rec.log_path(&self.dirs);
        if path.is_empty() {
            return Err(ContainerError::Invalid(
                "configured logging driver does not support reading".into(),
            ));
        }
        let tty = rec.config.tty.unwrap_or(false);
        let rx = e.tx.subscribe();
        let rx = logs::stream(path.into(), opts, move || !rx.borrow().running);
        Ok((tty, rx))
    }

    /// The log so far, rendered for an attach with `logs=1`.
    pub fn past_logs(&self, name: &str, stdout: bool, stderr: bool) -> Result<Vec<u8>> {
        let rec = self.get(name)?;
        let path = rec.log_path(&self.dirs);
        if path.is_empty() || !(stdout || stderr) {
            return Ok(Vec::new());
        }
        let tty = rec.config.tty.unwrap_or(false);
        let opts = LogOptions {
            stdout,
            stderr,
            ..Default::default()
        };
        let entries = logs::read_all(std::path::Path::new(&path), &opts)
            .map_err(|e| ContainerError::System(e.to_string()))?;
        let mut out = Vec::new();
        for e in entries {
            out.extend(if tty { e.render(false) } else { e.frame(false) });
        }
        Ok(out)
    }

    /// One stats sample; `previous` gives the pre-sample figures. A stopped container gets docker's empty sample.
    pub fn stats(
        self: &Arc<Self>,
        name: &str,
        previous: Option<&ContainerStatsResponse>,
    ) -> Result<ContainerStatsResponse> {
        let rec = self.get(name)?;
        let sname = format!("/{}", rec.name);
        if !rec.state.status.is_running() {
            return Ok(stats::not_running(&rec.id, &sname));
        }
        let cg = berth_cgroups::Cgroup::new(Some(&self.cgroups_path(&rec)), &rec.id)
            .map_err(|e| ContainerError::System(e.to_string()))?;
        let st = cg.stats().map_err(|e| ContainerError::System(e.to_string()))?;
        let host = stats::Host::read().map_err(|e| ContainerError::System(e.to_string()))?;
        let own_net = !matches!(rec.host_config.network_mode.as_deref(), Some("host"))
            && !rec
                .host_config
                .network_mode
                .as_deref()
                .unwrap_or("")
                .starts_with("container:");
        let networks = if own_net && rec.state.status == Status::Running {
            stats::network_stats(rec.state.pid as i32).ok()
        } else {
            None
        };
        let sample = stats::Sample {
            id: &rec.id,
            name: &sname,
            mode: cg.mode(),
            stats: &st,
            read: crate::time::now_nanos(),
            host,
            networks,
        };
        Ok(stats::response(&sample, previous))
    }
}

impl ContainerService {
    /// `POST /containers/{id}/update`: new limits (applied at once to a running container) and restart policy.
    pub async fn update(
        self: &Arc<Self>,
        name: &str,
        update: bollard_stubs::models::ContainerUpdateBody,
    ) -> Result<Vec<String>> {
        let e = self.lookup(name)?;
        let _op = e.op.lock().await;
        let rec = e.snapshot();
        let mut host =
            serde_json::to_value(&rec.host_config).map_err(|err| ContainerError::System(err.to_string()))?;
        let changes =
            serde_json::to_value(&update).map_err(|err| ContainerError::Invalid(err.to_string()))?;
        if let (Some(h), Some(c)) = (host.as_object_mut(), changes.as_object()) {
            for (k, v) in c {
                if !v.is_null() {
                    h.insert(k.clone(), v.clone());
                }
            }
        }
        let host: bollard_stubs::models::HostConfig =
            serde_json::from_value(host).map_err(|err| ContainerError::Invalid(err.to_string()))?;
        if rec.host_config.auto_remove.unwrap_or(false)
            && host
                .restart_policy
                .as_ref()
                .and_then(|p| p.name)
                .is_some_and(|n| !matches!(n.to_string().as_str(), "" | "no"))
        {
            return Err(ContainerError::Invalid(
                "Cannot update container: cannot set a restart policy on a container started with --rm"
                    .into(),
            ));
        }
        super::spec::validate(&rec.config, &host).map_err(|err| ContainerError::Invalid(err.to_string()))?;
        if rec.state.status.is_running() {
            let res = super::spec::resources::limits(&host, super::spec::host::host_info())
                .map_err(|err| ContainerError::Invalid(err.to_string()))?;
            let json = serde_json::to_vec(&res).map_err(|err| ContainerError::System(err.to_string()))?;
            self.runtime(&["update", "--resources", "-", &rec.id], Some(json))
                .await
                .map_err(|err| {
                    ContainerError::Invalid(format!("Cannot update container {}: {err}", rec.id))
                })?;
        }
        let snap = {
            let mut r = e.rec();
            r.host_config = host;
            r.clone()
        };
        self.save(&snap)?;
        self.event(&snap, "update", &[]);
        Ok(Vec::new())
    }
}

/// A byte stream produced by a blocking task (an archive being written).
pub type ByteStream = mpsc::Receiver<std::result::Result<bytes::Bytes, std::io::Error>>;

/// An `io::Write` that sends what it is given down a channel, from a blocking task.
struct ChannelWriter(mpsc::Sender<std::result::Result<bytes::Bytes, std::io::Error>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(bytes::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ContainerService {
    /// Runs `f` on the container's root, mounted for the time of the call if the container is not running (and
    /// then no start can happen meanwhile).
    async fn with_root<T: Send + 'static>(
        self: &Arc<Self>,
        name: &str,
        f: impl FnOnce(&super::record::Record, &std::path::Path) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let e = self.lookup(name)?;
        let running = e.rec().state.status.is_running();
        let _op = if running { None } else { Some(e.op.lock().await) };
        let rec = e.snapshot();
        let ly = self.layers(&rec.id);
        let mounted_here = !rec.state.status.is_running() && !super::layers::is_mount_point(&ly.merged());
        let svc = self.clone();
        tokio::task::spawn_blocking(move || -> Result<T> {
            let root = svc.mount_root(&rec)?;
            let r = f(&rec, &root);
            if mounted_here {
                let _ = ly.unmount();
            }
            r
        })
        .await
        .map_err(|err| ContainerError::System(err.to_string()))?
    }

    fn container_fs(rec: &super::record::Record, root: &std::path::Path) -> super::archive::ContainerFs {
        let mounts: Vec<super::archive::MountPoint> = rec
            .mounts
            .iter()
            .filter(|m| m.typ.as_deref() != Some("tmpfs"))
            .filter_map(|m| {
                Some(super::archive::MountPoint {
                    destination: m.destination.clone()?,
                    source: m.source.clone().filter(|s| !s.is_empty())?.into(),
                    read_only: !m.rw.unwrap_or(true),
                })
            })
            .collect();
        super::archive::ContainerFs::new(
            &rec.name,
            root,
            &mounts,
            rec.host_config.readonly_rootfs.unwrap_or(false),
        )
    }

    /// `HEAD /containers/{id}/archive?path=`.
    pub async fn archive_stat(self: &Arc<Self>, name: &str, path: &str) -> Result<super::archive::PathStat> {
        let path = path.to_string();
        self.with_root(name, move |rec, root| {
            Ok(Self::container_fs(rec, root).stat(&path)?)
        })
        .await
    }

    /// `GET /containers/{id}/archive?path=`: the stat, then the tar as a stream.
    pub async fn archive_get(
        self: &Arc<Self>,
        name: &str,
        path: &str,
    ) -> Result<(super::archive::PathStat, ByteStream)> {
        let stat = self.archive_stat(name, path).await?;
        let (tx, rx) = mpsc::channel(16);
        let svc = self.clone();
        let name = name.to_string();
        let path = path.to_string();
        tokio::spawn(async move {
            let tx2 = tx.clone();
            let r = svc
                .with_root(&name, move |rec, root| {
                    Ok(Self::container_fs(rec, root).archive(&path, ChannelWriter(tx2))?)
                })
                .await;
            if let Err(err) = r {
                let _ = tx.send(Err(std::io::Error::other(err.to_string()))).await;
            }
        });
        Ok((stat, rx))
    }

    /// `PUT /containers/{id}/archive?path=&noOverwriteDirNonDir=&copyUIDGID=`: extracts a tar (plain, gzip or
    /// zstd) read from `input` (a blocking reader) at `path`.
    pub async fn archive_put(
        self: &Arc<Self>,
        name: &str,
        path: &str,
        input: Box<dyn std::io::Read + Send>,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<()> {
        let path = path.to_string();
        self.with_root(name, move |rec, root| {
            let chown = if copy_uid_gid {
                let user = rec.config.user.clone().unwrap_or_default();
                let u = super::spec::user::resolve_user(root, &user, &[])
                    .map_err(|err| ContainerError::Invalid(err.to_string()))?;
                Some((u.uid, u.gid))
            } else {
                None
            };
            let opts = super::archive::ExtractOptions {
                no_overwrite_dir_non_dir,
                chown,
            };
            Ok(Self::container_fs(rec, root).extract(&path, input, opts)?)
        })
        .await
    }

    /// `GET /containers/{id}/export`: the container's root as a tar stream.
    pub async fn export(self: &Arc<Self>, name: &str) -> Result<ByteStream> {
        let rec = self.get(name)?;
        let (tx, rx) = mpsc::channel(16);
        let svc = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let tx2 = tx.clone();
            let r = svc
                .with_root(&name, move |_, root| {
                    Ok(super::archive::export(root, ChannelWriter(tx2))?)
                })
                .await;
            if let Err(err) = r {
                let _ = tx.send(Err(std::io::Error::other(err.to_string()))).await;
            }
        });
        self.event(&rec, "export", &[]);
        Ok(rx)
    }

    /// `GET /containers/{id}/changes`: the writable layer against the image.
    pub async fn changes(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<Vec<bollard_stubs::models::FilesystemChange>> {
        let rec = self.get(name)?;
        let upper = self.layers(&rec.id).upper();
        let lowers: Vec<std::path::PathBuf> = std::iter::once(self.layers(&rec.id).init_dir().join("diff"))
            .chain(rec.lowers.iter().cloned())
            .collect();
        tokio::task::spawn_blocking(move || super::archive::changes(&upper, &lowers))
            .await
            .map_err(|err| ContainerError::System(err.to_string()))?
            .map_err(Into::into)
    }
}
