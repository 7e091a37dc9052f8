"""test_11_access.py - who may do what, with the real `eph serve` and sign-in
on (the default, as the `server` fixture runs it): roles (a viewer creates
nothing; only the owner, if a member, or an admin changes an environment),
visibility (a `private` environment does not exist for others: lists, gets,
logs, events and its URLs answer as for a name nobody uses; `team` is seen by
every signed-in user), share links (an anonymous client follows one to its
one service host only, until it expires or is withdrawn; a tampered one is
refused), guardrails (quotas per user and per server answer 403 `quota` and
create nothing; `max_ttl` caps environments, links and extensions;
`allowed_repos` refuses other repositories), and token scopes (a token acts
with at most its scope).

Users are made by the admin (POST /api/v1/users), sign in with their
password (test_10's Browser) and make themselves a token there, which the
tests use for the API, on service hosts (Authorization: Bearer) and in a
client config of their own for the CLI.
"""
import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import (Server, add_project, gw_request, make_repo, shared_tmp, svc_host,
                      wait_until)
from test_10_signin import (ECHO_PY, JSON, Browser, add_user, eph_as, flip, json_error,
                            member_token, new_password)

READY_TIMEOUT_S = 60      # an environment to become ready on a busy 2-core machine
GATEWAY_TIMEOUT_S = 10    # a visibility change to reach the gateway's routes
EXPIRY_TIMEOUT_S = 20     # a 3-second link to be refused, counted from its making

ECHO_TEMPLATE = """\
version: 1
services:
  web:
    run: /usr/bin/python3 echo.py
    health: { http: /healthz, timeout: 30s }
  api:
    run: /usr/bin/python3 echo.py
    health: { http: /healthz, timeout: 30s }
"""

CHANGE_REFUSED = "only the owner or an admin can change environment '%s'"
VIEWERS_CANNOT_CREATE = "viewers cannot create environments"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def echo_repo(repos):
    return make_repo(repos.dir / "access-echo", {"ephemera.yaml": ECHO_TEMPLATE,
                                                 "echo.py": ECHO_PY})


@pytest.fixture
def echo(server, echo_repo):
    """The server with the two-service echo project (web, api) as `echo`."""
    add_project(server, "echo", echo_repo)
    return server


# Guardrails of the `guarded` server, written to its config file before it
# starts: one environment per member, three on the server, an hour at most
# (the default lifetime must not exceed it).
GUARDRAILS = (("quota_envs_per_user", "1"), ("quota_envs_total", "3"), ("max_ttl", "1h"),
              ("default_ttl", "30m"))


@pytest.fixture
def guarded(tmp_path, repos):
    """A running `eph serve` with GUARDRAILS and the project `tiny`; checked
    at teardown like `server`."""
    s = Server(tmp_path, repos.dir)
    with open(s.config_file, "a") as f:
        for key, value in GUARDRAILS:
            f.write('%s: "%s"\n' % (key, value))
    try:
        s.start()
        add_project(s, "tiny", repos.trivial)
    except BaseException:
        problems = s.shutdown()
        if problems:
            print("\n".join(problems))
        raise
    yield s
    problems = s.shutdown()
    if problems:
        pytest.fail("teardown of eph serve in %s:\n%s\n--- server log tail\n%s"
                    % (tmp_path, "\n".join(problems), s.log_tail()), pytrace=False)


# ------------------------------------------------------------------ helpers


@dataclass
class User:
    """A signed-in user: their browser (with a session), a token they made for
    themselves, and a client config holding it."""
    server: Server
    name: str
    role: str
    password: str
    token: str
    config: Path
    browser: Browser

    def api(self, method, path, **kw):
        return self.server.api(method, path, token=self.token, **kw)

    def eph(self, *args):
        return eph_as(self.server, self.config, *args)

    def gw(self, service, env, path="/", **kw):
        """A request to a service host with this user's token."""
        return gw_request(self.server, "GET", svc_host(self.server, service, env), path,
                          token=self.token, **kw)


def sign_up(server, name, role="member"):
    """Adds user `name` with `role` as the admin, signs them in with their
    password and has them make a token of their own (their role's scope)."""
    pw = new_password()
    add_user(server, name, pw, role=role)
    b = Browser(server)
    r = b.sign_in(name, pw)
    assert r.status_code == 303, "sign-in of %s: %d %s" % (name, r.status_code, r.text[:300])
    _, token = member_token(b, name + "-cli")
    config = server.root / ("client-%s.json" % name)
    config.write_text(json.dumps({"server": server.url, "token": token}))
    os.chmod(config, 0o600)
    return User(server, name, role, pw, token, config, b)


def create(user_or_server, project, name, **body):
    """POST /api/v1/envs as the user (or the server's admin); the answer's JSON."""
    body = dict(body, project=project, name=name)
    r = user_or_server.api("POST", "envs", json=body)
    assert r.status_code == 201, "create %s: %d %s" % (name, r.status_code, r.text)
    return r.json()


def env_of(server, name):
    """The environment as the admin sees it, or None once it is gone."""
    r = server.api("GET", "envs/" + name)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, (name, r.status_code, r.text)
    return r.json()


def wait_ready(server, *names):
    """Waits until every one of `names` is ready (the admin's view)."""
    def ready():
        for name in names:
            env = env_of(server, name)
            assert env is not None, "environment %s vanished" % name
            assert env["phase"] != "failed", "environment %s failed: %s\n%s" % (
                name, env.get("reason"), server.log_tail())
            if env["phase"] != "ready":
                return False
        return True
    wait_until(ready, READY_TIMEOUT_S, "environments %s to be ready" % (names,), 0.1)


def names_listed(who, all=False):
    r = who.api("GET", "envs?all=1" if all else "envs")
    assert r.status_code == 200, r.text
    return [e["name"] for e in r.json()["envs"]]


def event_targets(who):
    r = who.api("GET", "events?limit=1000")
    assert r.status_code == 200, r.text
    return {e["target"] for e in r.json()["events"]}


def link_url(server, service, env, t):
    return "http://%s/_eph/link?t=%s" % (svc_host(server, service, env), t)


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64url_encode(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def link_value(url):
    """The signed value t of a share link's URL."""
    values = parse_qs(urlsplit(url).query).get("t")
    assert values and len(values) == 1, url
    return values[0]


def follow_link(server, url):
    """An anonymous browser opens a share link: (response, its eph_host cookie)."""
    b = Browser(server)
    r = b.get(url)
    cookie = b.cookie(urlsplit(url).netloc, "eph_host")
    return r, cookie


def with_cookie(server, service, env, cookie, path="/"):
    """A request with nothing but this host cookie, on a fresh connection."""
    return Browser(server).get("http://%s%s" % (svc_host(server, service, env), path),
                               accept=JSON, cookies={"eph_host": cookie},
                               headers={"Connection": "close"})


def echoed_role(r):
    """X-Ephemera-Role and -User as the echo service received them."""
    assert r.status_code == 200, (r.status_code, r.text[:300])
    got = {name.lower(): value for name, value in r.json()["headers"]}
    return got.get("x-ephemera-role"), got.get("x-ephemera-user")


def no_trace_of(server, name, accepted):
    """Environment `name` was refused: not listed (deleted ones too), no
    directory, no process, no event; every directory and process belongs to
    an environment of `accepted`."""
    assert name not in names_listed(server, all=True), server.envs(all=True)
    assert server.env_dir(name) is None, sorted(os.listdir(server.data_dir / "envs"))
    r = server.api("GET", "events?target=env/" + name)
    json_error(r, 404, "not_found")
    assert "env/" + name not in event_targets(server)
    envs_dir = server.data_dir / "envs"
    dirs = sorted(os.listdir(envs_dir)) if envs_dir.is_dir() else []
    strays = [d for d in dirs if d.split("-", 1)[1] not in accepted]
    assert not strays, "directories of refused environments: %s" % strays
    ids = {server.env_id(n) for n in accepted}
    strays = [p for p in server.processes() if p.env_id not in ids]
    assert not strays, "processes of refused environments: %s" % strays


# ------------------------------------------------------------------ roles


def test_11_01_a_viewer_cannot_create_an_environment(tiny):
    server = tiny
    vic = sign_up(server, "vic", "viewer")

    # Refused by role before the body is looked at: even an empty one.
    for body in ({"project": "tiny", "name": "v1"}, {}):
        r = vic.api("POST", "envs", json=body)
        assert json_error(r, 403, "forbidden") == VIEWERS_CANNOT_CREATE, (body, r.text)
    r = vic.eph("up", "tiny", "--name", "v2")
    assert r.rc == 1, str(r)
    assert r.err.strip() == "eph: " + VIEWERS_CANNOT_CREATE, str(r)
    for name in ("v1", "v2"):
        no_trace_of(server, name, accepted=())

    # A viewer reads: projects and environments.
    r = vic.api("GET", "projects")
    assert r.status_code == 200 and [p["name"] for p in r.json()["projects"]] == ["tiny"], r.text
    assert vic.api("GET", "envs").status_code == 200


def test_11_02_only_the_owner_or_an_admin_changes_an_environment(tiny):
    server = tiny
    alice, bob = sign_up(server, "alice"), sign_up(server, "bob")
    vic = sign_up(server, "vic", "viewer")
    create(alice, "tiny", "a1")
    r = bob.eph("up", "tiny", "--name", "b1")
    assert r.rc == 0, str(r)
    assert env_of(server, "a1")["owner"] == "alice" and env_of(server, "b1")["owner"] == "bob"

    # bob (a member) and vic (a viewer) see alice's team environment but may
    # not change it: 403, never 404 (they see it).
    for user in (bob, vic):
        r = user.api("GET", "envs/a1")
        assert r.status_code == 200, (user.name, r.status_code, r.text)
        for method, path, body in (("DELETE", "envs/a1", None),
                                   ("POST", "envs/a1/visibility", {"visibility": "private"}),
                                   ("POST", "envs/a1/links", {"ttl": "1h"}),
                                   ("POST", "envs/a1/extend", {"by": "1h"})):
            r = user.api(method, path, json=body)
            assert json_error(r, 403, "forbidden") == CHANGE_REFUSED % "a1", \
                (user.name, method, path, r.text)
    for args in (("rm", "a1"), ("visibility", "a1", "private"), ("link", "a1", "--ttl", "1h")):
        r = bob.eph(*args)
        assert r.rc == 1 and r.err.strip() == "eph: " + CHANGE_REFUSED % "a1", str(r)
    a1 = env_of(server, "a1")
    assert (a1["visibility"], a1["desired"]) == ("team", "running"), a1
    actions = [e["action"] for e in server.events("env/a1")]
    assert not {"env.delete", "env.visibility", "env.share", "env.extend"} & set(actions), actions

    # The owner deletes their own; an admin deletes anyone's.
    r = alice.api("DELETE", "envs/a1")
    assert r.status_code == 202 and r.json()["desired"] == "deleted", (r.status_code, r.text)
    r = server.api("DELETE", "envs/b1")
    assert r.status_code == 202 and r.json()["desired"] == "deleted", (r.status_code, r.text)
    deleters = {e["target"]: e["actor"] for e in server.events() if e["action"] == "env.delete"}
    assert deleters == {"env/a1": "alice", "env/b1": "admin"}, deleters
    wait_until(lambda: not names_listed(server), 60, "a1 and b1 to be deleted", 0.1)


# ------------------------------------------------------------------ visibility


def test_11_03_a_private_environment_does_not_exist_for_others(echo):
    server = echo
    alice, bob = sign_up(server, "alice"), sign_up(server, "bob")
    vic = sign_up(server, "vic", "viewer")
    r = alice.eph("up", "echo", "--name", "hush", "--visibility", "private")
    assert r.rc == 0, str(r)
    create(alice, "echo", "open")
    wait_ready(server, "hush", "open")
    assert env_of(server, "hush")["visibility"] == "private"
    assert env_of(server, "open")["visibility"] == "team"

    # The owner and the admin see it everywhere.
    for who in (alice, server):
        assert names_listed(who) == ["hush", "open"], names_listed(who)
        assert who.api("GET", "envs/hush").status_code == 200
        r = who.api("GET", "envs/hush/logs/web")
        assert r.status_code == 200, (r.status_code, r.text)
        r = who.api("GET", "events?target=env/hush")
        assert r.status_code == 200 and any(e["action"] == "env.create"
                                            for e in r.json()["events"]), r.text
        assert "env/hush" in event_targets(who)
    for token in (alice.token, server.token):
        r = gw_request(server, "GET", svc_host(server, "web", "hush"), "/x", token=token)
        assert r.status_code == 200, (r.status_code, r.text[:300])

    # Another member and a viewer: `team` is there, `private` is not, and
    # every answer about it is the one for a name nobody uses.
    nobody = "nosuch"
    for user in (bob, vic):
        assert names_listed(user) == ["open"], (user.name, names_listed(user))
        r = user.eph("ls", "-o", "json")
        assert r.rc == 0, str(r)
        listed = r.json()["envs"] if isinstance(r.json(), dict) else r.json()
        assert [e["name"] for e in listed] == ["open"], str(r)
        r = user.eph("ls")
        assert r.rc == 0 and "open" in r.out and "hush" not in r.out, str(r)
        assert user.api("GET", "envs/open").status_code == 200
        assert user.api("GET", "envs/open/logs/web").status_code == 200
        assert "env/open" in event_targets(user)
        assert "env/hush" not in event_targets(user), user.name

        for method, path, body in (("GET", "envs/%s", None), ("GET", "envs/%s/logs/web", None),
                                   ("GET", "envs/%s/logs/web?follow=1", None),
                                   ("GET", "events?target=env/%s", None),
                                   ("DELETE", "envs/%s", None),
                                   ("POST", "envs/%s/visibility", {"visibility": "team"}),
                                   ("POST", "envs/%s/links", {}),
                                   ("POST", "envs/%s/extend", {"by": "1h"})):
            r_hush = user.api(method, path % "hush", json=body)
            r_none = user.api(method, path % nobody, json=body)
            msg = json_error(r_hush, 404, "not_found")
            assert msg == "environment 'hush' not found", (user.name, method, path, msg)
            assert json_error(r_none, 404, "not_found") == msg.replace("hush", nobody), \
                (user.name, method, path, r_none.text)
        r = user.eph("get", "hush")
        assert r.rc == 1 and r.err.strip() == "eph: environment 'hush' not found", str(r)
        r = user.eph("logs", "hush", "web")
        assert r.rc == 1 and r.err.strip() == "eph: environment 'hush' not found", str(r)

        # At its URL: the gateway's 404, the same as for no environment at all.
        r_hush = user.gw("web", "hush", "/x", headers={"Accept": JSON})
        r_none = user.gw("web", nobody, "/x", headers={"Accept": JSON})
        assert r_hush.status_code == r_none.status_code == 404, \
            (user.name, r_hush.status_code, r_hush.text[:300], r_none.status_code)
        assert r_hush.content == r_none.content, (r_hush.text, r_none.text)
        r = user.gw("web", "open", "/x")
        assert r.status_code == 200, (user.name, r.status_code, r.text[:300])

    # ... and signed in with a browser (the ticket's way): 404 for the private
    # one, the page for the team one.
    web_hush = "http://%s/x" % svc_host(server, "web", "hush")
    r, steps = Browser(server).visit(web_hush, "bob", bob.password)
    assert r.status_code == 404 and "hush" not in r.text, (steps, r.text[:300])
    r, steps = Browser(server).visit(web_hush, "alice", alice.password)
    assert r.status_code == 200, steps

    # Made `team` by its owner, it appears to the others, at its URL too;
    # made private again, it is gone again.
    r = alice.api("POST", "envs/hush/visibility", json={"visibility": "team"})
    assert r.status_code == 200 and r.json()["visibility"] == "team", r.text
    assert names_listed(bob) == ["hush", "open"]
    wait_until(lambda: bob.gw("web", "hush").status_code == 200, GATEWAY_TIMEOUT_S,
               "bob to reach hush once it is team")
    r = alice.eph("visibility", "hush", "private")
    assert r.rc == 0 and "environment hush is now private" in r.out, str(r)
    assert names_listed(vic) == ["open"]
    wait_until(lambda: vic.gw("web", "hush").status_code == 404, GATEWAY_TIMEOUT_S,
               "vic to get 404 from hush once it is private again")
    details = [e["detail"] for e in server.events("env/hush") if e["action"] == "env.visibility"]
    assert details == ["private -> team", "team -> private"], details


# ------------------------------------------------------------------ share links


def test_11_04_a_share_link_opens_one_service_host_until_it_expires(echo):
    server = echo
    alice, bob = sign_up(server, "alice"), sign_up(server, "bob")
    create(alice, "echo", "s1")
    create(alice, "echo", "s2")
    wait_ready(server, "s1", "s2")

    # Sharing a team environment makes it `link`: still seen by every
    # signed-in user, and by whoever holds the link.
    r = alice.api("POST", "envs/s1/links", json={"ttl": "10m", "service": "web"})
    assert r.status_code == 201, (r.status_code, r.text)
    link = r.json()
    prefix = "http://%s/_eph/link?t=" % svc_host(server, "web", "s1")
    assert link["url"].startswith(prefix), link
    assert (link["env"], link["service"], link["visibility"]) == ("s1", "web", "link"), link
    assert 0 < link["expires_at_ms"] - time.time() * 1000 <= 600 * 1000, link
    assert env_of(server, "s1")["visibility"] == "link"
    events = [(e["action"], e["detail"]) for e in server.events("env/s1")]
    assert ("env.visibility", "team -> link") in events and ("env.share", "link for 10m") \
        in events, events
    assert "s1" in names_listed(bob) and bob.gw("web", "s1").status_code == 200

    # A client with no account follows it: a cookie for this host alone that
    # ends with the link, and on to the service, which sees a `link` visitor.
    r, cookie = follow_link(server, link["url"])
    assert r.status_code == 302 and r.headers["Location"] == "/", (r.status_code, r.text[:300])
    (_, value, attrs), = [c for c in r.set_cookies if c[0] == "eph_host"]
    assert value == cookie and "httponly" in attrs and "domain" not in attrs, r.set_cookies
    assert 0 < int(attrs["max-age"]) <= 600, attrs
    assert echoed_role(with_cookie(server, "web", "s1", cookie, "/page")) == ("link", None)

    # The cookie opens nothing else: not another environment's host, not
    # another service's host; the link itself does not open another
    # environment, even one that is shared too; and without the cookie the
    # service is closed.
    r = alice.api("POST", "envs/s2/links", json={"ttl": "10m"})
    assert r.status_code == 201 and r.json()["visibility"] == "link", r.text
    for svc, env in (("web", "s2"), ("api", "s2"), ("api", "s1")):
        r = with_cookie(server, svc, env, cookie)
        json_error(r, 401, "unauthorized")
    t = link_value(link["url"])
    for svc, env in (("web", "s2"), ("api", "s2")):
        r, other = follow_link(server, link_url(server, svc, env, t))
        assert r.status_code == 403 and other is None, (svc, env, r.status_code, r.text[:300])
    r = Browser(server).get("http://%s/" % svc_host(server, "web", "s1"), accept=JSON)
    json_error(r, 401, "unauthorized")

    # A tampered link is refused, and so is a cookie it would have given.
    head, sep, sig = t.rpartition(".")
    assert head and sep, t
    for bad in (flip(t, len(t) // 2), flip(t, len(t) - 3), head + sep, head + sep + sig[:-4],
                t[:-1], "l1." + head.split(".", 1)[-1] + ".AAAA", ""):
        r, got = follow_link(server, prefix + bad)
        assert r.status_code == 403 and got is None, (bad, r.status_code, r.text[:300])
    json_error(with_cookie(server, "web", "s1", flip(cookie, len(cookie) // 2)), 401,
               "unauthorized")
    # ... and so is one whose readable part is rewritten under the old
    # signature: a later expiry, or s2 instead of s1.
    version, payload, sig = t.split(".")
    fields = b64url_decode(payload).split(b"\n")
    assert fields[1:2] == [b"s1"] and fields[-1].isdigit(), fields
    assert fields[0] == str(server.env_id("s1")).encode(), fields
    s2_id = str(server.env_id("s2")).encode()
    later = fields[:-1] + [str(int(fields[-1]) + 86400 * 1000).encode()]
    other = [s2_id, b"s2"] + fields[2:]
    for forged, env in ((later, "s1"), (other, "s2")):
        bad = ".".join((version, b64url_encode(b"\n".join(forged)), sig))
        r, got = follow_link(server, link_url(server, "web", env, bad))
        assert r.status_code == 403 and got is None, (forged, r.status_code, r.text[:300])

    # Links only for what one may change: not bob's to make; not of a
    # private environment.
    r = bob.api("POST", "envs/s2/links", json={"ttl": "1h"})
    assert json_error(r, 403, "forbidden") == CHANGE_REFUSED % "s2", r.text
    r = alice.api("POST", "envs/s2/visibility", json={"visibility": "private"})
    assert r.status_code == 200, r.text
    r = alice.api("POST", "envs/s2/links", json={"ttl": "1h"})
    assert json_error(r, 409, "conflict") == \
        "environment 's2' is private: make it team or link first", r.text

    # A short link (eph link --ttl 3s): works at once, refused after it expires,
    # link and cookie alike, while the long one goes on working.
    made = time.time()
    r = alice.eph("link", "s1", "--ttl", "3s")
    assert r.rc == 0, str(r)
    short_url = r.out.strip()
    assert r.out == short_url + "\n" and short_url.startswith(prefix), str(r)
    assert r.err.startswith("anyone with this link can open s1 until "), str(r)
    r, short_cookie = follow_link(server, short_url)
    assert time.time() - made < 2.5, "too slow to use a 3-second link: %.1fs" % (
        time.time() - made)
    assert r.status_code == 302 and short_cookie, (r.status_code, r.text[:300])
    assert with_cookie(server, "web", "s1", short_cookie).status_code == 200

    def refused():
        link_gone = follow_link(server, short_url)[0].status_code == 403
        cookie_gone = with_cookie(server, "web", "s1", short_cookie).status_code == 401
        return link_gone and cookie_gone
    wait_until(refused, EXPIRY_TIMEOUT_S, "the 3-second link and its cookie to be refused", 0.2)
    assert time.time() - made >= 2.0, "refused %.1fs after it was made, before its 3s" % (
        time.time() - made)
    assert echoed_role(with_cookie(server, "web", "s1", cookie)) == ("link", None)

    # Made `team` again, every link of s1 is withdrawn at once.
    r = alice.api("POST", "envs/s1/visibility", json={"visibility": "team"})
    assert r.status_code == 200, r.text
    wait_until(lambda: with_cookie(server, "web", "s1", cookie).status_code == 404,
               GATEWAY_TIMEOUT_S, "the long link's cookie to be refused once s1 is team")
    r, got = follow_link(server, link["url"])
    assert r.status_code == 403 and got is None, (r.status_code, r.text[:300])


# ------------------------------------------------------------------ guardrails


def test_11_05_quotas_and_max_ttl_refuse_and_create_nothing(guarded):
    server = guarded
    alice = sign_up(server, "alice")
    create(alice, "tiny", "q1")

    # The second environment of a member: 403 `quota`, checked before the
    # project (an unknown one gets the same answer) and the git work.
    want = ("quota reached: you have 1 environment and the limit is 1; "
            "delete one first (eph rm NAME)")
    for body in ({"project": "tiny", "name": "q2"}, {"project": "nosuch", "name": "q2"}):
        r = alice.api("POST", "envs", json=body)
        assert json_error(r, 403, "quota") == want, (body, r.text)
    r = alice.eph("up", "tiny", "--name", "q3")
    assert r.rc == 1 and r.err.strip() == "eph: " + want, str(r)
    assert "reason=quota" in server.log_text(), server.log_tail()
    wait_ready(server, "q1")
    for name in ("q2", "q3"):
        no_trace_of(server, name, accepted=("q1",))

    # Admins have no quota of their own, but the server's counts everyone.
    create(server, "tiny", "x1")
    create(server, "tiny", "x2")
    r = server.api("POST", "envs", json={"project": "tiny", "name": "x3"})
    assert json_error(r, 403, "quota") == "this server's limit of 3 environments is reached", \
        r.text
    no_trace_of(server, "x3", accepted=("q1", "x1", "x2"))

    # No environment, link or extension beyond max_ttl (1h); the body is
    # checked before the quota.
    r = server.api("POST", "envs", json={"project": "tiny", "name": "x4", "ttl": "2h"})
    assert json_error(r, 400, "invalid") == "ttl 2h exceeds the server maximum of 1h", r.text
    r = alice.eph("up", "tiny", "--name", "q4", "--ttl", "2h")
    assert r.rc == 1 and r.err.strip() == "eph: ttl 2h exceeds the server maximum of 1h", str(r)
    r = alice.api("POST", "envs/q1/links", json={"ttl": "2h"})
    assert json_error(r, 400, "invalid") == "ttl 2h exceeds the server maximum of 1h", r.text
    r = alice.api("POST", "envs/q1/links", json={})
    assert r.status_code == 201, r.text
    assert r.json()["expires_at_ms"] <= time.time() * 1000 + 3600 * 1000 + 5000, r.json()
    before = time.time()
    r = alice.api("POST", "envs/q1/extend", json={"by": "5h"})
    assert r.status_code == 200, r.text
    expires = r.json()["expires_at_ms"] / 1000
    assert before + 3500 <= expires <= time.time() + 3600 + 1, (before, expires)

    # A deletion frees the place at once (being deleted no longer counts).
    r = alice.eph("rm", "q1")
    assert r.rc == 0, str(r)
    create(alice, "tiny", "q5")
    assert {"q1", "q5", "x1", "x2"} >= set(names_listed(server)), names_listed(server)
    wait_until(lambda: "q1" not in names_listed(server), 60, "q1 to be deleted", 0.1)


def test_11_06_projects_only_from_allowed_repos(server, repos):
    alice = sign_up(server, "alice")
    outside = make_repo(shared_tmp("outside-") / "rogue",
                        {"ephemera.yaml": (repos.trivial / "ephemera.yaml").read_text()})
    inside = repos.trivial

    want = "repository '%s' is not in the server's allowed_repos" % outside
    r = server.api("POST", "projects", json={"name": "rogue", "repo": str(outside)})
    assert json_error(r, 403, "forbidden") == want, r.text
    r = server.eph("project", "add", "rogue", "--repo", outside)
    assert r.rc == 1 and r.err.strip() == "eph: " + want, str(r)

    # Registering is for admins, whatever the repository.
    r = alice.api("POST", "projects", json={"name": "tiny", "repo": str(inside)})
    assert json_error(r, 403, "forbidden") == "only admins can register projects", r.text
    r = alice.eph("project", "add", "tiny", "--repo", inside)
    assert r.rc == 1 and r.err.strip() == "eph: only admins can register projects", str(r)

    r = server.api("GET", "projects")
    assert r.status_code == 200 and r.json()["projects"] == [], r.text
    assert not [e for e in server.events() if e["action"] == "project.add"], server.events()
    assert not (server.data_dir / "git" / "rogue.git").exists()


# ------------------------------------------------------------------ tokens


def test_11_07_a_token_acts_with_at_most_its_scope(tiny):
    server = tiny
    alice = sign_up(server, "alice")
    create(alice, "tiny", "mine", visibility="private")
    wait_ready(server, "mine")

    # alice's viewer-scoped token: reads, but neither creates nor changes,
    # not even her own environment.
    r = alice.api("POST", "tokens", json={"name": "ro", "scope": "viewer"})
    assert r.status_code == 201 and r.json()["scope"] == "viewer", r.text
    ro = r.json()["token"]
    r = server.api("GET", "whoami", token=ro)
    assert (r.json()["name"], r.json()["role"]) == ("alice", "viewer"), r.text
    r = server.api("POST", "envs", token=ro, json={"project": "tiny", "name": "ro1"})
    assert json_error(r, 403, "forbidden") == VIEWERS_CANNOT_CREATE, r.text
    assert server.api("GET", "envs/mine", token=ro).status_code == 200
    for method, path, body in (("DELETE", "envs/mine", None),
                               ("POST", "envs/mine/visibility", {"visibility": "team"}),
                               ("POST", "envs/mine/extend", {"by": "1h"})):
        r = server.api(method, path, token=ro, json=body)
        assert json_error(r, 403, "forbidden") == CHANGE_REFUSED % "mine", (method, path, r.text)
    no_trace_of(server, "ro1", accepted=("mine",))

    # No token above the role it is made with.
    r = alice.api("POST", "tokens", json={"name": "up", "scope": "admin"})
    assert json_error(r, 403, "forbidden") == \
        "a token's scope cannot be above your role (member)", r.text
    r = server.api("POST", "tokens", token=ro, json={"name": "up", "scope": "member"})
    assert json_error(r, 403, "forbidden") == \
        "a token's scope cannot be above your role (viewer)", r.text

    # The CLI's way: `eph token create --scope viewer`, then `eph up` with it.
    r = alice.eph("token", "create", "--name", "ro-cli", "--scope", "viewer", "--ttl", "1h")
    assert r.rc == 0 and r.out.strip().startswith("eph_"), str(r)
    cfg = server.root / "client-alice-ro.json"
    cfg.write_text(json.dumps({"server": server.url, "token": r.out.strip()}))
    os.chmod(cfg, 0o600)
    r = eph_as(server, cfg, "up", "tiny", "--name", "ro2")
    assert r.rc == 1 and r.err.strip() == "eph: " + VIEWERS_CANNOT_CREATE, str(r)

    # An admin's token scoped down is no admin: it does not see alice's
    # private environment (API and URL), and manages neither users nor projects.
    scoped = {}
    for scope in ("viewer", "member"):
        r = server.api("POST", "tokens", json={"name": "adm-" + scope, "scope": scope})
        assert r.status_code == 201, r.text
        scoped[scope] = r.json()["token"]
    for scope, token in scoped.items():
        json_error(server.api("GET", "envs/mine", token=token), 404, "not_found")
        r = server.api("GET", "envs", token=token)
        assert r.status_code == 200 and r.json()["envs"] == [], (scope, r.text)
        r = gw_request(server, "GET", svc_host(server, "app", "mine"), token=token)
        assert r.status_code == 404, (scope, r.status_code, r.text[:300])
        r = server.api("POST", "users", token=token, json={"name": "eve", "role": "admin"})
        assert json_error(r, 403, "forbidden") == "only admins can manage users", r.text
        r = server.api("POST", "projects", token=token,
                       json={"name": "tiny2", "repo": str(server.root)})
        assert json_error(r, 403, "forbidden") == "only admins can register projects", r.text
    r = gw_request(server, "GET", svc_host(server, "app", "mine"))
    assert r.status_code == 200, (r.status_code, r.text[:300])
    r = gw_request(server, "GET", svc_host(server, "app", "mine"), token=alice.token)
    assert r.status_code == 200, (r.status_code, r.text[:300])


# ------------------------------------------------------------------ found by these tests
#
# Each test below checked what the documents promise and failed when it was
# written; each passes since its bug was fixed.


def test_11_08_allowed_repos_cannot_be_escaped_with_dot_dot(server, repos):
    outside = make_repo(shared_tmp("outside-") / "rogue",
                        {"ephemera.yaml": (repos.trivial / "ephemera.yaml").read_text()})
    # DIR/../<outside's path under DIR's parent>: the same repository, spelt
    # to look as if it were under the allowed DIR.
    sneaky = "%s/../%s" % (repos.dir, outside.relative_to(repos.dir.parent))
    assert Path(os.path.normpath(sneaky)) == outside, sneaky
    r = server.api("POST", "projects", json={"name": "rogue", "repo": sneaky})
    assert json_error(r, 403, "forbidden") == \
        "repository '%s' is not in the server's allowed_repos" % sneaky, r.text


def test_11_09_a_withdrawn_share_link_stays_withdrawn(echo):
    server = echo
    alice = sign_up(server, "alice")
    create(alice, "echo", "s1")
    wait_ready(server, "s1")
    r = alice.api("POST", "envs/s1/links", json={"ttl": "10m"})
    assert r.status_code == 201, r.text
    old_url = r.json()["url"]
    r, old_cookie = follow_link(server, old_url)
    assert r.status_code == 302 and old_cookie, (r.status_code, r.text[:300])

    # Withdrawn (docs/api.md: "setting it back to team or private withdraws
    # all its links at once"), then shared anew with a fresh link.
    r = alice.api("POST", "envs/s1/visibility", json={"visibility": "private"})
    assert r.status_code == 200, r.text
    wait_until(lambda: with_cookie(server, "web", "s1", old_cookie).status_code == 404,
               GATEWAY_TIMEOUT_S, "the withdrawn link's cookie to be refused")
    r = alice.api("POST", "envs/s1/visibility", json={"visibility": "team"})
    assert r.status_code == 200, r.text
    r = alice.api("POST", "envs/s1/links", json={"ttl": "10m"})
    assert r.status_code == 201, r.text
    r, new_cookie = follow_link(server, r.json()["url"])
    assert r.status_code == 302 and new_cookie, (r.status_code, r.text[:300])
    assert echoed_role(with_cookie(server, "web", "s1", new_cookie)) == ("link", None)

    # The old link and its cookie stay withdrawn.
    r = with_cookie(server, "web", "s1", old_cookie)
    assert r.status_code == 404, ("the withdrawn link's cookie", r.status_code, r.text[:200])
    r, got = follow_link(server, old_url)
    assert r.status_code == 403 and got is None, ("the withdrawn link", r.status_code)
