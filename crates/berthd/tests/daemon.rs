//! berthd without images: version negotiation, system endpoints, events, errors, the pid file, SIGTERM, the
//! berth CLI (contexts) and the docker 28 CLI. Each test starts its own daemon.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::{header, ok, start};

#[test]
fn ping_and_version_negotiation_over_raw_http() {
    let d = start(&[]);
    for method in ["GET", "HEAD"] {
        let (status, h, body) = d.request(method, "/_ping", b"");
        assert_eq!(status, 200, "{method} /_ping");
        assert_eq!(header(&h, "api-version"), Some("1.47"));
        assert_eq!(header(&h, "ostype"), Some("linux"));
        assert_eq!(header(&h, "docker-experimental"), Some("false"));
        assert!(header(&h, "builder-version").is_some());
        assert_eq!(
            body,
            if method == "GET" {
                b"OK".to_vec()
            } else {
                Vec::new()
            }
        );
    }
    let (status, v) = d.json("GET", "/v1.47/version", b"");
    assert_eq!(status, 200);
    assert_eq!(v["ApiVersion"], "1.47");
    assert_eq!(v["MinAPIVersion"], "1.24");
    assert_eq!(v["Os"], "linux");
    let (status, v2) = d.json("GET", "/version", b"");
    assert_eq!(status, 200);
    assert_eq!(v2["Version"], v["Version"]);
    let (status, v) = d.json("GET", "/v1.41/info", b"");
    assert_eq!(status, 200);
    assert_eq!(v["OSType"], "linux");
    assert_eq!(v["Driver"], "overlay2");
    assert_eq!(v["DockerRootDir"], d.data.display().to_string());
    assert_eq!(v["Images"], 0);
    let (status, v) = d.json("GET", "/v1.99/version", b"");
    assert_eq!(status, 400);
    assert_eq!(
        v["message"],
        "client version 1.99 is too new. Maximum supported API version is 1.47"
    );
    let (status, v) = d.json("GET", "/v1.12/version", b"");
    assert_eq!(status, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("client version 1.12 is too old. Minimum supported API version is 1.24")
    );
    let (status, v) = d.json("GET", "/v1.47/no/such/route", b"");
    assert_eq!(status, 404);
    assert!(v["message"].as_str().is_some());
    let (status, v) = d.json("GET", "/v1.47/system/df", b"");
    assert_eq!(status, 200);
    assert_eq!(v["LayersSize"], 0);
    assert_eq!(v["Images"], serde_json::json!([]));
}

#[test]
fn events_replay_since_stop_at_until_and_filter() {
    let d = start(&[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let (status, _, body) = d.request("GET", &format!("/v1.47/events?since=0&until={now}"), b"");
    assert_eq!(status, 200);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["Type"] == "daemon" && e["Action"] == "start"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["scope"] == "local" && e["timeNano"].as_i64().is_some())
    );
    let filter = r#"{"type":{"image":true}}"#.replace('"', "%22").replace('{', "%7B").replace('}', "%7D");
    let (_, _, body) = d.request(
        "GET",
        &format!("/events?since=0&until={now}&filters={filter}"),
        b"",
    );
    assert!(
        body.is_empty(),
        "the image filter lets only image events through: {}",
        String::from_utf8_lossy(&body)
    );
    let (status, v) = d.json("GET", "/events?filters=%7B%22bogus%22:[%22x%22]%7D", b"");
    assert_eq!(status, 400);
    assert_eq!(v["message"], "invalid filter 'bogus'");
    let (status, _) = d.json("GET", "/events?since=yesterday", b"");
    assert_eq!(status, 400);

    // A live stream: headers come at once, the stream stays open until the daemon stops.
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /v1.47/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut status_line = String::new();
    r.read_line(&mut status_line).unwrap();
    assert!(status_line.contains("200"), "{status_line}");
    let (_, v) = d.json("GET", "/info", b"");
    assert_eq!(v["NEventsListener"], 1);
}

#[test]
fn berth_cli_version_info_events_and_df() {
    let d = start(&[]);
    let out = ok(&d.berth(&["version"]));
    assert!(out.contains("Server: Berth Engine"), "{out}");
    assert!(
        out.contains("API version:      1.47 (minimum version 1.24)"),
        "{out}"
    );
    let out = ok(&d.berth(&[
        "version",
        "--format",
        "{{.Server.ApiVersion}}/{{.Client.ApiVersion}}",
    ]));
    assert_eq!(out.trim(), "1.47/1.47");
    let out = ok(&d.berth(&["info"]));
    assert!(
        out.contains(&format!("Docker Root Dir: {}", d.data.display())),
        "{out}"
    );
    let out = ok(&d.berth(&["info", "--format", "{{json .OSType}}"]));
    assert_eq!(out.trim(), "\"linux\"");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let out = ok(&d.berth(&["events", "--since", "0", "--until", &now.to_string()]));
    assert!(out.contains(" daemon start "), "{out}");
    let out = ok(&d.berth(&[
        "events",
        "--since",
        "0",
        "--until",
        &now.to_string(),
        "--format",
        "{{.Type}}:{{.Action}}",
    ]));
    assert_eq!(out.trim(), "daemon:start");
    let out = ok(&d.berth(&["system", "df"]));
    assert!(out.starts_with("TYPE"), "{out}");
    assert!(out.contains("Images          0"), "{out}");
    let out = ok(&d.berth(&["images"]));
    assert_eq!(out, "REPOSITORY   TAG       IMAGE ID   CREATED   SIZE\n");
    let out = ok(&d.berth(&["completion", "bash"]));
    assert!(out.contains("_berth"));
    // Usage errors exit 125, daemon errors 1, as docker.
    assert_eq!(d.berth(&["images", "--bogus"]).status.code(), Some(125));
    let o = d.berth(&["rmi", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr).trim(),
        "Error response from daemon: No such image: nosuch:latest"
    );
}

#[test]
fn docker_cli_runs_version_and_info() {
    let d = start(&[]);
    let out = ok(&d.docker(&["version"]));
    assert!(out.contains("Server: Berth Engine"), "{out}");
    assert!(out.contains("1.47 (minimum version 1.24)"), "{out}");
    let out = ok(&d.docker(&["info"]));
    assert!(out.contains("Storage Driver: overlay2"), "{out}");
    assert!(
        out.contains(&format!("Docker Root Dir: {}", d.data.display())),
        "{out}"
    );
    let out = ok(&d.docker(&["info", "--format", "{{.OSType}} {{.Images}}"]));
    assert_eq!(out.trim(), "linux 0");
    let out = ok(&d.docker(&["images"]));
    assert!(out.starts_with("REPOSITORY"), "{out}");
    let out = ok(&d.docker(&["system", "df"]));
    assert!(out.contains("Images"), "{out}");
    let o = d.docker(&["image", "inspect", "nosuch"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such image: nosuch"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn contexts_switch_between_two_daemons() {
    let a = start(&[]);
    let b = start(&[]);
    let cfg = tempfile::tempdir().unwrap();
    let berth = |args: &[&str]| {
        let mut c = std::process::Command::new(common::berth_bin());
        c.args(args)
            .env("BERTH_CONFIG", cfg.path())
            .env_remove("BERTH_HOST")
            .env_remove("DOCKER_HOST")
            .env_remove("BERTH_CONTEXT")
            .env_remove("DOCKER_CONTEXT");
        common::run(c)
    };
    ok(&berth(&[
        "context",
        "create",
        "a",
        "--docker",
        &format!("host={}", a.host()),
        "--description",
        "first",
    ]));
    ok(&berth(&[
        "context",
        "create",
        "b",
        "--docker",
        &format!("host={}", b.host()),
    ]));
    assert!(
        !berth(&["context", "create", "a", "--docker", "host=unix:///x"])
            .status
            .success()
    );
    let root = |args: &[&str]| ok(&berth(args)).trim().to_string();
    ok(&berth(&["context", "use", "a"]));
    assert_eq!(
        root(&["info", "--format", "{{.DockerRootDir}}"]),
        a.data.display().to_string()
    );
    assert_eq!(root(&["context", "show"]), "a");
    ok(&berth(&["context", "use", "b"]));
    assert_eq!(
        root(&["info", "--format", "{{.DockerRootDir}}"]),
        b.data.display().to_string()
    );
    // --context and -H beat the current context; both at once is a usage error.
    assert_eq!(
        root(&["--context", "a", "info", "--format", "{{.DockerRootDir}}"]),
        a.data.display().to_string()
    );
    assert_eq!(
        root(&["-H", &a.host(), "info", "--format", "{{.DockerRootDir}}"]),
        a.data.display().to_string()
    );
    assert_eq!(
        berth(&["-H", &a.host(), "--context", "b", "info"]).status.code(),
        Some(125)
    );
    // BERTH_HOST beats the current context.
    let mut c = std::process::Command::new(common::berth_bin());
    c.args(["info", "--format", "{{.DockerRootDir}}"])
        .env("BERTH_CONFIG", cfg.path())
        .env("BERTH_HOST", a.host());
    assert_eq!(ok(&common::run(c)).trim(), a.data.display().to_string());
    let ls = ok(&berth(&["context", "ls"]));
    assert!(ls.contains("b *"), "{ls}");
    assert!(ls.contains("first"), "{ls}");
    let names = ok(&berth(&["context", "ls", "--format", "{{.Name}}"]));
    assert_eq!(names, "default\na\nb\n");
    let meta = cfg.path().join("contexts/meta");
    assert_eq!(
        std::fs::read_dir(&meta).unwrap().count(),
        2,
        "docker's layout: one directory per context"
    );
    assert!(
        !berth(&["context", "rm", "b"]).status.success(),
        "the current context is refused without -f"
    );
    ok(&berth(&["context", "rm", "-f", "b"]));
    assert_eq!(root(&["context", "show"]), "default");
    let insp: serde_json::Value = serde_json::from_str(&ok(&berth(&["context", "inspect", "a"]))).unwrap();
    assert_eq!(insp[0]["Endpoints"]["docker"]["Host"], a.host());
}

#[test]
fn pid_file_refuses_a_second_daemon() {
    let first = start(&[]);
    let pid = std::fs::read_to_string(&first.pidfile).unwrap();
    assert_eq!(pid.trim(), first.pid().to_string());
    let other = tempfile::tempdir().unwrap();
    let sock = other.path().join("other.sock");
    let pidfile = first.pidfile.display().to_string();
    let host = format!("unix://{}", sock.display());
    let data = other.path().join("data").display().to_string();
    match common::try_start(&["--pidfile", &pidfile, "-H", &host, "--data-root", &data]) {
        Ok(_) => panic!("a second daemon started on a held pid file"),
        Err((log, status)) => {
            assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
            assert!(
                log.contains("pid file found, ensure berthd is not running"),
                "{log}"
            );
        }
    }
    assert!(!sock.exists());
    assert_eq!(
        std::fs::read_to_string(&first.pidfile).unwrap(),
        pid,
        "the first daemon's pid file is untouched"
    );
    // A live socket is refused too.
    let other_pid = other.path().join("p.pid").display().to_string();
    let first_host = first.host();
    match common::try_start(&["--pidfile", &other_pid, "-H", &first_host, "--data-root", &data]) {
        Ok(_) => panic!("a second daemon took a live socket"),
        Err((log, _)) => assert!(log.contains("in use by another daemon"), "{log}"),
    }
    assert_eq!(first.request("GET", "/_ping", b"").0, 200);
}

#[test]
fn sigterm_shuts_down_cleanly() {
    let mut d = start(&[]);
    assert!(d.sock.exists() && d.pidfile.exists());
    // An open events stream does not hold the shutdown up.
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let status = d.terminate().expect("berthd did not stop within 10 s of SIGTERM");
    assert!(status.success(), "{status:?}\n{}", d.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert!(!d.sock.exists(), "the socket is removed");
    assert!(!d.pidfile.exists(), "the pid file is removed");
    let log = d.log_text();
    assert!(
        log.contains("shutting down") && log.contains("berthd stopped"),
        "{log}"
    );
    // The state survives: a new daemon on the same data root has the same id.
    let d2 = start(&["--data-root", &d.data.display().to_string()]);
    let (_, a) = d2.json("GET", "/info", b"");
    assert_eq!(a["DockerRootDir"], d.data.display().to_string());
    assert!(d.data.join("berth.db").exists());
}

#[test]
fn socket_mode_is_0660() {
    use std::os::unix::fs::PermissionsExt;
    let d = start(&[]);
    let mode = std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}

#[test]
fn malformed_bodies_and_parameters_are_400_and_change_nothing() {
    let d = start(&[]);
    let before = d.json("GET", "/images/json", b"");
    for body in [&b"{bad"[..], b"[]", b"", b"{\"username\": 5}", b"{\"bogus\": 1}"] {
        let (status, v) = d.json("POST", "/v1.47/auth", body);
        assert_eq!(status, 400, "body {:?}: {v}", String::from_utf8_lossy(body));
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let (status, v) = d.json("GET", "/images/json?filters=%7Bnot-json", b"");
    assert_eq!(status, 400, "{v}");
    let (status, v) = d.json("GET", "/images/json?filters=%7B%22colour%22:[%22red%22]%7D", b"");
    assert_eq!(status, 400);
    assert_eq!(v["message"], "invalid filter 'colour'");
    let (status, v) = d.json("POST", "/images/create", b"");
    assert_eq!(status, 400);
    assert_eq!(v["message"], "fromImage or fromSrc is required");
    let (status, _) = d.json("POST", "/images/create?fromImage=busybox&tag=bad%20tag", b"");
    assert_eq!(status, 400);
    let (status, _) = d.json(
        "POST",
        "/images/prune?filters=%7B%22dangling%22:[%22maybe%22]%7D",
        b"",
    );
    assert_eq!(status, 400);
    assert_eq!(d.json("GET", "/images/json", b""), before);
}

#[test]
fn unknown_images_are_404_no_such_image() {
    let d = start(&[]);
    for (method, path, name) in [
        ("GET", "/v1.47/images/nosuch/json", "nosuch:latest"),
        ("GET", "/images/nosuch:1.0/history", "nosuch:1.0"),
        ("DELETE", "/images/localhost:5000/a/b:c", "localhost:5000/a/b:c"),
        ("POST", "/images/nosuch/tag?repo=x&tag=y", "nosuch:latest"),
        ("GET", "/images/nosuch/get", "nosuch:latest"),
        ("GET", "/images/get?names=nosuch", "nosuch:latest"),
    ] {
        let (status, v) = d.json(method, path, b"");
        assert_eq!(status, 404, "{method} {path}: {v}");
        assert_eq!(v["message"], format!("No such image: {name}"), "{method} {path}");
    }
    let id = "0".repeat(64);
    let (status, v) = d.json("GET", &format!("/images/sha256:{id}/json"), b"");
    assert_eq!(status, 404);
    assert_eq!(v["message"], format!("No such image: sha256:{id}"));
}

#[test]
fn tcp_with_tls_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    let sh = |script: &str| {
        let mut c = std::process::Command::new("sh");
        c.arg("-ec").arg(script).current_dir(dir.path());
        ok(&common::run(c));
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 1 -subj /CN=berth-test-ca 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj /CN=127.0.0.1 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' > server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server.pem -days 1 -extfile server.ext 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout key.pem -out client.csr -subj /CN=client 2>/dev/null
        printf 'extendedKeyUsage=clientAuth\\n' > client.ext
        openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 1 -extfile client.ext 2>/dev/null");
    let port = berth_test_support::registry::free_port().unwrap();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let d = start(&[
        "-H",
        &tcp,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("server.pem"),
        "--tlskey",
        &p("server-key.pem"),
    ]);
    let berth = |extra: &[&str]| {
        let mut c = std::process::Command::new(common::berth_bin());
        c.args(extra)
            .env("BERTH_CONFIG", dir.path().join("cfg"))
            .env_remove("BERTH_HOST")
            .env_remove("DOCKER_HOST");
        common::run(c)
    };
    let out = ok(&berth(&[
        "-H",
        &tcp,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("cert.pem"),
        "--tlskey",
        &p("key.pem"),
        "version",
        "--format",
        "{{.Server.Os}}",
    ]));
    assert_eq!(out.trim(), "linux");
    // The certificate path defaults like docker's (DOCKER_CERT_PATH), for the docker CLI too.
    let mut c = std::process::Command::new(common::DOCKER);
    c.args(["version", "--format", "{{.Server.APIVersion}}"])
        .env("DOCKER_HOST", &tcp)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", dir.path())
        .env("DOCKER_CONFIG", dir.path().join("docker-cfg"));
    assert_eq!(ok(&common::run(c)).trim(), "1.47");
    let o = berth(&[
        "-H",
        &tcp,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        "/nonexistent",
        "--tlskey",
        "/nonexistent",
        "version",
    ]);
    assert!(!o.status.success(), "a client without a certificate is refused");
    drop(d);
}
