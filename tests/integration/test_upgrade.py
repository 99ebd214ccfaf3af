"""test_upgrade.py - lbctl upgrade / lbctl migrate end to end, with real parts.

kubesim holds the cluster (3 masters + 3 workers, one HTTPS listener per
master), a real 3-member etcd runs on loopback (one member per master), and
a real lbd is the VIP over the masters' listeners with its gate. The node
"upgrade command" in the plans is a curl to a fixture server in this test: it
reboots the node in the simulator (NotReady, new bootID), closes its master
listener and stops its etcd member for about a second, then brings all back
with the new kubelet version. Meanwhile a client loop calls the apiserver
through the VIP (a new TLS connection each time) and a watcher samples etcd
quorum; the tests assert zero failed requests and quorum never lost.

Every process is started here and killed by PID; every wait is a bounded
poll; ports are ephemeral; only 127.0.0.1 is used.
"""

import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_kube as tk  # noqa: E402

ETCD = shutil.which("etcd")
ETCDCTL = shutil.which("etcdctl")
LBCTL = tk.LBCTL
OLD, NEW = "v1.30.6", "v1.31.4"  # kubesim's apiserver says v1.31.4
MASTERS = ["master-1", "master-2", "master-3"]
WORKERS = ["worker-1", "worker-2", "worker-3"]
EXAMPLES = os.path.join(harness.ROOT, "config", "examples")


def http_json(host, port, method, path, body=None, timeout=2.0):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


class EtcdCluster:
    """Members named after masters, on loopback; members can be added."""

    def __init__(self, tc, names):
        self.tc, self.procs, self.client, self.peer = tc, {}, {}, {}
        for n in names:
            self.client[n], self.peer[n] = harness.free_port(), harness.free_port()
        cluster = ",".join("%s=http://127.0.0.1:%d" % (n, self.peer[n]) for n in names)
        self.argv = {n: self._argv(n, cluster, "new") for n in names}
        for n in names:
            self.start(n)
        for n in names:
            harness.wait_for(lambda n=n: self.healthy(n), harness.T(30), "etcd %s healthy" % n)

    def _argv(self, n, cluster, state):
        return [ETCD, "--name", n, "--data-dir", self.tc.path("etcd-" + n),
                "--listen-client-urls", self.url(n), "--advertise-client-urls", self.url(n),
                "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer[n],
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer[n],
                "--initial-cluster", cluster, "--initial-cluster-state", state,
                "--initial-cluster-token", "lbd-upgrade-test", "--logger", "zap",
                "--log-level", "warn"]

    def url(self, n):
        return "http://127.0.0.1:%d" % self.client[n]

    def start(self, n):
        self.procs[n] = self.tc.spawn("etcd-" + n, self.argv[n])

    def stop(self, n, sig=signal.SIGTERM):
        """SIGTERM, as systemd stops k3s: etcd hands its leadership over first."""
        if n in self.procs:
            self.procs[n].stop(sig)

    def healthy(self, n):
        try:
            st, h = http_json("127.0.0.1", self.client[n], "GET", "/health", timeout=0.5)
            return st == 200 and h.get("health") == "true"
        except (OSError, ValueError):
            return False

    def members(self):
        for n in list(self.client):
            try:
                st, m = http_json("127.0.0.1", self.client[n], "POST", "/v3/cluster/member/list",
                                  {}, timeout=0.5)
                if st == 200:
                    return m.get("members", [])
            except (OSError, ValueError):
                continue
        return None

    def add(self, n):
        """etcdctl member add, then start the member with state existing."""
        self.client[n], self.peer[n] = harness.free_port(), harness.free_port()
        eps = ",".join(self.url(m) for m in self.procs)

        def add():
            # etcd refuses reconfiguration until every member has been
            # connected for 5s ("unhealthy cluster"): ask again, bounded.
            r = subprocess.run([ETCDCTL, "--endpoints", eps, "member", "add", n,
                                "--peer-urls", "http://127.0.0.1:%d" % self.peer[n]],
                               capture_output=True, text=True, timeout=20,
                               env=dict(os.environ, ETCDCTL_API="3"))
            if r.returncode != 0 and "unhealthy cluster" not in r.stderr:
                raise AssertionError("etcdctl member add: %s" % (r.stdout + r.stderr))
            return r if r.returncode == 0 else None
        r = harness.wait_for(add, harness.T(20), "etcdctl member add %s" % n, interval=0.5)
        cluster = [l.split("=", 1)[1].strip('"') for l in r.stdout.splitlines()
                   if l.startswith("ETCD_INITIAL_CLUSTER=")][0]
        self.argv[n] = self._argv(n, cluster, "existing")
        self.start(n)
        harness.wait_for(lambda: self.healthy(n), harness.T(30), "etcd %s healthy" % n)


class QuorumWatcher(threading.Thread):
    """Samples etcd every 100ms: voting members and how many answer /health.
    Quorum counts as lost when two samples in a row say so: one /health
    that misses its 0.5 s timeout on a loaded machine is not an outage, while
    a real one (a second member down, an election: a second or more) spans
    many samples."""

    def __init__(self, etcd):
        super().__init__(daemon=True)
        self.etcd, self.samples, self.lost, self.stop_ev = etcd, 0, [], threading.Event()
        self.min_margin = None
        self.suspect = None  # the first bad sample, until the next one says

    def run(self):
        while not self.stop_ev.is_set():
            members = self.etcd.members()
            bad = None
            if members is None:
                bad = (time.time(), "no member answered the member list")
            else:
                voters = [m for m in members if not m.get("isLearner")]
                healthy = 0
                for m in voters:
                    url = (m.get("clientURLs") or [""])[0]
                    port = int(url.rsplit(":", 1)[1]) if url else 0
                    try:
                        st, h = http_json("127.0.0.1", port, "GET", "/health", timeout=0.5)
                        healthy += st == 200 and h.get("health") == "true"
                    except (OSError, ValueError):
                        pass
                need = len(voters) // 2 + 1
                margin = healthy - need
                self.min_margin = margin if self.min_margin is None else min(self.min_margin, margin)
                if healthy < need:
                    bad = (time.time(), "%d of %d healthy" % (healthy, len(voters)))
            if bad and self.suspect:
                self.lost.extend([self.suspect, bad] if self.suspect not in self.lost else [bad])
            self.suspect = bad
            self.samples += 1
            self.stop_ev.wait(0.1)

    def finish(self):
        self.stop_ev.set()
        self.join(5)


class VipClient(threading.Thread):
    """GET /api/v1/nodes through the VIP, a new TLS connection each time."""

    def __init__(self, port, token):
        super().__init__(daemon=True)
        self.port, self.token = port, token
        self.ok, self.failed, self.stop_ev = 0, [], threading.Event()
        self.ctx = ssl.create_default_context()
        self.ctx.check_hostname = False
        self.ctx.verify_mode = ssl.CERT_NONE

    def run(self):
        while not self.stop_ev.is_set():
            c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=5, context=self.ctx)
            try:
                c.request("GET", "/api/v1/nodes?limit=1",
                          headers={"Authorization": "Bearer " + self.token})
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    self.ok += 1
                else:
                    self.failed.append((time.time(), "HTTP %d" % r.status))
            except (OSError, http.client.HTTPException) as e:
                self.failed.append((time.time(), repr(e)))
            finally:
                c.close()
            self.stop_ev.wait(0.02)

    def finish(self):
        self.stop_ev.set()
        self.join(10)


class Fixture:
    """What the plan's commands call: POST /upgrade?node=N&version=V (reboot and
    come back), /join?node=N (a new master joins), /remove?node=N (old one off).
    never = {node}: that node goes down and stays down."""

    def __init__(self, tc):
        self.tc, self.never, self.calls, self.down_s = tc, set(), [], 1.0
        self.errors = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                u = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                outer.calls.append((u.path, q.get("node")))
                try:
                    getattr(outer, u.path.strip("/"))(q)
                    code, body = 200, b"ok\n"
                except Exception as e:  # noqa: BLE001 - the command prints it
                    outer.errors.append("%s: %r" % (u.path, e))
                    code, body = 500, ("%r\n" % (e,)).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()

    def upgrade(self, q):
        """A k3s upgrade restarts the k3s service, as a real one does: the
        kubelet stops posting status, the bootID stays, and the node stays
        Ready until kubesim's node-monitor grace period (2 s here) passes
        (a node that never comes back turns NotReady then)."""
        node, version, tc = q["node"], q["version"], self.tc
        tc.sim.call("/sim/nodes/" + node, {"restart": {"down": None}})
        if node in tc.etcd.procs:
            tc.sim.call("/sim/listeners/" + node, {"state": "down"})
            tc.etcd.stop(node)
        if node in self.never:
            return

        def back():
            time.sleep(self.down_s)
            if node in tc.etcd.procs:
                tc.etcd.start(node)
                harness.wait_for(lambda: tc.etcd.healthy(node), harness.T(30),
                                 "etcd %s back" % node)
                tc.sim.call("/sim/listeners/" + node, {"state": "ok"})
            tc.sim.call("/sim/nodes/" + node, {"kubeletVersion": version, "ready": True})
        threading.Thread(target=back, daemon=True).start()

    def join(self, q):
        node, tc = q["node"], self.tc
        tc.etcd.add(node)
        sc = tc.scenario(extra_masters=[node])
        tc.sim.load(sc)

    def remove(self, q):
        node, tc = q["node"], self.tc
        tc.etcd.stop(node)
        tc.sim.call("/sim/listeners/" + node, {"state": "down"})
        tc.sim.call("/sim/nodes/" + node, {"ready": False})  # its kubelet stopped


class UpgradeTest(harness.TestCase):
    listeners = 3
    versions = {}
    profile = "k3s"  # kubesim's stricter profile: /readyz needs credentials
    health_credentials = True  # lbd's checks send health.token_file

    def setUp(self):
        super().setUp()
        harness.require_binary(ETCD or "etcd", "make deps installs etcd-server")
        harness.require_binary(ETCDCTL or "etcdctl", "make deps installs etcd-client")
        harness.require_verb(LBCTL, "upgrade")
        harness.require_binary(harness.LBD, "run make")
        self.sim = tk.KubeSim(self.tmp, listeners=self.listeners, profile=self.profile)
        self.addCleanup(self.sim.stop)
        self.sim.load(self.scenario())
        self.etcd = EtcdCluster(self, MASTERS)
        self.fixture = Fixture(self)
        self.addCleanup(self.fixture.stop)
        self.vip = harness.free_port()
        with open(self.sim.kubeconfig) as f:
            kc = f.read()
        self.kubeconfig = self.path("kubeconfig-vip")
        with open(self.kubeconfig, "w") as f:
            f.write(kc.replace("https://" + self.sim.info["listen"][0],
                               "https://127.0.0.1:%d" % self.vip))
        self.admin = self.path("admin.sock")
        if not self.health_credentials:
            self.lbd = self.start_lbd(self.lbd_cfg())
            return
        self.lbd = self.start_lbd(self.lbd_cfg(), wait_up=["masters/" + m for m in MASTERS])
        self.wait_gate_ready()

    def scenario(self, extra_masters=()):
        nodes = [{"name": m, "roles": ["control-plane", "etcd", "master"],
                  "kubeletVersion": self.versions.get(m, OLD)} for m in MASTERS]
        nodes += [{"name": m, "roles": ["control-plane", "etcd", "master"],
                   "kubeletVersion": OLD} for m in extra_masters]
        nodes += [{"name": w, "kubeletVersion": self.versions.get(w, OLD)} for w in WORKERS]
        pods = [{"name": "web-%d" % i, "node": w, "labels": {"app": "web"},
                 "owner": {"kind": "ReplicaSet", "name": "web"},
                 "terminationGracePeriodSeconds": 1} for i, w in enumerate(WORKERS)]
        pods += [{"name": "proxy-%s" % n["name"], "namespace": "kube-system", "node": n["name"],
                  "owner": {"kind": "DaemonSet", "name": "proxy"}} for n in nodes]
        return {"nodes": nodes, "pods": pods, "pdbs": []}

    def lbd_cfg(self):
        backends = [(m, a) for m, a in zip(MASTERS, self.sim.info["listen"])]
        cfg = self.lbd_config(backends, name="masters", listen=["127.0.0.1:%d" % self.vip],
                              health=dict(self.sim.health if self.health_credentials
                                          else {"token_file": None},
                                          rise=1, fall=2, interval="400ms", timeout="300ms"),
                              pool={"drain_timeout": "2s"})
        tokens = self.path("gate-tokens")
        with open(tokens, "w") as f:
            f.write("* admin-token-0123456789\n")
        os.chmod(tokens, 0o600)
        cfg["gate"] = {"listen": "127.0.0.1:%d" % harness.free_port(), "tokens_file": tokens,
                       "kubeconfig": self.kubeconfig,
                       "quorum": {"pool": "masters",
                                  "etcd": {"endpoints": [self.etcd.url(m) for m in MASTERS]}},
                       "soak": "1s", "lease_ttl": "30s",
                       "concurrency": {"masters": 1, "workers": 1}}
        return cfg

    def gate_status(self):
        class U(http.client.HTTPConnection):
            def connect(s):
                import socket
                s.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.sock.settimeout(10)
                s.sock.connect(self.admin)
        c = U("lbd")
        c.request("GET", "/v1/gate/status")
        r = c.getresponse()
        body = json.loads(r.read())
        c.close()
        return body

    def wait_gate_ready(self):
        def ok():
            s = self.gate_status()
            ins = s["inputs"]
            return (all(v["known"] for v in ins.values())
                    and all(b["up"] for b in ins["pool"]["backends"])
                    and all(m["healthy"] for m in ins["etcd"]["members"]))
        harness.wait_for(ok, harness.T(30), "the gate's inputs known and healthy")

    def write_plan(self, name="plan.yaml", masters=MASTERS, workers=WORKERS, **over):
        nodes = "".join("  - {name: %s, role: master, backend: %s}\n" % (m, m) for m in masters)
        nodes += "".join("  - {name: %s, role: worker}\n" % w for w in workers)
        text = ("kind: upgrade\nversion: %s\nkubeconfig: %s\nlbd: {socket: %s}\npool: masters\n"
                "nodes:\n%s"
                "upgrade_command: curl -sf -X POST "
                "'http://127.0.0.1:%d/upgrade?node={node}&version={version}'\n"
                "hooks: {preflight: 'echo snapshot pre-upgrade-{date}'}\n"
                "drain: {timeout: 20s, ignore_daemonsets: true, delete_emptydir_data: true}\n"
                "timeouts: {node_ready: %s, backend_drain: 10s, command: 20s, gate: 30s}\n"
                "workers: {concurrency: 1}\nsoak: 1s\nlease_ttl: 30s\n"
                % (NEW, self.kubeconfig, self.admin, nodes, self.fixture.port,
                   over.get("node_ready", "30s")))
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def lbctl(self, *args, timeout=150):
        r = subprocess.run([LBCTL] + list(args), capture_output=True, text=True,
                           errors="replace", timeout=harness.T(timeout), cwd=self.tmp)
        return r.returncode, r.stdout, r.stderr

    def start_watchers(self):
        self.client = VipClient(self.vip, self.sim.info["token"])
        self.quorum = QuorumWatcher(self.etcd)
        self.client.start()
        self.quorum.start()
        self.addCleanup(self.client.finish)
        self.addCleanup(self.quorum.finish)

    def check_watchers(self):
        self.client.finish()
        self.quorum.finish()
        harness.note("VIP requests: %d ok, %d failed; etcd samples: %d, min quorum margin %s",
                     self.client.ok, len(self.client.failed), self.quorum.samples,
                     self.quorum.min_margin)
        self.assertGreater(self.client.ok, 50)
        self.assertEqual(self.client.failed, [], "requests through the VIP failed")
        self.assertGreater(self.quorum.samples, 20)
        self.assertEqual(self.quorum.lost, [], "etcd quorum lost")

    def journal(self, plan):
        with open(plan + ".journal") as f:
            return json.load(f)

    def history_done(self, plan):
        """(node, step) of every 'done' line in the history log."""
        out = []
        with open(plan + ".log") as f:
            for line in f:
                m = re.match(r"^\S+ (\S+) (\S+): done$", line.rstrip("\n"))
                if m:
                    out.append((m.group(1), m.group(2)))
        return out

    def assert_all_upgraded(self):
        st = self.sim.state()["nodes"]
        for n in MASTERS + WORKERS:
            self.assertEqual(st[n]["kubeletVersion"], NEW, n)
            self.assertTrue(st[n]["ready"], n)
            self.assertFalse(st[n]["unschedulable"], "%s left cordoned" % n)
        self.assertEqual(self.gate_status()["leases"], [], "a lease was left")


class TestUpgrade(UpgradeTest):
    def test_rolling_upgrade(self):
        plan = self.write_plan()
        rc, out, err = self.lbctl("upgrade", plan, "--dry-run")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("master-1 (master, now %s)\n    gate now: would be GRANTED" % OLD, out)
        self.assertIn("worker-1 (worker, now %s)\n    gate now: would be GRANTED" % OLD, out)
        self.assertRegex(out, r"hook    would run: echo snapshot pre-upgrade-\d{8}-\d{6}")
        self.assertFalse(os.path.exists(plan + ".journal"), "a dry run wrote a journal")
        self.start_watchers()
        rc, out, err = self.lbctl("upgrade", plan)
        self.assertEqual(rc, 0, out + err)
        self.check_watchers()
        self.assert_all_upgraded()
        done = self.history_done(plan)
        self.assertEqual(len(done), len(set(done)), "a step done twice")
        j = self.journal(plan)
        self.assertEqual(j["status"], "done")
        self.assertTrue(all(s["state"] == "done" and s["runs"] == 1 for s in j["steps"]), j)
        # Masters strictly one after another, before any worker.
        order = [c[1] for c in self.fixture.calls if c[0] == "/upgrade"]
        self.assertEqual(order, MASTERS + WORKERS)
        rc, st, _ = self.lbctl("upgrade", "status", plan)
        self.assertEqual(rc, 0)
        self.assertIn("upgrade %s: done" % plan, st)
        # Run again: every node is at the target and skipped.
        rc, out, err = self.lbctl("upgrade", plan)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(out.count("skipped: already at %s" % NEW), 6, out)

    def test_kill9_mid_master_then_resume(self):
        plan = self.write_plan()
        self.start_watchers()
        p = self.spawn("lbctl-upgrade", [LBCTL, "upgrade", plan], cwd=self.tmp)

        def in_master2_wait():
            try:
                j = self.journal(plan)
            except (OSError, ValueError):
                return False
            return any(s["node"] == "master-2" and s["step"] == "wait" and s["state"] == "running"
                       for s in j["steps"])
        harness.wait_for(in_master2_wait, harness.T(90), "master-2's wait step to run")
        p.stop(signal.SIGKILL)
        j = self.journal(plan)
        self.assertEqual(j["status"], "running")
        # A fresh run refuses: the journal asks for --resume.
        rc, out, err = self.lbctl("upgrade", plan)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("--resume", err)
        rc, out, err = self.lbctl("upgrade", plan, "--resume")
        self.assertEqual(rc, 0, out + err)
        self.check_watchers()
        self.assert_all_upgraded()
        done = self.history_done(plan)
        self.assertEqual(len(done), len(set(done)), "a step done twice: %s" % done)
        j = self.journal(plan)
        self.assertEqual(j["status"], "done")
        runs = {(s["node"], s["step"]): s["runs"] for s in j["steps"]}
        self.assertEqual(runs.pop(("master-2", "wait")), 2)
        self.assertTrue(all(v == 1 for v in runs.values()), runs)
        # The command ran once per node.
        order = [c[1] for c in self.fixture.calls if c[0] == "/upgrade"]
        self.assertEqual(order, MASTERS + WORKERS)


class TestUpgradeKubeadm(UpgradeTest):
    """The same rolling upgrade against the kubeadm profile (anonymous
    /readyz allowed, control-plane nodes tainted NoSchedule)."""
    profile = "kubeadm"
    versions = {"master-2": NEW, "master-3": NEW}  # only master-1 is behind

    def test_rolling_upgrade_kubeadm(self):
        # One master and one worker: the k3s test above rolls all six.
        plan = self.write_plan(masters=MASTERS[:1], workers=WORKERS[:1])
        rc, out, err = self.lbctl("upgrade", plan)
        self.assertEqual(rc, 0, out + err)
        st = self.sim.state()["nodes"]
        for n in (MASTERS[0], WORKERS[0]):
            self.assertEqual((st[n]["kubeletVersion"], st[n]["ready"], st[n]["unschedulable"]),
                             (NEW, True, False), n)
        self.assertEqual(self.gate_status()["leases"], [], "a lease was left")
        # No web pod was scheduled onto a tainted master while workers drained.
        st = self.sim.state()
        for p in st["pods"]:
            if p["owner"] == "ReplicaSet/web":
                self.assertNotIn(p["node"], MASTERS, p)


class TestUpgradeWithoutCredentials(UpgradeTest):
    """k3s without anonymous auth and lbd's checks without credentials: every
    /readyz answers 401. That must be loud (the log, lbctl pools, the
    upgrade's refusal), not a pool quietly routing in fail-safe."""
    health_credentials = False

    def test_upgrade_refused_loudly(self):
        log = self.lbd.log
        log.wait(r"check master-\d+: readyz 401: the apiserver wants credentials: "
                 r"set health.tls.cert/key or health.token_file", harness.T(20),
                 proc=self.lbd)
        rc, out, err = self.lbctl("--socket", self.admin, "pools")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("the apiserver wants credentials", out)
        plan = self.write_plan(node_ready="10s")
        rc, out, err = self.lbctl("upgrade", plan, timeout=120)
        self.assertNotEqual(rc, 0, out + err)
        self.assertIn("wants credentials", out + err)
        self.assertNotIn("the ones set were refused", out + err)
        # Logged once per backend, however many checks failed since.
        warned = [ln for ln in log.lines() if "apiserver wants credentials" in ln
                  and "check master-" in ln]
        self.assertEqual(len(warned), len(MASTERS), "\n".join(warned))
        st = self.sim.state()["nodes"]
        self.assertTrue(all(st[n]["kubeletVersion"] == OLD for n in MASTERS + WORKERS), st)


class TestNeverBack(UpgradeTest):
    versions = {"master-1": NEW}

    def test_node_never_comes_back(self):
        self.fixture.never.add("master-2")
        plan = self.write_plan(node_ready="4s")
        self.start_watchers()
        rc, out, err = self.lbctl("upgrade", plan)
        self.assertEqual(rc, 4, out + err)
        self.assertIn("master-1: skipped: already at %s" % NEW, out)
        self.assertIn("master-2 never came back within 4s: still waiting for Ready", err)
        self.assertIn("kubelet %s (now %s)" % (NEW, OLD), err)
        self.assertIn("/readyz up in lbd for backend master-2", err)
        self.client.finish()
        self.assertEqual(self.client.failed, [], "the VIP failed while master-2 was gone")
        self.assertGreater(self.client.ok, 20)
        st = self.sim.state()["nodes"]
        self.assertTrue(st["master-2"]["unschedulable"], "master-2 must stay cordoned")
        self.assertIn("master-2", [l["node"] for l in self.gate_status()["leases"]])
        self.assertFalse(st["master-3"]["unschedulable"])
        self.assertEqual([c[1] for c in self.fixture.calls], ["master-2"])
        rc, s, _ = self.lbctl("upgrade", "status", plan)
        self.assertIn("failed", s)
        self.assertRegex(s, r"wait\s+failed")


class TestMigration(UpgradeTest):
    listeners = 4

    def test_replace_master(self):
        new_addr = self.sim.info["listen"][3]
        plan = self.path("migrate.yaml")
        with open(plan, "w") as f:
            f.write("kind: migration\nkubeconfig: %s\nlbd: {socket: %s}\npool: masters\n"
                    "nodes:\n"
                    "  - {name: master-3, role: master}\n"
                    "  - {name: master-4, role: master, address: '%s'}\n"
                    "replace: [{old: master-3, new: master-4}]\n"
                    "join_command: curl -sf -X POST 'http://127.0.0.1:%d/join?node={node}'\n"
                    "remove_command: curl -sf -X POST 'http://127.0.0.1:%d/remove?node={node}'\n"
                    "etcd: {endpoints: [%s]}\n"
                    "drain: {timeout: 20s, ignore_daemonsets: true}\n"
                    "timeouts: {node_ready: 30s, backend_drain: 10s, command: 30s, gate: 30s}\n"
                    "soak: 1s\nlease_ttl: 30s\n"
                    % (self.kubeconfig, self.admin, new_addr, self.fixture.port,
                       self.fixture.port, ", ".join(self.etcd.url(m) for m in MASTERS)))
        rc, out, err = self.lbctl("migrate", plan, "--dry-run")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("etcd-remove    check etcd keeps quorum without member master-3", out)
        self.start_watchers()
        rc, out, err = self.lbctl("migrate", plan)
        # The gate's etcd endpoints are its config file's: they still name
        # master-3's etcd and not master-4's. The run stops (main went on and
        # left the gate counting a stale cluster), prints the exact edit and
        # keeps master-3's lease until the edit is applied.
        self.assertEqual(rc, 3, out + err + "\nfixture: %s" % self.fixture.errors)
        url4 = self.etcd.url("master-4")
        self.assertIn("master-3: the gate's config no longer matches the cluster", err)
        self.assertIn("        endpoints:\n          - %s   # add (etcd member master-4)\n"
                      "          - %s   # remove (etcd member master-3, removed)\n"
                      % (url4, self.etcd.url("master-3")), err)

        def configured():
            return self.gate_status()["inputs"]["etcd"]["configured_endpoints"]
        self.assertNotIn(url4, configured())
        self.assertEqual([l["node"] for l in self.gate_status()["leases"]], ["master-3"])
        rc, out, err = self.lbctl("migrate", plan, "--resume")
        self.assertEqual(rc, 3, out + err)
        self.assertIn("# add (etcd member master-4)", err)
        # The operator applies the edit; the resumed run checks the gate again.
        cfg = self.lbd_cfg()
        cfg["gate"]["quorum"]["etcd"]["endpoints"] = [
            self.etcd.url(m) for m in ("master-1", "master-2", "master-4")]
        self.write_config(cfg)
        rc, out, err = self.lbctl("--socket", self.admin, "reload")
        self.assertEqual(rc, 0, out + err)
        harness.wait_for(lambda: url4 in configured(), harness.T(10),
                         "the gate to count master-4's etcd endpoint")
        self.wait_gate_ready()
        rc, out, err = self.lbctl("migrate", plan, "--resume")
        self.assertEqual(rc, 0, out + err + "\nfixture: %s" % self.fixture.errors)
        self.check_watchers()
        names = sorted(m["name"] for m in self.etcd.members())
        self.assertEqual(names, ["master-1", "master-2", "master-4"])
        st = self.sim.state()["nodes"]
        self.assertNotIn("master-3", st)
        self.assertIn("master-4", st)
        # lbd publishes its pool to the gate every 500ms.
        harness.wait_for(lambda: sorted(b["name"] for b in self.gate_status()["inputs"]["pool"]
                                        ["backends"]) == ["master-1", "master-2", "master-4"],
                         harness.T(5), "the pool to be master-1, master-2, master-4")
        self.assertEqual(self.gate_status()["leases"], [])


class TestExamplePlans(unittest.TestCase):
    """--dry-run of the shipped examples: every step printed, nothing reached
    (their kubeconfig, lbd socket and etcd are not on this machine)."""

    def setUp(self):
        harness.require_verb(LBCTL, "upgrade")
        harness.require_verb(LBCTL, "migrate")

    def dry(self, verb, name):
        r = subprocess.run([LBCTL, verb, os.path.join(EXAMPLES, name), "--dry-run"],
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout, r.stderr

    def test_k3s(self):
        rc, out, err = self.dry("upgrade", "plan-k3s.yaml")
        self.assertEqual(rc, 1, out + err)  # the preflight cannot reach the cluster here
        self.assertIn("to v1.31.5+k3s1: masters one at a time, then workers (1 at a time)", out)
        steps = re.findall(r"^\s+(\d+)\. (\S+)\s", out, re.M)
        self.assertEqual(len(steps), 3 * 8 + 3 * 6)
        self.assertEqual([s[1] for s in steps[:8]],
                         ["lease", "backend-drain", "drain", "command", "wait",
                          "backend-enable", "uncordon", "release"])
        self.assertIn("run: ssh -o BatchMode=yes root@192.0.2.11 'curl -sfL https://get.k3s.io | "
                      "INSTALL_K3S_VERSION=v1.31.5+k3s1", out)
        self.assertRegex(out, r"would run: ssh .* k3s etcd-snapshot save --name "
                              r"pre-upgrade-\d{8}-\d{6}")
        self.assertIn("REFUSE  kubeconfig: /etc/rancher/k3s/k3s.yaml", out)
        self.assertIn("nothing was changed", out)

    def test_kubeadm(self):
        rc, out, err = self.dry("upgrade", "plan-kubeadm.yaml")
        self.assertIn("to v1.31.5: masters one at a time, then workers (2 at a time)", out)
        self.assertIn("kubeadm-upgrade-node cp-2 v1.31.5", out)
        self.assertEqual(len(re.findall(r"^\s+\d+\. ", out, re.M)), 3 * 8 + 2 * 6)

    def test_migrations(self):
        rc, out, err = self.dry("migrate", "migrate-replace-master.yaml")
        steps = [s for s in re.findall(r"^\s+\d+\. (\S+)", out, re.M)]
        self.assertEqual(steps, ["lease", "join", "joined", "backend-add", "backend-up",
                                 "release", "lease", "backend-drain", "drain", "etcd-remove",
                                 "remove-command", "node-delete", "backend-remove",
                                 "gate-members", "release"])
        self.assertIn("etcd: not asked until the reasons above are fixed", out)
        rc, out, err = self.dry("migrate", "migrate-one-to-three.yaml")
        steps = re.findall(r"^\s+\d+\. (\S+)", out, re.M)
        self.assertEqual(steps, ["lease", "join", "joined", "backend-add", "backend-up",
                                 "gate-members", "release"] * 2)
        # The wrong verb for a kind is a usage error.
        rc, out, err = self.dry("upgrade", "migrate-one-to-three.yaml")
        self.assertEqual(rc, 2)
        self.assertIn("use lbctl migrate", err)

    def big_plan(self, text):
        d = tempfile.mkdtemp(prefix="lbd-bigplan-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "plan.yaml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_many_nodes(self):
        # More nodes than the orchestrator's old stack arrays held (256): the
        # dry run crashed (SIGSEGV) before printing a step.
        nodes = ["  - {name: m%d, role: master}" % i for i in range(3)]
        nodes += ["  - {name: w%d, role: worker}" % i for i in range(297)]
        plan = self.big_plan(
            "kind: upgrade\nversion: v1.31.5\nkubeconfig: /nonexistent/kubeconfig\n"
            "lbd: {socket: /nonexistent/admin.sock}\npool: masters\nnodes:\n%s\n"
            "upgrade_command: echo {node}\n" % "\n".join(nodes))
        r = subprocess.run([LBCTL, "upgrade", plan, "--dry-run"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout[-2000:] + r.stderr)  # preflight refuses
        steps = re.findall(r"^\s+\d+\. (\S+)", r.stdout, re.M)
        self.assertEqual(len(steps), 3 * 8 + 297 * 6)
        self.assertIn("w296 (worker)", r.stdout)
        self.assertIn("nothing was changed", r.stdout)

    def test_many_replacements(self):
        # A migration's order holds a node per replacement side: 150 pairs are 300.
        nodes = ["  - {name: old%d, role: worker}\n  - {name: new%d, role: worker}" % (i, i)
                 for i in range(150)]
        repl = ["  - {old: old%d, new: new%d}" % (i, i) for i in range(150)]
        plan = self.big_plan(
            "kind: migration\nkubeconfig: /nonexistent/kubeconfig\n"
            "lbd: {socket: /nonexistent/admin.sock}\npool: masters\nnodes:\n%s\n"
            "replace:\n%s\nremove_command: echo {node}\n" % ("\n".join(nodes), "\n".join(repl)))
        r = subprocess.run([LBCTL, "migrate", plan, "--dry-run"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 1, r.stdout[-2000:] + r.stderr)
        self.assertIn("old149 (worker)", r.stdout)
        self.assertIn("nothing was changed", r.stdout)


if __name__ == "__main__":
    unittest.main()
