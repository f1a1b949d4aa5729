//! Bad input: each case gets a one-line error naming the problem, a non-zero exit, and leaves no state,
//! mount or process behind. Needs root.

use std::time::Duration;

use berth_test_support::{Bundle, LeakProbe, Runtime, assert_success, unique_id};

/// Runs `create` and checks the failure: one line on stderr containing `needle`, nothing left.
fn create_fails(rt: &Runtime, bundle: &Bundle, needle: &str) {
    let id = unique_id("bad");
    let out = rt.run(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "create succeeded; expected an error containing {needle:?}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "the error is one line: {err:?}"
    );
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert!(
        rt.containers().is_empty(),
        "state left behind: {:?}",
        rt.containers()
    );
    LeakProbe::new()
        .mounts_under(bundle.path())
        .processes_with(&id)
        .root(rt.root())
        .assert_clean_within(Duration::from_secs(5));
}

fn write_raw(bundle: &Bundle, text: &str) {
    std::fs::write(bundle.config_path(), text).expect("write config.json");
}

#[test]
fn missing_and_malformed_config() {
    let rt = Runtime::new();
    let bundle = Bundle::busybox();
    std::fs::remove_file(bundle.config_path()).expect("remove");
    create_fails(&rt, &bundle, "has no config.json");
    write_raw(&bundle, "{\"ociVersion\": ");
    create_fails(&rt, &bundle, "is not a valid runtime spec");
    write_raw(&bundle, "[1, 2, 3]");
    create_fails(&rt, &bundle, "is not a valid runtime spec");
}

#[test]
fn unknown_spec_version() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.spec_mut().set_version("2.0.0".into());
    bundle.write_config();
    create_fails(&rt, &bundle, "ociVersion \"2.0.0\"");
}

#[test]
fn missing_rootfs() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle
        .spec_mut()
        .root_mut()
        .as_mut()
        .unwrap()
        .set_path("no-such-rootfs".into());
    bundle.write_config();
    create_fails(&rt, &bundle, "no-such-rootfs");
}

#[test]
fn bad_mounts() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.set_terminal(false);
    let good = bundle.spec().mounts().clone().unwrap();

    let mut relative = good.clone();
    let mut m = relative[0].clone();
    m.set_destination("relative/path".into());
    relative.push(m);
    bundle.spec_mut().set_mounts(Some(relative));
    bundle.write_config();
    create_fails(&rt, &bundle, "is not absolute");

    // A bind of a source that does not exist fails inside the init, after the namespaces were made.
    let mut missing = good.clone();
    let bind: oci_spec::runtime::Mount = serde_json::from_str(
        r#"{"destination":"/mnt","type":"bind","source":"/nonexistent/berth-source","options":["rbind"]}"#,
    )
    .unwrap();
    missing.push(bind);
    bundle.spec_mut().set_mounts(Some(missing));
    bundle.write_config();
    create_fails(&rt, &bundle, "/nonexistent/berth-source");

    let mut bad_type = good;
    let fs: oci_spec::runtime::Mount =
        serde_json::from_str(r#"{"destination":"/mnt","type":"nosuchfs","source":"none"}"#).unwrap();
    bad_type.push(fs);
    bundle.spec_mut().set_mounts(Some(bad_type));
    bundle.write_config();
    create_fails(&rt, &bundle, "nosuchfs");
}

#[test]
fn missing_executable_and_bad_cwd() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.set_args(&["no-such-program"]).set_terminal(false);
    bundle.write_config();
    create_fails(&rt, &bundle, "executable file not found");
    bundle.set_args(&["/bin/sh"]);
    bundle
        .spec_mut()
        .process_mut()
        .as_mut()
        .unwrap()
        .set_cwd("/bin/busybox/sub".into());
    bundle.write_config();
    create_fails(&rt, &bundle, "/bin/busybox/sub");
}

#[test]
fn terminal_without_console_socket() {
    let rt = Runtime::new();
    let bundle = Bundle::busybox();
    // The default spec asks for a terminal; a detached create needs somewhere to send it.
    create_fails(&rt, &bundle, "--console-socket");
}

#[test]
fn unknown_capability_and_namespace_path() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let mut spec: serde_json::Value = serde_json::to_value(bundle.spec()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_FLY"]);
    write_raw(&bundle, &spec.to_string());
    create_fails(&rt, &bundle, "CAP_FLY");

    bundle.set_terminal(false);
    let ns: Vec<oci_spec::runtime::LinuxNamespace> =
        serde_json::from_str(r#"[{"type":"mount"},{"type":"network","path":"/proc/999999999/ns/net"}]"#)
            .unwrap();
    bundle
        .spec_mut()
        .linux_mut()
        .as_mut()
        .unwrap()
        .set_namespaces(Some(ns));
    bundle.write_config();
    create_fails(&rt, &bundle, "/proc/999999999/ns/net");
}

#[test]
fn duplicate_id_and_bad_ids() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.set_check_args(&["sleep", "30"]);
    let id = unique_id("dup");
    assert_success(&rt.create(&id, &bundle), "first create");
    rt.track_pid(rt.state(&id)["pid"].as_i64().unwrap() as i32);
    let out = rt.run(&["create", "--bundle", bundle.path().to_str().unwrap(), &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        rt.containers(),
        vec![id.clone()],
        "the first container is untouched"
    );
    assert_eq!(rt.status(&id), "created");
    assert_success(&rt.delete_force(&id), "delete");

    for bad in ["../escape", "a/b", ".."] {
        let out = rt.run(&["create", "--bundle", bundle.path().to_str().unwrap(), bad]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not a valid container id"));
    }
    assert!(rt.containers().is_empty());
}

#[test]
fn bad_signal_and_unknown_container() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.set_check_args(&["sleep", "30"]);
    let id = unique_id("sig");
    assert_success(&rt.create(&id, &bundle), "create");
    rt.track_pid(rt.state(&id)["pid"].as_i64().unwrap() as i32);
    for bad in ["SIGNOPE", "0", "99", "KILLALL"] {
        let out = rt.kill(&id, bad);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is not a signal") && err.trim_end().lines().count() == 1,
            "{err}"
        );
    }
    assert_eq!(rt.status(&id), "created", "a bad signal changes nothing");
    for verb in ["state", "start", "delete"] {
        let out = rt.run(&[verb, "no-such-container"]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does not exist"),
            "{verb}"
        );
    }
    assert_success(&rt.delete_force(&id), "delete");
}

#[test]
fn unmappable_ids_in_a_user_namespace() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.set_terminal(false);
    let linux = bundle.spec_mut().linux_mut().as_mut().unwrap();
    let mut ns = linux.namespaces().clone().unwrap();
    ns.push(serde_json::from_str(r#"{"type":"user"}"#).unwrap());
    linux.set_namespaces(Some(ns));
    bundle.write_config();
    create_fails(&rt, &bundle, "no uidMappings");
    let map: Vec<oci_spec::runtime::LinuxIdMapping> =
        serde_json::from_str(r#"[{"containerID":0,"hostID":100000,"size":65536}]"#).unwrap();
    let linux = bundle.spec_mut().linux_mut().as_mut().unwrap();
    linux.set_uid_mappings(Some(map.clone()));
    linux.set_gid_mappings(Some(map));
    let mut user = bundle.spec().process().as_ref().unwrap().user().clone();
    user.set_uid(70000);
    bundle.spec_mut().process_mut().as_mut().unwrap().set_user(user);
    bundle.write_config();
    create_fails(&rt, &bundle, "uid 70000 is not mapped");
}
