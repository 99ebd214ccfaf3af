"""test_fleetlock.py - the FleetLock protocol on gate.listen.

The client here is written from the protocol text (coreos/zincati,
docs/development/fleetlock/protocol.md), not from the server: a POST to
<base>/v1/pre-reboot or <base>/v1/steady-state with the header
"fleet-lock-protocol: true" and the body {"client_params": {"id", "group"}};
200 is success, anything else a failure whose JSON body is {"kind", "value"}.
The gate adds its bearer token (gate.listen admits no one without one).

kubesim with three apiservers (the masters) and two workers, lbd with its
pool over the apiservers and a gate capping workers at one; no etcd (the
roles come from the pool and the node labels).
"""

import http.client
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_gate as tg  # noqa: E402  (as a module: its tests are not run twice)


class FleetLockClient:
    """What a FleetLock client sends, per the protocol text."""

    def __init__(self, port, node_id, group, token):
        self.port, self.id, self.group, self.token = port, node_id, group, token

    def post(self, op, header=True, body=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=harness.T(20))
        hdrs = {"Content-Type": "application/json"}
        if header:
            hdrs["fleet-lock-protocol"] = "true"
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        if body is None:
            body = {"client_params": {"group": self.group, "id": self.id}}
        c.request("POST", "/v1/" + op, body=json.dumps(body), headers=hdrs)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else None

    def pre_reboot(self, **kw):
        return self.post("pre-reboot", **kw)

    def steady_state(self, **kw):
        return self.post("steady-state", **kw)


class TestFleetLock(tg.GateTest):
    etcd_members = False

    def setUp(self):
        super().setUp()
        self.p = self.start_gate(self.gate_config())
        self.wait_all_known(self.p)

    def client(self, node, group, token=None):
        return FleetLockClient(self.p.gate_port, node, group, token or tg.token_of(node))

    def assert_error(self, ans, kind=None):
        """A failure's body is {"kind", "value"}, both non-empty strings."""
        self.assertIsInstance(ans, dict, ans)
        self.assertIsInstance(ans.get("kind"), str, ans)
        self.assertIsInstance(ans.get("value"), str, ans)
        self.assertTrue(ans["kind"] and ans["value"], ans)
        if kind:
            self.assertEqual(ans["kind"], kind, ans)

    def leases(self):
        st, ls = self.call(self.p, "GET", "/v1/gate/leases")
        self.assertEqual(st, 200, ls)
        return {l["node"]: l for l in ls["leases"]}

    def test_two_workers_one_slot(self):
        a = self.client("worker-1", "workers")
        b = self.client("worker-2", "workers")
        # Initialization: unlock if held, when nothing is held, succeeds.
        st, ans = a.steady_state()
        self.assertEqual(st, 200, ans)
        st, ans = a.pre_reboot()
        self.assertEqual(st, 200, ans)
        lease = self.leases()["worker-1"]
        self.assertEqual(lease["holder"], "fleetlock/worker-1")
        self.assertEqual(lease["role"], "worker")
        self.assertFalse(lease["release_on_outcomes"])
        # Recursive: locking again renews the same lease.
        st, ans = a.pre_reboot()
        self.assertEqual(st, 200, ans)
        self.assertEqual(self.leases()["worker-1"]["fence"], lease["fence"])
        # The one worker slot is taken: B is refused, with a protocol error.
        st, ans = b.pre_reboot()
        self.assertGreaterEqual(st, 400, ans)
        self.assert_error(ans, "failed_lock_semaphore_full")
        self.assertIn("concurrency: 1 of 1 worker slot(s) taken", ans["value"])
        # B cannot unlock A's slot (the token acts for its node only).
        st, ans = b.post("steady-state", body={"client_params": {"id": "worker-1",
                                                                 "group": "workers"}})
        self.assertEqual(st, 403, ans)
        self.assert_error(ans, "forbidden")
        # A is back: it unlocks, and B gets the slot.
        st, ans = a.steady_state()
        self.assertEqual(st, 200, ans)
        self.assertNotIn("worker-1", self.leases())
        st, ans = a.steady_state()  # unlock if held: again is fine
        self.assertEqual(st, 200, ans)
        st, ans = b.pre_reboot()
        self.assertEqual(st, 200, ans)
        self.assertEqual(self.leases()["worker-2"]["holder"], "fleetlock/worker-2")
        self.assertGreater(self.leases()["worker-2"]["fence"], lease["fence"])

    def test_protocol_errors(self):
        a = self.client("worker-1", "workers")
        st, ans = a.pre_reboot(header=False)
        self.assertEqual(st, 400, ans)
        self.assert_error(ans)
        self.assertIn("fleet-lock-protocol", ans["value"])
        self.assertEqual(self.leases(), {})
        st, ans = a.post("pre-reboot", body={"client_params": {"id": "worker-1"}})
        self.assertEqual(st, 400, ans)
        self.assert_error(ans, "bad_request")
        st, ans = self.client("worker-1", "blue").pre_reboot()
        self.assertEqual(st, 400, ans)
        self.assert_error(ans, "bad_request")
        self.assertIn("masters", ans["value"])
        # gate.listen's tokens: none, or another node's, is refused.
        st, ans = FleetLockClient(self.p.gate_port, "worker-1", "workers", None).pre_reboot()
        self.assertEqual(st, 401, ans)
        self.assert_error(ans, "unauthorized")
        st, ans = self.client("worker-1", "workers", token=tg.token_of("worker-2")).pre_reboot()
        self.assertEqual(st, 403, ans)
        self.assert_error(ans, "forbidden")
        self.assertEqual(self.leases(), {})
        # An admin token may act for any node.
        st, ans = self.client("worker-1", "workers", token=tg.ADMIN_TOKEN).pre_reboot()
        self.assertEqual(st, 200, ans)

    def test_group_must_match_the_role(self):
        # master-1 is a master (a backend of the pool, a control-plane node):
        # asking as a worker is refused, as a master is granted.
        st, ans = self.client("master-1", "workers").pre_reboot()
        self.assertEqual(st, 409, ans)
        self.assert_error(ans, "failed_lock_role")
        self.assertIn("master-1 is a master", ans["value"])
        st, ans = self.client("worker-1", "masters").pre_reboot()
        self.assertEqual(st, 409, ans)
        self.assert_error(ans, "failed_lock_role")
        self.assertEqual(self.leases(), {})
        st, ans = self.client("master-1", "control-plane").pre_reboot()
        self.assertEqual(st, 200, ans)
        self.assertEqual(self.leases()["master-1"]["role"], "master")

    def test_another_holders_lease_is_left_alone(self):
        # worker-1 holds a lease through the gate API (holder node/worker-1):
        # FleetLock neither renews nor takes it, and unlock leaves it be,
        # even with an admin token.
        st, ans = self.call(self.p, "POST", "/v1/gate/leases", {"node": "worker-1"},
                            tg.token_of("worker-1"))
        self.assertEqual(st, 201, ans)
        for token in (None, tg.ADMIN_TOKEN):
            st, ans = self.client("worker-1", "workers", token=token).pre_reboot()
            self.assertEqual(st, 409, ans)
            self.assert_error(ans, "failed_lock_held")
            self.assertIn("node/worker-1", ans["value"])
            st, ans = self.client("worker-1", "workers", token=token).steady_state()
            self.assertEqual(st, 200, ans)
        self.assertEqual(self.leases()["worker-1"]["holder"], "node/worker-1")


if __name__ == "__main__":
    unittest.main()
