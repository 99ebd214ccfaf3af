"""test_demo.py - `make run`'s demo, in its --check mode: three fake masters
on 127.0.0.1:16441..16443, lbd with config/examples/demo.yaml on
127.0.0.1:6443, GET /version through the VIP, fail master-1 and see lbd route
around it, then stop everything. Skipped when those fixed ports are taken
(a demo already running, say)."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PORTS = [6443, 16441, 16442, 16443, 17441, 17442, 17443]


class Demo(unittest.TestCase):
    def test_demo_check(self):
        if not os.access(harness.LBD, os.X_OK):
            self.skipTest("%s not built" % harness.LBD)
        if not os.path.exists(os.path.join(harness.ROOT, "config", "examples", "demo.yaml")):
            self.skipTest("config/examples/demo.yaml not written yet")
        busy = [p for p in PORTS if harness.port_open(harness.LOOPBACK, p)]
        if busy:
            self.skipTest("demo ports in use on 127.0.0.1: %s" % busy)
        r = subprocess.run([harness.PYTHON, os.path.join(harness.ROOT, "scripts", "demo.py"),
                            "--build", harness.BUILD, "--check", "--timeout", str(harness.T(20))],
                           capture_output=True, text=True, timeout=harness.T(90), cwd=harness.ROOT)
        self.assertEqual(r.returncode, 0, "demo --check failed:\n%s\n%s" % (r.stdout, r.stderr))
        self.assertIn("demo --check: ok", r.stdout)
        self.assertIn("master-1 is DOWN", r.stdout)
        for p in PORTS:  # and nothing left behind
            self.assertFalse(harness.port_open(harness.LOOPBACK, p), "port %d still open after the demo" % p)


if __name__ == "__main__":
    unittest.main()
