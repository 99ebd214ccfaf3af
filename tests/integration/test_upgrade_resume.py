"""test_upgrade_resume.py - a resume after the plan is fixed.

The cluster of test_upgrade.py (kubesim, a real 3-member etcd, a real lbd as
the VIP with its gate, a client counting failed requests through the VIP).
The plan's upgrade_command has a typo (a path the fixture does not serve), so
master-1's command fails and the run stops with master-1 cordoned, leased and
its backend drained. Main refused any edit on --resume ("plan changed since
the run started"), even a comment, so the fix itself could not be resumed.

  - a comment added (the command still wrong): --resume takes the edit, logs
    its diff, runs the command again (its failure was reported) and fails again;
  - the command fixed and the workers reordered: --resume refuses (the order
    is part of what the steps mean) and shows the diff;
  - --resume --accept-plan-change: takes it, finishes, workers in the new
    order; every command that succeeded ran once, no VIP request failed.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_upgrade as tu  # noqa: E402


class TestResumeAfterFix(tu.UpgradeTest):
    def edit(self, plan, old, new):
        with open(plan) as f:
            text = f.read()
        self.assertIn(old, text)
        with open(plan, "w") as f:
            f.write(text.replace(old, new))

    def test_fix_the_command_then_resume(self):
        plan = self.write_plan()
        self.edit(plan, "/upgrade?node=", "/upgrde?node=")
        self.start_watchers()
        rc, out, err = self.lbctl("upgrade", plan)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("master-1: upgrade_command failed", err)

        self.edit(plan, "kind: upgrade\n", "# fixing it\nkind: upgrade\n")
        rc, out, err = self.lbctl("upgrade", plan, "--resume")
        self.assertEqual(rc, 1, out + err)
        self.assertNotIn("changed since", out + err)
        self.assertIn("+ # fixing it", out + err)
        self.assertIn("master-1: upgrade_command failed", err)
        with open(plan + ".log") as f:
            self.assertIn("+ # fixing it", f.read())

        self.edit(plan, "/upgrde?node=", "/upgrade?node=")
        self.edit(plan, "  - {name: worker-1, role: worker}\n", "")
        self.edit(plan, "  - {name: worker-3, role: worker}\n",
                  "  - {name: worker-3, role: worker}\n  - {name: worker-1, role: worker}\n")
        rc, out, err = self.lbctl("upgrade", plan, "--resume")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("changed what the run's steps mean", err)
        self.assertIn("--accept-plan-change", err)
        self.assertIn("+ node: worker-1 worker", err)
        self.assertIn("- upgrade_command: curl", err)  # the whole edit is shown
        self.assertEqual([c[1] for c in self.fixture.calls if c[0] == "/upgrade"], [])

        rc, out, err = self.lbctl("upgrade", plan, "--resume", "--accept-plan-change")
        self.assertEqual(rc, 0, out + err)
        self.check_watchers()
        self.assert_all_upgraded()
        self.assertEqual([c[1] for c in self.fixture.calls if c[0] == "/upgrade"],
                         tu.MASTERS + ["worker-2", "worker-3", "worker-1"])


if __name__ == "__main__":
    unittest.main()
