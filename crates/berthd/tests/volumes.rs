//! Volumes through the Engine API: raw requests (status codes, bodies, errors as dockerd's) and the docker 28 CLI
//! (`docker volume create/ls/inspect/rm/prune`).

mod common;

use common::{ok, start};

#[test]
fn api_creates_lists_inspects_removes_and_prunes() {
    let d = start(&[]);
    let (s, v) = d.json(
        "POST",
        "/v1.47/volumes/create",
        br#"{"Name":"data","Driver":"local","DriverOpts":{},"Labels":{"team":"a"}}"#,
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "a");
    let mountpoint = v["Mountpoint"].as_str().unwrap().to_string();
    assert_eq!(
        mountpoint,
        d.data.join("volumes/data/_data").display().to_string()
    );
    assert!(std::path::Path::new(&mountpoint).is_dir());

    let (s, anon) = d.json("POST", "/volumes/create", b"{}");
    assert_eq!(s, 201);
    let anon_name = anon["Name"].as_str().unwrap().to_string();
    assert_eq!(anon_name.len(), 64);
    assert!(anon["Labels"].get("com.docker.volume.anonymous").is_some());

    let (s, l) = d.json("GET", "/volumes", b"");
    assert_eq!(s, 200);
    assert_eq!(l["Volumes"].as_array().unwrap().len(), 2);
    let (s, l) = d.json(
        "GET",
        "/volumes?filters=%7B%22label%22%3A%5B%22team%3Da%22%5D%7D",
        b"",
    );
    assert_eq!(s, 200);
    assert_eq!(l["Volumes"].as_array().unwrap().len(), 1);
    let (s, e) = d.json("GET", "/volumes?filters=%7B%22bogus%22%3A%5B%22x%22%5D%7D", b"");
    assert_eq!(s, 400, "{e}");

    let (s, i) = d.json("GET", "/volumes/data", b"");
    assert_eq!(s, 200);
    assert_eq!(i["Name"], "data");
    let (s, e) = d.json("GET", "/volumes/nosuch", b"");
    assert_eq!(s, 404);
    assert_eq!(e["message"], "get nosuch: no such volume");

    let (s, e) = d.json("POST", "/volumes/create", br#"{"Name":"a/b"}"#);
    assert_eq!(s, 400, "{e}");
    let (s, e) = d.json(
        "POST",
        "/volumes/create",
        br#"{"Name":"x1","DriverOpts":{"bogus":"1"}}"#,
    );
    assert_eq!(s, 400);
    assert_eq!(e["message"], "create x1: invalid option: \"bogus\"");
    let (s, _) = d.json("POST", "/volumes/create", br#"{"Name":"x2","Driver":"nfs"}"#);
    assert_eq!(s, 404);
    let (s, _) = d.json("POST", "/volumes/create", b"{not json");
    assert_eq!(s, 400);

    // Prune takes only anonymous volumes by default, every unused one with all=true.
    let (s, p) = d.json("POST", "/volumes/prune", b"");
    assert_eq!(s, 200);
    assert_eq!(p["VolumesDeleted"], serde_json::json!([anon_name]));
    let (s, p) = d.json(
        "POST",
        "/volumes/prune?filters=%7B%22all%22%3A%5B%22true%22%5D%7D",
        b"",
    );
    assert_eq!(s, 200);
    assert_eq!(p["VolumesDeleted"], serde_json::json!(["data"]));
    assert!(!std::path::Path::new(&mountpoint).exists());

    let (s, _, _) = d.request("DELETE", "/volumes/data", b"");
    assert_eq!(s, 404);
    let (s, _, _) = d.request("DELETE", "/volumes/data?force=1", b"");
    assert_eq!(s, 204);
    let (s, _) = d.json("POST", "/volumes/create", br#"{"Name":"gone"}"#);
    assert_eq!(s, 201);
    let (s, _, _) = d.request("DELETE", "/volumes/gone", b"");
    assert_eq!(s, 204);
}

#[test]
fn volumes_survive_a_restart() {
    let dir = tempfile::Builder::new().prefix("berthd-test-").tempdir().unwrap();
    let path = dir.path().to_owned();
    let mut d = common::start_in(dir, &[]).unwrap_or_else(|(log, s)| panic!("{s:?}\n{log}"));
    let (s, _) = d.json(
        "POST",
        "/volumes/create",
        br#"{"Name":"kept","Labels":{"k":"v"}}"#,
    );
    assert_eq!(s, 201);
    std::fs::write(d.data.join("volumes/kept/_data/file"), b"x").unwrap();
    d.terminate().expect("berthd stops on SIGTERM");
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    drop(d);
    assert_eq!(dir.path(), path);
    let d = common::start_in(dir, &[]).unwrap_or_else(|(log, s)| panic!("{s:?}\n{log}"));
    let (s, v) = d.json("GET", "/volumes/kept", b"");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Labels"]["k"], "v");
    assert!(d.data.join("volumes/kept/_data/file").exists());
}

#[test]
fn docker_cli_manages_volumes() {
    let d = start(&[]);
    let out = ok(&d.docker(&["volume", "create", "--label", "env=test", "cli-vol"]));
    assert_eq!(out.trim(), "cli-vol");
    let anon = ok(&d.docker(&["volume", "create"]));
    let anon = anon.trim().to_string();
    assert_eq!(anon.len(), 64);

    let ls = ok(&d.docker(&["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]));
    let mut lines: Vec<&str> = ls.lines().collect();
    lines.sort();
    let mut expect = vec!["local cli-vol".to_string(), format!("local {anon}")];
    expect.sort();
    assert_eq!(lines, expect);
    let q = ok(&d.docker(&["volume", "ls", "-q", "--filter", "label=env=test"]));
    assert_eq!(q.trim(), "cli-vol");
    let q = ok(&d.docker(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        "dangling=true",
        "--filter",
        "name=cli",
    ]));
    assert_eq!(q.trim(), "cli-vol");

    let insp = ok(&d.docker(&["volume", "inspect", "cli-vol"]));
    let v: serde_json::Value = serde_json::from_str(&insp).unwrap();
    assert_eq!(v[0]["Name"], "cli-vol");
    assert_eq!(v[0]["Labels"]["env"], "test");
    assert_eq!(
        v[0]["Mountpoint"],
        d.data.join("volumes/cli-vol/_data").display().to_string()
    );
    let fmt = ok(&d.docker(&[
        "volume",
        "inspect",
        "--format",
        "{{.Driver}} {{.Scope}}",
        "cli-vol",
    ]));
    assert_eq!(fmt.trim(), "local local");

    let bad = d.docker(&["volume", "inspect", "nosuch"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no such volume"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let pruned = ok(&d.docker(&["volume", "prune", "-f"]));
    assert!(pruned.contains(&anon), "{pruned}");
    assert!(pruned.contains("Total reclaimed space"), "{pruned}");
    let ls = ok(&d.docker(&["volume", "ls", "-q"]));
    assert_eq!(ls.trim(), "cli-vol");

    let rm = ok(&d.docker(&["volume", "rm", "cli-vol"]));
    assert_eq!(rm.trim(), "cli-vol");
    let bad = d.docker(&["volume", "rm", "cli-vol"]);
    assert!(!bad.status.success());
    ok(&d.docker(&["volume", "rm", "-f", "cli-vol"]));
    assert!(ok(&d.docker(&["volume", "ls", "-q"])).trim().is_empty());
}
