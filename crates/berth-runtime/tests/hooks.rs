//! OCI hooks run at the right moment, in the right namespace, with the state on stdin; a failing or hanging
//! create hook fails `create` and leaves nothing behind. Needs root.

use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use berth_test_support::{Bundle, LeakProbe, Runtime, assert_success, unique_id};

fn write_script(path: &std::path::Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn every_hook_at_its_moment_and_in_its_namespace() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().display().to_string();
    // Host-side hooks record their mount namespace and the state they were given.
    let host_hook = out.path().join("hook.sh");
    write_script(
        &host_hook,
        &format!("cat > {o}/$1.state; readlink /proc/self/ns/mnt > {o}/$1.mnt"),
    );
    // startContainer resolves inside the container.
    write_script(
        &bundle.rootfs().join("start-hook.sh"),
        "echo started-by-hook > /tmp/start-marker",
    );
    let hooks = serde_json::json!({
        "prestart": [{"path": host_hook, "args": ["hook.sh", "prestart"]}],
        "createRuntime": [{"path": host_hook, "args": ["hook.sh", "createRuntime"]}],
        "createContainer": [{"path": host_hook, "args": ["hook.sh", "createContainer"]}],
        "startContainer": [{"path": "/start-hook.sh"}],
        "poststart": [{"path": host_hook, "args": ["hook.sh", "poststart"]}],
        "poststop": [{"path": host_hook, "args": ["hook.sh", "poststop"]}],
    });
    bundle
        .spec_mut()
        .set_hooks(Some(serde_json::from_value(hooks).unwrap()));
    let mut mounts = bundle.spec().mounts().clone().unwrap();
    mounts.push(serde_json::from_str(r#"{"destination":"/tmp","type":"tmpfs","source":"tmpfs"}"#).unwrap());
    bundle.spec_mut().set_mounts(Some(mounts));
    bundle
        .set_args(&["sh", "-c", "cat /tmp/start-marker; sleep 30"])
        .set_terminal(false);
    let id = unique_id("hooks");
    assert_success(&rt.create(&id, &bundle), "create");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    rt.track_pid(pid as i32);

    let read = |name: &str| std::fs::read_to_string(out.path().join(name)).unwrap_or_default();
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt")
        .unwrap()
        .display()
        .to_string();
    for hook in ["prestart", "createRuntime", "createContainer"] {
        let state: serde_json::Value = serde_json::from_str(&read(&format!("{hook}.state"))).expect(hook);
        assert_eq!(state["status"], "created", "{hook}");
        assert_eq!(state["pid"], pid, "{hook}");
        assert_eq!(state["id"], id.as_str());
    }
    assert_eq!(
        read("createRuntime.mnt").trim(),
        host_mnt,
        "createRuntime runs in the runtime's namespace"
    );
    let container_mnt = format!(
        "mnt:[{}]",
        std::fs::metadata(format!("/proc/{pid}/ns/mnt")).unwrap().ino()
    );
    assert_eq!(
        read("createContainer.mnt").trim(),
        container_mnt,
        "createContainer runs in the container's"
    );
    assert!(read("poststart.state").is_empty(), "poststart ran before start");

    assert_success(&rt.start(&id), "start");
    let state: serde_json::Value = serde_json::from_str(&read("poststart.state")).expect("poststart ran");
    assert_eq!(state["status"], "running");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !rt.container_stdout(&id).contains("started-by-hook") {
        assert!(
            std::time::Instant::now() < deadline,
            "the startContainer hook did not run before the program"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(read("poststop.state").is_empty());
    assert_success(&rt.delete_force(&id), "delete");
    let state: serde_json::Value = serde_json::from_str(&read("poststop.state")).expect("poststop ran");
    assert_eq!(state["status"], "stopped");
}

#[test]
fn failing_and_hanging_create_hooks_fail_create_cleanly() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.set_check_args(&["sleep", "30"]);
    for (hooks, needle) in [
        (
            r#"{"createRuntime":[{"path":"/bin/sh","args":["sh","-c","echo no-way >&2; exit 4"]}]}"#,
            "no-way",
        ),
        (
            r#"{"createContainer":[{"path":"/bin/false"}]}"#,
            "createContainer hook /bin/false failed",
        ),
        (
            r#"{"createRuntime":[{"path":"/bin/sleep","args":["sleep","60"],"timeout":1}]}"#,
            "did not finish within 1 s",
        ),
        (
            r#"{"prestart":[{"path":"/bin/true","timeout":-3}]}"#,
            "must be positive",
        ),
    ] {
        bundle
            .spec_mut()
            .set_hooks(Some(serde_json::from_str(hooks).unwrap()));
        bundle.write_config();
        let id = unique_id("badhook");
        let started = std::time::Instant::now();
        let out = rt.run(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
        assert!(!out.status.success(), "{hooks}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle:?} not in {err:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(rt.containers().is_empty(), "{:?}", rt.containers());
        LeakProbe::new()
            .processes_with(&id)
            .root(rt.root())
            .assert_clean_within(Duration::from_secs(5));
    }
    // A failing poststop hook is a warning: the container is deleted all the same.
    bundle.spec_mut().set_hooks(Some(
        serde_json::from_str(r#"{"poststop":[{"path":"/bin/false"}]}"#).unwrap(),
    ));
    let id = unique_id("poststop");
    assert_success(&rt.create(&id, &bundle), "create");
    let out = rt.delete_force(&id);
    assert_success(&out, "delete with a failing poststop hook");
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    assert!(rt.containers().is_empty());
}
