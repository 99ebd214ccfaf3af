"""test_upgrade_honest.py - a failure message says what holds at that moment.

The cluster of test_upgrade.py (kubesim, a real 3-member etcd, a real lbd as
the VIP with its gate). master-2 goes down in its upgrade and never comes
back; while lbctl waits for it, an admin releases its gate lease. Main's
message still said "its lease held and its backend drained, so nothing else
goes down", from what the step assumed. Now the message is built from what
is read when the run stops: cordoned, NO gate lease, the backend's state.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_upgrade as tu  # noqa: E402


class TestHonestMessage(tu.UpgradeTest):
    versions = {"master-1": tu.NEW}

    def test_lease_released_meanwhile(self):
        self.fixture.never.add("master-2")
        plan = self.write_plan(node_ready="6s")
        self.start_watchers()
        p = self.spawn("lbctl-upgrade", [tu.LBCTL, "upgrade", plan], cwd=self.tmp)

        def waiting():
            if p.poll() is not None:
                raise AssertionError("lbctl exited: %s" % p.log.tail(n=40))
            return "master-2" in [c[1] for c in self.fixture.calls]
        harness.wait_for(waiting, harness.T(60), "master-2's command")
        st, _, body = harness.admin_request(self.admin, "DELETE", "/v1/gate/leases/master-2")
        self.assertEqual(st, 200, body)
        self.assertEqual(p.wait(harness.T(60)), 4, p.log.tail(n=40))
        log = p.log.text()
        self.assertIn("master-2 never came back within 6s", log)
        self.assertNotIn("its lease held", log)
        self.assertIn("Now: master-2 is cordoned; it holds NO gate lease", log)
        self.assertRegex(log, r"backend masters/master-2 is (drain|disabled)")
        self.client.finish()
        self.assertEqual(self.client.failed, [], "requests through the VIP failed")


if __name__ == "__main__":
    unittest.main()
