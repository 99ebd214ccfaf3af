"""test_faults.py - fault injection against the real build/lbd.

Each test breaks one thing lbd depends on and asserts the behaviour
SECURITY.md promises, not only that lbd is alive:

  backend resets mid-stream     the client's connection ends at once, others go on
  backend never reads           lbd pushes back (bounded buffering), others go on
  health check gets garbage     the backend is DOWN with "read error", the good one UP
  admin slowloris               others get answers meanwhile; the slow ones are cut
  fd exhaustion (low ulimit)    logged, no spin, live connections unharmed, recovers
  SIGHUP every 100 ms           no client connection fails
  kill -9 during state writes   the restart finds one whole state (old or new)
  full disk under state_dir     the edit is refused (507), the old state kept
  corrupt state file            lbd refuses to start, naming the file and the reason

Backends here are small threads of this process (echo, reset, sink,
garbage); everything is on 127.0.0.1 with ephemeral ports, and every
process is stopped by PID (harness.TestCase).
"""

import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import LOOPBACK, T, wait_for  # noqa: E402

ADMIN_REQUEST_TIMEOUT_S = 10  # lbd/admin.h


# --------------------------------------------------------------------------
# Helpers



def api(sock, method, path, body=None, timeout=None):
    """One admin request: (status, parsed JSON or text)."""
    c = harness.UnixHTTPConnection(sock, timeout or T(5))
    try:
        data = json.dumps(body) if body is not None else None
        c.request(method, path, body=data,
                  headers={"Content-Type": "application/json"} if data else {})
        r = c.getresponse()
        text = r.read().decode(errors="replace")
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text
    finally:
        c.close()


class Backend:
    """A TCP backend thread. mode: echo | reset (reads, answers a little,
    then RST) | sink (accepts, never reads) | garbage (sends junk and
    closes: for a health check)."""

    def __init__(self, name, mode="echo"):
        self.name, self.mode = name, mode
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if mode == "sink":
            self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.lsock.bind((LOOPBACK, 0))
        self.lsock.listen(256)
        self.port = self.lsock.getsockname()[1]
        self.address = "%s:%d" % (LOOPBACK, self.port)
        self.conns = []
        self.accepted = 0
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            self.accepted += 1
            self.conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            if self.mode == "echo":
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
                c.shutdown(socket.SHUT_WR)
            elif self.mode == "reset":
                c.recv(65536)
                c.sendall(b"partial-answer")
                time.sleep(0.05)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                c.close()
            elif self.mode == "sink":
                while not self.stopping:
                    time.sleep(0.1)
            elif self.mode == "garbage":
                c.sendall(bytes(random.getrandbits(8) for _ in range(300)) + b"\r\n\x00\xff[-]x\r\n\r\n")
                c.close()
        except OSError:
            pass

    def stop(self):
        self.stopping = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def echo_once(port, payload=b"ping", timeout=None):
    """Connects to lbd's frontend, sends payload, half-closes, returns what came back."""
    s = socket.create_connection((LOOPBACK, port), timeout=timeout or T(5))
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            d = s.recv(65536)
            if not d:
                return out
            out += d
    finally:
        s.close()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FaultCase(harness.TestCase):
    def setUp(self):
        super().setUp()
        self.backends = []
        self.addCleanup(lambda: [b.stop() for b in self.backends])
        self.sock = self.path("admin.sock")

    def backend(self, name, mode="echo"):
        b = Backend(name, mode)
        self.backends.append(b)
        return b

    def tcp_config(self, backends, health=None, **kw):
        h = {"type": "tcp", "interval": "300ms", "timeout": "200ms", "rise": 1, "fall": 1}
        h.update(health or {})
        cfg = self.lbd_config([(b.name, b.address) for b in backends], health=h, **kw)
        cfg["admin"] = {"socket": self.sock}
        return cfg

    def start(self, cfg, up=()):
        p = self.start_lbd(cfg, wait_up=["vip/%s" % n for n in up])
        self.port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        wait_for(lambda: self._admin_ok(), T(10), "admin socket answering")
        return p

    def _admin_ok(self):
        try:
            return api(self.sock, "GET", "/v1/status")[0] == 200
        except OSError:
            return False

    def backend_view(self, name):
        st, body = api(self.sock, "GET", "/v1/pools/vip")
        self.assertEqual(st, 200, body)
        for b in body["backends"]:
            if b["name"] == name:
                return b
        self.fail("no backend %s in %s" % (name, body))


# --------------------------------------------------------------------------
# Backends that misbehave


class TestBackendFaults(FaultCase):
    def test_backend_resets_mid_stream(self):
        bad = self.backend("bad", "reset")
        p = self.start(self.tcp_config([bad]), up=["bad"])
        for _ in range(5):
            s = socket.create_connection((LOOPBACK, self.port), timeout=T(5))
            s.sendall(b"GET /watch HTTP/1.1\r\n\r\n")
            got, err = b"", None
            t0 = time.monotonic()
            try:
                while True:
                    d = s.recv(4096)
                    if not d:
                        break
                    got += d
            except ConnectionResetError as e:
                err = e
            s.close()
            # The bytes sent before the reset arrive; then the client's
            # connection ends at once (EOF or reset), it does not hang.
            self.assertTrue(got == b"" or b"partial-answer".startswith(got[:14]), got)
            self.assertLess(time.monotonic() - t0, T(2), "client not told of the reset (err %s)" % err)
        wait_for(lambda: self.backend_view("bad")["active"] == 0, T(5), "no connection left on bad")
        self.assertTrue(p.alive())
        self.assertEqual(api(self.sock, "GET", "/v1/status")[0], 200)

    def test_backend_never_reads(self):
        sink, good = self.backend("sink", "sink"), self.backend("good", "echo")
        cfg = self.tcp_config([sink, good], pool={"balance": "round_robin"})
        p = self.start(cfg, up=["sink", "good"])
        rss0 = harness.rss_kb(p.pid)
        # Find a connection that went to the sink: it never echoes.
        stuck = None
        for _ in range(4):
            s = socket.create_connection((LOOPBACK, self.port), timeout=T(5))
            s.sendall(b"x")
            s.settimeout(0.3)
            try:
                s.recv(1)
                s.close()
            except socket.timeout:
                stuck = s
                break
        self.assertIsNotNone(stuck, "no connection reached the sink")
        # Push as much as lbd accepts for 1.5 s: it must stop reading
        # (backpressure), not buffer without bound.
        stuck.setblocking(False)
        pushed, chunk, t_end = 0, b"y" * 65536, time.monotonic() + 1.5
        while time.monotonic() < t_end:
            try:
                pushed += stuck.send(chunk)
            except BlockingIOError:
                time.sleep(0.01)
        self.assertLess(pushed, 64 << 20, "lbd kept reading from a client whose backend does not read")
        # Meanwhile everyone else is served.
        for i in range(6):
            msg = b"hello-%d" % i
            out = None
            for _ in range(2):  # round robin: one of two lands on good
                try:
                    out = echo_once(self.port, msg, timeout=T(1))
                    break
                except socket.timeout:
                    continue
            self.assertEqual(out, msg)
        if not os.environ.get("SAN"):  # ASan's quarantine makes RSS meaningless
            self.assertLess(harness.rss_kb(p.pid) - rss0, 64 * 1024, "lbd's RSS grew with the unread bytes")
        stuck.close()
        self.assertTrue(p.alive())

    def test_health_check_gets_garbage(self):
        junk, good = self.backend("junk", "garbage"), self.backend("good", "echo")
        cfg = self.tcp_config([junk, good], health={"type": "http", "path": "/readyz", "rise": 1, "fall": 1})
        # The echo backend echoes the request back: not a valid HTTP answer
        # either, so make "good" a TCP-checked pool member in a second pool.
        cfg["pools"].append({"name": "ok", "backends": [{"name": "good2", "address": good.address}],
                             "health": {"type": "tcp", "interval": "300ms", "timeout": "200ms",
                                        "rise": 1, "fall": 1}})
        p = self.start(cfg)
        p.log.wait(r"backend vip/junk is DOWN", T(10), proc=p)
        wait_for(lambda: (self.backend_view("junk").get("last_failure") or {}).get("reason"),
                 T(5), "a failure reason for junk")
        fail = self.backend_view("junk")["last_failure"]
        self.assertEqual(self.backend_view("junk")["health"], "down")
        self.assertEqual(fail["reason"], "read_error", fail)
        self.assertTrue(all(32 <= ord(ch) < 127 for ch in fail["detail"]), fail)
        st, body = api(self.sock, "GET", "/v1/pools/ok")
        self.assertEqual(st, 200)
        wait_for(lambda: api(self.sock, "GET", "/v1/pools/ok")[1]["backends"][0]["health"] == "up",
                 T(5), "good2 up")
        self.assertTrue(p.alive())


# --------------------------------------------------------------------------
# The admin API under a slow client


class TestAdminSlowloris(FaultCase):
    def test_slow_clients_do_not_hold_the_api(self):
        good = self.backend("good")
        p = self.start(self.tcp_config([good]), up=["good"])
        slow = []
        for _ in range(40):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.sock)
            s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")  # never finishes
            slow.append(s)
        t0 = time.monotonic()
        # Others are answered meanwhile, each quickly.
        for _ in range(5):
            t = time.monotonic()
            st, _ = api(self.sock, "GET", "/v1/pools", timeout=T(2))
            self.assertEqual(st, 200)
            self.assertLess(time.monotonic() - t, T(1))
            for s in slow[:5]:
                s.sendall(b"X")  # a byte now and then does not extend the bound
            time.sleep(0.5)
        # The slow ones are cut after ADMIN_REQUEST_TIMEOUT_S.
        for s in slow:
            s.settimeout(ADMIN_REQUEST_TIMEOUT_S + T(5) - (time.monotonic() - t0))
            try:
                while s.recv(4096):
                    pass
            except (socket.timeout, ConnectionResetError) as e:
                if isinstance(e, socket.timeout):
                    self.fail("lbd kept a slow admin client past %ds" % ADMIN_REQUEST_TIMEOUT_S)
            s.close()
        self.assertLess(time.monotonic() - t0, ADMIN_REQUEST_TIMEOUT_S + T(5))
        p.log.wait(r"request not complete after", T(2), proc=p)

    def test_hung_up_client_frees_its_fd_at_once(self):
        """The request guard holds a reference on the connection's
        bufferevent; a client that hangs up mid-request must not keep its fd
        open in lbd until the guard's 10 s timer (a client of metrics.listen
        that connects and hangs up in a loop would exhaust lbd's fds)."""
        good = self.backend("good")
        p = self.start(self.tcp_config([good]), up=["good"])
        base = fd_count(p.pid)
        for _ in range(100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.sock)
            s.sendall(b"GET /v1/sta")
            s.close()
        # Answered only once lbd has accepted every connection before it (FIFO backlog).
        self.assertEqual(api(self.sock, "GET", "/v1/status")[0], 200)
        wait_for(lambda: fd_count(p.pid) <= base + 2, T(2), "lbd's fds back to %d" % base)


# --------------------------------------------------------------------------
# Resource exhaustion


class TestFdExhaustion(FaultCase):
    LIMIT = 64

    def test_low_nofile(self):
        good = self.backend("good")
        cfg = self.tcp_config([good])
        cfg["frontends"][0]["max_connections"] = 10000
        path = self.write_config(cfg)
        self.port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        # exec keeps the PID: the harness stops lbd itself.
        p = self.spawn("lbd", ["/bin/sh", "-c", 'ulimit -n %d && exec "$0" -c "$1"' % self.LIMIT,
                               harness.LBD, path], cwd=harness.ROOT)
        mark = p.log.mark()
        p.log.wait(r"backend vip/good is UP", T(10), proc=p, since=mark)

        # Hold connections until lbd runs out of descriptors. Each is read
        # back at once: the ones echoed are relayed; the first that is not
        # waits in the accept queue of a listener that is out of fds.
        held, relayed = [], []
        for i in range(self.LIMIT):
            try:
                s = socket.create_connection((LOOPBACK, self.port), timeout=T(2))
            except OSError:
                break
            held.append(s)
            s.sendall(b"held-%d\n" % i)
            s.settimeout(T(1))
            try:
                if s.recv(64) == b"held-%d\n" % i:
                    relayed.append(s)
                    continue
            except OSError:
                pass
            break
        self.assertGreater(len(relayed), 0, "no connection was relayed before exhaustion")
        p.log.wait(r"Too many open files|EMFILE|out of (file )?descriptors", T(5), proc=p, since=mark,
                   what="lbd logging fd exhaustion")
        # Exhausted: no spinning, connections already relayed still work.
        c0 = cpu_seconds(p.pid)
        time.sleep(1.0)
        self.assertLess(cpu_seconds(p.pid) - c0, 0.5, "lbd spins while out of fds")
        s = relayed[0]
        s.settimeout(T(2))
        s.sendall(b"still\n")
        self.assertEqual(s.recv(64), b"still\n", "a relayed connection broke during exhaustion")
        n = sum(1 for line in p.log.lines(since=mark) if "Too many open files" in line)
        self.assertLess(n, 50, "the fd exhaustion warning is not rate-limited")
        # fds come back: new connections work again, and none hangs.
        for s in held:
            s.close()
        wait_for(lambda: self._echo_ok(), T(5), "a new connection relayed after fds returned")
        self.assertTrue(p.alive())

    def _echo_ok(self):
        try:
            return echo_once(self.port, b"again", timeout=T(1)) == b"again"
        except OSError:
            return False


# --------------------------------------------------------------------------
# Reloads under load


class TestReloadUnderLoad(FaultCase):
    def test_sighup_every_100ms(self):
        a, b = self.backend("a"), self.backend("b")
        p = self.start(self.tcp_config([a, b]), up=["a", "b"])
        stop = threading.Event()
        results = {"ok": 0, "fail": []}
        lock = threading.Lock()

        def client(n):
            i = 0
            while not stop.is_set():
                msg = b"c%d-%d" % (n, i)
                try:
                    out = echo_once(self.port, msg, timeout=T(3))
                    ok = out == msg
                    err = None if ok else "got %r" % out[:40]
                except OSError as e:
                    ok, err = False, repr(e)
                with lock:
                    if ok:
                        results["ok"] += 1
                    else:
                        results["fail"].append(err)
                i += 1

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
        for t in threads:
            t.start()
        mark = p.log.mark()
        for _ in range(40):  # 4 s
            p.send_signal(signal.SIGHUP)
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(T(10))
        self.assertEqual(results["fail"], [], "client connections failed during reloads")
        self.assertGreater(results["ok"], 40)
        self.assertGreaterEqual(len(p.log.lines(since=mark)), 1)
        self.assertTrue(p.alive())


# --------------------------------------------------------------------------
# The state file: crashes, full disks, corruption


class TestStateFaults(FaultCase):
    def state_path(self, cfg):
        return os.path.join(cfg["state_dir"], "pools.json")

    def test_kill9_during_state_writes(self):
        good = self.backend("good")
        cfg = self.tcp_config([good])
        for round_ in range(4):
            p = self.start(cfg, up=["good"] if round_ == 0 else [])
            stop = threading.Event()
            acked = []

            def editor():
                i = 0
                while not stop.is_set():
                    try:
                        st, _ = api(self.sock, "PATCH", "/v1/pools/vip/backends/good",
                                    {"weight": 1 + i % 200}, timeout=T(2))
                        if st == 200:
                            acked.append(1 + i % 200)
                    except OSError:
                        return
                    i += 1

            t = threading.Thread(target=editor, daemon=True)
            t.start()
            time.sleep(0.3 + random.random() * 0.4)
            p.stop(signal.SIGKILL)
            p.killed = True  # on purpose: harness.check_clean_exit accepts -SIGKILL then
            stop.set()
            t.join(T(5))
            self.assertTrue(acked, "no edit acknowledged before the kill")
            # One whole file: parses, and holds an acknowledged weight (the
            # last acknowledged one, or the one in flight when killed).
            with open(self.state_path(cfg)) as f:
                state = json.load(f)
            entries = [e for e in state["backends"] if e["name"] == "good"]
            w = entries[0].get("weight", 1) if entries else 1
            self.assertIn(w, acked + [1 + len(acked) % 200, 1 + (acked[-1]) % 200], state)
            leftovers = [n for n in os.listdir(cfg["state_dir"]) if n != "pools.json"]
            # A temp file may be left by the kill; lbd must not read it.
            p = self.start(cfg)
            got = self.backend_view("good")["weight"]
            self.assertEqual(got, w, "restart did not restore the persisted weight (%s)" % leftovers)
            p.stop()

    def test_full_disk_refuses_edit_keeps_state(self):
        if os.geteuid() != 0:
            harness.skip_capability("root", "to mount a small tmpfs for state_dir")
        good = self.backend("good")
        cfg = self.tcp_config([good])
        sd = self.path("small")
        os.makedirs(sd)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs", sd],
                           capture_output=True, text=True)
        if r.returncode != 0:
            harness.skip_capability("mounting a tmpfs", r.stderr.strip())
        self.addCleanup(lambda: subprocess.run(["umount", "-l", sd], capture_output=True))
        cfg["state_dir"] = os.path.join(sd, "state")
        p = self.start(cfg, up=["good"])
        st, body = api(self.sock, "PATCH", "/v1/pools/vip/backends/good", {"weight": 7})
        self.assertEqual(st, 200, body)
        with open(self.state_path(cfg), "rb") as f:
            before = f.read()
        # Fill the disk.
        fd = os.open(os.path.join(sd, "filler"), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 1024)
        except OSError as e:
            self.assertEqual(e.errno, errno.ENOSPC)
        finally:
            os.close(fd)
        st, body = api(self.sock, "POST", "/v1/pools/vip/backends",
                       {"name": "new-" + "x" * 40, "address": "127.0.0.1:9", "weight": 2})
        self.assertEqual(st, 507, body)
        self.assertRegex(body["error"], r"(?i)space|full", body)
        st, body = api(self.sock, "PATCH", "/v1/pools/vip/backends/good", {"weight": 9})
        self.assertIn(st, (507,), body)
        # Nothing applied, the old state kept on disk and in memory.
        self.assertEqual(self.backend_view("good")["weight"], 7)
        with open(self.state_path(cfg), "rb") as f:
            self.assertEqual(f.read(), before)
        # Space returns: edits work again.
        os.unlink(os.path.join(sd, "filler"))
        st, body = api(self.sock, "PATCH", "/v1/pools/vip/backends/good", {"weight": 9})
        self.assertEqual(st, 200, body)
        self.assertTrue(p.alive())

    def test_corrupt_state_names_file_and_reason(self):
        good = self.backend("good")
        cfg = self.tcp_config([good])
        os.makedirs(cfg["state_dir"], exist_ok=True)
        bad = self.state_path(cfg)
        with open(bad, "w") as f:
            f.write('{"version": 1, "backends": [{"pool": "vip", "na')  # torn
        path = self.write_config(cfg)
        p = self.spawn("lbd-corrupt", [harness.LBD, "-c", path], cwd=harness.ROOT)
        rc = p.wait(T(10))
        self.assertIsNotNone(rc, "lbd started on a corrupt state file")
        self.assertNotEqual(rc, 0)
        log = p.log.text()
        self.assertIn(bad, log, "the message does not name the file")
        self.assertRegex(log, r"line \d+|column \d+|JSON|parse|unexpected|end of", "no reason given")
        with open(bad) as f:
            self.assertTrue(f.read().endswith('"na'), "lbd changed the corrupt file")

    def test_corrupt_state_start_from_config_alone(self):
        """lbd -F: the unreadable state file is renamed aside (kept for a
        human), lbd serves the config file alone, and new edits persist."""
        good = self.backend("good")
        cfg = self.tcp_config([good])
        os.makedirs(cfg["state_dir"], exist_ok=True)
        bad = self.state_path(cfg)
        torn = '{"version": 1, "backends": [{"pool": "vip", "na'
        with open(bad, "w") as f:
            f.write(torn)
        path = self.write_config(cfg)
        p = self.spawn("lbd-F", [harness.LBD, "-F", "-c", path], cwd=harness.ROOT)
        self.addCleanup(self.check_clean_exit, p)
        p.log.wait(r"starting from the config file alone", T(10), proc=p)
        p.log.wait(r"backend vip/good is UP", T(10), proc=p)
        aside = [n for n in os.listdir(cfg["state_dir"]) if n.startswith("pools.json.corrupt-")]
        self.assertEqual(len(aside), 1, os.listdir(cfg["state_dir"]))
        with open(os.path.join(cfg["state_dir"], aside[0])) as f:
            self.assertEqual(f.read(), torn, "the unreadable file was not kept as it was")
        self.sock = cfg["admin"]["socket"]
        st, body = api(self.sock, "PATCH", "/v1/pools/vip/backends/good", {"weight": 3})
        self.assertEqual(st, 200, body)
        with open(bad) as f:
            self.assertIn('"weight"', f.read())

if __name__ == "__main__":
    unittest.main()
