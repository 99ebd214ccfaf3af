"""test_demo.py - `make run`'s demo: three fake masters on 127.0.0.1:16441..16443
(control ports 17441..17443), lbd with config/examples/demo.yaml on the VIP
127.0.0.1:6443.

Two ways, both as a user runs them:
  - `scripts/demo.py --check`: start, GET /version through the VIP, fail
    master-1 and see lbd route around it, stop;
  - `scripts/demo.py` in the foreground, as `make run` starts it: the test
    waits for its banner, asks the VIP itself, then stops it as Ctrl-C does
    (SIGINT) and checks it stopped everything.

The demo's ports are fixed (the README and the banner name them), so a demo
left running, or anything else on those ports, fails the test with their
numbers: that is a machine to clean up, not a reason to pass.
"""

import json
import os
import signal
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PORTS = [6443, 16441, 16442, 16443, 17441, 17442, 17443]
DEMO = os.path.join(harness.ROOT, "scripts", "demo.py")
CONFIG = os.path.join(harness.ROOT, "config", "examples", "demo.yaml")
MASTERS = {"master-1", "master-2", "master-3"}


class Demo(harness.TestCase):
    def setUp(self):
        super().setUp()
        harness.require_binary(harness.LBD, "run make")
        self.assertTrue(os.path.exists(CONFIG), "%s is missing: make run needs it" % CONFIG)
        busy = [p for p in PORTS if harness.port_open(harness.LOOPBACK, p)]
        self.assertEqual(busy, [], "the demo's fixed ports are taken on 127.0.0.1 (a demo "
                                   "still running?): stop what holds them")

    def assert_all_stopped(self):
        for p in PORTS:  # and nothing left behind
            self.assertFalse(harness.port_open(harness.LOOPBACK, p),
                             "port %d still open after the demo" % p)

    def test_demo_check(self):
        r = subprocess.run([harness.PYTHON, DEMO, "--build", harness.BUILD, "--check",
                            "--timeout", str(harness.T(20))],
                           capture_output=True, text=True, timeout=harness.T(90), cwd=harness.ROOT)
        self.assertEqual(r.returncode, 0, "demo --check failed:\n%s\n%s" % (r.stdout, r.stderr))
        self.assertIn("demo --check: ok", r.stdout)
        self.assertIn("master-1 is DOWN", r.stdout)
        self.assert_all_stopped()

    def test_make_run_foreground(self):
        """What `make run` runs (the Makefile's run target: demo.py --build
        BUILD), non-interactively: the VIP answers through it, Ctrl-C stops it."""
        out = self.path("demo.out")
        with open(out, "wb") as f:
            demo = harness.Proc("demo", [harness.PYTHON, DEMO, "--build", harness.BUILD,
                                         "--timeout", str(harness.T(20))],
                                self.path("demo.err"), cwd=harness.ROOT, stdout=f)
        self.addCleanup(demo.stop, signal.SIGKILL)
        log = harness.LogFile(out)
        log.wait(r"lbd demo is up: the apiserver VIP https://127\.0\.0\.1:6443", harness.T(40),
                 proc=demo, what="the demo's banner")

        def version():
            try:
                st, h, body = harness.http_get(harness.LOOPBACK, 6443, "/version", timeout=5)
            except OSError:
                return None
            if st == 200 and json.loads(body).get("gitVersion") and h.get("x-backend") in MASTERS:
                return h["x-backend"]
            return None

        seen = {harness.wait_for(version, harness.T(20), "GET /version through the demo's VIP")}
        for _ in range(30):
            seen.add(version())
            if seen >= MASTERS:
                break
        self.assertEqual(seen - {None}, MASTERS, "every master answers through the VIP")

        # Ctrl-C: the demo stops lbd, then the masters, by PID, and exits 0.
        rc = demo.stop(signal.SIGINT, timeout=harness.T(20))
        text = log.text()
        self.assertEqual(rc, 0, "demo exited %s:\n%s\n%s" % (rc, text[-3000:],
                                                             demo.log.tail()))
        self.assertFalse(demo.killed, "the demo had to be killed:\n" + text[-3000:])
        self.assertIn("demo: SIGINT, stopping", text)
        for name in ["lbd"] + sorted(MASTERS):
            self.assertRegex(text, r"demo: stopped %s \(pid \d+, exit " % name)
        self.assert_all_stopped()


if __name__ == "__main__":
    unittest.main()
