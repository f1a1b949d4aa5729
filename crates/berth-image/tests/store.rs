//! The image store against a real registry (Debian's `docker-registry` on 127.0.0.1): pulls, layer sharing by
//! chain id, failures that leave the store as it was, garbage collection, crash safety of layer creation.

use std::path::Path;
use std::time::Instant;

use berth_image::digest::Digest;
use berth_image::image::{ImageStore, StoreOptions};
use berth_image::layers::{LayerStore, chain_ids};
use berth_image::pull::{Progress, PullError};
use berth_image::reference::Reference;
use berth_image::registry::{ClientConfig, Platform, RegistryClient, RetryPolicy};
use berth_test_support::registry::{self as fixture, DOCKER_MANIFEST, PushedImage, Registry};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn client() -> RegistryClient {
    RegistryClient::new(ClientConfig::default()).with_retry_policy(RetryPolicy {
        attempts: 2,
        first_backoff: std::time::Duration::from_millis(50),
        max_backoff: std::time::Duration::from_millis(100),
        max_elapsed: std::time::Duration::from_secs(5),
        resumes: 1,
    })
}

/// Pulls `reference`, returning the result and every progress message.
fn pull(store: &ImageStore, reference: &str) -> (Result<Digest, PullError>, Vec<Progress>) {
    let rt = runtime();
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let r = Reference::parse(reference).expect("reference");
        let c = client();
        let collect = tokio::spawn(async move {
            let mut v = Vec::new();
            while let Some(p) = rx.recv().await {
                v.push(p);
            }
            v
        });
        let res = store.pull(&c, &r, &Platform::host(), tx).await;
        let msgs = collect.await.expect("collector");
        (res, msgs)
    })
}

fn statuses(msgs: &[Progress]) -> Vec<String> {
    msgs.iter().map(|m| m.status.clone()).collect()
}

/// Everything under the store root except the empty skeleton directories.
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readdir") {
            let e = e.expect("entry");
            let p = e.path();
            if e.file_type().expect("type").is_dir() {
                stack.push(p.clone());
            }
            out.push(
                p.strip_prefix(root)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    out.sort();
    out
}

fn empty_store_listing() -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let _ = ImageStore::open(dir.path()).expect("open");
    listing(dir.path())
}

/// A gzip layer tar with the given files (all 0644, owner 0).
fn layer(files: &[(&str, &[u8])]) -> (Vec<u8>, Vec<u8>) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, name, *data).expect("append");
    }
    let tar = b.into_inner().expect("tar");
    let gz = fixture::gzip(&tar).expect("gzip");
    (tar, gz)
}

/// Pushes an image made of the given layers (tar, gzip) as `repo:tag`.
fn push_layers(reg: &Registry, repo: &str, tag: &str, layers: &[(Vec<u8>, Vec<u8>)]) -> PushedImage {
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, gz) in layers {
        let digest = reg.push_blob(repo, gz).expect("push blob");
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": gz.len(), "digest": digest,
        }));
        diff_ids.push(fixture::sha256(tar));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": { "Cmd": ["sh"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": layers.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .expect("config");
    let config_digest = reg.push_blob(repo, &config).expect("push config");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": { "mediaType": "application/vnd.docker.container.image.v1+json", "size": config.len(), "digest": config_digest },
        "layers": descs,
    }))
    .expect("manifest");
    let manifest_digest = reg
        .push_manifest(repo, tag, DOCKER_MANIFEST, &manifest)
        .expect("push manifest");
    PushedImage {
        reference: format!("{}/{repo}:{tag}", reg.host()),
        repository: repo.to_owned(),
        tag: tag.to_owned(),
        manifest_digest,
        manifest,
        media_type: DOCKER_MANIFEST.to_owned(),
        config_digest,
        config,
        layers: Vec::new(),
    }
}

#[test]
fn pull_busybox_layout_progress_and_gc() {
    let reg = Registry::start().expect("registry");
    let img = fixture::busybox_image(&reg, "test/busybox:1").expect("busybox image");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");

    let (res, msgs) = pull(&store, &img.reference);
    let id = res.expect("pull");
    assert_eq!(id.to_string(), img.config_digest);
    let st = statuses(&msgs);
    for want in [
        "Pulling from test/busybox",
        "Pulling fs layer",
        "Verifying Checksum",
        "Download complete",
        "Pull complete",
    ] {
        assert!(st.iter().any(|s| s == want), "missing {want:?} in {st:?}");
    }
    assert!(st.iter().any(|s| s.starts_with("Downloading")), "{st:?}");
    assert_eq!(
        st.last().map(String::as_str),
        Some(format!("Status: Downloaded newer image for {}", img.reference).as_str())
    );
    let json = serde_json::to_string(&msgs[0]).expect("json");
    assert!(
        json.contains("\"progressDetail\":{}") && json.contains("\"id\":\"1\""),
        "{json}"
    );

    // The record.
    let rec = store.image(&id).expect("record");
    assert_eq!(
        rec.repo_digests,
        vec![format!("{}/test/busybox@{}", reg.host(), img.manifest_digest)]
    );
    assert_eq!(rec.layers.len(), 1);
    assert_eq!(rec.created.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert!(rec.size > 500_000, "busybox is bigger than {}", rec.size);
    assert_eq!(store.images().expect("images").len(), 1);

    // The overlay2 layout.
    let chain = &rec.layers[0].chain_id;
    let ldir = dir.path().join("overlay2").join(chain.hex());
    assert!(ldir.join("diff/bin/busybox").is_file());
    assert!(ldir.join("work").is_dir());
    assert!(!ldir.join("lower").exists(), "a base layer has no lower file");
    let link = std::fs::read_to_string(ldir.join("link")).expect("link");
    assert_eq!(link.len(), 26);
    let target = std::fs::read_link(dir.path().join("overlay2/l").join(&link)).expect("l/ link");
    assert_eq!(target, Path::new(&format!("../{}/diff", chain.hex())));
    assert!(
        dir.path()
            .join("overlay2/l")
            .join(&link)
            .join("bin/busybox")
            .is_file()
    );
    assert_eq!(
        store.layer_dirs(&id).expect("layer dirs"),
        vec![ldir.join("diff")]
    );
    assert!(
        dir.path().join("blobs/sha256").join(id.hex()).is_file(),
        "the config blob is stored"
    );

    // Pulling again changes nothing.
    let (res, msgs) = pull(&store, &img.reference);
    assert_eq!(res.expect("second pull"), id);
    assert!(
        statuses(&msgs)
            .iter()
            .any(|s| s.starts_with("Status: Image is up to date")),
        "{msgs:?}"
    );

    // Remove and collect: back to an empty store.
    store.remove_image(&id).expect("remove");
    let report = store.gc().expect("gc");
    assert_eq!(report.layers_removed, vec![chain.clone()]);
    assert!(report.blobs_removed.iter().any(|d| d == &id));
    assert_eq!(listing(dir.path()), empty_store_listing());
}

#[test]
fn layers_are_shared_by_chain_id() {
    let reg = Registry::start().expect("registry");
    let base = layer(&[("etc/base", b"base")]);
    let top = layer(&[("etc/top", b"top")]);
    let a = push_layers(&reg, "share/a", "v1", std::slice::from_ref(&base));
    let b = push_layers(&reg, "share/b", "v1", &[base.clone(), top.clone()]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");

    let (ra, _) = pull(&store, &a.reference);
    let ida = ra.expect("pull a");
    let (rb, msgs) = pull(&store, &b.reference);
    let idb = rb.expect("pull b");
    let st = statuses(&msgs);
    assert_eq!(st.iter().filter(|s| *s == "Already exists").count(), 1, "{st:?}");
    assert_eq!(st.iter().filter(|s| *s == "Pull complete").count(), 1, "{st:?}");

    let d0 = Digest::parse(&fixture::sha256(&base.0)).expect("d0");
    let d1 = Digest::parse(&fixture::sha256(&top.0)).expect("d1");
    let chains = chain_ids(&[d0.clone(), d1.clone()]);
    assert_eq!(chains[0], d0);
    let expected = Digest::sha256(format!("{d0} {d1}").as_bytes());
    assert_eq!(chains[1], expected);
    let rb_rec = store.image(&idb).expect("b");
    assert_eq!(
        rb_rec
            .layers
            .iter()
            .map(|l| l.chain_id.clone())
            .collect::<Vec<_>>(),
        chains
    );
    assert_eq!(store.image(&ida).expect("a").layers[0].chain_id, chains[0]);

    let top_dir = dir.path().join("overlay2").join(chains[1].hex());
    let base_link = std::fs::read_to_string(dir.path().join("overlay2").join(chains[0].hex()).join("link"))
        .expect("link");
    assert_eq!(
        std::fs::read_to_string(top_dir.join("lower")).expect("lower"),
        format!("l/{base_link}")
    );
    let dirs = store.layer_dirs(&idb).expect("dirs");
    assert_eq!(
        dirs,
        vec![
            top_dir.join("diff"),
            dir.path().join("overlay2").join(chains[0].hex()).join("diff")
        ]
    );
    let du = store.disk_usage().expect("df");
    assert_eq!((du.images, du.layers), (2, 2));

    // Removing a keeps the shared base for b.
    store.remove_image(&ida).expect("rm a");
    let report = store.gc().expect("gc");
    assert!(report.layers_removed.is_empty(), "{report:?}");
    assert!(
        store
            .layer_dirs(&idb)
            .expect("b still whole")
            .iter()
            .all(|d| d.is_dir())
    );
    store.remove_image(&idb).expect("rm b");
    let report = store.gc().expect("gc");
    assert_eq!(report.layers_removed.len(), 2);
    assert_eq!(listing(dir.path()), empty_store_listing());
}

#[test]
fn corrupt_and_truncated_layers_leave_the_store_unchanged() {
    let reg = Registry::start().expect("registry");
    let good = layer(&[("etc/good", b"good")]);
    let img_ok = push_layers(&reg, "bad/base", "v1", std::slice::from_ref(&good));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    pull(&store, &img_ok.reference).0.expect("pull the good image");
    let before = listing(dir.path());

    // A two-layer image whose second layer is corrupt (same length, other bytes).
    let broken = layer(&[("etc/broken", &[b'x'; 4096])]);
    let img = push_layers(&reg, "bad/corrupt", "v1", &[good.clone(), broken.clone()]);
    let blob_digest = fixture::sha256(&broken.1);
    let mut corrupt = broken.1.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    reg.corrupt_blob(&blob_digest, &corrupt).expect("corrupt");
    let (res, _) = pull(&store, &img.reference);
    let err = res.expect_err("a corrupt layer must fail");
    assert!(
        matches!(err, PullError::LayerDigest { .. } | PullError::Unpack { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&blob_digest), "{err}");
    assert_eq!(
        listing(dir.path()),
        before,
        "the store changed after a failed pull"
    );

    // A truncated layer.
    let other = layer(&[("etc/other", &[b'y'; 100_000])]);
    let img = push_layers(&reg, "bad/truncated", "v1", &[good.clone(), other.clone()]);
    let blob_digest = fixture::sha256(&other.1);
    reg.corrupt_blob(&blob_digest, &other.1[..other.1.len() / 2])
        .expect("truncate");
    let (res, _) = pull(&store, &img.reference);
    let err = res.expect_err("a truncated layer must fail");
    let chain = format!("{err}");
    assert!(chain.contains(&blob_digest), "{chain}");
    assert_eq!(
        listing(dir.path()),
        before,
        "the store changed after a failed pull"
    );

    // A layer whose tar escapes: the unpack error names the entry; nothing left.
    let mut raw = tar::Header::new_ustar();
    {
        let b = raw.as_mut_bytes();
        b[..12].copy_from_slice(b"../../escape");
    }
    raw.set_mode(0o644);
    raw.set_size(0);
    raw.set_cksum();
    let mut tar = raw.as_bytes().to_vec();
    tar.extend(std::iter::repeat_n(0u8, 1024));
    let gz = fixture::gzip(&tar).expect("gzip");
    let img = push_layers(&reg, "bad/escape", "v1", &[(tar, gz)]);
    let (res, _) = pull(&store, &img.reference);
    let err = res.expect_err("an escaping layer must fail");
    let mut msg = err.to_string();
    let mut src = std::error::Error::source(&err);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    assert!(msg.contains("outside the layer directory"), "{msg}");
    assert_eq!(
        listing(dir.path()),
        before,
        "the store changed after a failed pull"
    );
    assert!(
        !dir.path().join("escape").exists() && !dir.path().parent().expect("parent").join("escape").exists()
    );
}

#[test]
fn unknown_image_and_registry_down_fail_cleanly() {
    let mut reg = Registry::start().expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let before = listing(dir.path());
    let (res, _) = pull(&store, &format!("{}/nothing/here:v1", reg.host()));
    assert!(res.is_err());
    let host = reg.host();
    reg.stop();
    let (res, _) = pull(&store, &format!("{host}/nothing/here:v1"));
    assert!(res.is_err());
    assert_eq!(listing(dir.path()), before);
}

/// Runs only as the child of `killed_layer_creation_leaves_nothing_visible`: unpacks an endless tar stream into
/// a pending layer of the store at `$BERTH_CRASH_ROOT` until it is killed.
#[test]
#[ignore = "helper process of killed_layer_creation_leaves_nothing_visible"]
fn crash_helper() {
    let Ok(root) = std::env::var("BERTH_CRASH_ROOT") else {
        return;
    };
    let layers = LayerStore::open(Path::new(&root)).expect("open");
    let pending = layers.begin().expect("begin");
    // An endless tar: one file after another, slowly.
    struct Endless {
        n: u64,
        buf: Vec<u8>,
    }
    impl std::io::Read for Endless {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.buf.is_empty() {
                let mut h = tar::Header::new_ustar();
                h.set_path(format!("f{}", self.n))
                    .map_err(std::io::Error::other)?;
                h.set_mode(0o644);
                h.set_size(512);
                h.set_cksum();
                self.buf.extend_from_slice(h.as_bytes());
                self.buf.extend(std::iter::repeat_n(b'z', 512));
                self.n += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let n = out.len().min(self.buf.len());
            out[..n].copy_from_slice(&self.buf[..n]);
            self.buf.drain(..n);
            Ok(n)
        }
    }
    let _ = berth_image::unpack::unpack_tar(
        Endless {
            n: 0,
            buf: Vec::new(),
        },
        &pending.diff_dir(),
        &berth_image::unpack::Limits::default(),
        None,
    );
}

#[test]
fn killed_layer_creation_leaves_nothing_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A committed layer that must survive the crash and the cleanup.
    let layers = LayerStore::open(dir.path()).expect("open");
    let keep = layers.begin().expect("begin");
    std::fs::write(keep.diff_dir().join("kept"), b"1").expect("write");
    let d = Digest::sha256(b"kept layer");
    let info = keep.commit(&d, &d, None, 1, 1024).expect("commit");

    let exe = std::env::current_exe().expect("exe");
    let child = std::process::Command::new(exe)
        .args(["--exact", "crash_helper", "--ignored", "--nocapture"])
        .env("BERTH_CRASH_ROOT", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn helper");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = Kill(child);
    // Wait until the helper has written some files into its temporary layer.
    let overlay = dir.path().join("overlay2");
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    let tmp = loop {
        let found = std::fs::read_dir(&overlay)
            .expect("readdir")
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
            .map(|e| e.path());
        if let Some(t) = found
            && std::fs::read_dir(t.join("diff")).map(|d| d.count()).unwrap_or(0) > 10
        {
            break t;
        }
        assert!(Instant::now() < deadline, "the helper did not start unpacking");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // SIGKILL: no destructor runs.
    guard.0.kill().expect("kill");
    let _ = guard.0.wait();
    assert!(
        tmp.exists(),
        "the half-written layer is still on disk after the kill"
    );
    // Also simulate a kill between the l/ symlink and the rename of a commit.
    std::os::unix::fs::symlink("../0000/diff", overlay.join("l/DANGLINGLINKFROMACRASH0000"))
        .expect("symlink");

    // Only the committed layer is visible, before and after the cleanup on open.
    let visible = |l: &LayerStore| {
        l.list()
            .expect("list")
            .into_iter()
            .map(|i| i.chain_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(visible(&layers), vec![d.clone()]);
    let reopened = LayerStore::open(dir.path()).expect("reopen");
    assert!(!tmp.exists(), "open did not remove the leftover temporary layer");
    assert!(std::fs::symlink_metadata(overlay.join("l/DANGLINGLINKFROMACRASH0000")).is_err());
    assert_eq!(visible(&reopened), vec![d.clone()]);
    assert!(overlay.join("l").join(&info.link).join("kept").is_file());
    let mut names: Vec<String> = std::fs::read_dir(&overlay)
        .expect("readdir")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec![d.hex().to_owned(), "l".to_owned()]);
}

#[test]
fn pull_debian() {
    let reg = Registry::start().expect("registry");
    let img = fixture::debian_image(&reg, "library/debian:bookworm").expect("debian image");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open_with(dir.path(), StoreOptions::default()).expect("open");
    let started = Instant::now();
    let (res, _) = pull(&store, &img.reference);
    let id = res.expect("pull debian");
    eprintln!("debian pull took {:?}", started.elapsed());
    let dirs = store.layer_dirs(&id).expect("dirs");
    assert_eq!(dirs.len(), 1);
    for f in ["bin/bash", "etc/debian_version", "usr/bin/apt-get"] {
        assert!(dirs[0].join(f).exists(), "{f} is missing");
    }
    let meta = std::fs::symlink_metadata(dirs[0].join("usr/bin/passwd")).expect("passwd");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(meta.mode() & 0o4000, 0o4000, "setuid bit kept");
    // The layer's tar can be rebuilt byte for byte (diff id) from the tar index.
    let rec = store.image(&id).expect("record");
    let mut hasher = Sha256Writer(Default::default(), 0);
    berth_image::unpack::assemble_tar(
        &store.tar_split_path(&rec.layers[0].chain_id),
        &dirs[0],
        &mut hasher,
    )
    .expect("assemble");
    let digest = {
        use sha2::Digest as _;
        let out = hasher.0.finalize();
        format!(
            "sha256:{}",
            out.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    assert_eq!(digest, rec.layers[0].diff_id.to_string());
}

struct Sha256Writer(sha2::Sha256, u64);
impl std::io::Write for Sha256Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest as _;
        self.0.update(buf);
        self.1 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Measures a pull of the Debian image into a fresh store at `$BERTH_BENCH_ROOT` (e.g. on a journaled ext4 loop
/// device); `BERTH_BENCH_SYNC=0` turns off the flush before layers become visible. Run by hand:
/// `BERTH_BENCH_ROOT=/mnt/x cargo test --release -p berth-image --test store bench_pull_debian -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, run by hand"]
fn bench_pull_debian() {
    let Ok(root) = std::env::var("BERTH_BENCH_ROOT") else {
        return;
    };
    let sync = std::env::var("BERTH_BENCH_SYNC")
        .map(|v| v != "0")
        .unwrap_or(true);
    let reg = Registry::start().expect("registry");
    let img = fixture::debian_image(&reg, "library/debian:bookworm").expect("debian image");
    for run in 0..3 {
        let dir = Path::new(&root).join(format!("store-{run}-{}", std::process::id()));
        let store = ImageStore::open_with(
            &dir,
            StoreOptions {
                sync_layers: sync,
                ..StoreOptions::default()
            },
        )
        .expect("open");
        let started = Instant::now();
        let (res, _) = pull(&store, &img.reference);
        res.expect("pull debian");
        eprintln!(
            "run {run}: debian pull (sync={sync}) took {:?}",
            started.elapsed()
        );
        // The peers on the same device, at the same time: skopeo's fetch without unpack, tar's unpack.
        let sk = Path::new(&root).join(format!("skopeo-{run}-{}", std::process::id()));
        let t = Instant::now();
        let ok = std::process::Command::new("skopeo")
            .args(["copy", "-q", "--src-tls-verify=false"])
            .arg(format!("docker://{}", img.reference))
            .arg(format!("dir:{}", sk.display()))
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        eprintln!(
            "run {run}: skopeo copy (fetch only) took {:?} ok={ok}",
            t.elapsed()
        );
        let tx = Path::new(&root).join(format!("tar-{run}-{}", std::process::id()));
        std::fs::create_dir(&tx).expect("mkdir");
        let cache = fixture::debian_cache().expect("cache");
        let t = Instant::now();
        let ok = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&cache.tar)
            .arg("-C")
            .arg(&tx)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        eprintln!("run {run}: tar -xf took {:?} ok={ok}", t.elapsed());
        for d in [dir, sk, tx] {
            let _ = std::process::Command::new("rm").arg("-rf").arg(d).status();
        }
    }
}

#[test]
fn push_then_pull_back() {
    let reg = Registry::start().expect("registry");
    let reg2 = Registry::start().expect("second registry");
    let base = layer(&[("etc/base", b"base")]);
    let top = layer(&[("etc/top", &[b't'; 70_000])]);
    let img = push_layers(&reg, "push/src", "v1", &[base, top]);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let id = pull(&store, &img.reference).0.expect("pull");
    let rt = runtime();
    let push = |target: &str| -> (Result<Digest, berth_image::pull::PushError>, Vec<String>) {
        rt.block_on(async {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Progress>(1024);
            let collect = tokio::spawn(async move {
                let mut v = Vec::new();
                while let Some(p) = rx.recv().await {
                    v.push(p.status);
                }
                v
            });
            let r = Reference::parse(target).expect("reference");
            let res = store.push(&client(), &id, &r, tx).await;
            (res, collect.await.expect("collector"))
        })
    };

    // Same registry, other repository: both layers are mounted, the manifest is the original.
    let (res, st) = push(&format!("{}/push/dst:v2", reg.host()));
    let digest = res.expect("push with mounts");
    assert_eq!(
        digest.to_string(),
        img.manifest_digest,
        "the original manifest is pushed unchanged"
    );
    assert_eq!(
        st.iter()
            .filter(|s| s.starts_with("Mounted from push/src"))
            .count(),
        2,
        "{st:?}"
    );

    // Another registry: the layers are rebuilt from the tar index, compressed and uploaded.
    let (res, st) = push(&format!("{}/copy/img:v3", reg2.host()));
    res.expect("push with uploads");
    assert_eq!(st.iter().filter(|s| *s == "Pushed").count(), 2, "{st:?}");
    assert!(
        st.last().is_some_and(|s| s.starts_with("v3: digest: sha256:")),
        "{st:?}"
    );
    // Pushing again finds everything there.
    let (res, st) = push(&format!("{}/copy/img:v3", reg2.host()));
    res.expect("second push");
    assert_eq!(
        st.iter().filter(|s| *s == "Layer already exists").count(),
        2,
        "{st:?}"
    );

    // Pull back into a fresh store: the same image id (the rebuilt tars hash to the config's diff ids).
    let dir2 = tempfile::tempdir().expect("tempdir");
    let store2 = ImageStore::open(dir2.path()).expect("open");
    let id2 = pull(&store2, &format!("{}/copy/img:v3", reg2.host()))
        .0
        .expect("pull back");
    assert_eq!(id2, id);
    let dirs = store2.layer_dirs(&id2).expect("dirs");
    assert_eq!(
        std::fs::read(dirs[0].join("etc/top")).expect("top file"),
        vec![b't'; 70_000]
    );
}
