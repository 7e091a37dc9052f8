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
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_use_eph
export EPH_BENCH_RUNS=${EPH_BENCH_RUNS:-20}

exec /usr/bin/python3 - <<'EOF'
import json, os, shutil, statistics, sys, tempfile, time

sys.path.insert(0, "bench")
import benchlib  # noqa: E402
from benchlib import die, request  # noqa: E402

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


def wait(pred, what):
    return benchlib.wait_for(pred, DEADLINE_S, what, POLL_S)


def service_start_ms(port):
    """exec of the service command -> its port answering 200, in ms."""
    return benchlib.direct_start_ms(
        SERVICE, port, lambda p: request("GET", "http://127.0.0.1:%d/" % p)[0] == 200, POLL_S)


def main():
    tmp = tempfile.mkdtemp(prefix="eph-bench-")
    os.chmod(tmp, 0o755)   # as root, services run as `nobody` and must reach their checkout
    server = benchlib.Server(EPH, tmp)
    try:
        repo = os.path.join(tmp, "repos", "tiny")
        benchlib.git_repo(repo, {"ephemera.yaml": TEMPLATE}, "tiny")
        server.start(os.path.join(tmp, "serve.log"), POLL_S)
        status, body = server.api("POST", "/projects", {"name": "tiny", "repo": repo})
        if status != 201:
            die("project add: %d %s" % (status, body.decode()))

        direct, overall = [], []
        for i in range(RUNS + 1):            # run 0 warms caches and is not counted
            direct_ms = service_start_ms(server.lo)
            name = "b%02d" % i
            t0 = time.monotonic()
            status, body = server.api("POST", "/envs", {"project": "tiny", "name": name})
            if status != 201:
                die("create: %d %s" % (status, body.decode()))

            def ready():
                s, b = server.api("GET", "/envs/" + name)
                if s == 200:
                    phase = json.loads(b)["phase"]
                    if phase == "failed":
                        die("environment failed: " + b.decode())
                    return phase == "ready"
                return False
            wait(ready, "ready")
            ready_ms = (time.monotonic() - t0) * 1000
            server.api("DELETE", "/envs/" + name)
            wait(lambda: server.api("GET", "/envs/" + name)[0] == 404, "deletion")
            if i > 0:
                direct.append(direct_ms)
                overall.append(ready_ms)

        md, mo = statistics.median(direct), statistics.median(overall)
        print("runs:                    %d" % RUNS)
        print("create->ready (median):  %.1f ms  (min %.1f, max %.1f)" % (mo, min(overall), max(overall)))
        print("service start (median):  %.1f ms  (min %.1f, max %.1f)" % (md, min(direct), max(direct)))
        print("overhead:                %.1f ms" % (mo - md))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


main()
EOF
