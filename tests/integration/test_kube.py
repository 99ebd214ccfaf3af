"""test_kube.py - real kubectl and lbctl against the kube simulator (tests/sim/kubesim.py).

Every process is started here and killed by PID in tearDown. Ports are
ephemeral (kubesim binds port 0 and reports the real ports in a ready file).
Waits are bounded polls.

Environment: LBD_BUILD (default build) holds lbctl; LBCTL overrides the lbctl
binary; KUBECTL_VERSIONS (default "1.28 1.33") picks the kubectl.X binaries
that sit next to `kubectl` (missing versions are left out; with none, the
kubectl comparisons skip, saying so: they are not Debian packages).
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (require_binary, require_verb, skip_capability)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("LBD_BUILD", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
LBCTL = os.environ.get("LBCTL") or os.path.join(BUILD, "lbctl")
KUBESIM = os.path.join(ROOT, "tests", "sim", "kubesim.py")
PYTHON = "/usr/bin/python3"
SLOW = 3.0 if os.environ.get("SAN") else 1.0


def kubectl_binaries():
    base = shutil.which("kubectl")
    if not base:
        return {}
    d = os.path.dirname(os.path.realpath(base))
    out = {}
    for v in os.environ.get("KUBECTL_VERSIONS", "1.28 1.33").split():
        p = os.path.join(d, "kubectl." + v)
        if os.access(p, os.X_OK):
            out[v] = p
    return out


KUBECTLS = kubectl_binaries()


def need_kubectls():
    """kubectl.1.x are reference binaries outside Debian (make deps does not
    install them): without them the comparison has nothing to compare with,
    and lbctl is tested alone by the other classes."""
    if not KUBECTLS:
        raise unittest.SkipTest("no kubectl.1.x reference binaries next to kubectl on this "
                                "machine (KUBECTL_VERSIONS=%s): nothing to compare lbctl with"
                                % os.environ.get("KUBECTL_VERSIONS", "1.28 1.33"))


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout * SLOW, what, last))


def scenario(pdb=None, unmanaged=False):
    """worker-1 holds one of each kind of pod drain must treat differently."""
    nodes = [{"name": "master-1", "roles": ["control-plane", "etcd", "master"]},
             {"name": "worker-1"}, {"name": "worker-2"}, {"name": "worker-3"}]
    pods = [{"name": "kube-vip-worker-1", "namespace": "kube-system", "node": "worker-1",
             "mirror": True}]
    for i, n in enumerate(["master-1", "worker-1", "worker-2", "worker-3"]):
        pods.append({"name": "kube-proxy-%d" % i, "namespace": "kube-system", "node": n,
                     "owner": {"kind": "DaemonSet", "name": "kube-proxy"},
                     "labels": {"k8s-app": "kube-proxy"}})
    for i, n in enumerate(["worker-1", "worker-2", "worker-3"]):
        pods.append({"name": "web-7c9f-%d" % i, "node": n, "labels": {"app": "web"},
                     "owner": {"kind": "ReplicaSet", "name": "web-7c9f"},
                     "terminationGracePeriodSeconds": 5})
    pods.append({"name": "cache-0", "node": "worker-1", "labels": {"app": "cache"},
                 "owner": {"kind": "StatefulSet", "name": "cache"}})
    pods.append({"name": "scratch-5b6-x", "namespace": "batch", "node": "worker-1",
                 "labels": {"app": "scratch"}, "emptyDir": True,
                 "owner": {"kind": "ReplicaSet", "name": "scratch-5b6"}})
    if unmanaged:
        pods.append({"name": "debug", "node": "worker-1", "labels": {"run": "debug"}})
    sc = {"nodes": nodes, "pods": pods, "pdbs": [], "deleteDelay": 0.2}
    if pdb:
        sc["pdbs"].append(dict({"name": "web", "namespace": "default",
                                "selector": {"app": "web"}}, **pdb))
    return sc


def normalize(st, node="worker-1"):
    """What a real cluster's state means after a drain, free of random names/placement."""
    owners = {}
    for p in st["pods"]:
        key = p["owner"] or ("%s/%s" % (p["namespace"], p["name"]))
        owners[key] = owners.get(key, 0) + 1
    return {
        "unschedulable": {n: v["unschedulable"] for n, v in st["nodes"].items()},
        "taints": {n: v["taints"] for n, v in st["nodes"].items()},
        "on_node": sorted((p["namespace"], p["owner"] or p["name"], p["mirror"])
                          for p in st["pods"] if p["node"] == node),
        "owners": owners,
        "terminating": [p["name"] for p in st["pods"] if p["terminating"]],
    }


HEALTH_TOKEN = "lbd-health-readonly-token-0123456789"


class KubeSim:
    """kubesim with the k3s profile by default (no anonymous auth: the
    stricter of the two). health_token_file holds a read-only token that
    lbd's checks send (health.token_file); self.health is that setting."""

    def __init__(self, workdir, listeners=1, auth="token", extra=(), profile="k3s",
                 node_grace=2.0):
        self.dir = workdir
        self.profile = profile
        self.kubeconfig = os.path.join(workdir, "kubeconfig")
        self.health_token_file = os.path.join(workdir, "health.token")
        with open(self.health_token_file, "w") as f:
            f.write(HEALTH_TOKEN + "\n")
        os.chmod(self.health_token_file, 0o600)
        self.health = {"token_file": self.health_token_file}
        ready = os.path.join(workdir, "kubesim.ready")
        self.log = open(os.path.join(workdir, "kubesim.log"), "w")
        argv = [PYTHON, KUBESIM, "--control", "127.0.0.1:0", "--kubeconfig-out",
                self.kubeconfig, "--ready-file", ready, "--auth", auth,
                "--pki-dir", os.path.join(workdir, "pki"), "--delete-delay", "0.2",
                "--profile", profile, "--extra-token", HEALTH_TOKEN + "=readonly",
                "--node-monitor-grace", str(node_grace)]
        for _ in range(listeners):
            argv += ["--listen", "127.0.0.1:0"]
        argv += list(extra)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(ready) or self.proc.poll() is not None, 30,
                 "kubesim to start")
        if self.proc.poll() is not None:
            raise AssertionError("kubesim exited: %s" % open(self.log.name).read())
        with open(ready) as f:
            self.info = json.load(f)
        self.control = "http://%s" % self.info["control"]

    def call(self, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.control + path, data=data,
                                     method="POST" if data is not None else "GET")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def load(self, sc):
        return self.call("/sim/scenario", sc)

    def state(self):
        return self.call("/sim/state")

    def settled(self):
        """The state once every deletion has finished."""
        def done():
            st = self.state()
            return st if st["pending_deletions"] == 0 and not any(
                p["terminating"] for p in st["pods"]) else None
        return wait_for(done, 15, "pending pod deletions to finish")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class KubeTestCase(unittest.TestCase):
    listeners = 1
    auth = "token"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="lbd-kube-it-")
        self.sim = KubeSim(self.tmp, self.listeners, self.auth)
        self.env = dict(os.environ, HOME=self.tmp, KUBECONFIG=self.sim.kubeconfig)
        self.env.pop("http_proxy", None)
        self.env.pop("https_proxy", None)

    def tearDown(self):
        self.sim.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_tool(self, argv, timeout=60):
        r = subprocess.run(argv, capture_output=True, text=True, env=self.env,
                           timeout=timeout * SLOW)
        return r.returncode, r.stdout + r.stderr

    def kubectl(self, version, *args, timeout=60):
        return self.run_tool([KUBECTLS[version], "--kubeconfig", self.sim.kubeconfig] + list(args),
                             timeout)

    def lbctl(self, *args, timeout=60):
        return self.run_tool([LBCTL, "--kubeconfig", self.sim.kubeconfig] + list(args), timeout)

    def need_lbctl(self):
        harness.require_verb(LBCTL, "node")

    def tools(self):
        """(label, function running a drain-like command) for every tool present."""
        out = [("kubectl." + v, lambda *a, v=v, **kw: self.kubectl(v, *a, **kw))
               for v in sorted(KUBECTLS)]
        self.need_lbctl()
        out.append(("lbctl", lambda *a, **kw: self.lbctl("node", *a, **kw)))
        return out


class TestKubectlAgainstSim(KubeTestCase):
    def setUp(self):
        need_kubectls()
        super().setUp()

    def test_get(self):
        self.sim.load(scenario(pdb={"maxUnavailable": 1}))
        for v in KUBECTLS:
            with self.subTest(kubectl=v):
                rc, out = self.kubectl(v, "version")
                self.assertEqual(rc, 0, out)
                self.assertRegex(out, r"Server Version: (v1\.31\.4|version\.Info.*GitVersion:\"v1\.31\.4\")")
                rc, out = self.kubectl(v, "get", "nodes")
                self.assertEqual(rc, 0, out)
                self.assertRegex(out, r"master-1\s+Ready\s+control-plane,etcd,master\s+\S+\s+v1\.31\.4")
                rc, out = self.kubectl(v, "get", "nodes", "-o", "wide")
                self.assertEqual(rc, 0, out)
                self.assertIn("INTERNAL-IP", out)
                rc, out = self.kubectl(v, "get", "nodes", "-o", "json")
                self.assertEqual(rc, 0, out)
                nodes = json.loads(out)["items"]
                self.assertEqual(sorted(n["metadata"]["name"] for n in nodes),
                                 ["master-1", "worker-1", "worker-2", "worker-3"])
                rc, out = self.kubectl(v, "get", "nodes", "-o", "yaml")
                self.assertEqual(rc, 0, out)
                self.assertIn("kubeletVersion: v1.31.4", out)
                rc, out = self.kubectl(v, "get", "pods", "-A")
                self.assertEqual(rc, 0, out)
                self.assertRegex(out, r"kube-system\s+kube-proxy-0\s+1/1\s+Running")
                self.assertRegex(out, r"batch\s+scratch-5b6-x")
                # paging: kubectl follows continue tokens
                rc, out2 = self.kubectl(v, "get", "pods", "-A", "--chunk-size=2")
                self.assertEqual(rc, 0, out2)
                self.assertEqual(len(out2.splitlines()), len(out.splitlines()))
                rc, out = self.kubectl(v, "get", "pdb")
                self.assertEqual(rc, 0, out)
                self.assertRegex(out, r"web\s+N/A\s+1\s+1")
                rc, out = self.kubectl(v, "get", "leases", "-n", "kube-system")
                self.assertEqual(rc, 0, out)

    def test_cordon_uncordon(self):
        self.sim.load(scenario())
        for v in KUBECTLS:
            with self.subTest(kubectl=v):
                rc, out = self.kubectl(v, "cordon", "worker-2")
                self.assertEqual(rc, 0, out)
                self.assertIn("node/worker-2 cordoned", out)
                st = self.sim.state()["nodes"]["worker-2"]
                self.assertTrue(st["unschedulable"])
                self.assertIn("node.kubernetes.io/unschedulable", st["taints"])
                rc, out = self.kubectl(v, "get", "nodes")
                self.assertRegex(out, r"worker-2\s+Ready,SchedulingDisabled")
                rc, out = self.kubectl(v, "uncordon", "worker-2")
                self.assertEqual(rc, 0, out)
                self.assertIn("node/worker-2 uncordoned", out)
                st = self.sim.state()["nodes"]["worker-2"]
                self.assertFalse(st["unschedulable"])
                self.assertEqual(st["taints"], [])


class TestDrainSameState(KubeTestCase):
    """The same drain through each kubectl and through lbctl ends in the same state."""

    def drain_all_tools(self, sc, args, expect_rc, expect_text, timeout=60):
        results = {}
        for label, tool in self.tools():
            self.sim.load(sc)
            before = self.sim.state()
            rc, out = tool("drain", "worker-1", *args, timeout=timeout)
            st = self.sim.settled()
            ok_rcs = expect_rc if isinstance(expect_rc, tuple) else (expect_rc,)
            self.assertIn(rc, ok_rcs, "%s: %s" % (label, out))
            for t in expect_text:
                self.assertIn(t, out, "%s output lacks %r:\n%s" % (label, t, out))
            results[label] = (normalize(st), before, st, out)
        if len(results) < 2:
            need_kubectls()  # lbctl alone: nothing to compare it with
        labels = sorted(results)
        for other in labels[1:]:
            self.assertEqual(results[labels[0]][0], results[other][0],
                             "%s and %s disagree" % (labels[0], other))
        return results

    def test_drain_ignore_daemonsets_delete_emptydir(self):
        res = self.drain_all_tools(scenario(pdb={"maxUnavailable": 1}),
                                   ["--ignore-daemonsets", "--delete-emptydir-data"], 0,
                                   ["drained"])
        for label, (norm, before, st, out) in res.items():
            # DaemonSet pod kept, mirror pod skipped, everything else gone
            self.assertEqual(norm["on_node"], [("kube-system", "DaemonSet/kube-proxy", False),
                                               ("kube-system", "Node/worker-1", True)], label)
            self.assertTrue(norm["unschedulable"]["worker-1"], label)
            self.assertEqual(norm["owners"]["ReplicaSet/web-7c9f"], 3, label)
            self.assertEqual(norm["owners"]["StatefulSet/cache"], 1, label)
            old = {p["name"]: p["uid"] for p in before["pods"]}
            new = {p["name"]: p for p in st["pods"]}
            self.assertNotEqual(new["cache-0"]["uid"], old["cache-0"], label)
            self.assertNotEqual(new["cache-0"]["node"], "worker-1", label)
            self.assertEqual(new["kube-proxy-1"]["uid"], old["kube-proxy-1"], label)

    def test_daemonsets_refused_without_flag(self):
        res = self.drain_all_tools(scenario(), ["--delete-emptydir-data"], 1,
                                   ["cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"])
        for label, (norm, before, st, out) in res.items():
            self.assertEqual([p["uid"] for p in st["pods"]], [p["uid"] for p in before["pods"]],
                             "%s evicted something" % label)
            self.assertTrue(norm["unschedulable"]["worker-1"], label)  # cordoned anyway

    def test_emptydir_refused_without_flag(self):
        res = self.drain_all_tools(scenario(), ["--ignore-daemonsets"], 1,
                                   ["cannot delete Pods with local storage (use --delete-emptydir-data to override): batch/scratch-5b6-x"])
        for label, (norm, before, st, out) in res.items():
            self.assertEqual([p["uid"] for p in st["pods"]], [p["uid"] for p in before["pods"]],
                             "%s evicted something" % label)

    def test_unmanaged_refused_without_force(self):
        res = self.drain_all_tools(scenario(unmanaged=True),
                                   ["--ignore-daemonsets", "--delete-emptydir-data"], 1,
                                   ["declare no controller (use --force to override): default/debug"])
        for label, (norm, before, st, out) in res.items():
            self.assertIn(("default", "debug", False), norm["on_node"], label)

    def test_unmanaged_deleted_with_force(self):
        res = self.drain_all_tools(scenario(unmanaged=True),
                                   ["--ignore-daemonsets", "--delete-emptydir-data", "--force",
                                    "--grace-period", "1"], 0, ["drained"])
        for label, (norm, before, st, out) in res.items():
            self.assertNotIn("default/debug", norm["owners"], label)  # not re-created

    def test_disable_eviction_deletes(self):
        # a PDB allowing nothing does not stop plain deletes
        res = self.drain_all_tools(scenario(pdb={"minAvailable": 3}),
                                   ["--ignore-daemonsets", "--delete-emptydir-data",
                                    "--disable-eviction"], 0, ["drained"])
        for label, (norm, before, st, out) in res.items():
            self.assertEqual(len(norm["on_node"]), 2, label)

    def test_pdb_blocks_until_timeout(self):
        results = {}
        for label, tool in self.tools():
            self.sim.load(scenario(pdb={"minAvailable": 3}))
            t0 = time.monotonic()
            if label == "lbctl":
                rc, out = tool("drain", "worker-1", "--ignore-daemonsets",
                               "--delete-emptydir-data", "--timeout", "10s")
                self.assertEqual(rc, 4, out)  # timed out
                self.assertIn("blocked by a PodDisruptionBudget", out)
            else:
                rc, out = tool("drain", "worker-1", "--ignore-daemonsets",
                               "--delete-emptydir-data", "--timeout=10s")
                self.assertEqual(rc, 1, out)
            elapsed = time.monotonic() - t0
            self.assertGreaterEqual(elapsed, 9.5, label)
            self.assertIn("disruption budget", out, label)
            # retried: more than one refusal reported before the timeout
            self.assertGreaterEqual(out.count("Cannot evict pod as it would violate the pod's disruption budget."), 2, out)
            st = self.sim.settled()
            norm = normalize(st)
            self.assertIn(("default", "ReplicaSet/web-7c9f", False), norm["on_node"], label)
            results[label] = norm
        if len(results) >= 2:
            vals = list(results.values())
            for v in vals[1:]:
                self.assertEqual(vals[0], v)

    def test_lbctl_json_on_timeout(self):
        self.need_lbctl()
        self.sim.load(scenario(pdb={"minAvailable": 3}))
        r = subprocess.run([LBCTL, "--kubeconfig", self.sim.kubeconfig, "-o", "json", "node",
                            "drain", "worker-1", "--ignore-daemonsets", "--delete-emptydir-data",
                            "--timeout", "2s", "--retry-interval", "500ms"],
                           capture_output=True, text=True, env=self.env, timeout=30)
        self.assertEqual(r.returncode, 4, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["status"], "timeout")
        self.assertEqual([(x["namespace"], x["pdbBlocked"]) for x in doc["left"]],
                         [("default", True)])


class TestLbctlNode(KubeTestCase):
    def test_list_cordon_uncordon(self):
        self.need_lbctl()
        self.sim.load(scenario())
        rc, out = self.lbctl("node", "list")
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, r"master-1\s+Ready\s+control-plane,etcd,master\s+v1\.31\.4")
        rc, out = self.lbctl("node", "cordon", "worker-3")
        self.assertEqual((rc, out.strip()), (0, "node/worker-3 cordoned"))
        rc, out = self.lbctl("node", "cordon", "worker-3")
        self.assertEqual((rc, out.strip()), (0, "node/worker-3 already cordoned"))
        self.assertTrue(self.sim.state()["nodes"]["worker-3"]["unschedulable"])
        self.sim.call("/sim/nodes/worker-2", {"ready": False, "kubeletVersion": "v1.32.0",
                                              "reboot": True})
        rc, out = self.lbctl("-o", "json", "node", "list")
        self.assertEqual(rc, 0, out)
        nodes = {n["name"]: n for n in json.loads(out)}
        self.assertFalse(nodes["worker-2"]["ready"])
        self.assertEqual(nodes["worker-2"]["kubeletVersion"], "v1.32.0")
        self.assertTrue(nodes["worker-3"]["unschedulable"])
        rc, out = self.lbctl("node", "uncordon", "worker-3")
        self.assertEqual((rc, out.strip()), (0, "node/worker-3 uncordoned"))
        self.assertFalse(self.sim.state()["nodes"]["worker-3"]["unschedulable"])

    def test_errors_and_usage(self):
        self.need_lbctl()
        self.sim.load(scenario())
        rc, out = self.lbctl("node", "cordon", "nope")
        self.assertEqual(rc, 1, out)
        self.assertIn('nodes "nope" not found', out)
        rc, out = self.lbctl("node", "drain")
        self.assertEqual(rc, 2, out)
        rc, out = self.lbctl("node", "drain", "worker-1", "--timeout", "soon")
        self.assertEqual(rc, 2, out)
        rc, out = self.lbctl("node", "drain", "--help")
        self.assertEqual(rc, 0, out)
        self.assertIn("--delete-emptydir-data", out)
        rc, out = self.run_tool([LBCTL, "--kubeconfig", self.sim.kubeconfig, "--context", "nope",
                                 "node", "list"])
        self.assertEqual(rc, 1, out)
        self.assertIn("context 'nope' not found", out)


class TestClientCertAuth(KubeTestCase):
    auth = "cert"

    def test_cert_kubeconfig(self):
        self.sim.load(scenario())
        for v in KUBECTLS:
            rc, out = self.kubectl(v, "get", "nodes")
            self.assertEqual(rc, 0, out)
            self.assertIn("worker-3", out)
        self.need_lbctl()
        rc, out = self.lbctl("node", "list")
        self.assertEqual(rc, 0, out)
        self.assertIn("worker-3", out)
        # without credentials the apiserver says 401
        ctx = ssl.create_default_context(cafile=os.path.join(self.tmp, "pki", "ca.crt"))
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen("https://%s/api/v1/nodes" % self.sim.info["listen"][0],
                                   context=ctx, timeout=10)
        self.assertEqual(cm.exception.code, 401)


class TestSimLeases(KubeTestCase):
    """The simulator's Lease compare-and-swap, which the gate's Kubernetes store relies on."""

    def req(self, method, path, body=None):
        ctx = ssl.create_default_context(cafile=os.path.join(self.tmp, "pki", "ca.crt"))
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request("https://%s%s" % (self.sim.info["listen"][0], path), data=data,
                                   method=method,
                                   headers={"Authorization": "Bearer " + self.sim.info["token"],
                                            "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(r, context=ctx, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def test_lease_cas(self):
        base = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
        code, obj = self.req("POST", base, {"metadata": {"name": "lbd-gate"},
                                            "spec": {"holderIdentity": "a"}})
        self.assertEqual(code, 201, obj)
        rv = obj["metadata"]["resourceVersion"]
        code, again = self.req("POST", base, {"metadata": {"name": "lbd-gate"}, "spec": {}})
        self.assertEqual((code, again["reason"]), (409, "AlreadyExists"))
        obj["spec"]["holderIdentity"] = "b"
        code, upd = self.req("PUT", base + "/lbd-gate", obj)
        self.assertEqual(code, 200, upd)
        self.assertNotEqual(upd["metadata"]["resourceVersion"], rv)
        obj["spec"]["holderIdentity"] = "c"  # still carries the old resourceVersion
        code, st = self.req("PUT", base + "/lbd-gate", obj)
        self.assertEqual((code, st["reason"], st["kind"]), (409, "Conflict", "Status"))
        self.assertIn("the object has been modified", st["message"])
        code, got = self.req("GET", base + "/lbd-gate")
        self.assertEqual(got["spec"]["holderIdentity"], "b")
        code, st = self.req("GET", base + "/nope")
        self.assertEqual((code, st["message"]), (404, 'leases.coordination.k8s.io "nope" not found'))


if __name__ == "__main__":
    unittest.main()
