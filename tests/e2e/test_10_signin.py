"""test_10_signin.py - sign-in with the real `eph serve` and auth on (the
default, as the `server` fixture runs it): local users and passwords, the
browser's way from a service URL through /auth/ticket and /login back to the
service, host cookies bound to their host, what a service receives, bearer
tokens on environment URLs, sign-out and removed users, and `eph login`.

The browser is driven by hand with requests (Browser below): every request
goes to 127.0.0.1:PORT with the Host header of its URL, redirects are
followed one at a time and asserted, and cookies are kept per host, host-only,
as a browser keeps a cookie without a Domain attribute. The pages' POSTs send
`Origin: http://localhost:PORT` as docs/auth.md asks of scripts.
"""
import json
import os
import re
import secrets
import stat
import subprocess
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import parse_qs, quote, urljoin, urlsplit

import pytest
import requests

from conftest import (CLI_TIMEOUT_S, EPH_BIN, Result, clean_environ, create_env, gw_request,
                      make_repo, sanitizer_report, svc_host)

HTML = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
JSON = "application/json"
BAD_LOGIN = "wrong user name or password"
RD_REFUSED = "this sign-in link points outside this server"

# A service that answers every path with what it received, for the checks of
# what the gateway lets through to a service: method, path and query, and
# the request headers as [name, value] pairs in order.
ECHO_PY = r'''
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "echo/1"

    def log_message(self, fmt, *args):
        pass

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = (json.dumps({"method": self.command, "path": self.path,
                            "headers": [[k, v] for k, v in self.headers.items()]})
                + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True


Server(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''

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


@pytest.fixture(scope="module")
def echo_repo(repos):
    return make_repo(repos.dir / "signin-echo", {"ephemera.yaml": ECHO_TEMPLATE,
                                                 "echo.py": ECHO_PY})


@pytest.fixture
def echo(server, echo_repo):
    """The server with the two-service echo project registered as `echo`."""
    r = server.eph("project", "add", "echo", "--repo", echo_repo)
    assert r.rc == 0, str(r)
    return server


# ------------------------------------------------------------------ helpers


def control_host(server):
    return "localhost:%d" % server.port


def control_url(server, path="/"):
    return "http://localhost:%d%s" % (server.port, path)


def origin(server):
    """The origin of public_base: what the pages' POSTs must carry."""
    return "http://localhost:%d" % server.port


def service_url(server, service, env, path="/"):
    return "http://%s%s" % (svc_host(server, service, env), path)


def new_password():
    return "pw-%s-never-logged" % secrets.token_hex(10)


def parse_set_cookie(line):
    """(name, value, {lower-case attribute: value}) of a Set-Cookie line."""
    parts = [p.strip() for p in line.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.strip().lower()] = v.strip()
    return name.strip(), value.strip(), attrs


def flip(text, i):
    """text with the character at i changed (case swapped, or another one): a
    different base64url character whose high bits differ too."""
    c = text[i]
    if c.isalpha():
        d = c.swapcase()
    elif c.isdigit():
        d = "x"
    else:
        d = "Q"
    return text[:i] + d + text[i + 1:]


class Browser:
    """A browser driven by hand: cookies per host (host-only), no redirect
    followed unless asked, every request to 127.0.0.1 with the URL's Host."""

    def __init__(self, server):
        self.server = server
        self.http = requests.Session()
        self.http.trust_env = False        # no proxies for loopback
        # requests' own jar would keep every cookie for "127.0.0.1" and mix the
        # hosts up: it keeps none, this class does the browser's part.
        self.http.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self.jar = {}                      # host -> {name: value}

    def cookie(self, host, name):
        return self.jar.get(host.lower(), {}).get(name)

    def request(self, method, url, accept=HTML, headers=None, cookies=None, **kw):
        """One request, no redirects followed. cookies None: the jar's for the
        URL's host; a dict: exactly those. Set-Cookie answers go to the jar;
        the response gets .set_cookies, [(name, value, attrs)]."""
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.netloc.endswith(":%d" % self.server.port), url
        host = parts.netloc.lower()
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        h = {"Host": parts.netloc}
        if accept:
            h["Accept"] = accept
        jar = self.jar.get(host, {}) if cookies is None else cookies
        if jar:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in jar.items())
        h.update(headers or {})
        r = self.http.request(method, "http://127.0.0.1:%d%s" % (self.server.port, target),
                              headers=h, allow_redirects=False, timeout=30, **kw)
        self.http.cookies.clear()
        r.set_cookies = [parse_set_cookie(line) for line in r.raw.headers.getlist("Set-Cookie")]
        for name, value, attrs in r.set_cookies:
            gone = value == "" or (attrs.get("max-age", "1").lstrip("-").isdigit()
                                   and int(attrs.get("max-age", "1")) <= 0)
            if gone:
                self.jar.get(host, {}).pop(name, None)
            else:
                self.jar.setdefault(host, {})[name] = value
        return r

    def get(self, url, **kw):
        return self.request("GET", url, **kw)

    def post_form(self, path, fields, **kw):
        """A POST of a form on the control host, from one of its own pages."""
        headers = {"Origin": origin(self.server)}
        headers.update(kw.pop("headers", {}))
        return self.request("POST", control_url(self.server, path), data=fields,
                            headers=headers, **kw)

    def sign_in(self, user, password, rd=None, **kw):
        fields = {"user": user, "password": password}
        if rd is not None:
            fields["rd"] = rd
        return self.post_form("/login", fields, **kw)

    def api(self, method, path, **kw):
        """/api/v1/<path> on the control host with this browser's session cookie
        (and X-Requested-With, which a cookie's POST needs)."""
        headers = {"X-Requested-With": "XMLHttpRequest"}
        headers.update(kw.pop("headers", {}))
        return self.request(method, control_url(self.server, "/api/v1/" + path), accept=JSON,
                            headers=headers, **kw)

    def visit(self, url, user=None, password=None, max_steps=8):
        """Opens url the way a browser does: follows each redirect, and signs in
        with user/password when sent to the sign-in page. Returns the last
        response and the steps [(method, url, status)]."""
        steps = []
        method, rd = "GET", None
        for _ in range(max_steps):
            if method == "POST":
                r = self.sign_in(user, password, rd)
            else:
                r = self.get(url)
            steps.append((method, url, r.status_code))
            if r.status_code not in (302, 303):
                return r, steps
            url = urljoin(url, r.headers["Location"])
            method = "GET"
            parts = urlsplit(url)
            if parts.netloc == control_host(self.server) and parts.path == "/login":
                assert user is not None, "sent to sign in: %s" % steps
                method, rd = "POST", parse_qs(parts.query).get("rd", ["/"])[0]
        raise AssertionError("too many redirects: %s" % steps)


def add_user(server, name, password, role="member", email=None):
    """POST /api/v1/users as the admin; returns the answer's JSON."""
    body = {"name": name, "role": role, "password": password}
    if email:
        body["email"] = email
    r = server.api("POST", "users", json=body)
    assert r.status_code in (200, 201), "add user %s: %d %s" % (name, r.status_code, r.text)
    return r.json()


def member_token(browser, name):
    """A token the browser's signed-in user makes for themselves: (id, token)."""
    r = browser.api("POST", "tokens", json={"name": name})
    assert r.status_code in (200, 201), "create token: %d %s" % (r.status_code, r.text)
    body = r.json()
    assert body["token"].startswith("eph_"), body
    return body["id"], body["token"]


def echoed(r):
    """{lower-case header name: [values]} of what the echo service received."""
    assert r.status_code == 200, (r.status_code, r.text[:500])
    got = {}
    for name, value in r.json()["headers"]:
        got.setdefault(name.lower(), []).append(value)
    return got


def json_error(r, status, code=None):
    """The message of an error in the API's shape, {"error": {"code", "message"}}."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    err = r.json()["error"]
    assert code is None or err["code"] == code, err
    assert err["message"], err
    return err["message"]


def start_envs(server, project, *names):
    """Creates the environments at once and waits until each is ready."""
    for name in names:
        create_env(server, project, name)
    for name in names:
        server.wait_phase(name)


def eph_as(server, config, *args, stdin=None):
    """The CLI with its own client config file (the fixture's admin config is
    left alone), stdin from `stdin` if given."""
    args = tuple(str(a) for a in args)
    try:
        p = subprocess.run([str(EPH_BIN), *args], input=stdin.encode() if stdin is not None
                           else None, stdin=None if stdin is not None else subprocess.DEVNULL,
                           capture_output=True, timeout=CLI_TIMEOUT_S, cwd=server.root,
                           env=clean_environ(EPH_CONFIG=str(config)))
    except subprocess.TimeoutExpired as e:
        raise AssertionError("eph %s did not finish in %ds" % (" ".join(args), CLI_TIMEOUT_S)) \
            from e
    res = Result(p.returncode, p.stdout.decode(errors="replace"),
                 p.stderr.decode(errors="replace"), args)
    mark = sanitizer_report(res.err)
    assert mark is None, "sanitizer report (%s) from the CLI:\n%s" % (mark, res)
    return res


def stored_bytes(server):
    """Every byte the server keeps on disk: each file of its data directory
    (the SQLite database, its -wal and -shm, environment directories) and its
    stdout and stderr."""
    found = {}
    for dirpath, _, files in os.walk(server.data_dir):
        for f in files:
            path = os.path.join(dirpath, f)
            try:
                with open(path, "rb") as fh:
                    found[path] = fh.read()
            except OSError:
                pass
    for n in range(1, server.starts + 1):
        for path in (server.stdout_path(n), server.stderr_path(n)):
            found[str(path)] = path.read_bytes()
    return found


def refused_on_service(browser, url, cookies, tries=4):
    """A service URL with only these cookies is treated as signed out, on fresh
    connections (several gateway workers): 401 in JSON for an API client,
    and a browser asking for a page is sent to /auth/ticket."""
    for _ in range(tries):
        r = browser.get(url, accept=JSON, cookies=cookies, headers={"Connection": "close"})
        json_error(r, 401, "unauthorized")
    r = browser.get(url, cookies=cookies, headers={"Connection": "close"})
    assert r.status_code == 302, (r.status_code, r.text[:300])
    assert r.headers["Location"].startswith(control_url(browser.server, "/auth/ticket?rd=")), \
        r.headers


# ------------------------------------------------------------------ tests


def test_10_01_local_password_cookie_lockout_and_no_password_kept(server):
    alice_pw, bob_pw = new_password(), new_password()
    wrong = ["wrong-%d-%s" % (i, secrets.token_hex(6)) for i in range(5)]
    add_user(server, "alice", alice_pw, email="alice@example.com")
    add_user(server, "bob", bob_pw, role="viewer")

    # The right password: a session cookie, HttpOnly and SameSite=Lax, and the
    # browser is sent on (no rd: to /).
    b = Browser(server)
    r = b.sign_in("alice", alice_pw)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    assert r.headers["Location"] == "/", r.headers
    sessions = [c for c in r.set_cookies if c[0] == "eph_session"]
    assert len(sessions) == 1, r.raw.headers.getlist("Set-Cookie")
    _, session, attrs = sessions[0]
    assert re.fullmatch(r"[0-9a-f]+\.[A-Za-z0-9_-]{20,}", session), session   # id.secret
    assert "httponly" in attrs and attrs.get("samesite", "").lower() == "lax", attrs
    assert attrs.get("path") == "/" and "domain" not in attrs and "secure" not in attrs, attrs
    r = b.get(control_url(server, "/"))
    assert r.status_code == 200 and "Signed in as <strong>alice</strong> (member)" in r.text, \
        (r.status_code, r.text[:500])
    r = b.api("GET", "whoami")
    assert r.status_code == 200, r.text
    assert {k: r.json().get(k) for k in ("name", "role", "via")} == \
        {"name": "alice", "role": "member", "via": "session"}, r.json()

    # A wrong password and an unknown user get the same answer.
    anon = Browser(server)
    r_wrong = anon.sign_in("alice", wrong[0])
    r_unknown = anon.sign_in("nosuchuser", wrong[0])
    for r in (r_wrong, r_unknown):
        assert r.status_code == 401, (r.status_code, r.text[:500])
        assert not r.set_cookies, r.set_cookies
        assert '<p class="error">%s</p>' % BAD_LOGIN in r.text, r.text[:1000]
    j_wrong = anon.sign_in("alice", wrong[1], accept=JSON)
    j_unknown = anon.sign_in("nosuchuser", wrong[1], accept=JSON)
    assert j_wrong.status_code == j_unknown.status_code == 401
    assert j_wrong.json() == j_unknown.json(), (j_wrong.text, j_unknown.text)
    assert j_wrong.json()["error"]["message"] == BAD_LOGIN, j_wrong.text

    # Five failures for alice (two above) lock her name: 429 with Retry-After,
    # even with the right password.
    for pw in wrong[2:5]:
        r = anon.sign_in("alice", pw)
        assert r.status_code == 401, (r.status_code, r.text[:300])
    r = anon.sign_in("alice", alice_pw)
    assert r.status_code == 429, (r.status_code, r.text[:500])
    assert not r.set_cookies, r.set_cookies
    retry = r.headers.get("Retry-After", "")
    assert retry.isdigit() and 0 < int(retry) <= 15 * 60, r.headers
    r = anon.sign_in("alice", alice_pw, accept=JSON)
    json_error(r, 429)
    assert r.headers.get("Retry-After", "").isdigit(), r.headers
    # The name is locked, not the address: bob signs in from the same one,
    # and alice's session of before goes on working.
    r = anon.sign_in("bob", bob_pw)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    assert b.api("GET", "whoami").status_code == 200

    # Failures are logged with the name and the address only; no password is
    # in the logs or anywhere on disk (the database stores an argon2id hash,
    # the session only a hash of its secret).
    log = server.log_text()
    assert any("sign-in failed" in line and "alice" in line for line in log.splitlines()), \
        server.log_tail()
    stored = stored_bytes(server)
    db = b"".join(data for path, data in stored.items()
                  if os.path.basename(path).startswith("eph.db"))
    assert b"$argon2id$" in db, "no argon2id hash in the database files"
    secret = session.split(".", 1)[1]
    for pw in [alice_pw, bob_pw, *wrong, secret]:
        for path, data in stored.items():
            assert pw.encode() not in data, "%r is stored in clear in %s" % (pw, path)


def test_10_02_a_service_url_signs_the_browser_in_through_a_one_time_ticket(tiny, repos):
    server = tiny
    pw = new_password()
    add_user(server, "alice", pw)
    start_envs(server, "tiny", "e1")
    url = service_url(server, "app", "e1", "/ephemera.yaml?x=1")
    b = Browser(server)

    # 1. No cookie, a browser asking for a page: off to /auth/ticket.
    r = b.get(url)
    assert r.status_code == 302, (r.status_code, r.text[:500])
    loc = r.headers["Location"]
    prefix = control_url(server, "/auth/ticket?rd=")
    assert loc.startswith(prefix), loc
    assert loc == prefix + quote(url, safe=""), loc
    assert parse_qs(urlsplit(loc).query) == {"rd": [url]}, loc

    # 2. Not signed in: /auth/ticket sends the browser to sign in first.
    r = b.get(loc)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    login = urljoin(loc, r.headers["Location"])
    parts = urlsplit(login)
    assert (parts.netloc, parts.path) == (control_host(server), "/login"), login
    assert parse_qs(parts.query) == {"rd": [url]}, login

    # 3. The sign-in page: a form that carries rd, and form-action lets the
    #    answer's redirect go to the service host.
    r = b.get(login)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html"), r.headers
    assert 'name="user"' in r.text and 'name="password"' in r.text, r.text[:2000]
    assert 'name="rd" value="%s"' % url.replace("&", "&amp;") in r.text, r.text[:2000]
    csp = r.headers.get("Content-Security-Policy", "")
    assert "form-action 'self'" in csp and "http://" + svc_host(server, "app", "e1") in csp, csp
    assert r.headers.get("X-Frame-Options") == "DENY", r.headers
    assert r.headers.get("Cache-Control") == "no-store", r.headers

    # 4. POSTs only from the control host's own pages: without Origin and
    #    Referer, or from a preview (same-site!), 403 and no session.
    fields = {"user": "alice", "password": pw, "rd": url}
    r = b.request("POST", control_url(server, "/login"), data=fields)
    assert r.status_code == 403, (r.status_code, r.text[:500])
    assert "cross-site request refused" in r.text and not r.set_cookies, r.text[:500]
    r = b.request("POST", control_url(server, "/login"), data=fields,
                  headers={"Origin": "http://" + svc_host(server, "app", "e1")})
    assert r.status_code == 403 and not r.set_cookies, (r.status_code, r.text[:500])
    assert b.cookie(control_host(server), "eph_session") is None

    # 5. Signed in: a session cookie, and back through /auth/ticket.
    r = b.sign_in("alice", pw, url)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    assert [c[0] for c in r.set_cookies] == ["eph_session"], r.set_cookies
    _, _, attrs = r.set_cookies[0]
    assert "httponly" in attrs and attrs.get("samesite", "").lower() == "lax", attrs
    ticket_page = urljoin(control_url(server, "/login"), r.headers["Location"])
    parts = urlsplit(ticket_page)
    assert (parts.netloc, parts.path) == (control_host(server), "/auth/ticket"), ticket_page
    assert parse_qs(parts.query) == {"rd": [url]}, ticket_page

    # 6. /auth/ticket hands the session over: to /_eph/auth on the service host.
    r = b.get(ticket_page)
    assert r.status_code == 303, (r.status_code, r.text[:500])
    exchange = r.headers["Location"]
    parts = urlsplit(exchange)
    assert (parts.scheme, parts.netloc, parts.path) == \
        ("http", svc_host(server, "app", "e1"), "/_eph/auth"), exchange
    assert list(parse_qs(parts.query)) == ["ticket"], exchange

    # 7. The gateway claims the ticket: a cookie for this host alone, and on
    #    to the page first asked for.
    r = b.get(exchange)
    assert r.status_code == 302, (r.status_code, r.text[:500])
    assert r.headers["Location"] == "/ephemera.yaml?x=1", r.headers
    hosts = [c for c in r.set_cookies if c[0] == "eph_host"]
    assert len(hosts) == 1, r.raw.headers.getlist("Set-Cookie")
    _, value, attrs = hosts[0]
    assert value and "domain" not in attrs, hosts
    assert "httponly" in attrs and attrs.get("samesite", "").lower() == "lax", attrs
    assert attrs.get("path") == "/", attrs
    assert r.headers.get("Cache-Control") == "no-store", r.headers

    # 8. With that cookie the service answers: the file of the checkout.
    r = b.get(urljoin(exchange, r.headers["Location"]))
    assert r.status_code == 200, (r.status_code, r.text[:500])
    assert r.text == (repos.trivial / "ephemera.yaml").read_text(), r.text[:500]

    # The ticket works once.
    r = Browser(server).get(exchange)
    assert r.status_code == 403, (r.status_code, r.text[:500])
    assert not r.set_cookies, r.set_cookies

    # Without credentials: an API client gets 401 in JSON, and so does a page
    # asked for with a method that is not safe; HEAD is redirected like GET.
    anon = Browser(server)
    json_error(anon.get(url, accept=JSON), 401, "unauthorized")
    json_error(anon.get(url, accept=None), 401, "unauthorized")
    r = anon.request("POST", url, accept=HTML, data=b"x")
    assert r.status_code == 401, (r.status_code, r.text[:300])
    r = anon.request("HEAD", url)
    assert r.status_code == 302 and r.headers["Location"].startswith(prefix), \
        (r.status_code, r.headers)


def test_10_03_host_cookies_are_bound_to_their_host_and_signed(echo):
    server = echo
    pw = new_password()
    add_user(server, "alice", pw)
    start_envs(server, "echo", "e1", "e2")
    web1 = service_url(server, "web", "e1", "/")
    b = Browser(server)
    r, steps = b.visit(web1, "alice", pw)
    assert r.status_code == 200 and r.json()["path"] == "/", (steps, r.text[:300])
    host_cookie = b.cookie(svc_host(server, "web", "e1"), "eph_host")
    session = b.cookie(control_host(server), "eph_session")
    assert host_cookie and session, b.jar

    # Another service of the environment, another environment: not signed in
    # there (the browser would never send it, a thief could).
    for other in (service_url(server, "api", "e1", "/"), service_url(server, "web", "e2", "/")):
        refused_on_service(b, other, {"eph_host": host_cookie}, tries=1)

    # Altered in its payload or in its MAC: refused like no cookie at all.
    purpose, payload, mac = host_cookie.split(".")
    for tampered in (".".join([purpose, flip(payload, len(payload) // 2), mac]),
                     ".".join([purpose, payload, flip(mac, len(mac) // 2)]),
                     host_cookie[:-1]):
        assert tampered != host_cookie
        refused_on_service(b, web1, {"eph_host": tampered}, tries=1)
    # The control host's session cookie counts for nothing on a service host.
    refused_on_service(b, web1, {"eph_session": session}, tries=1)
    # ... and the true cookie still works there.
    r = b.get(web1, accept=JSON, cookies={"eph_host": host_cookie})
    assert r.status_code == 200 and r.json()["path"] == "/", r.text[:300]

    # A tampered session cookie on the control host.
    r = b.api("GET", "whoami", cookies={"eph_session": flip(session, len(session) - 10)})
    json_error(r, 401, "unauthorized")

    # A ticket is bound to its host: refused on another one (which does not
    # use it up), then claimed on its own, then never again.
    r = b.get(control_url(server, "/auth/ticket?rd=" + quote(web1, safe="")))
    assert r.status_code == 303, (r.status_code, r.text[:300])
    exchange = r.headers["Location"]
    ticket_query = urlsplit(exchange).query
    fresh = Browser(server)
    for other in ("api", "e1"), ("web", "e2"):
        r = fresh.get(service_url(server, other[0], other[1], "/_eph/auth?" + ticket_query))
        assert r.status_code == 403 and not r.set_cookies, (other, r.status_code, r.text[:300])
    r = fresh.get(exchange)
    assert r.status_code == 302 and r.headers["Location"] == "/", (r.status_code, r.headers)
    assert fresh.cookie(svc_host(server, "web", "e1"), "eph_host"), fresh.jar
    r = Browser(server).get(exchange)
    assert r.status_code == 403, (r.status_code, r.text[:300])
    # Neither a made-up nor a missing ticket.
    for query in ("", "?ticket=", "?ticket=t1.AAAA.BBBB", "?" + flip(ticket_query, 20),
                  "?ticket=%00", "?ticket=%+1", "?ticket=%zz", "?ticket=t1%00.AAAA"):
        r = Browser(server).get(service_url(server, "web", "e1", "/_eph/auth" + query))
        assert r.status_code == 403 and not r.set_cookies, (query, r.status_code, r.text[:300])


def test_10_04_rd_outside_the_server_is_refused(server):
    pw = new_password()
    add_user(server, "alice", pw)
    port = server.port
    bad = ["https://evil.example", "//evil.example", "/\\evil.example",
           "javascript:alert(1)", "http://localhost.evil.example/",
           "http://evil.example@localhost:%d/" % port, "http://localhost:%d@evil.example/" % port,
           "http://web.e1.localhost:%d//evil.example/" % port, "/ok path",
           "ftp://localhost:%d/" % port]
    b = Browser(server)
    for rd in bad:
        q = quote(rd, safe="")
        r = b.get(control_url(server, "/login?rd=" + q))
        assert r.status_code == 400 and RD_REFUSED in r.text, (rd, r.status_code, r.text[:300])
        r = b.get(control_url(server, "/auth/ticket?rd=" + q))
        assert r.status_code == 400 and RD_REFUSED in r.text, (rd, r.status_code, r.text[:300])
        r = b.get(control_url(server, "/auth/ticket?rd=" + q), accept=JSON)
        assert json_error(r, 400) == RD_REFUSED, (rd, r.text)
    # Checked before the password: the right one with a bad rd starts nothing.
    for rd in ("https://evil.example", "//evil.example"):
        r = b.sign_in("alice", pw, rd)
        assert r.status_code == 400 and RD_REFUSED in r.text, (rd, r.status_code, r.text[:300])
        assert not r.set_cookies, r.set_cookies

    # What is accepted: paths on the control host, the control host, a
    # service host of this server (no environment needed to show the page).
    for rd in ("/", "/somewhere?a=1&b=2", control_url(server, "/x"),
               service_url(server, "web", "e9", "/p?q=1")):
        r = b.get(control_url(server, "/login?rd=" + quote(rd, safe="")))
        assert r.status_code == 200, (rd, r.status_code, r.text[:300])

    # Signed in, /auth/ticket sends a control-host rd straight there.
    r = b.sign_in("alice", pw, "/somewhere?a=1")
    assert r.status_code == 303 and r.headers["Location"] == "/somewhere?a=1", \
        (r.status_code, r.headers)
    r = b.get(control_url(server, "/auth/ticket?rd=%2Fdone"))
    assert r.status_code == 303 and r.headers["Location"] == "/done", (r.status_code, r.headers)
    for rd in ("https://evil.example", "//evil.example"):
        r = b.get(control_url(server, "/auth/ticket?rd=" + quote(rd, safe="")))
        assert r.status_code == 400, (rd, r.status_code, r.headers.get("Location"))


def test_10_05_rd_must_name_this_server_with_its_port(server):
    # docs/auth.md: an absolute rd is accepted only if its host *with its
    # port* is this server. An IP address is not "this server" because the
    # gateway would take it for its control host, and neither is another
    # port of a host name of ours (another program listens there).
    port = server.port
    b = Browser(server)
    wrong = []
    for rd in ("http://203.0.113.7/", "http://203.0.113.7:%d/" % port,
               "http://web.e1.localhost:%d/" % (port + 1), "http://localhost:%d/" % (port + 1),
               "http://web.e1.localhost/"):
        r = b.get(control_url(server, "/login?rd=" + quote(rd, safe="")))
        if r.status_code != 400:
            wrong.append("GET /login?rd=%s -> %d" % (rd, r.status_code))
    assert not wrong, "accepted, want 400:\n" + "\n".join(wrong)


def test_10_06_what_a_service_receives(echo):
    server = echo
    pw = new_password()
    add_user(server, "alice", pw, email="alice@example.com")
    start_envs(server, "echo", "e1")
    web1 = service_url(server, "web", "e1", "/echo?x=1")
    b = Browser(server)
    r, steps = b.visit(web1, "alice", pw)
    assert r.status_code == 200, steps
    host_cookie = b.cookie(svc_host(server, "web", "e1"), "eph_host")
    session = b.cookie(control_host(server), "eph_session")

    forged = {"X-Ephemera-User": "mallory", "X-Ephemera-Email": "mallory@evil.example",
              "X-Ephemera-Role": "admin", "X-Ephemera-Other": "x",
              "Authorization": "Basic dXNlcjpwYXNz"}
    r = b.get(web1, accept=JSON, headers=forged,
              cookies={"theme": "dark", "eph_host": host_cookie, "eph_session": session,
                       "other": "1"})
    got = echoed(r)
    assert r.json()["path"] == "/echo?x=1", r.json()
    assert got.get("cookie") == ["theme=dark; other=1"], got
    assert got.get("x-ephemera-user") == ["alice"], got
    assert got.get("x-ephemera-email") == ["alice@example.com"], got
    assert got.get("x-ephemera-role") == ["member"], got
    assert "x-ephemera-other" not in got, got
    assert got.get("authorization") == ["Basic dXNlcjpwYXNz"], got   # other schemes pass
    for value in (host_cookie, session, "mallory"):
        assert value not in r.text, (value, r.text)

    # Only the platform's cookies go: a request whose only cookie is ours
    # reaches the service without a Cookie header.
    got = echoed(b.get(web1, accept=JSON, cookies={"eph_host": host_cookie}))
    assert "cookie" not in got, got

    # A bearer token of ours never reaches the service either.
    r = gw_request(server, "GET", svc_host(server, "web", "e1"), "/echo",
                   headers={"X-Ephemera-User": "mallory", "X-Ephemera-Role": "viewer",
                            "Cookie": "eph_host=junk; a=b; eph_session=junk"})
    got = echoed(r)
    assert "authorization" not in got and server.token not in r.text, got
    assert got.get("x-ephemera-user") == ["admin"], got
    assert got.get("x-ephemera-role") == ["admin"], got
    assert got.get("x-ephemera-email", []) != ["mallory@evil.example"], got
    assert got.get("cookie") == ["a=b"], got

    # A changed role is what the service hears from the next request on, on
    # every worker, though the gateway remembers the cookie it checked.
    r = server.api("POST", "users/alice/role", json={"role": "viewer"})
    assert r.status_code == 200, (r.status_code, r.text)
    for _ in range(4):
        got = echoed(b.get(web1, accept=JSON, cookies={"eph_host": host_cookie},
                           headers={"Connection": "close"}))
        assert got.get("x-ephemera-role") == ["viewer"], got


def test_10_07_bearer_tokens_on_environment_urls(echo):
    server = echo
    pw = new_password()
    add_user(server, "bob", pw, email="bob@example.com")
    start_envs(server, "echo", "e1")
    host = svc_host(server, "web", "e1")

    # The admin's token.
    got = echoed(gw_request(server, "GET", host, "/a"))
    assert got.get("x-ephemera-user") == ["admin"], got

    # A member's token, made with the member's browser session.
    b = Browser(server)
    r, steps = b.visit(service_url(server, "web", "e1", "/"), "bob", pw)
    assert r.status_code == 200, steps
    r = b.api("POST", "tokens", json={"name": "ci-bob"}, headers={"X-Requested-With": None})
    assert r.status_code == 403, "a cookie's POST without X-Requested-With: %d %s" % (
        r.status_code, r.text)
    token_id, token = member_token(b, "ci-bob")
    got = echoed(gw_request(server, "GET", host, "/b", token=token))
    assert got.get("x-ephemera-user") == ["bob"], got
    assert got.get("x-ephemera-role") == ["member"], got
    assert got.get("x-ephemera-email") == ["bob@example.com"], got
    # ... and with a browser's Accept too (a token is never a redirect).
    r = gw_request(server, "GET", host, "/c", token=token, headers={"Accept": HTML})
    assert r.status_code == 200, (r.status_code, r.text[:300])

    # An unknown token is 401 at once: no redirect, no falling back to a
    # valid host cookie sent with it.
    unknown = "eph_" + secrets.token_urlsafe(32)
    json_error(gw_request(server, "GET", host, "/d", token=unknown), 401, "unauthorized")
    r = gw_request(server, "GET", host, "/d", token=unknown, headers={"Accept": HTML})
    assert r.status_code == 401, (r.status_code, r.headers.get("Location"))
    host_cookie = b.cookie(host, "eph_host")
    r = gw_request(server, "GET", host, "/d", token=unknown,
                   headers={"Cookie": "eph_host=" + host_cookie, "Accept": JSON})
    json_error(r, 401, "unauthorized")
    json_error(gw_request(server, "GET", host, "/d", token="not-a-token"), 401, "unauthorized")

    # Revoked by the admin: refused at once, on every connection.
    r = server.api("DELETE", "tokens/%s" % token_id)
    assert r.status_code in (200, 204), (r.status_code, r.text)
    for _ in range(4):
        r = gw_request(server, "GET", host, "/e", token=token, headers={"Connection": "close"})
        json_error(r, 401, "unauthorized")


def test_10_08_signing_out_ends_the_session_on_every_host_at_once(echo):
    server = echo
    pw = new_password()
    add_user(server, "alice", pw)
    start_envs(server, "echo", "e1")
    web1 = service_url(server, "web", "e1", "/")
    b = Browser(server)
    r, steps = b.visit(web1, "alice", pw)
    assert r.status_code == 200, steps
    session = {"eph_session": b.cookie(control_host(server), "eph_session")}
    host_cookie = {"eph_host": b.cookie(svc_host(server, "web", "e1"), "eph_host")}
    assert b.api("GET", "whoami").status_code == 200
    assert b.get(web1, accept=JSON).status_code == 200

    # A sign-out from elsewhere (no Origin) is refused and changes nothing.
    r = b.request("POST", control_url(server, "/logout"))
    assert r.status_code == 403 and not r.set_cookies, (r.status_code, r.text[:300])
    r = b.request("POST", control_url(server, "/logout"),
                  headers={"Origin": "http://" + svc_host(server, "web", "e1")})
    assert r.status_code == 403 and not r.set_cookies, (r.status_code, r.text[:300])
    assert b.api("GET", "whoami").status_code == 200

    r = b.post_form("/logout", {})
    assert r.status_code == 303 and r.headers["Location"] == "/login", (r.status_code, r.headers)
    cleared = [c for c in r.set_cookies if c[0] == "eph_session"]
    assert cleared and cleared[0][1] == "" and cleared[0][2].get("max-age") == "0", r.set_cookies

    # The old cookies, sent as a thief (or a stale tab) would: dead at once.
    r = b.get(control_url(server, "/"), cookies=session)
    assert r.status_code == 303 and r.headers["Location"] == "/login", (r.status_code, r.headers)
    json_error(b.api("GET", "whoami", cookies=session), 401, "unauthorized")
    r = b.get(control_url(server, "/auth/ticket?rd=" + quote(web1, safe="")), cookies=session)
    assert r.status_code == 303 and urlsplit(r.headers["Location"]).path == "/login", r.headers
    refused_on_service(b, web1, host_cookie)
    assert any(e["action"] == "user.signout" for e in server.events()), server.events()


def test_10_09_removing_a_user_ends_their_sessions_and_tokens_at_once(echo):
    server = echo
    pw = new_password()
    add_user(server, "alice", pw)
    start_envs(server, "echo", "e1")
    host = svc_host(server, "web", "e1")
    web1 = service_url(server, "web", "e1", "/")
    b = Browser(server)
    r, steps = b.visit(web1, "alice", pw)
    assert r.status_code == 200, steps
    session = {"eph_session": b.cookie(control_host(server), "eph_session")}
    host_cookie = {"eph_host": b.cookie(host, "eph_host")}
    _, token = member_token(b, "alice-ci")
    assert gw_request(server, "GET", host, "/", token=token).status_code == 200
    assert server.api("GET", "whoami", token=token).status_code == 200

    r = server.api("DELETE", "users/alice")
    assert r.status_code in (200, 204), (r.status_code, r.text)

    json_error(b.api("GET", "whoami", cookies=session), 401, "unauthorized")
    refused_on_service(b, web1, host_cookie)
    json_error(server.api("GET", "whoami", token=token), 401, "unauthorized")
    for _ in range(4):
        json_error(gw_request(server, "GET", host, "/", token=token,
                              headers={"Connection": "close"}), 401, "unauthorized")
    r = Browser(server).sign_in("alice", pw)
    assert r.status_code == 401 and BAD_LOGIN in r.text, (r.status_code, r.text[:300])
    r = server.api("GET", "users")
    assert r.status_code == 200, r.text
    assert "alice" not in [u["name"] for u in r.json()["users"]], r.json()


def test_10_10_eph_login_with_a_token_then_whoami(server, tmp_path):
    admin_config = server.client_config.read_bytes()
    cfg = tmp_path / "bob-home" / "eph" / "config.json"
    pw = new_password()

    # `eph user add` by the admin, the password from stdin (never an argument).
    r = eph_as(server, server.client_config, "user", "add", "bob", "--role", "member",
               "--email", "bob@example.com", "--password-stdin", stdin=pw + "\n")
    assert r.rc == 0 and "user bob added (member)" in r.out, str(r)
    assert pw not in r.out and pw not in r.err, str(r)
    b = Browser(server)
    r = b.sign_in("bob", pw)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    _, token = member_token(b, "laptop")

    # Not signed in yet with this config.
    r = eph_as(server, cfg, "whoami")
    assert r.rc == 1 and "not logged in" in r.err, str(r)
    # A token the server refuses: exit 1, nothing saved.
    r = eph_as(server, cfg, "login", "--server", server.url, "--token",
               "eph_" + secrets.token_urlsafe(32))
    assert r.rc == 1 and re.search(r"unknown.*expired.* token", r.err), str(r)
    assert not cfg.exists() or "token" not in json.loads(cfg.read_text()), cfg.read_text()

    r = eph_as(server, cfg, "login", "--server", server.url, "--token", token)
    assert r.rc == 0, str(r)
    assert r.out.strip() == "Signed in to %s as bob (member)" % server.url, str(r)
    assert token not in r.out and token not in r.err, str(r)
    saved = json.loads(cfg.read_text())
    assert saved.get("server") == server.url and saved.get("token") == token, saved
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600, oct(cfg.stat().st_mode)

    r = eph_as(server, cfg, "whoami")
    assert r.rc == 0, str(r)
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", r.out, re.M))
    assert fields.get("name") == "bob" and fields.get("role") == "member", r.out
    assert fields.get("email") == "bob@example.com" and fields.get("via") == "token", r.out
    assert fields.get("token", "").startswith("laptop"), r.out
    r = eph_as(server, cfg, "whoami", "-o", "json")
    assert r.rc == 0, str(r)
    who = r.json()
    assert (who["name"], who["role"], who["via"]) == ("bob", "member", "token"), who

    # `eph token create` as bob prints the token alone on stdout; it works.
    r = eph_as(server, cfg, "token", "create", "--name", "ci-bob", "--ttl", "1d")
    assert r.rc == 0, str(r)
    ci = r.out.strip()
    assert r.out == ci + "\n" and ci.startswith("eph_"), str(r)
    r = server.api("GET", "whoami", token=ci)
    assert r.status_code == 200 and r.json()["name"] == "bob", r.text

    # `eph login --token -` reads it from stdin; `eph logout` forgets it.
    r = eph_as(server, cfg, "login", "--token", "-", stdin=ci + "\n")
    assert r.rc == 0 and "as bob (member)" in r.out, str(r)
    assert json.loads(cfg.read_text()).get("token") == ci
    r = eph_as(server, cfg, "logout")
    assert r.rc == 0 and "Signed out of %s" % server.url in r.out, str(r)
    assert "token" not in json.loads(cfg.read_text()), cfg.read_text()
    r = eph_as(server, cfg, "whoami")
    assert r.rc == 1, str(r)

    # The fixture's admin config was not touched.
    assert server.client_config.read_bytes() == admin_config
