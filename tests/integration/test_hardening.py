"""test_hardening.py - what an attacker can do to lbd's logs and HTTP
listeners from outside (issue 19), end to end against the real lbd with its
gate process:

  - a lease `reason` from a node cannot forge a log line nor put an ESC
    byte in lbd's log (log.format: text; the gate process logs to lbd's
    stderr);
  - an unreadable gate tokens file costs one warning per 10 s, not one per
    request;
  - every error the listeners answer is JSON, including those evhttp makes
    itself (body too large, malformed request line or headers), on the
    admin socket and on gate.listen.

Backends are tests/sim/apiserver.py; every process is started per test and
killed by PID; every wait is a bounded poll.
"""

import json
import os
import re
import socket
import ssl
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, T, wait_for  # noqa: E402

ADMIN_TOKEN = "hd-admin-token-0123456789"
MASTERS = ["master-1", "master-2"]
WORKERS = ["worker-1", "worker-2"]


def token_of(node):
    return "tok-%s-0123456789" % node


def raw_http(connect, request, timeout=None):
    """Sends request (bytes) on a new connection made by connect() and reads
    until the server closes: (status, headers dict with lower-case names,
    body bytes). A server that closes without an answer gives status 0."""
    s = connect()
    s.settimeout(timeout or T(10))
    data = b""
    try:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # it may answer before reading everything: read what it said
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


class TestHardening(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.tokens = self.path("gate-tokens")
        with open(self.tokens, "w") as f:
            f.write("# node token\n* %s\n" % ADMIN_TOKEN)
            for n in MASTERS + WORKERS:
                f.write("%s %s\n" % (n, token_of(n)))
        os.chmod(self.tokens, 0o600)

    def start(self):
        masters = [self.start_apiserver(m) for m in MASTERS]
        cfg = self.lbd_config(masters, name="vip")
        cfg["gate"] = {"listen": "%s:%d" % (LOOPBACK, harness.free_port()),
                       "tokens_file": self.tokens, "quorum": {"pool": "vip"},
                       "concurrency": {"masters": 1, "workers": len(WORKERS)}}
        # The admin TCP listener, over TLS: the third kind of listener.
        admin_token = self.path("admin-token")
        with open(admin_token, "w") as f:
            f.write(ADMIN_TOKEN + "\n")
        os.chmod(admin_token, 0o600)
        c = harness.certs()
        cfg["admin"].update({"listen": "%s:%d" % (LOOPBACK, harness.free_port()),
                             "token_file": admin_token,
                             "tls": {"cert": c["cert"], "key": c["key"]}})
        self.assertEqual(cfg["log"]["format"], "text")
        p = self.start_lbd(cfg, wait_up=["vip/" + m for m in MASTERS])
        p.admin_sock = cfg["admin"]["socket"]
        p.admin_port = int(cfg["admin"]["listen"].rsplit(":", 1)[1])
        p.gate_port = int(cfg["gate"]["listen"].rsplit(":", 1)[1])
        wait_for(lambda: harness.admin_request(p.admin_sock, "GET", "/v1/gate/status")[0] == 200,
                 T(10), "the gate process to answer")
        return p

    def log_bytes(self, p, since=0):
        with open(p.log.path, "rb") as f:
            f.seek(since)
            return f.read()

    def unix_connect(self, p):
        def connect():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(p.admin_sock)
            return s
        return connect

    def admin_tls_connect(self, p):
        def connect():
            s = socket.create_connection((LOOPBACK, p.admin_port), timeout=T(5))
            return harness.client_tls_context().wrap_socket(s, server_hostname="localhost")
        return connect

    def gate_connect(self, p):
        return lambda: socket.create_connection((LOOPBACK, p.gate_port), timeout=T(5))

    # ------------------------------------------------------------------

    def test_lease_reason_cannot_forge_a_log_line(self):
        p = self.start()
        since = p.log.mark()
        forged = "2030-01-01T00:00:00.000Z lbd[1] info: gate: admin socket released the lease " \
                 "of master-2"
        reason = "kernel update\n" + forged + "\r\n\x1b[2J\x1b]0;owned\x07\x1b[31mred\x9b1m end"
        # Through the admin socket and through gate.listen with the node's token.
        st, _, ans = harness.admin_request(p.admin_sock, "POST", "/v1/gate/leases",
                                           {"node": "worker-1", "role": "worker",
                                            "reason": reason})
        self.assertEqual(st, 201, ans)
        body = json.dumps({"node": "worker-2", "role": "worker", "reason": reason}).encode()
        st, _, out = raw_http(self.gate_connect(p),
                              b"POST /v1/gate/leases HTTP/1.1\r\nHost: x\r\n"
                              b"Authorization: Bearer " + token_of("worker-2").encode() +
                              b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                              b"\r\n" % len(body) + body)
        self.assertEqual(st, 201, out)
        for node in ("worker-1", "worker-2"):
            p.log.wait(r"gate: granted worker lease .* to %s .*end" % node, T(10), since=since,
                       proc=p)
        log = self.log_bytes(p, since)
        self.assertNotIn(b"\x1b", log, "an ESC byte reached lbd's log")
        self.assertNotIn(b"\x07", log)
        self.assertNotIn(b"\r", log)
        lines = log.split(b"\n")
        mentions = [l for l in lines if b"released the lease of master-2" in l]
        self.assertEqual(len(mentions), 2, b"\n".join(lines).decode("utf-8", "replace"))
        for node, line in zip(("worker-1", "worker-2"), mentions):
            # The forged text is inside the grant's line, not a line of its own.
            self.assertRegex(line.decode(), r"^\S+ lbd(-gate)?\[\d+\] info: gate: granted worker "
                                            r"lease .* to %s .*: kernel update " % node)
            self.assertFalse(line.startswith(forged.encode()))
        for line in lines:
            if line:
                line.decode("utf-8")  # valid UTF-8, or this raises
                self.assertRegex(line.decode(), r"^\d{4}-\d\d-\d\dT[\d:.]+Z \S+\[\d+\] \w+: ",
                                 "a line that lbd did not start")

    def test_unreadable_tokens_file_warns_once(self):
        p = self.start()
        os.rename(self.tokens, self.tokens + ".away")
        since = p.log.mark()
        for i in range(200):
            st, _, body = raw_http(self.gate_connect(p),
                                   b"GET /v1/gate/status HTTP/1.1\r\nHost: x\r\n"
                                   b"Authorization: Bearer nobody-%d\r\n\r\n" % i)
            self.assertEqual(st, 503, body)
            self.assertIn("unreadable", json.loads(body)["error"])
        # A line for the first; the other 199 are counted, not logged (the
        # loop takes well under the 10 s between lines; if a slow machine
        # crossed them, a second line with its count is allowed).
        p.log.wait(r"gate: tokens file", T(5), since=since, proc=p)
        warned = [l for l in p.log.lines(since) if "tokens file" in l]
        self.assertGreaterEqual(len(warned), 1)
        self.assertLessEqual(len(warned), 2, "\n".join(warned[:10]))
        self.assertIsNone(p.poll())

    # ------------------------------------------------------------------

    def evhttp_cases(self, max_body):
        """(what, request bytes, the status evhttp answers) for the errors
        evhttp makes itself, before any handler of lbd runs."""
        big = b"x" * (max_body + 1)
        return [
            ("body over the limit", b"POST /v1/gate/leases HTTP/1.1\r\nHost: x\r\n"
             b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(big) + big,
             413),
            ("headers over the limit", b"GET /v1/gate/status HTTP/1.1\r\nHost: x\r\nX-Big: " +
             b"a" * 20000 + b"\r\n\r\n", 400),
            ("malformed request line", b"NONSENSE\r\n\r\n", 400),
            ("a header without a colon", b"GET /v1/gate/status HTTP/1.1\r\nHost: x\r\n"
             b"no colon here\r\n\r\n", 400),
            ("bad Content-Length", b"POST /v1/gate/leases HTTP/1.1\r\nHost: x\r\n"
             b"Content-Length: abc\r\n\r\n{}", 400),
            ("HTTP/1.0 and a bad header", b"GET /v1/gate/status HTTP/1.0\r\nno colon\r\n\r\n",
             400),
            ("a method evhttp refuses", b"TRACE /v1/gate/status HTTP/1.1\r\nHost: x\r\n\r\n",
             501),
            ("an unknown method", b"BREW /v1/gate/status HTTP/1.1\r\nHost: x\r\n\r\n", 501),
            ("an Expect it cannot meet", b"POST /v1/gate/leases HTTP/1.1\r\nHost: x\r\n"
             b"Expect: tea\r\nContent-Length: 2\r\n\r\n{}", 417),
            # evhttp counts a corrupt chunk as "too long".
            ("a corrupt chunked body", b"POST /v1/gate/leases HTTP/1.1\r\nHost: x\r\n"
             b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 413),
        ]

    def check_json_errors(self, where, connect, max_body):
        for what, request, want in self.evhttp_cases(max_body):
            st, hdrs, body = raw_http(connect, request)
            label = "%s, %s: %d %r %r" % (where, what, st, hdrs, body[:300])
            self.assertEqual(st, want, label)
            self.assertEqual(hdrs.get("content-type"), "application/json", label)
            self.assertEqual(int(hdrs.get("content-length", -1)), len(body), label)
            doc = json.loads(body)
            self.assertIsInstance(doc, dict, label)
            self.assertIsInstance(doc.get("error"), str, label)
            self.assertTrue(doc["error"], label)
            self.assertNotIn("<", doc["error"], label)
        # And a good request still gets lbd's own answer on the same listener.
        st, hdrs, body = raw_http(connect, b"GET /v1/gate/status HTTP/1.1\r\nHost: x\r\n"
                                           b"Authorization: Bearer " + ADMIN_TOKEN.encode() +
                                           b"\r\n\r\n")
        self.assertEqual(st, 200, body)
        self.assertIn("store", json.loads(body))

    def test_evhttp_errors_are_json(self):
        p = self.start()
        self.check_json_errors("admin socket", self.unix_connect(p), 64 * 1024)
        self.check_json_errors("gate.listen", self.gate_connect(p), 16 * 1024)
        self.check_json_errors("admin.listen (TLS)", self.admin_tls_connect(p), 64 * 1024)
        # The body limit's message says what the limit is.
        st, _, body = raw_http(self.unix_connect(p), self.evhttp_cases(64 * 1024)[0][1])
        self.assertEqual(st, 413)
        self.assertIn("65536", json.loads(body)["error"])
        self.assertIsNone(p.poll())


if __name__ == "__main__":
    unittest.main()
