#!/usr/bin/python3
"""failover.py - the bench's failover row (bench/run.py --only failover).

A master vanishes from the network (every packet to it dropped, as with a
dead switch port) while 20 long-lived streams (WATCH stand-ins) run through
the proxy, half of them on it. Measured for lbd and for HAProxy with its best
options (`on-marked-down shutdown-sessions`, `option redispatch`), in the
same run: the seconds until every stream of the blackholed master is back on
a live one (closed by the proxy, reconnected by the client, answered by the
other master), and how many new connections (one every 100 ms) failed
meanwhile.

A blackhole needs a network of its own, so the row runs in network
namespaces it creates and deletes (root; skipped with the reason otherwise),
with addresses only in 10.79.0.0/24 inside them:

    ns -sw:  br0, a bridge
    ns -lb:  the proxy under test and the client (on 127.0.0.1 of that ns)
    ns -m1:  master m1  10.79.0.21:6443   (the one blackholed: eth0 down)
    ns -m2:  master m2  10.79.0.22:6443

Both proxies check `GET /readyz` every 500 ms (timeout 300 ms, fall 2, rise
1), connect timeout 300 ms, 2 retries. A run gives up after CAP_S seconds:
a stream never moved counts as CAP_S (HAProxy's default, without
shutdown-sessions, would sit there until the client's own timeout).

The masters and the client are this file, run with --_backend / --_client.
"""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

NET = "10.79.0"
PORT = 6443
LB = NET + ".11"
MASTERS = {"m1": NET + ".21", "m2": NET + ".22"}
STREAMS = 20
CAP_S = 30.0
HEALTH = {"interval_ms": 500, "timeout_ms": 300, "fall": 2, "rise": 1}


# --------------------------------------------------------------------------
# The processes inside the namespaces


def backend_main(name, host, port):
    """/readyz: 200; "WATCH": its name, then a tick every 200 ms; else its name."""
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))

    def serve(s):
        try:
            data = b""
            while b"\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return
                data += chunk
            if data.startswith(b"GET "):
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        return
                    data += chunk
                s.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
            elif data.startswith(b"WATCH"):
                s.sendall(name.encode() + b"\n")
                while True:
                    time.sleep(0.2)
                    s.sendall(b"tick\n")
            else:
                s.sendall(name.encode() + b"\n")
        except OSError:
            pass
        finally:
            s.close()

    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(256)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def read_line(s):
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data.strip().decode()


def open_stream(port, timeout=3.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    s.sendall(b"WATCH\n")
    name = read_line(s)
    s.setblocking(False)
    return s, name


def client_main(port, go_file):
    """Opens the streams, prints "ready", waits for go_file (the blackhole is
    in place), then follows every stream of m1 until it is back on m2,
    probing new connections meanwhile; prints one JSON line."""
    streams = [open_stream(port) for _ in range(STREAMS)]
    victims = [i for i, (_, n) in enumerate(streams) if n == "m1"]
    print("ready %d %d" % (len(streams), len(victims)), flush=True)
    while not os.path.exists(go_file):
        time.sleep(0.01)
    with open(go_file) as f:
        t0 = float(f.read().strip())  # monotonic: same clock in every process
    probes = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def prober():
        while not stop.is_set():
            t = time.monotonic()
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.settimeout(5)
                s.sendall(b"HELLO\n")
                read_line(s)
                s.close()
                probes["ok"] += 1
            except (OSError, EOFError):
                probes["failed"] += 1
            stop.wait(max(0.0, 0.1 - (time.monotonic() - t)))

    th = threading.Thread(target=prober, daemon=True)
    th.start()
    back = {}
    socks = {i: streams[i][0] for i in victims}
    while len(back) < len(victims) and time.monotonic() - t0 < CAP_S:
        live = [s for i, s in socks.items() if i not in back and s is not None]
        r = select.select(live, [], [], 0.05)[0] if live else []
        for i, s in list(socks.items()):
            if i in back:
                continue
            if s is not None and s not in r:
                continue
            if s is not None:
                try:
                    if s.recv(4096):
                        continue  # a tick: still hanging on m1's connection
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                s.close()
            # Closed: reconnect; back once a live master answers.
            try:
                ns, name = open_stream(port)
            except (OSError, EOFError):
                socks[i] = None
                continue
            if name == "m1":  # the proxy sent it to the dead one again
                socks[i] = ns
                continue
            ns.close()
            socks[i] = None
            back[i] = time.monotonic() - t0
        if not live:
            time.sleep(0.05)
    stop.set()
    th.join(6)
    print("result " + json.dumps({
        "streams": len(streams), "on_dead": len(victims), "moved": len(back),
        "seconds": max(back.values()) if len(back) == len(victims) and back else CAP_S,
        "all_moved": len(back) == len(victims), "new_ok": probes["ok"],
        "new_failed": probes["failed"]}), flush=True)


# --------------------------------------------------------------------------
# The row, driven by run.py


def run(cmd, check=True):
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace")


def unavailable():
    """Why the row cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if not any(os.access(os.path.join(d, "ip"), os.X_OK) for d in ("/usr/sbin", "/sbin",
                                                                   "/usr/bin", "/bin")):
        return "needs ip (iproute2)"
    probe = "lbdbprobe%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", probe], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    if r.returncode != 0:
        return "network namespaces: " + r.stderr.decode(errors="replace").strip()
    subprocess.run(["ip", "netns", "del", probe], timeout=10)
    return None


class Net:
    def __init__(self):
        self.prefix = "lbdb%d" % os.getpid()
        self.names = []

    def ns(self, role):
        return "%s-%s" % (self.prefix, role)

    def add(self, role):
        n = self.ns(role)
        run(["ip", "netns", "add", n])
        self.names.append(n)
        run(["ip", "-n", n, "link", "set", "lo", "up"])
        return n

    def build(self):
        sw = self.add("sw")
        run(["ip", "-n", sw, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", sw, "link", "set", "br0", "up"])
        hosts = dict(MASTERS, lb=LB)
        for role, ip in hosts.items():
            n = self.add(role)
            run(["ip", "-n", sw, "link", "add", "p-" + role, "type", "veth", "peer", "name",
                 "eth0", "netns", n])
            run(["ip", "-n", sw, "link", "set", "p-" + role, "master", "br0", "up"])
            run(["ip", "-n", n, "addr", "add", ip + "/24", "dev", "eth0"])
            run(["ip", "-n", n, "link", "set", "eth0", "up"])

    def link(self, role, up):
        run(["ip", "-n", self.ns(role), "link", "set", "eth0", "up" if up else "down"])

    def delete(self):
        """Ends what still runs inside (started by this row), then the namespaces."""
        for n in reversed(self.names):
            pids = run(["ip", "netns", "pids", n], check=False).split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", n], check=False)
        self.names = []


def lbd_conf(wd, port):
    h = HEALTH
    os.makedirs(os.path.join(wd, "fo-lbd-state"), exist_ok=True)
    return "\n".join([
        "state_dir: %s/fo-lbd-state" % wd,
        "threads: 1",
        "log: {level: warn}",
        "admin: {socket: %s/fo-lbd-admin.sock}" % wd,
        "frontends:",
        '  - {name: api, listen: ["127.0.0.1:%d"], pool: masters, retries: 2,'
        " timeouts: {connect: 300ms, idle: 1h}}" % port,
        "pools:",
        "  - name: masters",
        "    balance: round_robin",
        "    backends:",
    ] + ['      - {name: %s, address: "%s:%d"}' % (n, ip, PORT) for n, ip in MASTERS.items()] + [
        "    health: {type: http, path: /readyz, interval: %dms, timeout: %dms, fall: %d,"
        " rise: %d}" % (h["interval_ms"], h["timeout_ms"], h["fall"], h["rise"]),
    ]) + "\n"


def haproxy_conf(port):
    h = HEALTH
    out = ["global", "    maxconn 1000", "defaults", "    mode tcp", "    timeout connect 300ms",
           "    timeout client 1h", "    timeout server 1h", "    timeout check %dms"
           % h["timeout_ms"], "    retries 2", "    option redispatch",
           "listen api", "    bind 127.0.0.1:%d" % port, "    balance roundrobin",
           "    option httpchk GET /readyz",
           "    default-server check inter %dms fall %d rise %d on-marked-down shutdown-sessions"
           % (h["interval_ms"], h["fall"], h["rise"])]
    out += ["    server %s %s:%d" % (n, ip, PORT) for n, ip in MASTERS.items()]
    return "\n".join(out) + "\n"


def measure(a, procs, wd, log):
    """The failover row: {"variants": {"lbd": ..., "haproxy": ...}} or {"skipped": why}."""
    why = unavailable()
    if why:
        log("failover: skipped: " + why)
        return {"skipped": why}
    net = Net()
    me = os.path.abspath(__file__)
    py = sys.executable
    res = {"lbd": [], "haproxy": []}
    try:
        net.build()
        for name, ip in MASTERS.items():
            procs.spawn("fo-" + name, ["ip", "netns", "exec", net.ns(name), py, me,
                                       "--_backend", name, ip, str(PORT)])
        runs = min(a.runs, 3)
        for i in range(runs):
            for v in ("lbd", "haproxy"):
                r = one_run(v, net, procs, wd, py, me, a)
                res[v].append(r)
                log("failover %-8s run %d/%d: %.2fs until every stream of the dead master "
                    "was back (%d/%d moved), %d new connections failed"
                    % (v, i + 1, runs, r["seconds"], r["moved"], r["on_dead"],
                       r["new_failed"]))
    finally:
        for p in list(procs.live):
            if p.bench_name.startswith("fo-"):
                procs.stop(p, timeout=3.0)
        net.delete()
    out = {"unit": "s", "variants": {}}
    for v, runs in res.items():
        secs = sorted(r["seconds"] for r in runs)
        out["variants"][v] = {"runs": runs, "median": secs[len(secs) // 2],
                              "new_failed": max(r["new_failed"] for r in runs),
                              "all_moved": all(r["all_moved"] for r in runs)}
    return out


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError("failover: timed out waiting for " + what)


def one_run(v, net, procs, wd, py, me, a):
    net.link("m1", True)
    port = 16443
    if v == "lbd":
        path = os.path.join(wd, "fo-lbd.yaml")
        with open(path, "w") as f:
            f.write(lbd_conf(wd, port))
        argv = [a.lbd, "-c", path]
    else:
        path = os.path.join(wd, "fo-haproxy.cfg")
        with open(path, "w") as f:
            f.write(haproxy_conf(port))
        argv = ["haproxy", "-db", "-f", path]
    proxy = procs.spawn("fo-" + v, ["ip", "netns", "exec", net.ns("lb")] + argv)
    go = os.path.join(wd, "fo-go")
    if os.path.exists(go):
        os.unlink(go)
    client = None
    try:
        # Both masters up in the proxy: streams land on both (round robin).
        time.sleep(1.5)
        procs.check_alive(proxy)
        out = os.path.join(wd, "fo-client.out")
        with open(out, "wb") as f:
            client = procs.spawn("fo-client", ["ip", "netns", "exec", net.ns("lb"), py, me,
                                               "--_client", str(port), go], stdout=f)

        def text():
            with open(out) as f:
                return f.read()
        wait_for(lambda: "ready" in text() or client.poll() is not None, 20, "the streams")
        procs.check_alive(client)
        t0 = time.monotonic()
        net.link("m1", False)
        with open(go + ".tmp", "w") as f:
            f.write("%.6f" % t0)
        os.rename(go + ".tmp", go)
        wait_for(lambda: "result " in text() or client.poll() is not None, CAP_S + 15,
                 "the client's result")
        line = [x for x in text().splitlines() if x.startswith("result ")]
        if not line:
            raise RuntimeError("failover client: no result: " + text()[-500:])
        return json.loads(line[0][len("result "):])
    finally:
        if client:
            procs.stop(client, timeout=3.0)
        procs.stop(proxy, timeout=5.0)
        net.link("m1", True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--_backend"]:
        backend_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1:2] == ["--_client"]:
        client_main(int(sys.argv[2]), sys.argv[3])
    else:
        print(__doc__)
        sys.exit(2)
