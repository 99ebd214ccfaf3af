"""test_valgrind.py - lbd under valgrind memcheck, under a short bounded load.

lbd runs under `valgrind --leak-check=full --error-exitcode=99` with an
echo backend and a health check; the test relays client connections
(whole, half-closed, reset), makes admin API requests (reads, an edit, a
bad request), sends SIGHUP, then SIGTERM, and asserts from valgrind's own
summary: zero errors and zero bytes definitely lost. (Possibly lost and
still reachable blocks belong to libraries' one-time state and threads.)

Fails without valgrind (make deps installs it); skipped in a sanitizer
build (SAN set: ASan and valgrind do not mix).
"""

import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import LOOPBACK, wait_for  # noqa: E402
from test_faults import Backend, api, echo_once  # noqa: E402

VALGRIND = shutil.which("valgrind")
SLOW = 20  # valgrind runs lbd ~20-50x slower


# Not a missing capability but a build that cannot be checked this way: ASan
# binaries do not run under valgrind (the SAN run checks memory its own way).
@unittest.skipIf(os.environ.get("SAN"), "sanitizer build: valgrind does not run ASan binaries")
class TestValgrind(harness.TestCase):
    def test_memcheck_under_load(self):
        harness.require_binary(VALGRIND or "valgrind", "make deps installs valgrind")
        harness.require_binary(harness.LBD, "run make")
        good = Backend("good", "echo")
        self.addCleanup(good.stop)
        sock = self.path("admin.sock")
        cfg = self.lbd_config([("good", good.address)],
                              health={"type": "tcp", "interval": "500ms", "timeout": "400ms",
                                      "rise": 1, "fall": 2})
        cfg["admin"] = {"socket": sock}
        cfg["frontends"][0]["timeouts"] = {"connect": "3s", "idle": "30s"}
        port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        path = self.write_config(cfg)
        vlog = self.path("valgrind.log")
        p = self.spawn("lbd-valgrind", [
            VALGRIND, "--tool=memcheck", "--leak-check=full", "--show-leak-kinds=definite",
            "--errors-for-leak-kinds=definite", "--error-exitcode=99", "--num-callers=30",
            "--log-file=" + vlog, harness.LBD, "-c", path], cwd=harness.ROOT)
        p.log.wait(r"backend vip/good is UP", SLOW, proc=p)
        wait_for(lambda: self._admin_ok(sock), SLOW, "admin socket answering under valgrind")

        # Load, bounded: ~100 relayed connections from 4 threads.
        failures = []

        def client(n):
            for i in range(25):
                msg = b"v%d-%d-" % (n, i) * 200
                try:
                    if i % 5 == 4:  # a client that resets
                        s = socket.create_connection((LOOPBACK, port), timeout=SLOW)
                        s.sendall(msg)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                        s.close()
                    elif echo_once(port, msg, timeout=SLOW) != msg:
                        failures.append("echo %d/%d" % (n, i))
                except OSError as e:
                    failures.append("%d/%d: %r" % (n, i, e))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SLOW * 3)
        self.assertEqual(failures, [])

        self.assertEqual(api(sock, "GET", "/v1/pools", timeout=SLOW)[0], 200)
        self.assertEqual(api(sock, "GET", "/metrics", timeout=SLOW)[0], 200)
        st, body = api(sock, "PATCH", "/v1/pools/vip/backends/good", {"weight": 5}, timeout=SLOW)
        self.assertEqual(st, 200, body)
        st, body = api(sock, "POST", "/v1/pools/vip/backends", {"name": "x", "address": "nope"},
                       timeout=SLOW)
        self.assertEqual(st, 400, body)
        self.assertEqual(api(sock, "GET", "/v1/pools/%FF", timeout=SLOW)[0], 404)
        mark = p.log.mark()
        p.send_signal(signal.SIGHUP)
        p.log.wait(r"reload", SLOW, since=mark, proc=p)
        self.assertEqual(echo_once(port, b"after-reload", timeout=SLOW), b"after-reload")

        rc = p.stop(signal.SIGTERM, timeout=SLOW * 2)
        with open(vlog) as f:
            report = f.read()
        errors = re.search(r"ERROR SUMMARY: (\d+) errors", report)
        self.assertIsNotNone(errors, "no valgrind summary:\n" + report[-3000:])
        definite = re.search(r"definitely lost: ([\d,]+) bytes", report)
        lost = int(definite.group(1).replace(",", "")) if definite else 0
        self.assertEqual(int(errors.group(1)), 0, "valgrind errors:\n" + report[-6000:])
        self.assertEqual(lost, 0, "definitely lost:\n" + report[-6000:])
        self.assertEqual(rc, 0, "lbd under valgrind exited %s:\n%s" % (rc, report[-3000:]))

    @staticmethod
    def _admin_ok(sock):
        try:
            return api(sock, "GET", "/v1/status", timeout=5)[0] == 200
        except OSError:
            return False


if __name__ == "__main__":
    unittest.main()
