"""test_self_upgrade.py - lbd replaces itself without refusing a connection (issue 13).

`kill -USR2 <lbd>` and `lbctl restart` start the lbd binary on disk; the new
process inherits every listening socket, says ready once its first checks
are in, and only then does the old one stop accepting and drain. Each test
one promise:
  - under load (a new TLS connection through the VIP every 10 ms, 5 WATCHes
    open), kill -USR2: no new connection fails, the WATCHes keep flowing
    through the old process, which exits once they close; runtime edits and
    gate leases (same fence) carry over, fences keep rising;
  - a config that no longer loads: lbctl restart exits 1 with the reason, the
    old lbd serves on (same pid, last_restart_error), nothing refused;
  - the binary on disk crashes before ready (a package that replaced it by
    rename, the old one's /proc/self/exe is "(deleted)"): the old lbd serves on;
  - 20 restarts in a row under load: each one succeeds, nothing fails, in
    the end one lbd and one lbd-gate, every old lbd exited 0 (under SAN=1
    that includes LeakSanitizer's verdict), no sanitizer report.

A new lbd is a child of the old one; when the old one exits, the new one is
reparented. The test process makes itself a child subreaper (prctl), so it
inherits them, can reap them and read their exit status; every lbd pid a
test learns is stopped by pid in its clean-up.
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, T, wait_for  # noqa: E402

LBCTL = os.path.join(harness.BUILD, "lbctl")
ADMIN_TOKEN = "su-admin-token-0123456789"
MASTERS = ["master-1", "master-2"]
WORKERS = ["worker-1", "worker-2", "worker-3"]

PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def set_subreaper(on):
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "prctl(PR_SET_CHILD_SUBREAPER): %s" % os.strerror(e))


# --------------------------------------------------------------------------
# /proc


def proc_stat(pid):
    """(state letter, parent pid) of pid, or None if there is no such process."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    except (OSError, ValueError, IndexError):
        return None


def proc_live(pid):
    """pid exists and is not a zombie."""
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def proc_comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def all_pids():
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


# --------------------------------------------------------------------------
# Clients


class Stream:
    """A WATCH through the VIP: GET /watch?seconds=N over TLS, read in a
    thread; the arrival time of every chunk is kept. close() ends it from
    this side (the reader thread closes the socket: one thread per SSL
    object)."""

    def __init__(self, port, seconds=300):
        raw = socket.create_connection((LOOPBACK, port), timeout=T(5))
        self.sock = harness.client_tls_context().wrap_socket(raw, server_hostname="localhost")
        self.sock.sendall(b"GET /watch?seconds=%d HTTP/1.1\r\nHost: kubernetes\r\n\r\n" % seconds)
        self.sock.settimeout(0.1)
        self.times = []  # monotonic time of each recv that returned data
        self.nbytes = 0
        self.end = None  # why reading stopped
        self._closing = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while not self._closing.is_set():
                try:
                    d = self.sock.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    self.end = "eof"
                    return
                self.nbytes += len(d)
                self.times.append(time.monotonic())
            self.end = "closed by the test"
        except OSError as e:
            self.end = repr(e)
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def chunks_after(self, t):
        return sum(1 for x in list(self.times) if x > t)

    def close(self):
        self._closing.set()
        self.thread.join(T(5))


class NewConnections:
    """A new connection through the VIP every `interval` seconds, each one
    on a thread of its own (so a slow one does not delay the next): fn()
    must return normally (a full answer). Counts ok and keeps failures
    as (seconds since start, repr)."""

    def __init__(self, fn, interval, duration=None, max_in_flight=64):
        self.fn, self.interval, self.duration = fn, interval, duration
        self.ok = 0
        self.started = 0
        self.errors = []
        self.lock = threading.Lock()
        self.sem = threading.BoundedSemaphore(max_in_flight)
        self.max_in_flight = max_in_flight
        self._stop = threading.Event()
        self.t0 = time.monotonic()
        self.pacer = threading.Thread(target=self._pace, daemon=True)
        self.pacer.start()

    def elapsed(self):
        return time.monotonic() - self.t0

    def _pace(self):
        nxt = self.t0
        while not self._stop.is_set():
            if self.duration is not None and self.elapsed() >= self.duration:
                return
            self.sem.acquire()
            with self.lock:
                self.started += 1
            threading.Thread(target=self._one, daemon=True).start()
            nxt += self.interval
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def _one(self):
        t = self.elapsed()
        try:
            self.fn()
            with self.lock:
                self.ok += 1
        except Exception as e:  # noqa: BLE001 - reported by the test
            with self.lock:
                self.errors.append((round(t, 3), repr(e)))
        finally:
            self.sem.release()

    def done(self):
        return not self.pacer.is_alive()

    def stop(self, timeout=None):
        """Stops starting new ones and waits for those in flight."""
        self._stop.set()
        self.pacer.join(T(10) if timeout is None else timeout)
        deadline = time.monotonic() + (T(15) if timeout is None else timeout)
        got = 0
        while got < self.max_in_flight and time.monotonic() < deadline:
            if self.sem.acquire(timeout=0.1):
                got += 1
        for _ in range(got):
            self.sem.release()
        return self

    def summary(self):
        return "%d started, %d ok, %d failed: %s" % (self.started, self.ok, len(self.errors),
                                                     self.errors[:10])


# --------------------------------------------------------------------------
# The tests


class Upgrades(harness.TestCase):
    """What a test of lbd's restarts needs (no tests here: test_packaging
    uses it too)."""

    lbctl_path = LBCTL

    def setUp(self):
        super().setUp()
        # New lbds are children of the old ones: inherit them when their
        # parent exits, to reap them and read their exit status.
        set_subreaper(True)
        self.addCleanup(self._reap_leftovers)  # runs last: after every lbd is stopped
        self.tokens = self.path("gate-tokens")
        with open(self.tokens, "w") as f:
            f.write("# node token\n* %s\n" % ADMIN_TOKEN)
            for n in MASTERS + WORKERS:
                f.write("%s tok-%s-0123456789\n" % (n, n))
        os.chmod(self.tokens, 0o600)
        self.masters = None
        self.first = None  # the harness Proc of the first lbd
        self.successors = []  # pids of the lbds restarts started, in order
        self.exit_status = {}  # successor pid -> exit code (os.waitstatus_to_exitcode)

    def _reap_leftovers(self):
        # Whatever got reparented to us (gate processes of a killed lbd):
        # zombies are reaped; nothing of ours is left running.
        for pid in harness.proc_children(os.getpid()):
            st = proc_stat(pid)
            if st and st[0] == "Z":
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        set_subreaper(False)

    # -- lbd

    def config(self, gate=True):
        if self.masters is None:
            self.masters = [self.start_apiserver(m) for m in MASTERS]
        cfg = self.lbd_config(self.masters, name="vip")
        if gate:
            cfg["gate"] = {"listen": "%s:%d" % (LOOPBACK, harness.free_port()),
                           "tokens_file": self.tokens, "quorum": {"pool": "vip"},
                           "concurrency": {"masters": 1, "workers": len(WORKERS)}}
        return cfg

    def start(self, cfg, binary=None):
        """The first lbd (harness Proc), from binary (default the build's)."""
        if binary is None:
            p = self.start_lbd(cfg, wait_up=["vip/" + m for m in MASTERS])
        else:
            path = self.write_config(cfg)
            p = self.spawn("lbd", [binary, "-c", path], cwd=harness.ROOT)
            p.config_path = path
            self.addCleanup(self.check_clean_exit, p)
            for m in MASTERS:
                p.log.wait(r"backend vip/%s is UP" % re.escape(m), T(10), proc=p)
        # Before check_clean_exit (cleanups run last first): the successors
        # are in the first lbd's process group, which its stop() SIGKILLs.
        self.addCleanup(self.stop_successors)
        self.first = p
        self.cfg = cfg
        self.sock = cfg["admin"]["socket"]
        self.vip_port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        self.log = p.log
        wait_for(lambda: self.status().get("pid") == p.pid, T(10), "the admin socket answering")
        return p

    def learn(self, pid):
        if pid != self.first.pid and pid not in self.successors:
            self.successors.append(pid)

    def reap(self):
        for pid in self.successors:
            if pid in self.exit_status:
                continue
            try:
                r, st = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                continue  # not ours yet: its parent lbd still runs
            if r == pid:
                self.exit_status[pid] = os.waitstatus_to_exitcode(st)

    def gone(self, pid):
        """pid exited (and, being ours by now, was reaped)."""
        if pid == self.first.pid:
            return self.first.poll() is not None
        self.reap()
        return pid in self.exit_status

    def exit_code(self, pid):
        return self.first.poll() if pid == self.first.pid else self.exit_status.get(pid)

    def stop_successors(self):
        """SIGTERM every live lbd a restart started, newest first; reap them."""
        for pid in reversed(self.successors):
            if not self.gone(pid) and proc_live(pid):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        try:
            wait_for(lambda: all(self.gone(p) or not proc_live(p) for p in self.successors),
                     T(15), "every lbd a restart started to exit")
        finally:
            for pid in self.successors:
                if not self.gone(pid) and proc_live(pid):
                    os.kill(pid, signal.SIGKILL)
            self.reap()

    # -- admin and clients

    def lbctl(self, *args, timeout=None):
        r = subprocess.run([self.lbctl_path, "--socket", self.sock] + list(args),
                           capture_output=True, text=True, timeout=timeout or T(120))
        return r.returncode, r.stdout, r.stderr

    def admin(self, method, path, body=None, timeout=None):
        st, _, parsed = harness.admin_request(self.sock, method, path, body, timeout=timeout)
        return st, parsed

    def status(self):
        st, s = self.admin("GET", "/v1/status")
        if st != 200:
            raise AssertionError("GET /v1/status: %d %r" % (st, s))
        return s

    def lease(self, node):
        return self.admin("POST", "/v1/gate/leases",
                          {"node": node, "role": "worker", "reason": "test_self_upgrade"})

    def ask(self, node):
        """A new lease for node (the gate may still be starting: 503 meanwhile)."""
        last = []

        def got():
            st, a = self.lease(node)
            last[:] = [st, a]
            return a if st == 201 else None
        try:
            return wait_for(got, T(10), "a lease for %s" % node)["lease"]
        except harness.WaitTimeout as e:
            self.fail("%s; last answer: %r" % (e, last))

    def leases(self):
        st, ls = self.admin("GET", "/v1/gate/leases")
        self.assertEqual(st, 200, ls)
        return {l["node"]: l["fence"] for l in ls["leases"]}

    def vip_get(self):
        """One request on a new TLS connection through the VIP: a full answer or raise."""
        st, h, body = harness.http_get(LOOPBACK, self.vip_port, "/version", tls=True, timeout=T(5))
        if st != 200 or b'"gitVersion"' not in body:
            raise AssertionError("VIP answered %d: %r" % (st, body[:200]))
        return h.get("x-backend")

    def clients(self, interval, duration=None):
        c = NewConnections(self.vip_get, interval, duration)
        self.addCleanup(c.stop)
        wait_for(lambda: c.ok >= 5 or c.errors, T(10), "the client loop going")
        self.assertEqual(c.errors, [], c.summary())
        return c

    def assert_no_sanitizer_report(self):
        text = self.log.text()
        for word in ("Sanitizer", "runtime error"):
            self.assertNotIn(word, text, "the lbd log has a %r report:\n%s" % (
                word, self.log.tail(n=80)))

    def took_over(self, mark, old_pid):
        """Waits for the old lbd's "took over" line; returns (new pid, count)."""
        line = self.log.wait(r"restart: pid (\d+) took over; draining (\d+) connection",
                             T(30), since=mark)
        m = re.search(r"lbd\[(\d+)\]", line)
        if m:
            self.assertEqual(int(m.group(1)), old_pid, line)
        m = re.search(r"restart: pid (\d+) took over; draining (\d+) connection", line)
        return int(m.group(1)), int(m.group(2))


class SelfUpgrade(Upgrades):
    def setUp(self):
        harness.require_binary(harness.LBD, "run make")
        harness.require_binary(LBCTL, "run make")
        super().setUp()

    # ------------------------------------------------------------------ 1

    def test_usr2_under_load(self):
        cfg = self.config()
        old = self.start(cfg)
        # A runtime edit and a gate lease, before the upgrade.
        st, b = self.admin("PATCH", "/v1/pools/vip/backends/master-2", {"weight": 3})
        self.assertEqual(st, 200, b)
        self.assertEqual(b["weight"], 3, b)
        fence = self.ask("worker-1")["fence"]
        self.assertEqual(self.leases(), {"worker-1": fence})
        old_gate = self.status()["gate"]["pid"]

        streams = [Stream(self.vip_port) for _ in range(5)]
        for s in streams:
            self.addCleanup(s.close)
        wait_for(lambda: all(len(s.times) >= 3 for s in streams), T(10), "5 WATCHes streaming")

        load = self.clients(0.01, duration=6.0)
        wait_for(lambda: load.elapsed() >= 1.0, T(5), "1 s of load")
        mark = self.log.mark()
        os.kill(old.pid, signal.SIGUSR2)
        new_pid, _ = self.took_over(mark, old.pid)
        t_took = time.monotonic()
        self.learn(new_pid)
        self.assertNotEqual(new_pid, old.pid)
        self.log.wait(r"handover: ready; waiting for pid %d to stop accepting" % old.pid, T(5),
                      since=mark)

        # The new lbd answers the admin socket, and shows the old one draining the 5.
        def previous():
            s = self.status()
            prev = s.get("previous") or {}
            if s.get("pid") == new_pid and prev.get("pid") == old.pid and \
                    prev.get("connections") == 5:
                return s
            return None
        s = wait_for(previous, T(10), "GET /v1/status: new pid, previous = old pid with 5 "
                     "connections")
        self.assertEqual(s["previous"]["state"], "draining", s["previous"])
        rc, out, err = self.lbctl("status")
        self.assertIn("previous lbd (pid %d) still draining: 5 connection(s)" % old.pid, out,
                      out + err)
        self.assertTrue(proc_live(old.pid), "the old lbd exited with 5 WATCHes open")

        # The WATCHes keep flowing, through the old process, after the takeover.
        wait_for(lambda: all(s.chunks_after(t_took + 0.5) >= 10 for s in streams), T(10),
                 "every WATCH still streaming 1.5 s after the takeover")
        self.assertEqual([s.end for s in streams], [None] * 5)

        # The load ran its 6 s: not one new connection failed.
        wait_for(load.done, T(20), "the 6 s of new connections")
        load.stop()
        harness.note("usr2 under load: %s", load.summary())
        self.assertEqual(load.errors, [], load.summary())
        self.assertGreater(load.ok, 300, load.summary())  # ~600 at 10 ms apart

        # Runtime edit, lease and fence carried over; the gate is the new lbd's.
        st, b = self.admin("GET", "/v1/pools/vip/backends/master-2")
        self.assertEqual(st, 200, b)
        self.assertEqual(b["weight"], 3, b)
        self.assertEqual(self.leases(), {"worker-1": fence})
        self.assertGreater(self.ask("worker-2")["fence"], fence)
        g = self.status()["gate"]
        self.assertNotEqual(g["pid"], old_gate, g)
        self.assertEqual(proc_stat(g["pid"])[1], new_pid, "the gate is not the new lbd's child")
        wait_for(lambda: not proc_live(old_gate), T(5), "the old lbd's gate process gone")

        # The WATCHes close: the old lbd exits, cleanly; the new one is ours now.
        for s in streams:
            s.close()
        wait_for(lambda: old.poll() is not None, T(15), "the old lbd to exit once its WATCHes "
                 "closed")
        self.assertEqual(old.poll(), 0, self.log.tail())
        self.log.wait(r"handover: pid %d has finished draining" % old.pid, T(5), since=mark)
        wait_for(lambda: "previous" not in self.status(), T(5), "status without 'previous'")
        self.assertEqual(proc_stat(new_pid)[1], os.getpid(), "the new lbd was not reparented")
        self.assertIsNone(self.log.find(r"restart: .*keeps serving", since=mark), self.log.tail())
        self.assertIsNone(self.log.find(r"\] (warn|error): ", since=mark), self.log.tail())
        self.vip_get()
        self.assert_no_sanitizer_report()

    # ------------------------------------------------------------------ 2

    def test_restart_with_broken_config(self):
        cfg = self.config(gate=False)
        old = self.start(cfg)
        load = self.clients(0.01)
        good = harness.to_yaml(cfg)
        self.write_config(good + "bogus_key: 1\n")

        mark = self.log.mark()
        rc, out, err = self.lbctl("restart")
        self.assertEqual(rc, 1, "lbctl restart with a config that does not load:\n%s%s" % (out, err))
        self.assertIn("bogus_key", out + err, "lbctl restart does not say why")
        line = self.log.wait(r"restart: the new lbd \(pid (\d+)\) refused to start: .*bogus_key.*"
                             r"this lbd \(pid %d\) keeps serving" % old.pid, T(5), since=mark)
        failed_pid = int(re.search(r"new lbd \(pid (\d+)\)", line).group(1))
        s = self.status()
        self.assertEqual(s["pid"], old.pid, s)
        self.assertIn("bogus_key", s.get("last_restart_error") or "", s)
        self.assertNotIn("restart", s)
        self.assertNotIn("successor", s)
        wait_for(lambda: not proc_live(failed_pid), T(5), "the failed new lbd reaped")
        n = load.ok
        wait_for(lambda: load.ok >= n + 50, T(10), "the old lbd still serving")
        self.assertEqual(load.errors, [], load.summary())

        # Mended: the next restart goes through.
        self.write_config(good)
        mark = self.log.mark()
        rc, out, err = self.lbctl("restart")
        self.assertEqual(rc, 0, out + err)
        m = re.search(r"pid (\d+) took over from pid (\d+)", out)
        self.assertTrue(m, out)
        new_pid = int(m.group(1))
        self.learn(new_pid)
        self.assertEqual(int(m.group(2)), old.pid)
        self.assertEqual(self.status()["pid"], new_pid)
        wait_for(lambda: old.poll() is not None, T(15), "the old lbd to exit")
        self.assertEqual(old.poll(), 0)
        n = load.ok
        wait_for(lambda: load.ok >= n + 50, T(10), "the new lbd serving")
        load.stop()
        harness.note("broken config: %s", load.summary())
        self.assertEqual(load.errors, [], load.summary())
        self.assert_no_sanitizer_report()

    # ------------------------------------------------------------------ 3

    def test_restart_new_binary_crashes(self):
        bindir = self.path("bin")
        os.makedirs(bindir)
        binary = os.path.join(bindir, "lbd")
        shutil.copy2(harness.LBD, binary)
        cfg = self.config(gate=False)
        old = self.start(cfg, binary=binary)
        load = self.clients(0.01)

        # A package upgrade: the new file replaces the old by rename; the
        # running lbd's /proc/self/exe reads "<path> (deleted)".
        with open(binary + ".new", "w") as f:
            f.write("#!/bin/sh\nexit 3\n")
        os.chmod(binary + ".new", 0o755)
        os.rename(binary + ".new", binary)
        self.assertTrue(os.readlink("/proc/%d/exe" % old.pid).endswith(" (deleted)"))

        mark = self.log.mark()
        os.kill(old.pid, signal.SIGUSR2)
        self.log.wait(r"restart: the new lbd \(pid \d+\) exited with status 3 before it was "
                      r"ready; this lbd \(pid %d\) keeps serving" % old.pid, T(10), since=mark)
        s = self.status()
        self.assertEqual(s["pid"], old.pid, s)
        self.assertIn("exited with status 3 before it was ready", s.get("last_restart_error") or "",
                      s)
        n = load.ok
        wait_for(lambda: load.ok >= n + 50, T(10), "the old lbd still serving")
        self.assertEqual(load.errors, [], load.summary())

        # The real binary back in place (by rename, again): USR2 goes through.
        shutil.copy2(harness.LBD, binary + ".new")
        os.rename(binary + ".new", binary)
        mark = self.log.mark()
        os.kill(old.pid, signal.SIGUSR2)
        new_pid, _ = self.took_over(mark, old.pid)
        self.learn(new_pid)
        self.assertEqual(os.readlink("/proc/%d/exe" % new_pid), binary)
        wait_for(lambda: self.status()["pid"] == new_pid, T(5), "the new lbd on the admin socket")
        wait_for(lambda: old.poll() is not None, T(15), "the old lbd to exit")
        self.assertEqual(old.poll(), 0)
        n = load.ok
        wait_for(lambda: load.ok >= n + 50, T(10), "the new lbd serving")
        load.stop()
        harness.note("crashing binary: %s", load.summary())
        self.assertEqual(load.errors, [], load.summary())
        self.assert_no_sanitizer_report()

    # ------------------------------------------------------------------ 4

    def test_twenty_upgrades(self):
        cfg = self.config()
        old = self.start(cfg)
        fence = self.ask("worker-1")["fence"]
        load = self.clients(0.02)
        pids = [old.pid]
        for i in range(20):
            t0 = time.monotonic()
            rc, out, err = self.lbctl("restart")
            self.assertEqual(rc, 0, "restart %d of 20:\n%s%s\nlog tail:\n%s" % (
                i + 1, out, err, self.log.tail()))
            m = re.search(r"pid (\d+) took over from pid (\d+)", out)
            self.assertTrue(m, out)
            self.assertEqual(int(m.group(2)), pids[-1], out)
            pids.append(int(m.group(1)))
            self.learn(pids[-1])
            harness.note("restart %d: %.0f ms", i + 1, 1000 * (time.monotonic() - t0))
            self.assertEqual(load.errors, [], "after restart %d: %s" % (i + 1, load.summary()))
        n = load.ok
        wait_for(lambda: load.ok >= n + 20, T(10), "the last lbd serving")
        load.stop()
        harness.note("20 upgrades: %s", load.summary())
        self.assertEqual(load.errors, [], load.summary())
        last = pids[-1]
        self.assertEqual(self.status()["pid"], last)
        self.assertEqual(self.leases(), {"worker-1": fence})

        # Every old lbd exits, with status 0 (LeakSanitizer's verdict under SAN=1).
        wait_for(lambda: all(self.gone(p) for p in pids[:-1]), T(30),
                 "every old lbd to exit (still there: %s)" % [p for p in pids[:-1] if proc_live(p)])
        codes = {p: self.exit_code(p) for p in pids[:-1]}
        self.assertEqual({p: c for p, c in codes.items() if c != 0}, {},
                         "old lbds that exited non-zero; log tail:\n%s" % self.log.tail(n=60))

        # One lbd and one lbd-gate left for this test.
        lbds = [p for p in all_pids() if proc_live(p) and self.first.config_path in proc_cmdline(p)]
        self.assertEqual(lbds, [last])
        ours = set(pids) | {os.getpid()}
        gates = [p for p in all_pids() if proc_live(p) and proc_comm(p) == "lbd-gate" and
                 (proc_stat(p) or (0, 0))[1] in ours]
        self.assertEqual(len(gates), 1, gates)
        self.assertEqual(proc_stat(gates[0])[1], last)
        self.assertEqual(self.status()["gate"]["pid"], gates[0])

        # The last one stops cleanly too.
        os.kill(last, signal.SIGTERM)
        wait_for(lambda: self.gone(last), T(15), "the last lbd to stop")
        self.assertEqual(self.exit_code(last), 0, self.log.tail())
        self.assert_no_sanitizer_report()


if __name__ == "__main__":
    unittest.main()
