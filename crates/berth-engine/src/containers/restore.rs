//! Start-up: load the records, sweep what no record owns (layers, container directories, run directories of a
//! create or start the daemon did not finish), reconnect to the monitors of running containers (live restore),
//! record the exits that happened while the daemon was away, and apply restart policies.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use super::monitor::{self, ExitRecord};
use super::record::Status;
use super::{ContainerService, Entry, Result, layers, store};

/// Answers "who uses this image / volume" for the image and volume services.
#[derive(Debug)]
struct Users(Weak<ContainerService>);

impl crate::images::ImageUsers for Users {
    fn users(&self, id: &str) -> Vec<(String, bool)> {
        self.0.upgrade().map(|s| s.users_of_image(id)).unwrap_or_default()
    }
}

impl crate::volumes::VolumeUsers for Users {
    fn users(&self, name: &str) -> Vec<String> {
        self.0
            .upgrade()
            .map(|s| s.users_of_volume(name))
            .unwrap_or_default()
    }
}

impl ContainerService {
    /// Gives the network service the endpoints and published ports of the containers that still run, then lets
    /// it release everything else (addresses, veths, namespaces of containers that are gone) and re-apply the
    /// ruleset.
    async fn restore_networks(&self) {
        let running: Vec<super::Record> = self
            .entries()
            .values()
            .map(|e| e.snapshot())
            .filter(|r| r.state.status.is_running())
            .collect();
        let mut ids = HashSet::new();
        for rec in &running {
            ids.insert(rec.id.clone());
            let member = crate::networks::Member {
                id: &rec.id,
                name: &rec.name,
            };
            let mut first_ip = None;
            for ep in rec.networks.values() {
                let (Some(a), Ok(net)) = (&ep.live, self.networks.get(&ep.network_id)) else {
                    continue;
                };
                if a.ifname == "eth0" {
                    first_ip = Some(a.ip);
                }
                self.networks.restore_running(&member, &net, ep, a);
            }
            if let (Some(ip), false) = (first_ip, rec.ports.is_empty()) {
                let requests: Vec<crate::networks::PortRequest> = rec
                    .ports
                    .iter()
                    .map(|p| crate::networks::PortRequest {
                        udp: p.udp,
                        host_ip: p.host_ip,
                        host_ports: Some((p.host_port, p.host_port)),
                        container_port: p.container_port,
                    })
                    .collect();
                if let Err(err) = self.networks.publish(&rec.id, ip, &requests).await {
                    tracing::warn!(container = %rec.id, error = %err, "cannot publish the container's ports again");
                }
            }
        }
        self.networks.sweep(&ids).await;
    }

    pub(crate) async fn restore(self: Arc<Self>) -> Result<()> {
        let recs = store::load_all(&self.db)?;
        let known: HashSet<String> = recs.iter().map(|r| r.id.clone()).collect();
        for id in layers::container_layer_ids(&self.layers_root) {
            if !known.contains(&id) {
                tracing::info!(container = %id, "removing the layers of a container that was never committed");
                let _ = self.layers(&id).remove();
            }
        }
        // The exec root is shared by every `userns-remap` mapping (and none): a running container this data root
        // does not know belongs to another mapping, and switching while it runs would orphan it.
        if let Ok(rd) = std::fs::read_dir(&self.dirs.run) {
            for ent in rd.flatten() {
                let id = ent.file_name().to_string_lossy().into_owned();
                if !known.contains(&id) && monitor::alive(&ent.path()).await {
                    return Err(super::ContainerError::Conflict(format!(
                        "container {id} of another user-namespace mapping (or of none) is still running: stop and \
                         remove the containers of the previous userns-remap setting before changing it"
                    )));
                }
            }
        }
        for dir in [&self.dirs.containers, &self.dirs.run] {
            let Ok(rd) = std::fs::read_dir(dir) else { continue };
            for ent in rd.flatten() {
                let id = ent.file_name().to_string_lossy().into_owned();
                if known.contains(&id) {
                    continue;
                }
                if dir == &self.dirs.run {
                    let _ = self.runtime(&["delete", "--force", &id], None).await;
                }
                tracing::info!(path = %ent.path().display(), "removing the files of a container that was never committed");
                let _ = std::fs::remove_dir_all(ent.path());
            }
        }
        {
            let users = Arc::new(Users(Arc::downgrade(&self)));
            self.images.set_users(users.clone());
            self.volumes.set_users(users);
        }
        let mut to_restart = Vec::new();
        for rec in recs {
            let e = Entry::new(rec.clone());
            self.entries_mut().insert(rec.id.clone(), e.clone());
            let run = self.run_dir(&rec.id);
            let status = monitor::request(&run, serde_json::json!({"op": "status"}))
                .await
                .ok();
            let monitor_state = status
                .as_ref()
                .and_then(|s| s.get("state").and_then(|v| v.as_str()).map(str::to_string));
            match (rec.state.status, monitor_state.as_deref()) {
                (Status::Running | Status::Paused | Status::Restarting, Some("running")) => {
                    tracing::info!(container = %rec.id, "reconnected to the container's monitor");
                    self.clone().watch_exit(e.clone());
                }
                (Status::Running | Status::Paused | Status::Restarting, _) => {
                    // A monitor that still answers is finishing (draining the output, writing exit.json):
                    // its wait answer is the exit; otherwise it left exit.json behind, or nothing.
                    let waited = match &status {
                        Some(_) => {
                            tokio::time::timeout(std::time::Duration::from_secs(10), monitor::wait(&run))
                                .await
                                .ok()
                                .and_then(Result::ok)
                        }
                        None => None,
                    };
                    let exit = waited.or_else(|| monitor::exit_record(&run)).unwrap_or_else(|| ExitRecord {
                        exit_code: 255,
                        error: "the container's monitor ended while the daemon was down, without recording an exit"
                            .into(),
                        ..Default::default()
                    });
                    if rec.state.status == Status::Restarting {
                        e.rec().state.status = Status::Running;
                    }
                    self.finish(&e, exit).await;
                }
                (Status::Removing, _) => {
                    let _ = self.remove(&rec.id, true, false).await;
                    continue;
                }
                (_, Some("running")) => {
                    // The daemon died after the program started but before it recorded the start.
                    let pid = status
                        .as_ref()
                        .and_then(|s| s.get("pid").and_then(|v| v.as_i64()))
                        .unwrap_or(0);
                    let snap = {
                        let mut r = e.rec();
                        r.state.status = Status::Running;
                        r.state.pid = pid;
                        r.state.started_at = crate::time::now_nanos();
                        r.has_been_started = true;
                        r.clone()
                    };
                    self.save(&snap)?;
                    e.tx.send_modify(|s| s.running = true);
                    tracing::info!(container = %rec.id, "adopted a container whose start the daemon did not record");
                    self.clone().watch_exit(e.clone());
                }
                (_, other) => {
                    // A start the daemon did not finish: undo it.
                    if other.is_some() {
                        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
                            let _ = self.runtime(&["delete", "--force", &rec.id], None).await;
                            let _ = monitor::wait(&run).await;
                        })
                        .await;
                    }
                    if run.exists() || layers::is_mount_point(&self.layers(&rec.id).merged()) {
                        self.cleanup_run(&rec).await;
                    }
                }
            }
            let r = e.snapshot();
            let policy = r
                .host_config
                .restart_policy
                .as_ref()
                .and_then(|p| p.name)
                .map(|n| n.to_string())
                .unwrap_or_default();
            // As dockerd: `always` comes back with the daemon even after a manual stop; `unless-stopped` not.
            if !r.state.status.is_running()
                && r.has_been_started
                && (policy == "always" || (policy == "unless-stopped" && !r.state.manually_stopped))
            {
                to_restart.push(e.clone());
            }
        }
        self.restore_networks().await;
        for e in to_restart {
            let svc = self.clone();
            tokio::spawn(async move {
                let _op = e.op.lock().await;
                if let Err(err) = svc.start_locked(&e).await {
                    tracing::warn!(container = %e.id(), error = %err, "cannot restart the container at daemon start");
                }
            });
        }
        Ok(())
    }
}
