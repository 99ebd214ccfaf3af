"""test_upgrade_migrate.py - a migration deletes a Node only once its kubelet stopped.

The cluster of test_upgrade.py with a fourth master listener (kubesim, a real
etcd, a real lbd as the VIP with its gate, a client counting failed requests
through the VIP). master-3 is replaced by master-4, but the plan's
remove_command leaves master-3's kubelet running (its Node stays Ready). Main
deleted the Node anyway, which a real kubelet registers again at once. Now
the node-delete step waits (timeouts.node_ready) for the Node to stop being
Ready, then stops the run and says why; the Node is still there. A plan that
replaces nodes without a remove_command is refused whole. An `add` stops at
gate-members until the gate's config counts the new master.
"""

import http.client
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_upgrade as tu  # noqa: E402


class TestNodeDeleteWaitsForKubelet(tu.UpgradeTest):
    listeners = 4

    def plan(self, remove):
        plan = self.path("migrate.yaml")
        with open(plan, "w") as f:
            f.write("kind: migration\nkubeconfig: %s\nlbd: {socket: %s}\npool: masters\n"
                    "nodes:\n"
                    "  - {name: master-3, role: master}\n"
                    "  - {name: master-4, role: master, address: '%s'}\n"
                    "replace: [{old: master-3, new: master-4}]\n"
                    "join_command: curl -sf -X POST 'http://127.0.0.1:%d/join?node={node}'\n"
                    "%s"
                    "etcd: {endpoints: [%s]}\n"
                    "drain: {timeout: 20s, ignore_daemonsets: true}\n"
                    "timeouts: {node_ready: 5s, backend_drain: 10s, command: 30s, gate: 30s}\n"
                    "soak: 1s\nlease_ttl: 30s\n"
                    % (self.kubeconfig, self.admin, self.sim.info["listen"][3],
                       self.fixture.port, remove,
                       ", ".join(self.etcd.url(m) for m in tu.MASTERS)))
        return plan

    def test_kubelet_still_running(self):
        rc, out, err = self.lbctl("migrate", self.plan(""), "--dry-run")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("remove_command: missing", err)

        # "Uninstalls" nothing: the etcd member is gone (etcd-remove), the
        # apiserver down, but the kubelet still posts Ready.
        plan = self.plan("remove_command: curl -sf -X POST "
                         "'http://127.0.0.1:%d/remove?node={node}' && curl -sf -X POST "
                         "'http://127.0.0.1:%d/kubelet_on?node={node}'\n"
                         % (self.fixture.port, self.fixture.port))
        self.start_watchers()
        rc, out, err = self.lbctl("migrate", plan)
        self.assertEqual(rc, 4, out + err)
        self.assertIn("master-3: still Ready 5s after remove_command: its kubelet runs", err)
        self.assertIn("Nothing was deleted", err)
        self.assertIn("master-3", self.sim.state()["nodes"], "the Node was deleted")
        self.client.finish()
        self.assertEqual(self.client.failed, [], "requests through the VIP failed")


KURED_TOKEN = "tok-master-2-kured-0123456789"


class TestAddKeepsGateRight(tu.UpgradeTest):
    """`add` of a master whose backend is named otherwise (vm-4). The new
    master joins under a master lease: while its join command runs (it waits
    for a file this test creates), master-2's own request for a lease, as
    kured would send it, is refused, naming master-4's lease; main granted it
    (two masters changing at once while etcd goes from 3 to 4 members). Main
    also finished with the gate's etcd endpoints and members stale. Now the
    run stops at gate-members with the YAML edit, the lease still held, and
    finishes once lbd has reloaded it; then the lease is gone and master-2
    gets its own."""
    listeners = 4

    def lbd_cfg(self):
        """test_upgrade's config, a token for master-2 (kured's) and the gate
        listener of the first call kept (gate.listen needs a restart)."""
        cfg = super().lbd_cfg()
        with open(cfg["gate"]["tokens_file"], "a") as f:
            f.write("master-2 %s\n" % KURED_TOKEN)
        if not hasattr(self, "gate_listen"):
            self.gate_listen = cfg["gate"]["listen"]
        cfg["gate"]["listen"] = self.gate_listen
        return cfg

    def kured_asks(self):
        """POST /v1/gate/leases for master-2 with master-2's token."""
        host, port = self.gate_listen.rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=harness.T(10))
        try:
            c.request("POST", "/v1/gate/leases",
                      body=json.dumps({"node": "master-2", "role": "master",
                                       "reason": "kured reboot"}),
                      headers={"Content-Type": "application/json",
                               "Authorization": "Bearer " + KURED_TOKEN})
            r = c.getresponse()
            return r.status, json.loads(r.read() or b"null")
        finally:
            c.close()

    def lease_of(self, node):
        return {l["node"]: l for l in self.gate_status()["leases"]}.get(node)

    def test_add_master(self):
        plan = self.path("add.yaml")
        started, go = self.path("join-started"), self.path("join-go")
        # The join command runs detached from lbctl (it outlives it by design):
        # whatever happens to the test, it is let go before the files go away,
        # and it waits 60 s at most.
        self.addCleanup(lambda: os.path.isdir(os.path.dirname(go)) and open(go, "a").close())
        with open(plan, "w") as f:
            f.write("kind: migration\nkubeconfig: %s\nlbd: {socket: %s}\npool: masters\n"
                    "nodes:\n"
                    "  - {name: master-1, role: master}\n"
                    "  - {name: master-4, role: master, backend: vm-4, address: '%s'}\n"
                    "add: [master-4]\n"
                    "join_command: touch %s; for i in $(seq 600); do [ -e %s ] && break; "
                    "sleep 0.1; done; "
                    "curl -sf -X POST 'http://127.0.0.1:%d/join?node={node}'\n"
                    "etcd: {endpoints: [%s]}\n"
                    "timeouts: {node_ready: 30s, backend_drain: 10s, command: 60s, gate: 30s}\n"
                    "soak: 1s\nlease_ttl: 30s\n"
                    % (self.kubeconfig, self.admin, self.sim.info["listen"][3], started, go,
                       self.fixture.port, ", ".join(self.etcd.url(m) for m in tu.MASTERS)))
        rc, out, err = self.lbctl("-o", "json", "migrate", plan, "--dry-run")
        self.assertEqual(rc, 0, out + err)
        dry = {n["name"]: n for n in json.loads(out)["nodes"]}
        self.assertEqual([s["step"] for s in dry["master-4"]["steps"]],
                         ["lease", "join", "joined", "backend-add", "backend-up",
                          "gate-members", "release"])
        self.assertEqual(dry["master-4"]["gate"],
                         "would be GRANTED (asked before it joins, by the master rules)")

        self.start_watchers()
        run = self.spawn("lbctl-migrate", [tu.LBCTL, "migrate", plan], cwd=self.tmp)
        harness.wait_for(lambda: os.path.exists(started) or run.poll() is not None,
                         harness.T(30), "the join command to start")
        self.assertIsNone(run.poll(), self.run_log(run))
        st, a = self.kured_asks()
        self.assertEqual(st, 409, "another master got a lease while master-4 joins: %s" % a)
        self.assertIn("master-0 held by master-4", "; ".join(a["reasons"]))
        lease = self.lease_of("master-4")
        self.assertEqual((lease["role"], lease["holder"][:18]), ("master", "lbctl migrate run "))
        # lbctl gate status says what another joining master would get now
        rc, out, err = self.lbctl("--socket", self.admin, "gate", "status")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("master (a joining master): would be REFUSED", out)

        with open(go, "w"):
            pass
        self.assertEqual(run.wait(harness.T(120)), 3, self.run_log(run))
        err = self.run_log(run)
        url4 = self.etcd.url("master-4")
        self.assertIn("master-4: the gate's config no longer matches the cluster", err)
        self.assertIn("        endpoints:\n          - %s   # add (etcd member master-4)\n"
                      "    members:\n      master-4: {backend: vm-4, etcd: master-4}   # add\n"
                      "  pools:   # the backend lbctl added, so that members can name it\n"
                      "    - name: masters\n      backends:\n"
                      "        - {name: vm-4, address: '%s'}   # add\n"
                      % (url4, self.sim.info["listen"][3]), err)
        st = self.gate_status()
        self.assertNotIn(url4, st["inputs"]["etcd"]["configured_endpoints"])
        self.assertIn("vm-4", [d["node"] for d in st["master"]])
        # Stopped for the operator's edit: the lease stays, and so does the refusal.
        self.assertIsNotNone(self.lease_of("master-4"), "the lease went with the stop")
        st, a = self.kured_asks()
        self.assertEqual(st, 409, a)

        cfg = self.lbd_cfg()
        cfg["gate"]["quorum"]["etcd"]["endpoints"].append(url4)
        cfg["gate"]["members"] = {"master-4": {"backend": "vm-4", "etcd": "master-4"}}
        cfg["pools"][0]["backends"].append(
            {"name": "vm-4", "address": self.sim.info["listen"][3], "weight": 1})
        self.write_config(cfg)
        rc, out, err = self.lbctl("--socket", self.admin, "reload")
        self.assertEqual(rc, 0, out + err)
        harness.wait_for(
            lambda: url4 in self.gate_status()["inputs"]["etcd"]["configured_endpoints"],
            harness.T(10), "the gate to count master-4's etcd endpoint")
        self.wait_gate_ready()
        rc, out, err = self.lbctl("migrate", plan, "--resume")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("gate-members: done: the gate's etcd endpoints and members follow", out + err)
        self.assertIn("master-4 release: done: released", out + err)
        self.assertIsNone(self.lease_of("master-4"), "the run left its lease")
        masters = [d["node"] for d in self.gate_status()["master"]]
        self.assertIn("master-4", masters)
        self.assertNotIn("vm-4", masters)
        st, a = self.kured_asks()
        self.assertEqual(st, 201, a)
        self.client.finish()
        self.assertEqual(self.client.failed, [], "requests through the VIP failed")

    def run_log(self, run):
        with open(run.log_path, errors="replace") as f:
            return f.read()


def kubelet_on(self, q):
    """The fixture's remove left the kubelet running after all."""
    self.tc.sim.call("/sim/nodes/" + q["node"], {"ready": True})


tu.Fixture.kubelet_on = kubelet_on


if __name__ == "__main__":
    unittest.main()
