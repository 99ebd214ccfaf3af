"""test_drain_parity.py - `lbctl node drain` against real kubectl 1.27 and 1.33
(issue 16): the same drains, on kubesim's k3s and kubeadm profiles, must end
in the same cluster state with the same exit class, and lbctl must behave as
kubectl where the old drain did not: evictions in parallel, a 429 retried
after its Retry-After (else every 5 s), pods that arrive on the node after
the listing left alone, --pod-selector, --dry-run=client|server,
--skip-wait-for-delete-timeout and several nodes at once.

kubectl.1.27 and kubectl.1.33 are reference binaries next to `kubectl` (not
Debian packages). Every process is killed by PID in cleanup; ports are
ephemeral; waits are bounded polls.
"""

import os
import shutil
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_kube as tk  # noqa: E402

PAIR = ("1.27", "1.33")


def reference_kubectls():
    base = shutil.which("kubectl")
    d = os.path.dirname(os.path.realpath(base)) if base else ""
    return {v: os.path.join(d, "kubectl." + v) for v in PAIR
            if d and os.access(os.path.join(d, "kubectl." + v), os.X_OK)}


KUBECTLS = reference_kubectls()

FLAGS = ["--ignore-daemonsets", "--delete-emptydir-data", "--force"]


def exit_class(label, rc):
    """kubectl exits 1 for every failure; lbctl says 4 when it timed out."""
    if rc == 0:
        return "ok"
    if rc == 1 or (label == "lbctl" and rc == 4):
        return "failed"
    return "rc %d" % rc


def cluster(profile, pods=(), pdbs=(), **extra):
    """master-1 (control-plane: tainted NoSchedule on kubeadm), worker-1 to
    drain, worker-2 where evicted pods can go, and worker-1's pods."""
    sc = {"profile": profile, "deleteDelay": 0.2,
          "nodes": [{"name": "master-1", "roles": ["control-plane", "etcd", "master"]},
                    {"name": "worker-1"}, {"name": "worker-2"}],
          "pods": [{"name": "proxy-%s" % n, "namespace": "kube-system", "node": n,
                    "owner": {"kind": "DaemonSet", "name": "proxy"},
                    "labels": {"k8s-app": "proxy"},
                    "tolerations": [{"operator": "Exists"}]}
                   for n in ("master-1", "worker-1", "worker-2")] + list(pods),
          "pdbs": list(pdbs)}
    sc.update(extra)
    return sc


def every_kind():
    """One pod of each kind drain treats differently, on worker-1."""
    return [
        {"name": "static-web-worker-1", "namespace": "kube-system", "node": "worker-1",
         "mirror": True},
        {"name": "web-1", "node": "worker-1", "labels": {"app": "web"},
         "owner": {"kind": "ReplicaSet", "name": "web"}, "terminationGracePeriodSeconds": 1},
        {"name": "db-0", "node": "worker-1", "labels": {"app": "db"},
         "owner": {"kind": "StatefulSet", "name": "db"}},
        {"name": "scratch-1", "node": "worker-1", "labels": {"app": "scratch"},
         "emptyDir": True, "owner": {"kind": "ReplicaSet", "name": "scratch"}},
        {"name": "report-x1", "node": "worker-1", "labels": {"job": "report"},
         "phase": "Succeeded", "owner": {"kind": "Job", "name": "report"}},
        {"name": "debug", "node": "worker-1", "labels": {"run": "debug"}},
    ]


class ParityCase(tk.KubeTestCase):
    def setUp(self):
        if set(KUBECTLS) != set(PAIR):
            harness.skip_capability("kubectl %s reference binaries" % " and ".join(PAIR),
                                    "not next to kubectl on this machine")
        super().setUp()
        self.need_lbctl()

    def tools(self):
        out = [("kubectl." + v, [KUBECTLS[v], "--kubeconfig", self.sim.kubeconfig])
               for v in PAIR]
        out.append(("lbctl", [tk.LBCTL, "--kubeconfig", self.sim.kubeconfig, "node"]))
        return out

    def settled(self):
        """The state once every deletion that can finish has finished."""
        def done():
            st = self.sim.state()
            return st if st["pending_deletions"] == 0 else None
        return tk.wait_for(done, 15, "pending pod deletions to finish")

    def run_all(self, sc, args, during=None, timeout=60):
        """Loads sc and runs `drain args` with each tool: {label: (class, out, state)}."""
        res = {}
        for label, argv in self.tools():
            self.sim.load(sc)
            th = None
            if during:
                th = threading.Thread(target=during, daemon=True)
                th.start()
            rc, out = self.run_tool(argv + ["drain"] + args, timeout)
            if th:
                th.join(30)
            res[label] = (exit_class(label, rc), out, self.settled())
        return res

    def assert_same(self, res, norm=tk.normalize):
        labels = sorted(res)
        first = labels[0]
        for other in labels[1:]:
            self.assertEqual(res[first][0], res[other][0], "exit class: %s vs %s:\n%s\n%s" % (
                first, other, res[first][1], res[other][1]))
            self.assertEqual(norm(res[first][2]), norm(res[other][2]),
                             "end state: %s vs %s" % (first, other))


class TestDifferential(ParityCase):
    """The drain kinds of issue 16 on both profiles: same end state and exit class."""

    def test_every_kind_both_profiles(self):
        for profile in ("k3s", "kubeadm"):
            with self.subTest(profile=profile):
                res = self.run_all(cluster(profile, every_kind()), ["worker-1"] + FLAGS)
                self.assert_same(res)
                for label, (cls, out, st) in res.items():
                    self.assertEqual(cls, "ok", "%s:\n%s" % (label, out))
                    for text in ("node/worker-1 cordoned", "evicting pod default/web-1",
                                 "pod/web-1 evicted", "node/worker-1 drained",
                                 "ignoring DaemonSet-managed Pods: kube-system/proxy-worker-1",
                                 "deleting Pods that declare no controller: default/debug"):
                        self.assertIn(text, out, label)
                    norm = tk.normalize(st)
                    self.assertEqual(norm["on_node"], [
                        ("kube-system", "DaemonSet/proxy", False),
                        ("kube-system", "Node/worker-1", True)], label)
                    self.assertNotIn("default/report-x1", norm["owners"], label)  # not re-created
                    if profile == "kubeadm":
                        # the tainted master got nothing that does not tolerate it
                        on_master = [p["name"] for p in st["pods"] if p["node"] == "master-1"
                                     and p["owner"] != "DaemonSet/proxy"]
                        self.assertEqual(on_master, [], label)

    def test_refusals_both_profiles(self):
        for profile in ("k3s", "kubeadm"):
            with self.subTest(profile=profile):
                res = self.run_all(cluster(profile, every_kind()), ["worker-1"])
                self.assert_same(res)
                for label, (cls, out, st) in res.items():
                    self.assertEqual(cls, "failed", label)
                    self.assertIn("cannot delete DaemonSet-managed Pods (use --ignore-daemonsets"
                                  " to ignore): kube-system/proxy-worker-1", out, label)
                    self.assertIn('error: unable to drain node "worker-1"', out, label)
                    self.assertIn("There are pending nodes to be drained:\n worker-1", out, label)
                    self.assertEqual(len(tk.normalize(st)["on_node"]), len(every_kind()) + 1)

    def test_pdb_blocked(self):
        """k3s only: the budget arithmetic is the same on both profiles, and
        kubectl sleeps its 5 s before it notices its timeout, so each run
        costs 5 s."""
        pods = [{"name": "web-%d" % i, "node": "worker-%d" % i, "labels": {"app": "web"},
                 "owner": {"kind": "ReplicaSet", "name": "web"}} for i in (1, 2)]
        pdb = {"name": "web", "selector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": ["web"]}]}, "minAvailable": 2}
        for profile in ("k3s",):
            with self.subTest(profile=profile):
                res = self.run_all(cluster(profile, pods, [pdb]),
                                   ["worker-1"] + FLAGS + ["--timeout=2s"])
                self.assert_same(res)
                for label, (cls, out, st) in res.items():
                    self.assertEqual(cls, "failed", label)
                    self.assertIn("Cannot evict pod as it would violate the pod's disruption "
                                  "budget.", out, label)
                    self.assertIn('error when evicting pods/"web-1" -n "default" (will retry '
                                  'after 5s)', out, label)
                    self.assertIn(("default", "ReplicaSet/web", False),
                                  tk.normalize(st)["on_node"], label)

    def test_pod_arriving_mid_drain_left_alone(self):
        """kubectl lists the node's pods once: a pod that lands on the node
        while the drain runs stays (the old lbctl re-listed and evicted it).
        The slow evictions also show every tool evicts in parallel."""
        pods = [{"name": "web-%d" % i, "node": "worker-1", "labels": {"app": "web"},
                 "owner": {"kind": "ReplicaSet", "name": "web"}} for i in range(4)]

        def late_pod():
            since = time.time()

            def evicting():
                return any(r["method"] == "POST" and r["path"].endswith("/eviction")
                           and r["t"] >= since for r in self.sim.call("/sim/requests"))
            tk.wait_for(evicting, 20, "the first eviction")
            self.sim.call("/sim/pods", {"name": "late", "node": "worker-1",
                                        "labels": {"run": "late"}})

        for profile in ("k3s", "kubeadm"):
            with self.subTest(profile=profile):
                res = self.run_all(cluster(profile, pods, evictDelay=0.6),
                                   ["worker-1"] + FLAGS, during=late_pod)
                self.assert_same(res)
                for label, (cls, out, st) in res.items():
                    self.assertEqual(cls, "ok", "%s:\n%s" % (label, out))
                    self.assertIn(("default", "late", False),
                                  tk.normalize(st)["on_node"], label)
                    self.assertNotIn("evicting pod default/late", out, label)
                    self.assertGreaterEqual(st["max_evictions_in_flight"], 2,
                                            "%s evicted one pod after another" % label)


class TestRbac(ParityCase):
    def test_read_only_token_cannot_drain(self):
        """A token that may only read gets 403 on the cordon: every tool stops
        with the apiserver's words and changes nothing; one that may evict
        drains."""
        with open(self.sim.kubeconfig) as f:
            kc = f.read()
        tokens = {"readonly": "ro-token-0123456789", "evict": "ev-token-0123456789"}
        for role, tok in tokens.items():
            with open(os.path.join(self.tmp, "kc-" + role), "w") as f:
                f.write(kc.replace(self.sim.info["token"], tok))
        pods = [{"name": "web-1", "node": "worker-1", "labels": {"app": "web"},
                 "owner": {"kind": "ReplicaSet", "name": "web"}}]
        sc = cluster("k3s", pods, tokens={v: k for k, v in tokens.items()})
        for role, want in (("readonly", "failed"), ("evict", "ok")):
            with self.subTest(role=role):
                res = {}
                for label, argv in self.tools():
                    argv = [a if a != self.sim.kubeconfig else os.path.join(self.tmp, "kc-" + role)
                            for a in argv]
                    self.sim.load(sc)
                    rc, out = self.run_tool(argv + ["drain", "worker-1"] + FLAGS)
                    res[label] = (exit_class(label, rc), out, self.settled())
                self.assert_same(res)
                for label, (cls, out, st) in res.items():
                    self.assertEqual(cls, want, "%s:\n%s" % (label, out))
                    if role == "readonly":
                        self.assertIn('nodes "worker-1" is forbidden: User "system:serviceaccount:'
                                      'kube-system:readonly" cannot patch resource "nodes"', out,
                                      label)
                        self.assertFalse(st["nodes"]["worker-1"]["unschedulable"], label)


class TestNewFlags(ParityCase):
    """Flags the old lbctl refused as usage errors, each next to kubectl 1.33
    (1.27 has them too; TestDifferential compares both versions)."""

    def tools(self):
        return [t for t in super().tools() if t[0] != "kubectl." + PAIR[0]]

    def test_pod_selector_and_several_nodes(self):
        pods = [{"name": "web-%d" % i, "node": "worker-%d" % i, "labels": {"app": "web"},
                 "owner": {"kind": "ReplicaSet", "name": "web"}} for i in (1, 2)]
        pods += [{"name": "db-%d" % i, "node": "worker-%d" % i, "labels": {"app": "db"},
                  "owner": {"kind": "StatefulSet", "name": "db"}} for i in (1, 2)]
        res = self.run_all(cluster("k3s", pods),
                           ["worker-1", "worker-2", "--ignore-daemonsets",
                            "--pod-selector", "app=web"])
        self.assert_same(res)
        for label, (cls, out, st) in res.items():
            self.assertEqual(cls, "ok", "%s:\n%s" % (label, out))
            for text in ("node/worker-1 cordoned\nnode/worker-2 cordoned\n",
                         "node/worker-1 drained", "node/worker-2 drained"):
                self.assertIn(text, out, label)
            self.assertNotIn("evicting pod default/db", out, label)
            where = {p["name"]: p["node"] for p in st["pods"]}
            self.assertEqual((where["db-0"] if "db-0" in where else None, where.get("db-1"),
                              where.get("db-2")), (None, "worker-1", "worker-2"), label)
            self.assertTrue(all(st["nodes"][n]["unschedulable"] for n in ("worker-1",
                                                                         "worker-2")))

    def test_dry_run_client_and_server(self):
        pdb = {"name": "db", "selector": {"app": "db"}, "minAvailable": 0}
        for mode, suffix in (("client", "(dry run)"), ("server", "(server dry run)")):
            with self.subTest(dry_run=mode):
                sc = cluster("k3s", every_kind(), [pdb])
                res = self.run_all(sc, ["worker-1"] + FLAGS + ["--dry-run=" + mode])
                self.assert_same(res)
                for label, (cls, out, st) in res.items():
                    self.assertEqual(cls, "ok", "%s:\n%s" % (label, out))
                    self.assertIn("node/worker-1 cordoned " + suffix, out, label)
                    self.assertIn("evicting pod default/web-1 " + suffix, out, label)
                    self.assertIn("node/worker-1 drained " + suffix, out, label)
                    self.assertFalse(st["nodes"]["worker-1"]["unschedulable"], label)
                    self.assertEqual(len(tk.normalize(st)["on_node"]), len(every_kind()) + 1)
                    self.assertEqual(st["pending_deletions"], 0, label)
        # A server dry run asks the apiserver: lbctl's requests carry dryRun=All.
        paths = [r["path"] for r in self.sim.call("/sim/requests")
                 if r["method"] in ("PATCH", "POST") and "/sim/" not in r["path"]]
        self.assertTrue(paths and all("dryRun=All" in p or p.endswith("/eviction")
                                      for p in paths), paths)

    def test_skip_wait_for_delete_timeout(self):
        pods = [{"name": "stuck", "node": "worker-1", "labels": {"app": "stuck"},
                 "owner": {"kind": "ReplicaSet", "name": "stuck"}, "terminatingFor": 60},
                {"name": "web-1", "node": "worker-1", "labels": {"app": "web"},
                 "owner": {"kind": "ReplicaSet", "name": "web"}}]
        res = self.run_all(cluster("k3s", pods),
                           ["worker-1"] + FLAGS + ["--skip-wait-for-delete-timeout=10",
                                                   "--timeout=20s"])
        self.assert_same(res)
        for label, (cls, out, st) in res.items():
            self.assertEqual(cls, "ok", "%s:\n%s" % (label, out))
            self.assertIn("node/worker-1 drained", out, label)
        # Without it, lbctl waits for the stuck pod until the timeout, as
        # kubectl does.
        self.sim.load(cluster("k3s", pods))
        rc, out = self.run_tool(self.tools()[-1][1] + ["drain", "worker-1"] + FLAGS +
                                ["--timeout=2s"])
        self.assertEqual(rc, 4, out)
        self.assertIn("default/stuck (waiting for the pod to terminate)", out)

    def test_retry_after_honoured(self):
        """A 429 from API Priority and Fairness carries Retry-After: 1; the
        eviction is tried again about a second later, not after 5 s."""
        pods = [{"name": "web-1", "node": "worker-1", "labels": {"app": "web"},
                 "owner": {"kind": "ReplicaSet", "name": "web"}}]
        label, argv = self.tools()[-1]
        self.sim.load(cluster("k3s", pods))
        self.sim.call("/sim/apf", {"reject": 1, "retryAfter": 1, "match": "/eviction"})
        rc, out = self.run_tool(argv + ["drain", "worker-1"] + FLAGS)
        self.assertEqual(rc, 0, out)
        t = [r["t"] for r in self.sim.call("/sim/requests")
             if r["method"] == "POST" and r["path"].endswith("/web-1/eviction")]
        self.assertEqual(len(t), 2, out)
        self.assertGreaterEqual(t[1] - t[0], 0.9, out)
        self.assertLess(t[1] - t[0], 4.0, "Retry-After: 1 ignored:\n" + out)


if __name__ == "__main__":
    unittest.main()
