//! save / load (docker-archive and OCI layout) and import.

use berth_image::archive::{ArchiveFormat, ImportOptions};
use berth_image::digest::Digest;
use berth_image::image::ImageStore;
use berth_image::reference::Reference;
use berth_image::registry::{ClientConfig, Platform, RegistryClient};
use berth_test_support::registry::{self as fixture, Registry};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn pull(rt: &tokio::runtime::Runtime, store: &ImageStore, reference: &str) -> Digest {
    rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let r = Reference::parse(reference).expect("reference");
        let id = store
            .pull(
                &RegistryClient::new(ClientConfig::default()),
                &r,
                &Platform::host(),
                tx,
            )
            .await
            .expect("pull");
        drain.await.expect("drain");
        id
    })
}

#[test]
fn save_and_load_round_trip_in_both_formats() {
    let reg = Registry::start().expect("registry");
    let img = fixture::busybox_image(&reg, "arch/busybox:1").expect("busybox");
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let id = pull(&rt, &store, &img.reference);
    let tag = Reference::parse(&img.reference).expect("ref");

    for format in [ArchiveFormat::Docker, ArchiveFormat::Oci] {
        let mut out = Vec::new();
        rt.block_on(store.save(&[(id.clone(), vec![tag.clone()])], format, &mut out))
            .expect("save");
        // The archive is readable by skopeo (an independent implementation of both formats).
        let file = dir.path().join(format!("saved-{format:?}.tar"));
        std::fs::write(&file, &out).expect("write archive");
        let transport = match format {
            ArchiveFormat::Docker => "docker-archive",
            ArchiveFormat::Oci => "oci-archive",
        };
        let inspect = std::process::Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("{transport}:{}", file.display()))
            .output()
            .expect("skopeo");
        assert!(
            inspect.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&inspect.stderr)
        );
        // skopeo prints the config it verified against the layers' digests.
        assert!(String::from_utf8_lossy(&inspect.stdout).contains("berth-test-support"));

        let dir2 = tempfile::tempdir().expect("tempdir");
        let store2 = ImageStore::open(dir2.path()).expect("open");
        let loaded = rt.block_on(store2.load(&out[..])).expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, id, "the same image id after load");
        match format {
            ArchiveFormat::Docker => assert_eq!(loaded[0].1, vec![tag.familiar()]),
            ArchiveFormat::Oci => assert_eq!(loaded[0].1, vec![tag.to_string()]),
        }
        let dirs = store2.layer_dirs(&id).expect("dirs");
        assert!(dirs[0].join("bin/busybox").is_file());
        assert!(
            std::fs::read_dir(dir2.path().join("tmp"))
                .expect("tmp")
                .next()
                .is_none(),
            "the spool is removed"
        );
    }
}

#[test]
fn load_refuses_broken_archives_and_changes_nothing() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    // A docker-archive whose layer does not match the config's diff id.
    let layer = fixture::busybox_layer_tar("x").expect("layer");
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", "1".repeat(64))] },
    }))
    .expect("config");
    let manifest = serde_json::to_vec(
        &serde_json::json!([{ "Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l/layer.tar"] }]),
    )
    .expect("manifest");
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [
        ("c.json", &config),
        ("l/layer.tar", &layer),
        ("manifest.json", &manifest),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    let archive = b.into_inner().expect("tar");
    let err = rt
        .block_on(store.load(&archive[..]))
        .expect_err("a wrong diff id must fail");
    assert!(
        matches!(err, berth_image::archive::ArchiveError::Unpack { .. }),
        "{err}"
    );
    assert!(store.images().expect("images").is_empty());
    assert!(store.layer_store().list().expect("layers").is_empty());
    let err = rt
        .block_on(store.load(&b"not a tar at all"[..]))
        .expect_err("garbage must fail");
    assert!(!err.to_string().is_empty());
}

#[test]
fn import_a_rootfs_tarball() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("open");
    let tar = fixture::busybox_layer_tar("imported").expect("tar");
    let gz = fixture::gzip(&tar).expect("gzip");
    let opts = ImportOptions {
        message: Some("from a tarball".into()),
        config: Some(serde_json::json!({ "Cmd": ["sh"] })),
        platform: None,
    };
    let id = rt.block_on(store.import(&gz[..], opts)).expect("import");
    let rec = store.image(&id).expect("record");
    assert_eq!(rec.layers.len(), 1);
    assert_eq!(rec.layers[0].diff_id.to_string(), fixture::sha256(&tar));
    let history = rec.config.history().clone().unwrap_or_default();
    assert_eq!(history[0].comment().as_deref(), Some("from a tarball"));
    assert!(
        rec.created
            .as_deref()
            .is_some_and(|c| c.len() == 20 && c.ends_with('Z')),
        "{:?}",
        rec.created
    );
    let dirs = store.layer_dirs(&id).expect("dirs");
    assert_eq!(
        std::fs::read_to_string(dirs[0].join("etc/berth-image"))
            .expect("marker")
            .trim(),
        "imported"
    );
    // The same tarball again shares the layer.
    let id2 = rt
        .block_on(store.import(&tar[..], ImportOptions::default()))
        .expect("import again");
    assert_eq!(
        store.image(&id2).expect("rec").layers[0].chain_id,
        rec.layers[0].chain_id
    );
    assert_eq!(store.layer_store().list().expect("layers").len(), 1);
}
