"""app.py - the shop's web page, Python 3 stdlib only.

    GET  /          HTML listing the products (rendered here from the api)
    *    /api/...   proxied to $API_URL, so the page's own fetch() calls stay
                    on one origin (no CORS)
    GET  /healthz   200 "ok"

Listens on 127.0.0.1:$PORT.
"""
import html
import json
import os
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_URL = os.environ.get("API_URL", "").rstrip("/")
MAX_BODY = 64 * 1024
TIMEOUT_S = 10

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Shop - {env}</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:.2em .8em;text-align:left}}</style>
</head>
<body>
<h1>Shop</h1>
<p>Environment <b>{env}</b>, dataset <b>{dataset}</b>, {count} products.</p>
<table id="products">
<tr><th>#</th><th>name</th><th>price</th><th>stock</th></tr>
{rows}
</table>
<form id="add"><input name="name" placeholder="name" required>
<input name="price" type="number" step="0.01" min="0" placeholder="price" required>
<button>add</button> <span id="msg"></span></form>
<script>
document.getElementById("add").addEventListener("submit", async (ev) => {{
  ev.preventDefault();
  const f = ev.target;
  const res = await fetch("/api/products", {{method: "POST",
    headers: {{"Content-Type": "application/json"}},
    body: JSON.stringify({{name: f.name.value, price: Number(f.price.value)}})}});
  if (res.ok) location.reload();
  else document.getElementById("msg").textContent = (await res.json()).error;
}});
</script>
</body>
</html>
"""


def api(method, path, body=None, content_type=None):
    """(status, content type, bytes) of a call to the api; HTTP errors are answers too."""
    req = urllib.request.Request(API_URL + path, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as res:
            return res.status, res.headers.get("Content-Type"), res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def render():
    _, _, body = api("GET", "/api/products")
    products = json.loads(body)
    _, _, body = api("GET", "/api/info")
    info = json.loads(body)
    rows = "\n".join(
        "<tr><td>%d</td><td>%s</td><td>%.2f</td><td>%d</td></tr>"
        % (p["id"], html.escape(p["name"]), p["price"], p["stock"]) for p in products)
    return PAGE.format(env=html.escape(str(info.get("env"))),
                       dataset=html.escape(str(info.get("dataset"))),
                       count=len(products), rows=rows)


class Handler(BaseHTTPRequestHandler):
    server_version = "shop-web/1"

    def send(self, status, content_type, data):
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def proxy(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.send(413, "text/plain", b"body too large\n")
        body = self.rfile.read(length) if length else None
        try:
            self.send(*api(self.command, self.path, body, self.headers.get("Content-Type")))
        except OSError as e:
            self.send(502, "text/plain", ("api unreachable: %s\n" % e).encode())

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            return self.send(200, "text/plain", b"ok\n")
        if path.startswith("/api/"):
            return self.proxy()
        if path == "/":
            try:
                return self.send(200, "text/html; charset=utf-8", render().encode())
            except (OSError, ValueError) as e:
                return self.send(502, "text/plain", ("api unreachable: %s\n" % e).encode())
        self.send(404, "text/plain", b"not found\n")

    do_HEAD = do_GET

    def do_POST(self):
        if self.path.startswith("/api/"):
            return self.proxy()
        self.send(404, "text/plain", b"not found\n")

    def log_message(self, fmt, *args):
        sys.stderr.write("web: %s\n" % (fmt % args))


def main():
    if not API_URL:
        sys.exit("web: API_URL is not set")
    port = int(os.environ["PORT"])
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("web: listening on 127.0.0.1:%d api=%s" % (port, API_URL), flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
