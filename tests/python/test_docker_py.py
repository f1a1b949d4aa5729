"""docker-py (the `docker` package from PyPI) driving berthd: containers, exec, logs, volumes, limits, attach.

Run by crates/berthd/tests/docker_py.rs, which starts a daemon, imports a busybox image and sets:
  DOCKER_HOST        unix://<the daemon's socket>
  BERTH_TEST_IMAGE   the busybox image's name
Every container and volume a test makes is removed by the `client` fixture, even when the test fails.
"""

import io
import os
import re
import socket
import tarfile
import threading
import time

import docker
import docker.errors
import docker.types
import pytest
from docker.utils.socket import frames_iter, next_frame_header, read_exactly

IMAGE = os.environ.get("BERTH_TEST_IMAGE", "busybox:latest")
# Loops until SIGTERM, then exits 0 (the trap is set before anything else runs).
LOOP = "trap 'exit 0' TERM; while :; do usleep 50000; done"


@pytest.fixture
def client():
    c = docker.from_env(timeout=60)
    before_c = {x["Id"] for x in c.api.containers(all=True)}
    before_v = {v.name for v in c.volumes.list()}
    yield c
    for x in c.api.containers(all=True):
        if x["Id"] not in before_c:
            try:
                c.api.remove_container(x["Id"], force=True, v=True)
            except docker.errors.NotFound:
                pass
    for v in c.volumes.list():
        if v.name not in before_v:
            try:
                v.remove(force=True)
            except docker.errors.NotFound:
                pass
    c.close()


def looping(client, **kw):
    """A detached container that runs until stopped."""
    return client.containers.run(IMAGE, ["sh", "-c", LOOP], detach=True, **kw)


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def cgroup_value(container, v1, v2):
    """Reads a cgroup file from inside the container (v1 path first, then v2)."""
    code, out = container.exec_run(["sh", "-c", f"cat /sys/fs/cgroup/{v1} 2>/dev/null || cat /sys/fs/cgroup/{v2}"])
    assert code == 0, out
    return out.decode().strip()


# --- run -------------------------------------------------------------------------------------------------------


def test_run_returns_the_output(client):
    out = client.containers.run(IMAGE, ["sh", "-c", "echo hello; echo oops >&2"], remove=True)
    assert out == b"hello\n"
    both = client.containers.run(IMAGE, ["sh", "-c", "echo out; echo err >&2"], stderr=True, remove=True)
    assert sorted(both.splitlines()) == [b"err", b"out"]
    env = client.containers.run(IMAGE, ["sh", "-c", "echo $FOO:$(pwd):$(id -u)"], environment={"FOO": "bar"},
                                working_dir="/tmp", user="1000", remove=True)
    assert env == b"bar:/tmp:1000\n"
    host = client.containers.run(IMAGE, "hostname", hostname="pyhost", remove=True)
    assert host == b"pyhost\n"


def test_run_reports_a_failing_command(client):
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run(IMAGE, ["sh", "-c", "echo bad >&2; exit 3"], remove=True)
    assert e.value.exit_status == 3
    assert b"bad" in e.value.stderr
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.run(IMAGE, "no-such-command-here", remove=True)
    assert "no-such-command-here" in str(e.value)
    with pytest.raises(docker.errors.ImageNotFound):
        client.containers.create("berth-no-such-image:1", "true")
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create(IMAGE, "true", cpuset_cpus="not-a-cpu-set")
    assert e.value.status_code == 400, e.value
    assert "not-a-cpu-set" in str(e.value)


def test_run_detached_and_logs(client):
    c = client.containers.run(
        IMAGE, ["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo warn >&2; usleep 300000"], detach=True
    )
    assert isinstance(c, docker.models.containers.Container)
    assert c.wait(timeout=30)["StatusCode"] == 0
    assert c.logs(stderr=False) == b"line1\nline2\nline3\nline4\nline5\n"
    assert c.logs(stdout=False) == b"warn\n"
    assert c.logs(tail=2) == b"line5\nwarn\n"
    stamped = c.logs(timestamps=True, stderr=False).decode().splitlines()
    assert len(stamped) == 5
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z line\d$", line) for line in stamped), stamped
    # since: nothing was logged after now.
    assert c.logs(since=int(time.time()) + 1) == b""


def test_logs_follow_a_running_container(client):
    c = client.containers.run(IMAGE, ["sh", "-c", "for i in 1 2 3; do echo n$i; usleep 200000; done"], detach=True)
    got = b"".join(c.logs(stream=True, follow=True))
    assert got == b"n1\nn2\nn3\n"


# --- exec ------------------------------------------------------------------------------------------------------


def test_exec_run(client):
    c = looping(client)
    code, out = c.exec_run("echo hi")
    assert (code, out) == (0, b"hi\n")
    code, out = c.exec_run(["sh", "-c", "exit 3"])
    assert code == 3
    code, out = c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
    assert out == (b"out\n", b"err\n")
    code, out = c.exec_run(["sh", "-c", "echo $A $(pwd) $(id -u)"], environment={"A": "b"}, workdir="/tmp",
                           user="1000")
    assert (code, out) == (0, b"b /tmp 1000\n")
    # Without a tty stdin/stdout are not terminals; with one they are, and \n becomes \r\n.
    code, out = c.exec_run("tty")
    assert code == 1 and b"not a tty" in out, (code, out)
    code, out = c.exec_run(["sh", "-c", "tty; echo two"], tty=True)
    assert code == 0, out
    assert re.match(rb"^/dev/pts/\d+\r\ntwo\r\n$", out), out
    code, out = c.exec_run("no-such-binary")
    assert code in (126, 127), (code, out)
    assert b"no-such-binary" in out
    # exec is recorded on the container.
    c.reload()
    assert c.attrs["ExecIDs"], c.attrs.get("ExecIDs")


def test_exec_stream_and_detach(client):
    c = looping(client)
    chunks = list(c.exec_run(["sh", "-c", "echo a; usleep 100000; echo b"], stream=True).output)
    assert b"".join(chunks) == b"a\nb\n"
    r = c.exec_run(["sh", "-c", "echo detached > /tmp/mark"], detach=True)
    assert not r.output
    wait_for(lambda: c.exec_run("cat /tmp/mark").output == b"detached\n", what="the detached exec")
    api = client.api
    eid = api.exec_create(c.id, ["sh", "-c", "exit 7"])["Id"]
    api.exec_start(eid)
    info = api.exec_inspect(eid)
    assert info["ExitCode"] == 7 and info["Running"] is False, info
    assert info["ContainerID"] == c.id


def test_exec_into_a_stopped_container_is_refused(client):
    c = client.containers.create(IMAGE, "true")
    with pytest.raises(docker.errors.APIError) as e:
        c.exec_run("true")
    assert e.value.status_code == 409, e.value
    assert "is not running" in str(e.value)


# --- stop, kill, wait, remove --------------------------------------------------------------------------------


def test_stop_records_the_exit_code(client):
    c = client.containers.run(IMAGE, ["sh", "-c", "trap 'exit 42' TERM; while :; do usleep 50000; done"],
                              detach=True)
    wait_for(lambda: c.exec_run("true").exit_code == 0, what="the container to run")
    t = time.monotonic()
    c.stop(timeout=5)
    assert time.monotonic() - t < 4
    assert c.wait(timeout=10)["StatusCode"] == 42
    c.reload()
    assert c.status == "exited"
    assert c.attrs["State"]["ExitCode"] == 42
    assert c.attrs["State"]["Running"] is False
    # Stopping a stopped container is not an error for docker-py (304).
    c.stop(timeout=1)


def test_stop_times_out_into_sigkill(client):
    c = client.containers.run(IMAGE, ["sh", "-c", "trap '' TERM; while :; do usleep 50000; done"], detach=True)
    wait_for(lambda: c.exec_run("true").exit_code == 0, what="the container to run")
    t = time.monotonic()
    c.stop(timeout=1)
    elapsed = time.monotonic() - t
    assert 0.9 <= elapsed < 8, elapsed
    assert c.wait(timeout=10)["StatusCode"] == 137


def test_kill_and_wait(client):
    c = looping(client)
    result = {}
    t = threading.Thread(target=lambda: result.update(c.wait(timeout=30)))
    t.start()
    time.sleep(0.3)
    c.kill(signal="SIGKILL")
    t.join(30)
    assert result.get("StatusCode") == 137, result
    with pytest.raises(docker.errors.APIError) as e:
        c.kill()
    assert e.value.status_code == 409
    # wait with a condition: next-exit waits for the next run's exit.
    c.start()
    waiter = {}
    t = threading.Thread(target=lambda: waiter.update(c.wait(timeout=30, condition="next-exit")))
    t.start()
    time.sleep(0.3)
    c.exec_run(["sh", "-c", "kill -TERM 1"])
    t.join(30)
    assert waiter.get("StatusCode") == 0, waiter


def test_remove(client):
    c = looping(client, name="py-remove")
    with pytest.raises(docker.errors.APIError) as e:
        c.remove()
    assert e.value.status_code == 409
    assert "cannot remove container" in str(e.value).lower() or "stop the container" in str(e.value)
    c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("py-remove")
    # The name can be used again.
    again = client.containers.create(IMAGE, "true", name="py-remove")
    again.remove()
    # remove(v=True) takes the anonymous volumes with it, not the named ones.
    named = client.volumes.create("py-keep")
    c = client.containers.create(
        IMAGE, "true",
        mounts=[
            docker.types.Mount("/anon", None, type="volume"),
            docker.types.Mount("/keep", "py-keep", type="volume"),
        ],
    )
    anon = [m["Name"] for m in c.attrs["Mounts"] if m["Destination"] == "/anon"][0]
    assert len(anon) == 64
    c.remove(v=True)
    names = {v.name for v in client.volumes.list()}
    assert anon not in names and named.name in names


# --- inspect ---------------------------------------------------------------------------------------------------


def test_inspect_attrs(client):
    c = client.containers.create(
        IMAGE, ["sh", "-c", "echo hi"], name="py-inspect", environment=["FOO=bar"], labels={"team": "py"},
        working_dir="/tmp", mem_limit="32m", stdin_open=True, tty=True,
    )
    image = client.images.get(IMAGE)
    assert c.name == "py-inspect"
    assert c.short_id == c.id[:12]
    assert c.status == "created"
    assert c.labels == {"team": "py"}
    assert c.image.id == image.id
    a = c.attrs
    assert a["Name"] == "/py-inspect"
    assert a["Image"] == image.id
    assert a["Config"]["Image"] == IMAGE
    assert a["Config"]["Cmd"] == ["sh", "-c", "echo hi"]
    assert "FOO=bar" in a["Config"]["Env"]
    assert a["Config"]["WorkingDir"] == "/tmp"
    assert a["Config"]["Tty"] is True and a["Config"]["OpenStdin"] is True
    assert a["Config"]["Hostname"] == c.id[:12]
    assert a["HostConfig"]["Memory"] == 32 * 1024 * 1024
    assert a["State"]["Status"] == "created" and a["State"]["Pid"] == 0
    assert a["Path"] == "sh" and a["Args"] == ["-c", "echo hi"]
    assert a["RestartCount"] == 0
    assert a["Driver"] == "overlay2"
    c.start()
    c.wait(timeout=30)
    c.reload()
    assert c.attrs["State"]["Status"] == "exited"
    assert c.attrs["State"]["StartedAt"] <= c.attrs["State"]["FinishedAt"]
    # With a tty, output is one stream with \r\n.
    assert c.logs() == b"hi\r\n"
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("py-no-such-container")
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create(IMAGE, "true", name="py-inspect")
    assert e.value.status_code == 409


def test_rename_top_stats_and_archive(client):
    c = looping(client, name="py-old")
    c.rename("py-new")
    c.reload()
    assert c.name == "py-new"
    top = c.top()
    assert any("usleep" in " ".join(p) or "sh" in " ".join(p) for p in top["Processes"]), top
    stats = c.stats(stream=False)
    assert stats["memory_stats"].get("usage", 0) > 0, stats["memory_stats"]
    assert stats["pids_stats"].get("current", 0) >= 1, stats["pids_stats"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"from python\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert c.put_archive("/tmp", buf.getvalue())
    assert c.exec_run("cat /tmp/hello.txt").output == b"from python\n"
    stream, stat = c.get_archive("/tmp/hello.txt")
    assert stat["name"] == "hello.txt" and stat["size"] == 12, stat
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        assert tar.extractfile("hello.txt").read() == b"from python\n"
    changes = {(ch["Path"], ch["Kind"]) for ch in c.diff()}
    assert ("/tmp/hello.txt", 1) in changes, changes


# --- volumes ---------------------------------------------------------------------------------------------------


def test_volumes(client, tmp_path):
    v = client.volumes.create(name="py-vol", labels={"suite": "py"})
    assert v.name == "py-vol"
    assert v.attrs["Driver"] == "local"
    assert v.attrs["Labels"] == {"suite": "py"}
    assert v.attrs["Mountpoint"].endswith("/volumes/py-vol/_data")
    assert "py-vol" in [x.name for x in client.volumes.list()]
    assert [x.name for x in client.volumes.list(filters={"label": "suite=py"})] == ["py-vol"]
    assert client.volumes.list(filters={"label": "suite=nope"}) == []

    client.containers.run(IMAGE, ["sh", "-c", "echo persisted > /data/f"],
                          volumes={"py-vol": {"bind": "/data", "mode": "rw"}}, remove=True)
    out = client.containers.run(IMAGE, "cat /data/f", volumes=["py-vol:/data:ro"], remove=True)
    assert out == b"persisted\n"
    with pytest.raises(docker.errors.ContainerError) as e:
        client.containers.run(IMAGE, ["sh", "-c", "echo x > /data/g"], volumes=["py-vol:/data:ro"], remove=True)
    assert b"Read-only file system" in e.value.stderr

    user = client.containers.create(IMAGE, "true", volumes=["py-vol:/data"])
    m = [m for m in user.attrs["Mounts"] if m["Destination"] == "/data"][0]
    assert m["Type"] == "volume" and m["Name"] == "py-vol" and m["RW"] is True, m
    with pytest.raises(docker.errors.APIError) as e:
        v.remove()
    assert e.value.status_code == 409, e.value
    assert [c.id for c in client.containers.list(all=True, filters={"volume": "py-vol"})] == [user.id]
    user.remove()
    v.remove()
    with pytest.raises(docker.errors.NotFound):
        client.volumes.get("py-vol")

    # Binds: a host directory is seen and written through; a missing source is refused at create.
    (tmp_path / "in.txt").write_text("from the host\n")
    out = client.containers.run(IMAGE, ["sh", "-c", "cat /h/in.txt; echo back > /h/out.txt"],
                                volumes={str(tmp_path): {"bind": "/h", "mode": "rw"}}, remove=True)
    assert out == b"from the host\n"
    assert (tmp_path / "out.txt").read_text() == "back\n"
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create(IMAGE, "true", volumes=[f"{tmp_path}/missing:/m"])
    assert e.value.status_code == 400
    assert "bind source path does not exist" in str(e.value)
    # tmpfs with a size.
    out = client.containers.run(IMAGE, ["sh", "-c", "grep ' /scratch ' /proc/mounts"], tmpfs={"/scratch": "size=1m"},
                                remove=True)
    assert out.startswith(b"tmpfs /scratch tmpfs") and b"size=1024k" in out, out


def test_volume_prune(client):
    client.volumes.create(name="py-prune-named")
    anon = client.volumes.create()
    pruned = client.volumes.prune()
    assert anon.name in (pruned["VolumesDeleted"] or [])
    assert "py-prune-named" not in (pruned["VolumesDeleted"] or [])
    pruned = client.volumes.prune(filters={"all": "true"})
    assert "py-prune-named" in (pruned["VolumesDeleted"] or [])


# --- limits ----------------------------------------------------------------------------------------------------


def test_limits_are_seen_inside(client):
    c = looping(client, mem_limit="64m", memswap_limit="128m", pids_limit=50, nano_cpus=500_000_000,
                cpuset_cpus="0", cpu_shares=512,
                ulimits=[docker.types.Ulimit(name="nofile", soft=1024, hard=2048)])
    assert cgroup_value(c, "memory/memory.limit_in_bytes", "memory.max") == str(64 * 1024 * 1024)
    assert cgroup_value(c, "memory/memory.memsw.limit_in_bytes", "memory.swap.max") in (
        str(128 * 1024 * 1024), str(64 * 1024 * 1024))
    assert cgroup_value(c, "pids/pids.max", "pids.max") == "50"
    quota = cgroup_value(c, "cpu/cpu.cfs_quota_us", "cpu.max")
    assert quota in ("50000", "50000 100000"), quota
    assert cgroup_value(c, "cpuset/cpuset.cpus", "cpuset.cpus") == "0"
    assert cgroup_value(c, "cpu/cpu.shares", "cpu.weight") in ("512", "20")
    code, out = c.exec_run(["sh", "-c", "ulimit -n; ulimit -Hn"])
    assert out.split() == [b"1024", b"2048"], out
    hc = c.attrs["HostConfig"]
    assert hc["Memory"] == 64 * 1024 * 1024 and hc["PidsLimit"] == 50 and hc["NanoCpus"] == 500_000_000
    # update changes the running container's limits.
    c.update(mem_limit="96m", memswap_limit="192m")
    assert cgroup_value(c, "memory/memory.limit_in_bytes", "memory.max") == str(96 * 1024 * 1024)
    c.reload()
    assert c.attrs["HostConfig"]["Memory"] == 96 * 1024 * 1024
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.create(IMAGE, "true", mem_limit="1m")
    assert e.value.status_code == 400
    assert "Minimum memory limit allowed is 6MB" in str(e.value)


def test_out_of_memory_is_reported(client):
    c = client.containers.run(IMAGE, ["sh", "-c", "x=a; while :; do x=$x$x; done"], detach=True,
                              mem_limit="16m", memswap_limit="16m")
    status = c.wait(timeout=60)["StatusCode"]
    c.reload()
    assert status == 137, status
    assert c.attrs["State"]["OOMKilled"] is True, c.attrs["State"]


# --- list ------------------------------------------------------------------------------------------------------


def test_list_filters(client):
    created = client.containers.create(IMAGE, "true", name="py-l-created", labels={"suite": "list", "k": "c"})
    exited = client.containers.run(IMAGE, ["sh", "-c", "exit 3"], name="py-l-exited", labels={"suite": "list"},
                                   detach=True)
    exited.wait(timeout=30)
    running = looping(client, name="py-l-running", labels={"suite": "list", "k": "r"})
    ids = lambda cs: {c.id for c in cs}  # noqa: E731
    mine = {created.id, exited.id, running.id}
    assert ids(client.containers.list()) & mine == {running.id}
    assert ids(client.containers.list(all=True)) & mine == mine
    assert ids(client.containers.list(filters={"status": "exited"})) & mine == {exited.id}
    assert ids(client.containers.list(filters={"status": "created"})) & mine == {created.id}
    assert ids(client.containers.list(filters={"exited": 3})) & mine == {exited.id}
    assert ids(client.containers.list(all=True, filters={"label": "suite=list"})) == mine
    assert ids(client.containers.list(all=True, filters={"label": "k=r"})) == {running.id}
    assert ids(client.containers.list(all=True, filters={"label": "k"})) == {created.id, running.id}
    assert ids(client.containers.list(all=True, filters={"name": "py-l-ex"})) == {exited.id}
    assert ids(client.containers.list(all=True, filters={"id": running.id[:12]})) == {running.id}
    assert ids(client.containers.list(all=True, filters={"ancestor": IMAGE})) >= mine
    assert ids(client.containers.list(all=True, filters={"before": "py-l-running", "label": "suite=list"})) == {
        created.id, exited.id}
    assert ids(client.containers.list(all=True, filters={"since": "py-l-created", "label": "suite=list"})) == {
        exited.id, running.id}
    assert [c.id for c in client.containers.list(all=True, limit=1)] == [running.id]
    with pytest.raises(docker.errors.APIError) as e:
        client.containers.list(filters={"status": "bogus"})
    assert e.value.status_code == 400
    summary = [c for c in client.api.containers(all=True) if c["Id"] == exited.id][0]
    assert summary["Names"] == ["/py-l-exited"]
    assert summary["State"] == "exited" and summary["Status"].startswith("Exited (3)"), summary
    assert summary["Image"] == IMAGE
    pruned = client.containers.prune(filters={"label": "suite=list"})
    assert set(pruned["ContainersDeleted"] or []) == {created.id, exited.id}


# --- attach ----------------------------------------------------------------------------------------------------


def raw(sock):
    """The real socket under docker-py's SocketIO wrapper."""
    return getattr(sock, "_sock", sock)


def test_attach_socket_multiplexed(client):
    # docker-py sets StdinOnce with stdin_open: closing our write side closes the container's stdin.
    c = client.containers.create(IMAGE, ["sh", "-c", "cat; echo done >&2"], stdin_open=True)
    assert c.attrs["Config"]["StdinOnce"] is True
    sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
    s = raw(sock)
    s.settimeout(30)
    c.start()
    s.sendall(b"hello\n")
    stream, size = next_frame_header(s)
    assert (stream, read_exactly(s, size)) == (1, b"hello\n")
    s.shutdown(socket.SHUT_WR)
    rest = list(frames_iter(s, tty=False))
    assert (2, b"done\n") in rest, rest
    assert c.wait(timeout=30)["StatusCode"] == 0
    sock.close()


def test_attach_socket_with_a_tty(client):
    c = client.containers.create(IMAGE, ["sh", "-c", "read line; echo got:$line"], stdin_open=True, tty=True)
    sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
    s = raw(sock)
    s.settimeout(30)
    c.start()
    s.sendall(b"abc\n")
    data = b""
    deadline = time.monotonic() + 20
    while b"got:abc" not in data and time.monotonic() < deadline:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    # A raw stream (no frame headers): the tty echoes the input, then the answer.
    assert data.startswith(b"abc\r\n"), data
    assert b"got:abc\r\n" in data, data
    assert c.wait(timeout=30)["StatusCode"] == 0
    sock.close()


def test_attach_stream_of_a_running_container(client):
    c = client.containers.run(IMAGE, ["sh", "-c", "usleep 500000; for i in 1 2 3; do echo a$i; usleep 100000; done"],
                              detach=True)
    out = b"".join(c.attach(stdout=True, stderr=True, stream=True, logs=True))
    assert out == b"a1\na2\na3\n"


# --- pause, restart, export, auto-remove ----------------------------------------------------------------------


def test_pause_restart_export_and_auto_remove(client):
    c = looping(client)
    c.pause()
    c.reload()
    assert c.status == "paused" and c.attrs["State"]["Paused"] is True
    with pytest.raises(docker.errors.APIError) as e:
        c.pause()
    assert e.value.status_code == 409
    c.unpause()
    c.reload()
    assert c.status == "running"
    pid = c.attrs["State"]["Pid"]
    c.restart(timeout=5)
    c.reload()
    assert c.status == "running" and c.attrs["State"]["Pid"] != pid
    with tarfile.open(fileobj=io.BytesIO(b"".join(c.export())), mode="r|") as tar:
        names = {m.name.lstrip("./") for m in tar}
    assert {"bin/busybox", "etc/passwd", "etc/hostname"} <= names, sorted(names)[:20]
    gone = client.containers.run(IMAGE, "true", detach=True, auto_remove=True)
    wait_for(lambda: gone.id not in {x["Id"] for x in client.api.containers(all=True)}, what="the auto-removal")
