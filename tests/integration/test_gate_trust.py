"""test_gate_trust.py - issue 14: the gate never says yes when it is unsure.

One test (class) per case of the issue's "Why" list, each against real
parts: test_gate.py's fixtures (kubesim with three apiserver listeners and
five nodes, a real three-member etcd from Debian's etcd-server where the
case needs one, a tokens file, lbd with its gate on an ephemeral loopback
port). Every process is killed by PID; every wait is a bounded poll; an
absence ("the gate does not release it", "watch never creates the
sentinel") is checked by polling over a bounded window after a positive
sign that the gate (or watch) has seen what it must not act on.

Each test fails on the gate before issue 14 (main at 7c97682). The
requests name a holder or leave out the role, which that gate rejects with
400 "unknown key 'holder'" or "role: master or worker"; to watch the old
gate's own mistakes instead, run with LBD_GATE_OLD_API=1: the requests then
drop the keys it does not know (holder, release_on_outcomes) and the tests
fail where the old gate says yes.
"""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_gate as tg  # noqa: E402
import test_kube as tk  # noqa: E402
import test_upgrade as tu  # noqa: E402
from test_gate import MASTERS, token_of  # noqa: E402

OLD_API = bool(os.environ.get("LBD_GATE_OLD_API"))
RUN_X = "lbctl upgrade run 2026-01-01T00:00:00Z"
RUN_Y = "lbctl upgrade run 2026-01-01T00:05:00Z"


class TrustTest(tg.GateTest):
    etcd_members = False

    def ask(self, p, node, role=None, holder=None, ttl=None, token=None, admin=False,
            release_on_outcomes=None):
        """POST /v1/gate/leases as a node's token (default: node's own), an
        admin token (token=ADMIN_TOKEN) or the admin socket (admin=True, as
        lbctl upgrade does)."""
        body = {"node": node, "reason": "test_gate_trust"}
        if OLD_API and not role:  # the old gate wants one; old clients sent the true one
            role = "master" if node.startswith("master") else "worker"
        if role:
            body["role"] = role
        if ttl:
            body["ttl"] = ttl
        if holder and not OLD_API:
            body["holder"] = holder
        if release_on_outcomes is not None and not OLD_API:
            body["release_on_outcomes"] = release_on_outcomes
        if admin:
            return self.admin_call(p, "POST", "/v1/gate/leases", body)
        return self.call(p, "POST", "/v1/gate/leases", body, token or token_of(node))

    def leases(self, p):
        st, ls = self.call(p, "GET", "/v1/gate/leases")
        self.assertEqual(st, 200, ls)
        return {l["node"]: l for l in ls["leases"]}

    def node_in(self, s, name):
        for n in s["inputs"]["kubernetes"]["nodes"]:
            if n["name"] == name:
                return n
        return None

    def master_decision(self, s, node):
        for d in s["master"]:
            if d["node"] == node:
                return d
        return None

    @staticmethod
    def rename_backends(cfg, fmt="apiserver-%d"):
        """Pool backends named unlike their nodes, and no gate.members."""
        for i, b in enumerate(cfg["pools"][0]["backends"]):
            b["name"] = fmt % (i + 1)
        return cfg


class TestUnknownEtcd(TrustTest):
    """Case 1: quorum.etcd configured and no endpoint answering. The pool's
    backends are named unlike the nodes (no members), so only the etcd
    member list, which nobody can read, or the nodes' labels say who is a
    master."""
    etcd_members = True

    def test_etcd_unknown_refuses_masters_and_undecidable_nodes(self):
        cfg = self.rename_backends(self.gate_config({"concurrency": {"masters": 1, "workers": 2}}))
        p = self.start_gate(cfg)
        self.wait_all_known(p)
        for n in MASTERS:
            self.etcd.stop(n)
        self.wait_inputs(p, lambda s: not s["inputs"]["etcd"]["known"],
                         "the gate to see etcd unknown (every member stopped)")
        # A master asking for a worker lease: the control-plane label says master.
        st, a = self.ask(p, "master-1", role="worker")
        self.assertEqual(st, 409, a)
        self.assertIn("role: master-1 is a master, by what the gate knows of the cluster; "
                      "it asked for a worker lease", self.reasons(a))
        # The same master without a role: a master lease, which etcd cannot allow.
        st, a = self.ask(p, "master-1")
        self.assertEqual(st, 409, a)
        self.assertIn("etcd", self.reasons(a))
        # A second master, either way: refused too.
        st, b = self.ask(p, "master-2", role="worker")
        self.assertEqual(st, 409, b)
        self.assertIn("master-2 is a master", self.reasons(b))
        st, b = self.ask(p, "master-2")
        self.assertEqual(st, 409, b)
        # A node no source calls a master: it may still be an etcd member
        # nobody can list, so the gate cannot tell and says no.
        st, w = self.ask(p, "worker-1")
        self.assertEqual(st, 409, w)
        self.assertIn("role: cannot tell whether worker-1 is a master: etcd unknown",
                      self.reasons(w))
        self.assertEqual(self.leases(p), {})


class TestClosedEtcdPorts(TrustTest):
    """Case 1 again, with quorum.etcd's endpoints on loopback ports nobody
    listens on: etcd unknown from start-up."""

    def test_closed_etcd_ports_from_the_start(self):
        closed = ["http://127.0.0.1:%d" % harness.free_port() for _ in MASTERS]
        cfg = self.rename_backends(self.gate_config({
            "quorum": {"pool": "masters", "etcd": {"endpoints": closed}},
            "concurrency": {"masters": 1, "workers": 2}}))
        p = self.start_gate(cfg)
        self.wait_inputs(p, lambda s: s["inputs"]["kubernetes"]["known"]
                         and s["inputs"]["pool"]["known"]
                         and all(b["up"] for b in s["inputs"]["pool"]["backends"])
                         and not s["inputs"]["etcd"]["known"]
                         and s["inputs"]["etcd"].get("why") not in (None, "not asked yet"),
                         "pool and nodes known, etcd asked and unknown")
        for m in ("master-1", "master-2"):
            for role in ("worker", None):
                st, a = self.ask(p, m, role=role)
                self.assertEqual(st, 409, (m, role, a))
        self.assertIn("master-2 is a master", self.reasons(self.ask(p, "master-2", "worker")[1]))
        self.assertEqual(self.leases(p), {})


class TestPoolNamesDiffer(TrustTest):
    """Case 1, second part: quorum.pool's backends named unlike the nodes,
    no members, no etcd: a control-plane node is still a master."""

    def test_control_plane_label_makes_a_master(self):
        cfg = self.rename_backends(self.gate_config({"concurrency": {"masters": 1, "workers": 2}}))
        p = self.start_gate(cfg)
        self.wait_all_known(p)
        st, a = self.ask(p, "master-1", role="worker")
        self.assertEqual(st, 409, a)
        self.assertIn("role: master-1 is a master, by what the gate knows of the cluster; "
                      "it asked for a worker lease", self.reasons(a))
        st, b = self.ask(p, "master-2", role="worker")
        self.assertEqual(st, 409, b)
        self.assertIn("master-2 is a master", self.reasons(b))
        # Without a role it is a master lease, in a master slot.
        st, a = self.ask(p, "master-1")
        self.assertEqual(st, 201, a)
        self.assertEqual(a["lease"]["slot"], "master-0")
        self.assertEqual(a["lease"]["role"], "master")
        st, b = self.ask(p, "master-2")
        self.assertEqual(st, 409, b)
        self.assertIn("concurrency: 1 of 1 master slot(s) taken", self.reasons(b))


class TestRoleFromBody(TrustTest):
    """Case 2: a worker's token asks for a master lease."""

    def test_worker_asking_for_master_is_refused(self):
        p = self.start_gate(self.gate_config())  # concurrency: masters 1, workers 1
        self.wait_all_known(p)
        st, a = self.ask(p, "worker-1", role="master")
        self.assertEqual(st, 409, a)
        self.assertIn("role: worker-1 is a worker, by what the gate knows of the cluster; "
                      "it asked for a master lease", self.reasons(a))
        st, a = self.ask(p, "worker-1")
        self.assertEqual(st, 201, a)
        self.assertEqual((a["lease"]["role"], a["lease"]["slot"]), ("worker", "worker-0"))
        # worker-2 cannot get past workers: 1 by calling itself a master.
        st, b = self.ask(p, "worker-2", role="master")
        self.assertEqual(st, 409, b)
        self.assertIn("worker-2 is a worker", self.reasons(b))
        st, b = self.ask(p, "worker-2")
        self.assertEqual(st, 409, b)
        self.assertIn("concurrency: 1 of 1 worker slot(s) taken", self.reasons(b))
        self.assertEqual(sorted(self.leases(p)), ["worker-1"])
        # The master slot stays free for a real master.
        st, m = self.ask(p, "master-1")
        self.assertEqual(st, 201, m)
        self.assertEqual(m["lease"]["slot"], "master-0")


class TestHolders(TrustTest):
    """Case 3: a lease belongs to its holder, not to its node's name."""

    def held_by(self, p, node, holder):
        st, a = self.ask(p, node, holder=holder, admin=True)
        self.assertEqual(st, 201, a)
        if not OLD_API:
            self.assertEqual(a["lease"]["holder"], holder)
            self.assertFalse(a["lease"]["release_on_outcomes"])
        return a

    def test_second_holder_refused(self):
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        a = self.held_by(p, "worker-1", RUN_X)
        # Another holder with worker-1's own token.
        st, b = self.ask(p, "worker-1", holder=RUN_Y)
        self.assertEqual(st, 409, b)
        why = self.reasons(b)
        self.assertRegex(why, r"worker-1 is held by %s since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "
                         r"\(fence %d\)" % (RUN_X, a["lease"]["fence"]))
        # The node's default holder (node/worker-1) is another holder too.
        st, b = self.ask(p, "worker-1")
        self.assertEqual(st, 409, b)
        self.assertIn("held by " + RUN_X, self.reasons(b))
        # Nor may it give the lease back.
        st, r = self.call(p, "DELETE", "/v1/gate/leases/worker-1", token=token_of("worker-1"))
        self.assertEqual(st, 409, r)
        # The holder renews: same fence, holder unchanged.
        st, c = self.ask(p, "worker-1", holder=RUN_X, admin=True)
        self.assertEqual(st, 200, c)
        self.assertEqual(c["lease"]["fence"], a["lease"]["fence"])
        self.assertEqual(c["lease"]["holder"], RUN_X)

    def test_two_upgrade_runs_on_the_admin_socket(self):
        # lbctl upgrade talks to lbd as an admin (the admin socket, or lbd.url
        # with an admin token): a second copy of the plan, with a journal of
        # its own, must not take over the first run's lease.
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        a = self.held_by(p, "worker-1", RUN_X)
        st, b = self.ask(p, "worker-1", holder=RUN_Y, admin=True)
        self.assertEqual(st, 409, b)
        self.assertIn("worker-1 is held by %s since " % RUN_X, self.reasons(b))
        st, b = self.ask(p, "worker-1", holder=RUN_Y, token=tg.ADMIN_TOKEN)
        self.assertEqual(st, 409, b)
        self.assertEqual(self.leases(p)["worker-1"]["holder"], RUN_X)
        self.assertEqual(self.leases(p)["worker-1"]["fence"], a["lease"]["fence"])

    def test_watch_never_reboots_under_another_holder(self):
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        self.held_by(p, "worker-1", RUN_X)
        tokfile = self.path("node-token")
        with open(tokfile, "w") as f:
            f.write(token_of("worker-1"))
        os.chmod(tokfile, 0o600)
        required, sentinel, boot = (self.path("reboot-required"), self.path("sentinel"),
                                    self.path("boot_id"))
        with open(boot, "w") as f:
            f.write(self.sim.state()["nodes"]["worker-1"]["bootID"] + "\n")
        open(required, "w").close()
        w = self.spawn("watch", [tk.LBCTL, "--url", "http://127.0.0.1:%d" % p.gate_port,
                                 "--token-file", tokfile, "gate", "watch", "--node", "worker-1",
                                 "--reboot-required", required, "--sentinel", sentinel,
                                 "--boot-id-file", boot, "--interval", "200ms"])
        # Watch has seen the lease and whose it is; for the next 2 s (ten of
        # its rounds) it never tells kured to reboot.
        harness.wait_for(lambda: w.log.find(r"held by another holder") or os.path.exists(sentinel),
                         harness.T(10), "watch to see worker-1's lease")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            self.assertFalse(os.path.exists(sentinel),
                             "watch created the sentinel under %s's lease:\n%s"
                             % (RUN_X, w.log.tail()))
            self.assertIsNone(w.poll(), w.log.tail())
            time.sleep(0.05)
        self.assertEqual(self.leases(p)["worker-1"]["holder"], RUN_X)
        # The run gives its lease back; watch takes one of its own.
        st, r = self.admin_call(p, "DELETE", "/v1/gate/leases/worker-1")
        self.assertEqual(st, 200, r)
        harness.wait_for(lambda: os.path.exists(sentinel), harness.T(10),
                         "watch to take its own lease and create the sentinel")
        l = self.leases(p)["worker-1"]
        self.assertEqual((l["holder"], l["release_on_outcomes"]), ("node/worker-1", True))
        w.stop(signal.SIGTERM)


class TestOutcomesRaceTheHolder(TrustTest):
    """Case 4: gate soak (1 s) shorter than the holder's own; the holder's
    master lease, whose backend it has drained, survives the node's
    reboot; and a drained backend counts as lost to the pool's quorum."""

    def test_drained_master_lease_kept_and_drained_counts_as_lost(self):
        p = self.start_gate(self.gate_config({"soak": "1s"}))
        self.wait_all_known(p)
        a = self.held_by_run(p)
        st, _, r = harness.admin_request(p.admin_sock, "PATCH", "/v1/pools/masters/backends/master-1",
                                         {"state": "drain"})
        self.assertEqual(st, 200, r)
        old_boot = self.sim.state()["nodes"]["master-1"]["bootID"]
        self.sim.call("/sim/nodes/master-1", {"reboot": True, "ready": False})
        self.sim.call("/sim/nodes/master-1", {"ready": True})
        new_boot = self.sim.state()["nodes"]["master-1"]["bootID"]
        self.assertNotEqual(old_boot, new_boot)

        def back(s):
            n = self.node_in(s, "master-1")
            return n and n["ready"] and n["boot_id"] == new_boot and \
                all(b["up"] for b in s["inputs"]["pool"]["backends"])
        self.wait_inputs(p, back, "the gate to see master-1 rebooted and Ready, its check up")
        # Three soaks later the lease is still the run's, with its fence.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            l = self.leases(p).get("master-1")
            self.assertIsNotNone(l, "the gate released the run's lease while its backend was "
                                 "drained:\n%s" % p.log.tail())
            self.assertEqual(l["fence"], a["lease"]["fence"])
            time.sleep(0.1)
        self.assertIsNone(p.log.find(r"released the lease of master-1"))

        # The run gives the lease back while master-1 still takes no traffic
        # (its check passes): master-2 may not go down beside it.
        st, r = self.admin_call(p, "DELETE", "/v1/gate/leases/master-1")
        self.assertEqual(st, 200, r)

        def drained_lost(s):
            d = self.master_decision(s, "master-2")
            return d and not d["granted"] and "master-1 takes no traffic" in "\n".join(d["reasons"])
        self.wait_inputs(p, drained_lost, "the gate's status to count drained master-1 as lost")
        self.assertTrue(all(b["up"] for b in self.status(p)["inputs"]["pool"]["backends"]))
        st, b = self.ask(p, "master-2")
        self.assertEqual(st, 409, b)
        self.assertIn("pool masters: 2 of 3 apiservers up, quorum 2: granting a master lease "
                      "would leave 1; master-1 takes no traffic (drained, disabled or weight 0): "
                      "counted as lost", self.reasons(b))
        # Enabled again, it counts: master-2 is granted.
        st, _, r = harness.admin_request(p.admin_sock, "PATCH", "/v1/pools/masters/backends/master-1",
                                         {"state": "enabled"})
        self.assertEqual(st, 200, r)
        self.wait_inputs(p, lambda s: (self.master_decision(s, "master-2") or {}).get("granted"),
                         "master-2 grantable once master-1 is enabled")
        st, b = self.ask(p, "master-2")
        self.assertEqual(st, 201, b)

    def held_by_run(self, p):
        st, a = self.ask(p, "master-1", holder=RUN_X, admin=True)
        self.assertEqual(st, 201, a)
        self.assertEqual(a["lease"]["role"], "master")
        if not OLD_API:
            self.assertFalse(a["lease"]["release_on_outcomes"])
        return a


class TestStaleLease(TrustTest):
    """Case 5: a stale lease is still its holder's to renew, and nobody else's."""

    def test_holder_renews_its_stale_lease(self):
        # Only the stale rule: worker-1 stays Ready throughout.
        p = self.start_gate(self.gate_config())
        self.wait_all_known(p)
        st, a = self.ask(p, "worker-1", holder=RUN_X, ttl="1s", admin=True)
        self.assertEqual(st, 201, a)
        self.wait_inputs(p, lambda s: "worker-1" in s["stale"], "worker-1's lease to go stale")
        mark = p.log.mark()
        # The same run (lbctl upgrade --resume) renews it: same fence.
        st, b = self.ask(p, "worker-1", holder=RUN_X, ttl="1s", admin=True)
        self.assertEqual(st, 200, b)
        self.assertTrue(b.get("renewed"), b)
        self.assertEqual(b["lease"]["fence"], a["lease"]["fence"])
        self.assertEqual(b["lease"].get("holder", RUN_X), RUN_X)  # no holders before issue 14
        self.assertFalse(b["lease"]["stale"], b)
        self.assertIsNone(p.log.find(r"refused a lease to worker-1", mark))
        # Stale again; another holder (the node's own token) is refused.
        self.wait_inputs(p, lambda s: "worker-1" in s["stale"], "worker-1's lease stale again")
        st, c = self.ask(p, "worker-1")
        self.assertEqual(st, 409, c)
        self.assertIn("worker-1 is held by %s since " % RUN_X, self.reasons(c))
        st, c = self.ask(p, "worker-1", holder=RUN_Y, token=token_of("worker-1"))
        self.assertEqual(st, 409, c)
        self.assertEqual(self.leases(p)["worker-1"]["fence"], a["lease"]["fence"])


class TestAllNodesReadyDefault(TrustTest):
    """Case 6: with a kubeconfig, require_all_nodes_ready is on unless told off."""

    def test_notready_worker_blocks_another_by_default(self):
        cfg = self.gate_config()
        self.assertNotIn("require_all_nodes_ready", cfg["gate"])
        self.assertIn("kubeconfig", cfg["gate"])
        p = self.start_gate(cfg)
        self.wait_all_known(p)
        self.sim.call("/sim/nodes/worker-2", {"ready": False})
        self.wait_inputs(p, lambda s: not self.node_in(s, "worker-2")["ready"],
                         "the gate to see worker-2 NotReady")
        st, a = self.ask(p, "worker-1")
        self.assertEqual(st, 409, a)
        self.assertIn("nodes: worker-2 is NotReady; every other node must be Ready",
                      self.reasons(a))
        self.sim.call("/sim/nodes/worker-2", {"ready": True})
        self.wait_inputs(p, lambda s: self.node_in(s, "worker-2")["ready"],
                         "the gate to see worker-2 Ready again")
        st, a = self.ask(p, "worker-1")
        self.assertEqual(st, 201, a)


class TestResumeStaleLease(tu.UpgradeTest):
    """Case 5 end to end: lbctl upgrade is killed (kill -9) while a worker's
    lease is held; the lease goes stale (ttl 2s); `lbctl upgrade --resume`
    renews its own lease and finishes, with no `lbctl gate release`."""
    versions = {m: tu.NEW for m in tu.MASTERS}  # masters done already: a workers-only plan

    def write_worker_plan(self):
        path = self.write_plan()
        with open(path) as f:
            text = f.read()
        # Only the workers (quick), and a lease ttl that runs out while the run is dead.
        text = "".join(l for l in text.splitlines(True) if "role: master" not in l)
        text = text.replace("lease_ttl: 30s", "lease_ttl: 2s")
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_resume_renews_its_stale_lease(self):
        plan = self.write_worker_plan()
        self.fixture.down_s = 3.0  # worker-1 is still down when the run dies
        p = self.spawn("lbctl-upgrade", [tu.LBCTL, "upgrade", plan], cwd=self.tmp)

        def in_worker1_wait():
            if p.poll() is not None:
                raise AssertionError("lbctl upgrade exited: %s" % p.log.tail())
            try:
                j = self.journal(plan)
            except (OSError, ValueError):
                return False
            return any(s["node"] == "worker-1" and s["step"] == "wait" and s["state"] == "running"
                       for s in j["steps"])
        harness.wait_for(in_worker1_wait, harness.T(30), "worker-1's wait step to run")
        p.stop(signal.SIGKILL)
        lease = [l for l in self.gate_status()["leases"] if l["node"] == "worker-1"]
        self.assertEqual(len(lease), 1, self.gate_status()["leases"])
        fence = lease[0]["fence"]
        harness.wait_for(lambda: "worker-1" in self.gate_status()["stale"], harness.T(10),
                         "worker-1's lease to go stale")
        rc, out, err = self.lbctl("upgrade", plan, "--resume", timeout=45)
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("lbctl gate release", out + err)
        st = self.sim.state()["nodes"]
        for n in tu.WORKERS:
            self.assertEqual(st[n]["kubeletVersion"], tu.NEW, n)
        self.assertEqual(self.gate_status()["leases"], [], "a lease was left")
        # The resumed run renewed the lease it held: one grant to worker-1, with that fence.
        grants = [l for l in self.lbd.log.lines() if "gate: granted" in l and " to worker-1 " in l]
        self.assertEqual(len(grants), 1, grants)
        self.assertIn("(fence %d)" % fence, grants[0])
        order = [c[1] for c in self.fixture.calls if c[0] == "/upgrade"]
        self.assertEqual(order, tu.WORKERS)


if __name__ == "__main__":
    unittest.main()
