#!/usr/bin/env bash
# bench/create_ready.sh - what the local driver adds between "create" and
# "ready" for a trivial one-service environment.
#
# For each of N runs (default 20), one after the other on an idle server:
#   create->ready  time from sending POST /api/v1/envs to the first
#                  GET /api/v1/envs/NAME that shows phase "ready" (polled
#                  every 5 ms), then the environment is deleted;
#   service start  time from starting the same command directly (sh -c, as
#                  the driver does) to its port answering HTTP 200 (polled
#                  every 5 ms).
# Prints the median of each and their difference, the overhead: git
# checkout, scheduling, health checking and the store, in ms.
#
#   bench/create_ready.sh            release build (make release), 20 runs
#   EPH_BENCH_RUNS=50 bench/create_ready.sh
#   EPH_BIN=build/debug/eph bench/create_ready.sh    (skips the build; ASan is slow)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z ${EPH_BIN:-} ]]; then
    make -j"$(nproc 2>/dev/null || echo 2)" release >&2
    EPH_BIN=$PWD/build/release/eph
fi
export EPH_BIN
export EPH_BENCH_RUNS=${EPH_BENCH_RUNS:-20}

exec /usr/bin/python3 - <<'EOF'
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time
import urllib.error, urllib.request

EPH = os.environ["EPH_BIN"]
RUNS = int(os.environ["EPH_BENCH_RUNS"])
POLL_S = 0.005
DEADLINE_S = 60
SERVICE = "/usr/bin/python3 -m http.server $PORT --bind 127.0.0.1"
TEMPLATE = """version: 1
services:
  app:
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


def wait(pred, what):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            sys.exit("bench: timed out waiting for " + what)
        time.sleep(POLL_S)


def service_start_ms(port_lo):
    """exec of the service command -> its port answering 200, in ms."""
    port = port_lo
    t0 = time.monotonic()
    p = subprocess.Popen(["/bin/sh", "-c", SERVICE], env=dict(os.environ, PORT=str(port)),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        wait(lambda: request("GET", "http://127.0.0.1:%d/" % port)[0] == 200, "the service")
        return (time.monotonic() - t0) * 1000
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def kill_leftovers(tmp):
    """Environments outlive a SIGTERMed server: kill what a failed run left behind."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/environ" % pid, "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        if any(e.startswith(b"EPH_DATA=" + tmp.encode() + b"/") for e in environ):
            try:
                os.killpg(os.getpgid(int(pid)), signal.SIGKILL)
            except OSError:
                pass


def main():
    tmp = tempfile.mkdtemp(prefix="eph-bench-")
    server = None
    try:
        repo = os.path.join(tmp, "repos", "tiny")
        os.makedirs(repo)
        with open(os.path.join(repo, "ephemera.yaml"), "w") as f:
            f.write(TEMPLATE)
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "tiny"]):
            subprocess.run(["git", "-C", repo] + args, check=True, env=GIT_ENV)

        lo, hi = free_range()
        port = free_port()
        base = "http://127.0.0.1:%d/api/v1" % port
        env = dict(GIT_ENV, EPH_CONFIG=os.path.join(tmp, "client.json"))
        with open(os.path.join(tmp, "serve.log"), "wb") as log:
            server = subprocess.Popen(
                [EPH, "serve", "--data-dir", os.path.join(tmp, "data"),
                 "--listen", "127.0.0.1:%d" % port, "--port-range", "%d-%d" % (lo + 1, hi),
                 "--stop-grace", "2s"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
                start_new_session=True)
        wait(lambda: request("GET", base + "/healthz")[0] == 200, "eph serve")
        token = wait(lambda: os.path.exists(env["EPH_CONFIG"]) and
                     json.load(open(env["EPH_CONFIG"]))["token"], "the client config")
        status, body = request("POST", base + "/projects", token, {"name": "tiny", "repo": repo})
        if status != 201:
            sys.exit("bench: project add: %d %s" % (status, body.decode()))

        direct, overall = [], []
        for i in range(RUNS + 1):            # run 0 warms caches and is not counted
            direct_ms = service_start_ms(lo)
            name = "b%02d" % i
            t0 = time.monotonic()
            status, body = request("POST", base + "/envs", token, {"project": "tiny", "name": name})
            if status != 201:
                sys.exit("bench: create: %d %s" % (status, body.decode()))

            def ready():
                s, b = request("GET", base + "/envs/" + name, token)
                if s == 200:
                    phase = json.loads(b)["phase"]
                    if phase == "failed":
                        sys.exit("bench: environment failed: " + b.decode())
                    return phase == "ready"
                return False
            wait(ready, "ready")
            ready_ms = (time.monotonic() - t0) * 1000
            request("DELETE", base + "/envs/" + name, token)
            wait(lambda: request("GET", base + "/envs/" + name, token)[0] == 404, "deletion")
            if i > 0:
                direct.append(direct_ms)
                overall.append(ready_ms)

        md, mo = statistics.median(direct), statistics.median(overall)
        print("runs:                    %d" % RUNS)
        print("create->ready (median):  %.1f ms  (min %.1f, max %.1f)" % (mo, min(overall), max(overall)))
        print("service start (median):  %.1f ms  (min %.1f, max %.1f)" % (md, min(direct), max(direct)))
        print("overhead:                %.1f ms" % (mo - md))
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
