"""test_kubesim.py - the kube simulator against what real k3s and kubeadm do
(issue 16). Each test names the real behaviour it pins, and failed on the
simulator that was kind: anonymous /readyz everywhere, instant NotReady and a
new bootID on every restart, PDBs blind to matchExpressions and to unready
pods, replacements Ready at once, scheduling onto tainted masters, every
token an admin, no Priority and Fairness.

Every kubesim runs on loopback ports it picks itself and is killed by PID in
cleanup; waits are bounded polls. Grace periods are scaled down (1 s).
"""

import json
import os
import shutil
import ssl
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_kube as tk  # noqa: E402

READONLY = "readonly-token-0123456789"
EVICT = "evict-token-0123456789"


class SimCase(unittest.TestCase):
    profile = "k3s"
    node_grace = 1.0

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lbd-kubesim-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sim = tk.KubeSim(self.tmp, profile=self.profile, node_grace=self.node_grace)
        self.addCleanup(self.sim.stop)
        self.base = "https://" + self.sim.info["listen"][0]
        self.ctx = ssl.create_default_context(cafile=self.sim.info["ca"])
        self.admin = self.sim.info["token"]

    def req(self, method, path, token=None, body=None, cert=False):
        """(status, headers, parsed body) of one request to the apiserver."""
        ctx = self.ctx
        if cert:
            ctx = ssl.create_default_context(cafile=self.sim.info["ca"])
            pki = self.sim.info["pki"]
            ctx.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
        hdrs = {"Content-Type": "application/json"}
        if token:
            hdrs["Authorization"] = "Bearer " + token
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.base + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(r, context=ctx, timeout=10) as resp:
                raw = resp.read()
                code, h = resp.status, resp.headers
        except urllib.error.HTTPError as e:
            raw, code, h = e.read(), e.code, e.headers
        try:
            return code, h, json.loads(raw)
        except ValueError:
            return code, h, raw.decode()

    def evict(self, name, ns="default", token=None):
        return self.req("POST", "/api/v1/namespaces/%s/pods/%s/eviction" % (ns, name),
                        token or self.admin,
                        {"apiVersion": "policy/v1", "kind": "Eviction",
                         "metadata": {"name": name, "namespace": ns}})

    def pods(self, pred=lambda p: True):
        return [p for p in self.sim.state()["pods"] if pred(p)]


class K3sProfile(SimCase):
    def test_no_anonymous_auth(self):
        """k3s-io/k3s#3576: an anonymous /readyz, /livez, /healthz or /version
        gets 401; any authenticated client gets 200 (public-info-viewer)."""
        for path in ("/readyz", "/livez", "/healthz", "/version"):
            st, _, body = self.req("GET", path)
            self.assertEqual((st, body["reason"]), (401, "Unauthorized"), path)
            self.assertEqual(self.req("GET", path, tk.HEALTH_TOKEN)[0], 200, path)
            self.assertEqual(self.req("GET", path, cert=True)[0], 200, path)
        self.assertEqual(self.req("GET", "/readyz", "wrong-token")[0], 401)
        self.assertEqual(self.sim.state()["profile"], "k3s")

    def test_service_restart_vs_reboot(self):
        """A k3s service restart keeps the bootID, and the node stays Ready
        until the node-monitor grace period has passed (scaled to 1 s here);
        a reboot changes the bootID."""
        self.sim.load({"nodes": [{"name": "m1", "roles": ["control-plane"]}, {"name": "w1"}]})
        boot = self.sim.state()["nodes"]["m1"]["bootID"]
        t0 = time.monotonic()
        self.sim.call("/sim/nodes/m1", {"restart": {"down": 3.0}})
        n = self.sim.state()["nodes"]["m1"]
        self.assertTrue(n["ready"], "NotReady at once: a real node stays Ready for the grace period")
        tk.wait_for(lambda: not self.sim.state()["nodes"]["m1"]["ready"], 10, "m1 NotReady")
        self.assertGreaterEqual(time.monotonic() - t0, 0.9, "NotReady before the grace period")
        tk.wait_for(lambda: self.sim.state()["nodes"]["m1"]["ready"], 10, "m1 Ready again")
        self.assertEqual(self.sim.state()["nodes"]["m1"]["bootID"], boot,
                         "a service restart changed the bootID")
        # A restart shorter than the grace period is never seen as NotReady.
        self.sim.call("/sim/nodes/m1", {"restart": {"down": 0.2}})
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            self.assertTrue(self.sim.state()["nodes"]["m1"]["ready"])
            time.sleep(0.1)
        # A reboot: NotReady after the grace, back with a new bootID.
        self.sim.call("/sim/nodes/w1", {"reboot": {"down": 1.5}})
        old = self.sim.state()["nodes"]["w1"]["bootID"]
        tk.wait_for(lambda: not self.sim.state()["nodes"]["w1"]["ready"], 10, "w1 NotReady")
        tk.wait_for(lambda: self.sim.state()["nodes"]["w1"]["ready"], 10, "w1 back")
        self.assertNotEqual(self.sim.state()["nodes"]["w1"]["bootID"], old)

    def test_pdb_match_expressions(self):
        """A PDB that selects with matchExpressions only still guards its pods
        (eviction 429, not 201)."""
        self.sim.load({"nodes": [{"name": "w1"}, {"name": "w2"}],
                       "pods": [{"name": "db-0", "node": "w1", "labels": {"app": "db"},
                                 "owner": {"kind": "StatefulSet", "name": "db"}}],
                       "pdbs": [{"name": "db", "selector": {"matchExpressions": [
                           {"key": "app", "operator": "In", "values": ["db"]}]},
                           "minAvailable": 1}]})
        st, _, body = self.evict("db-0")
        self.assertEqual(st, 429, body)
        self.assertEqual(body["details"]["causes"][0]["reason"], "DisruptionBudget")
        self.assertEqual(self.sim.state()["pdbs"]["default/db"]["expectedPods"], 1)

    def unready_budget(self, policy=None):
        pdb = {"name": "web", "selector": {"app": "web"}, "minAvailable": 2}
        if policy:
            pdb["unhealthyPodEvictionPolicy"] = policy
        self.sim.load({"nodes": [{"name": "w1"}, {"name": "w2"}],
                       "pods": [{"name": "web-%d" % i, "node": "w%d" % (i % 2 + 1),
                                 "labels": {"app": "web"}, "ready": i != 0,
                                 "owner": {"kind": "ReplicaSet", "name": "web"}}
                                for i in range(2)],
                       "pdbs": [pdb]})

    def test_unready_pod_if_healthy_budget(self):
        """The default unhealthyPodEvictionPolicy (IfHealthyBudget) refuses to
        evict an unready pod while the budget is not healthy; AlwaysAllow
        evicts it."""
        self.unready_budget()
        st, _, body = self.evict("web-0")
        self.assertEqual(st, 429, "an unready pod of a disrupted budget was evicted: %r" % body)
        self.unready_budget("AlwaysAllow")
        self.assertEqual(self.evict("web-0")[0], 201)

    def test_replacement_ready_after_delay(self):
        """A replacement pod is unready for readyDelay seconds, so a
        maxUnavailable: 1 budget blocks the next eviction until then."""
        self.sim.load({"nodes": [{"name": "w%d" % i} for i in (1, 2, 3)],
                       "readyDelay": 1.5, "deleteDelay": 0,
                       "pods": [{"name": "web-%d" % i, "node": "w%d" % i,
                                 "labels": {"app": "web"}, "terminationGracePeriodSeconds": 0,
                                 "owner": {"kind": "ReplicaSet", "name": "web"}}
                                for i in (1, 2, 3)],
                       "pdbs": [{"name": "web", "selector": {"app": "web"},
                                 "maxUnavailable": 1}]})
        self.assertEqual(self.evict("web-1")[0], 201)
        tk.wait_for(lambda: len(self.pods(lambda p: p["owner"] == "ReplicaSet/web"
                                          and not p["terminating"])) == 3, 10, "a replacement")
        self.assertEqual(self.evict("web-2")[0], 429, "the replacement was Ready at once")
        tk.wait_for(lambda: self.evict("web-2")[0] == 201, 10, "web-2 evictable once the "
                    "replacement is Ready")

    def test_rbac_read_only_and_evict(self):
        """A read-only token may list but not evict (403 with the apiserver's
        words); a token that may evict does."""
        self.sim.load({"nodes": [{"name": "w1"}, {"name": "w2"}],
                       "tokens": {READONLY: "readonly", EVICT: "evict"},
                       "pods": [{"name": "a", "node": "w1"}, {"name": "b", "node": "w1"}]})
        self.assertEqual(self.req("GET", "/api/v1/pods", READONLY)[0], 200)
        st, _, body = self.evict("a", token=READONLY)
        self.assertEqual((st, body["reason"]), (403, "Forbidden"))
        self.assertIn('cannot create resource "pods/eviction" in API group "" in the '
                      'namespace "default"', body["message"])
        st, _, body = self.req("PATCH", "/api/v1/nodes/w1", READONLY,
                               {"spec": {"unschedulable": True}})
        self.assertEqual(st, 403)
        self.assertEqual(self.evict("a", token=EVICT)[0], 201)
        st, _, _ = self.req("DELETE", "/api/v1/namespaces/default/pods/b", EVICT)
        self.assertEqual(st, 200)
        self.assertEqual(self.req("POST", "/api/v1/namespaces/default/pods", EVICT,
                                  {"metadata": {"name": "c"}})[0], 403)

    def test_priority_and_fairness_429(self):
        """On demand, API Priority and Fairness answers 429 with Retry-After."""
        self.sim.load({"nodes": [{"name": "w1"}], "pods": [{"name": "a", "node": "w1"}]})
        self.sim.call("/sim/apf", {"reject": 2, "retryAfter": 3, "match": "/eviction"})
        self.assertEqual(self.req("GET", "/api/v1/pods", self.admin)[0], 200)  # not matched
        for _ in range(2):
            st, h, body = self.evict("a")
            self.assertEqual((st, h.get("Retry-After"), body["reason"]),
                             (429, "3", "TooManyRequests"))
            self.assertEqual(body["details"]["retryAfterSeconds"], 3)
        self.assertEqual(self.evict("a")[0], 201)


class KubeadmProfile(SimCase):
    profile = "kubeadm"

    def test_anonymous_health_and_tainted_masters(self):
        """kubeadm allows anonymous /readyz (but not the API); control-plane
        nodes are tainted NoSchedule and a replacement pod never lands there."""
        for path in ("/readyz", "/livez", "/version"):
            self.assertEqual(self.req("GET", path)[0], 200, path)
        self.assertEqual(self.req("GET", "/api/v1/nodes")[0], 401)
        self.sim.load({"nodes": [{"name": "cp-1", "roles": ["control-plane"]}, {"name": "w1"},
                                 {"name": "w2", "unschedulable": True}],
                       "pods": [{"name": "web-1", "node": "w1", "labels": {"app": "web"},
                                 "owner": {"kind": "ReplicaSet", "name": "web"}},
                                {"name": "tol-1", "node": "w1", "labels": {"app": "tol"},
                                 "owner": {"kind": "ReplicaSet", "name": "tol"},
                                 "tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                                  "operator": "Exists", "effect": "NoSchedule"}]}]})
        st = self.sim.state()
        self.assertEqual(st["nodes"]["cp-1"]["taints"], ["node-role.kubernetes.io/control-plane"])
        self.assertEqual(self.evict("web-1")[0], 201)
        self.assertEqual(self.evict("tol-1")[0], 201)
        self.sim.settled()
        placed = {p["owner"]: p["node"] for p in self.pods()}
        # The only untainted schedulable node is w1, being excluded as the old
        # node: the web replacement stays Pending instead of using cp-1.
        self.assertIsNone(placed["ReplicaSet/web"], placed)
        self.assertEqual(placed["ReplicaSet/tol"], "cp-1", placed)


if __name__ == "__main__":
    unittest.main()
