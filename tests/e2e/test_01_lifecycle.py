"""test_01_lifecycle.py - an environment of examples/shop from `eph up` to `eph rm`,
and an environment whose service exits at every start: it fails at the health
timeout of the service's first start (restarts do not move it), with a reason
that counts the exits, and leaves no process running."""
import json
import os
import re
import stat
import time
from datetime import datetime

import requests

from conftest import add_project, http_get, make_repo, redis_ping, wait_until


def test_01_01_first_start_prints_the_admin_token_and_writes_the_client_config(server):
    lines = server.stdout_text().splitlines()
    assert len(lines) == 1, "stdout of the first start: %r" % lines
    m = re.fullmatch(r"admin token: (eph_\S+)", lines[0])
    assert m, "stdout of the first start: %r" % lines[0]
    assert m.group(1) == server.token

    mode = stat.S_IMODE(os.stat(server.client_config).st_mode)
    assert mode == 0o600, "client config has mode %o" % mode
    config = json.loads(server.client_config.read_text())
    assert config == {"server": server.url, "token": server.token}

    r = server.api("GET", "whoami")
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "admin", "role": "admin", "email": "", "via": "token",
                        "token": "admin"}

    r = server.eph("projects")
    assert r.rc == 0, str(r)


def test_01_02_shop_runs_answers_logs_extends_and_is_removed(shop):
    r = shop.eph("up", "shop", "--branch", "main", "--name", "demo", "--ttl", "2h",
                 "--param", "dataset=edge-cases", "--wait", "-o", "json")
    assert r.rc == 0, str(r)

    env = shop.get("demo")
    assert env["phase"] == "ready", env
    assert env["project"] == "shop" and env["ref"] == "main"
    assert env["params"] == {"dataset": "edge-cases"}
    assert env["ready_at_ms"] > 0
    svcs = {s["name"]: s for s in env["services"]}
    assert set(svcs) == {"db", "api", "web"}
    for s in svcs.values():
        assert s["state"] == "healthy", s
        assert s["pid"] > 0 and s["port"] > 0, s
        assert shop.port_lo <= s["port"] <= shop.port_hi, s
    assert len({s["port"] for s in svcs.values()}) == 3
    assert svcs["db"]["url"] is None           # expose: false
    assert svcs["api"]["url"] and svcs["web"]["url"]

    # Every service answers on its own port.
    assert redis_ping(svcs["db"]["port"]) == "+PONG"
    api_port, web_port = svcs["api"]["port"], svcs["web"]["port"]
    assert http_get(api_port, "/healthz").json() == {"ok": True}
    info = http_get(api_port, "/api/info").json()
    assert info["env"] == "demo"
    assert info["dataset"] == "edge-cases"
    assert info["seeded_dataset"] == "edge-cases"     # the setup ran with the param
    products = http_get(api_port, "/api/products").json()
    assert len(products) == info["products"] == 6

    page = http_get(web_port, "/")
    assert page.status_code == 200
    assert "text/html" in page.headers["Content-Type"]
    assert "Caf\u00e9 cr\u00e8me" in page.text
    assert "&lt;b&gt;Bold&lt;/b&gt; &amp;" in page.text     # escaped, not markup
    assert "<b>Bold</b>" not in page.text
    assert http_get(web_port, "/api/products").json() == products   # the web's proxy

    # A product added through the web's proxy lands in redis through the api.
    added = requests.post("http://127.0.0.1:%d/api/products" % web_port,
                          json={"name": "Added in test", "price": 1.5}, timeout=10,
                          proxies={"http": None})
    assert added.status_code == 201, added.text
    assert "Added in test" in http_get(web_port, "/").text

    # Logs: the setup's and the service's own output.
    r = shop.eph("logs", "demo", "api")
    assert r.rc == 0, str(r)
    assert "seed: 6 products of dataset edge-cases" in r.out
    assert "api: listening on 127.0.0.1:%d" % api_port in r.out
    r = shop.eph("logs", "demo", "db", "--tail", "3")
    assert r.rc == 0, str(r)
    assert 0 < len(r.out.splitlines()) <= 3, r.out
    r = shop.eph("logs", "demo", "db")
    assert "Ready to accept connections" in r.out, r.out

    # Extend: the expiry moves by exactly one hour.
    before = env["expires_at_ms"]
    assert abs(before - env["created_at_ms"] - 2 * 3600 * 1000) < 1000, env
    r = shop.eph("extend", "demo", "1h")
    assert r.rc == 0, str(r)
    assert shop.get("demo")["expires_at_ms"] - before == 3600 * 1000

    # Remove: every process and the directory are gone once --wait returns.
    env_id = shop.env_id("demo")
    assert env_id is not None
    env_dir = shop.env_dir("demo")
    assert (env_dir / "src" / "ephemera.yaml").is_file()
    assert (env_dir / "data" / "db").is_dir()
    assert (env_dir / "logs" / "api.log").is_file()
    procs = shop.processes(env_id=env_id)
    assert {p.service for p in procs} == {"db", "api", "web"}, procs
    assert {p.pgid for p in procs} == {s["pid"] for s in svcs.values()}, (procs, svcs)

    r = shop.eph("rm", "demo", "--wait")
    assert r.rc == 0, str(r)
    assert shop.processes(env_id=env_id) == []
    assert not env_dir.exists()
    r = shop.eph("get", "demo", "-o", "json")
    assert r.rc == 1, str(r)
    assert r.err.startswith("eph: "), r.err
    r = shop.eph("ls", "-o", "json")
    assert r.rc == 0, str(r)
    assert "demo" not in r.out

    # The audit log tells the story in order.
    r = shop.eph("events", "-o", "json")
    assert r.rc == 0, str(r)
    events = r.json()
    events = events["events"] if isinstance(events, dict) else events
    mine = [e for e in events if e["target"] == "env/demo"]
    actions = [e["action"] for e in mine]
    for action in ("env.create", "env.phase", "env.extend", "env.delete"):
        assert action in actions, actions
    assert actions.index("env.create") < actions.index("env.phase") < actions.index("env.delete")
    assert any(e["action"] == "env.phase" and e["detail"].endswith("-> ready") for e in mine), mine
    assert all(e["actor"] in ("admin", "system") for e in mine), mine
    assert any(e["action"] == "project.add" and e["target"] == "project/shop" for e in events)
    r = shop.eph("events")
    assert r.rc == 0 and "env.delete" in r.out, str(r)


# ------------------------------------------------------------------ a crash loop

# A service that exits with status 1 as soon as it starts, with a short
# health timeout: each start logs one line.
CRASHLOOP_TEMPLATE = """\
version: 1
services:
  app:
    run: "echo app starting; exit 1"
    health: { tcp: true, timeout: 2s }
"""
CRASHLOOP_REASON = re.compile(r"service 'app' did not become healthy within 2s "
                              r"\((?:exited once: |exited (\d+) times; last: )"
                              r"exited with status 1\)")


def log_time(server, msg):
    """When the server first logged `msg` for environment loop (a datetime)."""
    line_re = re.compile(r'ts=(\S+) .*msg="%s" env=loop ' % re.escape(msg))
    for line in server.log_text().splitlines():
        m = line_re.match(line)
        if m:
            return datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))
    raise AssertionError("no %r line for env=loop in the server log:\n%s"
                         % (msg, server.log_tail()))


def test_01_03_a_service_that_keeps_exiting_fails_its_environment_at_its_health_timeout(
        server, repos):
    repo = repos.dir / "crashloop"
    if not repo.exists():
        make_repo(repo, {"ephemera.yaml": CRASHLOOP_TEMPLATE})
    add_project(server, "crashloop", repo)
    r = server.eph("up", "crashloop", "--name", "loop", "-o", "json")
    assert r.rc == 0, str(r)

    env = server.wait_phase("loop", "failed", timeout=60)
    m = CRASHLOOP_REASON.fullmatch(env["reason"] or "")
    assert m, "reason: %r" % env["reason"]
    exits = int(m.group(1) or 1)
    svc = env["services"][0]
    assert svc["name"] == "app" and svc["state"] == "failed", svc
    assert svc["reason"] == env["reason"], svc
    assert svc["pid"] == 0, svc
    assert svc["restarts"] == exits - 1, "restarts %d after %d exits" % (svc["restarts"], exits)

    # The deadline ran from the first start, not from the last restart.
    took = (log_time(server, "service failed")
            - log_time(server, "service started")).total_seconds()
    assert 1.9 <= took <= 5, "failed %.2fs after the first start (timeout 2s)" % took

    # Its processes are gone, and stay gone: no restart follows the failure
    # (the next was due 2 s after the last exit). Watched for 3 s.
    wait_until(lambda: server.processes(env_name="loop") == [], 30,
               "the processes of loop to be gone")
    watch_until = time.monotonic() + 3
    while time.monotonic() < watch_until:
        procs = server.processes(env_name="loop")
        assert procs == [], "processes after the failure: %s" % procs
        time.sleep(0.1)
    env = server.get("loop")
    assert env["phase"] == "failed" and env["services"][0]["restarts"] == exits - 1, env

    # One start per exit in its log, and the audit log says why it failed.
    r = server.eph("logs", "loop", "app")
    assert r.rc == 0, str(r)
    starts = r.out.count("app starting")
    assert exits <= starts <= exits + 1, "%d starts logged, %d exits:\n%s" % (starts, exits, r.out)
    phases = [e["detail"] for e in server.events("env/loop") if e["action"] == "env.phase"]
    assert "starting -> failed: " + env["reason"] in phases, phases
