"""
tests/e2e/conftest.py - fixtures and helpers of the end-to-end tests.

Every test gets its own real `eph serve` ($EPH_BIN, default build/debug/eph):
a temporary data directory, 127.0.0.1 and a free port, a port range for its
services probed free, its own client config ($EPH_CONFIG). The tests use it
the way a person would, through the CLI and HTTP.

At teardown the server must leave nothing behind: every environment is
removed with `eph rm` and must be gone before a deadline, the server is
stopped by its own pid with SIGTERM (SIGKILL only if it does not exit), and
any process still carrying this data directory's EPH_OWNER marker is killed,
which fails the test. A sanitizer report (ASan, UBSan, LSan) in the server's
or the CLI's stderr fails the test too.

Waiting is always polling with a deadline (wait_until), never a bare sleep.
"""
import atexit
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
EPH_BIN = Path(os.environ.get("EPH_BIN") or REPO_ROOT / "build" / "debug" / "eph").resolve()
SHOP_SRC = REPO_ROOT / "examples" / "shop"

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
SERVER_START_TIMEOUT_S = 30
SERVER_STOP_TIMEOUT_S = 15   # SIGTERM -> exit; the server keeps environments running
TEARDOWN_RM_TIMEOUT_S = 60   # every environment deleted (SIGTERM, 2 s grace, SIGKILL)
CLI_TIMEOUT_S = 120
PORT_RANGE_SIZE = 64         # 20 concurrent environments plus the shop, with room
# Below the kernel's ephemeral range (32768-60999 here) so outgoing
# connections never sit on a service's port; above the ports seen taken
# on these machines (2024, 2379-2381, 19000-19003).
PORT_RANGE_LO, PORT_RANGE_HI = 20000, 32000

# Proxies from the environment must not capture loopback traffic (libcurl in
# the CLI and requests in the tests both honour them).
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
              "ALL_PROXY", "no_proxy", "NO_PROXY")


# ------------------------------------------------------------------ helpers


_SHARED_TMP = []   # the base below, made on first use


def shared_tmp(prefix):
    """A new directory that every user may enter (0755), under one base directory
    in /tmp (0755 too) that is removed when the tests end. When the tests run as
    root, eph serve runs environment processes as `run_as` (nobody), and they
    must reach their checkouts: data directories and the test projects live
    here, not under pytest's temporary directories (mode 0700)."""
    if not _SHARED_TMP:
        base = tempfile.mkdtemp(prefix="eph-e2e-")
        os.chmod(base, 0o755)
        atexit.register(shutil.rmtree, base, True)
        _SHARED_TMP.append(base)
    path = tempfile.mkdtemp(prefix=prefix, dir=_SHARED_TMP[0])
    os.chmod(path, 0o755)
    return Path(path)


def wait_until(predicate, timeout, what=None, interval=0.02):
    """Polls predicate() until it returns a true value, which is returned.
    Fails the test with `what` once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what or getattr(predicate, "__name__", "a condition")))
        time.sleep(interval)


@dataclass
class Result:
    """A finished `eph` run."""
    rc: int
    out: str
    err: str
    args: tuple

    def json(self):
        return json.loads(self.out)

    def __str__(self):
        return "eph %s -> rc=%d\n--- stdout\n%s\n--- stderr\n%s" % (
            " ".join(self.args), self.rc, self.out, self.err)


def sanitizer_report(text):
    """The first sanitizer mark found in text, or None."""
    for mark in SANITIZER_MARKS:
        if mark in text:
            return mark
    return None


def clean_environ(**extra):
    """Our environment without proxies and without EPH_* variables (server
    settings such as EPH_ALLOWED_REPOS, or EPH_OWNER if the tests themselves
    run inside an environment), plus the sanitizer options and `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in PROXY_VARS and not k.startswith("EPH_")}
    env["ASAN_OPTIONS"] = "detect_leaks=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1"
    env.update(extra)
    return env


def as_list(obj, key):
    """`-o json` lists may come bare or wrapped like the API's {"envs": [...]}."""
    if isinstance(obj, dict):
        return obj[key]
    return obj


def port_is_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port():
    """A port the OS says is free right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(size=PORT_RANGE_SIZE):
    """A random range of `size` ports of which every one binds right now."""
    rng = random.Random()
    for _ in range(200):
        lo = rng.randrange(PORT_RANGE_LO, PORT_RANGE_HI - size)
        if all(port_is_free(p) for p in range(lo, lo + size)):
            return lo, lo + size - 1
    raise RuntimeError("no free range of %d ports in %d-%d"
                       % (size, PORT_RANGE_LO, PORT_RANGE_HI))


def http_get(port, path, timeout=10, host="127.0.0.1"):
    """GET http://127.0.0.1:port/path, without proxies."""
    return requests.get("http://%s:%d%s" % (host, port, path), timeout=timeout,
                        proxies={"http": None, "https": None})


def redis_ping(port):
    """Sends PING in RESP to 127.0.0.1:port and returns the reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return s.recv(64).decode().strip()


# ------------------------------------------------------------------ processes


@dataclass
class Proc:
    pid: int
    pgid: int
    owner: str   # the EPH_OWNER value: <instance>/<env id>/<service>[/setup]

    @property
    def env_id(self):
        return int(self.owner.split("/")[1])

    @property
    def service(self):
        return self.owner.split("/")[2]

    @property
    def is_setup(self):
        return self.owner.endswith("/setup")


def proc_stat(pid):
    """(state, pgid) of a process from /proc/PID/stat, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) "
    return fields[0], int(fields[2])


def proc_alive(pid):
    """True if pid exists and is neither a zombie nor dead (PID 1 here does not reap)."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X", "x")


def proc_environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def live_processes(match):
    """Every live (non-zombie) process whose environment satisfies match(environ), as Procs."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == os.getpid():
            continue
        env = proc_environ(pid)
        if not env or not match(env):
            continue
        st = proc_stat(pid)
        if st is None or st[0] in ("Z", "X", "x"):
            continue
        found.append(Proc(pid, st[1], env.get("EPH_OWNER", "")))
    return found


# ------------------------------------------------------------------ the server


class Server:
    """One `eph serve` on a data directory under `root`, and a client of it."""

    def __init__(self, root, repos_dir):
        self.root = Path(root)
        self.data_dir = shared_tmp("server-") / "data"
        self.client_config = self.root / "client.json"
        self.config_file = self.root / "server.yaml"
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.port_lo, self.port_hi = free_port_range()
        self.proc = None
        self.starts = 0
        self.token = None
        self.problems = []          # what teardown found wrong
        self._instance = None
        self._http = requests.Session()
        self._http.trust_env = False    # no proxies for loopback
        self.config_file.write_text('allowed_repos: "%s/*"\n' % repos_dir)

    # -------------------------------------------------------------- run

    def stdout_path(self, n):
        return self.root / ("serve-%d.out" % n)

    def stderr_path(self, n):
        return self.root / ("serve-%d.err" % n)

    def start(self):
        """Starts `eph serve` and waits for its healthz; the first start also
        reads the admin token from the client config it writes."""
        assert self.proc is None, "server already running"
        assert EPH_BIN.exists(), "no eph binary at %s (build it with make)" % EPH_BIN
        self.starts += 1
        n = self.starts
        with open(self.stdout_path(n), "wb") as out, open(self.stderr_path(n), "wb") as err:
            self.proc = subprocess.Popen(
                [str(EPH_BIN), "serve", "--data-dir", str(self.data_dir),
                 "--listen", "127.0.0.1:%d" % self.port,
                 "--port-range", "%d-%d" % (self.port_lo, self.port_hi),
                 "--config", str(self.config_file), "--stop-grace", "2s"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.root,
                env=clean_environ(EPH_CONFIG=str(self.client_config)),
                start_new_session=True)

        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError("eph serve exited with %d at start:\n%s"
                                     % (self.proc.returncode, self.log_tail()))
            try:
                r = self._http.get(self.url + "/api/v1/healthz", timeout=2)
                return r.status_code == 200 and r.json().get("ok") is True
            except (requests.RequestException, ValueError):
                return False

        wait_until(healthy, SERVER_START_TIMEOUT_S, "eph serve to answer /api/v1/healthz")
        if self.token is None:
            def token():
                try:
                    return json.loads(self.client_config.read_text()).get("token")
                except (OSError, ValueError):
                    return None
            self.token = wait_until(token, 10, "the client config at %s" % self.client_config)
            self._http.headers["Authorization"] = "Bearer " + self.token

    def kill(self):
        """SIGKILL, as a crash would."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
        self.proc = None

    def stop(self):
        """SIGTERM by pid; SIGKILL (a problem) if it does not exit in time.
        Returns the exit code."""
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.problems.append("eph serve (pid %d) ignored SIGTERM for %ds: SIGKILLed"
                                 % (proc.pid, SERVER_STOP_TIMEOUT_S))
            proc.send_signal(signal.SIGKILL)
            return proc.wait(timeout=SERVER_STOP_TIMEOUT_S)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_text(self):
        """Everything the server wrote to stderr, over all its starts."""
        return "".join(self.stderr_path(n).read_text(errors="replace")
                       for n in range(1, self.starts + 1))

    def stdout_text(self, n=1):
        return self.stdout_path(n).read_text(errors="replace")

    def log_tail(self, lines=40):
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -------------------------------------------------------------- clients

    def eph(self, *args, timeout=CLI_TIMEOUT_S):
        """Runs the CLI against this server; a sanitizer report fails the test."""
        args = tuple(str(a) for a in args)
        try:
            p = subprocess.run([str(EPH_BIN), *args], stdin=subprocess.DEVNULL,
                               capture_output=True, timeout=timeout, cwd=self.root,
                               env=clean_environ(EPH_CONFIG=str(self.client_config)))
        except subprocess.TimeoutExpired as e:
            raise AssertionError("eph %s did not finish in %ds" % (" ".join(args), timeout)) from e
        res = Result(p.returncode, p.stdout.decode(errors="replace"),
                     p.stderr.decode(errors="replace"), args)
        mark = sanitizer_report(res.err)
        assert mark is None, "sanitizer report (%s) from the CLI:\n%s" % (mark, res)
        return res

    def api(self, method, path, token=None, **kw):
        """An HTTP request to /api/v1/<path> with the admin token (or `token`;
        "" sends none)."""
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            # None drops the session's header when requests merges them.
            headers["Authorization"] = "Bearer " + token if token else None
        return self._http.request(method, self.url + "/api/v1/" + path.lstrip("/"),
                                  headers=headers, timeout=30, **kw)

    def get(self, name):
        """`eph get NAME -o json` as a dict; the test fails if it fails."""
        r = self.eph("get", name, "-o", "json")
        assert r.rc == 0, str(r)
        return r.json()

    def envs(self, all=False):
        """The environments as the API lists them."""
        r = self.api("GET", "envs?all=1" if all else "envs")
        assert r.status_code == 200, r.text
        return r.json()["envs"]

    def events(self, target=None):
        path = "events?limit=1000" + ("&target=" + target if target else "")
        r = self.api("GET", path)
        assert r.status_code == 200, r.text
        return r.json()["events"]

    def wait_phase(self, name, phase="ready", timeout=60):
        """Waits until environment `name` is in `phase`; fails early on `failed`."""
        def reached():
            env = self.get(name)
            if env["phase"] == "failed" and phase != "failed":
                raise AssertionError("environment %s failed: %s\n%s"
                                     % (name, env.get("reason"), self.log_tail()))
            return env if env["phase"] == phase else None
        return wait_until(reached, timeout, "environment %s to be %s" % (name, phase), 0.05)

    # -------------------------------------------------------------- processes

    def env_dir(self, name):
        """DATA/envs/<id>-<name>, or None if there is none."""
        envs = self.data_dir / "envs"
        if not envs.is_dir():
            return None
        pattern = re.compile(r"^(\d+)-%s$" % re.escape(name))
        found = [d for d in envs.iterdir() if pattern.match(d.name)]
        assert len(found) <= 1, "several directories for %s: %s" % (name, found)
        return found[0] if found else None

    def env_id(self, name):
        d = self.env_dir(name)
        return int(d.name.split("-", 1)[0]) if d else None

    def instance(self):
        """This data directory's instance id (the first part of EPH_OWNER), from the
        store, else from a process whose EPH_DATA lies under the data directory.
        None while neither knows it."""
        if self._instance is None:
            self._instance = self._instance_from_store() or self._instance_from_processes()
        return self._instance

    def _instance_from_store(self):
        db = self.data_dir / "eph.db"
        if not db.exists():
            return None
        try:
            con = sqlite3.connect("file:%s?mode=ro" % db, uri=True, timeout=5)
            try:
                tables = [r[0] for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")]
                for t in tables:
                    cols = {r[1] for r in con.execute("PRAGMA table_info(\"%s\")" % t)}
                    if {"key", "value"} <= cols:
                        row = con.execute("SELECT value FROM \"%s\" WHERE key = 'instance_id'"
                                          % t).fetchone()
                        if row and row[0]:
                            return str(row[0])
            finally:
                con.close()
        except sqlite3.Error:
            return None
        return None

    def _instance_from_processes(self):
        prefix = str(self.data_dir) + "/"
        for p in live_processes(lambda e: "EPH_OWNER" in e
                                and e.get("EPH_DATA", "").startswith(prefix)):
            return p.owner.split("/")[0]
        return None

    def _ours(self, environ):
        """True for a process of this data directory's environments."""
        owner = environ.get("EPH_OWNER")
        if owner is None:
            return False
        inst = self.instance()
        if inst is not None and owner.startswith(inst + "/"):
            return True
        return environ.get("EPH_DATA", "").startswith(str(self.data_dir) + "/")

    def processes(self, env_name=None, env_id=None):
        """Live processes of this server's environments (of one, if asked)."""
        procs = live_processes(self._ours)
        if env_name is not None:
            env_id = self.env_id(env_name)
            if env_id is None:
                return []
        if env_id is not None:
            procs = [p for p in procs if p.env_id == env_id]
        return procs

    # -------------------------------------------------------------- teardown

    def shutdown(self):
        """Removes every environment, stops the server, kills leftovers, checks
        the logs. Returns the list of problems found (empty: clean)."""
        self.instance()   # learn it while processes exist, to find leftovers later
        if self.running:
            try:
                self._remove_all_envs()
            except Exception as e:   # a broken server must not hide the rest
                self.problems.append("removing environments at teardown: %s" % e)
            self.instance()
            rc = self.stop()
            if rc != 0:
                self.problems.append("eph serve exited with %d on SIGTERM" % rc)
        elif self.proc is not None:
            self.problems.append("eph serve died during the test (rc %d)"
                                 % self.proc.returncode)
            self.proc = None
        leftovers = live_processes(self._ours)
        for p in leftovers:
            for kill in (lambda: os.killpg(p.pgid, signal.SIGKILL),
                         lambda: os.kill(p.pid, signal.SIGKILL)):
                try:
                    kill()
                except OSError:
                    pass
        if leftovers:
            self.problems.append("processes left running, killed: %s"
                                 % ", ".join("%d (%s)" % (p.pid, p.owner) for p in leftovers))
        for n in range(1, self.starts + 1):
            text = self.stderr_path(n).read_text(errors="replace")
            mark = sanitizer_report(text)
            if mark:
                at = max(0, text.index(mark) - 200)
                self.problems.append("sanitizer report (%s) in the server's stderr (start %d):\n%s"
                                     % (mark, n, text[at:at + 6000]))
        return self.problems

    def _remove_all_envs(self):
        names = [e["name"] for e in self.envs()]
        for name in names:
            r = self.eph("rm", name)
            # One that was being deleted already may be gone by now.
            if r.rc != 0 and "not found" not in r.err:
                self.problems.append("eph rm %s at teardown failed: %s" % (name, r))
        try:
            wait_until(lambda: not self.envs(), TEARDOWN_RM_TIMEOUT_S,
                       "every environment to be deleted at teardown", 0.1)
        except AssertionError as e:
            self.problems.append("%s: %s" % (e, [(x["name"], x["phase"]) for x in self.envs()]))


# ------------------------------------------------------------------ repositories

GIT_ENV = {
    "GIT_AUTHOR_NAME": "ephemera tests", "GIT_AUTHOR_EMAIL": "tests@ephemera.invalid",
    "GIT_COMMITTER_NAME": "ephemera tests", "GIT_COMMITTER_EMAIL": "tests@ephemera.invalid",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}

TRIVIAL_TEMPLATE = """\
version: 1
services:
  app:
    run: /usr/bin/python3 -m http.server $PORT --bind 127.0.0.1
    health: { http: /, timeout: 30s }
"""

# The line of the shop's template that the bad-template branch breaks.
BAD_DEPENDS_OLD = "    depends_on: [api]\n"
BAD_DEPENDS_NEW = "    depends_on: [api, apii]\n"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env={**os.environ, **GIT_ENV}).stdout.strip()


def commit_all(repo, message):
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@dataclass
class Repos:
    dir: Path          # the directory the server's allowed_repos allows
    shop: Path         # examples/shop: branches main, feature-x, bad-template
    trivial: Path      # one python http.server: main
    shas: dict         # branch -> commit of the shop
    bad_line: int      # 1-based line of the broken depends_on in bad-template
    bad_cols: tuple    # 1-based columns an error may point at on that line


@pytest.fixture(scope="session")
def repos(tmp_path_factory):
    """Real git repositories the tests register as projects."""
    root = shared_tmp("repos-")
    shop = root / "shop"
    shutil.copytree(SHOP_SRC, shop, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    git(root, "init", "-q", "-b", "main", str(shop))
    shas = {"main": commit_all(shop, "shop")}

    git(shop, "checkout", "-q", "-b", "feature-x")
    (shop / "FEATURE").write_text("feature x\n")
    shas["feature-x"] = commit_all(shop, "feature x")

    git(shop, "checkout", "-q", "-b", "bad-template", "main")
    template = (shop / "ephemera.yaml").read_text()
    assert template.count(BAD_DEPENDS_OLD) == 1, "the shop's web depends_on line changed"
    broken = template.replace(BAD_DEPENDS_OLD, BAD_DEPENDS_NEW)
    (shop / "ephemera.yaml").write_text(broken)
    shas["bad-template"] = commit_all(shop, "web depends on a service that does not exist")
    git(shop, "checkout", "-q", "main")
    line_no = broken[:broken.index(BAD_DEPENDS_NEW)].count("\n") + 1
    cols = tuple(BAD_DEPENDS_NEW.index(s) + 1 for s in ("depends_on", "[", "apii"))

    trivial = root / "tiny"
    trivial.mkdir()
    (trivial / "ephemera.yaml").write_text(TRIVIAL_TEMPLATE)
    git(root, "init", "-q", "-b", "main", str(trivial))
    commit_all(trivial, "tiny")
    return Repos(root, shop, trivial, shas, line_no, cols)


@pytest.fixture
def server(tmp_path, repos):
    """A running `eph serve` of its own; stopped and checked at teardown."""
    s = Server(tmp_path, repos.dir)
    try:
        s.start()
    except BaseException:
        problems = s.shutdown()
        if problems:
            print("\n".join(problems))
        raise
    yield s
    problems = s.shutdown()
    if problems:
        pytest.fail("teardown of eph serve in %s:\n%s\n--- server log tail\n%s"
                    % (tmp_path, "\n".join(problems), s.log_tail()), pytrace=False)


def add_project(server, name, repo):
    r = server.eph("project", "add", name, "--repo", repo)
    assert r.rc == 0, str(r)


@pytest.fixture
def shop(server, repos):
    """The server with examples/shop registered as project `shop`."""
    add_project(server, "shop", repos.shop)
    return server


@pytest.fixture
def tiny(server, repos):
    """The server with the one-service project `tiny` registered."""
    add_project(server, "tiny", repos.trivial)
    return server


def run_threads(fn, items):
    """Calls fn(item) for every item, each in its own thread, all at once; returns
    the results in order (re-raising the first exception)."""
    results = [None] * len(items)
    errors = []
    start = threading.Barrier(len(items))

    def worker(i, item):
        try:
            start.wait()
            results[i] = fn(item)
        except BaseException as e:   # noqa: B902 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i, it)) for i, it in enumerate(items)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# ------------------------------------------------------------------ the gateway (test_07)
#
# The gateway serves everything on the server's one port: the control host
# (127.0.0.1:PORT, localhost:PORT) is the API, <service>.<env>.localhost:PORT
# is proxied to the service. glibc does not resolve *.localhost here, so the
# tests connect to 127.0.0.1 and send the Host header (curl resolves the
# names itself).

UPSTREAMS_DIR = Path(__file__).resolve().parent / "upstreams"
# Settings of the gateway tests' server, appended to its config file: a short
# header timeout for the slowloris case, a short first-byte timeout for the
# 504 case, and the access log on stderr (the server's log file).
# The proxy-mechanics tests talk raw HTTP, WebSocket and curl to service
# hosts: they run with sign-in off; test_10_signin.py and the tests that use
# the `server` fixture check the gateway with sign-in on.
GATEWAY_SETTINGS = (("header_timeout", "2s"), ("upstream_first_byte_timeout", "3s"),
                    ("access_log", "-"), ("auth", "off"))
UPSTREAM_START_TIMEOUT_S = 15

PROBE_TEMPLATE = """\
version: 1
params:
  start_delay: { default: "0" }
services:
  probe:
    run: /usr/bin/python3 probe.py
    env: { START_DELAY: "${params.start_delay}" }
    health: { http: /healthz, timeout: 30s }
"""

WS_TEMPLATE = """\
version: 1
services:
  ws:
    run: /usr/bin/python3 ws_echo.py
    health: { tcp: true, timeout: 30s }
"""

# Services that start nothing: the gateway routes them to a server the test
# runs itself, on the port given as a param. No health check, so the
# environment is ready whether or not that server is up.
EXT_TEMPLATE = """\
version: 1
params:
  backend_port: {}
services:
  alpha:
    upstream: "http://127.0.0.1:${params.backend_port}"
  beta:
    upstream: "http://127.0.0.1:${params.backend_port}"
  hiddensvc:
    upstream: "http://127.0.0.1:${params.backend_port}"
    expose: false
"""


@dataclass
class GatewayRepos:
    probe: Path    # one run: service, tests/e2e/upstreams/probe.py
    ws: Path       # one run: service, tests/e2e/upstreams/ws_echo.py
    ext: Path      # upstream: services alpha, beta, hiddensvc (not exposed)


def make_repo(path, files):
    """A git repository at path holding files {name: text}, one commit on main."""
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    git(path.parent, "init", "-q", "-b", "main", str(path))
    commit_all(path, "gateway test project")
    return path


@pytest.fixture(scope="session")
def gw_repos(repos):
    """The gateway tests' projects, beside the others (allowed_repos covers them)."""
    probe_py = (UPSTREAMS_DIR / "probe.py").read_text()
    ws_py = (UPSTREAMS_DIR / "ws_echo.py").read_text()
    return GatewayRepos(
        probe=make_repo(repos.dir / "gw-probe", {"ephemera.yaml": PROBE_TEMPLATE,
                                                 "probe.py": probe_py}),
        ws=make_repo(repos.dir / "gw-ws", {"ephemera.yaml": WS_TEMPLATE, "ws_echo.py": ws_py}),
        ext=make_repo(repos.dir / "gw-ext", {"ephemera.yaml": EXT_TEMPLATE}))


@pytest.fixture
def gw(tmp_path, repos, gw_repos):
    """A running `eph serve` with GATEWAY_SETTINGS, the shop registered as `shop`
    and the gateway projects as `probe`, `ws` and `ext`; checked at teardown
    like `server`."""
    s = Server(tmp_path, repos.dir)
    with open(s.config_file, "a") as f:
        for key, value in GATEWAY_SETTINGS:
            f.write('%s: "%s"\n' % (key, value))
    try:
        s.start()
        for name, repo in (("shop", repos.shop), ("probe", gw_repos.probe),
                           ("ws", gw_repos.ws), ("ext", gw_repos.ext)):
            add_project(s, name, repo)
    except BaseException:
        problems = s.shutdown()
        if problems:
            print("\n".join(problems))
        raise
    yield s
    problems = s.shutdown()
    if problems:
        pytest.fail("teardown of eph serve in %s:\n%s\n--- server log tail\n%s"
                    % (tmp_path, "\n".join(problems), s.log_tail()), pytrace=False)


def svc_host(server, service, env):
    """The Host header of a service URL on this server: web.fx.localhost:PORT."""
    return "%s.%s.localhost:%d" % (service, env, server.port)


def gw_request(server, method, host, path="/", timeout=30, token=True, **kw):
    """An HTTP request through the gateway with Host: host, no proxies, and the
    server's admin token as a bearer token unless token is False (or another
    token is given)."""
    headers = dict(kw.pop("headers", {}))
    headers["Host"] = host
    if token and "Authorization" not in headers:
        headers["Authorization"] = "Bearer " + (server.token if token is True else token)
    return requests.request(method, "http://127.0.0.1:%d%s" % (server.port, path),
                            headers=headers, timeout=timeout,
                            proxies={"http": None, "https": None}, **kw)


def create_env(server, project, name, params=None):
    """POST /api/v1/envs; returns the created environment's JSON."""
    body = {"project": project, "name": name}
    if params:
        body["params"] = {k: str(v) for k, v in params.items()}
    r = server.api("POST", "envs", json=body)
    assert r.status_code in (200, 201, 202), "create %s: %d %s" % (name, r.status_code, r.text)
    return r.json()


class Upstream:
    """A server of tests/e2e/upstreams/ run by the test itself on 127.0.0.1:port,
    in its own session; stopped by its pid."""

    def __init__(self, script, log_dir, port=None):
        self.script = UPSTREAMS_DIR / script
        self.log_dir = Path(log_dir)
        self.port = port or free_port()
        self.proc = None
        self.runs = 0

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        assert self.proc is None, "upstream already running"
        self.runs += 1
        log = self.log_dir / ("%s-%d-%d.log" % (self.script.stem, self.port, self.runs))
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(["/usr/bin/python3", str(self.script)],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         env=clean_environ(PORT=str(self.port)),
                                         start_new_session=True)

        def accepts():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %d:\n%s" % (
                    self.script.name, self.proc.returncode, log.read_text(errors="replace")))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(accepts, UPSTREAM_START_TIMEOUT_S, "%s on port %d" % (self.script.name,
                                                                          self.port))
        return self

    def stop(self):
        """SIGTERM by pid, then SIGKILL if it lingers; waits until the port is free."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    def get(self, path):
        """GET path on the upstream directly (not through the gateway), as JSON."""
        r = requests.get(self.url + path, timeout=10, proxies={"http": None})
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path):
        r = requests.post(self.url + path, timeout=10, proxies={"http": None})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def probe_upstream(tmp_path):
    """tests/e2e/upstreams/probe.py on a free loopback port, run by the test."""
    up = Upstream("probe.py", tmp_path).start()
    yield up
    up.stop()


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list          # [(lower-case name, value)] in order
    body: bytes

    def header(self, name, default=None):
        for k, v in self.headers:
            if k == name.lower():
                return v
        return default

    def header_all(self, name):
        return [v for k, v in self.headers if k == name.lower()]


class RawHTTP:
    """HTTP/1.1 over a plain socket to 127.0.0.1:port, for what a library would
    hide or refuse to send: pipelining, smuggling attempts, byte-exact framing."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the gateway before the deadline; have %r"
                               % self.buf[:200])
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout as e:
            raise TimeoutError("no data from the gateway before the deadline; have %r"
                               % self.buf[:200]) from e
        if not data:
            self.eof = True
            raise EOFError("the gateway closed the connection; have %r" % self.buf[:200])
        self.buf += data

    def read_until(self, sep, timeout=30):
        deadline = time.monotonic() + timeout
        while sep not in self.buf:
            self._fill(deadline)
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self, timeout=30):
        """(status, reason, headers) of the next response head."""
        head = self.read_until(b"\r\n\r\n", timeout).decode("latin-1")
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        assert version.startswith("HTTP/1."), "not a status line: %r" % lines[0]
        status, _, reason = rest.partition(" ")
        headers = []
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers.append((k.strip().lower(), v.strip()))
        return int(status), reason, headers

    def read_chunk(self, timeout=30):
        """The data of the next chunk of a chunked body (b"" for the last one,
        whose trailers are read too)."""
        line = self.read_until(b"\r\n", timeout)
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while self.read_until(b"\r\n", timeout) != b"\r\n":
                pass
            return b""
        data = self.read_exact(size, timeout)
        assert self.read_exact(2, timeout) == b"\r\n", "chunk not followed by CRLF"
        return data

    def response(self, head_request=False, timeout=30):
        """The next whole response (a 1xx comes back on its own)."""
        status, reason, headers = self.read_head(timeout)
        resp = RawResponse(status, reason, headers, b"")
        te = (resp.header("transfer-encoding") or "").lower()
        if head_request or status < 200 or status in (204, 304):
            return resp
        if "chunked" in te:
            parts = []
            while True:
                data = self.read_chunk(timeout)
                if not data:
                    break
                parts.append(data)
            resp.body = b"".join(parts)
        elif resp.header("content-length") is not None:
            resp.body = self.read_exact(int(resp.header("content-length")), timeout)
        else:
            resp.body = self.read_to_eof(timeout)
        return resp

    def body_pieces(self, headers, timeout=30):
        """Yields the body of a response whose head was read with read_head(), as
        it arrives: chunked, Content-Length or up to the close."""
        resp = RawResponse(0, "", headers, b"")
        if "chunked" in (resp.header("transfer-encoding") or "").lower():
            while True:
                data = self.read_chunk(timeout)
                if not data:
                    return
                yield data
        length = resp.header("content-length")
        left = int(length) if length is not None else None
        while left is None or left > 0:
            if not self.buf:
                try:
                    self._fill(time.monotonic() + timeout)
                except EOFError:
                    if left is None:
                        return
                    raise
            piece = self.buf if left is None else self.buf[:left]
            self.buf = self.buf[len(piece):]
            if left is not None:
                left -= len(piece)
            yield piece

    def read_to_eof(self, timeout=30):
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._fill(deadline)
            except EOFError:
                break
        out, self.buf = self.buf, b""
        return out

    def closed_within(self, timeout):
        """True once the peer closes (FIN or reset) before the deadline; data
        that arrives meanwhile is kept in self.buf. False at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except EOFError:
                return True
            except (ConnectionResetError, BrokenPipeError):
                self.eof = True
                return True
            except TimeoutError:
                return False


def vm_rss_kib(pid):
    """VmRSS of a process in KiB, from /proc/PID/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


class RssSampler:
    """Samples a process's VmRSS every interval seconds in a thread; .peak_kib."""

    def __init__(self, pid, interval=0.01):
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, vm_rss_kib(self.pid))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
