"""test_14_sleep.py - environments that sleep when idle and wake on request
(docs/sleep.md), with the real `eph serve`:

- an idle environment sleeps after its sleep_after: its processes are gone,
  a data file written before survives, a request wakes it (event reason
  `request web`);
- 200 concurrent requests to a sleeping environment wake it once (one
  env.wake event) and every one of them is answered 200;
- a browser's navigation to a slow waker gets the "waking up" page, then the
  application;
- a service that never becomes healthy again: held requests get 503 at the
  server's wake_timeout (3 s here) with a message saying so, and the
  environment fails with the health check's reason;
- office hours, with the schedule clock of debug builds (EPH_TEST_CLOCK_FILE):
  it sleeps when they end, a request outside them gets 503 and does not wake
  it, it wakes when they begin, `keep` exempts, and a manual wake outside the
  hours is not undone;
- a memory limit kills a service that allocates past it (skipped, with the
  driver's note, where limits are not enforced);
- `eph sleep`, `eph wake`, `eph keep` and their access rules and quota; `eph
  ls` and `eph get` show idle time, what comes next, the last activity and
  the reasons of sleeps and wakes;
- the creation members sleep_after, schedule and limits, refused with their
  messages, and limits above the server's caps.

Reading an environment by name (`eph get`, GET /envs/NAME) is activity that
keeps it awake: the tests wait for sleep through the list (GET /envs), which
is not.
"""
import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

import conftest
from conftest import (Server, add_project, gw_request, make_repo, proc_alive, run_threads,
                      svc_host, wait_until)
from test_10_signin import json_error
from test_11_access import sign_up

READY_TIMEOUT_S = 60     # an environment to become ready (or wake) on a busy 2-core machine
SLEEP_TIMEOUT_S = 60     # an environment to fall asleep once it should
REQUEST_TIMEOUT_S = 60   # one request through the gateway, a wake included
WAKE_TIMEOUT = "3s"      # the server's wake_timeout where a wake is meant to fail
HEALTH_TIMEOUT = "10s"   # the template's: a start that never answers fails after it
CONCURRENT = 200
MADRID = ZoneInfo("Europe/Madrid")
OFFICE = "Mon-Fri 08:00-20:00"
OFFICE_TEXT = "Mon-Fri 08:00-20:00 Europe/Madrid"

# One web service, Python stdlib only. Each start sleeps START_DELAY seconds
# before it listens; with $EPH_DATA/broken present it never listens at all
# (alive, never healthy). It answers with its pid, keeps a value in
# $EPH_DATA, and allocates memory on request.
APP_PY = r'''
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DATA = os.environ["EPH_DATA"]
BROKEN = os.path.join(DATA, "broken")
VALUE = os.path.join(DATA, "value")

if os.path.exists(BROKEN):
    while True:
        time.sleep(60)
time.sleep(float(os.environ.get("START_DELAY") or 0))
held = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, body, ctype="text/plain"):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        if url.path == "/healthz":
            self.reply("ok")
        elif url.path == "/read":
            try:
                with open(VALUE) as f:
                    self.reply(f.read())
            except OSError:
                self.reply("")
        elif url.path == "/alloc":
            block = bytearray(int(q["mb"][0]) << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1
            held.append(block)
            self.reply("allocated")
        else:
            self.reply("<html><body>sleepy app, pid %d</body></html>" % os.getpid(),
                       "text/html")

    def do_POST(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        if url.path == "/write":
            with open(VALUE, "w") as f:
                f.write(q["v"][0])
        elif url.path == "/break":
            open(BROKEN, "w").close()
        self.reply("done")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512   # a crowd of waiting requests arrives at once


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''

TEMPLATE = """\
version: 1
params:
  start_delay: { default: "0" }
services:
  web:
    run: /usr/bin/python3 app.py
    env: { START_DELAY: "${params.start_delay}" }
    health: { http: /healthz, timeout: %s }
""" % HEALTH_TIMEOUT


# ------------------------------------------------------------------ the server


class SleepServer(Server):
    """conftest's Server with settings appended to its config file and, if
    given, EPH_TEST_CLOCK_FILE in its environment: Server.start() builds the
    environment with conftest.clean_environ(), which is swapped for the
    duration of the start (the CLI is started without it)."""

    def __init__(self, root, repos_dir, settings=(), clock_file=None):
        super().__init__(root, repos_dir)
        with open(self.config_file, "a") as f:
            for key, value in settings:
                f.write('%s: "%s"\n' % (key, value))
        self.clock_file = clock_file

    def start(self):
        if self.clock_file is None:
            return super().start()
        plain = conftest.clean_environ

        def with_clock(**extra):
            return plain(EPH_TEST_CLOCK_FILE=str(self.clock_file), **extra)
        conftest.clean_environ = with_clock
        try:
            return super().start()
        finally:
            conftest.clean_environ = plain


@pytest.fixture(scope="module")
def sleepy_repo(repos):
    return make_repo(repos.dir / "sleepy", {"ephemera.yaml": TEMPLATE, "app.py": APP_PY})


# The same service with limits in the template, the memory one above the
# caps of test_14_09's server.
BIG_TEMPLATE = TEMPLATE.replace("services:", "defaults:\n  limits: { memory: 2Gi, pids: 200 }\n"
                                "services:")


@pytest.fixture(scope="module")
def big_repo(repos):
    return make_repo(repos.dir / "sleepy-big", {"ephemera.yaml": BIG_TEMPLATE, "app.py": APP_PY})


@pytest.fixture
def start_server(tmp_path, repos, sleepy_repo):
    """start_server(settings=(), clock_file=None): a running SleepServer with
    the project `sleepy`; stopped and checked at teardown like `server`."""
    started = []

    def start(settings=(), clock_file=None):
        s = SleepServer(tmp_path, repos.dir, settings, clock_file)
        started.append(s)
        s.start()
        add_project(s, "sleepy", sleepy_repo)
        return s
    yield start
    for s in started:
        problems = s.shutdown()
        if problems:
            pytest.fail("teardown of eph serve in %s:\n%s\n--- server log tail\n%s"
                        % (tmp_path, "\n".join(problems), s.log_tail()), pytrace=False)


@pytest.fixture
def sleepy(start_server):
    return start_server()


# ------------------------------------------------------------------ helpers


def create(server, name, token=None, **body):
    """POST /api/v1/envs of project sleepy; the answer's JSON."""
    body = dict(body, project="sleepy", name=name)
    r = server.api("POST", "envs", token=token, json=body)
    assert r.status_code == 201, "create %s: %d %s" % (name, r.status_code, r.text)
    return r.json()


def listed(server, name):
    """The environment as GET /api/v1/envs lists it (which is no activity of it)."""
    for env in server.envs():
        if env["name"] == name:
            return env
    raise AssertionError("environment %s is not listed: %s"
                         % (name, [e["name"] for e in server.envs()]))


def wait_listed(server, name, phase, timeout=SLEEP_TIMEOUT_S):
    """Waits, through the list, until environment `name` is in `phase`."""
    seen = []

    def reached():
        env = listed(server, name)
        seen[:] = [env["phase"], env["desired"], env.get("reason")]
        if env["phase"] == "failed" and phase != "failed":
            raise AssertionError("environment %s failed: %s\n%s"
                                 % (name, env.get("reason"), server.log_tail()))
        return env if env["phase"] == phase else None
    try:
        return wait_until(reached, timeout, "environment %s to be %s" % (name, phase), 0.1)
    except AssertionError as e:
        raise AssertionError("%s; last seen (phase, desired, reason): %s" % (e, seen)) from e


def web(server, env, path="/", method="GET", **kw):
    """A request to the web service of `env` through the gateway, with the
    admin's token."""
    kw.setdefault("timeout", REQUEST_TIMEOUT_S)
    return gw_request(server, method, svc_host(server, "web", env), path, **kw)


def events_of(server, name, action=None):
    evs = server.events("env/" + name)
    return [e for e in evs if action is None or e["action"] == action]


def sleep_now(server, name):
    """`eph sleep NAME`, then waits until it is asleep."""
    r = server.eph("sleep", name)
    assert r.rc == 0, str(r)
    return wait_listed(server, name, "sleeping")


def pid_of(body):
    """The pid the app's front page names."""
    assert "sleepy app, pid " in body, body[:300]
    return int(body.split("pid ")[1].split("<")[0])


def near(got_ms, want_ms, slack_ms=120000):
    return abs(got_ms - want_ms) <= slack_ms


# ------------------------------------------------------------------ idle sleep and wake


def test_14_01_an_idle_environment_sleeps_without_processes_and_wakes_with_its_data(sleepy):
    s = sleepy
    # Kept awake while the test looks at it (2 s go by fast on a busy
    # machine), then let go: its idle time counts from the write.
    r = s.eph("up", "sleepy", "--name", "nap", "--sleep-after", "2s", "--keep", "--wait",
              timeout=READY_TIMEOUT_S + 60)
    assert r.rc == 0, str(r)
    env = s.get("nap")
    assert env["sleep"]["sleep_after"] == "2s", env["sleep"]
    assert env["sleep"]["sleep_after_s"] == 2, env["sleep"]
    assert env["sleep"]["keep"] is True, env["sleep"]
    pids = [svc["pid"] for svc in env["services"]]
    assert pids and all(p > 0 for p in pids), env["services"]
    r = web(s, "nap", "/write?v=written-before-sleep", method="POST")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    r = s.eph("keep", "nap", "--off")
    assert r.rc == 0 and "it sleeps after 2s idle" in r.out, str(r)

    wait_listed(s, "nap", "sleeping")
    for pid in pids:
        assert not proc_alive(pid), "pid %d of nap still runs while it sleeps" % pid
    assert s.processes("nap") == [], "processes of a sleeping environment: %s" % s.processes("nap")
    env = s.get("nap")
    assert env["desired"] == "asleep", env
    assert env["sleep"]["cause"] == "idle", env["sleep"]
    last = env["sleep"]["last_transition"]
    assert last["kind"] == "sleep" and last["at_ms"] > 0, last
    assert last["reason"] == "idle for 2s (last: request web)", last
    sleeps = events_of(s, "nap", "env.sleep")
    assert [(e["actor"], e["detail"]) for e in sleeps] == \
        [("system", "idle for 2s (last: request web)")], sleeps
    assert s.env_dir("nap") is not None, "the checkout went with the processes"

    # The next request wakes it and finds what was written before. (With a
    # sleep_after of 2 s it may well be asleep again soon: the events say it.)
    r = web(s, "nap", "/read")
    assert r.status_code == 200 and r.text == "written-before-sleep", (r.status_code, r.text)
    r = web(s, "nap", "/")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert pid_of(r.text) not in pids, "the same process answers after the wake: %s" % pids
    wakes = events_of(s, "nap", "env.wake")
    assert [(e["actor"], e["detail"]) for e in wakes] == [("system", "request web")], wakes


def test_14_02_200_concurrent_requests_wake_a_sleeping_environment_once(sleepy):
    s = sleepy
    create(s, "crowd")
    s.wait_phase("crowd", "ready", READY_TIMEOUT_S)
    sleep_now(s, "crowd")
    assert events_of(s, "crowd", "env.wake") == []

    def one(i):
        try:
            r = web(s, "crowd", "/?n=%d" % i)
        except Exception as e:   # noqa: BLE001 - counted below with its kind
            return ("error", repr(e)[:200])
        return (r.status_code, r.text)
    started = time.monotonic()
    results = run_threads(one, list(range(CONCURRENT)))
    took = time.monotonic() - started
    statuses = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    assert statuses == {200: CONCURRENT}, "answers by status: %s (first: %s); %.1fs" % (
        statuses, [r for r in results if r[0] != 200][:3], took)
    pids = {pid_of(body) for _, body in results}
    assert len(pids) == 1, "answered by several processes: %s" % pids
    wakes = events_of(s, "crowd", "env.wake")
    assert len(wakes) == 1, "one wake expected, got: %s" % wakes
    assert wakes[0]["detail"] == "request web", wakes[0]
    assert listed(s, "crowd")["phase"] == "ready"


def test_14_03_a_browser_gets_the_waking_page_then_the_application(sleepy):
    s = sleepy
    create(s, "slow", params={"start_delay": "2"})
    s.wait_phase("slow", "ready", READY_TIMEOUT_S)
    sleep_now(s, "slow")

    html = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    r = web(s, "slow", "/", headers=html)
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert r.headers.get("Retry-After") == "1", r.headers
    assert "waking up slow" in r.text, r.text[:500]
    assert 'http-equiv="refresh"' in r.text, r.text[:500]
    pages = 1

    # The page reloads itself every second, as a browser would.
    def app():
        nonlocal pages
        got = web(s, "slow", "/", headers=html)
        if got.status_code == 503 and "waking up slow" in got.text:
            pages += 1
            return None
        assert got.status_code == 200, (got.status_code, got.text[:300])
        return got
    r = wait_until(app, READY_TIMEOUT_S, "the application after the waking page", 1.0)
    assert "sleepy app" in r.text, r.text[:300]
    assert len(events_of(s, "slow", "env.wake")) == 1, events_of(s, "slow")


def test_14_04_a_wake_that_never_gets_healthy_answers_503_and_the_environment_fails(
        start_server):
    s = start_server(settings=(("wake_timeout", WAKE_TIMEOUT),))
    create(s, "stuck")
    s.wait_phase("stuck", "ready", READY_TIMEOUT_S)
    r = web(s, "stuck", "/break", method="POST")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    sleep_now(s, "stuck")

    started = time.monotonic()
    r = web(s, "stuck", "/")
    took = time.monotonic() - started
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert "stuck did not wake up within 3s" in r.text, r.text[:500]
    assert r.headers.get("Retry-After"), r.headers
    assert 2.5 <= took <= 30, "answered after %.1fs, wake_timeout is %s" % (took, WAKE_TIMEOUT)

    env = wait_listed(s, "stuck", "failed", READY_TIMEOUT_S)
    assert env["reason"] and "did not become healthy within %s" % HEALTH_TIMEOUT in \
        json.dumps(env), env
    r = s.eph("get", "stuck")
    assert r.rc == 0 and "failed" in r.out and "did not become healthy" in r.out, str(r)


# ------------------------------------------------------------------ office hours


def madrid_ms(*when):
    """Wall ms of a Madrid local time (year, month, day, hour, minute[, second])."""
    return int(datetime(*when, tzinfo=MADRID).timestamp() * 1000)


# 2030-01-09 is a Wednesday; Madrid is UTC+1 in January.
WED_NOON = madrid_ms(2030, 1, 9, 12, 0)
WED_EVENING = madrid_ms(2030, 1, 9, 20, 30)
THU_MORNING = madrid_ms(2030, 1, 10, 8, 0, 30)
THU_NIGHT = madrid_ms(2030, 1, 10, 21, 0)
THU_8AM = madrid_ms(2030, 1, 10, 8, 0)


def test_14_05_office_hours_put_to_sleep_refuse_requests_wake_and_keep_exempts(
        start_server, tmp_path):
    clock = tmp_path / "clock"
    clock.write_text(str(WED_NOON))
    s = start_server(clock_file=clock)

    def set_clock(ms):
        clock.write_text(str(ms))

    schedule = {"awake": OFFICE, "timezone": "Europe/Madrid"}
    create(s, "office", schedule=schedule, sleep_after="never")
    create(s, "kept", schedule=schedule, sleep_after="never", keep=True)
    s.wait_phase("office", "ready", READY_TIMEOUT_S)
    s.wait_phase("kept", "ready", READY_TIMEOUT_S)
    env = listed(s, "office")
    assert env["sleep"]["schedule"] == OFFICE_TEXT, env["sleep"]
    assert env["sleep"]["sleep_after"] == "never", env["sleep"]
    # 12:00 -> 20:00 on the schedule clock is 8 hours of wall clock from now.
    now_ms = time.time() * 1000
    assert near(env["sleep"]["next_sleep_at_ms"], now_ms + 8 * 3600 * 1000), env["sleep"]
    assert listed(s, "kept")["sleep"]["next_sleep_at_ms"] == 0, listed(s, "kept")["sleep"]

    # The hours end: office sleeps, kept does not.
    set_clock(WED_EVENING)
    env = wait_listed(s, "office", "sleeping")
    assert env["sleep"]["cause"] == "schedule", env["sleep"]
    assert env["sleep"]["last_transition"]["reason"] == \
        "outside office hours (%s)" % OFFICE_TEXT, env["sleep"]
    assert env["sleep"]["wake_allowed"] is False, env["sleep"]
    now_ms = time.time() * 1000
    assert near(env["sleep"]["next_wake_at_ms"], now_ms + (THU_8AM - WED_EVENING)), env["sleep"]
    assert listed(s, "kept")["phase"] == "ready"
    assert events_of(s, "kept", "env.sleep") == []

    # A request outside the hours: 503 at once, and no wake.
    started = time.monotonic()
    r = web(s, "office", "/")
    assert r.status_code == 503, (r.status_code, r.text[:300])
    assert "office is asleep outside office hours (awake %s)" % OFFICE_TEXT in r.text, r.text
    assert time.monotonic() - started < 10, "the 503 took %.1fs" % (time.monotonic() - started)
    assert listed(s, "office")["desired"] == "asleep"

    # The hours begin: it wakes, for that reason (the request above did not).
    set_clock(THU_MORNING)
    wait_listed(s, "office", "ready", READY_TIMEOUT_S)
    wakes = events_of(s, "office", "env.wake")
    assert [(e["actor"], e["detail"]) for e in wakes] == [("system", "office hours began")], wakes

    # They end again; a manual wake outside them is not undone.
    set_clock(THU_NIGHT)
    wait_listed(s, "office", "sleeping")
    r = s.eph("wake", "office", "--wait", "--timeout", "2m", timeout=180)
    assert r.rc == 0 and "office is ready" in r.out, str(r)
    assert events_of(s, "office", "env.wake")[-1]["detail"] == "woken by admin"
    # kept, let go, sleeps at the next look: office, awake by hand, has been
    # looked at by then and stays awake.
    r = s.eph("keep", "kept", "--off")
    assert r.rc == 0 and "no longer kept awake" in r.out, str(r)
    env = wait_listed(s, "kept", "sleeping")
    assert env["sleep"]["cause"] == "schedule", env["sleep"]
    assert listed(s, "office")["phase"] == "ready"
    assert len(events_of(s, "office", "env.sleep")) == 2, events_of(s, "office")


# ------------------------------------------------------------------ limits


def test_14_06_a_service_past_its_memory_limit_is_killed_with_the_reason(sleepy):
    s = sleepy
    create(s, "greedy", limits={"memory": "64Mi"})
    s.wait_phase("greedy", "ready", READY_TIMEOUT_S)
    env = s.get("greedy")
    assert env["limits"]["memory"] == "64Mi" and env["limits"]["memory_bytes"] == 64 << 20, \
        env["limits"]
    assert "usage" in env, "no usage in %s" % env
    usage = env["usage"]
    if not usage["limits_enforced"]:
        assert usage["note"], "limits not enforced, and no note saying why: %s" % usage
        pytest.skip("memory limits are not enforced here: %s" % usage["note"])
    assert 0 < usage["memory_bytes"] <= 64 << 20, usage
    try:
        r = web(s, "greedy", "/alloc?mb=200", timeout=30)
        status = r.status_code
    except Exception as e:   # noqa: BLE001 - the connection may just end
        status = repr(e)
    assert status != 200, "200 MiB allocated under a 64 MiB limit"

    def killed():
        env = listed(s, "greedy")
        reasons = [svc.get("reason") or "" for svc in env["services"]]
        crashes = [e["detail"] for e in events_of(s, "greedy", "service.crash")]
        found = [t for t in reasons + crashes if "killed by the memory limit (64Mi)" in t]
        return found
    wait_until(killed, 30, "the memory limit's reason on greedy's web", 0.2)


# ------------------------------------------------------------------ the CLI and access


def test_14_07_eph_sleep_wake_and_keep_and_who_may_use_them(sleepy):
    s = sleepy
    create(s, "fx")
    create(s, "hush", visibility="private")
    s.wait_phase("fx", "ready", READY_TIMEOUT_S)

    r = s.eph("sleep", "fx")
    assert r.rc == 0, str(r)
    assert r.out == "environment fx is going to sleep: a request to it or 'eph wake fx' wakes " \
                    "it\n", str(r)
    wait_listed(s, "fx", "sleeping")
    r = s.eph("ls")
    assert r.rc == 0, str(r)
    header = r.out.splitlines()[0].split()
    assert header == ["NAME", "PROJECT", "REF", "OWNER", "PHASE", "IDLE", "NEXT", "AGE",
                      "EXPIRES"], r.out
    row = [line for line in r.out.splitlines() if line.startswith("fx ")]
    assert row and "sleeping" in row[0] and "asleep" in row[0] and ": manual" in row[0], r.out
    r = s.eph("get", "fx")
    assert r.rc == 0, str(r)
    assert "put to sleep by admin" in r.out and "transition:" in r.out, r.out
    r = s.eph("sleep", "fx")   # asleep already: said so, nothing recorded
    assert r.rc == 0 and r.out == "environment fx is asleep\n", str(r)
    sleeps = events_of(s, "fx", "env.sleep")
    assert [(e["actor"], e["detail"]) for e in sleeps] == \
        [("admin", "put to sleep by admin")], sleeps

    r = s.eph("wake", "fx", "--wait", "--timeout", "2m", timeout=180)
    assert r.rc == 0, str(r)
    assert "environment fx is waking up\n" in r.out and "environment fx is ready" in r.out, r.out
    assert "web" in r.out and "http://web.fx.localhost:%d/" % s.port in r.out, r.out

    r = s.eph("keep", "fx")
    assert r.rc == 0 and r.out == "environment fx is kept awake: no idle sleep, no schedule\n", \
        str(r)
    r = s.eph("ls")
    row = [line for line in r.out.splitlines() if line.startswith("fx ")]
    assert row and "kept awake" in row[0], r.out
    assert [e["detail"] for e in events_of(s, "fx", "env.keep")] == ["keep on"]
    r = s.eph("keep", "fx", "--off")
    assert r.rc == 0 and r.out == "environment fx is no longer kept awake: it sleeps after " \
                                  "30m idle\n", str(r)
    r = s.api("POST", "envs/fx/keep", json={})
    assert json_error(r, 400, "invalid") == "'keep' is required, e.g. {\"keep\": true}"
    # Waking one that is awake changes nothing either.
    r = s.eph("wake", "fx")
    assert r.rc == 0 and r.out == "environment fx is awake\n", str(r)
    assert len(events_of(s, "fx", "env.wake")) == 1, events_of(s, "fx")

    # Members change their own only, viewers nothing; a private one is not there.
    alice = sign_up(s, "alice")
    vic = sign_up(s, "vic", role="viewer")
    for who in (alice, vic):
        for verb in ("sleep", "wake", "keep"):
            r = who.eph(verb, "fx")
            assert r.rc == 1 and "only the owner or an admin can change environment 'fx'" in \
                r.err, str(r)
            r = who.eph(verb, "hush")
            assert r.rc == 1 and "environment 'hush' not found" in r.err, str(r)
    r = s.api("POST", "envs/fx/keep", token=vic.token, json={"keep": True})
    assert json_error(r, 403, "forbidden")
    r = s.api("POST", "envs/nope/sleep")
    assert "environment 'nope' not found" in json_error(r, 404, "not_found")

    # The keep quota (1 by default) holds for members, at creation too.
    create(s, "a1", token=alice.token)
    create(s, "a2", token=alice.token)
    r = alice.eph("keep", "a1")
    assert r.rc == 0, str(r)
    r = alice.eph("keep", "a2")
    assert r.rc == 1 and "quota reached: you keep 1 environment awake and the limit is 1; " \
        "release one first (eph keep NAME --off)" in r.err, str(r)
    r = s.api("POST", "envs", token=alice.token,
              json={"project": "sleepy", "name": "a3", "keep": True})
    assert "quota reached" in json_error(r, 403, "quota")
    r = s.eph("keep", "a2")   # admins are not counted
    assert r.rc == 0, str(r)


def test_14_08_ls_and_get_show_idle_time_last_activity_and_what_comes_next(sleepy):
    s = sleepy
    create(s, "seen", sleep_after="45m")
    s.wait_phase("seen", "ready", READY_TIMEOUT_S)
    r = web(s, "seen", "/")
    assert r.status_code == 200, (r.status_code, r.text[:200])

    # The list is no activity: it shows the request once it is recorded.
    def recorded():
        act = listed(s, "seen")["sleep"]["last_activity"]
        return act if act and act["what"] == "request web" else None
    act = wait_until(recorded, 30, "the request to be recorded as seen's last activity", 0.2)
    assert act["at_ms"] > 0, act
    env = listed(s, "seen")
    assert 0 <= env["sleep"]["idle_ms"] < 45 * 60 * 1000, env["sleep"]
    left_ms = env["sleep"]["next_sleep_at_ms"] - time.time() * 1000
    assert 40 * 60 * 1000 < left_ms <= 45 * 60 * 1000 + 5000, env["sleep"]

    r = s.eph("ls")
    row = [line for line in r.out.splitlines() if line.startswith("seen ")]
    assert row and "ready" in row[0] and "sleeps in 4" in row[0], r.out
    r = s.eph("get", "seen")
    assert r.rc == 0, str(r)
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
             for line in r.out.split("\n\n")[0].splitlines()}
    assert lines["sleep after"] == "45m idle", r.out
    assert lines["keep"] == "no", r.out
    assert lines["schedule"] == "none (awake at any hour)", r.out
    assert lines["next"].startswith("sleeps in 4"), r.out
    assert lines["activity"].startswith("request web, "), r.out
    assert lines["usage"].startswith("memory "), r.out
    assert lines["limits"] == "none", r.out
    # ...and a look by name is activity itself.
    wait_until(lambda: listed(s, "seen")["sleep"]["last_activity"]["what"] == "api get", 30,
               "`eph get` to count as seen's activity", 0.2)


# ------------------------------------------------------------------ what creation accepts


def test_14_09_creation_refuses_bad_sleep_members_and_limits_above_the_caps(start_server,
                                                                            big_repo):
    s = start_server(settings=(("limit_memory_max", "1Gi"), ("limit_cpu_max", "2"),
                               ("limit_pids_max", "1000")))
    add_project(s, "big", big_repo)
    bad = [
        ({"sleep_after": "0s"}, "sleep_after 0s is not a positive duration: give never to keep "
                                "it from sleeping when idle"),
        ({"sleep_after": "soon"}, "'sleep_after' (a duration or never): invalid duration "
                                  "'soon', expected e.g. 30m, 2h or 1h30m"),
        ({"schedule": {"awake": "Mox-Fri 08:00-20:00"}}, "'schedule': "),
        ({"schedule": {"awake": OFFICE, "timezone": "Europe/Madird"}}, "Europe/Madird"),
        ({"limits": {"memory": "4Gi"}}, "limits.memory 4Gi exceeds the server maximum of 1Gi"),
        ({"limits": {"cpu": 4}}, "limits.cpu 4 exceeds the server maximum of 2"),
        ({"limits": {"pids": 5000}}, "limits.pids 5000 exceeds the server maximum of 1000"),
        ({"limits": {"memory": "lots"}}, "'limits.memory': invalid size 'lots'"),
        ({"keep": "yes"}, "'keep' must be true or false"),
    ]
    for i, (extra, want) in enumerate(bad):
        r = s.api("POST", "envs", json=dict(extra, project="sleepy", name="bad%d" % i))
        msg = json_error(r, 400, "invalid")
        assert want in msg, (extra, msg)
    assert [e["name"] for e in s.envs(all=True)] == []

    r = s.eph("up", "sleepy", "--name", "x", "--limit", "disk=1G")
    assert r.rc == 2 and "invalid --limit 'disk', expected memory, cpu or pids" in r.err, str(r)
    r = s.eph("up", "sleepy", "--name", "x", "--limit", "memory=2Gi")
    assert r.rc == 1 and "limits.memory 2Gi exceeds the server maximum of 1Gi" in r.err, str(r)

    r = s.eph("up", "sleepy", "--name", "ok", "--limit", "memory=512Mi", "--limit", "cpu=0.5",
              "--limit", "pids=100", "--sleep-after", "never", "--schedule", OFFICE,
              "--timezone", "Europe/Madrid", "-o", "json")
    assert r.rc == 0, str(r)
    env = r.json()
    assert env["limits"] == {"memory": "512Mi", "memory_bytes": 512 << 20, "cpu": "0.5",
                             "cpu_millis": 500, "pids": 100}, env["limits"]
    # Whatever the hour (outside the office hours it goes to sleep): the
    # settings as they apply.
    env = wait_until(lambda: listed(s, "ok") if listed(s, "ok")["sleep"].get("schedule") else None,
                     30, "the reconciler's view of ok", 0.2)
    assert env["sleep"]["sleep_after"] == "never", env["sleep"]
    assert env["sleep"]["schedule"] == OFFICE_TEXT, env["sleep"]

    # A template's limits: above a cap they refuse the creation, unless the
    # creation asks for less; the others apply as the template says.
    r = s.api("POST", "envs", json={"project": "big", "name": "big1"})
    assert json_error(r, 422, "unprocessable") == \
        "ephemera.yaml defaults: limits.memory 2Gi exceeds the server maximum of 1Gi"
    r = s.api("POST", "envs", json={"project": "big", "name": "big2",
                                    "limits": {"memory": "256Mi"}})
    assert r.status_code == 201, (r.status_code, r.text)
    assert r.json()["limits"] == {"memory": "256Mi", "memory_bytes": 256 << 20, "cpu": None,
                                  "cpu_millis": None, "pids": 200}, r.json()["limits"]
    assert [e["name"] for e in s.envs(all=True)] == ["ok", "big2"]
