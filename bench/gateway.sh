#!/usr/bin/env bash
# bench/gateway.sh - eph's gateway against nginx doing the same job, side by side.
#
# Both route 1,000 hosts (svcX.envY.localhost, X = Y mod 10) to the same two
# fast local backends (one nginx with 2 workers on two ports, answering a
# 19-byte static body with keep-alive):
#   nginx   (Debian package) configured here in a temp dir: one server block
#           per host, an upstream block per backend keeping up to 256 idle
#           connections per worker, like eph's default upstream_keepalive
#           (EPH_BENCH_KEEPALIVE sets both), the same
#           X-Forwarded-* and Forwarded headers eph adds, no access log;
#   eph     `eph serve` (release build), 1,000 environments created through the
#           API from 10 projects whose one service svcX is `upstream:` to a
#           backend port chosen by a param. No access log.
# wrk (Debian package) with keep-alive sends GET / with a random Host of the
# 1,000 (a Lua script) for DURATION at 64 and at 256 connections, first to
# nginx, then to eph, RUNS times alternating (default 3). Printed, each the
# median over the runs: requests/s, p50 and p99 latency, non-2xx
# answers, the proxy's peak RSS during the run (nginx: master + workers) and
# the connections the backends accepted during the run (stub_status: how
# well the proxy's keep-alive pool holds), and the ratios eph/nginx. First
# with one worker each (--gateway-workers 1, worker_processes 1), then with
# the defaults (eph: one per core; nginx: auto).
#
# wrk, the backends and the proxy share the machine's cores: on a small
# machine the numbers move with whatever else runs; compare within one run.
#
#   bench/gateway.sh                           release build (make release), 10 s runs
#   EPH_BENCH_DURATION=30s EPH_BENCH_RUNS=1 bench/gateway.sh
#   EPH_BENCH_KEEPALIVE=64 bench/gateway.sh    (both keep at most 64 idle)
#   EPH_BIN=build/debug/eph bench/gateway.sh   (skips the build; ASan is slow)
#
# Everything listens on 127.0.0.1 ports picked free; every process started
# here is stopped by its pid at the end, and the temp dir removed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

for tool in nginx wrk; do
    if ! command -v "$tool" >/dev/null && [[ ! -x /usr/sbin/$tool ]]; then
        echo "bench: $tool is missing (scripts/install-deps.sh installs it)" >&2
        exit 1
    fi
done

if [[ -z ${EPH_BIN:-} ]]; then
    make -j"$(nproc 2>/dev/null || echo 2)" release >&2
    EPH_BIN=$PWD/build/release/eph
fi
export EPH_BIN
export EPH_BENCH_DURATION=${EPH_BENCH_DURATION:-10s}
export EPH_BENCH_HOSTS=${EPH_BENCH_HOSTS:-1000}
export EPH_BENCH_KEEPALIVE=${EPH_BENCH_KEEPALIVE:-256}
export EPH_BENCH_RUNS=${EPH_BENCH_RUNS:-3}

exec /usr/bin/python3 - <<'EOF'
import concurrent.futures, datetime, json, os, re, shutil, signal, socket, subprocess, sys
import tempfile, threading, time
import urllib.error, urllib.request

EPH = os.environ["EPH_BIN"]
DURATION = os.environ["EPH_BENCH_DURATION"]
N_HOSTS = int(os.environ["EPH_BENCH_HOSTS"])
N_PROJECTS = 10                 # service svcX lives in project pX
KEEPALIVE = int(os.environ["EPH_BENCH_KEEPALIVE"])
RUNS = int(os.environ["EPH_BENCH_RUNS"])
CONNECTIONS = (64, 256)
WRK_THREADS = 2
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BODY = "hello from backend\n"
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@ephemera.invalid",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@ephemera.invalid",
               GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
for k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
          "no_proxy", "NO_PROXY"):
    GIT_ENV.pop(k, None)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
procs = []                      # every process we started, stopped at exit


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_range(size=64):
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


def request(method, url, token=None, body=None, host=None, timeout=30):
    req = urllib.request.Request(url, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    if host:
        req.add_header("Host", host)
    try:
        with opener.open(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            sys.exit("bench: timed out waiting for %s" % what)
        time.sleep(interval)


def start(args, name, **kw):
    out = open(os.path.join(tmp, name + ".log"), "ab")
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                         start_new_session=True, **kw)
    procs.append(p)
    return p


def stop(p, timeout=15):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout)


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def hosts():
    return ["svc%d.env%d.localhost" % (y % N_PROJECTS, y) for y in range(N_HOSTS)]


def backend_of(y):
    return backend_ports[y % 2]


# ------------------------------------------------------------------ backends and nginx

NGINX_COMMON = """
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
master_process on;
"""


def nginx_backend(dir_):
    os.makedirs(dir_)
    listens = "\n".join("        listen 127.0.0.1:%d reuseport backlog=4096;" % p
                        for p in backend_ports)
    conf = NGINX_COMMON.format(dir=dir_) + """
worker_processes 2;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
{listens}
        location / {{ default_type text/plain; return 200 "{body}"; }}
    }}
    server {{
        listen 127.0.0.1:{status};
        location / {{ stub_status; }}
    }}
}}
""".format(dir=dir_, listens=listens, body=BODY.replace("\n", "\\n"), status=status_port)
    with open(os.path.join(dir_, "nginx.conf"), "w") as f:
        f.write(conf)
    return os.path.join(dir_, "nginx.conf")


def nginx_proxy(dir_, port, workers):
    os.makedirs(dir_)
    servers = []
    for y, h in enumerate(hosts()):
        servers.append("""    server {
        listen 127.0.0.1:%d;
        server_name %s;
        location / {
            proxy_pass http://backend%d;
        }
    }""" % (port, h, y % 2))
    upstreams = "\n".join("""    upstream backend%d {
        server 127.0.0.1:%d;
        keepalive %d;
        keepalive_requests 1000000;
    }""" % (i, p, KEEPALIVE) for i, p in enumerate(backend_ports))
    conf = NGINX_COMMON.format(dir=dir_) + """
worker_processes {workers};
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    server_names_hash_max_size 8192;
    server_names_hash_bucket_size 128;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Host $http_host;
    proxy_set_header Forwarded "for=$remote_addr;host=$http_host;proto=$scheme";
{upstreams}
    server {{
        listen 127.0.0.1:{port} default_server;
        location / {{ return 404; }}
    }}
{servers}
}}
""".format(dir=dir_, workers=workers, port=port, upstreams=upstreams,
           servers="\n".join(servers))
    with open(os.path.join(dir_, "nginx.conf"), "w") as f:
        f.write(conf)
    return os.path.join(dir_, "nginx.conf")


def run_nginx(conf, name, port):
    d = os.path.dirname(conf)
    p = start([NGINX, "-e", os.path.join(d, "error.log"), "-c", conf, "-p", d], name)
    wait_for(lambda: p.poll() is not None or accepts(port), 30, "%s on %d" % (name, port))
    if p.poll() is not None:
        sys.exit("bench: %s exited with %d, see %s/%s.log" % (name, p.returncode, tmp, name))
    return p


# ------------------------------------------------------------------ eph

TEMPLATE = """version: 1
params:
  backend_port: {{}}
services:
  svc{x}:
    upstream: "http://127.0.0.1:${{params.backend_port}}"
"""


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=GIT_ENV)


def make_projects():
    repos = os.path.join(tmp, "repos")
    for x in range(N_PROJECTS):
        repo = os.path.join(repos, "p%d" % x)
        os.makedirs(repo)
        with open(os.path.join(repo, "ephemera.yaml"), "w") as f:
            f.write(TEMPLATE.format(x=x))
        git("init", "-q", "-b", "main", cwd=repo)
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", "bench", cwd=repo)
    return repos


def run_eph(workers, n):
    args = [EPH, "serve", "--data-dir", eph_data, "--listen", "127.0.0.1:%d" % eph_port,
            "--port-range", "%d-%d" % port_range, "--config", eph_config,
            "--log-level", "warn", "--upstream-keepalive", str(KEEPALIVE)]
    if workers:
        args += ["--gateway-workers", str(workers)]
    env = {k: v for k, v in GIT_ENV.items() if not k.startswith("EPH_")}
    env["EPH_CONFIG"] = os.path.join(tmp, "client.json")
    p = start(args, "eph-%d" % n, cwd=tmp, env=env)

    def healthy():
        if p.poll() is not None:
            sys.exit("bench: eph serve exited with %d, see %s/eph-%d.log" % (p.returncode, tmp, n))
        return request("GET", "http://127.0.0.1:%d/api/v1/healthz" % eph_port, timeout=2)[0] == 200
    wait_for(healthy, 60, "eph serve")
    return p


def eph_token():
    def token():
        try:
            with open(os.path.join(tmp, "client.json")) as f:
                return json.load(f).get("token")
        except (OSError, ValueError):
            return None
    return wait_for(token, 10, "the admin token")


def create_envs(token, repos):
    base = "http://127.0.0.1:%d/api/v1/" % eph_port
    for x in range(N_PROJECTS):
        st, body = request("POST", base + "projects", token,
                           {"name": "p%d" % x, "repo": os.path.join(repos, "p%d" % x)})
        if st not in (200, 201):
            sys.exit("bench: project p%d: %d %s" % (x, st, body[:300]))

    def create(y):
        body = {"project": "p%d" % (y % N_PROJECTS), "name": "env%d" % y,
                "params": {"backend_port": str(backend_of(y))}}
        for _ in range(5):
            st, out = request("POST", base + "envs", token, body, timeout=120)
            if st in (200, 201, 202):
                return None
            time.sleep(0.2)
        return "env%d: %d %s" % (y, st, out[:300])

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        errors = [e for e in pool.map(create, range(N_HOSTS)) if e]
    if errors:
        sys.exit("bench: creating environments failed:\n" + "\n".join(errors[:10]))
    log("%d environments created in %.1f s" % (N_HOSTS, time.monotonic() - started))


def wait_routed():
    """Every host answers 200 through eph (checked on a sample, then all once)."""
    def all_ok():
        for h in hosts():
            st, _ = request("GET", "http://127.0.0.1:%d/" % eph_port, host="%s:%d" % (h, eph_port),
                            timeout=5)
            if st != 200:
                return False
        return True
    wait_for(all_ok, 600, "every environment to be routed", 0.5)


# ------------------------------------------------------------------ wrk

WRK_LUA = r"""
local hosts, reqs, counter = {}, {}, 0
for line in io.lines(os.getenv("BENCH_HOSTS_FILE")) do hosts[#hosts + 1] = line end

function setup(thread)
   counter = counter + 1
   thread:set("seed", counter)
end

function init(args)
   math.randomseed(os.time() * 1000 + (seed or 0))
   for i, h in ipairs(hosts) do
      reqs[i] = wrk.format("GET", "/", {["Host"] = h})
   end
end

function request()
   return reqs[math.random(#reqs)]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
      e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def wrk(port, conns, pids_of):
    """Runs wrk against port; returns a dict of results with the peak RSS of pids_of()."""
    peak = [0]
    stop_ev = threading.Event()

    def sample():
        while not stop_ev.is_set():
            peak[0] = max(peak[0], rss_kib(pids_of()))
            stop_ev.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    accepts_before = backend_accepts()
    t.start()
    env = dict(GIT_ENV, BENCH_HOSTS_FILE=hosts_file, PORT=str(port))
    p = subprocess.run(["wrk", "-t%d" % min(WRK_THREADS, conns), "-c%d" % conns,
                        "-d%s" % DURATION, "--timeout", "10s", "-s", lua_file,
                        "http://127.0.0.1:%d/" % port],
                       capture_output=True, text=True, env=env, timeout=600)
    stop_ev.set()
    t.join()
    m = re.search(r"RESULT (.*)", p.stdout)
    if p.returncode != 0 or not m:
        sys.exit("bench: wrk failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["upstream_conns"] = backend_accepts() - accepts_before - 1
    r["rss_mib"] = peak[0] / 1024
    return r


def median_of(results):
    """Each field's median over several runs (upper median for an even count);
    errors are the worst run's."""
    out = {k: sorted(r[k] for r in results)[len(results) // 2] for k in results[0]}
    for k in ("non2xx", "errors"):
        out[k] = max(r[k] for r in results)
    return out


def backend_accepts():
    """Connections the backends have accepted so far (stub_status; this request
    is one of them)."""
    st, body = request("GET", "http://127.0.0.1:%d/" % status_port)
    if st != 200:
        sys.exit("bench: backend stub_status answered %d" % st)
    return int(body.decode().splitlines()[2].split()[0])


def row(label, conns, name, r):
    return "%-8s %5d  %-5s %10.0f %9.2f %9.2f %8d %9.1f %9d" % (
        label, conns, name, r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
        r["non2xx"] + r["errors"], r["rss_mib"], r["upstream_conns"])


def ratio_row(label, conns, e, n):
    return "%-8s %5d  %-5s %9.2fx %8.2fx %8.2fx %8s %8.2fx" % (
        label, conns, "ratio", e["rps"] / n["rps"], e["p50_us"] / max(1, n["p50_us"]),
        e["p99_us"] / max(1, n["p99_us"]), "", e["rss_mib"] / max(0.1, n["rss_mib"]))


# ------------------------------------------------------------------ main

tmp = tempfile.mkdtemp(prefix="eph-bench-gw-")
try:
    backend_ports = [free_port(), free_port()]
    status_port = free_port()
    nginx_port, eph_port = free_port(), free_port()
    port_range = free_range()
    eph_data = os.path.join(tmp, "data")
    hosts_file = os.path.join(tmp, "hosts.txt")
    lua_file = os.path.join(tmp, "random-host.lua")
    with open(hosts_file, "w") as f:
        f.write("\n".join(hosts()) + "\n")
    with open(lua_file, "w") as f:
        f.write(WRK_LUA)
    repos = make_projects()
    eph_config = os.path.join(tmp, "server.yaml")
    with open(eph_config, "w") as f:
        f.write('allowed_repos: "%s/*"\n' % repos)

    backend = run_nginx(nginx_backend(os.path.join(tmp, "backend")), "backend",
                        backend_ports[0])
    wait_for(lambda: all(accepts(p) for p in backend_ports), 30, "the backends")
    st, body = request("GET", "http://127.0.0.1:%d/" % backend_ports[1])
    if st != 200 or body.decode() != BODY:
        sys.exit("bench: backend answered %d %r" % (st, body))

    eph = run_eph(1, 1)
    token = eph_token()
    create_envs(token, repos)
    wait_routed()

    lines = []
    cpu = os.cpu_count()
    today = datetime.date.today().isoformat()
    header = "%-8s %5s  %-5s %10s %9s %9s %8s %9s %9s" % (
        "workers", "conns", "proxy", "req/s", "p50 ms", "p99 ms", "errors", "peak MiB",
        "upstr.con")
    print("gateway bench %s: %d hosts, wrk -t%d -d%s keep-alive, random Host; %d cores; "
          "backends: nginx with 2 workers on 2 ports; upstream keepalive %d; median of %d "
          "alternating runs" % (today, N_HOSTS, WRK_THREADS, DURATION, cpu, KEEPALIVE, RUNS),
          flush=True)
    print(header, flush=True)

    for label, eph_workers, nginx_workers in (("1", 1, "1"), ("default", 0, "auto")):
        if eph_workers == 0:
            stop(eph)
            eph = run_eph(0, 2)
            wait_routed()
        nginx_dir = os.path.join(tmp, "nginx-%s" % label)
        ngx = run_nginx(nginx_proxy(nginx_dir, nginx_port, nginx_workers), "nginx-%s" % label,
                        nginx_port)
        st, body = request("GET", "http://127.0.0.1:%d/" % nginx_port,
                           host="svc3.env3.localhost:%d" % nginx_port)
        if st != 200:
            sys.exit("bench: nginx answered %d %r" % (st, body))
        for conns in CONNECTIONS:
            ns, es = [], []
            for _ in range(RUNS):       # alternating, so that both see the same noise
                ns.append(wrk(nginx_port, conns, lambda: [ngx.pid] + children(ngx.pid)))
                es.append(wrk(eph_port, conns, lambda: [eph.pid]))
            n, e = median_of(ns), median_of(es)
            print(row(label, conns, "nginx", n), flush=True)
            print(row(label, conns, "eph", e), flush=True)
            print(ratio_row(label, conns, e, n), flush=True)
        stop(ngx)
finally:
    for p in reversed(procs):
        try:
            stop(p)
        except Exception as e:   # noqa: BLE001 - keep stopping the others
            log("stopping pid %d: %s" % (p.pid, e))
    if os.environ.get("EPH_BENCH_KEEP"):
        log("kept %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
EOF
