"""test_09_run_as.py - when eph serve runs as root, every process of an
environment runs as the `run_as` user (default nobody) and owns what it writes:
its checkout and its data; the rest stays the server's."""
import os
import pwd
import socket
import subprocess

import pytest

from conftest import EPH_BIN, clean_environ, shared_tmp

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="eph serve switches users only when it runs as root")


def status_field(pid, name):
    """The values of a line of /proc/PID/status ("Uid", "Gid", "Groups") as ints."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == name:
                return [int(v) for v in value.split()]
    raise AssertionError("no %s line for pid %d" % (name, pid))


def redis_command(port, *words):
    """One RESP command to 127.0.0.1:port; the reply's first line."""
    req = b"*%d\r\n" % len(words) + b"".join(
        b"$%d\r\n%s\r\n" % (len(w), w.encode()) for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req)
        return s.recv(256).decode().split("\r\n")[0]


def test_09_01_services_run_as_nobody_and_own_their_checkout_and_data(shop):
    nobody = pwd.getpwnam("nobody")
    r = shop.eph("up", "shop", "--branch", "main", "--name", "asnobody", "--wait", "-o", "json")
    assert r.rc == 0, str(r)

    env = shop.get("asnobody")
    assert env["phase"] == "ready", env
    assert status_field(shop.proc.pid, "Uid") == [0, 0, 0, 0], "the server runs as root"
    svcs = {s["name"]: s for s in env["services"]}
    assert set(svcs) == {"db", "api", "web"}
    for s in svcs.values():
        assert status_field(s["pid"], "Uid") == [nobody.pw_uid] * 4, s
        assert status_field(s["pid"], "Gid") == [nobody.pw_gid] * 4, s
        assert status_field(s["pid"], "Groups") == [], "no supplementary groups: %s" % s
    # Every process of the environment, the services' children too.
    procs = shop.processes(env_name="asnobody")
    assert {p.service for p in procs} == {"db", "api", "web"}, procs
    for p in procs:
        assert status_field(p.pid, "Uid") == [nobody.pw_uid] * 4, p

    env_dir = shop.env_dir("asnobody")
    assert os.stat(env_dir / "src").st_uid == nobody.pw_uid
    assert os.stat(env_dir / "src" / "api" / "app.py").st_uid == nobody.pw_uid
    assert os.stat(env_dir / "data" / "db").st_uid == nobody.pw_uid
    # redis writes its dump into its EPH_DATA as nobody.
    assert redis_command(svcs["db"]["port"], "SAVE") == "+OK"
    assert os.stat(env_dir / "data" / "db" / "dump.rdb").st_uid == nobody.pw_uid
    # What the server keeps: records, logs (it opens them), the directories above.
    for path in (env_dir, env_dir / "state", env_dir / "logs", env_dir / "logs" / "api.log",
                 env_dir / "data", shop.data_dir / "envs"):
        assert os.stat(path).st_uid == 0, path
    r = shop.eph("logs", "asnobody", "api")
    assert r.rc == 0 and "seed: " in r.out, str(r)    # the setup ran (as nobody)

    r = shop.eph("rm", "asnobody", "--wait")
    assert r.rc == 0, str(r)
    assert shop.processes(env_name="asnobody") == []


def test_09_02_serve_refuses_a_run_as_that_names_no_user(tmp_path):
    data = shared_tmp("bad-run-as-") / "data"
    p = subprocess.run([str(EPH_BIN), "serve", "--data-dir", str(data), "--listen",
                        "127.0.0.1:0", "--run-as", "no-such-user-eph"],
                       capture_output=True, text=True, timeout=30,
                       env=clean_environ(EPH_CONFIG=str(tmp_path / "client.json")))
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stderr.endswith("eph serve: run_as: no user named 'no-such-user-eph'\n"), p.stderr


def test_09_03_serve_refuses_a_data_dir_run_as_cannot_reach(tmp_path):
    # pytest's own temporary directories have mode 0700.
    data = tmp_path / "data"
    p = subprocess.run([str(EPH_BIN), "serve", "--data-dir", str(data), "--listen",
                        "127.0.0.1:0"],
                       capture_output=True, text=True, timeout=30,
                       env=clean_environ(EPH_CONFIG=str(tmp_path / "client.json")))
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "eph serve: run_as: user 'nobody' cannot reach data_dir '%s' (" % data in p.stderr, \
        p.stderr
    assert "is not searchable by it); choose a data_dir under a directory it can enter, " \
        "or set run_as\n" in p.stderr, p.stderr
