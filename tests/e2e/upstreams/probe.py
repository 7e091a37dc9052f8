"""probe.py - an HTTP/1.1 upstream for the gateway tests, Python 3 stdlib only.

Listens on 127.0.0.1:$PORT, after sleeping $START_DELAY seconds (a slow start).
Keep-alive, one thread per connection; it counts the TCP connections it
accepted, so a test can tell whether the gateway reuses them.

    GET  /healthz                200 "ok"
    GET  /stats                  JSON: connections, requests, paths (the last
                                 1,000), upload_bytes, download_sent
    POST /open?gate=NAME         opens gate NAME (a threading.Event)
    *    /echo[?n=N]             JSON: method, path, n, headers ([name, value]
                                 as received), body_bytes
    GET  /slow?ms=M&n=N          /echo's answer after M ms
    POST /upload[?hold=B&gate=G] reads the body (Content-Length or chunked)
                                 without storing it; after B bytes waits for
                                 gate G; answers JSON bytes and sha256
    GET  /download?bytes=N[&hold=B&gate=G][&chunked=1]
                                 N bytes of pattern() (HEAD: the head only);
                                 after B bytes waits for gate G
    GET  /sse?gate=G             text/event-stream, chunked: event 1, then,
                                 once gate G opens, event 2, then the end
    GET  /etag                   ETag "v1"; If-None-Match: "v1" gives 304
    GET  /hop                    a response with hop-by-hop headers (Connection:
                                 X-Drop-Me, X-Drop-Me, Keep-Alive) and X-Keep
    GET  /bighead?bytes=N        200 with a header X-Big of N bytes
    GET  /raw?kind=K             a response written byte by byte, then closed:
                                 cl-te (Content-Length and chunked), two-cl
                                 (two different Content-Lengths), no-length
                                 (a body delimited by the close)

Stdout: one line "probe: listening on 127.0.0.1:PORT" once it accepts.
"""
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BLOCK = bytes(range(256)) * 256          # 64 KiB; the download body repeats it
GATE_TIMEOUT_S = 120                     # a gate nobody opens must not hang forever

# Responses a correct server never sends (for /raw).
RAW = {
    "cl-te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\n0\r\n\r\n",
    "two-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "no-length": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
}


def pattern(n):
    """Yields the first n bytes of the download body in blocks (tests use it too)."""
    while n > 0:
        piece = BLOCK if n >= len(BLOCK) else BLOCK[:n]
        n -= len(piece)
        yield piece


class Probe(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, addr):
        super().__init__(addr, Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.paths = []
        self.upload_bytes = 0      # bytes of the current/last upload read so far
        self.download_sent = 0     # bytes of the current/last download handed to the kernel
        self.gates = {}

    def gate(self, name):
        with self.lock:
            return self.gates.setdefault(name, threading.Event())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "probe/1"

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def log_message(self, fmt, *args):
        pass

    # ---------------------------------------------------------------- helpers

    def query(self, name, default=None):
        values = parse_qs(urlsplit(self.path).query).get(name)
        return values[0] if values else default

    def reply(self, status, obj, headers=()):
        data = (json.dumps(obj) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def body_pieces(self):
        """Yields the request body in pieces, Content-Length or chunked."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass                     # trailers
                    return
                while size > 0:
                    piece = self.rfile.read(min(size, 65536))
                    if not piece:
                        raise ConnectionError("body cut short")
                    size -= len(piece)
                    yield piece
                self.rfile.readline(1024)        # CRLF after the chunk
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            piece = self.rfile.read(min(length, 65536))
            if not piece:
                raise ConnectionError("body cut short")
            length -= len(piece)
            yield piece

    def echo(self):
        body_bytes = sum(len(p) for p in self.body_pieces())
        return {"method": self.command, "path": self.path, "n": self.query("n"),
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_bytes": body_bytes}

    # ---------------------------------------------------------------- routes

    def handle_any(self):
        path = urlsplit(self.path).path
        with self.server.lock:
            self.server.requests += 1
            self.server.paths = (self.server.paths + [self.path])[-1000:]
        if path == "/healthz":
            data = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        elif path == "/stats":
            with self.server.lock:
                self.reply(200, {"connections": self.server.connections,
                                 "requests": self.server.requests,
                                 "paths": list(self.server.paths),
                                 "upload_bytes": self.server.upload_bytes,
                                 "download_sent": self.server.download_sent})
        elif path == "/open":
            self.server.gate(self.query("gate", "")).set()
            self.reply(200, {"opened": self.query("gate", "")})
        elif path == "/echo":
            self.reply(200, self.echo())
        elif path == "/slow":
            time.sleep(int(self.query("ms", "100")) / 1000)
            self.reply(200, self.echo())
        elif path == "/upload":
            self.upload()
        elif path == "/download":
            self.download()
        elif path == "/sse":
            self.sse()
        elif path == "/etag":
            self.etag()
        elif path == "/hop":
            data = b"hop\n"
            self.send_response(200)
            self.send_header("Connection", "X-Drop-Me")
            self.send_header("X-Drop-Me", "secret")
            self.send_header("Keep-Alive", "timeout=77")
            self.send_header("X-Keep", "yes")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif path == "/bighead":
            self.reply(200, {"ok": True}, [("X-Big", "b" * int(self.query("bytes", "0")))])
        elif path == "/raw":
            self.wfile.write(RAW[self.query("kind")])
            self.close_connection = True
        else:
            self.reply(404, {"error": "no route %s" % path})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = handle_any

    def upload(self):
        hold = int(self.query("hold", "-1"))
        gate = self.server.gate(self.query("gate", "")) if hold >= 0 else None
        digest = hashlib.sha256()
        total = 0
        self.server.upload_bytes = 0
        for piece in self.body_pieces():
            if gate is not None and total + len(piece) > hold:
                # Stop reading at `hold` bytes until the test opens the gate.
                cut = max(0, hold - total)
                digest.update(piece[:cut])
                total += cut
                self.server.upload_bytes = total
                gate.wait(GATE_TIMEOUT_S)
                gate = None
                piece = piece[cut:]
            digest.update(piece)
            total += len(piece)
            self.server.upload_bytes = total
        self.reply(200, {"bytes": total, "sha256": digest.hexdigest()})

    def download(self):
        n = int(self.query("bytes", "0"))
        hold = int(self.query("hold", "-1"))
        gate = self.server.gate(self.query("gate", "")) if hold >= 0 else None
        chunked = self.query("chunked") == "1"
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(n))
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = 0
        self.server.download_sent = 0
        for piece in pattern(n):
            if gate is not None and sent >= hold:
                gate.wait(GATE_TIMEOUT_S)
                gate = None
            if chunked:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            else:
                self.wfile.write(piece)
            sent += len(piece)
            self.server.download_sent = sent
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def sse(self):
        gate = self.server.gate(self.query("gate", ""))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(text):
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

        event("id: 1\ndata: one\n\n")
        opened = gate.wait(GATE_TIMEOUT_S)
        event("id: 2\ndata: two gate=%s\n\n" % ("opened" if opened else "timed-out"))
        self.wfile.write(b"0\r\n\r\n")

    def etag(self):
        if self.headers.get("If-None-Match") == '"v1"':
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.end_headers()
            return
        data = b"etag body\n"
        self.send_response(200)
        self.send_header("ETag", '"v1"')
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def main():
    port = int(os.environ["PORT"])
    delay = float(os.environ.get("START_DELAY") or 0)
    if delay > 0:
        time.sleep(delay)
    httpd = Probe(("127.0.0.1", port))
    print("probe: listening on 127.0.0.1:%d" % port, flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
