"""test_03_api.py - the REST API's errors and the CLI's usage errors."""
import re

from conftest import EPH_BIN, free_port


def error_of(r, status, code):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    body = r.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"], body
    return body["error"]["message"]


def test_03_01_requests_without_a_valid_token_get_401(server):
    r = server.api("GET", "healthz", token="")
    assert r.status_code == 200 and r.json()["ok"] is True
    error_of(server.api("GET", "envs", token=""), 401, "unauthorized")
    error_of(server.api("GET", "envs", token="eph_not-a-token"), 401, "unauthorized")
    error_of(server.api("GET", "projects", token=""), 401, "unauthorized")
    error_of(server.api("POST", "envs", token="", json={"project": "x"}), 401, "unauthorized")
    assert server.api("GET", "envs").status_code == 200


def test_03_02_unknown_environment_is_404_json(server):
    msg = error_of(server.api("GET", "envs/nope"), 404, "not_found")
    assert msg == "environment 'nope' not found"
    error_of(server.api("DELETE", "envs/nope"), 404, "not_found")
    r = server.eph("get", "nope", "-o", "json")
    assert r.rc == 1, str(r)
    assert "eph: environment 'nope' not found" in r.err, r.err


def test_03_03_bad_environment_name_is_400(tiny):
    for name in ("Bad_Name", "-leading-dash", "x" * 41, "a.b"):
        msg = error_of(tiny.api("POST", "envs", json={"project": "tiny", "name": name}),
                       400, "invalid")
        assert "name" in msg, msg
    assert tiny.envs() == []


def test_03_04_duplicate_environment_name_is_409(tiny):
    r = tiny.api("POST", "envs", json={"project": "tiny", "name": "twice"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "twice"
    msg = error_of(tiny.api("POST", "envs", json={"project": "tiny", "name": "twice"}),
                   409, "conflict")
    assert "twice" in msg, msg
    r = tiny.eph("up", "tiny", "--name", "twice")
    assert r.rc == 1, str(r)
    assert r.err.startswith("eph: ") and "twice" in r.err, r.err
    assert [e["name"] for e in tiny.envs()] == ["twice"]


def test_03_05_cli_usage_errors_exit_2(server):
    for args in (("no-such-verb",), ("up",), ("up", "tiny", "--ttl"),
                 ("up", "tiny", "--no-such-flag"), ("extend",), ("logs", "x")):
        r = server.eph(*args)
        assert r.rc == 2, str(r)
        assert r.err.startswith("eph: ") or "usage" in r.err.lower(), str(r)
    assert server.envs() == []


def test_03_06_help_exits_0(server):
    r = server.eph("--help")
    assert r.rc == 0, str(r)
    for verb in ("serve", "up", "ls", "get", "logs", "extend", "rm", "events"):
        assert re.search(r"\b%s\b" % verb, r.out), "%s missing from eph --help:\n%s" % (verb, r.out)
    r = server.eph("up", "--help")
    assert r.rc == 0, str(r)
    assert "--branch" in r.out and "--wait" in r.out, r.out
    assert EPH_BIN.exists()


def test_03_09_credentials_in_a_repository_url_are_never_shown_or_logged(server):
    secret = "ghp_TopSecret123"
    port = free_port()
    repo = f"https://robot:{secret}@127.0.0.1:{port}/shop.git"
    r = server.api("POST", "projects", json={"name": "private", "repo": repo})
    # Refused by the test server's allowed_repos: the reply still quotes it.
    assert r.status_code == 403, (r.status_code, r.text)
    message = r.json()["error"]["message"]
    assert secret not in message, message
    assert "https://***@127.0.0.1" in message, message
    assert secret not in server.log_text()
