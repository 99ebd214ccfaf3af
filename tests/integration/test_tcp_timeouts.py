"""test_tcp_timeouts.py - a dead peer is found on an established connection.

- TCP keepalive is on for both of lbd's sockets of a relayed connection (the
  client's and the backend's), with the frontend's tcp_keepalive settings,
  as `ss -o` shows them (timer:(keepalive,...)).
- A half-closed connection whose other side never finishes is closed after
  timeouts.fin, while a quiet connection that is not half-closed stays (idle
  is 1h).
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, T, wait_for  # noqa: E402
from test_faults import Backend  # noqa: E402

FIN = 1.0


class TcpTimeoutsTest(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.backends = []
        self.addCleanup(lambda: [b.stop() for b in self.backends])

    def start(self, mode):
        b = Backend("b1", mode)
        self.backends.append(b)
        self.cfg = cfg = self.lbd_config([(b.name, b.address)],
                              health={"type": "tcp", "interval": "300ms", "timeout": "200ms",
                                      "rise": 1, "fall": 1},
                              frontend={"timeouts": {"connect": "500ms", "idle": "1h",
                                                     "fin": "%dms" % (FIN * 1000)},
                                        "tcp_keepalive": {"idle": "7s", "interval": "2s",
                                                          "count": 4}})
        self.lbd = self.start_lbd(cfg, wait_up=["vip/b1"])
        self.port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        return b

    def connect(self):
        s = socket.create_connection((LOOPBACK, self.port), timeout=T(5))
        self.addCleanup(s.close)
        return s

    def test_keepalive_on_both_sides(self):
        b = self.start("echo")
        s = self.connect()
        s.sendall(b"ping")
        self.assertEqual(s.recv(16), b"ping")

        def timers(flt):
            out = subprocess.run(["ss", "-tnoH", "state", "established", flt],
                                 stdout=subprocess.PIPE, text=True, timeout=10).stdout
            return out
        # lbd's side of the client connection: source port = the frontend's.
        client_side = timers("( sport = :%d )" % self.port)
        # lbd's side of the backend connection: destination port = the backend's.
        backend_side = timers("( dport = :%d )" % b.port)
        for what, out in (("client side", client_side), ("backend side", backend_side)):
            self.assertRegex(out, r"timer:\(keepalive,",
                             "%s of the relayed connection has no keepalive: %r" % (what, out))
            # The first probe is due within tcp_keepalive.idle (7s).
            m = re.search(r"timer:\(keepalive,(\d+(?:\.\d+)?)(ms|sec|min)", out)
            secs = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
            self.assertLessEqual(secs, 7.0, "%s: first probe in %r" % (what, out))

        # A reload that turns it off reaches the listening sockets too (the
        # client side inherits it from them): a new connection has none.
        self.cfg["frontends"][0]["tcp_keepalive"]["idle"] = "0s"
        self.write_config(self.cfg)
        mark = self.lbd.log.mark()
        self.lbd.send_signal(signal.SIGHUP)
        self.lbd.log.wait(r"reload: applied", T(10), since=mark, proc=self.lbd)
        s.close()
        s2 = self.connect()
        s2.sendall(b"ping")
        self.assertEqual(s2.recv(16), b"ping")
        client_side = timers("( sport = :%d and dport = :%d )"
                             % (self.port, s2.getsockname()[1]))
        self.assertTrue(client_side.strip(), "lbd's side of the new connection not found")
        self.assertNotIn("keepalive", client_side, client_side)

    def test_half_closed_connection_closed_after_fin_timeout(self):
        self.start("sink")
        quiet = self.connect()  # not half-closed: must stay
        quiet.sendall(b"hello")
        t_quiet = time.monotonic()
        half = self.connect()
        half.sendall(b"x")
        half.shutdown(socket.SHUT_WR)  # the backend (a sink) never finishes its side
        t0 = time.monotonic()
        half.settimeout(T(FIN + 10))
        try:
            got = half.recv(16)
        except socket.timeout:
            self.fail("half-closed connection still open %.1fs later (fin timeout %.1fs)"
                      % (time.monotonic() - t0, FIN))
        took = time.monotonic() - t0
        self.assertEqual(got, b"")
        self.assertGreaterEqual(took, FIN * 0.8)
        self.assertLess(took, T(FIN + 3))
        # The quiet one, not half-closed, quiet for longer than the fin
        # timeout, is still open: reading finds no EOF.
        wait_for(lambda: time.monotonic() - t_quiet > FIN + 0.5, T(5), "fin timeout to pass")
        quiet.settimeout(0.2)
        with self.assertRaises(socket.timeout):
            quiet.recv(16)


if __name__ == "__main__":
    unittest.main()
