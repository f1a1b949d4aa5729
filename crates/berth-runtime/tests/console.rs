//! `--console-socket`: the pty master is sent to the socket as runc sends it, and the process sees a terminal.
//! Needs root.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;

use berth_test_support::{Bundle, Runtime, assert_success, unique_id};

#[test]
fn terminal_through_console_socket() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.set_args(&["sh", "-c", "tty; echo hello-from-the-pty; stty size"]);
    bundle.set_terminal(true);
    let size: oci_spec::runtime::Box = serde_json::from_str(r#"{"height":33,"width":101}"#).unwrap();
    bundle
        .spec_mut()
        .process_mut()
        .as_mut()
        .unwrap()
        .set_console_size(Some(size));
    bundle.write_config();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().expect("accept");
        berth_oci::console::recv_fd(conn.as_fd()).expect("receive the pty master")
    });
    let id = unique_id("tty");
    let out = rt.run(&[
        "create",
        "--console-socket",
        sock_path.to_str().unwrap(),
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ]);
    assert_success(&out, "create --console-socket");
    rt.track_pid(rt.state(&id)["pid"].as_i64().unwrap() as i32);
    let master = receiver.join().expect("receiver thread");
    assert_success(&rt.start(&id), "start");
    let mut file = std::fs::File::from(master);
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    // Reading the master ends with EIO once the slave's last holder exits.
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(text.contains("hello-from-the-pty"), "{text}");
    assert!(text.contains("33 101"), "the console size was applied: {text}");
    assert_success(&rt.delete_force(&id), "delete");
}
