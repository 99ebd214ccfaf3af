"""The relay's lean hot path and its latency histograms (issue 17).

- Descriptors: a connection that once moved bulk data in both directions
  (so both directions spliced through a pipe) holds its two sockets and
  nothing else once idle; pipes go back to the worker when empty. The
  bytes each worker counted in its own slot add up to what was sent.
- lbd_backend_connect_seconds: one observation per relayed connection; a
  connect whose SYN was dropped (the backend's accept queue full) shows in
  the buckets above 0.5 s.
- lbd_backend_check_duration_seconds: checks of a backend that never
  answers take their timeout and land above it; a live backend's checks
  land in the low buckets.

/metrics is parsed with prometheus_client.
"""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, T, TestCase, proc_fd_count, wait_for  # noqa: E402

MIB = 1 << 20


def recv_exact(s, n):
    got = 0
    while got < n:
        d = s.recv(min(65536, n - got))
        if not d:
            raise AssertionError("EOF after %d of %d bytes" % (got, n))
        got += len(d)


class BulkServer:
    """Reads SIZE bytes from each client, answers SIZE bytes, then holds
    the connection open, idle, until the client closes it."""

    def __init__(self, size):
        self.size = size
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            got = 0
            while got < self.size:
                d = c.recv(65536)
                if not d:
                    return
                got += len(d)
            c.sendall(b"b" * self.size)
            while c.recv(65536):
                pass
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()
        for c in self.conns:
            c.close()


class HeldServer:
    """A listener with an accept queue of one that accepts only while
    released: held, with the queue filled, SYNs to it are dropped, so a
    connect (or a tcp check) waits for the SYN retransmit or its timeout."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.accepted = []
        self.filler = None

    def hold(self):
        """Accepts what is queued, then fills the queue with our own
        connection: the next SYN is dropped."""
        self.sock.setblocking(False)
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except BlockingIOError:
                break
        self.filler = socket.create_connection((LOOPBACK, self.port), timeout=T(5))

    def release(self):
        """Accepts everything from now on."""
        self.sock.setblocking(True)
        threading.Thread(target=self._accept_all, daemon=True).start()

    def _accept_all(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(c)
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                c.sendall(d)
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.accepted + ([self.filler] if self.filler else []):
            c.close()


def metrics(sock):
    from prometheus_client.parser import text_string_to_metric_families
    st, _, text = harness.admin_request(sock, "GET", "/metrics")
    assert st == 200, st
    return {f.name: f for f in text_string_to_metric_families(text)}


def hist(fams, name, backend):
    """{le: cumulative count} plus "count" and "sum" of one backend."""
    out = {}
    for s in fams[name].samples:
        if s.labels.get("backend") != backend:
            continue
        if s.name.endswith("_bucket"):
            out[float(s.labels["le"])] = s.value
        elif s.name.endswith("_count"):
            out["count"] = s.value
        elif s.name.endswith("_sum"):
            out["sum"] = s.value
    return out


class HotPath(TestCase):
    def check_hist_shape(self, h):
        """Cumulative buckets never fall, and +Inf is the count."""
        les = sorted(k for k in h if isinstance(k, float))
        counts = [h[k] for k in les]
        self.assertEqual(counts, sorted(counts), h)
        self.assertEqual(h[float("inf")], h["count"], h)

    def test_idle_bulk_connection_holds_two_descriptors(self):
        n, threads = 24, 2
        srv = BulkServer(MIB)
        self.addCleanup(srv.close)
        cfg = self.lbd_config([("bulk", "%s:%d" % (LOOPBACK, srv.port))],
                              health={"type": "tcp", "interval": "1s", "timeout": "500ms"},
                              extra={"threads": threads})
        lbd = self.start_lbd(cfg, wait_up=["vip/bulk"])
        port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        base = proc_fd_count(lbd.pid)
        clients = []
        self.addCleanup(lambda: [c.close() for c in clients])
        for _ in range(n):
            c = socket.create_connection((LOOPBACK, port), timeout=T(20))
            clients.append(c)
            c.sendall(b"c" * MIB)  # the server reads it all before answering
            recv_exact(c, MIB)
        # Everything was delivered both ways: no byte waits in lbd. Each
        # connection holds its two sockets; a worker keeps at most a few
        # spare pipes (PIPE_POOL = 4 in lbd/relay.c) for a second after
        # their last use, and a health check may have a socket open.
        spare = threads * 4 * 2 + 2
        fds = proc_fd_count(lbd.pid)
        extra = fds - base
        print("\nfds: %d at rest, %d with %d idle bulk connections (%.2f each)"
              % (base, fds, n, extra / n))
        self.assertGreaterEqual(extra, 2 * n - 2, "the connections are open")
        self.assertLessEqual(extra, 2 * n + spare,
                             "%d fds for %d idle connections: pipes are kept" % (extra, n))
        # The bytes, counted by each worker in its own slot, add up exactly.
        fams = metrics(cfg["admin"]["socket"])
        moved = {s.labels["direction"]: s.value for s in fams["lbd_backend_bytes"].samples
                 if s.labels.get("backend") == "bulk"}
        self.assertEqual(moved, {"to_backend": n * MIB, "from_backend": n * MIB})
        conns = [s.value for s in fams["lbd_backend_connections"].samples
                 if s.labels.get("backend") == "bulk"]
        self.assertEqual(conns, [n])
        # Closed, everything goes back, spare pipes too once unused (1 s).
        for c in clients:
            c.close()
        wait_for(lambda: proc_fd_count(lbd.pid) <= base, T(10),
                 "lbd's fds back to %d" % base)

    def test_connect_histogram(self):
        srv = HeldServer()
        self.addCleanup(srv.close)
        srv.release()
        cfg = self.lbd_config([("held", "%s:%d" % (LOOPBACK, srv.port))],
                              health={"type": "tcp", "interval": "1h", "timeout": "2s",
                                      "rise": 1, "fall": 1},
                              frontend={"timeouts": {"connect": "5s", "idle": "30s"}})
        lbd = self.start_lbd(cfg, wait_up=["vip/held"])
        sock = cfg["admin"]["socket"]
        port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])

        def relay_one():
            c = socket.create_connection((LOOPBACK, port), timeout=T(10))
            try:
                c.sendall(b"ping")
                recv_exact(c, 4)
            finally:
                c.close()

        before = hist(metrics(sock), "lbd_backend_connect_seconds", "held")
        self.check_hist_shape(before)
        for _ in range(5):
            relay_one()
        fams = metrics(sock)
        self.assertEqual(fams["lbd_backend_connect_seconds"].type, "histogram")
        fast = hist(fams, "lbd_backend_connect_seconds", "held")
        self.check_hist_shape(fast)
        self.assertEqual(fast["count"] - before["count"], 5, fast)
        self.assertGreater(fast["sum"], before["sum"])
        # A loopback connect to a listener that accepts: well under 0.5 s.
        self.assertEqual(fast[0.5] - before[0.5], 5, fast)

        # Held: lbd's SYN is dropped and sent again after about 1 s; the
        # queue is freed meanwhile, so that second SYN gets through.
        srv.close()  # the accept thread ends with its socket
        srv = HeldServer()
        self.addCleanup(srv.close)
        # Same port is not ours to reuse: point the backend at the new one.
        st, _, body = harness.admin_request(sock, "POST", "/v1/pools/vip/backends",
                                            body={"name": "slow",
                                                  "address": "%s:%d" % (LOOPBACK, srv.port)})
        self.assertEqual(st, 201, body)
        lbd.log.wait(r"backend vip/slow is UP", T(10), proc=lbd)
        st, _, body = harness.admin_request(sock, "PATCH", "/v1/pools/vip/backends/held",
                                            body={"state": "disabled"})
        self.assertEqual(st, 200, body)
        srv.hold()
        t0 = time.monotonic()
        timer = threading.Timer(0.3, srv.release)
        timer.start()
        self.addCleanup(timer.cancel)
        relay_one()
        took = time.monotonic() - t0
        slow = hist(metrics(sock), "lbd_backend_connect_seconds", "slow")
        self.check_hist_shape(slow)
        print("\nslow connect: client waited %.2fs; histogram %s" % (took, slow))
        self.assertEqual(slow["count"], 1, slow)
        self.assertEqual(slow[0.5], 0, "a connect that waited for a SYN retransmit: %s" % slow)
        self.assertGreaterEqual(slow["sum"], 0.5, slow)

    def test_check_duration_histogram(self):
        live = HeldServer()
        self.addCleanup(live.close)
        live.release()
        dead = HeldServer()
        self.addCleanup(dead.close)
        dead.hold()  # every check's SYN is dropped: each one times out
        cfg = self.lbd_config([("live", "%s:%d" % (LOOPBACK, live.port)),
                               ("dead", "%s:%d" % (LOOPBACK, dead.port))],
                              health={"type": "tcp", "interval": "500ms", "timeout": "300ms"})
        lbd = self.start_lbd(cfg, wait_up=["vip/live"])
        sock = cfg["admin"]["socket"]
        wait_for(lambda: hist(metrics(sock), "lbd_backend_check_duration_seconds",
                              "dead")["count"] >= 3, T(15), "three checks of dead")
        fams = metrics(sock)
        self.assertEqual(fams["lbd_backend_check_duration_seconds"].type, "histogram")
        d = hist(fams, "lbd_backend_check_duration_seconds", "dead")
        a = hist(fams, "lbd_backend_check_duration_seconds", "live")
        print("\ncheck durations: dead %s\nlive %s" % (d, a))
        self.check_hist_shape(d)
        self.check_hist_shape(a)
        # Timed out at 300 ms: none in the buckets up to 0.25 s, and the
        # buckets go past any check timeout a config is likely to use.
        self.assertEqual(d[0.25], 0, d)
        self.assertGreaterEqual(d["sum"], 0.3 * d["count"] - 0.01, d)
        self.assertIn(10.0, d)
        self.assertGreaterEqual(a["count"], 3, a)
        self.assertGreater(a[0.25], 0, a)
        self.assertIsNone(lbd.poll())
