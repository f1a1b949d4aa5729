//! docker-compose (Debian's 1.29, on docker-py) driving berthd: a two-service project on the project's own
//! network, the services finding each other by name through the embedded DNS, a published port answering on the
//! daemon's loopback, and `down` removing the containers and the network. The daemon runs in a network namespace
//! of its own (see the harness), so nothing here touches the host's network.

mod common;

use std::io::{Read as _, Write as _};
use std::process::{Command, Output};

use common::{Daemon, busybox_image, ok, start_netns, wait_until};

const COMPOSE_FILE: &str = r#"version: "3.8"
services:
  web:
    image: busybox:latest
    command: sh -c 'echo composed > /tmp/index.html; exec httpd -f -p 80 -h /tmp'
    ports:
      - "18080:80"
  client:
    image: busybox:latest
    command: sleep 300
    depends_on: [web]
"#;

/// `docker-compose -p <project> <args>` in `dir`, against `d`.
fn compose(d: &Daemon, dir: &std::path::Path, project: &str, args: &[&str]) -> Output {
    let mut c = Command::new("docker-compose");
    c.current_dir(dir)
        .env("DOCKER_HOST", d.host())
        .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
        .arg("-p")
        .arg(project)
        .args(args);
    common::run(c)
}

/// GET /index.html on 127.0.0.1:port inside the daemon's namespace (the body, or an empty string).
fn get_local(d: &Daemon, port: u16) -> String {
    d.with_netns(|| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2))).ok()?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.split("\r\n\r\n").nth(1).map(str::to_string)
    })
    .unwrap_or_default()
}

#[test]
fn a_compose_project_runs_on_its_network_with_names_and_ports() {
    let d = start_netns(&[]);
    busybox_image(&d, "busybox:latest");
    let dir = d.dir.path().join("project");
    std::fs::create_dir_all(&dir).expect("make the project dir");
    std::fs::write(dir.join("docker-compose.yml"), COMPOSE_FILE).expect("write the compose file");
    let project = "bt";

    ok(&compose(&d, &dir, project, &["up", "-d"]));
    let nets = ok(&d.berth(&["network", "ls", "--format", "{{.Name}}"]));
    assert!(nets.lines().any(|l| l == "bt_default"), "{nets}");

    // The client reaches the web service by its service name.
    let mut body = String::new();
    let reached = wait_until(10, || {
        let o = compose(
            &d,
            &dir,
            project,
            &[
                "exec",
                "-T",
                "client",
                "sh",
                "-c",
                "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc web 80",
            ],
        );
        body = String::from_utf8_lossy(&o.stdout).into_owned();
        body.contains("composed")
    });
    assert!(reached, "client -> web by name: {body}");

    // The published port answers on the daemon's loopback.
    let mut got = String::new();
    assert!(
        wait_until(10, || {
            got = get_local(&d, 18080);
            got.trim() == "composed"
        }),
        "127.0.0.1:18080 answered {got:?}"
    );
    let ps = ok(&compose(&d, &dir, project, &["ps"]));
    assert!(ps.contains("0.0.0.0:18080->80/tcp"), "{ps}");

    ok(&compose(&d, &dir, project, &["down"]));
    let left = ok(&d.berth(&["ps", "-aq"]));
    assert!(left.trim().is_empty(), "containers left after down: {left}");
    let nets = ok(&d.berth(&["network", "ls", "--format", "{{.Name}}"]));
    assert!(
        !nets.lines().any(|l| l == "bt_default"),
        "the project network outlived down: {nets}"
    );
    assert!(
        get_local(&d, 18080).is_empty(),
        "the port still answers after down"
    );
}
