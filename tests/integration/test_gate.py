"""test_gate.py - the quorum/reboot gate with real parts.

A real three-member etcd cluster on loopback (Debian's etcd-server), kubesim
with three HTTPS listeners (the masters' apiservers, /readyz controllable)
and five nodes, and lbd with its pool over the three listeners and its gate
on an ephemeral loopback port. Every process is started per test and killed
by PID; every wait polls with a bound.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_kube as tk  # noqa: E402

ETCD = shutil.which("etcd")
MASTERS = ["master-1", "master-2", "master-3"]
WORKERS = ["worker-1", "worker-2"]
ADMIN_TOKEN = "admin-secret-0123456789"


def token_of(node):
    return "tok-%s-abcdef" % node


class Etcd:
    """A three-member etcd cluster, members named after the masters."""

    def __init__(self, tc):
        self.tc = tc
        self.client = {n: harness.free_port() for n in MASTERS}
        self.peer = {n: harness.free_port() for n in MASTERS}
        self.procs = {}
        cluster = ",".join("%s=http://127.0.0.1:%d" % (n, self.peer[n]) for n in MASTERS)
        self.argv = {}
        for n in MASTERS:
            self.argv[n] = [
                ETCD, "--name", n, "--data-dir", tc.path("etcd-" + n),
                "--listen-client-urls", self.url(n), "--advertise-client-urls", self.url(n),
                "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer[n],
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer[n],
                "--initial-cluster", cluster, "--initial-cluster-state", "new",
                "--initial-cluster-token", "lbd-gate-test", "--logger", "zap",
                "--log-level", "warn"]
        for n in MASTERS:
            self.start(n)
        for n in MASTERS:
            self.wait_healthy(n)

    def url(self, n):
        return "http://127.0.0.1:%d" % self.client[n]

    def start(self, n):
        self.procs[n] = self.tc.spawn("etcd-" + n, self.argv[n])

    def stop(self, n):
        self.procs[n].stop(signal.SIGKILL)

    def healthy(self, n):
        c = http.client.HTTPConnection("127.0.0.1", self.client[n], timeout=1)
        try:
            c.request("GET", "/health")
            return json.loads(c.getresponse().read()).get("health") == "true"
        except (OSError, ValueError):
            return False
        finally:
            c.close()

    def wait_healthy(self, n):
        harness.wait_for(lambda: self.healthy(n), harness.T(30), "etcd %s healthy" % n)


class FakePrometheus:
    """GET /api/v1/query answers with the alerts in self.firing."""

    def __init__(self):
        self.firing = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": dict({"__name__": "ALERTS", "alertstate": "firing"}, **a),
                     "value": [time.time(), "1"]} for a in outer.firing]}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def scenario(extra_nodes=(), extra_masters=False):
    """extra_masters: the extra nodes are control-plane nodes too (the gate
    takes a node's role from the cluster, never from the request)."""
    nodes = [{"name": n, "roles": ["control-plane", "etcd", "master"]} for n in MASTERS]
    nodes += [{"name": n, "labels": {"topology.kubernetes.io/zone": "z%d" % (i % 2)}}
              for i, n in enumerate(WORKERS)]
    nodes += [dict({"name": n}, **({"roles": ["control-plane"]} if extra_masters else {}))
              for n in extra_nodes]
    return {"nodes": nodes, "pods": [], "pdbs": []}


class GateTest(harness.TestCase):
    etcd_members = True

    def setUp(self):
        super().setUp()
        harness.require_binary(ETCD or "etcd", "make deps installs etcd-server")
        harness.require_binary(harness.LBD, "run make")
        self.sim = tk.KubeSim(self.tmp, listeners=3)
        self.addCleanup(self.sim.stop)
        self.sim.load(scenario(getattr(self, "extra_nodes", ()),
                               getattr(self, "extra_masters", False)))
        self.etcd = Etcd(self) if self.etcd_members else None
        self.tokens = self.path("gate-tokens")
        with open(self.tokens, "w") as f:
            f.write("# node token\n* %s\n" % ADMIN_TOKEN)
            for n in MASTERS + WORKERS + list(getattr(self, "extra_nodes", ())):
                f.write("%s %s\n" % (n, token_of(n)))
        os.chmod(self.tokens, 0o600)

    # -- lbd with a gate

    def gate_config(self, gate=None, state="state", admin="admin.sock"):
        backends = [(m, a) for m, a in zip(MASTERS, self.sim.info["listen"])]
        cfg = self.lbd_config(backends, name="masters", health=dict(self.sim.health, rise=1, fall=1))
        cfg["state_dir"] = self.path(state)
        os.makedirs(self.path(state), exist_ok=True)
        cfg["admin"] = {"socket": self.path(admin)}
        g = {"listen": "127.0.0.1:%d" % harness.free_port(), "tokens_file": self.tokens,
             "kubeconfig": self.sim.kubeconfig, "quorum": {"pool": "masters"},
             "soak": "2s", "concurrency": {"masters": 1, "workers": 1}}
        if self.etcd:
            g["quorum"]["etcd"] = {"endpoints": [self.etcd.url(n) for n in MASTERS]}
        g.update(gate or {})
        cfg["gate"] = g
        return cfg

    def start_gate(self, cfg, name="lbd"):
        path = self.write_config(cfg, name=name + ".yaml")
        p = self.spawn(name, [harness.LBD, "-c", path], cwd=harness.ROOT)
        p.gate_port = int(cfg["gate"]["listen"].rsplit(":", 1)[1])
        p.admin_sock = cfg["admin"]["socket"]
        harness.wait_for(lambda: p.poll() is None and harness.port_open("127.0.0.1", p.gate_port),
                         harness.T(10), "gate listening (%s)" % p.log.tail())
        return p

    def call(self, p, method, path, body=None, token=ADMIN_TOKEN):
        c = http.client.HTTPConnection("127.0.0.1", p.gate_port, timeout=harness.T(20))
        hdrs = {"Content-Type": "application/json"}
        if token:
            hdrs["Authorization"] = "Bearer " + token
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdrs)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else None

    def admin_call(self, p, method, path, body=None):
        class UConn(http.client.HTTPConnection):
            def connect(self):
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(harness.T(20))
                self.sock.connect(p.admin_sock)
        c = UConn("localhost")
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else None

    def acquire(self, p, node, role, token=None, ttl=None, release_on_outcomes=None):
        body = {"node": node, "role": role, "reason": "test"}
        if ttl:
            body["ttl"] = ttl
        if release_on_outcomes is not None:
            body["release_on_outcomes"] = release_on_outcomes
        return self.call(p, "POST", "/v1/gate/leases", body, token or token_of(node))

    def status(self, p):
        st, s = self.call(p, "GET", "/v1/gate/status")
        self.assertEqual(st, 200, s)
        return s

    def wait_inputs(self, p, pred, what):
        return harness.wait_for(lambda: pred(self.status(p)), harness.T(20), what)

    def wait_all_known(self, p):
        def ok(s):
            ins = s["inputs"]
            if not all(v["known"] for v in ins.values()):
                return False
            if not all(b["up"] for b in ins["pool"]["backends"]):
                return False
            return not self.etcd or all(m["healthy"] for m in ins["etcd"]["members"])
        self.wait_inputs(p, ok, "every gate input known and healthy")

    def reasons(self, ans):
        return "\n".join(ans.get("reasons", []))


class TestGateQuorum(GateTest):
    def test_all_healthy_then_concurrency(self):
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        st, a = self.acquire(p, "master-1", "master")
        self.assertEqual(st, 201, a)
        self.assertEqual(a["lease"]["slot"], "master-0")
        fence = a["lease"]["fence"]
        # Asking again is idempotent: same slot, same fence.
        st, a2 = self.acquire(p, "master-1", "master")
        self.assertEqual(st, 200, a2)
        self.assertEqual(a2["lease"]["fence"], fence)
        # A second master at the same time: refused, with the reason.
        st, b = self.acquire(p, "master-2", "master")
        self.assertEqual(st, 409, b)
        self.assertFalse(b["granted"])
        self.assertIn("concurrency: 1 of 1 master slot(s) taken (master-0 held by master-1",
                      self.reasons(b))
        self.assertIn("etcd: 3 of 3 voting members healthy, quorum 2: granting a master lease "
                      "would leave 1", self.reasons(b))
        # A worker alongside.
        st, w = self.acquire(p, "worker-1", "worker")
        self.assertEqual(st, 201, w)
        # A node token takes only its own lease; it cannot free another's.
        st, e = self.acquire(p, "worker-2", "worker", token=token_of("worker-1"))
        self.assertEqual(st, 403, e)
        st, e = self.call(p, "DELETE", "/v1/gate/leases/master-1", token=token_of("worker-1"))
        self.assertEqual(st, 403, e)
        st, e = self.call(p, "GET", "/v1/gate/leases", token="wrong")
        self.assertEqual(st, 401, e)
        # Tokens never reach the log.
        self.assertNotIn(ADMIN_TOKEN, p.log.text())
        self.assertNotIn(token_of("worker-1"), p.log.text())
        # The holder releases; the next master gets the slot with a larger fence.
        st, _ = self.call(p, "DELETE", "/v1/gate/leases/master-1", token=token_of("master-1"))
        self.assertEqual(st, 200)
        st, c = self.acquire(p, "master-2", "master")
        self.assertEqual(st, 201, c)
        self.assertGreater(c["lease"]["fence"], fence)

    def test_etcd_member_stopped(self):
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        self.etcd.stop("master-3")
        # Wait for the settled picture: master-3 down, the other two healthy
        # again (right after the stop, an election can make them unreachable
        # for a moment, and the gate rightly reports that instead).
        def settled(s):
            health = {m["name"]: m["healthy"] for m in s["inputs"]["etcd"]["members"]}
            return health == {"master-1": True, "master-2": True, "master-3": False}
        self.wait_inputs(p, settled, "the gate to see master-3's etcd down and the others up")
        for m in ["master-1", "master-2", "master-3"]:
            st, a = self.acquire(p, m, "master")
            self.assertEqual(st, 409, a)
            self.assertIn("etcd: ", self.reasons(a))
        st, a = self.acquire(p, "master-1", "master")
        self.assertIn("etcd: 2 of 3 voting members healthy, quorum 2: granting a master lease "
                      "would leave 1; master-3 unhealthy", self.reasons(a))
        st, w = self.acquire(p, "worker-1", "worker")
        self.assertEqual(st, 201, w)

    def test_apiserver_failing_readyz(self):
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        self.sim.call("/sim/listeners/1", {"state": "fail"})
        self.wait_inputs(p, lambda s: not s["inputs"]["pool"]["backends"][1]["up"],
                         "the pool to see master-2 failing /readyz")
        st, a = self.acquire(p, "master-1", "master")
        self.assertEqual(st, 409, a)
        self.assertIn("pool masters: 2 of 3 apiservers up, quorum 2: granting a master lease "
                      "would leave 1; master-2 down", self.reasons(a))
        st, w = self.acquire(p, "worker-1", "worker")
        self.assertEqual(st, 201, w)

    def test_kill9_restart_keeps_leases(self):
        cfg = self.gate_config()
        p = self.start_gate(cfg)
        self.wait_all_known(p)
        st, a = self.acquire(p, "master-1", "master")
        self.assertEqual(st, 201, a)
        st, w = self.acquire(p, "worker-1", "worker")
        self.assertEqual(st, 201, w)
        p.stop(signal.SIGKILL)
        p2 = self.start_gate(cfg, name="lbd2")
        st, ls = self.call(p2, "GET", "/v1/gate/leases")
        self.assertEqual(st, 200)
        got = {l["node"]: l for l in ls["leases"]}
        self.assertEqual(set(got), {"master-1", "worker-1"})
        self.assertEqual(got["master-1"]["fence"], a["lease"]["fence"])
        self.wait_all_known(p2)
        st, b = self.acquire(p2, "master-2", "master")
        self.assertEqual(st, 409, b)
        st, b = self.acquire(p2, "worker-2", "worker")
        self.assertEqual(st, 409, b)
        st, c = self.acquire(p2, "master-1", "master")
        self.assertEqual(st, 200, c)
        self.assertEqual(c["lease"]["fence"], a["lease"]["fence"])


class TestGateConcurrent(GateTest):
    extra_nodes = ["n%02d" % i for i in range(50)]
    extra_masters = True

    def race(self, gates, n=50):
        results = []
        lock = threading.Lock()

        def ask(i):
            node = self.extra_nodes[i % len(self.extra_nodes)]
            st, a = self.acquire(gates[i % len(gates)], node, "master")
            with lock:
                results.append((node, st, a))
        threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(harness.T(60))
        self.assertEqual(len(results), n)
        granted = [r for r in results if r[1] == 201]
        others = [r for r in results if r[1] != 201]
        self.assertEqual(len(granted), 1, [(r[0], r[1]) for r in results if r[1] != 409])
        for node, st, a in others:
            self.assertEqual(st, 409, a)
        return granted[0]

    def test_50_concurrent_one_grant(self):
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        node, _, a = self.race([p])
        st, ls = self.call(p, "GET", "/v1/gate/leases")
        self.assertEqual([l["node"] for l in ls["leases"]], [node])

    def test_kubernetes_store_two_lbds(self):
        c1 = self.gate_config({"store": "kubernetes"}, state="s1", admin="a1.sock")
        c1["frontends"][0]["listen"] = ["127.0.0.1:%d" % harness.free_port()]
        c2 = self.gate_config({"store": "kubernetes"}, state="s2", admin="a2.sock")
        c2["frontends"][0]["listen"] = ["127.0.0.1:%d" % harness.free_port()]
        p1 = self.start_gate(c1, name="lbd1")
        p2 = self.start_gate(c2, name="lbd2")
        self.wait_all_known(p1)
        self.wait_all_known(p2)
        node, _, a = self.race([p1, p2])
        # Both see the one lease, and the simulator holds it in its slot's Lease.
        for p in (p1, p2):
            st, ls = self.call(p, "GET", "/v1/gate/leases")
            self.assertEqual([l["node"] for l in ls["leases"]], [node])
        leases = self.sim.state()["leases"]
        slot = [v for k, v in leases.items() if k.endswith("/lbd-gate-master-0")]
        self.assertEqual(len(slot), 1, leases)
        self.assertEqual(slot[0]["spec"]["holderIdentity"], node)


class TestGateOutcomes(GateTest):
    etcd_members = False

    def test_stale_lease_blocks_until_admin_release(self):
        # Only the stale rule here: worker-1 stays NotReady after the release.
        p = self.start_gate(self.gate_config({"require_all_nodes_ready": False}))
        self.wait_all_known(p)
        st, a = self.acquire(p, "worker-1", "worker", ttl="1s")
        self.assertEqual(st, 201, a)
        self.sim.call("/sim/nodes/worker-1", {"ready": False})
        self.wait_inputs(p, lambda s: "worker-1" in s["stale"], "worker-1's lease to go stale")
        st, b = self.acquire(p, "worker-2", "worker")
        self.assertEqual(st, 409, b)
        self.assertIn("STALE", self.reasons(b))
        st, _ = self.admin_call(p, "DELETE", "/v1/gate/leases/worker-1")
        self.assertEqual(st, 200)
        st, b = self.acquire(p, "worker-2", "worker")
        self.assertEqual(st, 201, b)

    def test_release_on_outcomes_after_soak(self):
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        st, a = self.acquire(p, "worker-1", "worker", release_on_outcomes=True)
        self.assertEqual(st, 201, a)
        # The node reboots: new bootID and NotReady; the lease stays.
        self.sim.call("/sim/nodes/worker-1", {"reboot": True, "ready": False})
        self.wait_inputs(p, lambda s: any(n["name"] == "worker-1" and not n["ready"]
                                          for n in s["inputs"]["kubernetes"]["nodes"]),
                         "the gate to see worker-1 NotReady")
        self.assertIn("worker-1", [l["node"] for l in self.status(p)["leases"]])
        ready_at = time.monotonic()
        self.sim.call("/sim/nodes/worker-1", {"ready": True})
        harness.wait_for(lambda: not self.status(p)["leases"], harness.T(20),
                         "the gate to release worker-1's lease")
        self.assertGreaterEqual(time.monotonic() - ready_at, 2.0, "released before the soak")
        p.log.wait(r"released the lease of worker-1: worker-1 is back", harness.T(5))

    def test_release_on_outcomes_real_lifecycle(self):
        """As k3s and a kubelet really behave (issue 16): a service restart
        keeps the bootID and the node Ready through kubesim's node-monitor
        grace period, so it is no reboot and the lease stays; a reboot turns
        the node NotReady only after the grace period, and the lease is
        released once it is back with a new bootID, Ready, for the soak."""
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        st, a = self.acquire(p, "worker-1", "worker", release_on_outcomes=True)
        self.assertEqual(st, 201, a)
        self.sim.call("/sim/nodes/worker-1", {"restart": {"down": 0.5}})
        # Held throughout, past the restart, the grace period (2 s) and the soak (2 s).
        until = time.monotonic() + 3.5
        while time.monotonic() < until:
            self.assertIn("worker-1", [l["node"] for l in self.status(p)["leases"]],
                          "a service restart (same bootID) released the lease")
            time.sleep(0.2)
        self.sim.call("/sim/nodes/worker-1", {"reboot": {"down": 3.0}})
        back_at = time.monotonic() + 3.0
        self.wait_inputs(p, lambda s: any(n["name"] == "worker-1" and not n["ready"]
                                          for n in s["inputs"]["kubernetes"]["nodes"]),
                         "the gate to see worker-1 NotReady after the grace period")
        harness.wait_for(lambda: not self.status(p)["leases"], harness.T(20),
                         "the gate to release worker-1's lease")
        self.assertGreaterEqual(time.monotonic() - back_at, 2.0, "released before the soak")

    def test_window_and_alert(self):
        prom = FakePrometheus()
        self.addCleanup(prom.stop)
        prom.firing = [{"alertname": "KubeAPIDown", "severity": "critical"}]
        now = time.gmtime()
        start = "%02d:00" % ((now.tm_hour + 6) % 24)
        end = "%02d:00" % ((now.tm_hour + 8) % 24)
        cfg = self.gate_config({"windows": [{"start": start, "end": end, "tz": "Europe/Berlin"}],
                                "alerts": {"prometheus_url": "http://127.0.0.1:%d" % prom.port,
                                           "filter": 'severity="critical"'}})
        p = self.start_gate(cfg)
        self.wait_all_known(p)
        st, a = self.acquire(p, "worker-1", "worker")
        self.assertEqual(st, 409, a)
        self.assertIn("window: outside every maintenance window", self.reasons(a))
        self.assertIn("Europe/Berlin", self.reasons(a))
        self.assertIn("alerts: KubeAPIDown (severity=critical) is firing", self.reasons(a))


class TestGateReload(GateTest):
    """A reload (SIGHUP, lbctl reload) applies the gate section; leases and the
    listener stay."""
    etcd_members = False

    def test_sighup_and_lbctl_reload_apply_gate_settings(self):
        cfg = self.gate_config()
        p = self.start_gate(cfg)
        self.wait_all_known(p)
        st, a = self.acquire(p, "worker-1", "worker")
        self.assertEqual(st, 201, a)
        st, b = self.acquire(p, "worker-2", "worker")
        self.assertEqual(st, 409, b)
        self.assertIn("concurrency: 1 of 1 worker slot(s) taken", self.reasons(b))

        # SIGHUP: workers 1 -> 2 lets worker-2 through; worker-1's lease stays.
        cfg["gate"]["concurrency"]["workers"] = 2
        self.write_config(cfg, name="lbd.yaml")
        mark = p.log.mark()
        p.send_signal(signal.SIGHUP)
        p.log.wait(r"reload: gate settings applied \(changed: concurrency\); 1 lease\(s\) kept",
                   harness.T(10), since=mark, proc=p)
        self.assertEqual(self.status(p)["concurrency"]["workers"], 2)
        st, b = self.acquire(p, "worker-2", "worker")
        self.assertEqual(st, 201, b)
        self.assertEqual(b["lease"]["slot"], "worker-1")
        st, ls = self.call(p, "GET", "/v1/gate/leases")
        self.assertIn(("worker-1", a["lease"]["fence"]),
                      [(l["node"], l["fence"]) for l in ls["leases"]])
        st, _ = self.call(p, "DELETE", "/v1/gate/leases/worker-1")
        self.assertEqual(st, 200)

        # lbctl reload (POST /v1/reload): back to one worker while worker-2 holds
        # slot worker-1 (a free worker-0 is no room), and a window now closed
        # refuses with its reason. gate.listen cannot move live: a warning, and
        # the gate keeps its port.
        cfg["gate"]["concurrency"]["workers"] = 1
        now = time.gmtime()
        cfg["gate"]["windows"] = [{"start": "%02d:00" % ((now.tm_hour + 6) % 24),
                                   "end": "%02d:00" % ((now.tm_hour + 8) % 24), "tz": "UTC"}]
        cfg["gate"]["listen"] = "127.0.0.1:%d" % harness.free_port()
        self.write_config(cfg, name="lbd.yaml")
        mark = p.log.mark()
        r = subprocess.run([tk.LBCTL, "--socket", p.admin_sock, "reload"], capture_output=True,
                           text=True, timeout=harness.T(20))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        p.log.wait(r"reload: gate settings applied \(changed: concurrency, windows\); "
                   r"1 lease\(s\) kept", harness.T(10), since=mark, proc=p)
        self.assertIsNotNone(p.log.find(r"gate\.listen changed to .*needs a restart", mark))
        st, c = self.acquire(p, "worker-1", "worker")  # on the old port
        self.assertEqual(st, 409, c)
        self.assertIn("window: outside every maintenance window", self.reasons(c))
        self.assertIn("concurrency: 1 of 1 worker slot(s) taken (worker-1 held by worker-2",
                      self.reasons(c))

        # worker-2's lease went through the reload unchanged.
        st, ls = self.call(p, "GET", "/v1/gate/leases")
        self.assertEqual(st, 200, ls)
        self.assertEqual([(l["node"], l["fence"]) for l in ls["leases"]],
                         [("worker-2", b["lease"]["fence"])])


class TestGateWatch(GateTest):
    etcd_members = False

    def test_watch_reboot_cycle(self):
        harness.require_verb(tk.LBCTL, "gate")
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        tokfile = self.path("node-token")
        with open(tokfile, "w") as f:
            f.write(token_of("worker-1"))
        os.chmod(tokfile, 0o600)
        required, sentinel, boot = self.path("reboot-required"), self.path("sentinel"), self.path("boot_id")
        node = self.sim.state()["nodes"]["worker-1"]
        with open(boot, "w") as f:
            f.write(node["bootID"] + "\n")
        w = self.spawn("watch", [tk.LBCTL, "--url", "http://127.0.0.1:%d" % p.gate_port,
                                 "--token-file", tokfile, "gate", "watch", "--node", "worker-1",
                                 "--reboot-required", required, "--sentinel", sentinel,
                                 "--boot-id-file", boot, "--interval", "200ms"])
        open(required, "w").close()
        harness.wait_for(lambda: os.path.exists(sentinel), harness.T(20), "the sentinel")
        # kured reboots the node: new bootID, NotReady; reboot-required is gone after boot.
        self.sim.call("/sim/nodes/worker-1", {"reboot": True, "ready": False})
        node = self.sim.state()["nodes"]["worker-1"]
        os.unlink(required)
        with open(boot, "w") as f:
            f.write(node["bootID"] + "\n")
        harness.wait_for(lambda: not os.path.exists(sentinel), harness.T(20),
                         "watch to remove the sentinel after the reboot")
        self.assertIn("worker-1", [l["node"] for l in self.status(p)["leases"]])
        ready_at = time.monotonic()
        self.sim.call("/sim/nodes/worker-1", {"ready": True})
        harness.wait_for(lambda: not self.status(p)["leases"], harness.T(20),
                         "the lease released once worker-1 is back and soaked")
        self.assertGreaterEqual(time.monotonic() - ready_at, 2.0)
        w.log.wait(r"idle", harness.T(10))


if __name__ == "__main__":
    unittest.main()
