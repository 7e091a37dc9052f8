"""test_08_urls.py - how `eph serve` wires the gateway: the URLs the API and the
CLI show, the client address events record, /metrics on the control host,
`upstream:` services and their health checks, settings, and a graceful stop."""
import http.client
import json
import signal
import subprocess
import threading
import time

import pytest

from conftest import (EPH_BIN, Upstream, add_project, clean_environ, create_env, gw_request,
                      make_repo, svc_host, wait_until)

# An upstream named by host name, with a health check: the driver resolves
# "localhost" off the loop and probes the host of the URL, not 127.0.0.1.
EXT_HEALTH_TEMPLATE = """\
version: 1
params:
  backend_port: {}
services:
  ext:
    upstream: "http://localhost:${params.backend_port}/"
    health: { http: /healthz, timeout: 2s }
"""


@pytest.fixture(scope="module")
def ext_health_repo(repos):
    return make_repo(repos.dir / "urls-ext-health", {"ephemera.yaml": EXT_HEALTH_TEMPLATE})


def gateway_url(server, service, env):
    return "http://%s.%s.localhost:%d/" % (service, env, server.port)


def test_08_01_the_api_and_the_cli_show_gateway_urls(tiny):
    r = tiny.eph("up", "tiny", "--name", "t1", "--wait")
    assert r.rc == 0, str(r)
    url = gateway_url(tiny, "app", "t1")
    assert url in r.out, r.out          # the summary after --wait

    env = tiny.get("t1")
    app = env["services"][0]
    assert app["url"] == url, app
    assert app["port"] > 0 and app["internal_url"] == "http://127.0.0.1:%d" % app["port"], app

    r = tiny.eph("get", "t1")
    assert r.rc == 0 and url in r.out, str(r)

    # The URL works as it is shown: curl resolves *.localhost to loopback. It
    # is behind sign-in: without credentials 401, with a token (as a CI job
    # would) the service answers.
    def curl(*extra):
        p = subprocess.run(["curl", "-sS", "--noproxy", "*", "-m", "30", "-o", "/dev/null",
                            "-w", "%{http_code}", *extra, url], capture_output=True, text=True,
                           timeout=60, env=clean_environ())
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        return p.stdout

    assert curl() == "401"
    assert curl("-H", "Authorization: Bearer " + tiny.token) == "200"


def test_08_02_events_record_the_client_address_the_gateway_saw(server, repos):
    # From 127.0.0.5, with an X-Forwarded-For of the client's own making: the
    # API is reached from 127.0.0.1 (the gateway), and the event must name
    # neither that nor the forged address, but the one the gateway accepted.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30,
                                      source_address=("127.0.0.5", 0))
    body = json.dumps({"name": "tiny", "repo": str(repos.trivial)})
    conn.request("POST", "/api/v1/projects", body=body,
                 headers={"Authorization": "Bearer " + server.token,
                          "Content-Type": "application/json",
                          "X-Forwarded-For": "198.51.100.7"})
    resp = conn.getresponse()
    assert resp.status == 201, resp.read()
    resp.read()
    conn.close()
    r = server.api("GET", "events", params={"target": "project/tiny"})
    assert r.status_code == 200, r.text
    events = [e for e in r.json()["events"] if e["action"] == "project.add"]
    assert [e["source"] for e in events] == ["127.0.0.5"], events


def test_08_03_metrics_on_the_control_host_need_no_token(tiny):
    r = tiny.eph("up", "tiny", "--name", "m1", "--wait")
    assert r.rc == 0, str(r)
    r = gw_request(tiny, "GET", "localhost:%d" % tiny.port, "/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
    lines = r.text.splitlines()
    assert 'eph_environments{phase="ready"} 1' in lines, r.text[:2000]
    assert any(line.startswith("eph_gateway_") for line in lines), r.text[:2000]
    r = gw_request(tiny, "POST", "localhost:%d" % tiny.port, "/metrics")
    assert r.status_code == 405, r.text

    # The API listens on loopback, on a port of its own that is not --listen.
    started = [line for line in tiny.log_text().splitlines() if 'msg="server started"' in line]
    assert len(started) == 1, started
    assert "listen=127.0.0.1:%d " % tiny.port in started[0], started[0]
    assert " workers=" in started[0] and " api=127.0.0.1:" in started[0], started[0]
    assert " api=127.0.0.1:%d " % tiny.port not in started[0], started[0]


def test_08_04_an_upstream_is_health_checked_and_routed_on_the_host_of_its_url(
        server, ext_health_repo, tmp_path):
    add_project(server, "exth", ext_health_repo)
    up = Upstream("probe.py", tmp_path).start()
    try:
        env = create_env(server, "exth", "up1", {"backend_port": up.port})
        assert env["services"][0]["port"] == 0, env     # no port of ours for an upstream
        env = server.wait_phase("up1")
        ext = env["services"][0]
        assert ext["state"] == "healthy" and ext["pid"] == 0, ext
        assert ext["url"] == gateway_url(server, "ext", "up1"), ext
        assert ext["internal_url"] == "http://localhost:%d/" % up.port, ext
        r = gw_request(server, "GET", svc_host(server, "ext", "up1"), "/echo")
        assert r.status_code == 200, r.text
        assert json.loads(r.content)["path"] == "/echo"
    finally:
        up.stop()

    # Nothing answers there now: the health check fails the environment.
    create_env(server, "exth", "up2", {"backend_port": up.port})
    env = server.wait_phase("up2", "failed")
    assert env["reason"] == "service 'ext' did not become healthy within 2s", env


def test_08_05_sigterm_finishes_requests_in_flight_and_refuses_new_ones(server, gw_repos,
                                                                        tmp_path):
    up = Upstream("probe.py", tmp_path).start()
    try:
        add_project(server, "ext", gw_repos.ext)
        create_env(server, "ext", "slow", {"backend_port": up.port})
        server.wait_phase("slow")
        result = {}

        def slow_request():
            r = gw_request(server, "GET", svc_host(server, "alpha", "slow"), "/slow?ms=2000")
            result["status"] = r.status_code

        t = threading.Thread(target=slow_request)
        t.start()
        wait_until(lambda: any(p.startswith("/slow") for p in up.get("/stats")["paths"]), 10,
                   "the request to reach the upstream")
        proc = server.proc
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        def refused():
            try:
                http.client.HTTPConnection("127.0.0.1", server.port, timeout=1).connect()
                return False
            except OSError:
                return True
        wait_until(refused, 1.5, "the gateway to stop accepting", 0.02)
        t.join(timeout=30)
        assert result.get("status") == 200, result
        assert proc.wait(timeout=15) == 0
        assert time.monotonic() - stopped_at >= 1.5, "it did not wait for the request"
        server.proc = None          # stopped: the teardown has nothing left to stop
        assert 'msg="server stopped"' in server.log_text()
    finally:
        up.stop()


def test_08_06_serve_check_validates_the_gateway_settings(tmp_path):
    def check(*args):
        return subprocess.run([str(EPH_BIN), "serve", "--data-dir", str(tmp_path / "data"),
                               "--check", *args], capture_output=True, text=True, timeout=30,
                              env=clean_environ())

    p = check("--host-pattern", "{service}--{env}.preview.example.com", "--gateway-workers", "2")
    assert p.returncode == 0 and "settings are valid" in p.stdout, (p.stdout, p.stderr)
    bad = [
        (("--host-pattern", "{service}{env}.{domain}"),
         "host_pattern: '{service}{env}.{domain}' needs a separator between {service} and {env}"),
        (("--host-pattern", "{service}.{domain}"),
         "host_pattern: '{service}.{domain}' must hold {service} and {env} once each "
         "(and may hold {domain})"),
        (("--domain", "Preview.Example.com"),
         "domain: 'Preview.Example.com' is not a lower-case host name such as 'localhost'"),
        (("--gateway-workers", "1000"), "gateway_workers: 1000 is not from 0 to 256"),
        (("--header-timeout", "10ms"), "header_timeout: must be from 100ms to 1d"),
    ]
    for args, want in bad:
        p = check(*args)
        assert p.returncode == 2 and p.stderr == "eph serve: %s\n" % want, (args, p.stderr)
