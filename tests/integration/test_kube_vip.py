"""test_kube_vip.py - lbctl through lbd's VIP in front of three simulated masters.

kubesim serves one shared cluster state on three loopback ports (one per
master); lbd balances a frontend over them with /readyz checks. `lbctl node
list` through the VIP must keep working while one master is down (its
listener closed) and while another fails /readyz.
"""

import os
import signal
import socket
import subprocess
import tempfile
import shutil
import time
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_kube as tk  # noqa: E402  (the helpers live next door)

LBD = os.path.join(tk.BUILD, "lbd")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TestLbctlThroughVip(unittest.TestCase):
    def setUp(self):
        harness.require_binary(LBD, "run make")
        harness.require_verb(tk.LBCTL, "node")
        self.tmp = tempfile.mkdtemp(prefix="lbd-kube-vip-")
        self.sim = tk.KubeSim(self.tmp, listeners=3)
        self.sim.load(tk.scenario())
        self.vip = free_port()
        # The sim's kubeconfig, pointed at the VIP (its certificate covers 127.0.0.1).
        with open(self.sim.kubeconfig) as f:
            kc = f.read()
        self.kubeconfig = os.path.join(self.tmp, "kubeconfig-vip")
        with open(self.kubeconfig, "w") as f:
            f.write(kc.replace("https://" + self.sim.info["listen"][0],
                               "https://127.0.0.1:%d" % self.vip))
        backends = "".join(
            "      - name: master-%d\n        address: %s\n" % (i + 1, a)
            for i, a in enumerate(self.sim.info["listen"]))
        cfg = os.path.join(self.tmp, "lbd.yaml")
        with open(cfg, "w") as f:
            f.write("state_dir: %s/state\n"
                    "admin:\n  socket: %s/admin.sock\n"
                    "frontends:\n  - name: apiserver\n    listen: [\"127.0.0.1:%d\"]\n"
                    "    pool: masters\n"
                    "pools:\n  - name: masters\n    backends:\n%s"
                    "    health:\n      type: https\n      path: /readyz\n"
                    "      tls:\n        verify: false\n"
                    "      token_file: %s\n"
                    "      interval: 300ms\n      timeout: 200ms\n      rise: 1\n      fall: 1\n"
                    % (self.tmp, self.tmp, self.vip, backends, self.sim.health_token_file))
        self.lbd_log = open(os.path.join(self.tmp, "lbd.log"), "w")
        self.lbd = subprocess.Popen([LBD, "-c", cfg], stdout=self.lbd_log,
                                    stderr=subprocess.STDOUT)

    def tearDown(self):
        if getattr(self, "lbd", None) and self.lbd.poll() is None:
            self.lbd.send_signal(signal.SIGTERM)
            try:
                self.lbd.wait(10)
            except subprocess.TimeoutExpired:
                self.lbd.kill()
                self.lbd.wait(5)
        if getattr(self, "lbd_log", None):
            self.lbd_log.close()
        if getattr(self, "sim", None):
            self.sim.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def node_list(self):
        r = subprocess.run([tk.LBCTL, "--kubeconfig", self.kubeconfig, "node", "list"],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr

    def lbd_text(self):
        with open(self.lbd_log.name) as f:
            return f.read()

    def test_node_list_survives_a_master_down(self):
        tk.wait_for(lambda: self.lbd.poll() is None and self.node_list()[0] == 0, 20,
                    "lbctl node list through the VIP")
        self.assertIsNone(self.lbd.poll(), self.lbd_text())
        self.sim.call("/sim/listeners/master-2", {"state": "down"})
        self.sim.call("/sim/listeners/master-3", {"state": "fail"})
        # Right away (before checks notice) and after: every call must succeed.
        deadline = time.monotonic() + 3 * tk.SLOW
        n = 0
        while time.monotonic() < deadline or n < 10:
            rc, out = self.node_list()
            self.assertEqual(rc, 0, "call %d through the VIP failed: %s\nlbd log:\n%s"
                             % (n, out, self.lbd_text()[-3000:]))
            self.assertIn("worker-3", out)
            n += 1
        # master-1 alone carries the load; bring master-2 back, then lose master-1.
        self.sim.call("/sim/listeners/master-2", {"state": "ok"})
        self.sim.call("/sim/listeners/master-3", {"state": "ok"})
        tk.wait_for(lambda: self.node_list()[0] == 0, 10, "VIP with all masters back")
        self.sim.call("/sim/listeners/master-1", {"state": "down"})
        for i in range(10):
            rc, out = self.node_list()
            self.assertEqual(rc, 0, "call %d with master-1 down: %s" % (i, out))


if __name__ == "__main__":
    unittest.main()
