"""Stress: many concurrent connections across worker threads, with random
half-closes and resets; every byte checked, no fd leaked.

Bounded: a fixed number of connections, a few seconds. `make test SAN=thread`
runs it under ThreadSanitizer (the harness fails the test on any report in
lbd's log).
"""
import hashlib
import os
import random
import socket
import struct
import threading
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import LOOPBACK, T, TestCase, wait_for  # noqa: E402


class EchoServer:
    """A threaded TCP echo backend: echoes until EOF, then closes."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.echo, args=(c,), daemon=True).start()

    @staticmethod
    def echo(c):
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.sock.close()


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Stress(TestCase):
    CONNS = 1500
    PARALLEL = 48

    def one(self, port, rng, results):
        size = rng.choice([0, 1, 100, 4096, 70000, 300000])
        data = rng.randbytes(size)
        reset = rng.random() < 0.2
        s = socket.create_connection((LOOPBACK, port), timeout=T(20))
        try:
            if reset:
                # Send part, then reset: lbd must pass the reset on and free
                # everything, whatever state the relay was in.
                s.sendall(data[: size // 2])
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                results.append(("reset", True))
                return
            sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
            sender.start()
            got = bytearray()
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
            sender.join()
            ok = hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
            results.append(("echo", ok if ok else "sent %d got %d" % (size, len(got))))
        finally:
            s.close()

    def test_concurrent_half_closes_and_resets(self):
        echo = EchoServer()
        self.addCleanup(echo.close)
        cfg = self.lbd_config([("echo", "%s:%d" % (LOOPBACK, echo.port))],
                              health={"type": "tcp", "interval": "1s", "timeout": "500ms"},
                              frontend={"max_connections": 5000, "timeouts": {"connect": "2s", "idle": "30s"}},
                              extra={"threads": 2})
        lbd = self.start_lbd(cfg, wait_up=["vip/echo"])
        port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        # Let the checks settle, then count lbd's fds at rest.
        base = fd_count(lbd.pid)

        rng = random.Random(20261121)
        seeds = [rng.randrange(1 << 30) for _ in range(self.CONNS)]
        results, errors = [], []
        sem = threading.Semaphore(self.PARALLEL)

        def worker(seed):
            with sem:
                try:
                    self.one(port, random.Random(seed), results)
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(sd,)) for sd in seeds]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(T(60))
        took = time.monotonic() - t0
        self.assertEqual(errors, [], "client errors")
        bad = [r for r in results if r[1] is not True]
        self.assertEqual(bad, [], "corrupted or short echoes")
        self.assertEqual(len(results), self.CONNS)
        print("\nstress: %d connections (%d resets) in %.1fs" %
              (len(results), sum(1 for r in results if r[0] == "reset"), took))
        # Every connection gone, every fd back.
        wait_for(lambda: fd_count(lbd.pid) <= base, T(10),
                 "lbd's fds back to %d (now %d)" % (base, fd_count(lbd.pid)))
