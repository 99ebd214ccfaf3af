"""test_connlog.py - the connection log (frontends[].log_connections, HAProxy's
`option tcplog`): one line per closed connection with the client, frontend,
backend, duration, bytes each way and why it ended.

One backend whose behaviour is switched between connections (test_faults'
Backend: echo, garbage = answers and closes, reset, sink = never reads nor
closes), one frontend with log_connections on and short idle/fin timeouts.
Each connection's line is found by its client port.
"""

import os
import re
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, T  # noqa: E402
from test_faults import Backend, api  # noqa: E402


class ConnLogTest(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.be = Backend("b1", "echo")
        self.addCleanup(self.be.stop)

    def start(self, log_connections=True):
        cfg = self.lbd_config([(self.be.name, self.be.address)],
                              health={"type": "tcp", "interval": "300ms", "timeout": "200ms",
                                      "rise": 1, "fall": 1},
                              pool={"drain_timeout": "0s"},
                              frontend={"timeouts": {"connect": "500ms", "idle": "1500ms",
                                                     "fin": "500ms"},
                                        "log_connections": log_connections})
        self.sock = self.path("admin.sock")
        cfg["admin"] = {"socket": self.sock}
        self.lbd = self.start_lbd(cfg, wait_up=["vip/b1"])
        self.port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])

    def connect(self):
        s = socket.create_connection((LOOPBACK, self.port), timeout=T(5))
        self.addCleanup(s.close)
        return s

    def line_of(self, s, end):
        """Waits for the log line of the connection whose client is s (a
        socket, or its port once closed)."""
        port = s if isinstance(s, int) else s.getsockname()[1]
        line = self.lbd.log.wait(r"connection client=127\.0\.0\.1:%d " % port, T(10),
                                 proc=self.lbd)
        m = re.search(r"connection client=127\.0\.0\.1:%d frontend=vip backend=vip/b1 "
                      r"duration=(\d+\.\d{3})s to_backend=(\d+) to_client=(\d+) end=(\S+)$"
                      % port, line)
        self.assertIsNotNone(m, line)
        self.assertEqual(m.group(4), end, line)
        return float(m.group(1)), int(m.group(2)), int(m.group(3))

    def read_to_eof(self, s):
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return data
            data += chunk

    def test_one_line_per_connection_with_why(self):
        self.start()
        # The client closes first.
        s = self.connect()
        s.sendall(b"hello")
        self.assertEqual(s.recv(16), b"hello")
        port = s.getsockname()[1]
        s.close()
        self.assertEqual(self.line_of(port, "client_fin")[1:], (5, 5))

        # The backend answers and closes first.
        self.be.mode = "garbage"
        s = self.connect()
        got = self.read_to_eof(s)
        port = s.getsockname()[1]
        s.close()
        _, up, down = self.line_of(port, "backend_fin")
        self.assertEqual((up, down), (0, len(got)))

        # The backend resets.
        self.be.mode = "reset"
        s = self.connect()
        s.sendall(b"x")
        self.line_of(s, "reset")

        # Quiet: the idle timeout (1.5s); half-closed: the fin timeout (0.5s).
        self.be.mode = "sink"
        quiet = self.connect()
        half = self.connect()
        half.sendall(b"bye")
        half.shutdown(socket.SHUT_WR)
        secs, up, _ = self.line_of(half, "fin_timeout")
        self.assertEqual(up, 3)
        self.assertLess(secs, 1.4)
        secs = self.line_of(quiet, "idle_timeout")[0]
        self.assertGreaterEqual(secs, 1.4)

        # A drain's deadline (drain_timeout 0s).
        self.be.mode = "echo"
        s = self.connect()
        s.sendall(b"ping")
        self.assertEqual(s.recv(16), b"ping")
        st, body = api(self.sock, "PATCH", "/v1/pools/vip/backends/b1", {"state": "drain"})
        self.assertEqual(st, 200, body)
        self.line_of(s, "drain")

    def test_off_by_default(self):
        self.start(log_connections=False)
        s = self.connect()
        s.sendall(b"hello")
        self.assertEqual(s.recv(16), b"hello")
        s.close()
        # The connection is gone from lbd's count before we look at its log.
        harness.wait_for(lambda: api(self.sock, "GET", "/v1/status")[1]["frontends"][0]["active"]
                         == 0, T(5), "the connection to close")
        self.assertIsNone(self.lbd.log.find(r"connection client="))


if __name__ == "__main__":
    unittest.main()
