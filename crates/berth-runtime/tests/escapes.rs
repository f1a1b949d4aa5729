//! The known escapes stay closed: /proc/self/exe (CVE-2019-5736 class), leaked descriptors and working
//! directories (CVE-2024-21626 class), and mount targets through symlinks (CVE-2021-30465 class). Needs root.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;

use berth_test_support::{Bundle, Runtime, assert_success, parse_fds, runtime_bin, unique_id};

/// Makes `raw` the child's fd 3, inherited across exec (dup2 onto itself would keep close-on-exec).
fn inherit_as_fd3(cmd: &mut std::process::Command, raw: i32) {
    // SAFETY: the closure runs in the forked child before exec and only duplicates or re-flags a descriptor.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
}

fn sha(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).expect("read binary")
}

#[test]
fn proc_self_exe_reaches_only_the_sealed_trampoline() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let evil = bundle.rootfs().join("evil");
    std::fs::write(&evil, "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(&evil, std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = sha(&runtime_bin());
    bundle.set_args(&["/evil"]).set_terminal(false);
    let out = rt.run_capture(&unique_id("exe"), &bundle);
    assert!(
        !out.status.success(),
        "a #!/proc/self/exe program must not run the runtime"
    );
    assert_eq!(sha(&runtime_bin()), before, "the host runtime binary changed");

    // Whatever runs in the container cannot open its /proc/self/exe for writing.
    let r = rt.check_report(&mut bundle);
    assert!(!r.exe_write.ok, "/proc/self/exe was writable: {:?}", r.exe_write);
    // And pid 1's exe, while the trampoline execs, is never the host binary: the init is not dumpable and the
    // user process replaced it.
    bundle.set_args(&["sh", "-c", "readlink /proc/1/exe"]);
    let out = rt.run_capture(&unique_id("exe1"), &bundle);
    assert_success(&out, "readlink");
    let link = String::from_utf8_lossy(&out.stdout);
    assert!(
        !link.contains("berth-runtime"),
        "pid 1's exe is the runtime: {link}"
    );
}

#[test]
fn host_descriptors_do_not_leak_in() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle.set_check_args(&["fds"]);
    bundle.write_config();
    // A directory descriptor inherited by the runtime (fd 3, not close-on-exec) must not reach the process.
    let host_dir = std::fs::File::open("/").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&host_dir);
    let id = unique_id("fds");
    let mut cmd = rt.command();
    cmd.args(["run", "--bundle", bundle.path().to_str().unwrap(), &id])
        .stdin(Stdio::null());
    inherit_as_fd3(&mut cmd, raw);
    let out = cmd.output().expect("run");
    assert_success(&out, "run berth-check fds");
    let fds = parse_fds(&out.stdout).expect("fds report");
    let numbers: Vec<i32> = fds.fds.as_ref().expect("fds").iter().map(|f| f.fd).collect();
    assert_eq!(numbers, vec![0, 1, 2], "{fds:?}");

    // The same descriptor as the working directory: the process must not start outside the root.
    bundle.set_args(&["/bin/berth-check", "write", "/escaped-marker"]);
    bundle
        .spec_mut()
        .process_mut()
        .as_mut()
        .unwrap()
        .set_cwd("/proc/self/fd/3".into());
    bundle.write_config();
    let id = unique_id("cwd");
    let mut cmd = rt.command();
    cmd.args(["run", "--bundle", bundle.path().to_str().unwrap(), &id])
        .stdin(Stdio::null());
    inherit_as_fd3(&mut cmd, raw);
    let out = cmd.output().expect("run");
    assert!(
        !out.status.success(),
        "a leaked directory became the working directory"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("outside the container's root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!bundle.rootfs().join("escaped-marker").exists());
    assert!(rt.containers().is_empty());
}

#[test]
fn preserved_descriptors_do_reach_the_process() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    bundle
        .set_args(&["sh", "-c", "echo through-fd-3 >&3"])
        .set_terminal(false);
    bundle.write_config();
    let (reader, writer) = std::io::pipe().expect("pipe");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&writer);
    let id = unique_id("keep");
    let mut cmd = rt.command();
    cmd.args([
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        bundle.path().to_str().unwrap(),
        &id,
    ])
    .stdin(Stdio::null());
    inherit_as_fd3(&mut cmd, raw);
    let out = cmd.output().expect("run");
    drop(writer);
    assert_success(&out, "run with --preserve-fds 1");
    let text = std::io::read_to_string(reader).expect("read pipe");
    assert_eq!(text, "through-fd-3\n");
}

#[test]
fn mount_targets_through_symlinks_stay_inside_the_rootfs() {
    let rt = Runtime::new();
    let mut bundle = Bundle::busybox();
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("marker"), "inside").unwrap();
    // Symlinks that point out of the rootfs, absolute and relative.
    std::os::unix::fs::symlink("/", bundle.rootfs().join("abs")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../..", bundle.rootfs().join("rel")).unwrap();
    let mut mounts = bundle.spec().mounts().clone().unwrap();
    for dest in ["/abs/berth-escape-a", "/rel/berth-escape-b"] {
        let m: oci_spec::runtime::Mount = serde_json::from_value(serde_json::json!({
            "destination": dest, "type": "bind", "source": source.path(), "options": ["rbind", "ro"]
        }))
        .unwrap();
        mounts.push(m);
    }
    bundle.spec_mut().set_mounts(Some(mounts));
    bundle
        .set_args(&["sh", "-c", "cat /berth-escape-a/marker /berth-escape-b/marker"])
        .set_terminal(false);
    let out = rt.run_capture(&unique_id("symlink"), &bundle);
    assert_success(&out, "run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "insideinside");
    // The directories were created inside the rootfs, not at the host's /.
    assert!(bundle.rootfs().join("berth-escape-a").is_dir());
    assert!(!std::path::Path::new("/berth-escape-a").exists());
    assert!(!std::path::Path::new("/berth-escape-b").exists());
}
