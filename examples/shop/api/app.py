"""app.py - the shop's JSON API over redis, Python 3 stdlib only.

    GET  /healthz        200 {"ok": true} when redis answers PING, else 503
    GET  /api/products   200 [{"id", "name", "price", "stock"}, ...]
    POST /api/products   {"name": str, "price": number >= 0, "stock"?: int} -> 201 product
    GET  /api/info       200 {"env", "dataset", "seeded_dataset", "products"}

Listens on 127.0.0.1:$PORT; finds redis through REDIS_URL or DB_HOST/DB_PORT.
"""
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from resp import Redis

MAX_BODY = 64 * 1024


def products(r):
    return [json.loads(p) for p in r.call("LRANGE", "shop:products", 0, -1)]


def check_product(body):
    """The product to store, or an error message."""
    if not isinstance(body, dict):
        return None, "body must be a JSON object"
    name, price, stock = body.get("name"), body.get("price"), body.get("stock", 0)
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        return None, "'name' must be a non-empty string of at most 200 characters"
    if isinstance(price, bool) or not isinstance(price, (int, float)) or price < 0:
        return None, "'price' must be a number >= 0"
    if isinstance(stock, bool) or not isinstance(stock, int):
        return None, "'stock' must be an integer"
    return {"name": name, "price": price, "stock": stock}, None


class Handler(BaseHTTPRequestHandler):
    server_version = "shop-api/1"

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def fail(self, status, message):
        self.reply(status, {"error": message})

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        try:
            with Redis.from_env() as r:
                if path == "/healthz":
                    return self.reply(200, {"ok": r.call("PING") == "PONG"})
                if path == "/api/products":
                    return self.reply(200, products(r))
                if path == "/api/info":
                    return self.reply(200, {
                        "env": os.environ.get("EPH_ENV"),
                        "dataset": os.environ.get("EPH_PARAM_DATASET"),
                        "seeded_dataset": r.call("GET", "shop:dataset"),
                        "products": r.call("LLEN", "shop:products"),
                    })
        except OSError as e:
            return self.fail(503, "redis: %s" % e)
        self.fail(404, "no route for %s" % path)

    def do_POST(self):
        if self.path.split("?", 1)[0] != "/api/products":
            return self.fail(404, "no route for %s" % self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.fail(413, "body larger than %d bytes" % MAX_BODY)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return self.fail(400, "body is not JSON")
        product, problem = check_product(body)
        if problem:
            return self.fail(400, problem)
        with Redis.from_env() as r:
            product["id"] = r.call("INCR", "shop:next_id")
            r.call("RPUSH", "shop:products", json.dumps(product))
        self.reply(201, product)

    def log_message(self, fmt, *args):
        sys.stderr.write("api: %s\n" % (fmt % args))


def main():
    port = int(os.environ["PORT"])
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("api: listening on 127.0.0.1:%d env=%s dataset=%s"
          % (port, os.environ.get("EPH_ENV"), os.environ.get("EPH_PARAM_DATASET")), flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
