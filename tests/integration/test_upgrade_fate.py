"""test_upgrade_fate.py - a node command's fate is known: it runs exactly once.

The cluster of test_upgrade.py (kubesim, a real 3-member etcd, a real lbd as
the VIP with its gate, a client counting failed requests through the VIP).
The plan's upgrade_command for one node sleeps before it calls the fixture,
so lbctl can be killed, or stopped with Ctrl-C, while the command runs and
before it has any visible effect (as on k3s, where a restart keeps the
bootID): the fixture counts how often each node's command really ran.

  - Ctrl-C (SIGINT to lbctl's whole process group, as a terminal sends it)
    during master-2's command: lbctl stops and names the command still
    running; the command is not killed and finishes on its own (main sent it
    SIGTERM).
  - then --resume, kill -9 of it during worker-2's command, and --resume at
    once: it waits for the command still running and reads its exit status;
    it never starts it again (main started it a second time, concurrently).
  Every node's command ran exactly once; no request through the VIP failed.
  - kill -9 of lbctl at 20 random moments of a full upgrade, resumed at once
    each time: every command ran exactly once, no failed VIP request.
"""

import os
import random
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_upgrade as tu  # noqa: E402


class FateTest(tu.UpgradeTest):
    slow = ("master-2", "worker-2")

    def write_plan(self, name="plan.yaml", sleep="4", **over):
        path = super().write_plan(name, **over)
        with open(path) as f:
            text = f.read()
        text = text.replace("upgrade_command: curl",
                            "upgrade_command: case {node} in %s) sleep %s;; esac; curl"
                            % ("|".join(self.slow), sleep))
        with open(path, "w") as f:
            f.write(text)
        self.addCleanup(self.kill_commands, path)
        return path

    def kill_commands(self, plan):
        """Commands run detached from lbctl: stop any still running, by the
        PID and start time the journal recorded."""
        try:
            steps = self.journal(plan)["steps"]
        except (OSError, ValueError):
            return
        for s in steps:
            cmd = s.get("cmd")
            if not cmd:
                continue
            try:
                with open("/proc/%d/stat" % cmd["pid"]) as f:
                    start = f.read().rsplit(")", 1)[1].split()[19]
                if start == cmd["start"]:
                    os.killpg(cmd["pid"], signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass

    def calls(self):
        return [c[1] for c in self.fixture.calls if c[0] == "/upgrade"]

    def wait_command_started(self, plan, p, node):
        """Until node's command has started: the history says it runs, and the
        journal records it (pid, marker); an lbctl that records nothing is
        given 2s for it, so the test measures the same on one."""
        def running():
            if p.poll() is not None:
                raise AssertionError("lbctl exited: %s" % p.log.tail(n=60))
            try:
                with open(plan + ".log") as f:
                    return (" %s command: run: " % node) in f.read()
            except OSError:
                return False

        def recorded():
            try:
                j = self.journal(plan)
            except (OSError, ValueError):
                return False
            return any(s["node"] == node and s["step"] == "command" and s.get("cmd")
                       for s in j["steps"])
        harness.wait_for(running, harness.T(90), "%s's command to start" % node)
        try:
            harness.wait_for(recorded, 2.0, "%s's command recorded" % node)
        except harness.WaitTimeout:
            pass
        self.assertNotIn(node, self.calls(), "the command was not slow enough")


class TestCommandFate(FateTest):
    def test_ctrl_c_then_kill9_mid_command(self):
        plan = self.write_plan()
        self.start_watchers()
        # Ctrl-C while master-2's command runs: a terminal signals the whole
        # foreground process group, lbctl's.
        p = self.spawn("lbctl-upgrade", [tu.LBCTL, "upgrade", plan], cwd=self.tmp)
        self.wait_command_started(plan, p, "master-2")
        os.killpg(p.pid, signal.SIGINT)
        self.assertIsNotNone(p.wait(harness.T(30)), "lbctl did not stop on Ctrl-C")
        self.assertNotEqual(p.poll(), 0)
        log = p.log.text()
        self.assertRegex(log, r"upgrade_command is still running \(pid \d+", log)
        # Not killed: it finishes on its own, with lbctl gone.
        harness.wait_for(lambda: "master-2" in self.calls(), harness.T(30),
                         "master-2's command to finish without lbctl")
        # Resume; kill -9 it while worker-2's command runs; resume at once.
        p = self.spawn("lbctl-resume", [tu.LBCTL, "upgrade", plan, "--resume"], cwd=self.tmp)
        self.wait_command_started(plan, p, "worker-2")
        p.stop(signal.SIGKILL)
        rc, out, err = self.lbctl("upgrade", plan, "--resume")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("still running, waiting for it", out + err)
        self.check_watchers()
        self.assert_all_upgraded()
        self.assertEqual(self.calls(), tu.MASTERS + tu.WORKERS, "a command ran twice")
        j = self.journal(plan)
        self.assertEqual(j["status"], "done")


class TestKill9Anywhere(FateTest):
    slow = ("master-1", "master-2", "master-3", "worker-1", "worker-2", "worker-3")

    def test_kill9_at_20_random_moments(self):
        """kill -9 of lbctl 20 times, each at a random moment of what is left
        of the run (every command sleeps 1s first, so many land in one),
        resumed each time at once."""
        plan = self.write_plan(sleep="1")
        seed = int(os.environ.get("LBD_TEST_SEED", time.time()))
        rnd = random.Random(seed)
        harness.note("kill -9 moments drawn with seed %d (LBD_TEST_SEED)", seed)
        self.start_watchers()
        argv = [tu.LBCTL, "upgrade", plan]
        kills = 0
        while kills < 20:
            p = self.spawn("lbctl-%d" % kills, argv, cwd=self.tmp)
            if p.wait(rnd.uniform(0.3, 2.5)) is not None:
                self.assertEqual(p.poll(), 0, p.log.tail(n=40))
                break
            p.stop(signal.SIGKILL)
            kills += 1
            # Killed before the journal was written (in the preflight):
            # nothing was started, and a run starts afresh, as an operator
            # would be told to.
            if os.path.exists(plan + ".journal"):
                argv = [tu.LBCTL, "upgrade", plan, "--resume"]
        else:
            rc, out, err = self.lbctl(*argv[1:])
            self.assertEqual(rc, 0, out + err)
        harness.note("killed %d times", kills)
        self.assertGreaterEqual(kills, 10, "the run ended before most kills")
        self.check_watchers()
        self.assert_all_upgraded()
        self.assertEqual(self.calls(), tu.MASTERS + tu.WORKERS, "a command ran twice (or never)")
        self.assertEqual(self.journal(plan)["status"], "done")
        done = self.history_done(plan)
        self.assertEqual(len(done), len(set(done)), "a step done twice: %s" % done)


if __name__ == "__main__":
    unittest.main()
