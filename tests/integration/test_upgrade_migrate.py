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


class TestAddKeepsGateRight(tu.UpgradeTest):
    """`add` of a master whose backend is named otherwise (vm-4): main finished
    with the gate's etcd endpoints and members stale. Now the run stops at
    gate-members with the YAML edit, and finishes once lbd has reloaded it."""
    listeners = 4

    def test_add_master(self):
        plan = self.path("add.yaml")
        with open(plan, "w") as f:
            f.write("kind: migration\nkubeconfig: %s\nlbd: {socket: %s}\npool: masters\n"
                    "nodes:\n"
                    "  - {name: master-1, role: master}\n"
                    "  - {name: master-4, role: master, backend: vm-4, address: '%s'}\n"
                    "add: [master-4]\n"
                    "join_command: curl -sf -X POST 'http://127.0.0.1:%d/join?node={node}'\n"
                    "etcd: {endpoints: [%s]}\n"
                    "timeouts: {node_ready: 30s, backend_drain: 10s, command: 30s, gate: 30s}\n"
                    "soak: 1s\nlease_ttl: 30s\n"
                    % (self.kubeconfig, self.admin, self.sim.info["listen"][3],
                       self.fixture.port, ", ".join(self.etcd.url(m) for m in tu.MASTERS)))
        self.start_watchers()
        rc, out, err = self.lbctl("migrate", plan)
        self.assertEqual(rc, 3, out + err + "\nfixture: %s" % self.fixture.errors)
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
        masters = [d["node"] for d in self.gate_status()["master"]]
        self.assertIn("master-4", masters)
        self.assertNotIn("vm-4", masters)
        self.client.finish()
        self.assertEqual(self.client.failed, [], "requests through the VIP failed")


def kubelet_on(self, q):
    """The fixture's remove left the kubelet running after all."""
    self.tc.sim.call("/sim/nodes/" + q["node"], {"ready": True})


tu.Fixture.kubelet_on = kubelet_on


if __name__ == "__main__":
    unittest.main()
