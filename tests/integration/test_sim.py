"""test_sim.py - the test backends themselves: tests/sim/apiserver.py and the
harness's nginx. If these are wrong, every VIP test is wrong with them."""

import json
import os
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import T, http_get, wait_for  # noqa: E402


class ApiserverSim(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.m = self.start_apiserver("master-7")

    def get(self, path, **kw):
        """As lbd's checks do: with the health token the k3s profile wants."""
        kw.setdefault("headers", {"Authorization": "Bearer " + harness.HEALTH_TOKEN})
        return http_get(self.m.host, self.m.port, path, **kw)

    def test_k3s_health_wants_credentials(self):
        """k3s (the default): /readyz, /livez and /healthz answer 401 without
        the token; kubeadm: to anyone."""
        for path in ("/readyz", "/livez", "/healthz"):
            st, _, body = self.get(path, headers={})
            self.assertEqual((st, json.loads(body)["reason"]), (401, "Unauthorized"), path)
            st, _, body = self.get(path, headers={"Authorization": "Bearer wrong"})
            self.assertEqual(st, 401, path)
            self.assertEqual(self.get(path)[0], 200, path)
        k = self.start_apiserver("master-8", profile="kubeadm")
        self.assertEqual(http_get(k.host, k.port, "/readyz")[:3:2], (200, b"ok"))

    def test_readyz_livez_version(self):
        for path in ("/readyz", "/livez"):
            st, h, body = self.get(path)
            self.assertEqual((st, body), (200, b"ok"))
            self.assertEqual(h["x-backend"], "master-7")
        st, h, body = self.get("/readyz?verbose")
        self.assertEqual(st, 200)
        self.assertIn(b"readyz check passed", body)
        st, h, body = self.get("/version")
        v = json.loads(body)
        self.assertEqual((st, v["major"], v["minor"], v["gitVersion"]), (200, "1", "31", "v1.31.4+k3s1"))
        self.assertEqual(h["x-backend"], "master-7")
        st, h, body = self.get("/api/v1/nope")
        self.assertEqual((st, json.loads(body)["reason"]), (404, "NotFound"))
        self.assertEqual(h["x-backend"], "master-7")

    def test_fail_and_ok(self):
        self.m.fail()
        st, h, body = self.get("/readyz")
        self.assertEqual(st, 503)
        self.assertEqual(body, b"[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n")
        st, _, body = self.get("/livez")
        self.assertEqual(st, 503)
        self.assertIn(b"livez check failed", body)
        self.assertEqual(self.get("/version")[0], 200)  # only the health endpoints fail
        self.m.ok()
        self.assertEqual(self.get("/readyz")[0], 200)

    def test_hang_holds_readyz(self):
        self.m.hang()
        t0 = time.monotonic()
        with self.assertRaises((socket.timeout, TimeoutError)):
            self.get("/readyz", timeout=0.5)
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        self.assertEqual(self.get("/version")[0], 200)  # the rest still answers
        self.m.ok()
        self.assertEqual(self.get("/readyz")[0], 200)

    def test_echo_and_watch(self):
        st, _, body = self.get("/echo", method="POST", body=b"x" * 100000)
        self.assertEqual((st, len(body)), (200, 100000))
        t0 = time.monotonic()
        st, h, body = self.get("/watch?seconds=0.6")
        lines = body.decode().splitlines()
        self.assertEqual(st, 200)
        self.assertGreaterEqual(len(lines), 4)
        self.assertEqual(json.loads(lines[0])["backend"], "master-7")
        self.assertGreaterEqual(time.monotonic() - t0, 0.55)

    def test_stats(self):
        # The harness's readiness probe may still be in flight: let it finish.
        wait_for(lambda: self.m.stats()["connections_open"] == 0, T(5), "probe connections closed")
        before = self.m.stats()
        self.get("/version")
        self.get("/version")
        s = self.m.stats()
        self.assertEqual(s["requests"]["/version"], before["requests"].get("/version", 0) + 2)
        self.assertEqual(s["connections_accepted"], before["connections_accepted"] + 2)
        # open counts connections in flight: hold one open and look.
        sock = socket.create_connection((self.m.host, self.m.port))
        try:
            wait_for(lambda: self.m.stats()["connections_open"] >= 1, T(5), "an open connection counted")
        finally:
            sock.close()
        wait_for(lambda: self.m.stats()["connections_open"] == 0, T(5), "the connection closed")

    def test_sigterm_is_prompt(self):
        # Even with a WATCH stream and a held /readyz open.
        self.m.hang()
        out = {}

        def watch():
            try:
                out["r"] = self.get("/watch?seconds=30", timeout=10)
            except Exception as e:  # noqa: BLE001
                out["r"] = e
        t = threading.Thread(target=watch)
        t.start()
        wait_for(lambda: self.m.requests("/watch") == 1, T(5), "the watch started")
        t0 = time.monotonic()
        self.m.proc.send_signal(signal.SIGTERM)
        self.assertIsNotNone(self.m.proc.wait(T(3)), "apiserver.py still running 3s after SIGTERM")
        self.assertLess(time.monotonic() - t0, T(2))
        t.join(T(10))

    def test_restart_same_port(self):
        self.m.proc.stop()
        self.assertFalse(harness.port_open(self.m.host, self.m.port))
        self.restart_apiserver(self.m)
        self.assertEqual(self.get("/readyz")[0], 200)


class NginxBackend(harness.TestCase):
    def test_nginx_tls_readyz_flag(self):
        n = self.start_nginx("web-1")
        st, h, body = http_get(n.host, n.port, "/")
        self.assertEqual((st, body, h["x-backend"]), (200, b"web-1\n", "web-1"))
        self.assertEqual(http_get(n.host, n.port, "/readyz")[:3:2], (200, b"ok"))
        n.fail()
        st, h, body = http_get(n.host, n.port, "/readyz")
        self.assertEqual(st, 503)
        self.assertIn(b"[-]etcd failed", body)
        n.ok()
        self.assertEqual(http_get(n.host, n.port, "/readyz")[0], 200)
        self.stop_nginx(n)
        self.assertFalse(harness.port_open(n.host, n.port))
        self.restart_nginx(n)
        self.assertEqual(http_get(n.host, n.port, "/")[0], 200)


class Helpers(unittest.TestCase):
    # The skips the suites may still take: a missing system capability, through
    # harness.skip_capability, and three reasons that are not a missing package
    # or build product, each named here.
    SKIPS_ALLOWED = [
        ("harness.py", "missing system capability"),
        ("test_kube.py", "no kubectl.1.x reference binaries"),
        ("test_packaging.py", "a package named lbd is already installed here"),
        ("test_valgrind.py", "sanitizer build: valgrind does not run ASan binaries"),
    ]

    def test_no_probe_skips(self):
        """A missing binary, verb or file fails; only a capability skips (issue
        19: a --help probe that failed turned the upgrade suite green)."""
        words = ["skip" + "Test(", "skip" + "Unless(", "skip" + "If(", "Skip" + "Test(",
                 "unittest." + "skip("]
        here = os.path.dirname(os.path.abspath(__file__))
        bad = []
        for name in sorted(os.listdir(here)):
            if not name.endswith(".py"):
                continue
            with open(os.path.join(here, name)) as f:
                lines = f.read().splitlines()
            for i, line in enumerate(lines):
                if not any(w in line for w in words):
                    continue
                ctx = " ".join(lines[i:i + 3])
                if not any(name == f and why in ctx for f, why in self.SKIPS_ALLOWED):
                    bad.append("%s:%d: %s" % (name, i + 1, line.strip()))
        self.assertEqual(bad, [], "skips that are not for a missing system capability "
                                  "(use harness.require_binary/require_verb, or "
                                  "harness.skip_capability):\n" + "\n".join(bad))

    def test_yaml_writer_round_trip(self):
        import yaml  # python3-yaml: make deps installs it
        cfg = {"a": 1, "b": "x: y", "c": [{"d": True, "e": ["1", "[::1]:6443"]}, {"f": {}}], "g": []}
        self.assertEqual(yaml.safe_load(harness.to_yaml(cfg)), cfg)

    def test_wait_for_names_what(self):
        with self.assertRaisesRegex(AssertionError, "the moon"):
            wait_for(lambda: False, 0.05, "the moon")

    def test_log_time(self):
        t = harness.log_time("2026-11-21T22:39:40.123Z lbd[1] info: x")
        self.assertAlmostEqual(t % 60, 40.123, places=3)


if __name__ == "__main__":
    unittest.main()
