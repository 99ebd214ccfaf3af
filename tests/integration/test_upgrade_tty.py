"""lbctl upgrade on a terminal: its progress ticker (a second thread, only
started when stdout is a tty) starts and stops cleanly around a run that
preflight refuses. Under SAN=thread (.ci/run's ThreadSanitizer step) this is
what shows a race between the ticker and the main thread: the stop flag was a
volatile bool."""
import os
import pty
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import T  # noqa: E402

LBCTL = os.path.join(harness.BUILD, "lbctl")


class UpgradeOnATerminal(harness.TestCase):
    def test_ticker_starts_and_stops_without_a_race(self):
        kc = self.path("kubeconfig")
        with open(kc, "w") as f:
            # Nothing listens on port 1: preflight fails at once.
            f.write("apiVersion: v1\nkind: Config\n"
                    "clusters: [{name: c, cluster: {server: \"http://127.0.0.1:1\"}}]\n"
                    "users: [{name: u, user: {token: x}}]\n"
                    "contexts: [{name: c, context: {cluster: c, user: u}}]\n"
                    "current-context: c\n")
        plan = self.path("plan.yaml")
        with open(plan, "w") as f:
            f.write("kind: upgrade\nversion: v1.31.5\nkubeconfig: %s\n"
                    "lbd: {socket: %s}\npool: masters\n"
                    "nodes:\n  - {name: m1, role: master}\n"
                    "upgrade_command: \"true\"\n" % (kc, self.path("none.sock")))
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([LBCTL, "upgrade", plan], stdin=subprocess.DEVNULL, stdout=slave,
                                 stderr=subprocess.PIPE)
        finally:
            os.close(slave)
        try:
            _, err = p.communicate(timeout=T(30))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            os.close(master)
        err = err.decode(errors="replace")
        if harness.TestCase.SAN_MARKERS.search(err):
            self.fail("sanitizer report:\n" + err[-4000:])
        self.assertEqual(p.returncode, 1, err[-2000:])
        self.assertIn("preflight refused to start", err)


if __name__ == "__main__":
    unittest.main()
