"""test_13_oidc.py - OpenID Connect sign-in with the real `eph serve` against
real OpenID providers run by the tests (tests/e2e/peers/oidc):

- provider.js, the OpenID-certified npm `oidc-provider` (RS256 or ES256 ID
  tokens): the browser's whole authorization code flow, from a service URL
  through /auth/ticket, the sign-in page, the provider's login form and the
  callback back to the service, then the control host, sign-out on every
  host, a second sign-in on the provider's session; a callback URL used
  twice; a sign-in the person aborts at the provider; the allowlist and the
  admins list; `eph login` through the browser;
- fake_provider.js, a small provider that issues whichever bad ID token the
  test asks for (unknown key, forged signature, expired, wrong audience,
  nonce, issuer, alg none or HS256, no subject), each of which must be
  refused without a session, and that rotates its key (eph must fetch the
  JWKS again once and accept the new key).

The browser is test_10_signin's Browser (cookies per host, host-only, every
redirect followed by hand), here also talking to the providers and to the
CLI's loopback listener on 127.0.0.1. Each test runs its own server and
providers; every provider is a node process in its own session, stopped by
its process group at teardown.
"""
import html
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from conftest import (CLI_TIMEOUT_S, EPH_BIN, Server, clean_environ, create_env, free_port,
                      make_repo, sanitizer_report, svc_host, wait_until)
from test_10_signin import (ECHO_PY, HTML, JSON, Browser, control_host, control_url, echoed,
                            eph_as, json_error, parse_set_cookie, refused_on_service, service_url)

PEERS_DIR = Path(__file__).resolve().parent / "peers" / "oidc"
NODE = shutil.which("node")
PEER_START_TIMEOUT_S = 60        # oidc-provider takes ~2 s alone; the machine is shared
CLIENT_ID, CLIENT_SECRET = "eph", "eph-secret"   # both providers' one client

MSG_STATE = "this sign-in attempt is unknown or was already used"
MSG_REFUSED = "the sign-in provider's answer was not accepted"

# One service answering with what it received (test_10's echo), enough to see
# who the gateway says the visitor is.
ECHO_TEMPLATE = """\
version: 1
services:
  web:
    run: /usr/bin/python3 echo.py
    health: { http: /healthz, timeout: 30s }
"""


@pytest.fixture(scope="module")
def oidc_echo_repo(repos):
    return make_repo(repos.dir / "oidc-echo", {"ephemera.yaml": ECHO_TEMPLATE,
                                               "echo.py": ECHO_PY})


# ------------------------------------------------------------------ providers


class Peer:
    """An OpenID provider of peers/oidc (`real`: provider.js, `fake`:
    fake_provider.js) as sign-in provider `name` of one eph server: node in
    its own session on 127.0.0.1:port, its output in a log file."""

    SCRIPTS = {"real": "provider.js", "fake": "fake_provider.js"}

    def __init__(self, name, kind, alg, log_dir, eph_port):
        self.name, self.kind, self.alg = name, kind, alg
        self.port = free_port()
        self.issuer = "http://127.0.0.1:%d" % self.port
        self.redirect_uri = "http://localhost:%d/auth/oidc/%s/callback" % (eph_port, name)
        self.log = Path(log_dir) / ("peer-%s-%d.log" % (name, self.port))
        self.proc = None
        self.http = requests.Session()
        self.http.trust_env = False

    @property
    def netloc(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        assert NODE, "node is not on PATH"
        assert (PEERS_DIR / "node_modules" / "oidc-provider").is_dir(), \
            "run scripts/test.sh once: it installs %s/node_modules" % PEERS_DIR
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [NODE, self.SCRIPTS[self.kind], str(self.port)], cwd=PEERS_DIR,
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                env=clean_environ(EPH_OIDC_REDIRECTS=self.redirect_uri,
                                  EPH_OIDC_ID_TOKEN_ALG=self.alg))

    def wait_ready(self):
        def ready():
            text = self.log_text()
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %d:\n%s"
                                     % (self.SCRIPTS[self.kind], self.proc.returncode, text))
            return re.search(r"^ready %d$" % self.port, text, re.M) is not None
        wait_until(ready, PEER_START_TIMEOUT_S, "%s on port %d" % (self.SCRIPTS[self.kind],
                                                                    self.port), 0.05)

    def stop(self):
        """SIGTERM to its process group, SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            proc.wait(timeout=10)

    def log_text(self):
        return self.log.read_text(errors="replace")

    def issued_algs(self):
        """The algorithms of the ID tokens handed out so far, in order."""
        return re.findall(r"^issued id_token .*?alg=(\w+)", self.log_text(), re.M)

    # The fake provider's control endpoint.
    def control(self, **change):
        assert self.kind == "fake"
        r = self.http.post(self.issuer + "/control", json=change, timeout=10)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def stats(self):
        assert self.kind == "fake"
        r = self.http.get(self.issuer + "/control", timeout=10)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()


@dataclass
class OidcSetup:
    server: Server
    peers: dict = field(default_factory=dict)     # provider name -> Peer

    def log_mark(self):
        return len(self.server.log_text())

    def log_since(self, mark):
        return self.server.log_text()[mark:]

    def users(self):
        r = self.server.api("GET", "users")
        assert r.status_code == 200, r.text
        return {u["name"]: u for u in r.json()["users"]}


def auth_section(peers, secret_file, allow_emails=(), allow_domains=(), admins=()):
    """The server config's `auth:` section (docs/auth.md) naming the peers."""
    def yaml_list(items):
        return "[%s]" % ", ".join(items)
    lines = ["auth:", "  local: true", "  default_role: member"]
    if admins:
        lines.append("  admins: %s" % yaml_list(admins))
    if allow_emails:
        lines.append("  allow_emails: %s" % yaml_list(allow_emails))
    if allow_domains:
        lines.append("  allow_domains: %s" % yaml_list(allow_domains))
    lines.append("  providers:")
    for p in peers:
        lines += ["    - name: %s" % p.name, "      type: oidc",
                  '      issuer: "%s"' % p.issuer, "      client_id: %s" % CLIENT_ID,
                  "      client_secret_file: %s" % secret_file,
                  "      scopes: openid email profile"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def oidc(tmp_path, repos, oidc_echo_repo):
    """A factory: oidc([(name, kind, alg), ...], allow_emails=..., ...) starts
    the providers and a server whose `auth:` section names them (with
    echo=True, the one-service project `echo` registered); all stopped and
    the server checked at teardown."""
    made = []

    def start(providers, allow_emails=(), allow_domains=(), admins=(), echo=False):
        assert not made, "one setup per test"
        server = Server(tmp_path, repos.dir)
        setup = OidcSetup(server)
        made.append(setup)
        for name, kind, alg in providers:
            setup.peers[name] = Peer(name, kind, alg, tmp_path, server.port)
        secret = tmp_path / "oidc-client-secret"
        secret.write_text(CLIENT_SECRET + "\n")
        with open(server.config_file, "a") as f:
            f.write(auth_section(setup.peers.values(), secret, allow_emails, allow_domains,
                                 admins))
        for p in setup.peers.values():     # the providers start while the server does
            p.start()
        server.start()
        for p in setup.peers.values():
            p.wait_ready()
        if echo:
            r = server.eph("project", "add", "echo", "--repo", oidc_echo_repo)
            assert r.rc == 0, str(r)
        return setup

    yield start
    for setup in made:
        problems = setup.server.shutdown()
        for p in setup.peers.values():
            p.stop()
        if problems:
            pytest.fail("teardown of eph serve in %s:\n%s\n--- server log tail\n%s"
                        % (tmp_path, "\n".join(problems), setup.server.log_tail()),
                        pytrace=False)


# ------------------------------------------------------------------ the browser


def gone(value, attrs):
    """True if a Set-Cookie with this value and attributes deletes the cookie:
    empty, Max-Age <= 0, or (oidc-provider's way) an Expires in the past."""
    max_age = attrs.get("max-age")
    if value == "" or (max_age is not None and max_age.lstrip("-").isdigit()
                       and int(max_age) <= 0):
        return True
    try:
        expires = parsedate_to_datetime(attrs["expires"]) if "expires" in attrs else None
    except (TypeError, ValueError):
        expires = None
    return max_age is None and expires is not None \
        and expires.timestamp() <= datetime.now(timezone.utc).timestamp()


class OidcBrowser(Browser):
    """test_10's Browser, also at home on the providers (127.0.0.1:PORT) and
    the CLI's loopback listener: every URL on 127.0.0.1 or a *.localhost name
    goes to 127.0.0.1 on its port with its Host; cookies per host as before."""

    def request(self, method, url, accept=HTML, headers=None, cookies=None, **kw):
        parts = urlsplit(url)
        assert parts.scheme == "http" and parts.port, url
        assert parts.hostname == "127.0.0.1" or parts.hostname == "localhost" \
            or parts.hostname.endswith(".localhost"), url
        host = parts.netloc.lower()
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        h = {"Host": parts.netloc}
        if accept:
            h["Accept"] = accept
        jar = self.jar.get(host, {}) if cookies is None else cookies
        if jar:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in jar.items())
        h.update(headers or {})
        r = self.http.request(method, "http://127.0.0.1:%d%s" % (parts.port, target),
                              headers=h, allow_redirects=False, timeout=30, **kw)
        self.http.cookies.clear()
        r.set_cookies = [parse_set_cookie(line) for line in r.raw.headers.getlist("Set-Cookie")]
        for name, value, attrs in r.set_cookies:
            if gone(value, attrs):
                self.jar.get(host, {}).pop(name, None)
            else:
                self.jar.setdefault(host, {})[name] = value
        return r

    def session(self):
        return self.cookie(control_host(self.server), "eph_session")


@dataclass
class Walk:
    r: object          # the last response (None when stopped before a URL)
    url: str           # its URL (or the URL stopped before)
    steps: list        # [(method, url, status)]

    def where(self):
        """The steps as (method, host kind, path): host kind is ctl (the
        control host), svc (a service host) or idp (a provider)."""
        out = []
        for method, url, _ in self.steps:
            parts = urlsplit(url)
            kind = "idp" if parts.hostname == "127.0.0.1" else \
                "ctl" if parts.hostname == "localhost" else "svc"
            path = re.sub(r"^/(interaction|auth)/[A-Za-z0-9_-]{10,}$", r"/\1/UID", parts.path)
            out.append((method, kind, path))
        return out

    def first(self, pred):
        """The first step's URL that pred(urlsplit(url)) accepts."""
        for _, url, _ in self.steps:
            if pred(urlsplit(url)):
                return url
        raise AssertionError("no such step in %s" % self.steps)


def walk(b, url, provider=None, login=None, stop=None, max_steps=24):
    """Opens url as a person would: follows every redirect; on eph's sign-in
    page clicks "Sign in with <provider>"; on oidc-provider's login form signs
    in as `login` (any password). Stops at any other page, or before a URL
    that stop(url) accepts."""
    steps = []
    method, data, headers = "GET", None, None
    for _ in range(max_steps):
        if stop is not None and stop(url):
            return Walk(None, url, steps)
        r = b.request(method, url, data=data, headers=headers)
        steps.append((method, url, r.status_code))
        method, data, headers = "GET", None, None
        if r.status_code in (301, 302, 303, 307):
            url = urljoin(url, r.headers["Location"])
            continue
        parts = urlsplit(url)
        if r.status_code == 200 and parts.netloc == control_host(b.server) \
                and parts.path == "/login" and provider is not None:
            m = re.search(r'href="(/auth/oidc/%s/start\?rd=[^"]*)"' % re.escape(provider),
                          r.text)
            assert m, "no button for provider %s on the sign-in page:\n%s" % (provider,
                                                                               r.text[:3000])
            url = urljoin(url, html.unescape(m.group(1)))
            continue
        if r.status_code == 200 and parts.hostname == "127.0.0.1" \
                and re.fullmatch(r"/interaction/[^/]+", parts.path) and login is not None:
            m = re.search(r'<form[^>]*action="([^"]+)"[^>]*method="post"', r.text)
            assert m and 'name="login"' in r.text, "not the provider's login form:\n%s" \
                % r.text[:3000]
            method, url = "POST", urljoin(url, html.unescape(m.group(1)))
            data = {"prompt": "login", "login": login, "password": "any-password"}
            headers = {"Origin": "http://" + parts.netloc}
            continue
        return Walk(r, url, steps)
    raise AssertionError("too many steps: %s" % steps)


def is_callback(name):
    return lambda url: urlsplit(url).path == "/auth/oidc/%s/callback" % name


def signed_in_as(b, name, role="member"):
    """The control host's page and /whoami show `name` signed in by session."""
    s = b.server
    r = b.get(control_url(s, "/"))
    assert r.status_code == 200, (r.status_code, r.headers.get("Location"), r.text[:300])
    assert "Signed in as <strong>%s</strong> (%s)" % (name, role) in r.text, r.text[:1000]
    r = b.api("GET", "whoami")
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()


def escaped(text):
    """text HTML-escaped the way eph's pages do it (api__html_escape)."""
    for c, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"),
                      ("'", "&#39;")):
        text = text.replace(c, entity)
    return text


def page_text(r):
    """What a person reads on one of eph's pages: the text of <main>."""
    m = re.search(r"<main>(.*)</main>", r.text, re.S)
    return html.unescape(re.sub(r"<[^>]*>", " ", m.group(1) if m else r.text[:500])).strip()


def refused_without_session(w, status, message):
    """The walk ended on the callback with an error page: status, the
    message (HTML-escaped) as its error, and no session cookie set or kept."""
    assert w.r is not None and urlsplit(w.url).path.startswith("/auth/oidc/"), w.where()
    assert w.r.status_code == status, "%s -> %d %r" % (w.where()[-1], w.r.status_code,
                                                        page_text(w.r))
    assert w.r.headers.get("Content-Type", "").startswith("text/html"), w.r.headers
    assert '<p class="error">%s' % escaped(message) in w.r.text, \
        "want %r, page says %r" % (message, page_text(w.r))
    assert not [c for c in w.r.set_cookies if c[0] == "eph_session"], w.r.set_cookies
    assert w.r.headers.get("Location") is None, w.r.headers
    return w.r


def log_lines(text, msg):
    return [line for line in text.splitlines() if 'msg="%s"' % msg in line]


# ------------------------------------------------------------------ tests


def test_13_01_service_url_signs_in_through_a_real_provider_and_sign_out_ends_it_everywhere(oidc):
    setup = oidc([("corp", "real", "RS256")], echo=True)
    s, idp = setup.server, setup.peers["corp"]
    create_env(s, "echo", "e1")
    s.wait_phase("e1")
    url = service_url(s, "web", "e1", "/hello?x=1")

    # A person with no session anywhere opens the environment's URL.
    b = OidcBrowser(s)
    w = walk(b, url, provider="corp", login="alice")
    assert w.where() == [
        ("GET", "svc", "/hello"),                    # 302: who is this?
        ("GET", "ctl", "/auth/ticket"),              # 303: not signed in
        ("GET", "ctl", "/login"),                    # 200: the sign-in page
        ("GET", "ctl", "/auth/oidc/corp/start"),     # 302 to the provider
        ("GET", "idp", "/auth"),                     # 303 to its login form
        ("GET", "idp", "/interaction/UID"),          # 200: the form
        ("POST", "idp", "/interaction/UID"),         # 303: signed in there
        ("GET", "idp", "/auth/UID"),                 # 303: back to eph with a code
        ("GET", "ctl", "/auth/oidc/corp/callback"),  # 303: a session, on to rd
        ("GET", "ctl", "/auth/ticket"),              # 303: a ticket for the host
        ("GET", "svc", "/_eph/auth"),                # 302: a host cookie
        ("GET", "svc", "/hello"),                    # 200: the service
    ], w.steps
    got = echoed(w.r)
    assert w.r.json()["path"] == "/hello?x=1", w.r.json()
    assert got.get("x-ephemera-user") == ["alice"], got
    assert got.get("x-ephemera-email") == ["alice@example.com"], got
    assert got.get("x-ephemera-role") == ["member"], got

    # What eph asked of the provider: the code flow with PKCE S256, state and
    # nonce, for the registered redirect URI.
    authorize = parse_qs(urlsplit(w.first(lambda p: p.hostname == "127.0.0.1"
                                          and p.path == "/auth")).query)
    assert {k: authorize.get(k) for k in ("client_id", "redirect_uri", "response_type",
                                          "code_challenge_method")} == {
        "client_id": [CLIENT_ID], "redirect_uri": [idp.redirect_uri],
        "response_type": ["code"], "code_challenge_method": ["S256"]}, authorize
    assert set(authorize["scope"][0].split()) >= {"openid", "email"}, authorize
    for k in ("state", "nonce", "code_challenge"):
        assert len(authorize.get(k, [""])[0]) >= 22, (k, authorize)
    assert idp.issued_algs() == ["RS256"], idp.log_text()

    # The control host knows alice too, a user made from her OIDC identity.
    who = signed_in_as(b, "alice")
    assert (who["email"], who["via"]) == ("alice@example.com", "session"), who
    alice = setup.users()["alice"]
    assert (alice["provider"], alice["role"], alice["email"]) == \
        ("oidc:corp", "member", "alice@example.com"), alice

    # Sign-out ends the session on the control host and on the service host.
    session = {"eph_session": b.session()}
    host_cookie = {"eph_host": b.cookie(svc_host(s, "web", "e1"), "eph_host")}
    assert session["eph_session"] and host_cookie["eph_host"], b.jar
    r = b.post_form("/logout", {})
    assert r.status_code == 303 and r.headers["Location"] == "/login", (r.status_code, r.headers)
    assert b.session() is None, b.jar
    r = b.get(control_url(s, "/"), cookies=session)
    assert r.status_code == 303 and r.headers["Location"] == "/login", (r.status_code, r.headers)
    json_error(b.api("GET", "whoami", cookies=session), 401, "unauthorized")
    refused_on_service(b, url, host_cookie)

    # Signing in again rides on the provider's own session (no login form)
    # and finds the same user, with a new session.
    w = walk(b, control_url(s, "/"), provider="corp")
    assert ("POST", "idp", "/interaction/UID") not in w.where(), w.steps
    assert w.r.status_code == 200, (w.where(), w.r.status_code, w.r.text[:300])
    signed_in_as(b, "alice")
    assert b.session() and b.session() != session["eph_session"], b.jar
    assert [n for n, u in setup.users().items() if u["provider"] == "oidc:corp"] == ["alice"], \
        setup.users()
    assert idp.issued_algs() == ["RS256", "RS256"], idp.log_text()


def test_13_02_es256_id_tokens_of_a_real_provider_are_accepted(oidc):
    setup = oidc([("corp", "real", "ES256")])
    s, idp = setup.server, setup.peers["corp"]
    b = OidcBrowser(s)
    w = walk(b, control_url(s, "/"), provider="corp", login="alice")
    assert w.r.status_code == 200, (w.where(), w.r.status_code, w.r.text[:300])
    assert idp.issued_algs() == ["ES256"], idp.log_text()
    who = signed_in_as(b, "alice")
    assert who["email"] == "alice@example.com", who
    assert setup.users()["alice"]["provider"] == "oidc:corp", setup.users()


def test_13_03_a_callback_works_once_and_a_provider_refusal_starts_no_session(oidc):
    setup = oidc([("corp", "real", "RS256")])
    s = setup.server
    b = OidcBrowser(s)
    w = walk(b, control_url(s, "/"), provider="corp", login="alice", stop=is_callback("corp"))
    callback = w.url
    assert set(parse_qs(urlsplit(callback).query)) >= {"code", "state"}, callback

    # Used once by its browser: signed in.
    r = b.get(callback)
    assert r.status_code == 303 and r.headers["Location"] == "/", (r.status_code, r.text[:300])
    assert [c[0] for c in r.set_cookies] == ["eph_session"], r.set_cookies
    signed_in_as(b, "alice")

    # The same URL again, from another browser (a stolen URL, a replay) or
    # the same one: refused, before the code goes anywhere, and no session.
    mark = setup.log_mark()
    for again in (OidcBrowser(s), b):
        w2 = Walk(again.get(callback), callback, [("GET", callback, None)])
        refused_without_session(w2, 400, MSG_STATE)
    assert OidcBrowser(s).api("GET", "whoami").status_code == 401
    json_error(OidcBrowser(s).get(callback, accept=JSON), 400)
    # A made-up state, or none, likewise.
    q = parse_qs(urlsplit(callback).query)
    for query in ({"code": q["code"][0], "state": secrets.token_hex(16)}, {"code": q["code"][0]}):
        cb = control_url(s, "/auth/oidc/corp/callback?" + urlencode(query))
        refused_without_session(Walk(OidcBrowser(s).get(cb), cb, []), 400, MSG_STATE)
    assert not log_lines(setup.log_since(mark), "sign-in failed at the provider"), \
        setup.log_since(mark)

    # The person aborts at the provider: it sends error=access_denied with the
    # state, and eph says so (403), starts no session, and takes it once.
    c = OidcBrowser(s)
    w = walk(c, control_url(s, "/"), provider="corp")
    assert w.r.status_code == 200 and urlsplit(w.url).path.startswith("/interaction/"), w.steps
    w = walk(c, w.url + "/abort")
    refused_without_session(w, 403, "the sign-in provider refused: access_denied")
    assert parse_qs(urlsplit(w.url).query).get("error") == ["access_denied"], w.url
    assert c.session() is None, c.jar
    r = OidcBrowser(s).get(w.url)
    assert r.status_code == 400 and MSG_STATE in r.text, (r.status_code, r.text[:300])
    assert list(setup.users()) == ["admin", "alice"], setup.users()


# What each bad ID token of the fake provider is refused for, as the log says.
BAD_TOKENS = [
    ("unknown_kid", "ID token signed by a key the provider does not publish"),
    ("forged", "ID token signature is invalid"),
    ("expired", "ID token expired"),
    ("wrong_aud", "ID token audience is not this client"),
    ("wrong_nonce", "ID token nonce does not match"),
    ("wrong_iss", "ID token issuer 'http://127.0.0.1:1' is not"),
    ("alg_none", "ID token algorithm 'none' is not allowed"),
    ("alg_hs256", "ID token algorithm 'HS256' is not allowed"),
    ("no_sub", "ID token has no valid subject"),
]


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_13_04_bad_id_tokens_are_refused_and_start_no_session(oidc, alg):
    setup = oidc([("fake", "fake", alg)])
    s, idp = setup.server, setup.peers["fake"]
    # A first start fetches discovery and keys (a sign-in begun, not finished).
    r = OidcBrowser(s).get(control_url(s, "/auth/oidc/fake/start?rd=%2F"))
    assert r.status_code == 302 and r.headers["Location"].startswith(idp.issuer + "/authorize?"), \
        (r.status_code, r.headers)
    assert idp.stats()["jwks_fetches"] == 1, idp.stats()
    wrong = []
    for mode, reason in BAD_TOKENS:
        before = idp.control(mode=mode)
        mark = setup.log_mark()
        b = OidcBrowser(s)
        w = walk(b, control_url(s, "/"), provider="fake")
        after = idp.stats()
        assert after["tokens_issued"] == before["tokens_issued"] + 1, (mode, w.steps, after)
        try:
            refused_without_session(w, 403, MSG_REFUSED)
        except AssertionError as e:
            wrong.append("%s: %s" % (mode, e))
            continue
        failed = log_lines(setup.log_since(mark), "sign-in failed at the provider")
        if not any(reason in line for line in failed):
            wrong.append("%s: log does not say %r: %s" % (mode, reason, failed))
        # An unknown key makes eph fetch the JWKS again, once; nothing else does.
        want_fetches = before["jwks_fetches"] + (1 if mode == "unknown_kid" else 0)
        if after["jwks_fetches"] != want_fetches:
            wrong.append("%s: JWKS fetched %d times, want %d"
                         % (mode, after["jwks_fetches"], want_fetches))
        if b.api("GET", "whoami").status_code != 401:
            wrong.append("%s: the browser is signed in" % mode)
    assert not wrong, "bad ID tokens not refused as they should be:\n" + "\n".join(wrong)
    assert list(setup.users()) == ["admin"], setup.users()

    # The same provider's good token is accepted: the refusals were the tokens'.
    idp.control(mode="good")
    b = OidcBrowser(s)
    w = walk(b, control_url(s, "/"), provider="fake")
    assert w.r.status_code == 200, (w.where(), w.r.status_code, w.r.text[:300])
    who = signed_in_as(b, "carol")
    assert who["email"] == "carol@example.com", who


def test_13_05_a_rotated_provider_key_is_fetched_once_and_accepted(oidc):
    setup = oidc([("fake", "fake", "ES256")])
    s, idp = setup.server, setup.peers["fake"]
    b = OidcBrowser(s)
    w = walk(b, control_url(s, "/"), provider="fake")
    assert w.r.status_code == 200, (w.where(), w.r.status_code, w.r.text[:300])
    signed_in_as(b, "carol")
    assert idp.stats()["jwks_fetches"] == 1, idp.stats()

    # The provider rotates: a new key under a new kid, the old one withdrawn.
    old_kid = idp.stats()["kid"]
    rotated = idp.control(rotate=True)
    assert rotated["kid"] != old_kid, rotated
    mark = setup.log_mark()
    b2 = OidcBrowser(s)
    w = walk(b2, control_url(s, "/"), provider="fake")
    assert w.r.status_code == 200, (w.where(), w.r.status_code, w.r.text[:300])
    signed_in_as(b2, "carol")
    assert idp.stats()["jwks_fetches"] == 2, idp.stats()
    assert log_lines(setup.log_since(mark), "sign-in provider keys refreshed"), \
        setup.log_since(mark)

    # The new keys are kept: the next sign-in fetches nothing.
    b3 = OidcBrowser(s)
    w = walk(b3, control_url(s, "/"), provider="fake")
    assert w.r.status_code == 200, (w.where(), w.r.status_code, w.r.text[:300])
    assert idp.stats()["jwks_fetches"] == 2, idp.stats()
    assert [n for n, u in setup.users().items() if u["provider"] == "oidc:fake"] == ["carol"], \
        setup.users()


def test_13_06_the_allowlist_refuses_emails_it_does_not_name(oidc):
    setup = oidc([("corp", "real", "RS256"), ("partner", "fake", "RS256")],
                 allow_emails=["alice@example.com"], allow_domains=["corp.example"],
                 admins=["alice@example.com"])
    s, partner = setup.server, setup.peers["partner"]

    # alice@example.com is named: in, and made admin by the admins list.
    b = OidcBrowser(s)
    w = walk(b, control_url(s, "/"), provider="corp", login="alice")
    assert w.r.status_code == 200, (w.where(), w.r.status_code, w.r.text[:300])
    signed_in_as(b, "alice", role="admin")

    # bob@example.com is not (its domain is not allowed either).
    b = OidcBrowser(s)
    w = walk(b, control_url(s, "/"), provider="corp", login="bob")
    refused_without_session(w, 403, "bob@example.com may not sign in here")
    json_error(b.api("GET", "whoami"), 401, "unauthorized")

    # An allowed domain counts only for a verified email; not for a look-alike.
    for email, verified, message in (
            ("dave@corp.example", False, "a verified email address is required to sign in here"),
            ("eve@notcorp.example", True, "eve@notcorp.example may not sign in here"),
            ("eve@corp.example.evil.example", True,
             "eve@corp.example.evil.example may not sign in here")):
        partner.control(mode="good", sub="sub-" + email, email=email, email_verified=verified)
        b = OidcBrowser(s)
        w = walk(b, control_url(s, "/"), provider="partner")
        refused_without_session(w, 403, message)
    partner.control(sub="sub-dave", email="dave@corp.example", email_verified=True)
    b = OidcBrowser(s)
    w = walk(b, control_url(s, "/"), provider="partner")
    assert w.r.status_code == 200, (w.where(), w.r.status_code, w.r.text[:300])
    signed_in_as(b, "dave")
    assert sorted(setup.users()) == ["admin", "alice", "dave"], setup.users()
    assert any("sign-in refused by the allowlist" in line and "bob@example.com" in line
               for line in s.log_text().splitlines()), s.log_tail()


def test_13_08_a_provider_email_with_control_characters_cannot_add_headers(oidc):
    """An ID token's email is the provider's to say: CR LF in it must not
    become a header of its own in the request the service gets."""
    setup = oidc([("fake", "fake", "RS256")], echo=True)
    s, idp = setup.server, setup.peers["fake"]
    create_env(s, "echo", "e1")
    s.wait_phase("e1")
    email = "eve@example.com\r\nX-Injected: yes\x7f\x01"
    idp.control(mode="good", sub="sub-eve", email=email, email_verified=True)
    b = OidcBrowser(s)
    w = walk(b, service_url(s, "web", "e1", "/"), provider="fake")
    got = echoed(w.r)
    assert got.get("x-ephemera-user") == ["eve"], got
    assert got.get("x-ephemera-email") == ["eve@example.com??X-Injected: yes??"], got
    assert "x-injected" not in got, got
    # Again from the gateway's memo of the cookie, not the sign-in: the same.
    got = echoed(b.request("GET", service_url(s, "web", "e1", "/again")))
    assert got.get("x-ephemera-email") == ["eve@example.com??X-Injected: yes??"], got
    assert "x-injected" not in got, got


def test_13_07_eph_login_through_a_browser_that_signs_in_with_a_provider(oidc, tmp_path):
    setup = oidc([("corp", "real", "RS256")])
    s = setup.server
    cfg = tmp_path / "alice-home" / "eph" / "config.json"
    env = clean_environ(EPH_CONFIG=str(cfg))
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        env.pop(var, None)          # no browser to open: it prints the URL
    server_url = "http://localhost:%d" % s.port
    proc = subprocess.Popen([str(EPH_BIN), "login", "--server", server_url],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                            start_new_session=True)
    out, err = [], []
    readers = [threading.Thread(target=lambda f=f, acc=acc: acc.extend(iter(f.readline, b"")),
                                daemon=True) for f, acc in ((proc.stdout, out), (proc.stderr, err))]
    for t in readers:
        t.start()
    try:
        def printed_url():
            text = b"".join(err).decode(errors="replace")
            if proc.poll() is not None:
                raise AssertionError("eph login exited with %d:\n%s" % (proc.returncode, text))
            m = re.search(r"^\s+(http://\S+/auth/cli\?\S+)$", text, re.M)
            return m and m.group(1)
        url = wait_until(printed_url, CLI_TIMEOUT_S, "eph login to print its URL")
        assert url.startswith(server_url + "/auth/cli?port="), url

        # The browser opens it: not signed in, through the provider, back to
        # the page that asks to let the command line in.
        b = OidcBrowser(s)
        w = walk(b, url, provider="corp", login="alice")
        assert w.r.status_code == 200, (w.where(), w.r.status_code, w.r.text[:300])
        assert w.url == url, w.steps
        assert "act as <strong>alice</strong>" in w.r.text, w.r.text[:2000]
        q = parse_qs(urlsplit(url).query)
        r = b.post_form("/auth/cli", {"port": q["port"][0], "state": q["state"][0]})
        assert r.status_code == 303, (r.status_code, r.text[:300])
        back = r.headers["Location"]
        assert back.startswith("http://127.0.0.1:%s/callback?token=" % q["port"][0]), back
        r = b.get(back)
        assert r.status_code == 200 and "signed in as <b>alice</b>" in r.text, \
            (r.status_code, r.text[:500])
        rc = proc.wait(timeout=CLI_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for t in readers:
            t.join(timeout=10)
    stdout = b"".join(out).decode(errors="replace")
    stderr = b"".join(err).decode(errors="replace")
    assert sanitizer_report(stderr) is None, stderr
    assert rc == 0, (rc, stdout, stderr)
    assert stdout.strip() == "Signed in to %s as alice (member)" % server_url, (stdout, stderr)

    r = eph_as(s, cfg, "whoami", "-o", "json")
    assert r.rc == 0, str(r)
    who = r.json()
    assert (who["name"], who["role"], who["via"], who["email"]) == \
        ("alice", "member", "token", "alice@example.com"), who
    assert re.fullmatch(r"cli-[0-9a-f]{8}", who["token"] or ""), who
