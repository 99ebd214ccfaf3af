#!/usr/bin/python3
"""badapi.py - an apiserver that misbehaves, for lbd's gate (kubernetes lease store).

Python 3 stdlib only. Serves HTTPS (with --cert/--key; plain HTTP without) on
one loopback port and behaves as its current mode says, per connection:

  ok       a minimal, valid apiserver for the gate: empty LeaseList and
           NodeList, GET of a Lease 404, POST/PUT of a Lease echoed back with
           a resourceVersion
  garbage  every request is answered with junk, rotating through:
             503 whose body is 190 ASCII bytes then b"\\xe2\\x82" (cut mid-character)
             503 Status-shaped JSON with raw \\xff\\xfe, NUL and ESC bytes
             200 "JSON" with invalid UTF-8 inside strings
             503 with a header of raw \\xff bytes and a body of \\xff
             200 with Content-Length 1000 and 20 bytes, then close
  hang     accepts, reads the request, never answers (held until the mode
           changes or the process stops)
  reset    closes with SO_LINGER 0 (a TCP RST): every other connection at
           once after accept, the others after reading the request

Control port (plain HTTP, loopback only):
  POST /mode/NAME   switch mode (held hung connections are then reset)
  GET  /stats       {"mode", "accepted", "requests": {mode: n}, "paths": {path: n}}

    badapi.py --listen 127.0.0.1:0 --control 127.0.0.1:0 --cert C --key K \\
              --mode ok --ready-file F       (F gets {"port", "control"})
"""

import argparse
import json
import os
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "garbage", "hang", "reset")


class State:
    def __init__(self, mode):
        self.mode = mode
        self.cond = threading.Condition()
        self.accepted = 0
        self.requests = {}
        self.paths = {}
        self.garbage_n = 0

    def set_mode(self, mode):
        with self.cond:
            self.mode = mode
            self.cond.notify_all()

    def count(self, mode, path):
        with self.cond:
            self.requests[mode] = self.requests.get(mode, 0) + 1
            self.paths[path] = self.paths.get(path, 0) + 1

    def stats(self):
        with self.cond:
            return {"mode": self.mode, "accepted": self.accepted,
                    "requests": dict(self.requests), "paths": dict(self.paths)}


STATE = None


def rst_close(sock):
    """Close with a TCP RST (SO_LINGER on, 0 seconds)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def read_request(sock):
    """(method, path, body) of one HTTP/1.1 request, or None at EOF."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            return None
        buf += d
        if len(buf) > 1 << 20:
            return None
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("?", "?")
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip() or 0)
    while len(rest) < length:
        d = sock.recv(65536)
        if not d:
            break
        rest += d
    return method, path, rest[:length]


def response(status, body, ctype=b"application/json", extra=b"", length=None):
    reason = {200: b"OK", 201: b"Created", 404: b"Not Found", 503: b"Service Unavailable"}
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n" % (
        status, reason.get(status, b"X"), ctype, len(body) if length is None else length)
    return head + extra + b"\r\n" + body


def status_json(code, reason, message):
    return json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code}).encode()


def answer_ok(method, path, body):
    base = path.split("?", 1)[0]
    if base.endswith("/leases") and method == "GET":
        return response(200, json.dumps({"kind": "LeaseList", "apiVersion": "coordination.k8s.io/v1",
                                         "metadata": {"resourceVersion": "1"}, "items": []}).encode())
    if "/leases/" in base and method == "GET":
        return response(404, status_json(404, "NotFound", "leases.coordination.k8s.io \"%s\" not found"
                                         % base.rsplit("/", 1)[1]))
    if "/leases" in base and method in ("POST", "PUT"):
        try:
            obj = json.loads(body)
            obj.setdefault("metadata", {})["resourceVersion"] = str(int(time.time() * 1000))
        except ValueError:
            return response(400, status_json(400, "BadRequest", "not JSON"))
        return response(201 if method == "POST" else 200, json.dumps(obj).encode())
    if base == "/api/v1/nodes":
        return response(200, json.dumps({"kind": "NodeList", "apiVersion": "v1",
                                         "metadata": {"resourceVersion": "1"}, "items": []}).encode())
    if base in ("/version", "/readyz", "/livez", "/healthz"):
        return response(200, b'{"gitVersion": "v1.31.4"}')
    return response(404, status_json(404, "NotFound", "the server could not find the requested resource"))


def garbage(n):
    """The n-th kind of junk (a full response, bytes); the last is a short body."""
    k = n % 5
    if k == 0:
        return response(503, b"A" * 190 + b"\xe2\x82")
    if k == 1:
        return response(503, b'{"kind":"Status","apiVersion":"v1","status":"Failure","message":"'
                        + b"etcdserver: " + b"x" * 80 + b"\xff\xfe\x00\x1b[31m\xc3\x28\xe2\x82"
                        + b'","reason":"\xff","code":503}')
    if k == 2:
        return response(200, b'{"kind":"LeaseList","apiVersion":"coordination.k8s.io/v1",'
                        b'"metadata":{"resourceVersion":"\xe2\x82"},"items":[{"metadata":'
                        b'{"name":"lbd-gate-worker-0\xff","resourceVersion":"\xc0\xaf"},'
                        b'"spec":{"holderIdentity":"\xed\xa0\x80\x07"}}]}')
    if k == 3:
        return response(503, b"\xff" * 64, b"text/plain\xff\xfe",
                        extra=b"X-Bad: \xff\xfe\x00\x1b\r\nWarning: 299 - \"\xe2\x82\"\r\n")
    return response(200, b'{"kind":"LeaseList","items":[', length=1000)


def serve_conn(conn, ctx):
    st = STATE
    with st.cond:
        st.accepted += 1
        nth = st.accepted
        mode = st.mode
    if mode == "reset" and nth % 2 == 1:
        rst_close(conn)
        return
    sock = conn
    try:
        conn.settimeout(10)
        if ctx is not None:
            sock = ctx.wrap_socket(conn, server_side=True)
        req = read_request(sock)
        if req is None:
            sock.close()
            return
        method, path, body = req
        with st.cond:
            mode = st.mode
        st.count(mode, path)
        if mode == "ok":
            sock.sendall(answer_ok(method, path, body))
            sock.close()
        elif mode == "garbage":
            with st.cond:
                st.garbage_n += 1
                n = st.garbage_n
            sock.sendall(garbage(n))
            sock.close()
        elif mode == "hang":
            with st.cond:
                st.cond.wait_for(lambda: st.mode != "hang")
            rst_close(sock)
        else:  # reset, after reading the request
            rst_close(sock)
    except (OSError, ssl.SSLError, ValueError):
        try:
            sock.close()
        except OSError:
            pass


def accept_loop(lsock, ctx):
    while True:
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        threading.Thread(target=serve_conn, args=(conn, ctx), daemon=True).start()


class Control(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/stats":
            self.send_json(200, STATE.stats())
        else:
            self.send_json(404, {"error": "no such route"})

    def do_POST(self):
        if self.path.startswith("/mode/") and self.path[6:] in MODES:
            STATE.set_mode(self.path[6:])
            self.send_json(200, STATE.stats())
        else:
            self.send_json(404, {"error": "modes: " + ", ".join(MODES)})

    def send_json(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def split(addr):
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("badapi listens on loopback only: %s" % addr)
    return host, int(port)


def main():
    global STATE
    ap = argparse.ArgumentParser(description="a misbehaving apiserver (tests only)")
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--control", default="127.0.0.1:0")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--mode", choices=MODES, default="ok")
    ap.add_argument("--ready-file")
    args = ap.parse_args()
    STATE = State(args.mode)

    ctx = None
    if args.cert and args.key:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        ctx.set_alpn_protocols(["http/1.1"])
    host, port = split(args.listen)
    lsock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, port))
    lsock.listen(256)
    threading.Thread(target=accept_loop, args=(lsock, ctx), daemon=True).start()

    chost, cport = split(args.control)
    ctl = ThreadingHTTPServer((chost, cport), Control)
    ctl.daemon_threads = True
    threading.Thread(target=ctl.serve_forever, daemon=True).start()

    info = {"port": lsock.getsockname()[1], "control": ctl.server_address[1], "pid": os.getpid()}
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as f:
            json.dump(info, f)
        os.replace(args.ready_file + ".tmp", args.ready_file)
    sys.stdout.write(json.dumps(info) + "\n")
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
