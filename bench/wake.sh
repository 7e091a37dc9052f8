#!/usr/bin/env bash
# bench/wake.sh - what waking a sleeping environment adds to its service's
# own start-up: the first request to a sleeping environment, held by the
# gateway until the environment is awake, against the service started by hand.
#
# A one-service project whose service is a tiny HTTP server (Python, no site
# packages, a thread per connection, answers 200 "ok") is registered with a
# fresh eph serve on loopback, and one environment of it is created. Then,
# N times (default 50, plus one warm-up that is not counted):
#   wake           the environment is put to sleep (POST .../sleep) and the
#                  script waits until its phase is "sleeping" and its
#                  process is gone; then the time from sending GET / to its
#                  web URL through the gateway (Host header, bearer token) to
#                  the whole 200 answer: hold, wake, start, health check,
#                  route, proxy;
#   service start  the same command started directly (sh -c, as the driver
#                  does) until a GET / on its port answers 200, polled every
#                  millisecond.
# Prints the median and p99 (nearest rank) of each and the overhead: the
# median wake minus the median start, and the p99 wake minus the median
# start. The goal is an overhead under 20 ms.
#
#   bench/wake.sh                        release build (make release), 50 wakes
#   EPH_BENCH_RUNS=20 bench/wake.sh
#   EPH_BIN=build/release/eph bench/wake.sh    (skips the build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z ${EPH_BIN:-} ]]; then
    make -j"$(nproc 2>/dev/null || echo 2)" release >&2
    EPH_BIN=$PWD/build/release/eph
fi
export EPH_BIN
export EPH_BENCH_RUNS=${EPH_BENCH_RUNS:-50}

exec /usr/bin/python3 - <<'EOF'
import http.client, json, math, os, shutil, signal, socket, statistics, subprocess, sys
import tempfile, time
import urllib.error, urllib.request

EPH = os.environ["EPH_BIN"]
RUNS = int(os.environ["EPH_BENCH_RUNS"])
POLL_S = 0.001          # the direct start is polled every millisecond
STATE_POLL_S = 0.01     # waiting for sleep (not measured)
DEADLINE_S = 60
GOAL_MS = 20
WAKE_GAP_S = 0.25       # between two wakes, at least (see the loop)
SERVICE_PY = r'''
import os, socket, threading
R = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
def serve(c):
    buf = b""
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            buf += d
            while b"\r\n\r\n" in buf:
                buf = buf.split(b"\r\n\r\n", 1)[1]
                c.sendall(R)
    except OSError:
        pass
    c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen(128)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''
SERVICE = "/usr/bin/python3 -S -E tiny.py"
TEMPLATE = """version: 1
services:
  web:
    run: %s
    health: { http: /, timeout: 30s }
""" % SERVICE
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@ephemera.invalid",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@ephemera.invalid",
               GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
for k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
    GIT_ENV.pop(k, None)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_range(size=16):
    for lo in range(24000, 32000, size):
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
    sys.exit("bench: no free port range")


def request(method, url, token=None, body=None):
    req = urllib.request.Request(url, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with opener.open(req, timeout=10) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


LOG = []   # the server's log file, once there is one


def fail(msg):
    """Exits with msg and the end of the server's log."""
    tail = ""
    if LOG:
        with open(LOG[0], errors="replace") as f:
            tail = "".join(f.readlines()[-20:])
    sys.exit("bench: %s\n--- server log tail\n%s" % (msg, tail))


def wait(pred, what, poll=STATE_POLL_S):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            fail("timed out waiting for " + what)
        time.sleep(poll)


def http_get(port, host=None, token=None, timeout=DEADLINE_S):
    """GET / on 127.0.0.1:port: the status, 0 if the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Connection": "close"}
    if host:
        headers["Host"] = host
    if token:
        headers["Authorization"] = "Bearer " + token
    try:
        conn.request("GET", "/", headers=headers)
        res = conn.getresponse()
        res.read()
        return res.status
    except OSError:
        return 0
    finally:
        conn.close()


def service_start_ms(workdir, port):
    """exec of the service command -> GET / answering 200, in ms."""
    t0 = time.monotonic()
    p = subprocess.Popen(["/bin/sh", "-c", SERVICE], cwd=workdir,
                         env=dict(os.environ, PORT=str(port)), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait(lambda: http_get(port, timeout=1) == 200, "the service", POLL_S)
        return (time.monotonic() - t0) * 1000
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def pids_of(tmp):
    """Live processes whose environment carries this data directory."""
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


def nearest_rank(values, q):
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def main():
    tmp = tempfile.mkdtemp(prefix="eph-bench-")
    os.chmod(tmp, 0o755)   # as root, services run as `nobody` and must reach their checkout
    server = None
    try:
        repo = os.path.join(tmp, "repos", "wake")
        os.makedirs(repo)
        with open(os.path.join(repo, "ephemera.yaml"), "w") as f:
            f.write(TEMPLATE)
        with open(os.path.join(repo, "tiny.py"), "w") as f:
            f.write(SERVICE_PY)
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "wake"]):
            subprocess.run(["git", "-C", repo] + args, check=True, env=GIT_ENV)

        lo, hi = free_range()
        port = free_port()
        base = "http://127.0.0.1:%d/api/v1" % port
        host = "web.w.localhost:%d" % port
        env = dict(GIT_ENV, EPH_CONFIG=os.path.join(tmp, "client.json"))
        LOG.append(os.path.join(tmp, "serve.log"))
        with open(LOG[0], "wb") as log:
            server = subprocess.Popen(
                [EPH, "serve", "--data-dir", os.path.join(tmp, "data"),
                 "--listen", "127.0.0.1:%d" % port, "--port-range", "%d-%d" % (lo + 1, hi),
                 "--stop-grace", "2s"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
                start_new_session=True)
        wait(lambda: request("GET", base + "/healthz")[0] == 200, "eph serve")
        token = wait(lambda: os.path.exists(env["EPH_CONFIG"]) and
                     json.load(open(env["EPH_CONFIG"]))["token"], "the client config")
        status, body = request("POST", base + "/projects", token, {"name": "wake", "repo": repo})
        if status != 201:
            fail("project add: %d %s" % (status, body.decode()))
        status, body = request("POST", base + "/envs", token,
                               {"project": "wake", "name": "w", "sleep_after": "never"})
        if status != 201:
            fail("create: %d %s" % (status, body.decode()))

        def phase():
            s, b = request("GET", base + "/envs", token)   # the list is no activity
            for e in json.loads(b)["envs"] if s == 200 else []:
                if e["name"] == "w":
                    if e["phase"] == "failed":
                        fail("environment failed: " + json.dumps(e))
                    return e["phase"]
            return None
        wait(lambda: phase() == "ready", "ready")
        workdir = os.path.join(tmp, "direct")
        shutil.copytree(repo, workdir)

        starts, wakes = [], []
        last_wake = 0.0
        for i in range(RUNS + 1):            # run 0 warms caches and is not counted
            starts_ms = service_start_ms(workdir, lo)
            s, b = request("POST", base + "/envs/w/sleep", token)
            if s != 202:
                fail("sleep: %d %s" % (s, b.decode()))
            wait(lambda: phase() == "sleeping" and not pids_of(tmp), "sleep")
            # A gateway worker tells the server about a request for a sleeping
            # environment at most every 100 ms, and a request held within 100
            # ms of the last wake is never told (so it waits out wake_timeout):
            # keep the wakes further apart than that.
            gap = WAKE_GAP_S - (time.monotonic() - last_wake)
            if gap > 0:
                time.sleep(gap)
            t0 = last_wake = time.monotonic()
            status = http_get(port, host, token)
            wake_ms = (time.monotonic() - t0) * 1000
            if status != 200:
                fail("the request to the sleeping environment got %d" % status)
            if i > 0:
                starts.append(starts_ms)
                wakes.append(wake_ms)

        ms, mw = statistics.median(starts), statistics.median(wakes)
        ps, pw = nearest_rank(starts, 0.99), nearest_rank(wakes, 0.99)
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        print("wakes:                   %d (load average %s)" % (RUNS, load))
        print("wake, first request:     median %6.1f ms   p99 %6.1f ms   (min %.1f, max %.1f)"
              % (mw, pw, min(wakes), max(wakes)))
        print("service start, direct:   median %6.1f ms   p99 %6.1f ms   (min %.1f, max %.1f)"
              % (ms, ps, min(starts), max(starts)))
        print("overhead:                median %6.1f ms   p99 %6.1f ms   (goal < %d ms: %s)"
              % (mw - ms, pw - ms, GOAL_MS, "met" if mw - ms < GOAL_MS else "NOT met"))
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        kill_leftovers(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


main()
EOF
