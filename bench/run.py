#!/usr/bin/python3
"""run.py - lbd against HAProxy, side by side, on this machine (`make bench`).

Starts, all on 127.0.0.1 and on ephemeral ports, in a temp dir:
  nginx       a tiny body on keep-alive (the backend of the request metrics),
  iperf3 -s   the backend of the bulk metric,
  a holder    (this script with --_holder) that accepts, answers one line and
              keeps every socket (the backend of the idle-memory metric),
  a bulk holder (--_bulkholder) that reads FDS_BYTES, answers FDS_BYTES and
              keeps the socket (the backend of the descriptors metric),
  lbd         build/lbd -c FILE, one frontend per backend,
  HAProxy     mode tcp, the same frontends, nbthread = --threads, plus one more
              bulk frontend with `option splice-auto` and one with
              `option splice-request` + `option splice-response` (forced),
and measures (see bench/README.md for each method and its caveats):
  bulk   iperf3 -c through each proxy, Gbit/s
  rps    wrk -t2 -c50 keep-alive requests/s, and the proxy's CPU time per request
  cps    wrk with `Connection: close`: new connections/s
  p99    wrk -t1 -c10 paced by a Lua delay() to ~2000 req/s, p99 latency
  rss    VmRSS growth of the proxy holding N idle proxied connections, bytes/conn
  ir     instructions per proxied request under valgrind --tool=callgrind
  fds    open descriptors of the proxy per idle proxied connection that moved
         FDS_BYTES each way first (so a splicing proxy took its pipes)
  failover  a master blackholed under 20 streams: seconds until its streams are
         back on a live one, new connections failed meanwhile (bench/failover.py,
         in network namespaces of its own)

Runs are interleaved (lbd, haproxy, [haproxy+splice...], direct; repeated) and
each figure is the median of --runs runs (5; 1 with --quick).

    bench/run.py [--build DIR] [--threads N] [--quick] [--only rps,cps,...]
                 [--runs N] [--out DIR] [--keep]

A full run writes bench/RESULTS.md and bench/results.json; --quick or --only
write them to the temp dir instead (printed), unless --out is given.
Every process started here is killed by its PID at exit, on Ctrl-C too.
"""

import argparse
import datetime
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import failover  # noqa: E402 - bench/failover.py, beside this file

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
HERE = os.path.join(ROOT, "bench")
METRICS = ["bulk", "rps", "cps", "p99", "rss", "ir", "fds", "failover"]
FDS_BYTES = 256 * 1024  # each way, per connection of the fds metric: bulk for lbd (64 KiB)
TOOLS = {
    "haproxy": "haproxy",
    "nginx": "nginx-light",
    "wrk": "wrk",
    "iperf3": "iperf3",
    "valgrind": "valgrind",
    "callgrind_annotate": "valgrind",
}
LOOP = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# Processes: every child is recorded and killed by PID (and its descendants,
# found through /proc, by PID too) at the end.


def nofile_hard():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def raise_nofile():
    """Soft RLIMIT_NOFILE up to the hard one (children inherit it)."""
    hard = nofile_hard()
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def children_of(pid):
    """Every descendant PID of pid, from /proc."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in kids.get(p, []):
            out.append(c)
            todo.append(c)
    return out


class Procs:
    def __init__(self, workdir):
        self.workdir = workdir
        self.live = []  # (name, Popen)

    def spawn(self, name, argv, stdout=None):
        logpath = os.path.join(self.workdir, name + ".log")
        lf = open(logpath, "ab")
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stdout or lf,
            stderr=lf,
            preexec_fn=raise_nofile,
            cwd=self.workdir,
        )
        lf.close()
        p.bench_name = name
        p.bench_log = logpath
        self.live.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=10.0):
        """Stops p by PID (sig, then SIGKILL after timeout) and any descendant
        left behind (nginx workers), by PID. Returns p's exit status."""
        if p not in self.live:
            return p.returncode
        kids = children_of(p.pid)
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.live.remove(p)
        return p.returncode

    def stop_all(self):
        for p in list(reversed(self.live)):
            try:
                self.stop(p, timeout=3.0)
            except Exception as e:  # keep killing the others
                print("bench: stopping %s (pid %d): %s" % (p.bench_name, p.pid, e),
                      file=sys.stderr)

    def check_alive(self, p):
        if p.poll() is not None:
            tail = ""
            try:
                with open(p.bench_log, "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
            except OSError:
                pass
            raise BenchError("%s exited with status %s; its log ends:\n%s"
                             % (p.bench_name, p.returncode, tail))


def run_client(argv, timeout, env=None):
    """Runs a client (wrk, iperf3) with a bound on its time; on a timeout,
    Ctrl-C or any error it is killed by PID and reaped before re-raising."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, preexec_fn=raise_nofile)
    try:
        out, err = p.communicate(timeout=timeout)
    except BaseException:
        p.kill()
        p.wait()
        raise
    return subprocess.CompletedProcess(argv, p.returncode, out, err)


def run_cmd(argv, timeout):
    """run_client, failing on a non-zero exit; returns stdout."""
    p = run_client(argv, timeout)
    if p.returncode != 0:
        raise BenchError("%s failed (%d): %s" % (argv[0], p.returncode,
                                                 (p.stderr or p.stdout).decode()[-1500:]))
    return p.stdout.decode()


def free_port():
    s = socket.socket()
    s.bind((LOOP, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, procs, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        procs.check_alive(proc)
        try:
            socket.create_connection((LOOP, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError("%s: nothing listening on %d after %.0fs" % (proc.bench_name, port, timeout))


def http_get(port, timeout=2.0):
    """One request on a fresh connection; returns True on a 200."""
    try:
        with socket.create_connection((LOOP, port), timeout) as s:
            s.settimeout(timeout)
            s.sendall(REQUEST)
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def wait_http(port, proc, procs, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        procs.check_alive(proc)
        if http_get(port):
            return
        time.sleep(0.1)
    raise BenchError("%s: no HTTP 200 through port %d after %.0fs"
                     % (proc.bench_name, port, timeout))


def cpu_ticks(pid, split=False):
    """utime + stime of the whole process (every thread), in clock ticks;
    with split, (utime, stime)."""
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    fields = st[st.rindex(")") + 2 :].split()
    if split:
        return int(fields[11]), int(fields[12])
    return int(fields[11]) + int(fields[12])


def busy_cores(secs=1.0):
    """Cores kept busy by the whole machine over secs (from /proc/stat)."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = sample()
    time.sleep(secs)
    t1, i1 = sample()
    return os.cpu_count() * (1 - (i1 - i0) / max(1, t1 - t0))


class OthersMeter:
    """CPU used during a run by everything that is not this bench: the
    machine's busy ticks (/proc/stat) less those of this script, its reaped
    clients (RUSAGE_CHILDREN) and its live children and their descendants."""

    def __init__(self, procs):
        self.procs = procs

    def _ours(self):
        pids = set()
        for p in self.procs.live:
            pids.add(p.pid)
            pids.update(children_of(p.pid))
        ticks = 0
        for pid in pids:
            try:
                ticks += cpu_ticks(pid)
            except (OSError, ValueError):
                pass
        ru_s = resource.getrusage(resource.RUSAGE_SELF)
        ru_c = resource.getrusage(resource.RUSAGE_CHILDREN)
        secs = ru_s.ru_utime + ru_s.ru_stime + ru_c.ru_utime + ru_c.ru_stime
        return pids, ticks + secs * CLK_TCK

    def _busy(self):
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v) - v[3] - v[4]

    def start(self):
        self.t0 = time.monotonic()
        self.pids0, self.ours0 = self._ours()
        self.busy0 = self._busy()

    def stop(self):
        busy = self._busy() - self.busy0
        _, ours = self._ours()
        wall = time.monotonic() - self.t0
        return max(0.0, (busy - (ours - self.ours0)) / CLK_TCK / max(wall, 1e-3))


def wait_quiet(limit_s, threshold=0.3, sample=1.0, quiet_log=False):
    """Waits up to limit_s for the machine to be quiet (others' builds and
    tests skew every figure); returns the busy cores last seen. Between runs
    the bench's own daemons are idle, so what is seen is other work."""
    end = time.monotonic() + limit_s
    busy = busy_cores(sample)
    said = False
    while busy > threshold and time.monotonic() < end:
        if not said or not quiet_log:
            log("machine busy (%.2f cores used by other work); waiting up to %ds" % (
                busy, max(0, end - time.monotonic())))
            said = True
        time.sleep(2)
        busy = busy_cores(sample)
    if busy > threshold:
        log("WARNING: still %.2f cores busy with other work; figures will be noisy" % busy)
    return busy


def vm_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError("no VmRSS for pid %d" % pid)


# --------------------------------------------------------------------------
# The holder: a backend that accepts, answers each chunk with one line, and
# keeps every socket open until it is closed by the peer. Run as a child
# (`run.py --_holder PORT`) so its fds are not ours.


def holder_main(port):
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((LOOP, port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.EpollSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                while True:
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # EMFILE: leave it queued
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, "c")
            else:
                c = key.fileobj
                try:
                    data = c.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data:
                    try:
                        c.send(b"pong\n")
                    except OSError:
                        pass
                else:
                    sel.unregister(c)
                    c.close()


def bulkholder_main(port):
    """Reads FDS_BYTES from each connection, answers FDS_BYTES, then keeps
    the socket until the peer closes it."""
    raise_nofile()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((LOOP, port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.EpollSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    zeros = bytes(65536)
    while True:
        for key, ev in sel.select():
            if key.data is None:
                while True:
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, {"got": 0, "out": 0})
                continue
            c, st = key.fileobj, key.data
            try:
                if ev & selectors.EVENT_READ:
                    data = c.recv(65536)
                    if not data:
                        sel.unregister(c)
                        c.close()
                        continue
                    before = st["got"]
                    st["got"] += len(data)
                    if before < FDS_BYTES <= st["got"]:
                        st["out"] = FDS_BYTES
                        sel.modify(c, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
                if ev & selectors.EVENT_WRITE and st["out"] > 0:
                    st["out"] -= c.send(zeros[:min(len(zeros), st["out"])])
                    if st["out"] == 0:
                        sel.modify(c, selectors.EVENT_READ, st)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                sel.unregister(c)
                c.close()


# --------------------------------------------------------------------------
# Configs


def nginx_conf(wd, port):
    return """
worker_processes 2;
daemon off;
master_process on;
pid {wd}/nginx.pid;
error_log {wd}/nginx-error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 10000; }}
http {{
    access_log off;
    keepalive_timeout 3600s;
    keepalive_requests 1000000;
    client_body_temp_path {wd}/ngx-body;
    proxy_temp_path {wd}/ngx-proxy;
    fastcgi_temp_path {wd}/ngx-fastcgi;
    uwsgi_temp_path {wd}/ngx-uwsgi;
    scgi_temp_path {wd}/ngx-scgi;
    server {{
        listen {loop}:{port} backlog=4096;
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
    }}
}}
""".format(wd=wd, port=port, loop=LOOP)


def lbd_conf(wd, name, threads, maxconn, fronts, check_interval="2s"):
    """fronts: [(name, listen_port, backend_port)]; one pool per frontend."""
    out = ["state_dir: %s/%s-state" % (wd, name),
           "threads: %d" % threads,
           "shutdown_grace: 1s",
           "log: {level: warn}",
           "admin: {socket: %s/%s-admin.sock}" % (wd, name),
           "frontends:"]
    for fname, lport, _ in fronts:
        out.append('  - {name: %s, listen: ["%s:%d"], pool: %s, max_connections: %d,'
                   " timeouts: {connect: 3s, idle: 1h}}" % (fname, LOOP, lport, fname, maxconn))
    out.append("pools:")
    for fname, _, bport in fronts:
        out.append('  - {name: %s, backends: [{name: b1, address: "%s:%d"}],'
                   " health: {type: tcp, interval: %s, timeout: 1s}}"
                   % (fname, LOOP, bport, check_interval))
    os.makedirs("%s/%s-state" % (wd, name), exist_ok=True)
    return "\n".join(out) + "\n"


def haproxy_conf(threads, maxconn, fronts, check=True):
    """fronts: [(name, listen_port, backend_port)]; bulk_splice_auto gets
    `option splice-auto`, bulk_splice splice in both directions always."""
    out = ["global",
           "    nbthread %d" % threads,
           "    maxconn %d" % maxconn,
           "    maxpipes 100",
           "defaults",
           "    mode tcp",
           "    timeout connect 3s",
           "    timeout client 1h",
           "    timeout server 1h",
           "    timeout client-fin 1h",
           "    timeout server-fin 1h"]
    for fname, lport, bport in fronts:
        out += ["listen %s" % fname,
                "    bind %s:%d" % (LOOP, lport),
                "    maxconn %d" % maxconn]
        if fname == "bulk_splice_auto":
            out.append("    option splice-auto")
        elif fname == "bulk_splice":
            out += ["    option splice-request", "    option splice-response"]
        out.append("    server b1 %s:%d%s" % (LOOP, bport, " check inter 2s" if check else ""))
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# The rig: backends and proxies


class Rig:
    def __init__(self, args, procs, wd):
        self.a, self.procs, self.wd = args, procs, wd
        # Two fds per proxied connection, plus HAProxy's splice pipes
        # (maxpipes 100: 200 fds) and some slack, under the hard fd limit.
        self.maxconn = max(1000, min(100000, (nofile_hard() - 1000) // 2))
        self.ports = {}
        self.nginx = self.iperf = self.holder = self.bulkholder = None
        self.lbd = self.haproxy = None

    def write(self, name, text):
        path = os.path.join(self.wd, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # backends
    def start_backends(self, want):
        if {"rps", "cps", "p99", "ir"} & want and not self.nginx:
            self.ports["nginx"] = free_port()
            for d in ("ngx-body", "ngx-proxy", "ngx-fastcgi", "ngx-uwsgi", "ngx-scgi"):
                os.makedirs(os.path.join(self.wd, d), exist_ok=True)
            conf = self.write("nginx.conf", nginx_conf(self.wd, self.ports["nginx"]))
            self.nginx = self.procs.spawn("nginx", ["nginx", "-p", self.wd, "-c", conf])
            wait_http(self.ports["nginx"], self.nginx, self.procs)
            log("nginx up on %d (pid %d)" % (self.ports["nginx"], self.nginx.pid))
        if "bulk" in want and not self.iperf:
            self.ports["iperf"] = free_port()
            self.iperf = self.procs.spawn(
                "iperf3-server", ["iperf3", "-s", "-B", LOOP, "-p", str(self.ports["iperf"])])
            time.sleep(0.3)
            self.procs.check_alive(self.iperf)
            log("iperf3 server up on %d (pid %d)" % (self.ports["iperf"], self.iperf.pid))
        if "rss" in want and not self.holder:
            self.ports["holder"] = free_port()
            self.holder = self.procs.spawn(
                "holder", [sys.executable, os.path.abspath(__file__), "--_holder",
                           str(self.ports["holder"])])
            wait_port(self.ports["holder"], self.holder, self.procs)
            log("holder up on %d (pid %d)" % (self.ports["holder"], self.holder.pid))
        if "fds" in want and not self.bulkholder:
            self.ports["bulkholder"] = free_port()
            self.bulkholder = self.procs.spawn(
                "bulkholder", [sys.executable, os.path.abspath(__file__), "--_bulkholder",
                               str(self.ports["bulkholder"])])
            wait_port(self.ports["bulkholder"], self.bulkholder, self.procs)
            log("bulk holder up on %d (pid %d)" % (self.ports["bulkholder"],
                                                   self.bulkholder.pid))

    def fronts(self, proxy):
        """(name, listen port, backend port) for each backend that runs; ports
        are fixed per proxy so a restarted proxy listens where it did."""
        out = []
        for fname, bname in (("web", "nginx"), ("bulk", "iperf"), ("hold", "holder"),
                             ("bulkhold", "bulkholder")):
            if bname in self.ports:
                key = "%s-%s" % (proxy, fname)
                if key not in self.ports:
                    self.ports[key] = free_port()
                out.append((fname, self.ports[key], self.ports[bname]))
        if proxy == "haproxy" and "iperf" in self.ports:
            for fname in ("bulk_splice_auto", "bulk_splice"):
                key = "haproxy-" + fname
                if key not in self.ports:
                    self.ports[key] = free_port()
                out.append((fname, self.ports[key], self.ports["iperf"]))
        return out

    def port(self, variant, front):
        """Listen port of a variant: lbd, haproxy, haproxy+splice-auto,
        haproxy+splice or direct."""
        if variant == "direct":
            return self.ports[{"web": "nginx", "bulk": "iperf", "hold": "holder",
                               "bulkhold": "bulkholder"}[front]]
        if variant == "haproxy+splice-auto":
            return self.ports["haproxy-bulk_splice_auto"]
        if variant == "haproxy+splice":
            return self.ports["haproxy-bulk_splice"]
        return self.ports["%s-%s" % (variant, front)]

    def wait_proxy_ready(self, p, proxy):
        for fname, lport, _ in self.fronts(proxy):
            if fname == "web":
                wait_http(lport, p, self.procs)
            else:
                # iperf3's and the holder's ports: a bare connect would be
                # taken as a client by iperf3, so only check the listener
                # through /proc/net/tcp (state 0A = LISTEN).
                wait_listen(lport, p, self.procs)
        # The proxies' first health checks: give them a moment to mark the
        # backends up (lbd's fail-safe routes anyway when all are down).
        time.sleep(0.5)

    def start_lbd(self, name="lbd", valgrind=None, check_interval="2s"):
        conf = self.write(name + ".yaml", lbd_conf(self.wd, name, self.a.threads, self.maxconn,
                                                   self.fronts("lbd"), check_interval))
        argv = [self.a.lbd, "-c", conf]
        if valgrind:
            argv = valgrind + argv
        p = self.procs.spawn(name, argv)
        self.wait_proxy_ready(p, "lbd")
        return p

    def start_haproxy(self, name="haproxy", valgrind=None, check=True):
        conf = self.write(name + ".cfg", haproxy_conf(self.a.threads, self.maxconn,
                                                      self.fronts("haproxy"), check))
        argv = ["haproxy", "-db", "-f", conf]
        if valgrind:
            argv = valgrind + argv
        p = self.procs.spawn(name, argv)
        self.wait_proxy_ready(p, "haproxy")
        return p

    def start_proxies(self):
        if not self.lbd:
            self.lbd = self.start_lbd()
            log("lbd up (pid %d, threads: %d)" % (self.lbd.pid, self.a.threads))
        if not self.haproxy:
            self.haproxy = self.start_haproxy()
            log("haproxy up (pid %d, nbthread %d)" % (self.haproxy.pid, self.a.threads))

    def stop_proxies(self):
        for p in (self.lbd, self.haproxy):
            if p:
                self.procs.stop(p)
        self.lbd = self.haproxy = None

    def pid(self, variant):
        return {"lbd": self.lbd, "haproxy": self.haproxy,
                "haproxy+splice": self.haproxy, "haproxy+splice-auto": self.haproxy}[variant].pid


def wait_listen(port, proc, procs, timeout=20.0):
    end = time.monotonic() + timeout
    want = ":%04X " % port
    while time.monotonic() < end:
        procs.check_alive(proc)
        for tab in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(tab) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) > 3 and parts[1].endswith(want.strip()) \
                                and parts[3] == "0A":
                            return
            except OSError:
                pass
        time.sleep(0.05)
    raise BenchError("%s: not listening on %d after %.0fs" % (proc.bench_name, port, timeout))


# --------------------------------------------------------------------------
# Clients

WRK_LUA = r"""
local close = os.getenv("BENCH_CLOSE") == "1"
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
init = function(args)
  if close then wrk.headers["Connection"] = "close" end
end
if pace > 0 then
  delay = function() return pace end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "err_connect": %d, ' ..
    '"err_read": %d, "err_write": %d, "err_status": %d, "err_timeout": %d, ' ..
    '"lat_mean_us": %.1f, "lat_p50_us": %d, "lat_p90_us": %d, "lat_p99_us": %d, ' ..
    '"lat_max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
"""


def wrk(rig, port, threads, conns, secs, close=False, delay_ms=0):
    env = dict(os.environ, BENCH_CLOSE="1" if close else "0", BENCH_DELAY_MS=str(delay_ms))
    argv = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % secs, "--timeout", "5s",
            "-s", rig.lua, "http://%s:%d/" % (LOOP, port)]
    p = run_client(argv, secs + 30, env)
    out = p.stdout.decode()
    m = re.search(r"^WRKJSON (.*)$", out, re.M)
    if p.returncode != 0 or not m:
        raise BenchError("wrk failed (%d): %s %s" % (p.returncode, out[-1500:],
                                                     p.stderr.decode()[-500:]))
    r = json.loads(m.group(1))
    r["rate"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = sum(r[k] for k in r if k.startswith("err_"))
    return r


def iperf(port, secs):
    out = run_cmd(["iperf3", "-c", LOOP, "-p", str(port), "-t", str(secs), "-J"], secs + 30)
    j = json.loads(out)
    if "error" in j:
        raise BenchError("iperf3: %s" % j["error"])
    return j["end"]["sum_received"]["bits_per_second"] / 1e9


def keepalive_requests(port, n, timeout=60.0):
    """n requests, one after another, on one keep-alive connection."""
    s = socket.create_connection((LOOP, port), 5)
    s.settimeout(timeout)
    buf = b""
    for _ in range(n):
        s.sendall(REQUEST)
        while True:
            h = buf.find(b"\r\n\r\n")
            if h >= 0:
                m = re.search(rb"Content-Length: *(\d+)", buf[:h], re.I)
                end = h + 4 + (int(m.group(1)) if m else 0)
                if len(buf) >= end:
                    buf = buf[end:]
                    break
            chunk = s.recv(65536)
            if not chunk:
                raise BenchError("connection closed after a partial reply")
            buf += chunk
    s.close()


# --------------------------------------------------------------------------
# Metrics. Each returns {"variants": {name: {"runs": [...], "median": x}}, ...}.


def median_of(runs, key):
    return statistics.median(r[key] for r in runs)


def rounds(a, variants, fn, what):
    """fn(variant) -> dict; interleaved: v1 v2 ... v1 v2 ..."""
    res = {v: [] for v in variants}
    meter = OthersMeter(a.procs)
    for i in range(a.runs):
        for v in variants:
            if a.run_wait_budget > 0:
                t = time.monotonic()
                wait_quiet(min(10, a.run_wait_budget), sample=0.5, quiet_log=True)
                a.run_wait_budget -= time.monotonic() - t
            meter.start()
            r = fn(v)
            r["others_cores"] = round(meter.stop(), 2)
            res[v].append(r)
            log("%s %-19s run %d/%d: %s" % (what, v, i + 1, a.runs, short(r)))
            time.sleep(a.pause)
    return res


def short(r):
    keys = [k for k in ("gbps", "rate", "lat_p99_us", "cpu_us_per_req", "bytes_per_conn",
                        "fds_per_conn", "ir_per_req", "errors", "others_cores") if k in r]
    return ", ".join("%s=%s" % (k, fmt_num(r[k])) for k in keys)


def fmt_num(x):
    if isinstance(x, float):
        return "%.3g" % x if abs(x) < 100 else "%.0f" % x
    return str(x)


def m_bulk(a, rig):
    rig.start_backends({"bulk"})
    rig.start_proxies()

    def one(v):
        return {"gbps": iperf(rig.port(v, "bulk"), a.secs)}

    res = rounds(a, ["lbd", "haproxy", "haproxy+splice-auto", "haproxy+splice", "direct"], one,
                 "bulk")
    return {"unit": "Gbit/s", "variants": {v: {"runs": r, "median": median_of(r, "gbps")}
                                           for v, r in res.items()}}


def m_rps(a, rig, close=False):
    rig.start_backends({"rps"})
    rig.start_proxies()
    what = "cps" if close else "rps"

    def one(v):
        pid = None if v == "direct" else rig.pid(v)
        t0 = cpu_ticks(pid, split=True) if pid else (0, 0)
        r = wrk(rig, rig.port(v, "web"), 2, 50, a.secs, close=close)
        if pid:
            t1 = cpu_ticks(pid, split=True)
            n = max(1, r["requests"])
            r["cpu_user_us_per_req"] = (t1[0] - t0[0]) / CLK_TCK * 1e6 / n
            r["cpu_sys_us_per_req"] = (t1[1] - t0[1]) / CLK_TCK * 1e6 / n
            r["cpu_s"] = (t1[0] + t1[1] - t0[0] - t0[1]) / CLK_TCK
            r["cpu_us_per_req"] = r["cpu_s"] * 1e6 / n
        if r["errors"]:
            log("%s %s: wrk counted %d errors (%s)" % (what, v, r["errors"], r))
        return r

    res = rounds(a, ["lbd", "haproxy", "direct"], one, what)
    out = {"unit": "conn/s" if close else "req/s", "variants": {}}
    for v, r in res.items():
        out["variants"][v] = {"runs": r, "median": median_of(r, "rate")}
        if v != "direct":
            for k in ("cpu_us_per_req", "cpu_user_us_per_req", "cpu_sys_us_per_req"):
                out["variants"][v][k] = median_of(r, k)
    if close:
        # Let the TIME_WAIT sockets of this burst age a little.
        time.sleep(a.pause)
    return out


def m_p99(a, rig):
    rig.start_backends({"p99"})
    rig.start_proxies()
    conns, delay = 10, 5  # 10 connections x (5 ms + latency) ~ 2000 req/s

    def one(v):
        return wrk(rig, rig.port(v, "web"), 1, conns, a.secs, delay_ms=delay)

    res = rounds(a, ["lbd", "haproxy", "direct"], one, "p99")
    return {"unit": "us", "rate_target": conns * 1000 // delay,
            "variants": {v: {"runs": r, "median": median_of(r, "lat_p99_us"),
                             "rate": median_of(r, "rate"),
                             "p50_us": median_of(r, "lat_p50_us")}
                         for v, r in res.items()}}


def m_rss(a, rig):
    rig.start_backends({"rss"})
    # The proxy holds 2 fds per proxied connection; stay under the hard limit.
    n = min(a.idle_conns, rig.maxconn - 100)

    def one(v):
        # A fresh proxy per run: the baseline is a proxy that has relayed
        # nothing but the readiness probe.
        p = rig.start_lbd() if v == "lbd" else rig.start_haproxy()
        try:
            time.sleep(0.5)
            before = vm_rss(p.pid)
            port = rig.port(v, "hold")
            socks = []
            try:
                t0 = time.monotonic()
                for _ in range(n):
                    s = socket.create_connection((LOOP, port), 5)
                    s.settimeout(5)
                    socks.append(s)
                    s.sendall(b"ping\n")
                    if s.recv(16) != b"pong\n":
                        raise BenchError("holder reply missing through %s" % v)
                opened = time.monotonic() - t0
                time.sleep(1.0)
                rig.procs.check_alive(p)
                after = vm_rss(p.pid)
            finally:
                for s in socks:
                    s.close()
            return {"conns": n, "rss_before": before, "rss_after": after,
                    "bytes_per_conn": (after - before) / n, "open_s": round(opened, 2)}
        finally:
            rig.procs.stop(p)

    res = rounds(a, ["lbd", "haproxy"], one, "rss")
    return {"unit": "B/conn", "conns": n,
            "variants": {v: {"runs": r, "median": median_of(r, "bytes_per_conn")}
                         for v, r in res.items()}}


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def recv_exact(s, n):
    got = 0
    while got < n:
        d = s.recv(min(65536, n - got))
        if not d:
            raise BenchError("connection closed after %d of %d bytes" % (got, n))
        got += len(d)


def m_fds(a, rig):
    """Descriptors a proxy holds per idle connection that moved FDS_BYTES
    each way first: a proxy that keeps a splice pipe per bulk direction
    holds 6; one that gives its pipes back when empty, 2."""
    rig.start_backends({"fds"})
    n = a.fds_conns
    payload = bytes(FDS_BYTES)

    def one(v):
        p = rig.start_lbd() if v == "lbd" else rig.start_haproxy()
        try:
            time.sleep(0.5)
            before = fd_count(p.pid)
            socks = []
            try:
                for _ in range(n):
                    s = socket.create_connection((LOOP, rig.port(v, "bulkhold")), 5)
                    s.settimeout(10)
                    socks.append(s)
                    s.sendall(payload)
                    recv_exact(s, FDS_BYTES)
                # Every byte delivered both ways: the connections are idle.
                # lbd lets a worker's spare pipes go after 1 s unused.
                time.sleep(1.5)
                rig.procs.check_alive(p)
                after = fd_count(p.pid)
            finally:
                for s in socks:
                    s.close()
            return {"conns": n, "fds_before": before, "fds_after": after,
                    "fds_per_conn": (after - before) / n}
        finally:
            rig.procs.stop(p)

    res = rounds(a, ["lbd", "haproxy"], one, "fds")
    return {"unit": "fds/conn", "conns": n, "bytes_each_way": FDS_BYTES,
            "variants": {v: {"runs": r, "median": median_of(r, "fds_per_conn")}
                         for v, r in res.items()}}


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise BenchError("no totals in %s" % path)


def m_ir(a, rig):
    """Ir(n1) - Ir(n0) over n1 - n0 requests: start-up, the first health
    check and shutdown cancel out."""
    rig.start_backends({"ir"})
    n0, n1 = a.ir_requests // 10, a.ir_requests + a.ir_requests // 10
    out = {"unit": "Ir/req", "requests": n1 - n0, "variants": {}}
    for v in ("lbd", "haproxy"):
        totals = {}
        try:
            for n in (n0, n1):
                cg = os.path.join(rig.wd, "callgrind.%s.%d.out" % (v, n))
                vg = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + cg]
                if v == "lbd":
                    p = rig.start_lbd("lbd-callgrind", vg, check_interval="1h")
                else:
                    p = rig.start_haproxy("haproxy-callgrind", vg, check=False)
                try:
                    keepalive_requests(rig.port(v, "web"), n, timeout=120)
                    time.sleep(0.2)
                finally:
                    # SIGTERM for lbd (graceful), SIGUSR1 (soft stop) for
                    # HAProxy: both exit normally and callgrind writes out.
                    rc = rig.procs.stop(p, signal.SIGTERM if v == "lbd" else signal.SIGUSR1,
                                        timeout=60)
                if not os.path.exists(cg):
                    raise BenchError("%s under callgrind wrote no output (exit %s)" % (v, rc))
                totals[n] = callgrind_total(cg)
                log("ir %-8s %5d requests: %d Ir in all" % (v, n, totals[n]))
            ir = (totals[n1] - totals[n0]) / (n1 - n0)
            out["variants"][v] = {"runs": [{"totals": totals, "ir_per_req": ir}], "median": ir}
            out["variants"][v]["top"] = profile_diff(
                os.path.join(rig.wd, "callgrind.%s.%d.out" % (v, n0)), cg, n1 - n0)
        except (BenchError, subprocess.SubprocessError, OSError) as e:
            log("ir %s: failed: %s" % (v, e))
            out["variants"][v] = {"runs": [], "median": None, "error": str(e)[:500]}
    return out


def annotate(cg):
    """{function: own Ir} from callgrind_annotate (every function)."""
    try:
        txt = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", cg],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=120).stdout.decode(errors="replace")
    except (subprocess.SubprocessError, OSError):
        return {}
    fns, seen = {}, False
    for line in txt.splitlines():
        if "file:function" in line:
            seen = True
            continue
        if seen and not line.strip() and fns:
            break  # end of the function list
        m = seen and re.match(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(\S.*)$", line)
        if m:
            fn = re.sub(r"^\./[^:]*/", "", m.group(2))  # glibc's build paths
            fns[fn] = fns.get(fn, 0) + int(m.group(1).replace(",", ""))
    return fns


def profile_diff(cg0, cg1, nreq, top=20):
    """Per-function own Ir per request: the n1 run minus the n0 run."""
    a, b = annotate(cg0), annotate(cg1)
    d = [(fn, (b.get(fn, 0) - a.get(fn, 0)) / nreq) for fn in set(a) | set(b)]
    d.sort(key=lambda x: -x[1])
    total = sum(x for _, x in d) or 1
    return [{"fn": fn[:110], "ir_per_req": round(x, 1), "pct": round(100 * x / total, 1)}
            for fn, x in d[:top]]


# --------------------------------------------------------------------------
# Report


def machine_info(a):
    def cmd(argv):
        try:
            return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=10).stdout.decode().strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"

    srcdirs = ["lbd", "common", "config", "gate", "upgrade"]
    built = os.stat(a.lbd).st_mtime
    if a.lbd_commit:
        commit = cmd(["git", "-C", ROOT, "rev-parse", "--short", a.lbd_commit])
        commit += " (a clean export of it)"
        dirty, srcdirs = False, []
    else:
        commit = cmd(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--"] + srcdirs,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
    newer = sorted(os.path.join(d, f) for d in srcdirs if os.path.isdir(os.path.join(ROOT, d))
                   for f in os.listdir(os.path.join(ROOT, d))
                   if f.endswith((".c", ".h"))
                   and os.stat(os.path.join(ROOT, d, f)).st_mtime > built)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name")), "?"),
        "kernel": os.uname().release,
        "haproxy": cmd(["haproxy", "-v"]).split(" - ")[0],
        "nginx": cmd(["nginx", "-v"]),
        "wrk": cmd(["wrk", "-v"]).split(" Copyright")[0],
        "iperf3": cmd(["iperf3", "-v"]),
        "valgrind": cmd(["valgrind", "--version"]),
        "lbd_commit": commit + (" (+ uncommitted changes in %s)" % "/".join(srcdirs)
                                if dirty else ""),
        "lbd_binary": "%s, built %s" % (a.lbd, datetime.datetime.fromtimestamp(
            built, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")),
        "lbd_sources_newer_than_binary": newer,
        "threads": a.threads,
        "runs": a.runs,
        "secs": a.secs,
        "mode": "quick" if a.quick else "full",
        "nofile_hard": nofile_hard(),
    }


def ratio(x, y):
    return x / y if x is not None and y else None


def table(res):
    """Rows: metric, lbd, haproxy, haproxy+splice, direct, ratio, target, met."""
    rows = []

    def med(m, v, key="median"):
        return res.get(m, {}).get("variants", {}).get(v, {}).get(key)

    if "bulk" in res:
        l, h = med("bulk", "lbd"), med("bulk", "haproxy")
        ha, hs = med("bulk", "haproxy+splice-auto"), med("bulk", "haproxy+splice")
        best = max(h, ha, hs)
        r = ratio(l, best)
        rows.append(("bulk throughput, Gbit/s (iperf3)", "%.2f" % l, "%.2f" % h,
                     "%.2f / %.2f" % (ha, hs),
                     "%.2f" % med("bulk", "direct"), "%.2fx of best" % r,
                     ">= 1.2x best haproxy", r >= 1.2))
    if "rps" in res:
        l, h = med("rps", "lbd"), med("rps", "haproxy")
        rows.append(("keep-alive requests/s (wrk -c50)", "%.0f" % l, "%.0f" % h, "",
                     "%.0f" % med("rps", "direct"), "%.2fx" % ratio(l, h), ">= 1.0x",
                     l >= h))
        l, h = med("rps", "lbd", "cpu_us_per_req"), med("rps", "haproxy", "cpu_us_per_req")
        us = [med("rps", v, k) for v in ("lbd", "haproxy")
              for k in ("cpu_user_us_per_req", "cpu_sys_us_per_req")]
        split = "%.2f (user %.2f + sys %.2f)"
        rows.append(("proxy CPU time per keep-alive request, us",
                     split % (l, us[0], us[1]) if None not in us else "%.2f" % l,
                     split % (h, us[2], us[3]) if None not in us else "%.2f" % h, "",
                     "", "%.2fx" % ratio(l, h), "<= 1.0x", l <= h))
    if "cps" in res:
        l, h = med("cps", "lbd"), med("cps", "haproxy")
        rows.append(("new connections/s (wrk, Connection: close)", "%.0f" % l, "%.0f" % h, "",
                     "%.0f" % med("cps", "direct"), "%.2fx" % ratio(l, h), ">= 1.0x", l >= h))
        l, h = med("cps", "lbd", "cpu_us_per_req"), med("cps", "haproxy", "cpu_us_per_req")
        rows.append(("proxy CPU time per new connection, us", "%.1f" % l, "%.1f" % h, "", "",
                     "%.2fx" % ratio(l, h), "(info)", None))
    if "p99" in res:
        l, h = med("p99", "lbd"), med("p99", "haproxy")
        rate = res["p99"]["rate_target"]
        rows.append(("p99 latency at ~%d req/s, us (wrk -c10, paced)" % rate, "%d" % l,
                     "%d" % h, "", "%d" % med("p99", "direct"), "%.2fx" % ratio(l, h),
                     "<= 1.0x", l <= h))
    if "rss" in res:
        l, h = med("rss", "lbd"), med("rss", "haproxy")
        rows.append(("RSS per idle proxied connection, bytes (%d conns)" % res["rss"]["conns"],
                     "%.0f" % l, "%.0f" % h, "", "", "%.2fx" % ratio(l, h), "<= 1024 B",
                     l <= 1024))
    if "failover" in res:
        fo = res["failover"]
        if "skipped" in fo:
            rows.append(("failover: s until every stream of a blackholed master is back on a "
                         "live one", "n/a", "n/a", "", "", "", "skipped: " + fo["skipped"],
                         None))
        else:
            l, h = med("failover", "lbd"), med("failover", "haproxy")
            lf = med("failover", "lbd", "new_failed")
            hf = med("failover", "haproxy", "new_failed")
            rows.append(("failover: s until every stream of a blackholed master is back on a "
                         "live one (new connections failed meanwhile); HAProxy with "
                         "on-marked-down shutdown-sessions + redispatch",
                         "%.2f (%d failed)" % (l, lf), "%.2f (%d failed)" % (h, hf), "", "",
                         "%.2fx" % ratio(l, h), "<= 1.0x, 0 failed", l <= h and lf == 0))
    if "ir" in res:
        l, h = med("ir", "lbd"), med("ir", "haproxy")
        rows.append(("instructions per keep-alive request (callgrind, user space)",
                     "%.0f" % l if l else "n/a", "%.0f" % h if h else "n/a", "", "",
                     "%.2fx" % ratio(l, h) if l and h else "", "(regressions)", None))
    if "fds" in res:
        l, h = med("fds", "lbd"), med("fds", "haproxy")
        rows.append(("descriptors per idle relayed connection after %d KiB each way (%d conns)"
                     % (res["fds"]["bytes_each_way"] // 1024, res["fds"]["conns"]),
                     "%.2f" % l, "%.2f" % h, "", "", "%.2fx" % ratio(l, h), "2", l <= 2.0))
    return rows


def write_report(a, info, res, outdir, rewrite_json=True):
    rows = table(res)
    met = {True: "yes", False: "**no**", None: ""}
    md = ["# lbd vs HAProxy: bench results", "",
          "Written by `bench/run.py` (`make bench`); how each figure is measured and what it",
          "does not tell is in [README.md](README.md). Do not edit by hand: rerun.", "",
          "- date: %s" % info["date"],
          "- machine: %d cores (`nproc`), %s, kernel %s" % (info["nproc"], info["cpu"],
                                                           info["kernel"]),
          "- lbd commit: %s, `threads: %d`; HAProxy `nbthread %d`" % (
              info["lbd_commit"], info["threads"], info["threads"]),
          "- lbd binary: %s%s" % (info["lbd_binary"], "; **older than %d source file(s): "
                                  "%s**" % (len(info["lbd_sources_newer_than_binary"]),
                                            ", ".join(info["lbd_sources_newer_than_binary"][:5]))
                                  if info["lbd_sources_newer_than_binary"] else ""),
          "- %s; %s; %s; %s; %s" % (info["haproxy"], info["nginx"], info["wrk"], info["iperf3"],
                                   info["valgrind"]),
          "- mode: %s, median of %d interleaved run(s) per figure, %ds per timed run" % (
              info["mode"], info["runs"], info["secs"]),
          "- other work on the machine: %.2f cores busy just before the run; load average "
          "before / after: %s / %s (after includes this run's own load)" % (
              info.get("busy_cores_before", -1), info.get("loadavg_before", "?"),
              info.get("loadavg_after", "?")),
          "- client, proxy and backends share the same %d cores; `direct` is the client "
          "straight to the backend (no proxy): the physical limit here" % info["nproc"], "",
          "| metric | lbd | haproxy | haproxy+splice (auto / forced) | direct | ratio lbd/haproxy "
          "| target | met? |",
          "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        md.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (r[:7] + (met[r[7]],)))
    md.append("")
    noise = []
    for m, d in res.items():
        oc = [r["others_cores"] for v in d.get("variants", {}).values()
              for r in v.get("runs", []) if "others_cores" in r]
        if oc and m != "ir":
            noise.append("%s %.2f (max %.2f)" % (m, statistics.median(oc), max(oc)))
    if noise:
        md += ["CPU taken by other work on the machine during the runs (cores, median of the "
               "runs): " + ", ".join(noise) + ". Above ~0.2 the figures of that metric are "
               "skewed; the raw runs, each with its own figure, are in results.json.", ""]
    if "ir" in res:
        for v in ("lbd", "haproxy"):
            e = res["ir"]["variants"].get(v, {}).get("error")
            if e:
                md.append("- callgrind, %s: %s" % (v, e.splitlines()[0]))
        for v in ("lbd", "haproxy"):
            top = res["ir"]["variants"].get(v, {}).get("top", [])
            if not top:
                continue
            md += ["", "%s under callgrind: own (exclusive) instructions per keep-alive "
                   "request by function, top %d (difference of two runs, so start-up "
                   "cancels out):" % (v, min(12, len(top))), "", "```"]
            md += ["%8.1f %5.1f%%  %s" % (t["ir_per_req"], t["pct"], t["fn"])
                   for t in top[:12]]
            md.append("```")
    notes = os.path.join(HERE, "NOTES.md")
    if os.path.exists(notes) and os.path.realpath(outdir) == os.path.realpath(HERE):
        md += ["", open(notes).read().rstrip()]
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "RESULTS.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    if rewrite_json:
        with open(os.path.join(outdir, "results.json"), "w") as f:
            json.dump({"machine": info, "metrics": res}, f, indent=1, sort_keys=True)
            f.write("\n")
    return "\n".join(md)


# --------------------------------------------------------------------------


def check_tools(want):
    missing = []
    for tool, pkg in TOOLS.items():
        if tool in ("valgrind", "callgrind_annotate") and "ir" not in want:
            continue
        if tool == "iperf3" and "bulk" not in want:
            continue
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            missing.append((tool, pkg))
    if missing:
        raise BenchError("missing tools: %s; install with: apt-get install -y %s" % (
            ", ".join(t for t, _ in missing), " ".join(sorted({p for _, p in missing}))))


def parse_args(argv):
    ap = argparse.ArgumentParser(description="lbd against HAProxy, side by side")
    ap.add_argument("--build", default="build", help="lbd's build dir (default build)")
    ap.add_argument("--threads", type=int, default=1,
                    help="worker threads for lbd (threads:) and HAProxy (nbthread), default 1")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1 run each, 2 s loads, 1000 idle connections")
    ap.add_argument("--only", default="", help="comma list of: " + ",".join(METRICS))
    ap.add_argument("--runs", type=int, help="runs per figure (default 3, quick 1)")
    ap.add_argument("--out", help="where RESULTS.md and results.json go (default bench/ "
                    "for a full run of every metric, else the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, configs)")
    ap.add_argument("--lbd-commit", help="the commit lbd was built from, when --build holds "
                    "a build of a clean export (git archive REV) rather than of this tree")
    ap.add_argument("--wait-quiet", type=float, default=None,
                    help="wait up to this many seconds for other work on the machine to "
                    "stop before starting (default 120, quick 0)")
    ap.add_argument("--report-only", metavar="JSON",
                    help="measure nothing: rewrite RESULTS.md (next to --out, default "
                    "bench/) from a results.json, e.g. after editing bench/NOTES.md")
    ap.add_argument("--_holder", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_bulkholder", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.only = [m.strip() for m in a.only.split(",") if m.strip()] or list(METRICS)
    bad = [m for m in a.only if m not in METRICS]
    if bad:
        ap.error("unknown metric(s) %s; known: %s" % (",".join(bad), ",".join(METRICS)))
    if a.threads < 1:
        ap.error("--threads must be >= 1")
    a.runs = a.runs or (1 if a.quick else 5)
    if a.wait_quiet is None:
        a.wait_quiet = 0 if a.quick else 60
    # Between runs: up to 10 s each, 60 s in all (so a machine that stays
    # busy costs at most 2 minutes more, with the wait before the start).
    a.run_wait_budget = 0 if a.quick else min(60, a.wait_quiet)
    a.secs = 2 if a.quick else 5
    a.pause = 0.2 if a.quick else 0.5
    a.idle_conns = 1000 if a.quick else 10000
    a.fds_conns = 100 if a.quick else 200
    a.ir_requests = 200 if a.quick else 2000
    build = a.build if os.path.isabs(a.build) else os.path.join(ROOT, a.build)
    a.lbd = os.path.join(build, "lbd")
    return a


def on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def main(argv):
    a = parse_args(argv)
    if a._holder:
        holder_main(a._holder)
        return 0
    if a._bulkholder:
        bulkholder_main(a._bulkholder)
        return 0
    if a.report_only:
        with open(a.report_only) as f:
            j = json.load(f)
        outdir = a.out or HERE
        if os.path.realpath(os.path.dirname(os.path.abspath(a.report_only))) != \
                os.path.realpath(outdir):
            shutil.copy(a.report_only, os.path.join(outdir, "results.json"))
        write_report(a, j["machine"], j["metrics"], outdir, rewrite_json=False)
        log("rewrote %s/RESULTS.md from %s" % (outdir, a.report_only))
        return 0
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
    want = set(a.only)
    try:
        check_tools(want)
        if not os.access(a.lbd, os.X_OK):
            raise BenchError("%s: not built (make BUILD=... all)" % a.lbd)
    except BenchError as e:
        print("bench: %s" % e, file=sys.stderr)
        return 2
    raise_nofile()
    wd = tempfile.mkdtemp(prefix="lbd-bench-")
    procs = Procs(wd)
    a.procs = procs
    rig = Rig(a, procs, wd)
    rig.lua = rig.write("bench.lua", WRK_LUA)
    full = not a.quick and want == set(METRICS)
    outdir = a.out or (HERE if full else wd)
    log("metrics %s, threads %d, runs %d, %ds loads, fd limit %d, temp dir %s" % (
        ",".join(a.only), a.threads, a.runs, a.secs, nofile_hard(), wd))
    t0 = time.monotonic()
    load_before = open("/proc/loadavg").read().split()[:3]
    res, status = {}, 0
    try:
        busy_before = wait_quiet(a.wait_quiet)
        rig.start_backends(want)
        for m in METRICS:
            if m not in want:
                continue
            log("== %s" % m)
            if m == "bulk":
                res[m] = m_bulk(a, rig)
            elif m == "rps":
                res[m] = m_rps(a, rig)
            elif m == "cps":
                res[m] = m_rps(a, rig, close=True)
            elif m == "p99":
                res[m] = m_p99(a, rig)
            elif m == "failover":
                res[m] = failover.measure(a, procs, wd, log)
            elif m in ("rss", "ir", "fds"):
                rig.stop_proxies()  # their own fresh proxies
                res[m] = {"rss": m_rss, "ir": m_ir, "fds": m_fds}[m](a, rig)
        rig.stop_proxies()
        info = machine_info(a)
        info["elapsed_s"] = round(time.monotonic() - t0)
        info["loadavg_before"] = " ".join(load_before)
        info["busy_cores_before"] = round(busy_before, 2)
        info["loadavg_after"] = " ".join(open("/proc/loadavg").read().split()[:3])
        md = write_report(a, info, res, outdir)
        print(md)
        log("done in %ds; wrote %s/RESULTS.md and results.json" % (info["elapsed_s"], outdir))
    except BenchError as e:
        print("bench: FAILED: %s" % e, file=sys.stderr)
        status = 1
    except (subprocess.SubprocessError, OSError) as e:
        print("bench: FAILED: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        status = 130
    finally:
        procs.stop_all()
        if a.keep or status or outdir == wd:
            log("temp dir kept: %s" % wd)
        else:
            shutil.rmtree(wd, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
