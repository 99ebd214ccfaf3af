"""test_rebalance.py - after a master returns, lbd spreads the connections
again (pool rebalance, opt-in), slowly.

Three echo backends behind lbd (least_conn), 300 long-lived streams from a
client that reconnects every stream the moment it is closed (as kube clients
do). One backend is restarted: its streams reconnect to the other two
(150/150/0). Once it is back up, lbd closes connections of the loaded two at
no more than rebalance.rate per second until every backend is within
tolerance_pct of its fair share (100). Measured: the time to get there, the
largest number of rebalance closes in any one second (from lbd's connection
log, its own clock), and the counters.
"""

import os
import re
import selectors
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, T, wait_for  # noqa: E402
from test_faults import api  # noqa: E402

STREAMS = 300
RATE = 50
SHARE = 50
TOLERANCE = 20


class EchoServer:
    """An echo backend on one thread (selectors), restartable on its port."""

    def __init__(self, name, port=0):
        self.name = name
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((LOOPBACK, port))
        self.lsock.listen(512)
        self.lsock.setblocking(False)
        self.port = self.lsock.getsockname()[1]
        self.address = "%s:%d" % (LOOPBACK, self.port)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.lsock, selectors.EVENT_READ)
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            for key, _ in self.sel.select(0.05):
                s = key.fileobj
                if s is self.lsock:
                    try:
                        c, _ = s.accept()
                    except OSError:
                        continue
                    c.setblocking(False)
                    self.sel.register(c, selectors.EVENT_READ)
                    continue
                try:
                    d = s.recv(4096)
                except OSError:
                    d = b""
                if d:
                    try:
                        s.send(d)
                    except OSError:
                        pass
                else:
                    self.sel.unregister(s)
                    s.close()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()

    def stop(self):
        self.stopping = True
        self.thread.join(5)


class Client:
    """STREAMS connections through lbd; each one closed is reconnected at once."""

    def __init__(self, port):
        self.port = port
        self.sel = selectors.DefaultSelector()
        self.closes = []  # monotonic times
        self.stopping = False
        self.errors = []
        for _ in range(STREAMS):
            self._open()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _open(self):
        s = socket.create_connection((LOOPBACK, self.port), timeout=T(5))
        s.sendall(b"x")
        s.setblocking(False)
        self.sel.register(s, selectors.EVENT_READ)

    def _run(self):
        while not self.stopping:
            for key, _ in self.sel.select(0.05):
                s = key.fileobj
                try:
                    d = s.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    d = b""
                if d:
                    continue
                self.sel.unregister(s)
                s.close()
                self.closes.append(time.monotonic())
                try:
                    self._open()
                except OSError as e:
                    self.errors.append(repr(e))

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()


class RebalanceTest(harness.TestCase):
    def actives(self):
        st, body = api(self.sock, "GET", "/v1/pools/vip")
        self.assertEqual(st, 200, body)
        return {b["name"]: (b["health"], b["active"], b["rebalance_closed"])
                for b in body["backends"]}

    def spread(self):
        return {n: a for n, (_, a, _) in self.actives().items()}

    def test_restarted_master_gets_its_share_back(self):
        ms = {n: EchoServer(n) for n in ("m1", "m2", "m3")}
        self.addCleanup(lambda: [m.stop() for m in ms.values()])
        cfg = self.lbd_config([(n, m.address) for n, m in ms.items()],
                              health={"type": "tcp", "interval": "300ms", "timeout": "200ms",
                                      "rise": 1, "fall": 1},
                              pool={"balance": "least_conn",
                                    "rebalance": {"enabled": True, "rate": RATE,
                                                  "max_share_pct": SHARE,
                                                  "tolerance_pct": TOLERANCE}},
                              frontend={"timeouts": {"connect": "500ms", "idle": "1h"},
                                        "log_connections": True})
        self.sock = self.path("admin.sock")
        cfg["admin"] = {"socket": self.sock}
        lbd = self.start_lbd(cfg, wait_up=["vip/m1", "vip/m2", "vip/m3"])
        port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        client = Client(port)
        self.addCleanup(client.stop)
        wait_for(lambda: sorted(self.spread().values()) == [100, 100, 100], T(10),
                 "300 streams spread 100/100/100")

        # m3 restarts: its streams reconnect to m1 and m2.
        mark = lbd.log.mark()
        ms["m3"].stop()
        lbd.log.wait(r"backend vip/m3 is DOWN", T(10), since=mark, proc=lbd)
        wait_for(lambda: self.spread() == {"m1": 150, "m2": 150, "m3": 0}, T(10),
                 "m3's streams to move to m1 and m2 (150/150/0)")
        ms["m3"] = EchoServer("m3", ms["m3"].port)
        mark = lbd.log.mark()
        lbd.log.wait(r"backend vip/m3 is UP", T(10), since=mark, proc=lbd)
        t_up = time.monotonic()

        def within():
            sp = self.spread()
            return sum(sp.values()) == STREAMS and all(
                abs(a - 100) <= 100 * TOLERANCE / 100 for a in sp.values())
        # Moving 40-50 streams at RATE/s takes about a second; give it plenty.
        wait_for(within, T(15), "the spread back within %d%% of 100 each" % TOLERANCE)
        took = time.monotonic() - t_up
        line = lbd.log.wait(r"pool vip: rebalance round over after .*spread within tolerance",
                            T(5), since=mark, proc=lbd)

        # The close rate, by lbd's own clock: rebalance closes per second.
        times = sorted(harness.log_time(l) for l in lbd.log.lines(since=mark)
                       if re.search(r" end=rebalance$", l))
        peak = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
        closed = sum(rc for _, _, rc in self.actives().values())
        print("\n  [rebalance] spread %r %.2fs after m3 came back; %d closes, at most %d in "
              "any second (cap %d/s)" % (self.spread(), took, len(times), peak, RATE),
              file=sys.stderr, flush=True)
        # rate + 1 (one close of credit may carry over). lbd decides every
        # 100 ms (RATE/10 closes a tick) and a worker logs a close a moment
        # after: a late batch can bring one more tick into a second of log
        # time, so one tick's worth is allowed for the time stamps.
        self.assertLessEqual(peak, RATE + 1 + RATE // 10,
                             "rebalance closed faster than its rate")
        self.assertEqual(closed, len(times), "every close counted and logged")
        self.assertGreater(closed, 0)
        # No backend gave more than its share (50% of 150) in the round.
        m = re.search(r"closed m1 (\d+), m2 (\d+), m3 0", line)
        self.assertIsNotNone(m, line)
        self.assertLessEqual(max(int(m.group(1)), int(m.group(2))), 150 * SHARE // 100)
        self.assertFalse(client.errors, client.errors[:3])


if __name__ == "__main__":
    unittest.main()
