"""test_admin.py - pool edits at runtime (issue 3), end to end: the real lbd
and lbctl, the admin API over its unix socket (with curl too) and its TCP
listener, backends that trickle bytes like WATCHes, kill -9 and restarts.

Every wait is a bounded poll; every process is stopped by PID (harness).
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, T, wait_for  # noqa: E402

LBCTL = os.path.join(harness.BUILD, "lbctl")


# --------------------------------------------------------------------------
# Helpers


api = harness.admin_request


class Trickle:
    """A TCP backend that says its name, then trickles a byte every 50ms on
    every connection until the peer goes away - a WATCH, as TCP sees it."""

    def __init__(self, name):
        self.name = name
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((LOOPBACK, 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.address = harness.addr_text(LOOPBACK, self.port)
        self.accepted = 0
        self.stopping = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.sendall(("%s\n" % self.name).encode())
            while not self.stopping:
                c.sendall(b".")
                time.sleep(0.05)
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.stopping = True
        self.lsock.close()


class Stream:
    """A client connection through the VIP, read until EOF in a thread."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=T(5))
        f = self.sock.makefile("rb")
        self.backend = f.readline().decode().strip()
        self.bytes = 0
        self.closed_at = None
        self.sock.settimeout(None)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while True:
                d = self.sock.recv(4096)
                if not d:
                    break
                self.bytes += len(d)
        except OSError:
            pass
        self.closed_at = time.monotonic()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def lbctl(sock, *args, timeout=None):
    r = subprocess.run([LBCTL, "--socket", sock] + list(args), capture_output=True, text=True,
                       timeout=timeout or T(30))
    return r.returncode, r.stdout, r.stderr


def backends_view(sock, pool="vip"):
    """What must not change on a refused edit: name, address, weight, state."""
    st, _, p = api(sock, "GET", "/v1/pools/" + pool)
    assert st == 200, p
    return sorted((b["name"], b["address"], b["weight"], b["state"]) for b in p["backends"])


class AdminCase(harness.TestCase):
    def setUp(self):
        super().setUp()
        harness.require_binary(LBCTL, "run make")
        # sun_path holds 107 bytes: a short directory of its own; "run"
        # does not exist yet (lbd creates the socket's directory).
        short = tempfile.mkdtemp(prefix="lbd-adm-", dir="/tmp")
        self.addCleanup(shutil.rmtree, short, True)
        self.sock = os.path.join(short, "run", "admin.sock")

    def config(self, backends, tcp_checks=False, pool=None, extra=None):
        cfg = self.lbd_config(backends, pool=pool, extra=extra)
        cfg["admin"] = {"socket": self.sock}
        if tcp_checks:
            cfg["pools"][0]["health"] = {"type": "tcp", "interval": "200ms", "timeout": "150ms",
                                         "rise": 1, "fall": 2}
        return cfg

    def start(self, cfg, wait_up=None):
        self.cfg = cfg
        self.lbd = self.start_lbd(cfg, wait_up=wait_up)
        wait_for(lambda: self._answers(), T(10), "admin socket answering")
        host, _, port = cfg["frontends"][0]["listen"][0].rpartition(":")
        self.vip = (host, int(port))
        return self.lbd

    def _answers(self):
        if self.lbd.poll() is not None:
            raise AssertionError("lbd exited: %s" % self.lbd.log.tail())
        try:
            return api(self.sock, "GET", "/v1/status")[0] == 200
        except OSError:
            return False

    def restart(self, kill=signal.SIGTERM):
        self.lbd.stop(kill)
        return self.start(self.cfg)

    def backend(self, name, pool="vip"):
        st, _, b = api(self.sock, "GET", "/v1/pools/%s/backends/%s" % (pool, name))
        return b if st == 200 else None

    def wait_state(self, name, state, timeout):
        wait_for(lambda: (self.backend(name) or {}).get("state") == state, timeout,
                 "%s to be %s" % (name, state))

    def state_file(self):
        p = os.path.join(self.cfg["state_dir"], "pools.json")
        if not os.path.exists(p):
            return None
        with open(p) as f:
            return json.load(f)

    def trickle(self, name):
        t = Trickle(name)
        self.addCleanup(t.stop)
        return t


# --------------------------------------------------------------------------
# The API itself


class TestApi(AdminCase):
    def test_socket_mode_and_curl_every_route(self):
        a, b = self.trickle("a"), self.trickle("b")
        self.start(self.config([("a", a.address)], tcp_checks=True), wait_up=["vip/a"])
        mode = stat.S_IMODE(os.stat(self.sock).st_mode)
        self.assertEqual(mode, 0o600, "admin socket mode %o" % mode)

        def curl(method, path, body=None):
            argv = ["curl", "-sS", "--max-time", str(T(10)), "--unix-socket", self.sock,
                    "-X", method, "-o", "-", "-w", "\n%{http_code}", "http://lbd" + path]
            if body is not None:
                argv += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
            r = subprocess.run(argv, capture_output=True, text=True, timeout=T(15))
            self.assertEqual(r.returncode, 0, r.stderr)
            text, _, code = r.stdout.rpartition("\n")
            return int(code), text

        code, text = curl("GET", "/v1/status")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(text)["pid"], self.lbd.pid)
        code, text = curl("GET", "/v1/pools")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(text)["pools"][0]["name"], "vip")
        code, text = curl("GET", "/v1/pools/vip")
        self.assertEqual(code, 200)
        code, text = curl("POST", "/v1/pools/vip/backends",
                          {"name": "b", "address": b.address, "weight": 2})
        self.assertEqual(code, 201, text)
        self.assertEqual(json.loads(text)["weight"], 2)
        code, text = curl("GET", "/v1/pools/vip/backends/b")
        self.assertEqual(code, 200, text)
        code, text = curl("PATCH", "/v1/pools/vip/backends/b", {"weight": 3, "state": "disabled"})
        self.assertEqual(code, 200, text)
        self.assertEqual((json.loads(text)["weight"], json.loads(text)["state"]), (3, "disabled"))
        code, text = curl("DELETE", "/v1/pools/vip/backends/b")
        self.assertEqual(code, 200, text)
        code, text = curl("POST", "/v1/reload")
        self.assertEqual(code, 200, text)
        self.assertTrue(json.loads(text)["reloaded"])
        code, text = curl("GET", "/metrics")
        self.assertEqual(code, 200)
        self.assertIn("lbd_backend_up{", text)
        # Wrong method: 405 with Allow; unknown route: 404; both JSON errors.
        st, h, body = api(self.sock, "PUT", "/v1/pools/vip/backends/a")
        self.assertEqual(st, 405)
        self.assertEqual(h.get("allow"), "GET, PATCH, DELETE")
        self.assertIn("error", body)
        st, _, body = api(self.sock, "GET", "/v1/nope")
        self.assertEqual(st, 404)
        self.assertIn("error", body)

    def test_bad_bodies_change_nothing(self):
        a, b = self.trickle("a"), self.trickle("b")
        self.start(self.config([("a", a.address), ("b", b.address)], tcp_checks=True),
                   wait_up=["vip/a", "vip/b"])
        before, file_before = backends_view(self.sock), self.state_file()
        P = "/v1/pools/vip/backends"
        cases = [
            ("POST", P, '{"name": "c", "address": ', 400, "invalid JSON"),
            ("POST", P, '["c"]', 400, "JSON object"),
            ("POST", P, '{"name": "c", "address": "127.0.0.1:1", "colour": "red"}', 400,
             "unknown field 'colour'"),
            ("POST", P, '{"name": "c", "address": "10.0.0.300:6443"}', 400, "bad address"),
            ("POST", P, '{"name": "c", "address": "127.0.0.1"}', 400, "bad address"),
            ("POST", P, '{"name": "c", "address": "0.0.0.0:6443"}', 400, "bad address"),
            ("POST", P, '{"name": "c/d", "address": "127.0.0.1:1"}', 400, "bad backend name"),
            # Clients normalise "." and ".." out of a URL path: never reachable.
            ("POST", P, '{"name": "..", "address": "127.0.0.1:1"}', 400, "cannot be names"),
            ("POST", P, '{"name": ".", "address": "127.0.0.1:1"}', 400, "cannot be names"),
            ("POST", P, '{"name": "c", "address": "127.0.0.1:1", "weight": 999}', 400, "weight"),
            ("POST", P, '{"name": "c", "address": "127.0.0.1:1", "weight": "2"}', 400, "weight"),
            ("POST", P, '{"name": "c", "address": "127.0.0.1:1", "state": "up"}', 400, "state"),
            ("POST", P, '{"address": "127.0.0.1:1"}', 400, "required"),
            ("POST", P, "", 400, "body is required"),
            ("POST", P, '{"name": "a", "address": "127.0.0.1:1"}', 409, "already exists"),
            ("POST", P, json.dumps({"name": "c", "address": a.address}), 409, "already used"),
            # The IPv4-mapped IPv6 form of a's address is a's address.
            ("POST", P, json.dumps({"name": "c", "address": "[::ffff:%s]:%d" % (LOOPBACK, a.port)}),
             409, "already used"),
            ("POST", "/v1/pools/nope/backends", '{"name": "c", "address": "127.0.0.1:1"}', 404,
             "no pool 'nope'"),
            ("PATCH", P + "/a", '{"state": "maintenance"}', 400, "state"),
            ("PATCH", P + "/a", '{"weight": -1}', 400, "weight"),
            ("PATCH", P + "/a", '{"state": "drain", "extra": 1}', 400, "unknown field"),
            ("PATCH", P + "/a", '{}', 400, "nothing to change"),
            ("PATCH", P + "/a", '{"state": "drain", "state": "disabled"}', 400, "invalid JSON"),
            ("PATCH", P + "/zz", '{"state": "drain"}', 404, "no backend 'zz'"),
            ("DELETE", P + "/zz", None, 404, "no backend 'zz'"),
            ("DELETE", P + "/a?drain=maybe", None, 400, "drain"),
            ("DELETE", P + "/a", '{"drain": "yes"}', 400, "drain"),
            ("POST", "/v1/reload", '{"reset": 1}', 400, "reset"),
            ("POST", "/v1/pools", None, 405, "not allowed"),
        ]
        for method, path, raw, want, text in cases:
            st, _, body = api(self.sock, method, path, raw=raw)
            self.assertEqual(st, want, "%s %s %r -> %s %r" % (method, path, raw, st, body))
            self.assertIsInstance(body, dict, body)
            self.assertIn(text, body.get("error", ""), "%s %s %r" % (method, path, raw))
        # An oversized body is refused by the server too.
        st, _, _ = api(self.sock, "POST", P, raw='{"name": "' + "x" * 70000 + '"}')
        self.assertEqual(st, 413)
        self.assertEqual(backends_view(self.sock), before)
        self.assertEqual(self.state_file(), file_before)
        self.assertIsNone(self.lbd.poll())

    def test_metrics_parse(self):
        from prometheus_client.parser import text_string_to_metric_families
        a = self.trickle("a")
        mport = harness.free_port()
        cfg = self.config([("a", a.address)], tcp_checks=True,
                          extra={"metrics": {"listen": "127.0.0.1:%d" % mport}})
        self.start(cfg, wait_up=["vip/a"])
        s = Stream(*self.vip)
        self.addCleanup(s.close)
        wait_for(lambda: self.backend("a")["active"] == 1, T(5), "one connection")
        for text in (api(self.sock, "GET", "/metrics")[2],
                     harness.http_get(LOOPBACK, mport, "/metrics", tls=False)[2].decode()):
            fams = {f.name: f for f in text_string_to_metric_families(text)}
            for name in ("lbd_backend_up", "lbd_backend_admin_state",
                         "lbd_backend_active_connections", "lbd_backend_connections",
                         "lbd_backend_check_duration_seconds", "lbd_backend_check_failures",
                         "lbd_backend_state_transitions", "lbd_frontend_connections",
                         "lbd_frontend_refused", "lbd_backend_bytes"):
                self.assertIn(name, fams, sorted(fams))
            active = [s.value for s in fams["lbd_backend_active_connections"].samples
                      if s.labels == {"pool": "vip", "backend": "a"}]
            self.assertEqual(active, [1.0])
            self.assertEqual(fams["lbd_backend_check_duration_seconds"].type, "histogram")
        # The metrics listener serves no mutation (test_status_page: what it serves).
        st, _, _ = harness.http_get(LOOPBACK, mport, "/v1/reload", tls=False, method="POST")
        self.assertEqual(st, 404)

    def test_tcp_listener_needs_the_token(self):
        a = self.trickle("a")
        port = harness.free_port()
        tok = self.path("token")
        with open(tok, "w") as f:
            f.write("s3cret-token\n")
        c = harness.certs()
        cfg = self.config([("a", a.address)], tcp_checks=True)
        cfg["admin"].update({"listen": "127.0.0.1:%d" % port, "token_file": tok,
                             "tls": {"cert": c["cert"], "key": c["key"]}})
        # A token file others can read is refused at start, with the reason.
        os.chmod(tok, 0o644)
        path = self.write_config(cfg)
        r = subprocess.run([harness.LBD, "-c", path], capture_output=True, text=True, timeout=T(20))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("readable by group or others", r.stderr)
        os.chmod(tok, 0o600)
        self.start(cfg)
        self.lbd.log.wait(r"admin listener: listening", T(5), proc=self.lbd)
        get = lambda hdrs: harness.http_get(LOOPBACK, port, "/v1/pools", tls=True, headers=hdrs)  # noqa: E731
        for hdrs in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cret"},
                     {"Authorization": "Basic s3cret-token"}):
            st, h, body = get(hdrs)
            self.assertEqual(st, 401, hdrs)
            self.assertIn("bearer token", json.loads(body)["error"])
            self.assertIn("Bearer", h.get("www-authenticate", ""))
        st, _, body = get({"Authorization": "Bearer s3cret-token"})
        self.assertEqual(st, 200, body)
        self.assertEqual(json.loads(body)["pools"][0]["name"], "vip")
        # lbctl over the TCP listener, with the token file and the CA.
        env = dict(os.environ, LBD_CACERT=c["ca"])
        r = subprocess.run([LBCTL, "--url", "https://127.0.0.1:%d" % port, "--token-file", tok,
                            "-o", "json", "pools"], capture_output=True, text=True,
                           timeout=T(20), env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["pools"][0]["name"], "vip")
        # The secret never reaches the log or the metrics.
        st, _, metrics = harness.http_get(LOOPBACK, port, "/metrics", tls=True,
                                          headers={"Authorization": "Bearer s3cret-token"})
        self.assertEqual(st, 200)
        self.assertNotIn(b"s3cret", metrics)
        self.assertNotIn("s3cret", self.lbd.log.text())

    def test_slow_client_cannot_hold_the_api(self):
        a = self.trickle("a")
        self.start(self.config([("a", a.address)], tcp_checks=True))
        slow = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        slow.connect(self.sock)
        slow.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        # The API keeps answering others meanwhile.
        self.assertEqual(api(self.sock, "GET", "/v1/status")[0], 200)
        self.assertEqual(lbctl(self.sock, "status", "--check")[0], 0)
        # And the slow one is cut off, within the request time bound.
        slow.settimeout(T(20))
        got = b""
        try:
            while True:
                d = slow.recv(4096)
                if not d:
                    break
                got += d
        except OSError:
            pass
        self.assertLess(time.monotonic() - t0, T(15))
        slow.close()
        self.assertIsNone(self.lbd.poll())

    def test_corrupt_state_file_refuses_to_start(self):
        a = self.trickle("a")
        cfg = self.config([("a", a.address)], tcp_checks=True)
        os.makedirs(cfg["state_dir"], exist_ok=True)
        bad = os.path.join(cfg["state_dir"], "pools.json")
        with open(bad, "w") as f:
            f.write('{"version": 1, "backends": [{"pool": "vip", "name": "x", "weight": "a"}]}')
        path = self.write_config(cfg)
        p = self.spawn("lbd", [harness.LBD, "-c", path])
        self.assertIsNotNone(p.wait(T(10)), "lbd started on a corrupt state file")
        self.assertNotEqual(p.poll(), 0)
        log = p.log.text()
        self.assertIn(bad, log)
        self.assertIn("weight", log)

    def test_persist_failure_applies_nothing(self):
        a, b = self.trickle("a"), self.trickle("b")
        self.start(self.config([("a", a.address)], tcp_checks=True))
        before = backends_view(self.sock)
        # The temp file cannot be created: a directory sits in its place.
        os.makedirs(os.path.join(self.cfg["state_dir"], "pools.json.tmp"))
        st, _, body = api(self.sock, "POST", "/v1/pools/vip/backends",
                          {"name": "b", "address": b.address})
        self.assertIn(st, (500, 507), body)
        self.assertIn("not applied", body["error"])
        st, _, body = api(self.sock, "PATCH", "/v1/pools/vip/backends/a", {"state": "disabled"})
        self.assertIn(st, (500, 507), body)
        self.assertEqual(backends_view(self.sock), before)
        os.rmdir(os.path.join(self.cfg["state_dir"], "pools.json.tmp"))
        st, _, body = api(self.sock, "PATCH", "/v1/pools/vip/backends/a", {"state": "disabled"})
        self.assertEqual(st, 200, body)


# --------------------------------------------------------------------------
# Edits that last: kill -9, restart, reload


class TestPersistence(AdminCase):
    def test_kill9_after_ack_then_restart(self):
        a, b, c = self.trickle("a"), self.trickle("b"), self.trickle("c")
        self.start(self.config([("a", a.address), ("b", b.address)], tcp_checks=True))
        rc, out, err = lbctl(self.sock, "backend", "add", "vip", "c", c.address, "--weight", "5")
        self.assertEqual(rc, 0, err)
        rc, out, err = lbctl(self.sock, "backend", "disable", "vip", "b")
        self.assertEqual(rc, 0, err)
        rc, out, err = lbctl(self.sock, "backend", "weight", "vip", "a", "7")
        self.assertEqual(rc, 0, err)
        want = backends_view(self.sock)
        self.assertEqual(want, [("a", a.address, 7, "enabled"), ("b", b.address, 1, "disabled"),
                                ("c", c.address, 5, "enabled")])
        self.lbd.stop(signal.SIGKILL)
        self.start(self.cfg)
        self.assertEqual(backends_view(self.sock), want)
        # A removal lasts too.
        self.assertEqual(lbctl(self.sock, "backend", "remove", "vip", "a")[0], 0)
        self.lbd.stop(signal.SIGKILL)
        self.start(self.cfg)
        self.assertEqual([x[0] for x in backends_view(self.sock)], ["b", "c"])

    def test_reload_keeps_the_overlay_and_drops_what_the_file_agrees_with(self):
        a, b, c = self.trickle("a"), self.trickle("b"), self.trickle("c")
        self.start(self.config([("a", a.address), ("b", b.address)], tcp_checks=True))
        self.assertEqual(lbctl(self.sock, "backend", "add", "vip", "c", c.address)[0], 0)
        self.assertEqual(lbctl(self.sock, "backend", "disable", "vip", "b")[0], 0)
        self.assertEqual(lbctl(self.sock, "backend", "weight", "vip", "a", "4")[0], 0)
        # The file changes elsewhere: a runtime edit survives a reload.
        self.cfg["pools"][0]["drain_timeout"] = "1m"
        self.write_config(self.cfg)
        rc, out, err = lbctl(self.sock, "reload")
        self.assertEqual(rc, 0, err)
        self.assertEqual(backends_view(self.sock), [
            ("a", a.address, 4, "enabled"), ("b", b.address, 1, "disabled"),
            ("c", c.address, 1, "enabled")])
        # The file now agrees on c and on a's weight: those entries go;
        # b's state (which the file cannot say) stays.
        self.cfg["pools"][0]["backends"][0]["weight"] = 4
        self.cfg["pools"][0]["backends"].append({"name": "c", "address": c.address, "weight": 1})
        self.write_config(self.cfg)
        self.lbd.send_signal(signal.SIGHUP)
        wait_for(lambda: [(e["name"]) for e in self.state_file()["backends"]] == ["b"], T(5),
                 "overlay reduced to b")
        st, _, p = api(self.sock, "GET", "/v1/pools/vip")
        src = {x["name"]: x["source"] for x in p["backends"]}
        self.assertEqual(src, {"a": "file", "b": "file", "c": "file"})
        self.assertEqual(backends_view(self.sock)[1], ("b", b.address, 1, "disabled"))
        # A file that does not load changes nothing, and says why.
        with open(self.lbd.config_path, "a") as f:
            f.write("bogus_key: 1\n")
        rc, out, err = lbctl(self.sock, "reload")
        self.assertEqual(rc, 1)
        self.assertIn("bogus_key", err)
        self.write_config(self.cfg)
        # --reset: exactly the file.
        rc, out, err = lbctl(self.sock, "reload", "--reset")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.state_file()["backends"], [])
        self.assertEqual([x[3] for x in backends_view(self.sock)], ["enabled"] * 3)


# --------------------------------------------------------------------------
# Drain with long-lived streams


class TestDrain(AdminCase):
    def test_drain_keeps_streams_then_closes_them_at_the_rate(self):
        a, b = self.trickle("a"), self.trickle("b")
        rate, n, timeout = 5, 10, 2.0
        cfg = self.config([("a", a.address)], tcp_checks=True,
                          pool={"drain_timeout": "2s", "drain_close_rate": rate})
        self.start(cfg, wait_up=["vip/a"])
        streams = [Stream(*self.vip) for _ in range(n)]
        for s in streams:
            self.addCleanup(s.close)
        self.assertEqual({s.backend for s in streams}, {"a"})
        # b joins; it takes traffic once its checks pass.
        rc, out, err = lbctl(self.sock, "backend", "add", "vip", "b", b.address)
        self.assertEqual(rc, 0, err)
        self.lbd.log.wait(r"backend vip/b is UP", T(5), proc=self.lbd)
        # Drain a with --wait, in the background.
        t0 = time.monotonic()
        w = subprocess.Popen([LBCTL, "--socket", self.sock, "backend", "drain", "vip", "a",
                              "--wait", "--timeout", "30s"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: w.poll() is None and w.kill())
        self.wait_state("a", "drain", T(5))
        # New connections go to b at once.
        for _ in range(5):
            s = Stream(*self.vip)
            self.addCleanup(s.close)
            self.assertEqual(s.backend, "b")
        # Established streams keep flowing until the deadline.
        marks = [s.bytes for s in streams]
        wait_for(lambda: all(s.bytes > m + 5 for s, m in zip(streams, marks)), T(1.5),
                 "streams to keep flowing while draining")
        self.assertTrue(all(s.closed_at is None for s in streams))
        d = self.backend("a")["drain"]
        self.assertEqual(d["connections_left"], n)
        self.assertLessEqual(d["seconds_left"], timeout)
        out, err = w.communicate(timeout=T(20))
        self.assertEqual(w.returncode, 0, out + err)
        self.assertIn("connections left", out)
        self.assertIn("drained at the deadline", out)
        wait_for(lambda: all(s.closed_at for s in streams), T(5), "streams closed")
        closes = sorted(s.closed_at for s in streams)
        self.assertGreaterEqual(closes[0] - t0, timeout - 0.2)
        spread = closes[-1] - closes[0]
        want = (n - 1) / rate
        self.assertGreater(spread, want * 0.7, "closed too fast: %.2fs for %d" % (spread, n))
        self.assertLess(spread, want * 1.5 + 0.5 * harness.SLOW, "closed too slowly: %.2fs" % spread)
        b_a = self.backend("a")
        self.assertEqual((b_a["state"], b_a["active"], b_a["last_drain_closed"]), ("disabled", 0, n))
        # Persisted: a restart keeps a disabled.
        entry = [e for e in self.state_file()["backends"] if e["name"] == "a"][0]
        self.assertEqual(entry["state"], "disabled")

    def test_drain_wait_exit_codes(self):
        a, b = self.trickle("a"), self.trickle("b")
        cfg = self.config([("a", a.address), ("b", b.address)], tcp_checks=True,
                          pool={"drain_timeout": "1m", "balance": "least_conn"})
        self.start(cfg, wait_up=["vip/a", "vip/b"])
        streams = [Stream(*self.vip) for _ in range(4)]
        on_a = [s for s in streams if s.backend == "a"]
        self.assertTrue(on_a)
        t0 = time.monotonic()
        rc, out, err = lbctl(self.sock, "backend", "drain", "vip", "a", "--wait", "--timeout", "1s")
        self.assertEqual(rc, 4, out + err)
        self.assertLess(time.monotonic() - t0, T(5))
        self.assertIn("%d connections left" % len(on_a), out)
        self.assertIn("not drained", err)
        # The drain went on; once its streams end, --wait says drained.
        for s in on_a:
            s.close()
        rc, out, err = lbctl(self.sock, "backend", "drain", "vip", "a", "--wait", "--timeout", "10s")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("drained", out)
        self.assertEqual(self.backend("a")["state"], "disabled")
        # JSON everywhere.
        rc, out, err = lbctl(self.sock, "-o", "json", "pool", "show", "vip")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["name"], "vip")
        for s in streams:
            s.close()

    def test_add_then_remove_with_drain(self):
        m1 = self.start_apiserver("master-1")
        m2 = self.start_apiserver("master-2")
        cfg = self.config([m1], pool={"drain_timeout": "30s"})
        self.start(cfg, wait_up=["vip/master-1"])
        rc, out, err = lbctl(self.sock, "backend", "add", "vip", "master-2", m2.address)
        self.assertEqual(rc, 0, err)
        self.assertIn("added", out)
        # Traffic reaches master-2 once its checks pass (rise 2).
        self.lbd.log.wait(r"backend vip/master-2 is UP", T(5), proc=self.lbd)
        seen = set()
        wait_for(lambda: seen.add(harness.http_get(*self.vip, "/version")[1].get("x-backend"))
                 or "master-2" in seen, T(5), "a request served by master-2")
        # A WATCH on master-1 (least_conn sends it to the idle one; force it).
        self.assertEqual(lbctl(self.sock, "backend", "disable", "vip", "master-2")[0], 0)
        c = http.client.HTTPSConnection(*self.vip, timeout=T(10),
                                        context=harness.client_tls_context())
        c.request("GET", "/watch?seconds=2")
        r = c.getresponse()
        self.assertEqual(r.getheader("X-Backend"), "master-1")
        self.assertEqual(lbctl(self.sock, "backend", "enable", "vip", "master-2")[0], 0)
        # Remove master-1 with --drain --wait: the watch finishes, then it goes.
        w = subprocess.Popen([LBCTL, "--socket", self.sock, "backend", "remove", "vip",
                              "master-1", "--drain", "--wait", "--timeout", "20s"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: w.poll() is None and w.kill())
        wait_for(lambda: (self.backend("master-1") or {}).get("state") == "drain", T(5),
                 "master-1 draining")
        self.assertTrue(self.backend("master-1")["drain"]["remove_when_drained"])
        body = r.read()  # the watch runs to its end through the drain
        self.assertGreaterEqual(body.count(b'"MODIFIED"'), 15)
        c.close()
        out, err = w.communicate(timeout=T(20))
        self.assertEqual(w.returncode, 0, out + err)
        self.assertIn("removed", out)
        self.assertIsNone(self.backend("master-1"))
        st, _, p = api(self.sock, "GET", "/v1/pools/vip")
        self.assertEqual([x["name"] for x in p["backends"]], ["master-2"])
        # And a restart agrees.
        self.restart(signal.SIGKILL)
        self.assertEqual([x[0] for x in backends_view(self.sock)], ["master-2"])

    def test_status_check_is_about_serving(self):
        """status --check (the pair's track_script) turns 1 the moment lbd
        stops serving: SIGTERM with a connection still relayed keeps lbd up
        for shutdown_grace, answering, but stopping."""
        a = self.trickle("a")
        self.start(self.config([("a", a.address)], tcp_checks=True,
                               extra={"shutdown_grace": "5s"}), wait_up=["vip/a"])
        self.assertEqual(lbctl(self.sock, "status", "--check"), (0, "", ""))
        s = Stream(*self.vip)
        self.addCleanup(s.close)
        self.lbd.send_signal(signal.SIGTERM)
        wait_for(lambda: lbctl(self.sock, "status", "--check")[0] == 1, T(5),
                 "status --check to fail while lbd stops")
        st, _, body = api(self.sock, "GET", "/v1/status")
        self.assertEqual((st, body["serving"], body["not_serving"], body["ok"]),
                         (200, False, "stopping", False))
        rc, out, _ = lbctl(self.sock, "status")
        self.assertIn("NOT serving: stopping", out)

    def test_pools_table_says_why(self):
        m1 = self.start_apiserver("master-1")
        m2 = self.start_apiserver("master-2")
        self.start(self.config([m1, m2]), wait_up=["vip/master-1", "vip/master-2"])
        m2.fail()
        self.lbd.log.wait(r"backend vip/master-2 is DOWN", T(5), proc=self.lbd)
        rc, out, err = lbctl(self.sock, "pools")
        self.assertEqual(rc, 0, err)
        line = [x for x in out.splitlines() if "master-2" in x][0]
        self.assertIn("down", line)
        self.assertRegex(line, r"readyz 503.*etcd failed")
        rc, out, err = lbctl(self.sock, "-o", "json", "pools")
        b2 = [b for b in json.loads(out)["pools"][0]["backends"] if b["name"] == "master-2"][0]
        self.assertEqual(b2["last_failure"]["reason"], "bad_status")
        # status: ok while one is up; --check is exit-code only.
        self.assertEqual(lbctl(self.sock, "status", "--check"), (0, "", ""))
        m1.fail()
        self.lbd.log.wait(r"backend vip/master-1 is DOWN", T(5), proc=self.lbd)
        # Every master down: lbd still serves (fail-safe), so --check (the
        # pair's track_script) stays 0; --check-backends says no master is up.
        self.assertEqual(lbctl(self.sock, "status", "--check"), (0, "", ""))
        self.assertEqual(lbctl(self.sock, "status", "--check-backends")[0], 1)
        self.assertEqual(lbctl(self.sock, "status", "--check", "--check-backends")[0], 2)
        st = json.loads(lbctl(self.sock, "-o", "json", "status")[1])
        self.assertEqual((st["serving"], st["not_serving"], st["ok"]), (True, None, False))
        # Help for every verb.
        for verb in ("pools", "pool", "backend", "status", "reload"):
            rc, out, err = lbctl(self.sock, verb, "--help")
            self.assertEqual(rc, 0, verb)
            self.assertIn("SYNOPSIS", out)
        self.assertEqual(lbctl(self.sock, "backend", "frob", "vip", "x")[0], 2)
        self.assertEqual(lbctl("/nonexistent.sock", "pools")[0], 1)


if __name__ == "__main__":
    unittest.main()
