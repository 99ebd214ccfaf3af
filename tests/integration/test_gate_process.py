"""test_gate_process.py - the gate as a supervised child process, and lbd's
listeners and lease store under abuse (issue 12, docs: design-gate-process).

What lbd promises here, each test one promise:
  - the lease store answering garbage, hanging or resetting never kills lbd,
    never slows its admin socket, never stops the VIP;
  - start-up does not depend on the apiserver (the store is "unknown" until
    it answers, and lease requests are refused meanwhile, with the reason);
  - kill -9 of the gate process: lbd restarts it, leases and fences survive,
    the VIP never notices;
  - gate.listen is bounded (max_connections, request_timeout) and a flood of
    slow clients there costs the VIP and the admin socket nothing;
  - out of file descriptors, every listener backs off instead of spinning;
  - an unreadable gate-leases.json: lbd starts anyway; -F sets it aside and
    fences keep rising;
  - layering: gate/ and kube/ include nothing from lbd/, liblow.a needs
    nothing from liblbd.a.

Backends are tests/sim/apiserver.py over TLS, the misbehaving apiserver is
tests/sim/badapi.py, the well-behaved one tests/sim/kubesim.py. Every process
is started per test and killed by PID; every wait is a bounded poll.

Status fields read (design): GET /v1/status -> gate.{state, pid, restarts,
last_exit}; GET /v1/gate/status -> store (its name), store_known, store_error.
"""

import base64
import errno
import glob
import http.client
import importlib.util
import json
import math
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, T, wait_for  # noqa: E402

SIM = os.path.join(harness.ROOT, "tests", "sim")
BADAPI = os.path.join(SIM, "badapi.py")
KUBESIM = os.path.join(SIM, "kubesim.py")
ADMIN_TOKEN = "gp-admin-token-0123456789"
KUBE_TOKEN = "gp-kubesim-token-0123456789"
MASTERS = ["master-1", "master-2"]
WORKERS = ["worker-1", "worker-2", "worker-3"]


def token_of(node):
    return "tok-%s-0123456789" % node


def kubesim_module():
    """tests/sim/kubesim.py as a module, for its PKI and kubeconfig writers."""
    spec = importlib.util.spec_from_file_location("kubesim", KUBESIM)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class BadApi:
    """A running tests/sim/badapi.py."""

    def __init__(self, proc, port, control):
        self.proc, self.port, self.control_port = proc, port, control

    def call(self, method, route):
        c = http.client.HTTPConnection(LOOPBACK, self.control_port, timeout=T(5))
        try:
            c.request(method, route)
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise AssertionError("badapi %s %s: %d %s" % (method, route, r.status, body))
            return json.loads(body)
        finally:
            c.close()

    def mode(self, m):
        return self.call("POST", "/mode/" + m)

    def stats(self):
        return self.call("GET", "/stats")


class TestGateProcess(harness.TestCase):
    # test_store_garbage_never_kills_lbd: badapi's modes, in order, and seconds in each.
    STORE_PHASES = (("garbage", 6), ("hang", 10), ("reset", 5))

    def setUp(self):
        super().setUp()
        self.tokens = self.path("gate-tokens")
        with open(self.tokens, "w") as f:
            f.write("# node token\n* %s\n" % ADMIN_TOKEN)
            for n in MASTERS + WORKERS:
                f.write("%s %s\n" % (n, token_of(n)))
        os.chmod(self.tokens, 0o600)
        self.masters = None  # started by config(): test_layering needs none

    # -- lbd with a gate

    def config(self, gate=None, extra=None):
        if self.masters is None:
            self.masters = [self.start_apiserver(m) for m in MASTERS]
        cfg = self.lbd_config(self.masters, name="vip", extra=extra)
        g = {"listen": "%s:%d" % (LOOPBACK, harness.free_port()), "tokens_file": self.tokens,
             "quorum": {"pool": "vip"}, "concurrency": {"masters": 1, "workers": len(WORKERS)}}
        g.update(gate or {})
        cfg["gate"] = g
        return cfg

    def start(self, cfg, **kw):
        p = self.start_lbd(cfg, wait_up=["vip/" + m for m in MASTERS], **kw)
        p.admin_sock = cfg["admin"]["socket"]
        p.vip_port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        listen = cfg.get("gate", {}).get("listen")
        p.gate_port = int(listen.rsplit(":", 1)[1]) if listen else None
        return p

    def admin(self, p, method, path, body=None, timeout=None):
        st, _, parsed = harness.admin_request(p.admin_sock, method, path, body, timeout=timeout)
        return st, parsed

    def gate_call(self, p, method, path, body=None, token=ADMIN_TOKEN, timeout=None):
        c = http.client.HTTPConnection(LOOPBACK, p.gate_port, timeout=timeout or T(10))
        try:
            hdrs = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers=hdrs)
            r = c.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else None
        finally:
            c.close()

    def lease(self, p, node, role="worker", timeout=None):
        return self.admin(p, "POST", "/v1/gate/leases",
                          {"node": node, "role": role, "reason": "test_gate_process"},
                          timeout=timeout)

    def ask(self, p, node, want, timeout=None):
        """POST worker node's lease until the answer's status is want (the gate
        process may still be starting: 503); returns that answer."""
        last = []

        def got():
            st, a = self.lease(p, node)
            last[:] = [st, a]
            return a if st == want else None
        try:
            return wait_for(got, timeout or T(10), "a %d for %s's lease" % (want, node))
        except harness.WaitTimeout as e:
            self.fail("%s; last answer: %r" % (e, last))

    def release(self, p, node):
        return self.admin(p, "DELETE", "/v1/gate/leases/" + node)

    def vip_get(self, p):
        st, h, body = harness.http_get(LOOPBACK, p.vip_port, "/version", tls=True, timeout=T(5))
        if st != 200:
            raise AssertionError("VIP answered %d: %r" % (st, body[:200]))
        return h.get("x-backend")

    def loop(self, name, fn, interval, keep=False):
        lp = harness.Loop(name, fn, interval, keep)
        self.addCleanup(lp.stop)
        return lp

    def lbd_gate(self, p):
        """GET /v1/status -> its "gate" object; fails the test if there is none."""
        st, s = self.admin(p, "GET", "/v1/status")
        self.assertEqual(st, 200, s)
        g = s.get("gate") if isinstance(s, dict) else None
        if not isinstance(g, dict) or not isinstance(g.get("pid"), int):
            self.fail("GET /v1/status has no gate.pid: the gate does not run as a child "
                      "process (status keys: %s)" % (sorted(s) if isinstance(s, dict) else s))
        return g

    def reasons(self, ans):
        return "\n".join(ans.get("reasons", [])) if isinstance(ans, dict) else repr(ans)

    def start_badapi(self, mode="ok"):
        ready = self.path("badapi.ready")
        c = harness.certs()
        proc = self.spawn("badapi", [harness.PYTHON, BADAPI, "--listen", "%s:0" % LOOPBACK,
                                     "--control", "%s:0" % LOOPBACK, "--cert", c["cert"],
                                     "--key", c["key"], "--mode", mode, "--ready-file", ready])
        wait_for(lambda: os.path.exists(ready) or proc.poll() is not None, T(10), "badapi ready")
        if proc.poll() is not None:
            self.fail("badapi exited: %s" % proc.log.tail())
        with open(ready) as f:
            info = json.load(f)
        return BadApi(proc, info["port"], info["control"])

    def write_kubeconfig(self, server, ca, token):
        path = self.path("kubeconfig")
        with open(ca) as f:
            ca_pem = f.read()
        kc = {"apiVersion": "v1", "kind": "Config",
              "clusters": [{"name": "c", "cluster": {
                  "server": server,
                  "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode()}}],
              "users": [{"name": "u", "user": {"token": token}}],
              "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
              "current-context": "x"}
        with open(path, "w") as f:
            f.write(harness.to_yaml(kc))
        os.chmod(path, 0o600)
        return path

    # ------------------------------------------------------------------ 1

    def test_store_garbage_never_kills_lbd(self):
        # badapi starts well-behaved, so this measures a store going bad under
        # a running lbd (start-up with the store down: the next test).
        bad = self.start_badapi("ok")
        kc = self.write_kubeconfig("https://%s:%d" % (LOOPBACK, bad.port), harness.certs()["ca"],
                                   KUBE_TOKEN)
        p = self.start(self.config({"store": "kubernetes", "kubeconfig": kc}))
        wait_for(lambda: self.admin(p, "GET", "/v1/gate/status")[0] == 200, T(10),
                 "the gate to answer on the admin socket")

        vip = self.loop("vip", lambda: self.vip_get(p), 0.05)
        latencies = []

        def status():
            t0 = time.monotonic()
            st, s = self.admin(p, "GET", "/v1/status", timeout=T(10))
            latencies.append(time.monotonic() - t0)
            if st != 200:
                raise AssertionError("GET /v1/status: %d %r" % (st, s))
        poll = self.loop("status", status, 0.1)
        answers = []

        def gate_requests():
            # The store is exercised: a lease request, then the gate's status
            # (both read the store). Each must be answered, in valid JSON.
            for method, path, body in (("POST", "/v1/gate/leases",
                                        {"node": "worker-1", "role": "worker", "reason": "t"}),
                                       ("GET", "/v1/gate/status", None)):
                st, s = self.admin(p, method, path, body, timeout=T(30))
                answers.append((method, st))
                if st not in (200, 201, 409, 503) or not isinstance(s, dict):
                    raise AssertionError("%s %s: %d %r" % (method, path, st, s))
        gate = self.loop("gate", gate_requests, 0.2)

        died = None
        seen = {}
        for mode, secs in self.STORE_PHASES:
            before = bad.stats()
            bad.mode(mode)
            end = time.monotonic() + secs
            while time.monotonic() < end and died is None:
                if p.poll() is not None:
                    died = "lbd exited (%s) during the %s phase" % (p.poll(), mode)
                time.sleep(0.1)
            after = bad.stats()
            seen[mode] = (after["requests"].get(mode, 0) - before["requests"].get(mode, 0),
                          after["accepted"] - before["accepted"])
            if died:
                break
        for lp in (vip, poll, gate):
            lp.stop()
        harness.note("badapi requests per phase (requests, connections): %s; VIP %d ok; "
                     "status max %.1f ms; gate answers %s", seen, vip.ok,
                     1000 * max(latencies or [0]), sorted(set(answers)))

        self.assertIsNone(died, "%s; log tail:\n%s" % (died, p.log.tail()))
        self.assertIsNone(p.poll(), "lbd exited")
        # The store was exercised in every phase, or the test proves nothing.
        for mode, (requests, connections) in seen.items():
            self.assertGreater(connections if mode == "reset" else requests, 0,
                               "the store was not asked during the %s phase: %s" % (mode, seen))
        total = sum(secs for _, secs in self.STORE_PHASES)
        self.assertEqual(vip.errors, [], "VIP requests failed")
        self.assertGreater(vip.ok, 2 * total)
        self.assertEqual(poll.errors, [], "GET /v1/status failed")
        self.assertLess(max(latencies), T(0.1),
                        "GET /v1/status took %.0f ms at worst (the store must never stall "
                        "the admin socket)" % (1000 * max(latencies)))
        self.assertGreater(len(latencies), 3 * total)
        self.assertEqual(gate.errors, [], "gate requests on the admin socket")
        self.assertGreater(gate.ok, 0)
        # The gate itself never died of it either.
        g = self.lbd_gate(p)
        self.assertEqual((g.get("state"), g.get("restarts")), ("running", 0), g)
        # And when the store answers again, it is known again.
        bad.mode("ok")
        wait_for(lambda: self.admin(p, "GET", "/v1/gate/status")[1].get("store_known"), T(10),
                 "the kubernetes store to be known again")

    # ------------------------------------------------------------------ 2

    def test_start_with_apiserver_down(self):
        ks = kubesim_module()
        port = harness.free_port()
        pki = self.path("pki")
        os.makedirs(pki)
        ks.make_pki(pki)
        kc = self.path("kubeconfig")
        ks.write_kubeconfig(kc, "%s:%d" % (LOOPBACK, port), pki, KUBE_TOKEN, "token")
        scenario = self.path("scenario.json")
        with open(scenario, "w") as f:
            json.dump({"nodes": [{"name": m, "roles": ["control-plane", "etcd", "master"]}
                                 for m in MASTERS] + [{"name": w} for w in WORKERS],
                       "pods": [], "pdbs": []}, f)

        # Nothing listens on the apiserver's port: lbd starts and relays anyway.
        p = self.start(self.config({"store": "kubernetes", "kubeconfig": kc}))
        self.vip_get(p)
        vip = self.loop("vip", lambda: self.vip_get(p), 0.05)

        a = self.ask(p, "worker-1", 409)
        self.assertFalse(a.get("granted"), a)
        self.assertRegex(self.reasons(a), r"(?i)\bstore\b.*\bunknown\b")
        st, s = self.admin(p, "GET", "/v1/gate/status")
        self.assertEqual(st, 200, s)
        self.assertEqual((s.get("store"), s.get("store_known")), ("kubernetes", False), s)
        self.assertTrue(s.get("store_error"), s)

        # The apiserver comes up on that port: the gate grants, within a bound.
        ready = self.path("kubesim.ready")
        self.spawn("kubesim", [harness.PYTHON, KUBESIM, "--listen", "%s:%d" % (LOOPBACK, port),
                               "--control", "%s:0" % LOOPBACK, "--pki-dir", pki,
                               "--token", KUBE_TOKEN, "--scenario", scenario,
                               "--ready-file", ready, "--delete-delay", "0.2"])
        wait_for(lambda: os.path.exists(ready), T(20), "kubesim ready")
        a = self.ask(p, "worker-1", 201, timeout=T(20))
        self.assertEqual(a["lease"]["node"], "worker-1")
        with open(ready) as f:
            control = json.load(f)["control"]
        c = http.client.HTTPConnection(LOOPBACK, int(control.rsplit(":", 1)[1]), timeout=T(5))
        c.request("GET", "/sim/state")
        leases = json.loads(c.getresponse().read())["leases"]
        c.close()
        held = [v["spec"].get("holderIdentity") for k, v in leases.items()
                if k.rsplit("/", 1)[-1].startswith("lbd-gate-worker-")]
        self.assertIn("worker-1", held, leases)
        vip.stop()
        self.assertEqual(vip.errors, [])
        self.assertGreater(vip.ok, 0)

    # ------------------------------------------------------------------ 3

    def test_kill9_gate_process(self):
        p = self.start(self.config())
        fence = self.ask(p, "worker-1", 201)["lease"]["fence"]
        g = self.lbd_gate(p)
        pid = g["pid"]
        # Only ever a child of the lbd this test started, and never lbd itself.
        self.assertNotEqual(pid, p.pid)
        self.assertIn(pid, harness.proc_children(p.pid), "gate.pid %d is not a child of lbd" % pid)
        with open("/proc/%d/comm" % pid) as f:
            self.assertEqual(f.read().strip(), "lbd-gate")

        vip = self.loop("vip", lambda: self.vip_get(p), 0.02)
        wait_for(lambda: vip.ok >= 10, T(10), "the VIP loop going")
        mark = p.log.mark()
        os.kill(pid, signal.SIGKILL)
        t0 = time.monotonic()

        def leases_back():
            st, ls = self.admin(p, "GET", "/v1/gate/leases", timeout=T(2))
            if st != 200:
                return None
            return {l["node"]: l["fence"] for l in ls["leases"]}
        got = wait_for(leases_back, T(2), "the gate to answer again after kill -9")
        took = time.monotonic() - t0
        self.assertEqual(got, {"worker-1": fence})
        p.log.wait(r"gate: process %d killed by signal 9; restarting in" % pid, T(2), since=mark,
                   proc=p)
        g2 = self.lbd_gate(p)
        self.assertNotEqual(g2["pid"], pid, g2)
        self.assertGreaterEqual(g2["restarts"], 1, g2)
        self.assertEqual(g2["state"], "running", g2)
        self.assertIn("signal 9", g2.get("last_exit") or "", g2)
        # gate.listen (held by lbd meanwhile) answers too, and the dead child was reaped.
        st, ls = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(
            self.gate_call(p, "GET", "/v1/gate/leases", timeout=T(2))), T(2), "gate.listen again")
        self.assertEqual([(l["node"], l["fence"]) for l in ls["leases"]], [("worker-1", fence)])
        wait_for(lambda: pid not in harness.proc_children(p.pid), T(2), "the killed gate reaped")
        # Fencing goes on from where it was.
        st, b = self.lease(p, "worker-2")
        self.assertEqual(st, 201, b)
        self.assertGreater(b["lease"]["fence"], fence)
        n = vip.ok
        wait_for(lambda: vip.ok >= n + 10, T(10), "more VIP requests after the restart")
        vip.stop()
        harness.note("gate answered %.0f ms after kill -9; VIP %d ok", 1000 * took, vip.ok)
        self.assertEqual(vip.errors, [], "VIP requests failed around the gate's kill -9")
        self.assertIsNone(p.poll())

    # ------------------------------------------------------------------ 4

    def test_slow_gate_connections(self):
        # The deadline scales with the build (sanitizers slow lbd down), so
        # "closed at once" (within 1 s) and "held until the deadline" stay apart.
        n_conns, cap, timeout_s = 1000, 16, T(2.0) * 2
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = n_conns + 500
        if hard != resource.RLIM_INFINITY and hard < want:
            harness.skip_capability("RLIMIT_NOFILE hard limit >= %d" % want,
                                    "it is %d: cannot open %d connections" % (hard, n_conns))
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        p = self.start(self.config({"max_connections": cap,
                                    "request_timeout": "%dms" % int(timeout_s * 1000)}))
        st, _ = self.gate_call(p, "GET", "/v1/gate/status")
        self.assertEqual(st, 200)

        vip = self.loop("vip", lambda: self.vip_get(p), 0.05)
        latencies, pools_down = [], []

        def status():
            t0 = time.monotonic()
            st, s = self.admin(p, "GET", "/v1/status", timeout=T(10))
            latencies.append(time.monotonic() - t0)
            if st != 200:
                raise AssertionError("GET /v1/status: %d %r" % (st, s))
            for pl in s["pools"]:
                if pl["up"] != pl["backends"]:
                    pools_down.append((time.monotonic(), pl))
        poll = self.loop("status", status, 0.1)
        mark = p.log.mark()

        # The flood: n_conns connections, 100 every 100 ms, each sending one
        # byte of a request every second; the server must cut them all.
        request = b"GET /v1/gate/status HTTP/1.1\r\nHost: gate\r\nAuthorization: Bearer %s\r\n" \
            % ADMIN_TOKEN.encode()
        sel = selectors.DefaultSelector()
        conns = []  # dicts: s, t_open, t_conn, t_closed, sent, next_send, how
        t_start = time.monotonic()
        deadline = t_start + T(8) + timeout_s
        try:
            while True:
                now = time.monotonic()
                while len(conns) < n_conns and len(conns) < 100 * (1 + int((now - t_start) / 0.1)):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    c = {"s": s, "t_open": now, "t_conn": None, "t_closed": None, "sent": 0,
                         "next_send": now, "how": None}
                    err = s.connect_ex((LOOPBACK, p.gate_port))
                    conns.append(c)
                    if err in (0, errno.EINPROGRESS):
                        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                    else:
                        c["t_closed"], c["how"] = now, "connect: %s" % os.strerror(err)
                        s.close()
                for key, ev in sel.select(timeout=0.05):
                    c = key.data
                    now = time.monotonic()
                    if c["t_conn"] is None:
                        err = c["s"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if err:
                            self._closed(sel, c, now, "connect: %s" % os.strerror(err))
                            continue
                        c["t_conn"] = now
                        sel.modify(c["s"], selectors.EVENT_READ, c)
                        continue
                    try:
                        d = c["s"].recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        self._closed(sel, c, now, "recv: %s" % e.strerror)
                        continue
                    if not d:
                        self._closed(sel, c, now, "EOF")
                now = time.monotonic()
                for c in conns:
                    if c["t_conn"] is not None and c["t_closed"] is None and now >= c["next_send"]:
                        try:
                            c["s"].send(request[c["sent"] % len(request):][:1])
                            c["sent"] += 1
                        except BlockingIOError:
                            pass
                        except OSError as e:
                            self._closed(sel, c, now, "send: %s" % e.strerror)
                            continue
                        c["next_send"] = now + 1.0
                done = len(conns) == n_conns and all(c["t_closed"] is not None for c in conns)
                if done or now > deadline or p.poll() is not None:
                    break
        finally:
            for c in conns:
                if c["t_closed"] is None:
                    c["s"].close()
            sel.close()
        vip.stop()
        poll.stop()

        self.assertIsNone(p.poll(), "lbd exited: %s" % p.log.tail())
        still_open = [c for c in conns if c["t_closed"] is None]
        never = [c for c in conns if c["t_conn"] is None and c["t_closed"] is None]
        life = [c["t_closed"] - (c["t_conn"] or c["t_open"]) for c in conns
                if c["t_closed"] is not None]
        quick = [x for x in life if x <= T(1.0)]
        held = [x for x in life if x > T(1.0)]
        harness.note("slow conns: %d closed within 1 s, %d held (longest %.2f s), %d still open, "
                     "%d never connected; VIP %d ok; status max %.1f ms", len(quick), len(held),
                     max(life or [0]), len(still_open), len(never), vip.ok,
                     1000 * max(latencies or [0]))
        self.assertEqual(len(never), 0, "connections that never completed the handshake")
        self.assertEqual(len(still_open), 0,
                         "%d slow connections still open %.0f s after the flood began "
                         "(gate.request_timeout is %.0fs)" % (len(still_open), deadline - t_start,
                                                              timeout_s))
        self.assertLessEqual(len(held), cap, "connections beyond gate.max_connections %d were "
                             "held, not closed at once" % cap)
        self.assertGreaterEqual(len(held), 1, "no connection was ever accepted and held")
        self.assertGreaterEqual(len(quick), n_conns - cap)
        self.assertLessEqual(max(life), timeout_s + T(1.5),
                             "a slow connection outlived gate.request_timeout")
        self.assertEqual(vip.errors, [], "VIP requests failed during the flood")
        self.assertGreater(vip.ok, 5)
        self.assertEqual(poll.errors, [])
        self.assertLess(max(latencies), T(0.2), "GET /v1/status slow during the flood")
        self.assertEqual(pools_down, [], "the pool's backends went down during the flood")
        self.assertIsNone(p.log.find(r"is DOWN", mark), "a backend went DOWN")
        # The gate answers once the flood is gone.
        st, _ = self.gate_call(p, "GET", "/v1/gate/status")
        self.assertEqual(st, 200)

    @staticmethod
    def _closed(sel, c, now, how):
        c["t_closed"], c["how"] = now, how
        try:
            sel.unregister(c["s"])
        except (KeyError, ValueError):
            pass
        c["s"].close()

    # ------------------------------------------------------------------ 5

    def test_emfile_listeners_back_off(self):
        harness.require_binary("prlimit", "util-linux is Essential in Debian")
        admin_tok = self.path("admin-token")
        with open(admin_tok, "w") as f:
            f.write("emfile-admin-token-0123\n")
        os.chmod(admin_tok, 0o600)
        aport, mport = harness.free_port(), harness.free_port()
        cfg = self.config(extra={"threads": 1, "metrics": {"listen": "%s:%d" % (LOOPBACK, mport)}})
        cfg["admin"].update({"listen": "%s:%d" % (LOOPBACK, aport), "token_file": admin_tok})
        p = self.start(cfg)
        bearer = {"Authorization": "Bearer emfile-admin-token-0123"}
        gate_bearer = {"Authorization": "Bearer " + ADMIN_TOKEN}
        checks = {
            "admin socket": lambda: self.admin(p, "GET", "/v1/status", timeout=T(3))[0],
            "admin.listen": lambda: harness.http_get(LOOPBACK, aport, "/v1/status", tls=False,
                                                     timeout=T(3), headers=bearer)[0],
            "metrics.listen": lambda: harness.http_get(LOOPBACK, mport, "/metrics", tls=False,
                                                       timeout=T(3))[0],
            "gate.listen": lambda: harness.http_get(LOOPBACK, p.gate_port, "/v1/gate/status",
                                                    tls=False, timeout=T(3),
                                                    headers=gate_bearer)[0],
        }
        for name, fn in checks.items():
            wait_for(lambda: fn() == 200, T(10), "%s to answer" % name)
        self.vip_get(p)

        soft0, hard = harness.proc_nofile(p.pid)

        def prlimit(n):
            subprocess.run(["prlimit", "--pid", str(p.pid), "--nofile=%d:%d" % (n, hard)],
                           check=True, timeout=T(10))
        self.addCleanup(lambda: p.poll() is None and prlimit(soft0))
        held = []
        self.addCleanup(lambda: [s.close() for s in held])

        # Just above lbd's descriptors, then exhausted by VIP clients held open.
        prlimit(harness.proc_fd_count(p.pid) + 6)
        for _ in range(12):
            held.append(socket.create_connection((LOOPBACK, p.vip_port), timeout=T(5)))
        counts = []

        def settled():
            counts.append(harness.proc_fd_count(p.pid))
            return len(counts) > 5 and len(set(counts[-5:])) == 1
        wait_for(settled, T(5), "lbd's descriptor count to settle", interval=0.1)
        prlimit(counts[-1])  # no descriptor to spare, whatever the relay did with the extra ones

        # A client on every listener, its request sent: each listener is
        # readable and cannot accept.
        pending = {}
        for name, port, req in (
                ("admin.listen", aport, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer emfile-admin-token-0123\r\nConnection: close\r\n\r\n"),
                ("metrics.listen", mport, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                 b"Connection: close\r\n\r\n"),
                ("gate.listen", p.gate_port, b"GET /v1/gate/status HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
                 b"Connection: close\r\n\r\n")):
            s = socket.create_connection((LOOPBACK, port), timeout=T(5))
            s.sendall(req)
            pending[name] = s
            held.append(s)
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        u.settimeout(T(5))
        u.connect(p.admin_sock)
        u.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        pending["admin socket"] = u
        held.append(u)
        held.append(socket.create_connection((LOOPBACK, p.vip_port), timeout=T(5)))

        # Measure: 3 s of lbd's (and its children's) CPU, and its log.
        time.sleep(0.3)  # let the pending connections reach the listeners
        pids = [p.pid] + harness.proc_children(p.pid)
        mark = p.log.mark()
        cpu0 = sum(harness.proc_cpu_seconds(x) for x in pids)
        t0 = time.monotonic()
        time.sleep(3.0)  # the measurement window (not an assertion on timing)
        cpu1 = sum(harness.proc_cpu_seconds(x) for x in pids)
        window = time.monotonic() - t0
        lines = [line for line in p.log.lines(mark)
                 if not re.search(r"backend \S+ is (UP|DOWN)", line)]
        fds_at_end = harness.proc_fd_count(p.pid)

        # Give the descriptors back: every listener answers again, the
        # clients that waited in the backlog too.
        for s in held:
            if all(s is not x for x in pending.values()):
                s.close()
        prlimit(soft0)
        answers = {}
        for name, s in pending.items():
            s.settimeout(T(10))
            data = b""
            try:
                while len(data) < 12:
                    d = s.recv(4096)
                    if not d:
                        break
                    data += d
            except OSError as e:
                data += repr(e).encode()
            answers[name] = data[:12]
        for name, fn in checks.items():
            wait_for(lambda: fn() == 200, T(10), "%s to answer again" % name)
        wait_for(lambda: self.vip_get(p) or True, T(10), "the VIP to relay again")

        cpu = (cpu1 - cpu0) / window
        listeners = 5  # admin socket, admin.listen, metrics.listen, gate.listen, the frontend
        budget = listeners * (math.ceil(window) + 1)
        harness.note("EMFILE window %.1f s: CPU %.1f %% of a core (pids %s), %d log lines "
                     "(budget %d), fds %d", window, 100 * cpu, pids, len(lines), budget,
                     fds_at_end)
        self.assertIsNone(p.poll(), "lbd exited: %s" % p.log.tail())
        self.assertLess(cpu, 0.05 * harness.SLOW,
                        "lbd used %.0f %% of a core while out of descriptors: its listeners "
                        "spin instead of backing off" % (100 * cpu))
        self.assertLessEqual(len(lines), budget, "log lines while out of descriptors:\n%s"
                             % "\n".join(lines[:20]))
        for name, data in answers.items():
            self.assertTrue(data.startswith(b"HTTP/1.1 200"),
                            "%s: the client that waited got %r" % (name, data))

    # ------------------------------------------------------------------ 6

    def test_corrupt_gate_leases_with_F(self):
        cfg = self.config()
        leases_file = os.path.join(cfg["state_dir"], "gate-leases.json")
        fences = []
        p = self.start(cfg, name="lbd")
        for w in WORKERS:
            fences.append(self.ask(p, w, 201)["lease"]["fence"])
        for w in WORKERS[:2]:
            self.assertEqual(self.release(p, w)[0], 200)
        self.assertEqual(p.stop(), 0)
        with open(leases_file) as f:
            text = f.read()
        self.assertIn('"last_fence": %d' % max(fences), text)

        # Truncated in the middle of the leases, "last_fence" still readable.
        truncated = text[:text.index('"node"') + 4].encode()
        self.assertIn(b'"last_fence": %d' % max(fences), truncated)

        # Without -F: lbd starts and relays; the gate refuses, naming the file and -F.
        with open(leases_file, "wb") as f:
            f.write(truncated)
        p = self.start(cfg, name="lbd-noF")
        self.vip_get(p)
        a = self.ask(p, "worker-1", 409)
        self.assertIn("gate-leases.json", self.reasons(a))
        self.assertRegex(self.reasons(a), r"(^|\W)-F\b")
        self.assertEqual(glob.glob(leases_file + ".corrupt-*"), [], "set aside without -F")
        with open(leases_file, "rb") as f:
            self.assertEqual(f.read(), truncated, "the file was changed without -F")
        self.assertEqual(p.stop(), 0)

        # With -F: set aside, and the fence goes on above the high-water mark.
        for label, content in (("truncated", truncated),
                               ("garbage", b"\x00\xff\xfe garbage {{{ \xe2\x82" * 40)):
            with open(leases_file, "wb") as f:
                f.write(content)
            for old in glob.glob(leases_file + ".corrupt-*"):
                os.unlink(old)  # two in one second would share a name
            p = self.start(cfg, name="lbd-F-" + label, args=["-F"])
            self.vip_get(p)
            a = self.ask(p, "worker-1", 201)
            self.assertGreater(a["lease"]["fence"], max(fences),
                               "%s: fence %d after -F, %s granted before" % (
                                   label, a["lease"]["fence"], fences))
            fences.append(a["lease"]["fence"])
            aside = glob.glob(leases_file + ".corrupt-*")
            self.assertEqual(len(aside), 1, (label, aside))
            self.assertRegex(aside[0], r"\.corrupt-\d+$")
            with open(aside[0], "rb") as f:
                self.assertEqual(f.read(), content, "%s: the set-aside file" % label)
            self.assertEqual(self.release(p, "worker-1")[0], 200)
            self.assertEqual(p.stop(), 0)

    # ------------------------------------------------------------------ 7

    def test_gate_metrics(self):
        """The gate process's families reach lbd's /metrics, and parse."""
        from prometheus_client.parser import text_string_to_metric_families
        p = self.start(self.config({"concurrency": {"masters": 1, "workers": 1}}))
        self.ask(p, "worker-1", 201)
        st, a = self.lease(p, "worker-2")
        self.assertEqual(st, 409, a)

        def families():
            st, _, text = harness.admin_request(p.admin_sock, "GET", "/metrics")
            self.assertEqual(st, 200)
            fams = {f.name: f for f in text_string_to_metric_families(text)}
            reqs = {(x.labels["answer"], x.labels["reason"]): x.value
                    for x in fams.get("lbd_gate_requests", []).samples
                    if x.name == "lbd_gate_requests_total"} if "lbd_gate_requests" in fams else {}
            return fams if reqs.get(("refused", "concurrency"), 0) >= 1 else None
        fams = wait_for(families, T(5), "the gate's counters in /metrics (a pong a second)")
        leases = {(x.labels["role"], x.labels["state"]): x.value
                  for x in fams["lbd_gate_leases"].samples}
        self.assertEqual(leases[("worker", "active")], 1)
        self.assertEqual(leases[("master", "active")], 0)
        up = [x.value for x in fams["lbd_gate_process_up"].samples]
        self.assertEqual(up, [1])
        ages = {x.labels["input"]: x.value for x in fams["lbd_gate_input_age_seconds"].samples}
        self.assertIn("pool", ages)
        self.assertGreaterEqual(ages["pool"], 0)

    def test_layering(self):
        r = subprocess.run(["grep", "-rn", '#include "lbd/', "gate/", "kube/"],
                           cwd=harness.ROOT, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout, "", "gate/ or kube/ include from lbd/")

        low = os.path.join(harness.BUILD, "liblow.a")
        lbdlib = os.path.join(harness.BUILD, "liblbd.a")
        # make test builds both first: their absence is a failure, not a skip.
        self.assertTrue(os.path.exists(low) and os.path.exists(lbdlib),
                        "%s or %s not built" % (low, lbdlib))
        members = subprocess.run(["ar", "t", low], capture_output=True, text=True,
                                 check=True, timeout=30).stdout.split()
        low_srcs, lbd_srcs = set(), set()
        for d in ("common", "config", "kube", "gate", "upgrade"):
            low_srcs |= {os.path.basename(x)[:-2] + ".o"
                         for x in glob.glob(os.path.join(harness.ROOT, d, "*.c"))}
        lbd_srcs = {os.path.basename(x)[:-2] + ".o"
                    for x in glob.glob(os.path.join(harness.ROOT, "lbd", "*.c"))}
        from_lbd = [m for m in members if m in lbd_srcs and m not in low_srcs]
        self.assertEqual(from_lbd, [], "liblow.a holds objects of lbd/")

        # Link level: nothing liblow.a needs from outside is defined by liblbd.a.
        def syms(lib, *flags):
            out = subprocess.run(["nm", "-g", "--no-sort"] + list(flags) + [lib],
                                 capture_output=True, text=True, check=True, timeout=60).stdout
            return {line.split()[-1] for line in out.splitlines()
                    if line.strip() and not line.endswith(":")}
        undefined = syms(low, "--undefined-only") - syms(low, "--defined-only")
        up = sorted(undefined & syms(lbdlib, "--defined-only"))
        self.assertEqual(up, [], "liblow.a calls into lbd/ (liblbd.a defines them)")


if __name__ == "__main__":
    unittest.main()
