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
#   eph     `eph serve --auth off` (release build), 1,000 environments created
#           through the API from 10 projects whose one service svcX is
#           `upstream:` to a backend port chosen by a param. No access log.
#           Sign-in is on by default; these rows measure the proxy alone, so
#           it is off here (wrk sends no credentials: with it on every request
#           would be a 401, which the "errors" column would show).
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
# Between the two, the "auth" block (one worker each; EPH_BENCH_AUTH=0 skips
# it and "auth-def") measures what sign-in costs; "auth-def", last, does
# the same with the default worker counts. With one worker the proxy's one
# thread is what limits the rate, so every microsecond sign-in adds shows
# in full; with the default count the proxy shares the cores with wrk and
# the backends, as it would share them with services in use. A second eph server, on its own data dir
# and port with sign-in on (the default) and the same 1,000 environments,
# runs beside the first (--auth off), so that the two are measured
# alternating, in the same minute, without a restart. A local user (role
# member) is made through the API, signs in once (POST /login), and each
# host's cookie eph_host is fetched through /auth/ticket -> /_eph/auth.
# wrk then sends each request with the Host's port and
# "Cookie: theme=dark; eph_host=<that host's cookie>" to three proxies, in
# turn, AUTH_RUNS times (EPH_BENCH_AUTH_RUNS, default 15) for
# AUTH_DURATION each (EPH_BENCH_AUTH_DURATION, default 3s): on this small a
# machine one 10 s run's rate moves by 10% with whatever else runs, and the
# effect measured here is smaller than that, so many short pairs (eph off
# and eph on one after the other, in turns which goes first) are compared
# instead of a few long runs:
#   nginx+ar  nginx (1 worker) with `auth_request /_auth` in every server
#             block: a sub-request, over keep-alive, to an "authcheck" server
#             block in the backend nginx that answers 204 when the Cookie
#             header has eph_host= and 401 else (the ingress-nginx +
#             oauth2-proxy pattern with the cheapest possible validator),
#             passing a user header back like oauth2-proxy does;
#   eph off   the --auth off server (the cookie is stripped, not checked);
#   eph on    the sign-in server: every request's cookie is verified
#             (HMAC, session lookup, visibility) before it is proxied.
# Ratio rows: eph on / eph off (the goal: >= 0.95x requests/s) and
# eph on / nginx+ar, each of the medians; then the ratio on/off of each
# pair, sorted, to show the spread. EPH_BENCH_PERF=DIR adds, after the
# measured runs, one
# run each of eph off and eph on at 256 connections under `perf record`
# (DIR/eph-off.data, DIR/eph-on.data); those runs are not in the table.
# EPH_BENCH_CALLGRIND=DIR adds, last, a count that does not move with the
# machine's load: each of eph off and eph on restarted under valgrind's
# callgrind, warmed up, then one 10 s wrk run at 64 connections over 50 of
# the hosts with only that run counted: the instructions the gateway
# workers run per request, and the ratio on/off (DIR/eph-LABEL-NAME.callgrind,
# for callgrind_annotate). Instructions are not time: cache misses and the
# kernel's share (most of a proxied request) are not in them.
# EPH_BENCH_AUTH_RUNS=0 skips the timed auth runs.
#
# wrk, the backends and the proxy share the machine's cores: on a small
# machine the numbers move with whatever else runs; compare within one run.
#
#   bench/gateway.sh                           release build (make release), 10 s runs
#   EPH_BENCH_DURATION=30s EPH_BENCH_RUNS=1 bench/gateway.sh
#   EPH_BENCH_KEEPALIVE=64 bench/gateway.sh    (both keep at most 64 idle)
#   EPH_BENCH_AUTH=0 bench/gateway.sh          (without the auth block)
#   EPH_BENCH_BLOCKS=auth bench/gateway.sh     (only these of 1,auth,default,auth-def)
#   EPH_BENCH_PERF=/tmp/prof bench/gateway.sh  (profiles of eph off and on)
#   EPH_BENCH_BLOCKS=auth EPH_BENCH_AUTH_RUNS=0 EPH_BENCH_CALLGRIND=/tmp/cg bench/gateway.sh
#                                              (instructions per request only)
#   EPH_BIN=build/debug/eph bench/gateway.sh   (skips the build; ASan is slow)
#
# Everything listens on 127.0.0.1 ports picked free; every process started
# here is stopped by its pid at the end, and the temp dir removed.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for tool in nginx wrk; do
    if ! command -v "$tool" >/dev/null && [[ ! -x /usr/sbin/$tool ]]; then
        echo "bench: $tool is missing (scripts/install-deps.sh installs it)" >&2
        exit 1
    fi
done

bench_use_eph
export EPH_BENCH_DURATION=${EPH_BENCH_DURATION:-10s}
export EPH_BENCH_HOSTS=${EPH_BENCH_HOSTS:-1000}
export EPH_BENCH_KEEPALIVE=${EPH_BENCH_KEEPALIVE:-256}
export EPH_BENCH_RUNS=${EPH_BENCH_RUNS:-3}
export EPH_BENCH_AUTH_RUNS=${EPH_BENCH_AUTH_RUNS:-15}
export EPH_BENCH_AUTH_DURATION=${EPH_BENCH_AUTH_DURATION:-3s}
export EPH_BENCH_AUTH=${EPH_BENCH_AUTH:-1}
export EPH_BENCH_BLOCKS=${EPH_BENCH_BLOCKS:-1,auth,default,auth-def}
export EPH_BENCH_PERF=${EPH_BENCH_PERF:-}
export EPH_BENCH_CALLGRIND=${EPH_BENCH_CALLGRIND:-}

exec /usr/bin/python3 - <<'EOF'
import concurrent.futures, datetime, functools, json, os, re, secrets, shutil, signal, socket
import subprocess, sys, tempfile, threading, time
import urllib.parse

sys.path.insert(0, "bench")
import benchlib  # noqa: E402
from benchlib import GIT_ENV, free_port, raw_request, wait_for  # noqa: E402

EPH = os.environ["EPH_BIN"]
DURATION = os.environ["EPH_BENCH_DURATION"]
N_HOSTS = int(os.environ["EPH_BENCH_HOSTS"])
N_PROJECTS = 10                 # service svcX lives in project pX
KEEPALIVE = int(os.environ["EPH_BENCH_KEEPALIVE"])
RUNS = int(os.environ["EPH_BENCH_RUNS"])
AUTH_RUNS = int(os.environ["EPH_BENCH_AUTH_RUNS"])
AUTH_DURATION = os.environ["EPH_BENCH_AUTH_DURATION"]
AUTH = os.environ["EPH_BENCH_AUTH"] not in ("0", "", "no", "off")
PERF_DIR = os.environ["EPH_BENCH_PERF"]
CALLGRIND_DIR = os.environ["EPH_BENCH_CALLGRIND"]
CALLGRIND_CONNS = 64
CALLGRIND_DURATION = "10s"
CALLGRIND_HOSTS = 50            # of the 1,000: see instructions_per_request
BLOCKS = set(os.environ["EPH_BENCH_BLOCKS"].split(","))
CONNECTIONS = (64, 256)
WRK_THREADS = 2
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BODY = "hello from backend\n"
APP_COOKIE = "theme=dark"       # a cookie of the application's own, passed by both
BENCH_USER = "bench"
procs = []                      # every process we started, stopped at exit


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


# 1,000 environments keep a server busy: requests here wait up to 30 s by default.
request = functools.partial(benchlib.request, timeout=30)


def start(args, name, **kw):
    out = open(os.path.join(tmp, name + ".log"), "ab")
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                         start_new_session=True, **kw)
    procs.append(p)
    return p


def stop(p, timeout=15, sig=signal.SIGTERM):
    if p.poll() is None:
        p.send_signal(sig)
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


def cpu_seconds(pids):
    """User + system CPU time the processes have used so far."""
    ticks = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])     # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


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
    """The two backends, stub_status, and the sub-request endpoint of nginx's
    auth_request: 204 (with a user header, as oauth2-proxy sends) when the
    request carries a cookie eph_host, else 401. The cheapest validator
    there is: it looks at the header, it checks nothing."""
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
        listen 127.0.0.1:{auth} reuseport backlog=4096;
        location / {{
            if ($http_cookie ~* "eph_host=") {{
                add_header X-Auth-Request-User {user};
                return 204;
            }}
            return 401;
        }}
    }}
    server {{
        listen 127.0.0.1:{status};
        location / {{ stub_status; }}
    }}
}}
""".format(dir=dir_, listens=listens, body=BODY.replace("\n", "\\n"), status=status_port,
           auth=authcheck_port, user=BENCH_USER)
    with open(os.path.join(dir_, "nginx.conf"), "w") as f:
        f.write(conf)
    return os.path.join(dir_, "nginx.conf")


# What every proxied request gets, in the http block; a location that sets
# any proxy_set_header of its own inherits none of these, so the auth
# config repeats them where it adds one.
NGINX_PROXY_HEADERS = """proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
            proxy_set_header Forwarded "for=$remote_addr;host=$http_host;proto=$scheme";"""


def nginx_proxy(dir_, port, workers, auth=False):
    """The proxy: a server block per host. With auth, each one also asks
    the authcheck upstream about every request first (auth_request, as
    ingress-nginx does with oauth2-proxy) and passes the user it names on,
    as eph passes X-Ephemera-User."""
    os.makedirs(dir_)
    servers = []
    for y, h in enumerate(hosts()):
        if not auth:
            servers.append("""    server {
        listen 127.0.0.1:%d;
        server_name %s;
        location / {
            proxy_pass http://backend%d;
        }
    }""" % (port, h, y % 2))
            continue
        servers.append("""    server {
        listen 127.0.0.1:%d;
        server_name %s;
        location / {
            auth_request /_auth;
            auth_request_set $auth_user $upstream_http_x_auth_request_user;
            %s
            proxy_set_header X-Auth-Request-User $auth_user;
            proxy_pass http://backend%d;
        }
        location = /_auth {
            internal;
            proxy_pass http://authcheck;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header Cookie $http_cookie;
        }
    }""" % (port, h, NGINX_PROXY_HEADERS, y % 2))
    upstreams = "\n".join("""    upstream backend%d {
        server 127.0.0.1:%d;
        keepalive %d;
        keepalive_requests 1000000;
    }""" % (i, p, KEEPALIVE) for i, p in enumerate(backend_ports))
    if auth:
        upstreams += """
    upstream authcheck {
        server 127.0.0.1:%d;
        keepalive %d;
        keepalive_requests 1000000;
    }""" % (authcheck_port, KEEPALIVE)
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
    {headers}
{upstreams}
    server {{
        listen 127.0.0.1:{port} default_server;
        location / {{ return 404; }}
    }}
{servers}
}}
""".format(dir=dir_, workers=workers, port=port, upstreams=upstreams,
           headers=NGINX_PROXY_HEADERS.replace("\n            ", "\n    "),
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


def make_projects():
    repos = os.path.join(tmp, "repos")
    for x in range(N_PROJECTS):
        benchlib.git_repo(os.path.join(repos, "p%d" % x), {"ephemera.yaml": TEMPLATE.format(x=x)},
                          "bench")
    return repos


class Eph:
    """One eph server: its own data dir, port, port range and client config."""

    def __init__(self, name, auth, avoid=()):
        self.name, self.auth = name, auth
        self.data = os.path.join(tmp, "data-" + name)
        self.port = free_port()
        self.range = benchlib.free_range(64, avoid)
        self.client = os.path.join(tmp, "client-%s.json" % name)
        self.proc = None
        self.token = None
        self.workers = None     # --gateway-workers of the running server (0: the default)

    def run(self, workers, n, wrapper=()):
        args = list(wrapper) + [EPH, "serve", "--data-dir", self.data, "--listen", "127.0.0.1:%d" % self.port,
                "--port-range", "%d-%d" % self.range, "--config", eph_config,
                "--log-level", "warn", "--upstream-keepalive", str(KEEPALIVE),
                "--auth", "on" if self.auth else "off"]
        if workers:
            args += ["--gateway-workers", str(workers)]
        self.workers = workers
        env = {k: v for k, v in GIT_ENV.items() if not k.startswith("EPH_")}
        env["EPH_CONFIG"] = self.client
        log_name = "eph-%s-%d" % (self.name, n)
        p = self.proc = start(args, log_name, cwd=tmp, env=env)

        def healthy():
            if p.poll() is not None:
                sys.exit("bench: eph serve exited with %d, see %s/%s.log" %
                         (p.returncode, tmp, log_name))
            return request("GET", "http://127.0.0.1:%d/api/v1/healthz" % self.port,
                           timeout=2)[0] == 200
        wait_for(healthy, 300 if wrapper else 60, "eph serve (%s)" % self.name)
        if self.token is None:
            self.token = self.read_token()
        return p

    def read_token(self):
        def token():
            try:
                with open(self.client) as f:
                    return json.load(f).get("token")
            except (OSError, ValueError):
                return None
        return wait_for(token, 10, "the admin token of eph %s" % self.name)

    def api(self, method, path, body=None, timeout=30):
        return request(method, "http://127.0.0.1:%d/api/v1/%s" % (self.port, path), self.token,
                       body, timeout=timeout)

    def create_envs(self, repos):
        for x in range(N_PROJECTS):
            st, body = self.api("POST", "projects",
                                {"name": "p%d" % x, "repo": os.path.join(repos, "p%d" % x)})
            if st not in (200, 201):
                sys.exit("bench: project p%d: %d %s" % (x, st, body[:300]))

        def create(y):
            body = {"project": "p%d" % (y % N_PROJECTS), "name": "env%d" % y,
                    "params": {"backend_port": str(backend_of(y))}}
            for _ in range(5):
                st, out = self.api("POST", "envs", body, timeout=120)
                if st in (200, 201, 202):
                    return None
                time.sleep(0.2)
            return "env%d: %d %s" % (y, st, out[:300])

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            errors = [e for e in pool.map(create, range(N_HOSTS)) if e]
        if errors:
            sys.exit("bench: creating environments failed:\n" + "\n".join(errors[:10]))
        log("eph %s: %d environments created in %.1f s" %
            (self.name, N_HOSTS, time.monotonic() - started))

    def wait_routed(self, cookies=None):
        """Every host answers 200 through this eph (with its cookie, if given)."""
        def ok(y, h):
            cookie = "%s; eph_host=%s" % (APP_COOKIE, cookies[y]) if cookies else None
            st, _ = request("GET", "http://127.0.0.1:%d/" % self.port,
                            host="%s:%d" % (h, self.port), timeout=5, cookie=cookie)
            return st

        def all_ok():
            for y, h in enumerate(hosts()):
                if ok(y, h) != 200:
                    return False
            return True
        if not all_ok():
            wait_for(all_ok, 600, "every environment of eph %s to be routed" % self.name, 0.5)

    def host_cookies(self):
        """A member signs in once; then each host's cookie eph_host, as a
        browser gets it: /auth/ticket on the control host, /_eph/auth on the
        service host. Returns the cookies in the order of hosts()."""
        password = secrets.token_urlsafe(18)
        st, body = self.api("POST", "users",
                            {"name": BENCH_USER, "role": "member", "password": password})
        if st != 201:
            sys.exit("bench: POST /api/v1/users: %d %s" % (st, body[:300]))
        control = "localhost:%d" % self.port
        origin = "http://" + control
        form = urllib.parse.urlencode({"user": BENCH_USER, "password": password, "rd": "/"})
        st, msg, body = raw_request(self.port, "POST", "/login", {
            "Host": control, "Origin": origin,
            "Content-Type": "application/x-www-form-urlencoded"}, form)
        session = None
        for c in (msg.get_all("Set-Cookie") or []) if msg else []:
            m = re.match(r"eph_session=([^;]*)", c)
            if m:
                session = m.group(1)
        if st not in (302, 303) or not session:
            sys.exit("bench: POST /login: %d %s" % (st, body[:300]))

        def one(h):
            service = "%s:%d" % (h, self.port)
            rd = urllib.parse.quote("http://%s/" % service, safe="")
            st, msg, body = raw_request(self.port, "GET", "/auth/ticket?rd=" + rd, {
                "Host": control, "Cookie": "eph_session=" + session})
            loc = msg.get("Location", "") if msg else ""
            u = urllib.parse.urlsplit(loc)
            if st != 303 or u.netloc != service or u.path != "/_eph/auth":
                return None, "%s: /auth/ticket: %d %r %s" % (h, st, loc, body[:200])
            st, msg, body = raw_request(self.port, "GET", "/_eph/auth?" + u.query,
                                        {"Host": service})
            for c in (msg.get_all("Set-Cookie") or []) if msg else []:
                m = re.match(r"eph_host=([^;]*)", c)
                if m and st == 302:
                    return m.group(1), None
            return None, "%s: /_eph/auth: %d %s" % (h, st, body[:200])

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            got = list(pool.map(one, hosts()))
        errors = [e for _, e in got if e]
        if errors:
            sys.exit("bench: getting host cookies failed (%d of %d):\n%s" %
                     (len(errors), N_HOSTS, "\n".join(errors[:10])))
        log("eph %s: %d host cookies in %.1f s" % (self.name, N_HOSTS,
                                                  time.monotonic() - started))
        return [c for c, _ in got]


# ------------------------------------------------------------------ wrk

# Each line of the hosts file: a host, then optionally a tab and its cookie
# eph_host; with BENCH_HOST_PORT the Host header names the port too (the
# host cookie is for host:port).
WRK_LUA = r"""
local hosts, cookies, reqs, counter = {}, {}, {}, 0
for line in io.lines(os.getenv("BENCH_HOSTS_FILE")) do
   local h, c = line:match("^([^\t]+)\t(.*)$")
   hosts[#hosts + 1] = h or line
   cookies[#hosts] = c
end
local port = os.getenv("BENCH_HOST_PORT")
local app_cookie = os.getenv("BENCH_APP_COOKIE")

function setup(thread)
   counter = counter + 1
   thread:set("seed", counter)
end

function init(args)
   math.randomseed(os.time() * 1000 + (seed or 0))
   for i, h in ipairs(hosts) do
      local headers = {["Host"] = port and (h .. ":" .. port) or h}
      if cookies[i] then
         headers["Cookie"] = app_cookie .. "; eph_host=" .. cookies[i]
      end
      reqs[i] = wrk.format("GET", "/", headers)
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


def wrk(port, conns, pids_of, hosts_path=None, host_port=False, perf=None, duration=None):
    """Runs wrk against port; returns a dict of results with the peak RSS of
    pids_of(). host_port: the Host header carries the port. perf: a file to
    `perf record --call-graph dwarf` pids_of()[0] into during the run."""
    peak = [0]
    stop_ev = threading.Event()

    def sample():
        while not stop_ev.is_set():
            peak[0] = max(peak[0], rss_kib(pids_of()))
            stop_ev.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    accepts_before = backend_accepts()
    cpu_before = cpu_seconds(pids_of())
    t.start()
    env = dict(GIT_ENV, BENCH_HOSTS_FILE=hosts_path or hosts_file, PORT=str(port),
               BENCH_APP_COOKIE=APP_COOKIE)
    if host_port:
        env["BENCH_HOST_PORT"] = str(port)
    recorder = None
    if perf:
        recorder = subprocess.Popen(["perf", "record", "-q", "--call-graph", "dwarf",
                                     "-F", "499", "-o", perf,
                                     "-p", str(pids_of()[0])],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=open(perf + ".log", "wb"), start_new_session=True)
        procs.append(recorder)
        time.sleep(0.5)
    p = subprocess.run(["wrk", "-t%d" % min(WRK_THREADS, conns), "-c%d" % conns,
                        "-d%s" % (duration or DURATION), "--timeout", "10s", "-s", lua_file,
                        "http://127.0.0.1:%d/" % port],
                       capture_output=True, text=True, env=env, timeout=600)
    if recorder:
        stop(recorder, 60, signal.SIGINT)
    cpu = cpu_seconds(pids_of()) - cpu_before
    stop_ev.set()
    t.join()
    m = re.search(r"RESULT (.*)", p.stdout)
    if p.returncode != 0 or not m:
        sys.exit("bench: wrk failed (%d):\n%s\n%s" % (p.returncode, p.stdout, p.stderr))
    r = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["upstream_conns"] = backend_accepts() - accepts_before - 1
    r["rss_mib"] = peak[0] / 1024
    r["cpu_us"] = cpu * 1e6 / max(1, r["requests"])
    return r


def instructions_per_request(srv, label):
    """Restarts srv under callgrind and returns its gateway workers'
    instructions per request over one wrk run of CALLGRIND_CONNS connections
    with the auth hosts' cookies. Counted only inside the workers' threads
    (worker_main: not the control loop, whose timers would weigh more per
    request the slower valgrind makes eph) and only while wrk runs, after a
    warm-up that fills the memo and the pools; the count does not move with
    the machine's load. wrk picks from the first CALLGRIND_HOSTS hosts only:
    valgrind serves some 1,000 requests/s, and with all 1,000 hosts each
    memo entry would be older than its session's recheck interval (1 s) at
    nearly every use, which at full speed is once in some 60 uses. The
    server is left stopped: the next block starts it again as usual."""
    os.makedirs(CALLGRIND_DIR, exist_ok=True)
    out = os.path.join(os.path.abspath(CALLGRIND_DIR), "eph-%s-%s.callgrind" % (label, srv.name))
    workers = srv.workers
    stop(srv.proc)
    eph_runs[srv] += 1
    srv.run(workers, eph_runs[srv], wrapper=[
        "valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=worker_main",
        "--callgrind-out-file=" + out])
    srv.wait_routed(cookies if srv.auth else None)
    pid = srv.proc.pid

    def control(*args):
        subprocess.run(["callgrind_control"] + list(args) + [str(pid)],
                       check=True, stdout=subprocess.DEVNULL, timeout=120)
    few_hosts = os.path.join(tmp, "hosts-callgrind.txt")
    with open(auth_hosts_file) as f, open(few_hosts, "w") as g:
        g.writelines(f.readlines()[:CALLGRIND_HOSTS])
    wrk(srv.port, CALLGRIND_CONNS, lambda: [pid], few_hosts, True, duration="5s")
    control("--zero")
    r = wrk(srv.port, CALLGRIND_CONNS, lambda: [pid], few_hosts, True,
            duration=CALLGRIND_DURATION)
    control("--instr=off")
    stop(srv.proc, 120)
    srv.workers = None
    # "totals:", not "summary:": zeroing inside worker_main leaves the
    # summary's inclusive count below zero.
    instructions = None
    with open(out) as f:
        for line in f:
            if line.startswith("totals:"):
                instructions = int(line.split()[1])
    if instructions is None or r["requests"] == 0 or r["non2xx"] + r["errors"]:
        sys.exit("bench: callgrind run of eph %s: no count in %s, or wrk saw errors: %r" %
                 (srv.name, out, r))
    log("callgrind run, eph %s: %d requests, %s" % (srv.name, r["requests"], out))
    return instructions / r["requests"]


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
    return "%-8s %5d  %-8s %10.0f %9.2f %9.2f %8d %9.1f %9d %9.1f" % (
        label, conns, name, r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
        r["non2xx"] + r["errors"], r["rss_mib"], r["upstream_conns"], r["cpu_us"])


def ratio_row(label, conns, e, n, name="ratio"):
    return "%-8s %5d  %-8s %9.2fx %8.2fx %8.2fx %8s %8.2fx %9s %8.2fx" % (
        label, conns, name, e["rps"] / n["rps"], e["p50_us"] / max(1, n["p50_us"]),
        e["p99_us"] / max(1, n["p99_us"]), "", e["rss_mib"] / max(0.1, n["rss_mib"]), "",
        e["cpu_us"] / max(0.001, n["cpu_us"]))


# ------------------------------------------------------------------ main

tmp = tempfile.mkdtemp(prefix="eph-bench-gw-")
if os.geteuid() == 0:
    # Run as root, eph serve starts services as run_as (nobody), which must
    # be able to enter the data dir: searchable, not listable.
    os.chmod(tmp, 0o711)
try:
    backend_ports = [free_port(), free_port()]
    status_port, authcheck_port = free_port(), free_port()
    nginx_port = free_port()
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
    wait_for(lambda: all(accepts(p) for p in backend_ports + [authcheck_port]), 30,
             "the backends")
    st, body = request("GET", "http://127.0.0.1:%d/" % backend_ports[1])
    if st != 200 or body.decode() != BODY:
        sys.exit("bench: backend answered %d %r" % (st, body))

    eph = Eph("off", auth=False)
    eph.run(1, 1)
    eph.create_envs(repos)
    eph.wait_routed()
    if AUTH:
        eph_on = Eph("on", auth=True, avoid=(eph.range,))
        eph_on.run(1, 1)
        eph_on.create_envs(repos)
        rss_before = rss_kib([eph_on.proc.pid])
        cookies = eph_on.host_cookies()
        log("eph on: RSS %.1f MiB before the sign-in, %.1f MiB after (argon2id: 19 MiB a hash)"
            % (rss_before / 1024, rss_kib([eph_on.proc.pid]) / 1024))
        eph_on.wait_routed(cookies)
        auth_hosts_file = os.path.join(tmp, "hosts-auth.txt")
        with open(auth_hosts_file, "w") as f:
            f.write("".join("%s\t%s\n" % hc for hc in zip(hosts(), cookies)))
        # Without the cookie, eph on refuses: the rows below measure the check.
        st, _ = request("GET", "http://127.0.0.1:%d/" % eph_on.port,
                        host="svc3.env3.localhost:%d" % eph_on.port, cookie=APP_COOKIE)
        if st != 401:
            sys.exit("bench: eph on answered %d to a request without its cookie" % st)

    lines = []
    cpu = os.cpu_count()
    today = datetime.date.today().isoformat()
    header = "%-8s %5s  %-8s %10s %9s %9s %8s %9s %9s %9s" % (
        "workers", "conns", "proxy", "req/s", "p50 ms", "p99 ms", "errors", "peak MiB",
        "upstr.con", "cpu us/rq")
    print("gateway bench %s: %d hosts, wrk -t%d -d%s keep-alive, random Host; %d cores; "
          "backends: nginx with 2 workers on 2 ports; upstream keepalive %d; median of %d "
          "alternating runs (auth block: %d runs of %s); eph --auth off except 'eph on'" %
          (today, N_HOSTS, WRK_THREADS, DURATION, cpu, KEEPALIVE, RUNS, AUTH_RUNS,
           AUTH_DURATION), flush=True)
    print(header, flush=True)

    def check_nginx(port, cookie=None):
        st, body = request("GET", "http://127.0.0.1:%d/" % port,
                           host="svc3.env3.localhost:%d" % port, cookie=cookie)
        if st != 200:
            sys.exit("bench: nginx answered %d %r" % (st, body))

    blocks = [("1", 1, "1")]
    if AUTH:
        blocks.append(("auth", 1, "1"))
    blocks.append(("default", 0, "auto"))
    if AUTH:
        blocks.append(("auth-def", 0, "auto"))
    blocks = [b for b in blocks if b[0] in BLOCKS]
    eph_runs = {eph: 1}
    if AUTH:
        eph_runs[eph_on] = 1
    for label, eph_workers, nginx_workers in blocks:
        is_auth = label.startswith("auth")
        # Each eph serve measured runs with this block's worker count.
        for srv in ([eph, eph_on] if is_auth else [eph]):
            if srv.workers != eph_workers:
                stop(srv.proc)
                eph_runs[srv] += 1
                srv.run(eph_workers, eph_runs[srv])
                srv.wait_routed(cookies if srv is not eph else None)
        nginx_dir = os.path.join(tmp, "nginx-%s" % label)
        ngx = run_nginx(nginx_proxy(nginx_dir, nginx_port, nginx_workers, auth=is_auth),
                        "nginx-%s" % label, nginx_port)
        ngx_pids = lambda: [ngx.pid] + children(ngx.pid)    # noqa: E731
        if not is_auth:
            check_nginx(nginx_port)
            for conns in CONNECTIONS:
                ns, es = [], []
                for _ in range(RUNS):       # alternating, so that both see the same noise
                    ns.append(wrk(nginx_port, conns, ngx_pids))
                    es.append(wrk(eph.port, conns, lambda: [eph.proc.pid]))
                n, e = median_of(ns), median_of(es)
                print(row(label, conns, "nginx", n), flush=True)
                print(row(label, conns, "eph", e), flush=True)
                print(ratio_row(label, conns, e, n), flush=True)
        else:
            st, _ = request("GET", "http://127.0.0.1:%d/" % nginx_port,
                            host="svc3.env3.localhost:%d" % nginx_port, cookie=APP_COOKIE)
            if st != 401:
                sys.exit("bench: nginx auth_request answered %d without the cookie" % st)
            check_nginx(nginx_port, "%s; eph_host=%s" % (APP_COOKIE, cookies[3]))
            # eph off is warm from the block before; the other two get as
            # much before they are measured (pools filled, pages touched).
            wrk(nginx_port, CONNECTIONS[-1], ngx_pids, auth_hosts_file, True, duration="3s")
            wrk(eph_on.port, CONNECTIONS[-1], lambda: [eph_on.proc.pid], auth_hosts_file, True,
                duration="3s")
            verdicts = []
            for conns in CONNECTIONS if AUTH_RUNS > 0 else ():
                ns, offs, ons = [], [], []
                for i in range(AUTH_RUNS):  # alternating, the three in turn
                    ns.append(wrk(nginx_port, conns, ngx_pids, auth_hosts_file, True,
                                  duration=AUTH_DURATION))
                    pair = [(offs, eph), (ons, eph_on)]
                    for results, srv in (pair if i % 2 == 0 else reversed(pair)):
                        results.append(wrk(srv.port, conns, lambda: [srv.proc.pid],
                                           auth_hosts_file, True, duration=AUTH_DURATION))
                n, off, on = median_of(ns), median_of(offs), median_of(ons)
                print(row(label, conns, "nginx+ar", n), flush=True)
                print(row(label, conns, "eph off", off), flush=True)
                print(row(label, conns, "eph on", on), flush=True)
                print(ratio_row(label, conns, on, off, "on/off"), flush=True)
                print(ratio_row(label, conns, on, n, "on/nginx"), flush=True)
                paired = sorted(b["rps"] / a["rps"] for a, b in zip(offs, ons))
                print("%-8s %5d  on/off of each run, sorted: %s" % (
                    label, conns, " ".join("%.3f" % x for x in paired)), flush=True)
                verdicts.append("%d conns %.3fx %s" % (
                    conns, on["rps"] / off["rps"],
                    "met" if on["rps"] >= 0.95 * off["rps"] else "NOT met"))
            if verdicts:
                print("%s goal, eph on / eph off >= 0.95x requests/s: %s" %
                      (label, "; ".join(verdicts)), flush=True)
            if PERF_DIR:
                os.makedirs(PERF_DIR, exist_ok=True)
                for srv in (eph, eph_on):
                    out = os.path.join(os.path.abspath(PERF_DIR),
                                       "eph-%s-%s.data" % (label, srv.name))
                    r = wrk(srv.port, CONNECTIONS[-1], lambda: [srv.proc.pid],
                            auth_hosts_file, True, perf=out)
                    log("perf run, eph %s: %.0f req/s (not in the table), %s" %
                        (srv.name, r["rps"], out))
            if CALLGRIND_DIR:
                counts = {srv.name: instructions_per_request(srv, label) for srv in (eph, eph_on)}
                for name, ir in counts.items():
                    print("%-8s %5d  eph %-4s %10.0f instructions/rq in the gateway workers "
                          "(callgrind, %d hosts)" % (label, CALLGRIND_CONNS, name, ir,
                                                      CALLGRIND_HOSTS), flush=True)
                print("%-8s %5d  on/off   %9.3fx instructions/rq, +%.0f" % (
                    label, CALLGRIND_CONNS, counts["on"] / counts["off"],
                    counts["on"] - counts["off"]), flush=True)
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
