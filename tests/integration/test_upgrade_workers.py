"""test_upgrade_workers.py - workers.concurrency 2 against the gate's cap.

The cluster of test_upgrade.py (kubesim, a real 3-member etcd, a real lbd as
the VIP with its gate, a client counting failed requests through the VIP). The
masters are at the target already; the plan upgrades the workers two at a
time with timeouts.gate 5s.

  - gate cap 1, a worker's upgrade longer than timeouts.gate (soak 6s): the
    workers take the one slot in plan order (FIFO), never two at once, and
    waiting behind a sibling is not a gate failure. Main let
    the thread that finished re-take the slot at once while the other polled
    every 2s, then exited 3 ("the gate refused a lease") and cut the
    sibling's wait, leaving a worker cordoned mid-upgrade.
  - gate cap 2: two workers are down at once, never three.
"""

import os
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_upgrade as tu  # noqa: E402


class Cordons(threading.Thread):
    """Samples kubesim: the most workers cordoned at once."""

    def __init__(self, sim):
        super().__init__(daemon=True)
        self.sim, self.most, self.stop_ev = sim, 0, threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                st = self.sim.state()["nodes"]
                n = sum(1 for w in tu.WORKERS if st[w]["unschedulable"])
                self.most = max(self.most, n)
            except Exception:  # noqa: BLE001 - a missed sample is no verdict
                pass
            self.stop_ev.wait(0.05)

    def finish(self):
        self.stop_ev.set()
        self.join(5)


class WorkersTest(tu.UpgradeTest):
    cap = 1
    soak = "1s"
    versions = {m: tu.NEW for m in tu.MASTERS}  # the workers' part only

    def lbd_cfg(self):
        cfg = super().lbd_cfg()
        cfg["gate"]["concurrency"]["workers"] = self.cap
        return cfg

    def run_workers(self):
        plan = self.write_plan()
        with open(plan) as f:
            text = f.read()
        text = text.replace("workers: {concurrency: 1}", "workers: {concurrency: 2}")
        text = text.replace("gate: 30s}", "gate: 5s}")
        text = text.replace("soak: 1s\n", "soak: %s\n" % self.soak)
        with open(plan, "w") as f:
            f.write(text)
        cordons = Cordons(self.sim)
        cordons.start()
        self.addCleanup(cordons.finish)
        self.start_watchers()
        rc, out, err = self.lbctl("upgrade", plan)
        cordons.finish()
        self.assertEqual(rc, 0, out + err)
        self.check_watchers()
        self.assert_all_upgraded()
        calls = [c[1] for c in self.fixture.calls if c[0] == "/upgrade"]
        self.assertEqual(sorted(calls), sorted(tu.WORKERS), "a command ran twice")
        with open(plan + ".log") as f:
            history = f.read()
        return calls, cordons.most, history


class TestWorkersCap1(WorkersTest):
    cap = 1
    soak = "6s"  # a worker takes longer than timeouts.gate

    def test_concurrency_2_cap_1(self):
        calls, most, history = self.run_workers()
        self.assertEqual(most, 1, "two workers down at once with a gate cap of 1")
        self.assertEqual(calls, tu.WORKERS, "not in plan order (FIFO)")
        self.assertIn("above the gate's cap of 1", history)


class TestWorkersCap2(WorkersTest):
    cap = 2

    def test_concurrency_2_cap_2(self):
        calls, most, _ = self.run_workers()
        self.assertEqual(most, 2, "never two workers at once with concurrency 2, cap 2")


if __name__ == "__main__":
    unittest.main()
