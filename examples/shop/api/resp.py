"""resp.py - just enough of the redis protocol (RESP2) for the shop, stdlib only.

    with Redis.from_env() as r:
        r.call("RPUSH", "shop:products", "{...}")
"""
import os
import socket
from urllib.parse import urlparse


class RedisError(Exception):
    pass


class Redis:
    def __init__(self, host, port, timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.rfile = self.sock.makefile("rb")

    @classmethod
    def from_env(cls):
        """REDIS_URL (set by ephemera.yaml), else DB_HOST/DB_PORT (set by ephemera itself)."""
        url = urlparse(os.environ.get("REDIS_URL", ""))
        if url.hostname and url.port:
            return cls(url.hostname, url.port)
        return cls(os.environ.get("DB_HOST", "127.0.0.1"), int(os.environ["DB_PORT"]))

    def call(self, *args):
        """Sends one command, returns its reply (str, int, None or list); RedisError on -ERR."""
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            data = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        return self._reply()

    def _reply(self):
        line = self.rfile.readline()
        if not line.endswith(b"\r\n"):
            raise RedisError("connection closed by redis")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.rfile.read(n + 2)[:-2].decode()
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line)

    def close(self):
        self.rfile.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
