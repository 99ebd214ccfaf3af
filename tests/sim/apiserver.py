#!/usr/bin/python3
"""apiserver.py - a fake kube-apiserver master for the lbd demo and tests.

Python 3 stdlib only. One process plays one master:

    apiserver.py --name master-1 --listen 127.0.0.1:16441 \
                 --cert server.crt --key server.key --control 127.0.0.1:17441

Serving port(s) (TLS when --cert/--key are given, plain HTTP otherwise):
  GET /readyz, /livez   200 "ok"; when failing 503 with a kube-style verbose body;
                        when hanging, the request is held and never answered.
  GET /version          JSON shaped like the apiserver's.
  POST /echo            the request body, back.
  GET /watch?seconds=N  chunked response, one JSON line every 100ms (a WATCH).
  anything else         404 JSON Status, like the apiserver.
Every response carries "X-Backend: <name>", so a client can tell which
master answered through the VIP.

--health-token TOKEN plays k3s, whose apiserver runs without anonymous auth
(k3s-io/k3s#3576): /readyz, /livez and /healthz then answer 401 to a
request without "Authorization: Bearer TOKEN". Without it (kubeadm) they
answer anyone. The other paths answer anyone either way (a shortcut: the
VIP tests send /version, /echo and /watch through lbd as plain traffic).

Control port (plain HTTP, loopback only):
  POST /fail   /readyz and /livez answer 503
  POST /hang   connections are accepted but /readyz and /livez never answered
  POST /ok     back to healthy (held /readyz requests are closed unanswered)
  GET  /stats  JSON: connections accepted, open now, requests per path, mode

SIGTERM or SIGINT: stop listening and exit at once (open connections are
dropped; the process does not wait for WATCH streams).
"""

import argparse
import json
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.4+k3s1",
    "gitCommit": "a562d090b0d0f6a6d7ea8a4dc0f6b1f1e0d4e1c2",
    "gitTreeState": "clean",
    "buildDate": "2024-12-10T21:09:10Z",
    "goVersion": "go1.22.9",
    "compiler": "gc",
    "platform": "linux/amd64",
}

HEALTH_CHECKS = ["ping", "log", "etcd", "informer-sync", "poststarthook/start-apiserver-admission-initializer"]


class Master:
    """Shared state of one fake master: its mode and its counters."""

    def __init__(self, name):
        self.name = name
        self.mode = "ok"  # ok | fail | hang
        self.cond = threading.Condition()
        self.stopping = False
        self.accepted = 0
        self.open = 0
        self.requests = {}  # path -> count
        self.health_token = None  # k3s: the health endpoints need this bearer token
        self.statuses = {}  # "path status" -> count

    def set_mode(self, mode):
        with self.cond:
            self.mode = mode
            self.cond.notify_all()

    def count(self, field, key=None):
        with self.cond:
            if key is None:
                setattr(self, field, getattr(self, field) + 1)
            else:
                d = getattr(self, field)
                d[key] = d.get(key, 0) + 1

    def conn_open(self, delta):
        with self.cond:
            if delta > 0:
                self.accepted += 1
            self.open += delta

    def wait_unhung(self):
        """Blocks while the mode is 'hang'. Returns False if the request
        should be dropped unanswered (it was held, or we are stopping)."""
        with self.cond:
            if self.mode != "hang":
                return True
            while self.mode == "hang" and not self.stopping:
                self.cond.wait(1.0)
            return False

    def stats(self):
        with self.cond:
            return {
                "name": self.name,
                "mode": self.mode,
                "connections_accepted": self.accepted,
                "connections_open": self.open,
                "requests": dict(self.requests),
                "responses": dict(self.statuses),
            }


class Drop(Exception):
    """Close the connection without answering."""


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-apiserver"
    sys_version = ""

    @property
    def master(self):
        return self.server.master

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s %s: %s\n" % (self.master.name, self.address_string(), fmt % args))

    def send(self, status, body, ctype="text/plain; charset=utf-8", extra=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Backend", self.master.name)
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()
        self.master.count("statuses", "%s %d" % (urlsplit(self.path).path, status))

    def send_json(self, status, obj):
        self.send(status, json.dumps(obj, indent=2) + "\n", "application/json")

    def status_404(self):
        self.send_json(404, {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "the server could not find the requested resource", "reason": "NotFound",
            "details": {}, "code": 404})

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            return self.rfile.read(n)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def health(self, which):
        if not self.master.wait_unhung():
            raise Drop()
        verbose = "verbose" in parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        if self.master.mode == "fail":
            lines = ["[+]ping ok", "[-]etcd failed: reason withheld", "%s check failed" % which]
            self.send(503, "\n".join(lines) + "\n")
        elif verbose:
            lines = ["[+]%s ok" % c for c in HEALTH_CHECKS] + ["%s check passed" % which]
            self.send(200, "\n".join(lines) + "\n")
        else:
            self.send(200, "ok")

    def watch(self, query):
        try:
            seconds = float(parse_qs(query).get("seconds", ["10"])[0])
        except ValueError:
            seconds = 10.0
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("X-Backend", self.master.name)
        self.end_headers()
        self.master.count("statuses", "/watch 200")
        deadline = time.monotonic() + seconds
        seq = 0
        while time.monotonic() < deadline and not self.master.stopping:
            seq += 1
            line = json.dumps({"type": "MODIFIED", "seq": seq, "backend": self.master.name,
                               "object": {"kind": "Lease", "metadata": {"resourceVersion": str(seq)}}})
            data = (line + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            time.sleep(0.1)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def dispatch(self):
        url = urlsplit(self.path)
        self.master.count("requests", url.path)
        if url.path in ("/readyz", "/livez", "/healthz") and self.master.health_token and \
                self.headers.get("Authorization") != "Bearer " + self.master.health_token:
            self.send_json(401, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                 "status": "Failure", "message": "Unauthorized",
                                 "reason": "Unauthorized", "code": 401})
        elif url.path in ("/readyz", "/livez"):
            self.health(url.path[1:])
        elif url.path == "/healthz":
            self.send(200 if self.master.mode == "ok" else 503, "ok" if self.master.mode == "ok" else "unhealthy")
        elif url.path == "/version":
            self.send_json(200, VERSION)
        elif url.path == "/echo":
            self.send(200, self.read_body(), self.headers.get("Content-Type") or "application/octet-stream")
        elif url.path == "/watch":
            self.watch(url.query)
        elif url.path == "/":
            self.send(200, "%s\n" % self.master.name)
        else:
            self.status_404()

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except Drop:
            self.close_connection = True
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = dispatch


class ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("%s control: %s\n" % (self.server.master.name, fmt % args))

    def reply(self, status, obj):
        body = (json.dumps(obj, indent=2) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        mode = {"/fail": "fail", "/hang": "hang", "/ok": "ok"}.get(urlsplit(self.path).path)
        if mode is None:
            return self.reply(404, {"error": "unknown route; POST /fail, /hang, /ok; GET /stats"})
        self.server.master.set_mode(mode)
        sys.stderr.write("%s: mode %s\n" % (self.server.master.name, mode))
        sys.stderr.flush()
        self.reply(200, {"name": self.server.master.name, "mode": mode})

    def do_GET(self):
        if urlsplit(self.path).path == "/stats":
            return self.reply(200, self.server.master.stats())
        self.reply(404, {"error": "unknown route; POST /fail, /hang, /ok; GET /stats"})


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, master, tls_ctx=None, verbose=False):
        host, port = addr
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.master = master
        self.tls_ctx = tls_ctx
        self.verbose = verbose
        super().__init__((host, port), handler)

    def server_bind(self):
        # Skip HTTPServer.server_bind's getfqdn(): it may do DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):
        # Handshake here, in the connection's own thread, so a client that
        # connects and never speaks TLS cannot stall the accept loop.
        counted = self.RequestHandlerClass is ApiHandler
        if counted:
            self.master.conn_open(+1)
        sock = request
        try:
            if self.tls_ctx is not None:
                request.settimeout(10)
                sock = self.tls_ctx.wrap_socket(request, server_side=True)
                sock.settimeout(None)
            self.RequestHandlerClass(sock, client_address, self)
        except (ConnectionError, ssl.SSLError, socket.timeout, OSError):
            pass
        finally:
            if counted:
                self.master.conn_open(-1)
            if sock is not request:
                try:
                    sock.close()
                except OSError:
                    pass

    def handle_error(self, request, client_address):
        pass


def parse_addr(text):
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("address must be HOST:PORT or [V6]:PORT: %r" % text)
    return host, int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description="A fake kube-apiserver master for lbd tests and the demo.")
    ap.add_argument("--name", default="master-1")
    ap.add_argument("--listen", type=parse_addr, action="append", required=True,
                    help="HOST:PORT to serve on (repeatable); TLS when --cert/--key given")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--control", type=parse_addr, help="HOST:PORT of the plain-HTTP control port")
    ap.add_argument("--mode", choices=["ok", "fail", "hang"], default="ok", help="initial mode")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    ap.add_argument("--health-token", help="k3s: /readyz, /livez, /healthz need this bearer "
                    "token (401 without it); default: anyone (kubeadm)")
    args = ap.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")

    tls_ctx = None
    if args.cert:
        tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_ctx.load_cert_chain(args.cert, args.key)

    master = Master(args.name)
    master.mode = args.mode
    master.health_token = args.health_token
    servers = [Server(a, ApiHandler, master, tls_ctx, args.verbose) for a in args.listen]
    if args.control:
        servers.append(Server(args.control, ControlHandler, master, None, args.verbose))

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    threads = []
    for s in servers:
        t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        t.start()
        threads.append(t)
    where = ", ".join("%s:%d" % s.server_address[:2] for s in servers[:len(args.listen)])
    sys.stderr.write("%s: serving %s on %s%s\n" % (
        args.name, "https" if tls_ctx else "http", where,
        ", control on %s:%d" % args.control if args.control else ""))
    sys.stderr.flush()

    while not stop.wait(0.5):
        pass
    with master.cond:
        master.stopping = True
        master.cond.notify_all()
    for s in servers:
        s.shutdown()
        s.server_close()
    sys.stderr.write("%s: stopped\n" % args.name)
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
