//! The service's logic over an in-memory backend: references, conflicts, prune, reconcile, events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::*;
use crate::db::Db;
use crate::events::EventBus;

#[derive(Debug, Default)]
struct Fake {
    images: Mutex<HashMap<String, StoredImage>>,
    /// What a pull of a reference produces.
    remote: Mutex<HashMap<String, (StoredImage, String)>>,
    gc_runs: Mutex<u32>,
}

fn image(n: u8, created: &str, labels: serde_json::Value) -> StoredImage {
    StoredImage {
        id: format!("sha256:{}", format!("{n:02x}").repeat(32)),
        config: serde_json::json!({"created": created, "os": "linux", "architecture": "amd64",
            "config": {"Labels": labels}, "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]}}),
        size: 100 * i64::from(n),
        layer_sizes: vec![100 * i64::from(n)],
        layer_dirs: vec![format!("/x/overlay2/{n}/diff")],
    }
}

fn err(kind: ErrorKind, m: &str) -> BackendError {
    BackendError::new(kind, m)
}

impl ImageBackend for Fake {
    fn list(&self) -> Result<Vec<String>, BackendError> {
        Ok(self.images.lock().unwrap().keys().cloned().collect())
    }
    fn get(&self, id: &str) -> Result<StoredImage, BackendError> {
        self.images
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| err(ErrorKind::NotFound, id))
    }
    fn remove(&self, id: &str) -> Result<(), BackendError> {
        self.images.lock().unwrap().remove(id);
        Ok(())
    }
    fn gc(&self) -> Result<u64, BackendError> {
        *self.gc_runs.lock().unwrap() += 1;
        Ok(0)
    }
    fn layers_size(&self) -> Result<i64, BackendError> {
        Ok(self.images.lock().unwrap().values().map(|i| i.size).sum())
    }
    fn pull<'a>(
        &'a self,
        reference: &'a str,
        _platform: Option<&'a str>,
        _auth: Option<RegistryAuth>,
        progress: mpsc::Sender<JsonMessage>,
    ) -> backend::BoxFut<'a, Result<Pulled, BackendError>> {
        Box::pin(async move {
            let Some((img, digest)) = self.remote.lock().unwrap().get(reference).cloned() else {
                return Err(err(
                    ErrorKind::NotFound,
                    &format!("manifest unknown: {reference}"),
                ));
            };
            let _ = progress
                .send(JsonMessage::status_id("Pull complete", "aaaa"))
                .await;
            self.images.lock().unwrap().insert(img.id.clone(), img.clone());
            Ok(Pulled {
                id: img.id,
                manifest_digest: digest,
            })
        })
    }
    fn push<'a>(
        &'a self,
        _id: &'a str,
        _reference: &'a str,
        _auth: Option<RegistryAuth>,
        _progress: mpsc::Sender<JsonMessage>,
    ) -> backend::BoxFut<'a, Result<Pushed, BackendError>> {
        Box::pin(async {
            Ok(Pushed {
                digest: format!("sha256:{}", "d".repeat(64)),
                size: 527,
            })
        })
    }
    fn save<'a>(&'a self, _images: ImageRefs, _out: Writer) -> backend::BoxFut<'a, Result<(), BackendError>> {
        Box::pin(async { Ok(()) })
    }
    fn load<'a>(&'a self, _input: Reader) -> backend::BoxFut<'a, Result<ImageRefs, BackendError>> {
        Box::pin(async move {
            let img = image(9, "2020-01-01T00:00:00Z", serde_json::json!({}));
            self.images.lock().unwrap().insert(img.id.clone(), img.clone());
            Ok(vec![(img.id, vec!["loaded:1".to_string()])])
        })
    }
    fn import<'a>(
        &'a self,
        _input: Reader,
        _o: ImportOptions,
    ) -> backend::BoxFut<'a, Result<String, BackendError>> {
        Box::pin(async { Err(err(ErrorKind::InvalidParameter, "not a tarball")) })
    }
    fn login<'a>(&'a self, auth: RegistryAuth) -> backend::BoxFut<'a, Result<(), BackendError>> {
        Box::pin(async move {
            if auth.password == "right" {
                Ok(())
            } else {
                Err(err(ErrorKind::Unauthorized, "unauthorized"))
            }
        })
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    svc: ImageService,
    fake: Arc<Fake>,
    events: Arc<EventBus>,
    db: Arc<Db>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Db::open(dir.path()).unwrap());
    let events = Arc::new(EventBus::new());
    let fake = Arc::new(Fake::default());
    {
        let mut r = fake.remote.lock().unwrap();
        r.insert(
            "docker.io/library/busybox:latest".into(),
            (
                image(1, "2024-01-01T00:00:00Z", serde_json::json!({"a": "b"})),
                format!("sha256:{}", "1".repeat(64)),
            ),
        );
        r.insert(
            "docker.io/library/debian:12".into(),
            (
                image(2, "2024-06-01T00:00:00Z", serde_json::json!({})),
                format!("sha256:{}", "2".repeat(64)),
            ),
        );
    }
    let svc = ImageService::with_backend(db.clone(), events.clone(), fake.clone()).unwrap();
    Setup {
        _dir: dir,
        svc,
        fake,
        events,
        db,
    }
}

async fn pull(s: &Setup, name: &str, tag: &str) -> Result<(String, Vec<JsonMessage>), ImageError> {
    let (tx, mut rx) = mpsc::channel(64);
    let id = s.svc.pull(name, tag, None, None, tx).await?;
    let mut msgs = Vec::new();
    while let Ok(m) = rx.try_recv() {
        msgs.push(m);
    }
    Ok((id, msgs))
}

#[tokio::test]
async fn pull_records_tag_and_digest_and_reports_status() {
    let s = setup();
    let (_, mut rx) = s.events.subscribe(None);
    let (id, msgs) = pull(&s, "busybox", "").await.unwrap();
    let statuses: Vec<String> = msgs.iter().filter_map(|m| m.status.clone()).collect();
    assert_eq!(statuses[0], "Pulling from library/busybox");
    assert_eq!(msgs[0].id.as_deref(), Some("latest"));
    assert!(
        statuses.contains(&"Status: Downloaded newer image for busybox:latest".to_string()),
        "{statuses:?}"
    );
    let (_, msgs) = pull(&s, "busybox", "latest").await.unwrap();
    assert!(
        msgs.iter()
            .any(|m| m.status.as_deref() == Some("Status: Image is up to date for busybox:latest"))
    );
    let ins = s.svc.inspect("busybox").unwrap();
    assert_eq!(ins.id.as_deref(), Some(id.as_str()));
    assert_eq!(ins.repo_tags, Some(vec!["busybox:latest".to_string()]));
    assert_eq!(
        ins.repo_digests,
        Some(vec![format!("busybox@sha256:{}", "1".repeat(64))])
    );
    assert_eq!(s.svc.resolve(&id[7..19]).unwrap(), id);
    assert_eq!(
        s.svc
            .resolve(&format!("busybox@sha256:{}", "1".repeat(64)))
            .unwrap(),
        id
    );
    let e = rx.recv().await.unwrap();
    assert_eq!(
        (e.kind.as_str(), e.action.as_str(), e.actor.id.as_str()),
        ("image", "pull", "busybox:latest")
    );
    // An unknown image fails before any message and records nothing.
    let err = pull(&s, "nosuch", "").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(s.db.images().unwrap().len(), 1);
}

#[tokio::test]
async fn remove_untags_refuses_conflicts_and_deletes() {
    let s = setup();
    let (id, _) = pull(&s, "busybox", "").await.unwrap();
    s.svc.tag("busybox", "mine/copy", "v1").await.unwrap();
    let err = s.svc.remove(&id[7..19], false).await.unwrap_err();
    assert!(matches!(err, ImageError::Conflict { .. }), "{err}");
    let out = s.svc.remove("mine/copy:v1", false).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].untagged.as_deref(), Some("mine/copy:v1"));
    // A container that uses the image blocks removal (even forced when it runs).
    #[derive(Debug)]
    struct Users(String);
    impl ImageUsers for Users {
        fn users(&self, id: &str) -> Vec<(String, bool)> {
            if id == self.0 {
                vec![("c0ffee0000000000".to_string(), true)]
            } else {
                vec![]
            }
        }
    }
    s.svc.set_users(Arc::new(Users(id.clone())));
    assert!(matches!(
        s.svc.remove("busybox", true).await,
        Err(ImageError::InUseRunning { .. })
    ));
    s.svc.set_users(Arc::new(NoUsers));
    let out = s.svc.remove("busybox", false).await.unwrap();
    let untagged: Vec<_> = out.iter().filter_map(|o| o.untagged.clone()).collect();
    assert!(untagged.contains(&"busybox:latest".to_string()), "{untagged:?}");
    assert!(
        untagged.iter().any(|u| u.starts_with("busybox@sha256:")),
        "the repo digest goes with the last tag"
    );
    assert_eq!(out.last().unwrap().deleted.as_deref(), Some(id.as_str()));
    assert!(s.fake.images.lock().unwrap().is_empty());
    assert!(matches!(s.svc.inspect("busybox"), Err(ImageError::NotFound(_))));
}

#[tokio::test]
async fn list_filters_and_prune() {
    let s = setup();
    let (old, _) = pull(&s, "busybox", "").await.unwrap();
    let (new, _) = pull(&s, "debian", "12").await.unwrap();
    let f = |j: &str| crate::filters::Filters::parse(j).unwrap();
    let all = s.svc.list(&f(""), false, false).unwrap();
    assert_eq!(
        all.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![new.clone(), old.clone()],
        "newest first"
    );
    assert_eq!(
        s.svc
            .list(&f(r#"{"label":["a=b"]}"#), false, false)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.svc
            .list(&f(r#"{"before":["debian:12"]}"#), false, false)
            .unwrap()[0]
            .id,
        old
    );
    assert_eq!(
        s.svc.list(&f(r#"{"since":["busybox"]}"#), false, false).unwrap()[0].id,
        new
    );
    assert_eq!(
        s.svc.list(&f(r#"{"reference":["deb*"]}"#), false, false).unwrap()[0].id,
        new
    );
    assert!(
        s.svc
            .list(&f(r#"{"dangling":["true"]}"#), false, false)
            .unwrap()
            .is_empty()
    );
    assert!(s.svc.list(&f(r#"{"nope":["x"]}"#), false, false).is_err());
    // Retag debian:12 onto busybox's image: debian's old image becomes dangling, prune removes only it.
    s.svc.tag(&old, "debian", "12").await.unwrap();
    let dangling = s.svc.list(&f(r#"{"dangling":["true"]}"#), false, false).unwrap();
    assert_eq!(dangling.len(), 1);
    assert_eq!(dangling[0].id, new);
    let pruned = s.svc.prune(&f("")).await.unwrap();
    assert_eq!(
        pruned.images_deleted.unwrap().last().unwrap().deleted.as_deref(),
        Some(new.as_str())
    );
    assert_eq!(pruned.space_reclaimed, Some(200));
    let pruned = s.svc.prune(&f(r#"{"dangling":["false"]}"#)).await.unwrap();
    assert!(
        pruned
            .images_deleted
            .unwrap()
            .iter()
            .any(|d| d.deleted.as_deref() == Some(old.as_str()))
    );
    assert_eq!(s.svc.count().unwrap(), 0);
}

#[tokio::test]
async fn uncommitted_store_images_are_removed_at_open() {
    let s = setup();
    pull(&s, "busybox", "").await.unwrap();
    // An image the store finished but the database never recorded (a daemon killed in between).
    let orphan = image(7, "2024-01-01T00:00:00Z", serde_json::json!({}));
    s.fake
        .images
        .lock()
        .unwrap()
        .insert(orphan.id.clone(), orphan.clone());
    let svc = ImageService::with_backend(s.db.clone(), s.events.clone(), s.fake.clone()).unwrap();
    assert!(!s.fake.images.lock().unwrap().contains_key(&orphan.id));
    assert!(*s.fake.gc_runs.lock().unwrap() >= 1);
    assert_eq!(svc.count().unwrap(), 1);
    assert!(svc.inspect("busybox").is_ok());
}

#[tokio::test]
async fn load_push_login_and_bad_input() {
    let s = setup();
    let (r, w) = tokio::io::duplex(16);
    drop(w);
    let lines = s.svc.load(Box::new(r)).await.unwrap();
    assert_eq!(lines, vec!["Loaded image: loaded:1\n".to_string()]);
    assert!(s.svc.inspect("loaded:1").is_ok());
    let (tx, mut rx) = mpsc::channel(16);
    s.svc.push("loaded:1", "", None, tx).await.unwrap();
    let mut msgs = Vec::new();
    while let Ok(m) = rx.try_recv() {
        msgs.push(m);
    }
    assert!(msgs.iter().any(|m| {
        m.status
            .as_deref()
            .is_some_and(|s| s.contains("1: digest: sha256:"))
    }));
    assert!(msgs.iter().any(|m| m.aux.is_some()));
    assert_eq!(s.svc.inspect("loaded:1").unwrap().repo_digests.unwrap().len(), 1);
    let bad = RegistryAuth {
        username: "u".into(),
        password: "wrong".into(),
        server_address: "r".into(),
    };
    assert_eq!(
        s.svc.login(bad).await.unwrap_err().kind(),
        ErrorKind::Unauthorized
    );
    let good = RegistryAuth {
        username: "u".into(),
        password: "right".into(),
        server_address: "r".into(),
    };
    s.svc.login(good).await.unwrap();
    assert_eq!(
        s.svc.tag("loaded:1", "Bad Name", "").await.unwrap_err().kind(),
        ErrorKind::InvalidParameter
    );
    assert_eq!(
        s.svc.tag("loaded:1", "x", "bad tag").await.unwrap_err().kind(),
        ErrorKind::InvalidParameter
    );
    let plan = s.svc.save_plan(&["loaded:1".to_string()]).unwrap();
    assert_eq!(plan[0].1, vec!["loaded:1".to_string()]);
    assert!(matches!(
        s.svc.save_plan(&["nosuch".to_string()]),
        Err(ImageError::NotFound(_))
    ));
}
