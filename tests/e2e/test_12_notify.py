"""test_12_notify.py - the audit events and the `notify:` sinks of the real
`eph serve` (docs/auth.md, "Audit and notifications"; notify/notify.h).

A receiver run by the test itself (Receiver below: a ThreadingHTTPServer on
127.0.0.1, in this process, shut down in the fixture's finalizer) records
every POST it gets: path, headers and the raw body. The server under test has
two sinks pointing at it, a Slack-compatible one (`chat`, only env.create,
env.delete and env.expire) and a signed webhook (`audit`, the default
`env.*`, its secret in a secret_file), and logs at debug level. The tests
check:

- create and delete reach both sinks: the Slack text names the user who did
  it and the address they came from; the webhook body is the event as
  GET /api/v1/events shows it, with X-Ephemera-Event, X-Ephemera-Delivery and
  an X-Ephemera-Signature that the test recomputes with hmac;
- a receiver that answers 500 or does not listen gets every event once it is
  back (the notifier backs off 1 s, 2 s, 4 s ...: the tests keep it failing
  for two or three attempts only), also when the server was stopped while it
  was down and started again: at least once, in order, nothing lost;
- a receiver that accepts connections and never answers holds up no request,
  even when there are more such sinks than libuv has pool threads;
- automatic transitions (a TTL expiry, an environment whose setup exits) are
  events by `system`, without a source address, with the reason, in
  GET /api/v1/events and at the webhook;
- the webhook secret and the Slack URL's secret path are never written to the
  server's stdout, stderr or data directory.
"""
import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import Server, add_project, free_port, make_repo, wait_until
from test_10_signin import Browser, add_user, member_token, new_password, stored_bytes

# The notifier looks at the event log every second and backs off 1 s, 2 s,
# 4 s ... after failures; on a busy machine a delivery may take a while.
DELIVERY_TIMEOUT_S = 45
# "Never blocks": a request answers this fast even with every sink stuck.
PROMPT_S = 5
# The notifier's libcurl timeout for one POST (NOTIFY_TIMEOUT_MS).
POST_TIMEOUT_S = 10
# Where the receiver takes the webhook sink's POSTs; the Slack sink's path
# ends in a secret, as Slack's do (Receiver.slack_path).
AUDIT_PATH = "/audit"

# A project whose one service's setup exits 3: the environment fails.
FAILING_TEMPLATE = """\
version: 1
services:
  app:
    setup: echo preparing; exit 3
    run: /usr/bin/python3 -m http.server $PORT --bind 127.0.0.1
    health: { http: /, timeout: 30s }
"""


# ------------------------------------------------------------------ the receiver


class Receiver:
    """An HTTP receiver on 127.0.0.1:port in this process. Every POST is
    recorded as a dict (path, headers with lower-case names, body bytes,
    status answered). mode: "ok" answers 200, "fail" answers 500, "hang"
    reads the request and answers nothing until release(), then 503."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.slack_path = "/slack/T000/B000/" + secrets.token_hex(12)
        self.mode = "ok"
        self.requests = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.httpd = None
        self.thread = None

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def start(self):
        assert self.httpd is None, "receiver already running"
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                mode = receiver.mode
                rec = {"path": self.path, "body": body, "mode": mode, "status": None,
                       "at": time.monotonic(),
                       "headers": {k.lower(): v for k, v in self.headers.items()}}
                with receiver.lock:
                    receiver.requests.append(rec)
                if mode == "hang":
                    receiver.released.wait(60)
                status = {"ok": 200, "fail": 500}.get(mode, 503)
                rec["status"] = status
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass    # the notifier gave up waiting: it tries again

        def bound():
            # Started again on the same port: another socket may hold it a moment.
            try:
                return ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
            except OSError:
                return None
        self.httpd = wait_until(bound, 10, "the receiver to listen on port %d" % self.port, 0.1)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stops listening: connections are refused until start() again."""
        httpd, self.httpd = self.httpd, None
        if httpd is None:
            return
        self.released.set()          # no handler left waiting
        httpd.shutdown()
        httpd.server_close()
        self.thread.join(timeout=10)

    def release(self):
        """Hung requests are answered (503) and new ones get 200."""
        self.mode = "ok"
        self.released.set()

    def got(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def delivered(self, path):
        """Requests to path that were answered 200, in arrival order."""
        return [r for r in self.got(path) if r["status"] == 200]


def webhook_events(receiver):
    """The events delivered to the webhook (answered 200), in arrival order."""
    return [json.loads(r["body"]) for r in receiver.delivered(AUDIT_PATH)]


def slack_texts(receiver):
    return [json.loads(r["body"])["text"] for r in receiver.delivered(receiver.slack_path)]


def sign(secret, body):
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------ the server


class Notified:
    """What a test gets: the server, the receiver and the secrets."""

    def __init__(self, server, receiver, secret, slack_secret):
        self.server = server
        self.receiver = receiver
        self.secret = secret
        self.slack_secret = slack_secret

    def events(self, target=None, after=0):
        return [e for e in self.server.events(target) if e["id"] > after]


def write_config(server, receiver, secret_file, extra_sinks):
    lines = ['log_level: "debug"', 'access_log: "-"', "notify:",
             "  - name: chat", "    type: slack",
             "    url: %s" % receiver.url(receiver.slack_path),
             "    events: [env.create, env.delete, env.expire]",
             "  - name: audit", "    type: webhook",
             "    url: %s" % receiver.url(AUDIT_PATH),
             "    secret_file: %s" % secret_file]
    for i in range(extra_sinks):
        lines += ["  - name: extra-%d" % i, "    type: webhook",
                  "    url: %s" % receiver.url("/extra-%d" % i),
                  "    secret: %s" % secret_file.read_text().strip()]
    with open(server.config_file, "a") as f:
        f.write("\n".join(lines) + "\n")


@pytest.fixture
def make_notified(tmp_path, repos):
    """Starts a receiver and an `eph serve` whose sinks point at it, with the
    project `tiny` registered; extra_sinks adds more webhook sinks there (same
    secret, given inline with `secret:`). Once per test. Both are stopped at
    teardown, the server checked like `server`'s."""
    made = []

    def make(extra_sinks=0):
        assert not made, "one notified server per test"
        receiver = Receiver().start()
        made.append(receiver)
        secret = "whsec-%s-never-logged" % secrets.token_hex(12)
        slack_secret = receiver.slack_path.rsplit("/", 1)[1]
        secret_file = tmp_path / "webhook-secret"
        secret_file.write_text(secret + "\n")
        server = Server(tmp_path, repos.dir)
        made.append(server)
        write_config(server, receiver, secret_file, extra_sinks)
        server.start()
        add_project(server, "tiny", repos.trivial)
        return Notified(server, receiver, secret, slack_secret)

    yield make
    problems = []
    receiver, server = (made + [None, None])[:2]
    if receiver is not None:
        receiver.release()           # nothing hung: the server's stop waits for POSTs
    if server is not None:
        problems = server.shutdown()
        if problems:
            problems.append("--- server log tail\n" + server.log_tail())
    if receiver is not None:
        receiver.stop()
    if problems:
        pytest.fail("teardown of eph serve in %s:\n%s" % (tmp_path, "\n".join(problems)),
                    pytrace=False)


# ------------------------------------------------------------------ helpers


def create(server, name, token=None, **body):
    """POST /api/v1/envs for project tiny; returns (answer JSON, seconds taken)."""
    t0 = time.monotonic()
    r = server.api("POST", "envs", token=token, json={"project": "tiny", "name": name, **body})
    took = time.monotonic() - t0
    assert r.status_code in (200, 201, 202), "create %s: %d %s" % (name, r.status_code, r.text)
    return r.json(), took


def delete(server, name, token=None):
    t0 = time.monotonic()
    r = server.api("DELETE", "envs/" + name, token=token)
    took = time.monotonic() - t0
    assert r.status_code in (200, 202, 204), "delete %s: %d %s" % (name, r.status_code, r.text)
    return took


def wait_gone(server, name):
    wait_until(lambda: not any(e["name"] == name for e in server.envs()), 60,
               "environment %s to be deleted" % name, 0.1)


def wait_delivered(n, want_ids, what):
    """Waits until every event id in want_ids was delivered to the webhook;
    returns the delivered events."""
    want = set(want_ids)

    def done():
        got = webhook_events(n.receiver)
        return got if want <= {e["id"] for e in got} else None
    try:
        return wait_until(done, DELIVERY_TIMEOUT_S, what, 0.1)
    except AssertionError as e:
        got = sorted({ev["id"] for ev in webhook_events(n.receiver)})
        raise AssertionError("%s\nwanted ids %s, delivered %s, missing %s\n--- server log\n%s"
                             % (e, sorted(want), got, sorted(want - set(got)),
                                notify_log(n.server))) from None


def notify_log(server, lines=30):
    found = [line for line in server.log_text().splitlines() if "mod=notify" in line]
    return "\n".join(found[-lines:])


def assert_in_order(events, what):
    """At least once, in order: the first delivery of each id comes in id order."""
    firsts = []
    for e in events:
        if e["id"] not in firsts:
            firsts.append(e["id"])
    assert firsts == sorted(firsts), "%s: delivered out of order: %s" % (what, firsts)


def assert_no_secrets(n):
    """Neither secret in the server's stdout, stderr or data directory."""
    for path, data in stored_bytes(n.server).items():
        for secret in (n.secret, n.slack_secret):
            assert secret.encode() not in data, "a notify secret is in %s" % path


def failed_attempts(server, sink, since=0):
    """The notifier's "delivery failed" lines for sink in the server's log,
    after the first `since` of them."""
    lines = [line for line in server.log_text().splitlines()
             if 'msg="delivery failed"' in line and " sink=%s " % sink in line]
    return lines[since:]


# ------------------------------------------------------------------ tests


def test_12_01_create_and_delete_reach_slack_and_the_signed_webhook_with_actor_and_source(
        make_notified):
    n = make_notified()
    server = n.server
    browser = Browser(server)
    alice_pw = new_password()
    add_user(server, "alice", alice_pw)
    r = browser.sign_in("alice", alice_pw)
    assert r.status_code in (302, 303), (r.status_code, r.text[:300])
    _, alice = member_token(browser, "notify-test")
    start = max([e["id"] for e in n.events()] or [0])

    create(server, "n1", token=alice)
    delete(server, "n1", token=alice)
    wait_gone(server, "n1")
    recorded = n.events("env/n1", after=start)
    by_action = {e["action"]: e for e in recorded}
    assert by_action["env.create"]["actor"] == "alice", recorded
    assert by_action["env.delete"]["actor"] == "alice", recorded
    assert by_action["env.create"]["source"] == "127.0.0.1", recorded
    assert by_action["env.delete"]["source"] == "127.0.0.1", recorded

    # The webhook: every env.* event of n1, as recorded, signed.
    got = wait_delivered(n, [e["id"] for e in recorded], "n1's events at the webhook")
    assert_in_order(got, "audit")
    for e in recorded:
        assert e in got, "event %s delivered differently: %s" % (e, [g for g in got
                                                                     if g["id"] == e["id"]])
    for req in n.receiver.delivered(AUDIT_PATH):
        h, body = req["headers"], req["body"]
        ev = json.loads(body)
        assert h.get("content-type") == "application/json", h
        assert h.get("x-ephemera-event") == ev["action"], (h, ev)
        assert h.get("x-ephemera-delivery") == str(ev["id"]), (h, ev)
        assert hmac.compare_digest(h.get("x-ephemera-signature", ""), sign(n.secret, body)), \
            "bad signature %r for body %r" % (h.get("x-ephemera-signature"), body)
        assert h["x-ephemera-signature"] != sign(n.secret + "x", body)
    assert all(ev["action"].startswith("env.") for ev in got), got

    # Slack: one human sentence per wanted event, nothing for phases.
    want = ["alice created environment n1", "alice deleted environment n1"]

    def slack_done():
        texts = slack_texts(n.receiver)
        return texts if all(any(w in t for t in texts) for w in want) else None
    texts = wait_until(slack_done, DELIVERY_TIMEOUT_S, "the Slack messages of n1", 0.1)
    for w in want:
        line = next(t for t in texts if w in t)
        assert line.endswith(" from 127.0.0.1"), texts
    assert not any("is ready" in t or "was deleted" in t or "(was " in t for t in texts), \
        "the chat sink only wants create, delete and expire: %s" % texts
    for req in n.receiver.got(n.receiver.slack_path):
        assert "x-ephemera-signature" not in req["headers"], req["headers"]
        assert set(json.loads(req["body"])) == {"text"}, req["body"]
    assert_no_secrets(n)


def test_12_02_a_receiver_answering_500_or_not_listening_gets_every_event_when_back(
        make_notified):
    n = make_notified()
    server, receiver = n.server, n.receiver
    start = max([e["id"] for e in n.events()] or [0])

    # Answering 500: the same event is tried again (1 s, then 2 s later).
    receiver.mode = "fail"
    create(server, "d1")
    wait_until(lambda: len([r for r in receiver.got(AUDIT_PATH) if r["status"] == 500]) >= 2,
               30, "two failed attempts at the webhook", 0.05)
    tried = {json.loads(r["body"])["id"] for r in receiver.got(AUDIT_PATH)}
    assert len(tried) == 1, "events after a failed one must wait: tried %s" % tried
    delete(server, "d1")
    wait_gone(server, "d1")
    receiver.mode = "ok"
    recorded = n.events("env/d1", after=start)
    got = wait_delivered(n, [e["id"] for e in recorded], "d1's events after the 500s")
    assert_in_order(got, "audit")
    def d1_texts():
        texts = [t for t in slack_texts(receiver) if "environment d1" in t]
        return texts if len(texts) >= 2 else None
    texts = wait_until(d1_texts, DELIVERY_TIMEOUT_S, "the Slack messages of d1", 0.1)
    assert any("created environment d1" in t for t in texts), texts
    assert any("deleted environment d1" in t for t in texts), texts

    # Not listening at all: connections refused, then the receiver comes back.
    logged = len(failed_attempts(server, "audit"))
    receiver.stop()
    mark = max(e["id"] for e in n.events())
    create(server, "d2")
    wait_until(lambda: len(failed_attempts(server, "audit", logged)) >= 2, 30,
               "two refused attempts in the server log", 0.1)
    delete(server, "d2")
    wait_gone(server, "d2")
    receiver.start()
    recorded = n.events("env/d2", after=mark)
    got = wait_delivered(n, [e["id"] for e in recorded], "d2's events after the receiver's return")
    assert_in_order(got, "audit")
    log = notify_log(server)
    assert 'msg="delivery recovered"' in log and "sink=audit" in log, log
    assert_no_secrets(n)


def test_12_03_events_recorded_while_the_receiver_was_down_arrive_after_a_server_restart(
        make_notified):
    n = make_notified()
    server, receiver = n.server, n.receiver
    start = max([e["id"] for e in n.events()] or [0])
    receiver.stop()

    create(server, "r1")
    server.wait_phase("r1", "ready")
    delete(server, "r1")
    wait_gone(server, "r1")
    recorded = n.events("env/r1", after=start)
    assert [e["action"] for e in recorded][:1] == ["env.create"], recorded
    assert "env.delete" in [e["action"] for e in recorded], recorded
    assert server.stop() == 0

    receiver.start()
    server.start()
    got = wait_delivered(n, [e["id"] for e in recorded], "r1's events after the restart")
    assert_in_order(got, "audit")
    for e in recorded:
        assert e in got, "event %s delivered differently: %s" % (e, [g for g in got
                                                                     if g["id"] == e["id"]])
    wait_until(lambda: sum("environment r1" in t for t in slack_texts(receiver)) >= 2,
               DELIVERY_TIMEOUT_S, "the Slack messages of r1 after the restart", 0.1)
    second = server.stderr_path(2).read_text(errors="replace")
    assert 'msg="sink resumes"' in second and "sink=audit" in second, notify_log(server)
    assert_no_secrets(n)


def test_12_04_a_receiver_that_never_answers_holds_up_no_request(make_notified):
    # Five sinks stuck at once: more than libuv's four pool threads.
    n = make_notified(extra_sinks=3)
    server, receiver = n.server, n.receiver
    start = max([e["id"] for e in n.events()] or [0])
    receiver.mode = "hang"

    _, took = create(server, "h1")
    assert took < PROMPT_S, "POST /api/v1/envs took %.1fs with a hanging receiver" % took

    def stuck():
        """The POSTs not answered that arrived less than POST_TIMEOUT_S/2 ago:
        their senders are all still waiting (libcurl gives up after
        POST_TIMEOUT_S), one per sink."""
        now = time.monotonic()
        return [r for r in receiver.got() if r["status"] is None
                and now - r["at"] < POST_TIMEOUT_S / 2]
    waiting = wait_until(lambda: stuck() if len({r["path"] for r in stuck()}) >= 4 else None,
                         POST_TIMEOUT_S / 2, "four sinks' POSTs in flight at once, unanswered",
                         0.02)

    # Those sinks are waiting on answers that do not come: requests must not.
    t0 = time.monotonic()
    r = server.eph("up", "tiny", "--name", "h2", "-o", "json")
    took = time.monotonic() - t0
    assert r.rc == 0, str(r)
    assert took < PROMPT_S, "eph up took %.1fs with the sinks stuck" % took
    _, took = create(server, "h3")
    assert took < PROMPT_S, "POST /api/v1/envs took %.1fs with the sinks stuck" % took
    took = delete(server, "h1")
    assert took < PROMPT_S, "DELETE took %.1fs with the sinks stuck" % took
    oldest = min(r["at"] for r in waiting)
    assert time.monotonic() - oldest < POST_TIMEOUT_S, \
        "too slow to tell: the stuck POSTs may have timed out meanwhile"
    # Checkouts and starts (the local driver's work) are not held up either.
    server.wait_phase("h2", "ready", timeout=60)

    receiver.release()
    recorded = n.events(after=start)
    recorded = [e for e in recorded if e["target"] in ("env/h1", "env/h2", "env/h3")]
    got = wait_delivered(n, [e["id"] for e in recorded], "h1's to h3's events once answered")
    assert_in_order(got, "audit")
    assert_no_secrets(n)


def test_12_05_expiry_and_failure_are_system_events_with_a_reason_at_the_webhook(
        make_notified, repos):
    n = make_notified()
    server = n.server
    failing = make_repo(repos.dir / ("failing-%s" % secrets.token_hex(4)),
                        {"ephemera.yaml": FAILING_TEMPLATE})
    add_project(server, "failing", failing)
    start = max([e["id"] for e in n.events()] or [0])

    create(server, "ttl1", ttl="2s")
    r = server.api("POST", "envs", json={"project": "failing", "name": "bad1"})
    assert r.status_code in (200, 201, 202), r.text
    env = server.wait_phase("bad1", "failed", timeout=60)
    assert env["reason"] == "setup of 'app' exited with status 3", env
    wait_gone(server, "ttl1")

    recorded = n.events(after=start)
    ttl1 = [e for e in recorded if e["target"] == "env/ttl1"]
    bad1 = [e for e in recorded if e["target"] == "env/bad1"]
    expire = [e for e in ttl1 if e["action"] == "env.expire"]
    assert len(expire) == 1, ttl1
    assert expire[0]["actor"] == "system" and expire[0]["source"] == "", expire
    assert expire[0]["detail"] == "time to live expired", expire
    assert "env.delete" not in [e["action"] for e in ttl1], ttl1
    to_deleting = [e for e in ttl1 if e["action"] == "env.phase" and "-> deleting" in e["detail"]]
    assert len(to_deleting) == 1 and expire[0]["id"] < to_deleting[0]["id"], ttl1
    phases = [e for e in ttl1 if e["action"] == "env.phase"]
    assert [e["detail"].split(": ")[0].split(" -> ")[1] for e in phases][-2:] == \
        ["deleting", "deleted"], phases
    failed = [e for e in bad1 if e["action"] == "env.phase" and " -> failed" in e["detail"]]
    assert len(failed) == 1, bad1
    assert failed[0]["detail"].endswith("-> failed: setup of 'app' exited with status 3"), failed
    for e in phases + failed:
        assert e["actor"] == "system" and e["source"] == "", e

    got = wait_delivered(n, [e["id"] for e in ttl1 + bad1], "ttl1's and bad1's events")
    for e in expire + failed:
        assert e in got, e
    wait_until(lambda: any("environment ttl1 expired" in t for t in slack_texts(n.receiver)),
               DELIVERY_TIMEOUT_S, "the Slack message of the expiry", 0.1)
    text = next(t for t in slack_texts(n.receiver) if "environment ttl1 expired" in t)
    assert "time to live expired" in text and " from " not in text, text
    assert not any("bad1 failed" in t for t in slack_texts(n.receiver)), \
        "chat does not want env.phase: %s" % slack_texts(n.receiver)
    assert_no_secrets(n)
