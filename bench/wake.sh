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
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_use_eph
export EPH_BENCH_RUNS=${EPH_BENCH_RUNS:-50}

exec /usr/bin/python3 - <<'EOF'
import json, math, os, shutil, statistics, sys, tempfile, time

sys.path.insert(0, "bench")
import benchlib  # noqa: E402
from benchlib import pids_of  # noqa: E402

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
LOG = []   # the server's log file, once there is one


def fail(msg):
    """Exits with msg and the end of the server's log."""
    tail = ""
    if LOG:
        with open(LOG[0], errors="replace") as f:
            tail = "".join(f.readlines()[-20:])
    sys.exit("bench: %s\n--- server log tail\n%s" % (msg, tail))


def wait(pred, what, poll=STATE_POLL_S):
    return benchlib.wait_for(pred, DEADLINE_S, what, poll, fail)


def http_get(port, host=None, token=None, timeout=DEADLINE_S):
    """GET / on 127.0.0.1:port: the status, 0 if the connection failed."""
    headers = {"Connection": "close"}
    if host:
        headers["Host"] = host
    if token:
        headers["Authorization"] = "Bearer " + token
    return benchlib.raw_request(port, "GET", "/", headers, timeout=timeout)[0]


def service_start_ms(workdir, port):
    """exec of the service command -> GET / answering 200, in ms."""
    return benchlib.direct_start_ms(SERVICE, port, lambda p: http_get(p, timeout=1) == 200,
                                    POLL_S, workdir, fail)


def nearest_rank(values, q):
    s = sorted(values)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def main():
    tmp = tempfile.mkdtemp(prefix="eph-bench-")
    os.chmod(tmp, 0o755)   # as root, services run as `nobody` and must reach their checkout
    server = benchlib.Server(EPH, tmp)
    try:
        repo = os.path.join(tmp, "repos", "wake")
        benchlib.git_repo(repo, {"ephemera.yaml": TEMPLATE, "tiny.py": SERVICE_PY}, "wake")
        host = "web.w.localhost:%d" % server.port
        LOG.append(os.path.join(tmp, "serve.log"))
        server.start(LOG[0], STATE_POLL_S, fail)
        status, body = server.api("POST", "/projects", {"name": "wake", "repo": repo})
        if status != 201:
            fail("project add: %d %s" % (status, body.decode()))
        status, body = server.api("POST", "/envs",
                                  {"project": "wake", "name": "w", "sleep_after": "never"})
        if status != 201:
            fail("create: %d %s" % (status, body.decode()))

        def phase():
            s, b = server.api("GET", "/envs")   # the list is no activity
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
            starts_ms = service_start_ms(workdir, server.lo)
            s, b = server.api("POST", "/envs/w/sleep")
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
            status = http_get(server.port, host, server.token)
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
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


main()
EOF
