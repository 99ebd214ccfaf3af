"""test_replay.py - a backend that resets or closes a connection before its
first byte costs the client nothing (frontends[].retry_on_empty_response).

The CI failure it comes from: nginx stopped with SIGQUIT resets the
connections its kernel had already accepted; lbd's connect had succeeded, so
the connect retry did not apply, and the client got the reset. Here raw
Python backends (test_vip.RawBackend) play the dying master on loopback, with
tcp checks 30 s apart so lbd keeps them UP: one resets every connection
(SO_LINGER 0) once the request is there, unread, one reads the request and
closes without an answer, and a listening socket that never accepts is
closed with the request in its accept queue (nginx's case). A
healthy backend beside them must answer every client, and the bad ones'
lbd_backend_empty_response_retries_total must count what was replayed.
Then the limits: a backend that sent a byte before resetting, or a client
that sent more than the 16 KiB kept, is relayed as without replay.

The protocol: the client sends "ping ID LEN\\n" and LEN bytes; a good
backend answers "pong ID LEN\\n" and closes.
"""

import os
import re
import socket
import ssl
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import T, wait_for  # noqa: E402
from test_vip import RawBackend, VipCase, recv_all  # noqa: E402

KEEP_MAX = 16 * 1024  # lbd/relay.c KEEP_MAX
CHECKS = {"type": "tcp", "interval": "30s", "timeout": "1s"}  # UP after one check, for good
METRIC = "lbd_backend_empty_response_retries_total"


def read_request(c):
    """(id, payload length) of a "ping ID LEN" request, its payload read; None
    for a health check (connect and close)."""
    head = b""
    while not head.endswith(b"\n"):
        d = c.recv(1)
        if not d:
            return None
        head += d
    _, rid, n = head.split()
    left = int(n)
    while left > 0:
        d = c.recv(min(left, 65536))
        if not d:
            return None
        left -= len(d)
    return rid.decode(), int(n)


def reset(c):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


class Backends:
    """The kinds of backend, each recording the requests it read."""

    def __init__(self, case):
        self.case = case
        self.seen = {}  # backend name -> [request ids]
        self.lock = threading.Lock()

    def _record(self, name, req):
        if req:
            with self.lock:
                self.seen.setdefault(name, []).append(req[0])

    def ids(self, name):
        with self.lock:
            return list(self.seen.get(name, []))

    def make(self, name, handler):
        b = RawBackend(name, lambda c: handler(name, c))
        self.case.addCleanup(b.close)
        return b

    def good(self, name="good"):
        def h(name, c):
            req = read_request(c)
            self._record(name, req)
            if req:
                c.sendall(b"pong %s %d\n" % (req[0].encode(), req[1]))
        return self.make(name, h)

    def good_after_fin(self, name="good"):
        """Answers only once the client's FIN has come after the request."""
        def h(name, c):
            req = read_request(c)
            self._record(name, req)
            if req and c.recv(1) == b"":
                c.sendall(b"pong %s %d fin\n" % (req[0].encode(), req[1]))
        return self.make(name, h)

    def rst(self, name="rst"):
        """Resets every connection as soon as the request's first bytes are
        there, reading nothing. A health check (connect, close) is closed
        quietly: a reset racing its connect would mark the backend DOWN."""
        def h(name, c):
            if c.recv(1, socket.MSG_PEEK):
                reset(c)
        return self.make(name, h)

    def eof(self, name="eof"):
        """Reads the whole request, closes without a byte back."""
        def h(name, c):
            self._record(name, read_request(c))
            c.shutdown(socket.SHUT_WR)
        return self.make(name, h)

    def close_after_fin(self, name="closer"):
        """Reads whatever comes until the client's FIN, then closes without a
        byte back (a port probe's, or a client that gave up, answered)."""
        def h(name, c):
            got = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                got += d
            if got:
                self._record(name, (got.split()[1].decode(), 0))
        return self.make(name, h)

    def byte_then_rst(self, name="byte"):
        """Reads the request, sends one byte, waits for the client's "ack"
        (so the byte surely reached it), then resets."""
        def h(name, c):
            req = read_request(c)
            self._record(name, req)
            if not req:
                return
            c.sendall(b"x")
            got = b""
            while not got.endswith(b"\n"):
                d = c.recv(16)
                if not d:
                    break
                got += d
            reset(c)
        return self.make(name, h)


class Replay(VipCase):
    def setUp(self):
        super().setUp()
        self.bk = Backends(self)
        self.n = 0

    def vip_with(self, backends, frontend=None, extra=None):
        fe = {"retries": 2, "timeouts": {"connect": "1s", "idle": "30s"}}
        fe.update(frontend or {})
        ex = {"log": {"format": "text", "level": "debug"}}
        ex.update(extra or {})
        return self.start_vip(backends, health=CHECKS, frontend=fe, extra=ex)

    def connect(self, tls=False):
        c = socket.create_connection(self.vip, timeout=T(5))
        if tls:
            c = harness.client_tls_context().wrap_socket(c, server_hostname="127.0.0.1")
        return c

    def request(self, size=10, tls=False):
        """One request on a new connection: (id, what came back before EOF or
        the exception that ended it)."""
        self.n += 1
        rid = "r%d" % self.n
        with self.connect(tls) as c:
            try:
                c.sendall(b"ping %s %d\n" % (rid.encode(), size) + b"p" * size)
                return rid, recv_all(c)
            except (OSError, ssl.SSLError) as e:
                return rid, e

    def retries(self):
        st, _, text = harness.admin_request(self.cfg["admin"]["socket"], "GET", "/metrics")
        self.assertEqual(st, 200)
        return {m.group(1): int(m.group(2)) for m in re.finditer(
            r'^%s\{pool="vip",backend="([^"]+)"\} (\d+)$' % METRIC, text, re.M)}

    def serve_until_replayed(self, bad, tls=False, at_least=30):
        """Requests (at_least of them, or more), each answered by the good
        backend, until every backend in bad has had a client replayed
        elsewhere."""
        answers = []
        deadline = time.monotonic() + T(15)
        while len(answers) < at_least or not all(self.retries().get(b, 0) >= 1 for b in bad):
            self.assertLess(time.monotonic(), deadline, "no replay counted for each of %s: %s; "
                            "lbd log:\n%s" % (bad, self.retries(), self.lbd.log.tail()))
            rid, got = self.request(tls=tls)
            self.assertEqual(got, b"pong %s 10\n" % rid.encode(), "request %s" % rid)
            answers.append(rid)
            time.sleep(0.02)  # pacing only
        return answers

    # ------------------------------------------------------------------

    def test_reset_or_close_before_first_byte_is_replayed(self):
        """A reset once the request is there, and a close after reading the
        request: every client gets its answer from the good backend, once,
        and the bad backends' counters rise (the good one's stays 0)."""
        self.vip_with([self.bk.rst(), self.bk.eof(), self.bk.good()])
        answers = self.serve_until_replayed(["rst", "eof"])
        harness.note("%d requests, replays %s", len(answers), self.retries())
        self.assertEqual(self.retries().get("good"), 0)
        self.assertEqual(sorted(self.bk.ids("good")), sorted(answers), "each request once")
        # A replay does not mark the backend suspect (any client can cause
        # one: a stranger must not steer the pool), so it stays in turn.
        self.assertGreaterEqual(self.retries()["rst"], 5, self.retries())
        # The admin API counts the same (lbctl pools -o json, the status page).
        st, _, body = harness.admin_request(self.cfg["admin"]["socket"], "GET", "/v1/pools/vip")
        self.assertEqual(st, 200)
        by_name = {b["name"]: b["empty_response_retries"] for b in body["backends"]}
        self.assertEqual(by_name, self.retries())
        log = self.lbd.log.text()
        self.assertRegex(log, r"backend rst reset the connection before its first byte; "
                         r"replaying the client's \d+ bytes to \w+")
        self.assertRegex(log, r"backend eof closed before its first byte; replaying the "
                         r"client's \d+ bytes to \w+")
        self.assertLbdAlive()

    def bytes_to(self, backend):
        st, _, text = harness.admin_request(self.cfg["admin"]["socket"], "GET", "/metrics")
        m = re.search(r'^lbd_backend_bytes_total\{pool="vip",backend="%s",direction="to_backend"\} '
                      r'(\d+)$' % backend, text, re.M)
        return int(m.group(1)) if m else 0

    def test_listener_closed_with_the_request_in_its_accept_queue(self):
        """The CI failure itself (nginx on SIGQUIT): the backend's kernel had
        accepted lbd's connect and taken the request, the process never
        accepted it, and closing the listening socket resets it. The client
        gets its answer from the good backend."""
        queue = socket.socket()
        self.addCleanup(queue.close)
        queue.bind((harness.LOOPBACK, 0))
        queue.listen(16)  # never accepted
        self.vip_with([("queue", "%s:%d" % queue.getsockname()), self.bk.good()])
        for _ in range(4):  # round robin: one of the first two lands in the queue
            out = []
            t = threading.Thread(target=lambda: out.append(self.request()), daemon=True)
            t.start()
            wait_for(lambda: out or self.bytes_to("queue") > 0, T(5),
                     "an answer, or lbd to send a request into the accept queue")
            if not out:
                break
            self.assertEqual(out[0][1], b"pong %s 10\n" % out[0][0].encode())
        else:
            self.fail("no request went to the queue backend")
        queue.close()
        t.join(T(5))
        self.assertEqual(len(out), 1, "the client is still waiting")
        rid, got = out[0]
        self.assertEqual(got, b"pong %s 10\n" % rid.encode())
        self.assertEqual(self.retries().get("queue"), 1)

    def test_kept_copies_are_bounded_per_worker(self):
        """Clients that send nearly 16 KiB each to a backend that takes the
        bytes and never answers (a listener that never accepts) pin a copy
        each until its first byte: one worker keeps at most 8 MiB of copies
        (relay.c KEEP_BUDGET), however many such clients there are; the
        first replay kept them all (here 16 MB)."""
        queue = socket.socket()
        self.addCleanup(queue.close)
        queue.bind((harness.LOOPBACK, 0))
        queue.listen(2048)  # never accepted: the kernel takes each 16 KB
        self.vip_with([("queue", "%s:%d" % queue.getsockname())],
                      frontend={"max_connections": 3000},
                      extra={"threads": 1, "log": {"format": "text", "level": "info"}})
        conns, n, size = [], 1000, 16000
        self.addCleanup(lambda: [c.close() for c in conns])
        before = harness.rss_kb(self.lbd.pid)
        for i in range(n):
            c = socket.create_connection(self.vip, timeout=T(5))
            c.sendall(b"ping k%d %d\n" % (i, size) + b"k" * size)
            conns.append(c)
        wait_for(lambda: self.bytes_to("queue") >= n * size, T(30),
                 "every client's bytes to reach the backend")
        grown = (harness.rss_kb(self.lbd.pid) - before) * 1024
        harness.note("lbd grew %.1f MB for %d clients of %d bytes", grown / 1e6, n, size)
        if not os.environ.get("SAN"):  # ASan's quarantine makes RSS meaningless
            self.assertLess(grown, (8 << 20) + (3 << 20), "the kept copies are not bounded")
        self.assertLbdAlive()

    def test_tls_frontend_replays_the_plaintext(self):
        """mode tls: what is kept is the decrypted request; the client's TLS
        session goes on with the next backend."""
        c = harness.certs()
        self.vip_with([self.bk.rst(), self.bk.good()],
                      frontend={"mode": "tls", "tls": {"cert": c["cert"], "key": c["key"]}})
        self.serve_until_replayed(["rst"], tls=True)
        self.assertLbdAlive()

    def test_byte_then_reset_reaches_the_client(self):
        """Once the backend has sent a byte, a reset is the client's: it gets
        the byte, then the reset; nothing is replayed."""
        self.vip_with([self.bk.byte_then_rst(), self.bk.good()])
        for _ in range(4):  # round robin: one of the first two goes there
            self.n += 1
            rid = "r%d" % self.n
            with self.connect() as c:
                c.sendall(b"ping %s 10\n" % rid.encode() + b"p" * 10)
                first = c.recv(100)
                if first != b"x":
                    self.assertEqual(first + recv_all(c), b"pong %s 10\n" % rid.encode())
                    continue
                c.sendall(b"ack\n")
                with self.assertRaises(ConnectionResetError):
                    recv_all(c)
            break
        else:
            self.fail("no request reached the backend that answers one byte")
        self.assertIn(rid, self.bk.ids("byte"))
        self.assertNotIn(rid, self.bk.ids("good"))
        self.assertEqual(self.retries().get("byte"), 0)

    def test_more_than_kept_is_not_replayed(self):
        """A client that sent more than KEEP_MAX before the backend closed
        sees the close, as without replay; one that sent a little less is
        replayed."""
        self.vip_with([self.bk.eof(), self.bk.good()])
        big = KEEP_MAX + 4000
        for _ in range(4):
            rid, got = self.request(size=big)
            if got != b"pong %s %d\n" % (rid.encode(), big):
                break
        else:
            self.fail("no request reached the backend that closes")
        self.assertEqual(got, b"", "the close, passed on as a close")
        wait_for(lambda: rid in self.bk.ids("eof"), T(5), "the eof backend to have read %s" % rid)
        self.assertNotIn(rid, self.bk.ids("good"))
        self.assertEqual(self.retries().get("eof"), 0)
        # Just under the bound (head and payload): replayed.
        small = KEEP_MAX - 100
        for _ in range(4):
            before = len(self.bk.ids("eof"))
            rid, got = self.request(size=small)
            self.assertEqual(got, b"pong %s %d\n" % (rid.encode(), small))
            if len(self.bk.ids("eof")) > before or rid in self.bk.ids("eof"):
                break
        wait_for(lambda: rid in self.bk.ids("eof"), T(5), "a request of %d to reach eof" % small)
        self.assertEqual(self.retries().get("eof"), 1)

    def test_off_passes_the_reset_on(self):
        """retry_on_empty_response: false is the old behaviour: the client
        of a backend that resets sees the reset."""
        self.vip_with([self.bk.rst(), self.bk.good()],
                      frontend={"retry_on_empty_response": False})
        outcomes = [self.request()[1] for _ in range(4)]
        self.assertTrue(any(not isinstance(o, bytes) or o == b"" for o in outcomes), outcomes)
        self.assertEqual(self.retries().get("rst"), 0)

    def test_client_fin_is_replayed_too(self):
        """A client that sent its request and then its FIN (shutdown), to a
        backend that resets: the next backend gets both, and answers."""
        self.vip_with([self.bk.rst(), self.bk.good_after_fin()])
        for _ in range(4):
            self.n += 1
            rid = "r%d" % self.n
            with self.connect() as c:
                c.sendall(b"ping %s 10\n" % rid.encode() + b"p" * 10)
                c.shutdown(socket.SHUT_WR)
                got = recv_all(c)
            self.assertEqual(got, b"pong %s 10 fin\n" % rid.encode())
            if self.retries().get("rst"):
                break
        else:
            self.fail("no request reached the backend that resets")
        self.assertEqual(self.retries().get("rst"), 1)

    def totals(self):
        st, _, body = harness.admin_request(self.cfg["admin"]["socket"], "GET", "/v1/pools/vip")
        self.assertEqual(st, 200)
        return {b["name"]: b["total"] for b in body["backends"]}

    def test_a_close_that_answers_the_clients_fin_is_not_replayed(self):
        """A connect and close (a port probe), and a request then FIN that
        the backend answers with its own close: each costs one backend
        connection, not one per backend (the first replay replayed both
        to every backend in turn: 3 connections each here)."""
        self.vip_with([self.bk.close_after_fin("c1"), self.bk.close_after_fin("c2"),
                       self.bk.close_after_fin("c3")])
        for i in range(12):
            with self.connect() as c:
                if i % 2:
                    c.sendall(b"ping x%d 0\n" % i)
                c.shutdown(socket.SHUT_WR)
                self.assertEqual(recv_all(c), b"")
        # A client gets its EOF only once no replay is left to try, so the
        # counts are final once they reach 12 (connects are counted first).
        wait_for(lambda: sum(self.totals().values()) >= 12, T(5), "12 backend connections")
        self.assertEqual(sum(self.totals().values()), 12, self.totals())
        self.assertEqual(sum(self.retries().values()), 0, self.retries())

    def test_nowhere_else_passes_the_close_on(self):
        """The only backend closes: never tried twice, the client sees the
        close as a close (the EOF read again and passed on)."""
        self.vip_with([self.bk.eof()])
        for _ in range(3):
            rid, got = self.request()
            self.assertEqual(got, b"", rid)
        self.assertEqual(self.retries().get("eof"), 0)
        self.assertLbdAlive()

    def test_retries_spent_pass_the_last_failure_on(self):
        """Two bad backends, one moved to the other, which fails too: the
        client sees the last one's close or reset, and lbd serves on."""
        self.vip_with([self.bk.rst(), self.bk.eof()])
        for _ in range(4):
            rid, got = self.request()
            self.assertTrue(got == b"" or isinstance(got, ConnectionResetError), (rid, got))
        self.assertGreaterEqual(sum(self.retries().values()), 1)
        self.assertLbdAlive()

    def test_retries_zero_replays_nothing(self):
        """The replay spends the retries budget: with retries 0 it has none."""
        self.vip_with([self.bk.rst(), self.bk.good()], frontend={"retries": 0})
        outcomes = [self.request()[1] for _ in range(4)]
        self.assertTrue(any(isinstance(o, ConnectionResetError) for o in outcomes), outcomes)
        self.assertEqual(self.retries().get("rst"), 0)
