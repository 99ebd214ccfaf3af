"""test_upgrade_preflight.py - the preflight refuses what the run would refuse.

The cluster of test_upgrade.py (kubesim, a real 3-member etcd, a real lbd as
the VIP with its gate). One etcd member is stopped, so the gate refuses a
lease to every master. Main's dry run printed "would be REFUSED" for each
and still said "the preflight passes" with exit 0; its real run then ran the
snapshot hook, wrote a journal and waited out timeouts.gate before exit 3.
Now: the dry run (text and -o json) exits 1 naming the gate check for each
master, the real run
stops in its preflight at once: no hook, no journal, no lease, nothing
cordoned, and no request through the VIP fails meanwhile.
"""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_upgrade as tu  # noqa: E402


class TestPreflightRefuses(tu.UpgradeTest):
    def test_etcd_member_down_refused_before_the_hook(self):
        plan = self.write_plan()
        hook_ran = self.path("hook-ran")
        with open(plan) as f:
            text = f.read()
        text = text.replace("hooks: {preflight: 'echo snapshot pre-upgrade-{date}'}",
                            "hooks: {preflight: 'touch %s'}" % hook_ran)
        with open(plan, "w") as f:
            f.write(text)
        self.start_watchers()
        self.etcd.stop("master-3")

        def gate_sees_it():
            ms = self.gate_status()["inputs"]["etcd"]["members"]
            return any(not m["healthy"] for m in ms)
        harness.wait_for(gate_sees_it, harness.T(30), "the gate to see etcd master-3 down")

        rc, out, err = self.lbctl("upgrade", plan, "--dry-run")
        self.assertEqual(rc, 1, out + err)
        for m in tu.MASTERS:
            self.assertIn("REFUSE  gate: %s (master in the plan) would be REFUSED now" % m, out)
        self.assertIn("the preflight would refuse to start", out)
        rc, out, err = self.lbctl("-o", "json", "upgrade", plan, "--dry-run")
        self.assertEqual(rc, 1, out + err)
        dry = json.loads(out)
        self.assertFalse(dry["would_start"])
        self.assertTrue(any("gate: master-2 (master in the plan) would be REFUSED now" in r
                            for r in dry["preflight"]["refuse"]), dry["preflight"])
        self.assertEqual([n["name"] for n in dry["nodes"]], tu.MASTERS + tu.WORKERS)

        t0 = time.monotonic()
        rc, out, err = self.lbctl("upgrade", plan)
        took = time.monotonic() - t0
        self.assertEqual(rc, 1, out + err)
        self.assertIn("preflight refused to start", out + err)
        self.assertIn("gate: master-1 (master in the plan) would be REFUSED now", out + err)
        self.assertLess(took, 25, "it waited for the gate instead of refusing")
        self.assertFalse(os.path.exists(hook_ran), "the hook (etcd snapshot) ran")
        self.assertFalse(os.path.exists(plan + ".journal"), "a refused run left a journal")
        self.assertEqual(self.gate_status()["leases"], [])
        st = self.sim.state()["nodes"]
        self.assertFalse(any(n["unschedulable"] for n in st.values()), "a node was cordoned")
        self.client.finish()
        self.assertEqual(self.client.failed, [], "requests through the VIP failed")


if __name__ == "__main__":
    unittest.main()
