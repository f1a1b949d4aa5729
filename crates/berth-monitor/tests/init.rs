//! berth-init: exit codes, signal forwarding, reaping of orphans.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_test_support::bins::locate;

fn init_bin() -> std::path::PathBuf {
    locate("berth-init", "BERTH_INIT").unwrap_or_else(|e| panic!("{e}"))
}

/// Kills the child on drop (a failed test must not leave it running).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn code(args: &[&str]) -> i32 {
    let status = Command::new(init_bin()).args(args).status().unwrap();
    status.code().expect("berth-init exits, it is not killed")
}

#[test]
fn exit_codes_are_passed_on() {
    assert_eq!(code(&["/bin/sh", "-c", "exit 0"]), 0);
    assert_eq!(code(&["/bin/sh", "-c", "exit 3"]), 3);
    assert_eq!(code(&["/bin/sh", "-c", "kill -9 $$"]), 137);
    assert_eq!(code(&["/no/such/program"]), 127);
    assert_eq!(code(&[]), 2);
}

#[test]
fn signals_are_forwarded_to_the_child() {
    for (signal, name, expected) in [
        (libc::SIGTERM, "TERM", 42),
        (libc::SIGINT, "INT", 43),
        (libc::SIGUSR1, "USR1", 44),
    ] {
        let script = format!("trap 'exit {expected}' {name}; echo ready; while :; do sleep 0.05; done");
        let mut child = Child(
            Command::new(init_bin())
                .args(["/bin/sh", "-c", &script])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut line = String::new();
        BufReader::new(child.0.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        // SAFETY: kill takes no pointers; the pid is our unreaped child.
        unsafe { libc::kill(child.0.id() as i32, signal) };
        let status = child.0.wait().unwrap();
        assert_eq!(status.code(), Some(expected), "{name}");
    }
}

/// (pid, state) of the processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<(i32, char)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?.chars().next()?;
            let ppid: u32 = fields.next()?.parse().ok()?;
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

#[test]
fn orphans_are_reaped() {
    // The inner shell starts a sleep in the background and exits: the sleep is orphaned to berth-init.
    let mut child = Child(
        Command::new(init_bin())
            .args([
                "/bin/sh",
                "-c",
                "/bin/sh -c '/bin/sleep 0.3 & echo started'; /bin/sleep 2",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let init = child.0.id();
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "started\n");
    let deadline = Instant::now() + Duration::from_secs(1);
    while children_of(init).len() < 2 {
        assert!(Instant::now() < deadline, "the orphan never came to berth-init");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The orphan's 0.3 s are over long before the main child's 2 s.
    std::thread::sleep(Duration::from_millis(800));
    let children = children_of(init);
    assert_eq!(children.len(), 1, "only the main child is left: {children:?}");
    assert!(children.iter().all(|&(_, state)| state != 'Z'), "{children:?}");
    assert_eq!(child.0.wait().unwrap().code(), Some(0));
}
