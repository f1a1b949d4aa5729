//! Images end to end against Debian's `docker-registry` on 127.0.0.1 (started per test): pull with progress,
//! images, inspect, history, tag, rmi, prune and events, with the berth CLI and with the docker 28 CLI.

mod common;

use berth_test_support::registry::{Registry, busybox_image};
use common::{ok, start};

#[test]
fn berth_pulls_lists_tags_inspects_and_removes() {
    let reg = Registry::start().expect("start the registry");
    let pushed = busybox_image(&reg, "berth/busybox:1.0").expect("push busybox");
    let d = start(&[]);
    let name = pushed.reference.clone();

    // Events of the pull arrive on a stream opened before it.
    let sock = d.sock.clone();
    let watcher = std::thread::spawn(move || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        common::raw_request(
            &sock,
            "GET",
            &format!("/events?since={now}&until={}", now + 6),
            &[],
            b"",
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(300));

    let out = ok(&d.berth(&["pull", &name]));
    let short = &pushed.layers[0].digest.trim_start_matches("sha256:")[..12];
    assert!(out.contains(&format!("{short}: Pull complete")), "{out}");
    assert!(
        out.contains(&format!("Digest: {}", pushed.manifest_digest)),
        "{out}"
    );
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    assert!(
        !out.contains("Downloading"),
        "no byte counts without a terminal: {out}"
    );
    let again = ok(&d.berth(&["pull", &name]));
    assert!(
        again.contains(&format!("Status: Image is up to date for {name}")),
        "{again}"
    );

    let id = format!("sha256:{}", pushed.config_digest.trim_start_matches("sha256:"));
    let repo = name.rsplit_once(':').unwrap().0.to_string();
    let ls = ok(&d.berth(&["images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"]));
    assert_eq!(ls.trim(), format!("{repo} 1.0 {}", &id[7..19]));
    let q = ok(&d.berth(&["images", "-q", "--no-trunc"]));
    assert_eq!(q.trim(), id);
    let table = ok(&d.berth(&["images"]));
    assert!(table.starts_with("REPOSITORY"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(ok(&d.berth(&["images", "--format", "json"])).trim()).unwrap();
    assert_eq!(json["Tag"], "1.0");

    let insp: serde_json::Value = serde_json::from_str(&ok(&d.berth(&["inspect", &name]))).unwrap();
    assert_eq!(insp[0]["Id"], id);
    assert_eq!(
        insp[0]["RepoDigests"][0],
        format!("{repo}@{}", pushed.manifest_digest)
    );
    assert_eq!(insp[0]["RootFS"]["Layers"][0], pushed.layers[0].diff_id);
    let cmd = ok(&d.berth(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}} {{.Os}}",
        &id[7..19],
    ]));
    assert_eq!(cmd.trim(), "[\"sh\"] linux");
    let hist = ok(&d.berth(&["history", &name]));
    assert!(hist.starts_with("IMAGE"), "{hist}");

    ok(&d.berth(&["tag", &name, "local/copy:v2"]));
    let tags = ok(&d.berth(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert!(tags.lines().any(|l| l == "local/copy:v2"), "{tags}");
    let filtered = ok(&d.berth(&[
        "images",
        "--filter",
        "reference=local/*",
        "--format",
        "{{.Repository}}",
    ]));
    assert_eq!(filtered.trim(), "local/copy");
    // Two repositories: removing by id needs -f; removing a tag only untags.
    let o = d.berth(&["rmi", &id[7..19]]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("image is referenced in multiple repositories"));
    let out = ok(&d.berth(&["rmi", "local/copy:v2"]));
    assert_eq!(out.trim(), "Untagged: local/copy:v2");
    let df = ok(&d.berth(&["system", "df"]));
    assert!(df.contains("Images          1"), "{df}");
    let out = ok(&d.berth(&["rmi", &name]));
    assert!(out.contains(&format!("Untagged: {name}")), "{out}");
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(ok(&d.berth(&["images", "-q"])).trim(), "");
    assert!(
        std::fs::read_dir(d.data.join("overlay2"))
            .map(|r| r.filter_map(Result::ok).filter(|e| e.file_name() != "l").count())
            .unwrap_or(0)
            == 0,
        "the layers went with the image"
    );

    let (_, _, body) = watcher.join().unwrap();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let actions: Vec<&str> = events.iter().filter_map(|e| e["Action"].as_str()).collect();
    for a in ["pull", "tag", "untag", "delete"] {
        assert!(actions.contains(&a), "{a} missing in {actions:?}");
    }
}

#[test]
fn docker_cli_pulls_tags_lists_and_removes() {
    let reg = Registry::start().expect("start the registry");
    let pushed = busybox_image(&reg, "docker/busybox:latest").expect("push busybox");
    let d = start(&[]);
    let name = pushed.reference.clone();
    let out = ok(&d.docker(&["pull", &name]));
    assert!(
        out.contains("Pull complete") && out.contains("Downloaded newer image"),
        "{out}"
    );
    let ls = ok(&d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert_eq!(ls.trim(), name);
    ok(&d.docker(&["tag", &name, "mine:1"]));
    let ls = ok(&d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"]));
    assert!(ls.lines().any(|l| l.starts_with("mine:1 ")), "{ls}");
    let insp = ok(&d.docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}} {{.Architecture}}",
        "mine:1",
    ]));
    assert!(
        insp.starts_with("sha256:") && insp.trim().ends_with(" amd64"),
        "{insp}"
    );
    ok(&d.docker(&["history", "mine:1"]));
    let out = ok(&d.docker(&["rmi", "mine:1"]));
    assert!(out.contains("Untagged: mine:1"), "{out}");
    let out = ok(&d.docker(&["rmi", &name]));
    assert!(out.contains("Deleted: sha256:"), "{out}");
    let o = d.docker(&["pull", &format!("{}/nosuch:latest", reg.host())]);
    assert!(!o.status.success());
    let o = d.docker(&["rmi", "nosuch"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such image: nosuch:latest"));
}

#[test]
fn a_failed_pull_changes_nothing_and_prune_removes_dangling() {
    let reg = Registry::start().expect("start the registry");
    let a = busybox_image(&reg, "p/a:1").expect("push");
    let d = start(&[]);
    let (status, v) = d.json(
        "POST",
        &format!("/images/create?fromImage={}/p/missing&tag=1", reg.host()),
        b"",
    );
    assert!(status == 404 || status == 500, "{status} {v}");
    assert!(v["message"].as_str().is_some(), "{v}");
    assert_eq!(d.json("GET", "/images/json", b"").1, serde_json::json!([]));
    ok(&d.berth(&["pull", "-q", &a.reference]));
    // Tag it elsewhere, then drop the original tags: the image stays (tagged); prune -a removes it.
    let out = ok(&d.berth(&["image", "prune", "-f"]));
    assert!(out.contains("Total reclaimed space: 0B"), "{out}");
    let out = ok(&d.berth(&["image", "prune", "-a", "-f"]));
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert_eq!(ok(&d.berth(&["images", "-q"])).trim(), "");
}

#[test]
fn docker_py_parses_the_responses() {
    let reg = Registry::start().expect("start the registry");
    let pushed = busybox_image(&reg, "py/busybox:3").expect("push busybox");
    let d = start(&[]);
    let script = r#"
import json, sys, docker
c = docker.DockerClient(base_url=sys.argv[1], timeout=60)
v = c.version()
info = c.info()
assert c.ping() is True
img = c.images.pull(sys.argv[2], tag="3")
img.tag("py/copy", "x")
imgs = c.images.list()
h = img.history()
ev = list(c.events(since=0, until=int(__import__("time").time()) + 1, decode=True))
c.images.remove("py/copy:x")
print(json.dumps({"api": v["ApiVersion"], "os": info["OSType"], "tags": sorted(img.reload() or c.images.get(img.id).tags),
                  "n": len(imgs), "hist": len(h), "events": sorted({e["Action"] for e in ev})}))
"#;
    let repo = pushed.reference.rsplit_once(':').unwrap().0.to_string();
    // The first Python that has docker-py (a pyenv one, or Debian's python3-docker for /usr/bin/python3).
    let python = ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .args(["-c", "import docker"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("docker-py is missing: install python3-docker (scripts/lib.sh does)");
    let mut c = std::process::Command::new(python);
    c.arg("-c").arg(script).arg(d.host()).arg(&repo);
    let out = ok(&common::run(c));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["api"], "1.47");
    assert_eq!(v["os"], "linux");
    assert_eq!(v["n"], 1);
    assert_eq!(v["tags"], serde_json::json!([pushed.reference]));
    assert!(v["hist"].as_u64().unwrap() >= 1);
    let events = v["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e == "pull") && events.iter().any(|e| e == "tag"),
        "{events:?}"
    );
}

#[test]
fn login_checks_credentials_and_pull_uses_them() {
    let reg = Registry::start_with_htpasswd("alice", "s3cret").expect("start the registry");
    let pushed = busybox_image(&reg, "private/bb:1").expect("push busybox");
    let d = start(&[]);
    let host = reg.host();
    // Anonymous pulls are refused by this registry.
    let o = d.berth(&["pull", &pushed.reference]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stdout));
    let mut c = std::process::Command::new(common::berth_bin());
    c.args(["-H", &d.host(), "login", "-u", "alice", "-p", "wrong", &host])
        .env("BERTH_CONFIG", d.dir.path().join("berth-config"));
    let o = common::run(c);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Error response from daemon"),
        "{o:?}"
    );
    assert!(
        !d.dir.path().join("berth-config/config.json").exists(),
        "nothing is saved after a refused login"
    );
    let out = ok(&d.berth(&["login", "-u", "alice", "-p", "s3cret", &host]));
    assert!(out.contains("Login Succeeded"), "{out}");
    let cfg = std::fs::read_to_string(d.dir.path().join("berth-config/config.json")).unwrap();
    assert!(cfg.contains(&host), "{cfg}");
    let out = ok(&d.berth(&["pull", &pushed.reference]));
    assert!(out.contains("Downloaded newer image"), "{out}");
    // The docker CLI logs in through the daemon the same way.
    let o = d.docker(&["login", "-u", "alice", "-p", "wrong", &host]);
    assert!(!o.status.success());
    let out = ok(&d.docker(&["login", "-u", "alice", "-p", "s3cret", &host]));
    assert!(out.contains("Login Succeeded"), "{out}");
    let out = ok(&d.berth(&["logout", &host]));
    assert!(out.contains("Removing login credentials"), "{out}");
    // The daemon kept nothing: a new anonymous pull is refused again.
    let o = d.berth(&["pull", &format!("{host}/private/bb:1")]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "pull asks the registry again, and without credentials it refuses"
    );
}

/// Pushes an image with one uncompressed layer holding `mb` MiB of incompressible data (OCI manifest).
fn big_image(reg: &Registry, repository: &str, tag: &str, mb: usize) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut data = vec![0u8; mb << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(root.join("big.bin"), &data).unwrap();
    drop(data);
    let tar = dir.path().join("layer.tar");
    let mut c = std::process::Command::new("tar");
    c.args(["--numeric-owner", "--owner=0", "--group=0", "--mtime=@0", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".");
    ok(&common::run(c));
    let layer = std::fs::read(&tar).unwrap();
    let layer_digest = reg.push_blob(repository, &layer).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "big layer"}]
    })
    .to_string();
    let config_digest = reg.push_blob(repository, config.as_bytes()).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}]
    })
    .to_string();
    reg.push_manifest(
        repository,
        tag,
        "application/vnd.oci.image.manifest.v1+json",
        manifest.as_bytes(),
    )
    .unwrap();
    (format!("{}/{repository}:{tag}", reg.host()), config_digest)
}

#[test]
fn a_daemon_killed_mid_pull_leaves_nothing_visible_and_the_next_pull_completes() {
    use std::io::{BufRead, BufReader, Write};
    let reg = Registry::start().expect("start the registry");
    let (name, config_digest) = big_image(&reg, "crash/big", "1", 64);
    let mut d = start(&[]);
    let (repo, tag) = name.rsplit_once(':').unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    write!(s, "POST /v1.47/images/create?fromImage={repo}&tag={tag} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            panic!("the pull ended before it could be interrupted:\n{seen}");
        }
        seen.push_str(&line);
        if line.contains("\"Downloading\"") || line.contains("\"Extracting\"") {
            break;
        }
    }
    d.kill9();
    let data = d.data.display().to_string();
    let d2 = start(&["--data-root", &data]);
    let (_, images) = d2.json("GET", "/images/json", b"");
    assert_eq!(
        images,
        serde_json::json!([]),
        "no image is visible after the crash"
    );
    let (status, _) = d2.json("GET", &format!("/images/{name}/json"), b"");
    assert_eq!(status, 404);
    let visible_layers: Vec<String> = std::fs::read_dir(d2.data.join("overlay2"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "l" && !n.starts_with('.') && !n.contains("tmp"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        visible_layers.is_empty(),
        "half-written layers are visible: {visible_layers:?}"
    );
    let o = d2.berth(&["pull", &name]);
    let out = ok(&o);
    assert!(
        out.contains("Downloaded newer image"),
        "{out}\n{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        d2.log_text()
    );
    let id = ok(&d2.berth(&["images", "-q", "--no-trunc"]));
    assert_eq!(id.trim(), config_digest);
}

#[test]
fn save_load_import_and_push_then_pull_back() {
    let reg = Registry::start().expect("start the registry");
    let pushed = busybox_image(&reg, "rt/busybox:1").expect("push busybox");
    let d = start(&[]);
    let name = pushed.reference.clone();
    ok(&d.berth(&["pull", "-q", &name]));
    let id = ok(&d.berth(&["images", "-q", "--no-trunc"])).trim().to_string();

    // save → rmi → load gives the same image back, with its tag.
    let archive = d.dir.path().join("bb.tar");
    ok(&d.berth(&["save", "-o", archive.to_str().unwrap(), &name]));
    assert!(std::fs::metadata(&archive).unwrap().len() > 1000);
    ok(&d.berth(&["rmi", &name]));
    assert_eq!(ok(&d.berth(&["images", "-q"])).trim(), "");
    let out = ok(&d.berth(&["load", "-i", archive.to_str().unwrap()]));
    assert_eq!(out.trim(), format!("Loaded image: {name}"));
    assert_eq!(ok(&d.berth(&["images", "-q", "--no-trunc"])).trim(), id);

    // push under another name, forget it locally, pull it back.
    let copy = format!("{}/rt/copy:2", reg.host());
    ok(&d.berth(&["tag", &name, &copy]));
    let out = ok(&d.berth(&["push", &copy]));
    assert!(out.contains("The push refers to repository"), "{out}");
    assert!(out.contains("2: digest: sha256:"), "{out}");
    ok(&d.berth(&["rmi", "-f", &id[7..19]]));
    let out = ok(&d.berth(&["pull", &copy]));
    assert!(out.contains("Downloaded newer image"), "{out}");
    assert_eq!(
        ok(&d.berth(&["images", "-q", "--no-trunc"])).trim(),
        id,
        "the same image comes back"
    );

    // The docker CLI pushes too.
    let copy3 = format!("{}/rt/copy:3", reg.host());
    ok(&d.docker(&["tag", &copy, &copy3]));
    let out = ok(&d.docker(&["push", &copy3]));
    assert!(out.contains("3: digest: sha256:"), "{out}");

    // import a rootfs tarball with changes.
    let root = d.dir.path().join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hello"), "hi\n").unwrap();
    let tar = d.dir.path().join("rootfs.tar");
    let mut c = std::process::Command::new("tar");
    c.arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".");
    ok(&common::run(c));
    let out = ok(&d.berth(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        "-m",
        "by test",
        tar.to_str().unwrap(),
        "imported:1",
    ]));
    assert!(out.trim().starts_with("sha256:"), "{out}");
    let cfg = ok(&d.berth(&[
        "inspect",
        "--format",
        "{{json .Config.Cmd}} {{.Comment}}",
        "imported:1",
    ]));
    assert_eq!(cfg.trim(), "[\"/bin/sh\"] by test");
    let o = d.berth(&["import", "-c", "RUN x", tar.to_str().unwrap(), "imported:2"]);
    assert_eq!(o.status.code(), Some(1));

    // The docker CLI saves and loads too.
    let archive2 = d.dir.path().join("docker.tar");
    ok(&d.docker(&["save", "-o", archive2.to_str().unwrap(), "imported:1"]));
    ok(&d.docker(&["rmi", "imported:1"]));
    let out = ok(&d.docker(&["load", "-i", archive2.to_str().unwrap()]));
    assert!(out.contains("Loaded image: imported:1"), "{out}");
    let out = ok(&d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]));
    assert!(out.lines().any(|l| l == "imported:1"), "{out}");
    // A corrupt archive is refused and changes nothing.
    std::fs::write(d.dir.path().join("junk.tar"), b"not a tar at all").unwrap();
    let before = ok(&d.berth(&["images", "-q"]));
    let o = d.berth(&["load", "-i", d.dir.path().join("junk.tar").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(ok(&d.berth(&["images", "-q"])), before);
}
