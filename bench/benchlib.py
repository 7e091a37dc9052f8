"""bench/benchlib.py - what the Python of the benchmark scripts shares.

An HTTP client that ignores proxies (everything here is on loopback), free
ports, polling with a deadline, git repositories to register as projects, a
fresh `eph serve` on 127.0.0.1 and the cleaning up after it, and the timing
of a service started by hand. The scripts run their Python from the
repository root (bench/lib.sh moves there) and import it with

    sys.path.insert(0, "bench")
    import benchlib

Nothing here prints on success; failures exit with "bench: <what>".
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

# The environment for git and for the servers the scripts start: a fixed
# identity, no user or system git config, and no proxies.
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@ephemera.invalid",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@ephemera.invalid",
               GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
for _k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
           "no_proxy", "NO_PROXY"):
    GIT_ENV.pop(_k, None)
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def die(msg):
    """Exits with "bench: msg"; the callers' finally blocks still run."""
    sys.exit("bench: " + msg)


# ------------------------------------------------------------------ ports and HTTP

def free_port():
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_range(size=16, avoid=()):
    """(lo, hi): size consecutive free ports from 24000 up, none inside a
    range of `avoid` (a list of (lo, hi))."""
    for lo in range(24000, 32000, size):
        if any(a[0] <= lo + size - 1 and lo <= a[1] for a in avoid):
            continue
        ok = True
        for p in range(lo, lo + size):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return lo, lo + size - 1
    die("no free port range")


def request(method, url, token=None, body=None, host=None, timeout=10, cookie=None):
    """One request, body (if any) sent as JSON: (status, body bytes); (0, b"")
    if the connection failed."""
    req = urllib.request.Request(url, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if host:
        req.add_header("Host", host)
    if cookie:
        req.add_header("Cookie", cookie)
    try:
        with OPENER.open(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def raw_request(port, method, target, headers, body=None, timeout=30):
    """One request to 127.0.0.1:port on a fresh connection, redirects not
    followed: (status, message headers, body); (0, None, b"") if the
    connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers)
        res = conn.getresponse()
        return res.status, res.msg, res.read()
    except OSError:
        return 0, None, b""
    finally:
        conn.close()


def wait_for(pred, timeout, what, interval=0.05, fail=die):
    """pred()'s first true value, asked every `interval` seconds; after
    `timeout` seconds, fail("timed out waiting for <what>")."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            fail("timed out waiting for " + what)
        time.sleep(interval)


# ------------------------------------------------------------------ projects and servers

def git_repo(path, files, message):
    """A new git repository at path with `files` ({name: text}) committed on main."""
    os.makedirs(path)
    for name, text in files.items():
        with open(os.path.join(path, name), "w") as f:
            f.write(text)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", message]):
        subprocess.run(["git", "-C", path] + args, check=True, env=GIT_ENV)


def pids_of(tmp):
    """Live processes whose environment carries a data directory under tmp:
    the services of a server started there."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                environ = f.read().split(b"\0")
            with open("/proc/%s/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and \
                any(e.startswith(b"EPH_DATA=" + tmp.encode() + b"/") for e in environ):
            found.append(int(pid))
    return found


def kill_leftovers(tmp):
    """Environments outlive a SIGTERMed server: kill what a failed run left behind."""
    for pid in pids_of(tmp):
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except OSError:
            pass


class Server:
    """A fresh `eph serve` on 127.0.0.1: its data in tmp/data, its client
    config (with the admin token) in tmp/client.json, services on a free
    range of 16 ports of which the lowest, `lo`, is left free for a service
    started by hand. Picks its ports when made; start() starts it, stop()
    (in a finally, even if start() failed) stops it and its services."""

    def __init__(self, eph, tmp):
        self.eph, self.tmp = eph, tmp
        self.lo, self.hi = free_range()
        self.port = free_port()
        self.base = "http://127.0.0.1:%d/api/v1" % self.port
        self.client = os.path.join(tmp, "client.json")
        self.proc = None
        self.token = None

    def start(self, log_path, interval, fail=die):
        """Starts the server, its stderr into log_path, and waits (polling
        every `interval` s, 60 s at most) until it answers and has written
        its admin token."""
        env = dict(GIT_ENV, EPH_CONFIG=self.client)
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.eph, "serve", "--data-dir", os.path.join(self.tmp, "data"),
                 "--listen", "127.0.0.1:%d" % self.port,
                 "--port-range", "%d-%d" % (self.lo + 1, self.hi), "--stop-grace", "2s"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
                start_new_session=True)

        def healthy():
            if self.proc.poll() is not None:
                fail("eph serve exited with %d, see %s" % (self.proc.returncode, log_path))
            return request("GET", self.base + "/healthz")[0] == 200
        wait_for(healthy, 60, "eph serve", interval, fail)
        self.token = wait_for(lambda: os.path.exists(self.client) and
                              json.load(open(self.client))["token"], 60, "the client config",
                              interval, fail)

    def api(self, method, path, body=None):
        """request() to /api/v1/<path> with the admin token."""
        return request(method, self.base + path, self.token, body)

    def stop(self):
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_leftovers(self.tmp)


def direct_start_ms(command, port, ready, interval, cwd=None, fail=die):
    """Starts `command` with sh -c (as the local driver does) and PORT=port,
    and returns the ms until ready(port) is true (asked every `interval` s,
    60 s at most); then kills its process group."""
    t0 = time.monotonic()
    p = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd,
                         env=dict(os.environ, PORT=str(port)), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: ready(port), 60, "the service", interval, fail)
        return (time.monotonic() - t0) * 1000
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
