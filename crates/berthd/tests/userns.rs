//! `userns-remap` (issue 7): container root is an unprivileged host id.
//!
//! Every daemon reads its users and subordinate ranges from a temporary `BERTH_ETC_DIR` (never the real `/etc`).
//! Shown here: the classic demonstration (a remapped root cannot remove a root-owned host file through a bind
//! mount; an unmapped one can), `/proc/<pid>/uid_map` and `gid_map` seen from the host, the container's root
//! owning its own root filesystem and new volumes, images kept per mapping, `--userns=host`, `--privileged`, both
//! layer modes (idmapped mounts and the shifted fallback, `BERTH_USERNS_LAYERS=shifted`) and `berth info`, bad
//! mappings refused with nothing changed, and `default` creating `berthremap` once.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Daemon, busybox_image, ok, start_env};

/// alice: uid/gid 2001, ids 300000-365535.
const ALICE_START: u32 = 300_000;
/// bob: uid/gid 2002, ids 400000-465535.
const BOB_START: u32 = 400_000;
const SIZE: u32 = 65_536;

// ---------------------------------------------------------------------------------------------------------
// Fixtures.

/// A `BERTH_ETC_DIR`: passwd, group, subuid and subgid of its own.
struct Etc {
    dir: tempfile::TempDir,
}

impl Etc {
    /// root, alice (2001) and bob (2002) with a group each; `subuid`/`subgid` as given.
    fn with(subuid: &str, subgid: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-userns-etc-")
            .tempdir()
            .expect("make the etc dir");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"));
        };
        write(
            "passwd",
            "root:x:0:0:root:/root:/bin/sh\n\
             alice:x:2001:2001::/nonexistent:/usr/sbin/nologin\n\
             bob:x:2002:2002::/nonexistent:/usr/sbin/nologin\n\
             carol:x:2003:2003::/nonexistent:/usr/sbin/nologin\n",
        );
        write("group", "root:x:0:\nalice:x:2001:\nbob:x:2002:\ncarol:x:2003:\n");
        write("subuid", subuid);
        write("subgid", subgid);
        Etc { dir }
    }

    /// alice and bob with one full range each (carol has none).
    fn standard() -> Self {
        let ranges = format!("alice:{ALICE_START}:{SIZE}\nbob:{BOB_START}:{SIZE}\n");
        Self::with(&ranges, &ranges)
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// The four files' contents (to show that nothing changed).
    fn contents(&self) -> BTreeMap<String, String> {
        ["passwd", "group", "subuid", "subgid"]
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
                (n.to_string(), text)
            })
            .collect()
    }
}

/// A daemon with `--userns-remap <spec>` (or none for `None`) reading ids from `etc`, plus extra environment.
fn daemon(spec: Option<&str>, etc: &Etc, env: &[(&str, &str)]) -> Daemon {
    let etc_dir = etc.path();
    let mut all = vec![("BERTH_ETC_DIR", etc_dir.as_str())];
    all.extend_from_slice(env);
    match spec {
        Some(s) => start_env(&["--userns-remap", s], &all),
        None => start_env(&[], &all),
    }
}

/// Restarts `d` (stopped) on the same directories with `--userns-remap <spec>` or without it.
fn restart(d: &mut Daemon, spec: Option<&str>, etc: &Etc, env: &[(&str, &str)]) {
    let etc_dir = etc.path();
    let mut all = vec![("BERTH_ETC_DIR", etc_dir.as_str())];
    all.extend_from_slice(env);
    match spec {
        Some(s) => d.restart_env(&["--userns-remap", s], &all),
        None => d.restart_env(&[], &all),
    }
}

fn stop(d: &mut Daemon) {
    assert!(d.terminate().is_some(), "berthd did not stop:\n{}", d.log_text());
}

/// The data root of a mapping whose root is `start` (uid and gid alike).
fn mapping_root(d: &Daemon, start: u32) -> PathBuf {
    d.data.join(format!("{start}.{start}"))
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `berth info --format <fmt>`.
fn info(d: &Daemon, fmt: &str) -> String {
    ok(&d.berth(&["info", "--format", fmt])).trim().to_string()
}

/// The image references the daemon lists.
fn images(d: &Daemon) -> Vec<String> {
    let out = ok(&d.berth(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    let mut v: Vec<String> = out
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

/// Starts a detached `sleep` container and returns its host pid.
fn sleeper(d: &Daemon, name: &str, opts: &[&str]) -> u32 {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["bb", "sleep", "1000"]);
    ok(&d.berth(&args));
    let pid = ok(&d.berth(&["inspect", "--format", "{{.State.Pid}}", name]));
    let pid: u32 = pid
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("pid of {name}: {pid:?}: {e}"));
    assert!(pid > 0, "{name} has no pid");
    pid
}

/// `/proc/<pid>/<file>` as lines of whitespace-separated fields.
fn id_map(pid: u32, file: &str) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/{file}: {e}"));
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn fields(a: &[&str]) -> Vec<Vec<String>> {
    vec![a.iter().map(|s| s.to_string()).collect()]
}

/// A root-owned directory (0755) with root-owned files (0644) holding their own names.
fn scratch(parent: &Path, files: &[&str]) -> PathBuf {
    let dir = parent.join("scratch");
    std::fs::create_dir_all(&dir).expect("make the scratch dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod scratch");
    for f in files {
        let p = dir.join(f);
        std::fs::write(&p, f).expect("write a scratch file");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod a scratch file");
        let m = std::fs::metadata(&p).expect("stat");
        assert_eq!((m.uid(), m.gid()), (0, 0), "the tests run as root");
    }
    dir
}

/// The classic demonstration with `d` (remapped): `rm /host/<file>` through a bind mount is refused and the file
/// stays; the container sees the file owned by the overflow id (it keeps its host owner).
fn remapped_root_cannot_remove(d: &Daemon, dir: &Path, file: &str) {
    let bind = format!("{}:/host", dir.display());
    let o = d.berth(&["run", "--rm", "-v", &bind, "bb", "rm", &format!("/host/{file}")]);
    assert!(!o.status.success(), "rm through the bind succeeded with remap");
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(dir.join(file)).expect("the host file is still there"),
        file
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "bb",
        "stat",
        "-c",
        "%u:%g",
        &format!("/host/{file}"),
    ]);
    assert_eq!(
        ok(&o).trim(),
        "65534:65534",
        "a host root file is unmapped inside"
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "bb",
        "sh",
        "-c",
        &format!("echo x >> /host/{file}"),
    ]);
    assert!(
        !o.status.success(),
        "writing to the host file succeeded with remap"
    );
    assert_eq!(std::fs::read_to_string(dir.join(file)).expect("read"), file);
}

/// The directories a berthd is started on, to start one that must refuse.
struct Place {
    config: PathBuf,
    sock: PathBuf,
    pidfile: PathBuf,
    data: PathBuf,
    exec_root: PathBuf,
    cgroup_parent: String,
    log: PathBuf,
}

impl Place {
    /// `d`'s directories (after it stopped).
    fn of(d: &Daemon) -> Self {
        Place {
            config: d.dir.path().join("daemon.json"),
            sock: d.sock.clone(),
            pidfile: d.pidfile.clone(),
            data: d.data.clone(),
            exec_root: d.exec_root.clone(),
            cgroup_parent: d.cgroup_parent.clone(),
            log: d.dir.path().join("refused.log"),
        }
    }

    /// Fresh directories under `dir`.
    fn fresh(dir: &Path) -> Self {
        let config = dir.join("daemon.json");
        std::fs::write(&config, "{}").expect("write daemon.json");
        Place {
            config,
            sock: dir.join("berth.sock"),
            pidfile: dir.join("berthd.pid"),
            data: dir.join("data"),
            exec_root: dir.join("exec"),
            cgroup_parent: format!("/{}", berth_test_support::ids::unique_id("berthd-userns")),
            log: dir.join("refused.log"),
        }
    }

    /// Starts berthd here expecting a refusal: it must exit non-zero within 20 s without ever listening.
    /// Returns its output.
    fn refused(&self, extra: &[&str], etc: &Etc) -> String {
        let log = std::fs::File::create(&self.log).expect("create the log");
        let mut cmd = Command::new(common::berthd_bin());
        common::berthd_args(
            &mut cmd,
            &common::DaemonPaths {
                config: &self.config,
                sock: &self.sock,
                pidfile: &self.pidfile,
                data: &self.data,
                exec_root: &self.exec_root,
                cgroup_parent: &self.cgroup_parent,
            },
            true,
            extra,
        );
        let mut child = cmd
            .env("BERTH_ETC_DIR", etc.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .expect("start berthd");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Ok(Some(s)) = child.try_wait() {
                break s;
            }
            if Instant::now() > deadline || std::os::unix::net::UnixStream::connect(&self.sock).is_ok() {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "berthd {extra:?} started instead of refusing:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(!status.success(), "berthd {extra:?} exited with success:\n{out}");
        out
    }
}

/// The names directly under `dir` (none if it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------------------
// Tests.

#[test]
fn remapped_root_cannot_remove_a_root_owned_host_file_but_unmapped_root_can() {
    let etc = Etc::standard();
    let mut d = daemon(Some("alice"), &etc, &[]);
    let dir = scratch(d.dir.path(), &["keep", "plain"]);
    busybox_image(&d, "bb:latest");
    remapped_root_cannot_remove(&d, &dir, "keep");

    // The same daemon without remap: root in the container is host root and removes the second file.
    stop(&mut d);
    restart(&mut d, None, &etc, &[]);
    busybox_image(&d, "bb:latest");
    let bind = format!("{}:/host", dir.display());
    ok(&d.berth(&["run", "--rm", "-v", &bind, "bb", "rm", "/host/plain"]));
    assert!(
        !dir.join("plain").exists(),
        "unmapped root did not remove the file"
    );
    assert!(dir.join("keep").exists());
}

#[test]
fn uid_map_and_gid_map_from_the_host_show_the_mapping_and_info_shows_userns() {
    let etc = Etc::standard();
    let d = daemon(Some("alice"), &etc, &[]);
    busybox_image(&d, "bb:latest");
    let pid = sleeper(&d, "mapped", &[]);
    let want = fields(&["0", &ALICE_START.to_string(), &SIZE.to_string()]);
    assert_eq!(id_map(pid, "uid_map"), want);
    assert_eq!(id_map(pid, "gid_map"), want);
    // The process's host ids are the mapped root's.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).expect("Uid line");
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|f| f == ALICE_START.to_string()),
        "{uid_line}"
    );
    // Inside, the same mapping and root.
    let o = ok(&d.berth(&["exec", "mapped", "sh", "-c", "id -u; cat /proc/self/uid_map"]));
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "300000", "65536"]
    );

    assert_eq!(
        info(&d, "{{.DockerRootDir}}"),
        mapping_root(&d, ALICE_START).display().to_string()
    );
    let sec = info(&d, "{{json .SecurityOptions}}");
    assert!(sec.contains("\"name=userns\""), "{sec}");
    let driver = info(&d, "{{json .DriverStatus}}");
    assert!(
        driver.contains("[\"Userns layers\",\"idmapped mounts\"]"),
        "{driver}"
    );
    let text = ok(&d.docker(&["info"]));
    assert!(text.contains("Userns layers: idmapped mounts"), "{text}");
    assert!(text.lines().any(|l| l.trim() == "userns"), "{text}");
}

#[test]
fn plain_daemon_shows_no_userns_in_info() {
    let etc = Etc::standard();
    let d = daemon(None, &etc, &[]);
    let sec = info(&d, "{{json .SecurityOptions}}");
    assert!(!sec.contains("userns"), "{sec}");
    let driver = info(&d, "{{json .DriverStatus}}");
    assert!(
        driver.contains("[\"Userns layers\",\"not remapped\"]"),
        "{driver}"
    );
    assert_eq!(info(&d, "{{.DockerRootDir}}"), d.data.display().to_string());
}

#[test]
fn container_root_owns_its_root_filesystem_and_new_volumes() {
    let etc = Etc::standard();
    let d = daemon(Some("alice"), &etc, &[]);
    busybox_image(&d, "bb:latest");
    let script = "set -e; id -u; stat -c %u:%g / /bin/busybox /etc/passwd; touch /newfile; mkdir /etc/newdir; \
                  echo hi > /root/f; chown 1000:1000 /root/f; stat -c %u:%g /root/f; touch /data/f; \
                  mkdir /data/d; chown 1000:1000 /data/d; echo done";
    let o = d.berth(&[
        "run",
        "--name",
        "owner",
        "-v",
        "vol:/data",
        "bb",
        "sh",
        "-c",
        script,
    ]);
    let out = ok(&o);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "0:0", "0:0", "0:0", "1000:1000", "done"],
        "{}",
        stderr(&o)
    );

    // On the host: the container's new files are owned by the mapped ids.
    let upper = ok(&d.berth(&["inspect", "--format", "{{.GraphDriver.Data.UpperDir}}", "owner"]));
    let upper = PathBuf::from(upper.trim());
    let owner = |p: &Path| {
        let m = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&upper.join("newfile")), (ALICE_START, ALICE_START));
    assert_eq!(owner(&upper.join("etc/newdir")), (ALICE_START, ALICE_START));
    assert_eq!(
        owner(&upper.join("root/f")),
        (ALICE_START + 1000, ALICE_START + 1000)
    );
    let vol = mapping_root(&d, ALICE_START).join("volumes/vol/_data");
    assert_eq!(
        owner(&vol),
        (ALICE_START, ALICE_START),
        "the new volume belongs to the mapped root"
    );
    assert_eq!(owner(&vol.join("f")), (ALICE_START, ALICE_START));
    assert_eq!(owner(&vol.join("d")), (ALICE_START + 1000, ALICE_START + 1000));
    let api = ok(&d.berth(&["volume", "inspect", "--format", "{{.Mountpoint}}", "vol"]));
    assert_eq!(api.trim(), vol.display().to_string());
}

#[test]
fn images_are_kept_per_mapping_and_switching_back_shows_them_again() {
    let etc = Etc::standard();
    let mut d = daemon(None, &etc, &[]);
    busybox_image(&d, "plain:1");
    assert_eq!(images(&d), ["plain:1"]);

    stop(&mut d);
    restart(&mut d, Some("alice"), &etc, &[]);
    assert!(
        images(&d).is_empty(),
        "an image imported without remap is visible with it"
    );
    busybox_image(&d, "mapped:1");
    assert_eq!(images(&d), ["mapped:1"]);
    ok(&d.berth(&["run", "--rm", "mapped:1", "true"]));
    assert!(mapping_root(&d, ALICE_START).join("overlay2").is_dir());

    stop(&mut d);
    restart(&mut d, None, &etc, &[]);
    assert_eq!(images(&d), ["plain:1"], "switching remap off");
    ok(&d.berth(&["run", "--rm", "plain:1", "true"]));

    // Back on, this time from daemon.json; and a second mapping sees neither.
    stop(&mut d);
    std::fs::write(d.dir.path().join("daemon.json"), r#"{"userns-remap": "alice"}"#).expect("daemon.json");
    restart(&mut d, None, &etc, &[]);
    assert_eq!(images(&d), ["mapped:1"], "switching remap on again (daemon.json)");
    assert_eq!(
        info(&d, "{{.DockerRootDir}}"),
        mapping_root(&d, ALICE_START).display().to_string()
    );
    stop(&mut d);
    std::fs::write(d.dir.path().join("daemon.json"), "{}").expect("daemon.json");
    restart(&mut d, Some("bob"), &etc, &[]);
    assert!(
        images(&d).is_empty(),
        "another mapping sees the images of alice's"
    );
    let mapping_dirs: Vec<String> = entries(&d.data)
        .into_iter()
        .filter(|e| {
            e.split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    assert_eq!(
        mapping_dirs,
        [
            format!("{ALICE_START}.{ALICE_START}"),
            format!("{BOB_START}.{BOB_START}")
        ]
    );
}

#[test]
fn userns_host_opts_out() {
    let etc = Etc::standard();
    let d = daemon(Some("alice"), &etc, &[]);
    let dir = scratch(d.dir.path(), &["gone"]);
    busybox_image(&d, "bb:latest");
    let pid = sleeper(&d, "hostns", &["--userns=host"]);
    let host = fields(&["0", "0", "4294967295"]);
    assert_eq!(id_map(pid, "uid_map"), host);
    assert_eq!(id_map(pid, "gid_map"), host);
    let own = std::fs::read_link(format!("/proc/{pid}/ns/user")).expect("ns/user");
    let mine = std::fs::read_link("/proc/self/ns/user").expect("ns/user");
    assert_eq!(own, mine, "--userns=host shares the host's user namespace");
    // Root of an opted-out container is host root.
    let bind = format!("{}:/host", dir.display());
    ok(&d.berth(&[
        "run",
        "--rm",
        "--userns=host",
        "-v",
        &bind,
        "bb",
        "rm",
        "/host/gone",
    ]));
    assert!(!dir.join("gone").exists());
    // An unknown mode is refused.
    let o = d.berth(&["run", "--rm", "--userns=private", "bb", "true"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("private"), "{}", stderr(&o));
}

#[test]
fn privileged_with_remap_needs_userns_host() {
    let etc = Etc::standard();
    let d = daemon(Some("alice"), &etc, &[]);
    busybox_image(&d, "bb:latest");
    let o = d.berth(&["run", "--rm", "--privileged", "bb", "true"]);
    assert!(!o.status.success(), "privileged ran in the remapped namespace");
    assert!(
        stderr(&o).contains("privileged mode is incompatible with user namespaces")
            && stderr(&o).contains("--userns=host"),
        "{}",
        stderr(&o)
    );
    let (s, v) = d.json(
        "POST",
        "/containers/create",
        br#"{"Image":"bb","Cmd":["true"],"HostConfig":{"Privileged":true}}"#,
    );
    assert_eq!(s, 400, "{v}");
    assert!(
        ok(&d.berth(&["ps", "-aq"])).trim().is_empty(),
        "a refused create left a container"
    );
    let out = ok(&d.berth(&[
        "run",
        "--rm",
        "--privileged",
        "--userns=host",
        "bb",
        "cat",
        "/proc/self/uid_map",
    ]));
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["0", "0", "4294967295"]
    );
}

#[test]
fn shifted_layers_work_are_shifted_once_and_show_in_info() {
    let etc = Etc::standard();
    let d = daemon(Some("alice"), &etc, &[("BERTH_USERNS_LAYERS", "shifted")]);
    let driver = info(&d, "{{json .DriverStatus}}");
    assert!(
        driver.contains("[\"Userns layers\",\"shifted unpack\"]"),
        "{driver}"
    );
    let sec = info(&d, "{{json .SecurityOptions}}");
    assert!(sec.contains("\"name=userns\""), "{sec}");
    let dir = scratch(d.dir.path(), &["keep"]);
    busybox_image(&d, "bb:latest");
    remapped_root_cannot_remove(&d, &dir, "keep");

    let pid = sleeper(&d, "shifted", &[]);
    assert_eq!(id_map(pid, "uid_map"), fields(&["0", "300000", "65536"]));
    let o = ok(&d.berth(&[
        "exec",
        "shifted",
        "sh",
        "-c",
        "stat -c %u:%g / /bin /bin/busybox; touch /bin/new && echo ok",
    ]));
    assert_eq!(o.lines().collect::<Vec<_>>(), ["0:0", "0:0", "0:0", "ok"]);

    // The image's layer is owned by the mapped root on the host, marked, and not shifted again later.
    let lower = ok(&d.berth(&["inspect", "--format", "{{.GraphDriver.Data.LowerDir}}", "shifted"]));
    let layer_diff = lower
        .trim()
        .split(':')
        .find(|p| !p.contains("-init/"))
        .map(PathBuf::from)
        .expect("an image layer");
    let busybox = layer_diff.join("bin/busybox");
    let m = std::fs::metadata(&busybox).expect("stat busybox in the layer");
    assert_eq!((m.uid(), m.gid()), (ALICE_START, ALICE_START));
    let marker = layer_diff.parent().expect("layer dir").join("shifted");
    assert!(marker.exists(), "no shift marker at {}", marker.display());
    let ctime = (m.ctime(), m.ctime_nsec());
    ok(&d.berth(&["run", "--rm", "bb", "true"]));
    let m = std::fs::metadata(&busybox).expect("stat busybox again");
    assert_eq!((m.ctime(), m.ctime_nsec()), ctime, "the layer was shifted again");
    assert_eq!((m.uid(), m.gid()), (ALICE_START, ALICE_START));
}

/// BUG (see the report): a layer shifted under BERTH_USERNS_LAYERS=shifted is later idmapped on top of its shifted
/// owners when the daemon comes back in idmapped mode, so the image's files show as 65534 inside.
#[test]
fn layers_shifted_once_keep_their_owners_when_the_daemon_switches_to_idmapped_mounts() {
    let etc = Etc::standard();
    let mut d = daemon(Some("alice"), &etc, &[("BERTH_USERNS_LAYERS", "shifted")]);
    busybox_image(&d, "bb:latest");
    let o = ok(&d.berth(&["run", "--rm", "bb", "stat", "-c", "%u:%g", "/bin"]));
    assert_eq!(o.trim(), "0:0");
    stop(&mut d);
    restart(&mut d, Some("alice"), &etc, &[]);
    let driver = info(&d, "{{json .DriverStatus}}");
    assert!(driver.contains("idmapped mounts"), "{driver}");
    let o = d.berth(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "stat -c %u:%g /bin /bin/busybox; touch /bin/x && echo ok",
    ]);
    assert_eq!(
        ok(&o).lines().collect::<Vec<_>>(),
        ["0:0", "0:0", "ok"],
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_mappings_are_refused_and_change_nothing() {
    let cases: [(&str, &str, &str, &[&str]); 5] = [
        (
            "no subordinate range",
            "alice:300000:65536\n",
            "carol",
            &["no subordinate uid range for user carol"],
        ),
        (
            "too few ids",
            "carol:300000:30000\ncarol:400000:35535\n",
            "carol",
            &["hold 65535 ids", "needs at least 65536 ids"],
        ),
        (
            "overlapping ranges",
            "carol:300000:65536\ncarol:350000:65536\n",
            "carol",
            &["300000-365535", "350000-415535", "overlap"],
        ),
        (
            "a range with host root",
            "carol:0:65536\n",
            "carol",
            &["includes host uid 0"],
        ),
        (
            "an unknown user",
            "alice:300000:65536\n",
            "nobody-here",
            &["\"nobody-here\" does not exist"],
        ),
    ];
    for (what, subuid, user, needles) in cases {
        let etc = Etc::with(subuid, "alice:300000:65536\ncarol:300000:65536\n");
        let before = etc.contents();
        let dir = tempfile::Builder::new()
            .prefix("berthd-userns-bad-")
            .tempdir()
            .expect("temp dir");
        let place = Place::fresh(dir.path());
        // Once from the flag, once from daemon.json.
        for from_file in [false, true] {
            let out = if from_file {
                std::fs::write(&place.config, format!(r#"{{"userns-remap": "{user}"}}"#))
                    .expect("daemon.json");
                place.refused(&[], &etc)
            } else {
                place.refused(&["--userns-remap", user], &etc)
            };
            for n in needles {
                assert!(out.contains(n), "{what}: no {n:?} in:\n{out}");
            }
            assert!(
                out.contains(&etc.path()),
                "{what}: the error names no file:\n{out}"
            );
            assert!(
                entries(&place.data).is_empty(),
                "{what}: {:?} in the data root",
                entries(&place.data)
            );
            assert!(!place.sock.exists(), "{what}: a socket was left");
            assert_eq!(etc.contents(), before, "{what}: the id files changed");
        }
    }
}

#[test]
fn a_mapping_change_is_refused_while_containers_of_the_old_one_run() {
    let etc = Etc::standard();
    let mut d = daemon(Some("alice"), &etc, &[]);
    busybox_image(&d, "bb:latest");
    let pid = sleeper(&d, "old", &[]);
    stop(&mut d);
    let place = Place::of(&d);
    for extra in [&["--userns-remap", "bob"][..], &[]] {
        let out = place.refused(extra, &etc);
        assert!(
            out.contains("still running") && out.contains("userns-remap"),
            "{extra:?}: unclear error:\n{out}"
        );
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "the old container died"
        );
    }

    // The old mapping still works; stop its containers and the change goes through.
    restart(&mut d, Some("alice"), &etc, &[]);
    let st = ok(&d.berth(&["inspect", "--format", "{{.State.Status}}", "old"]));
    assert_eq!(st.trim(), "running");
    ok(&d.berth(&["stop", "-t", "0", "old"]));
    stop(&mut d);
    restart(&mut d, Some("bob"), &etc, &[]);
    assert_eq!(
        info(&d, "{{.DockerRootDir}}"),
        mapping_root(&d, BOB_START).display().to_string()
    );
    busybox_image(&d, "bb:latest");
    let pid = sleeper(&d, "new", &[]);
    assert_eq!(id_map(pid, "uid_map"), fields(&["0", "400000", "65536"]));
    // And from bob back to none is refused while bob's container runs.
    stop(&mut d);
    let out = Place::of(&d).refused(&[], &etc);
    assert!(out.contains("still running"), "{out}");
    restart(&mut d, Some("bob"), &etc, &[]);
}

/// BUG (see the report): a refused mapping change has already created (and filled) the new mapping's data root.
#[test]
fn a_refused_mapping_change_creates_no_data_root() {
    let etc = Etc::standard();
    // Remapped containers running; bob's mapping and no mapping are refused.
    let mut d = daemon(Some("alice"), &etc, &[]);
    busybox_image(&d, "bb:latest");
    sleeper(&d, "old", &[]);
    stop(&mut d);
    let before = entries(&d.data);
    let place = Place::of(&d);
    place.refused(&["--userns-remap", "bob"], &etc);
    place.refused(&[], &etc);
    let after = entries(&d.data);

    // Plain containers running; alice's mapping is refused.
    let mut p = daemon(None, &etc, &[]);
    busybox_image(&p, "bb:latest");
    sleeper(&p, "plain", &[]);
    stop(&mut p);
    Place::of(&p).refused(&["--userns-remap", "alice"], &etc);
    let alice_root = mapping_root(&p, ALICE_START);
    let alice_made = alice_root.exists();

    restart(&mut d, Some("alice"), &etc, &[]);
    restart(&mut p, None, &etc, &[]);
    assert_eq!(after, before, "a refused start changed the data root");
    assert!(!alice_made, "a refused start created {}", alice_root.display());
}

#[test]
fn default_creates_berthremap_and_its_ranges_once() {
    // alice holds 300000-365535: the new range must not overlap it (nor any other).
    let etc = Etc::with(
        "alice:100000:65536\nbob:400000:65536\n",
        "alice:100000:65536\nbob:400000:65536\n",
    );
    let mut d = daemon(Some("default"), &etc, &[]);
    let files = etc.contents();
    let line = |name: &str| -> Vec<String> {
        files[name]
            .lines()
            .filter(|l| l.starts_with("berthremap:"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(line("passwd").len(), 1, "{}", files["passwd"]);
    assert_eq!(line("group").len(), 1, "{}", files["group"]);
    let range = |name: &str| -> (u64, u64) {
        let l = line(name);
        assert_eq!(l.len(), 1, "{name}: {}", files[name]);
        let f: Vec<&str> = l[0].split(':').collect();
        (f[1].parse().expect("start"), f[2].parse().expect("count"))
    };
    let (ustart, ucount) = range("subuid");
    let (gstart, gcount) = range("subgid");
    assert_eq!((ucount, gcount), (65_536, 65_536));
    for (start, count) in [(ustart, ucount), (gstart, gcount)] {
        assert!(start >= 100_000 && start.is_multiple_of(65_536), "{start}");
        for (other, size) in [(100_000u64, 65_536u64), (400_000, 65_536)] {
            assert!(
                start + count <= other || other + size <= start,
                "{start} overlaps {other}"
            );
        }
    }
    // The rest of the files is kept.
    assert!(files["subuid"].starts_with("alice:100000:65536\nbob:400000:65536\n"));
    assert!(files["passwd"].starts_with("root:x:0:0:root:/root:/bin/sh\nalice:"));

    assert_eq!(
        info(&d, "{{.DockerRootDir}}"),
        d.data.join(format!("{ustart}.{gstart}")).display().to_string()
    );
    busybox_image(&d, "bb:latest");
    let pid = sleeper(&d, "dflt", &[]);
    assert_eq!(
        id_map(pid, "uid_map"),
        fields(&["0", &ustart.to_string(), "65536"])
    );
    assert_eq!(
        id_map(pid, "gid_map"),
        fields(&["0", &gstart.to_string(), "65536"])
    );

    // Again: nothing is added.
    stop(&mut d);
    restart(&mut d, Some("default"), &etc, &[]);
    assert_eq!(
        etc.contents(),
        files,
        "default changed the id files a second time"
    );
    let st = ok(&d.berth(&["inspect", "--format", "{{.State.Status}}", "dflt"]));
    assert_eq!(st.trim(), "running");
}

/// A remapped container on the default bridge: its network namespace belongs to its user namespace (made by the
/// runtime, the interface added before start), so it has eth0, sysfs of its own namespace, docker's default
/// network sysctls, exec works, and a published port answers.
#[test]
fn a_remapped_container_on_the_bridge_has_its_network() {
    let etc = Etc::standard();
    let etc_dir = etc.path();
    let d = common::start_netns_env(
        &["--userns-remap", "alice"],
        &[("BERTH_ETC_DIR", etc_dir.as_str())],
    );
    busybox_image(&d, "bb:latest");
    ok(&d.berth(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "8080:80",
        "bb",
        "sh",
        "-c",
        "echo remapped > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]));
    let seen = ok(&d.berth(&[
        "exec",
        "web",
        "sh",
        "-c",
        "cat /proc/self/uid_map; ip -o -4 addr show eth0; ls /sys/class/net; \
         cat /proc/sys/net/ipv4/ip_unprivileged_port_start; ip route",
    ]));
    let words: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(&words[..3], &["0", "300000", "65536"], "{seen}");
    assert!(seen.contains("eth0") && seen.contains("inet 172."), "{seen}");
    assert!(
        seen.lines().any(|l| l.trim() == "eth0"),
        "sysfs shows the container's own interfaces: {seen}"
    );
    assert!(
        seen.lines().any(|l| l.trim() == "0"),
        "ip_unprivileged_port_start: {seen}"
    );
    assert!(seen.contains("default via 172."), "{seen}");
    let mut got = String::new();
    for _ in 0..50 {
        got = d
            .with_netns(|| {
                use std::io::{Read as _, Write as _};
                let mut s = std::net::TcpStream::connect("127.0.0.1:8080").ok()?;
                s.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok()?;
                s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
                let mut body = String::new();
                s.read_to_string(&mut body).ok()?;
                Some(body.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
            })
            .unwrap_or_default();
        if got.trim() == "remapped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        got.trim(),
        "remapped",
        "the published port of a remapped container"
    );
    ok(&d.berth(&["rm", "-f", "web"]));
}
