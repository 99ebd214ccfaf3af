"""test_pair.py - an active/passive lbd pair with real keepalived, in network namespaces.

The test builds a small network of its own, entirely inside namespaces it
creates (and deletes in cleanup, even on failure), with addresses only in
10.77.0.0/24 inside them; nothing is reachable from, or reaches, the host's
own network:

    ns -sw:  br0, a bridge; one veth per node below is plugged into it
    ns -a:   lbd A + keepalived A   10.77.0.11   (priority 150)
    ns -b:   lbd B + keepalived B   10.77.0.12   (priority 100)
    ns -c:   the client (a prober)  10.77.0.100
    ns -m1:  backend m1             10.77.0.21:6443  (a tiny HTTP server)
    ns -m2:  backend m2             10.77.0.22:6443
    VIP:     10.77.0.10:6443, moved by keepalived (unicast VRRP)

keepalived's config is packaging/keepalived/keepalived.conf.tmpl, filled
in as an operator would: its track_script is `lbctl status --check`. Both
lbds listen on the VIP from the start (freebind: true). The prober opens a
new connection through the VIP every 50ms and logs each outcome with its
monotonic start time; the failover gap is read from that log.

Skips, with the reason, when not root, when `ip netns` does not work, or
when keepalived is not installed (make deps installs it).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import T, wait_for  # noqa: E402

ROOT = harness.ROOT
LBCTL = os.path.join(harness.BUILD, "lbctl")
TEMPLATE = os.path.join(ROOT, "packaging", "keepalived", "keepalived.conf.tmpl")
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"

NET = "10.77.0"
VIP = NET + ".10"
PORT = 6443
NODES = {"a": NET + ".11", "b": NET + ".12"}
BACKENDS = {"m1": NET + ".21", "m2": NET + ".22"}
CLIENT = NET + ".100"
PRIORITY = {"a": 150, "b": 100}

# /readyz answers the status in the file argv[4] (200 when absent).
BACKEND_PY = r'''
import http.server, sys
name, host, port, flag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def readyz():
    try:
        with open(flag) as f:
            return int(f.read().strip() or 200)
    except (OSError, ValueError):
        return 200
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        st = readyz() if self.path == "/readyz" else 200
        body = (name + "\n").encode() if st == 200 else b"[-]etcd failed\n"
        self.send_response(st)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer.allow_reuse_address = True
http.server.ThreadingHTTPServer((host, port), H).serve_forever()
'''

# One new connection per interval through the VIP; a line per attempt:
# "<monotonic start> ok <backend>" or "<monotonic start> fail <why>".
PROBER_PY = r'''
import socket, sys, time
vip, port, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
while True:
    t = time.monotonic()
    try:
        s = socket.create_connection((vip, port), timeout=0.5)
        s.settimeout(1.0)
        s.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.0 200") and body.strip():
            print("%.4f ok %s" % (t, body.strip().decode()), flush=True)
        else:
            print("%.4f fail bad-reply" % t, flush=True)
    except Exception as e:
        print("%.4f fail %s" % (t, type(e).__name__), flush=True)
    time.sleep(max(0.0, interval - (time.monotonic() - t)))
'''


def run(*argv, check=True):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                  r.stderr.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace")


def netns_unavailable(keepalived=True):
    """The system capability this machine lacks for the test, or None.
    (iproute2 and keepalived are packages make deps installs: their absence
    fails in setUpClass, it is no reason to skip.) test_transport_death.py
    uses it too, without keepalived."""
    if os.geteuid() != 0:
        return "root (network namespaces%s)" % (", keepalived" if keepalived else "")
    harness.require_binary("ip", "make deps installs iproute2")
    if keepalived:
        harness.require_binary(KEEPALIVED, "make deps installs keepalived")
    probe = "lbdprobe%d" % os.getpid()
    r = subprocess.run(["ip", "netns", "add", probe], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=10)
    if r.returncode != 0:
        return "network namespaces (ip netns add: %s)" % r.stderr.decode(errors="replace").strip()
    subprocess.run(["ip", "netns", "del", probe], timeout=10)
    return None


class PairTest(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        for b in (harness.LBD, LBCTL):
            harness.require_binary(b, "run make")
        why = netns_unavailable()
        if why:
            harness.skip_capability(why)

    # -- the network ----------------------------------------------------------

    def ns(self, role):
        return "%s-%s" % (self.prefix, role)

    def setUp(self):
        super().setUp()
        self.prefix = "lbdp%d" % os.getpid()
        self.namespaces = []
        # Registered before anything is created: cleanups run even when
        # setUp fails half-way, and after the processes are stopped
        # (cleanups run last-in first-out).
        self.addCleanup(self.delete_namespaces)
        self.make_network()

    def delete_namespaces(self):
        self._stop_procs()  # gracefully first, by PID (harness.Proc.stop)
        for n in reversed(self.namespaces):
            # Anything still running in our namespace was started by this
            # test; end it by PID before the namespace goes.
            pids = subprocess.run(["ip", "netns", "pids", n], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, timeout=10).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", n], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=10)
        self.namespaces = []

    def add_ns(self, role):
        n = self.ns(role)
        run("ip", "netns", "add", n)
        self.namespaces.append(n)
        run("ip", "-n", n, "link", "set", "lo", "up")
        return n

    def make_network(self):
        sw = self.add_ns("sw")
        run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", sw, "link", "set", "br0", "up")
        hosts = dict(NODES)
        hosts.update(BACKENDS)
        hosts["c"] = CLIENT
        for role, ip in hosts.items():
            n = self.add_ns(role)
            # The veth is created inside the switch namespace with its peer
            # inside the node's: the host's namespace never sees either end.
            run("ip", "-n", sw, "link", "add", "p-" + role, "type", "veth", "peer", "name",
                "eth0", "netns", n)
            run("ip", "-n", sw, "link", "set", "p-" + role, "master", "br0", "up")
            run("ip", "-n", n, "addr", "add", ip + "/24", "dev", "eth0")
            run("ip", "-n", n, "link", "set", "eth0", "up")

    def vip_holders(self):
        held = []
        for role in NODES:
            out = run("ip", "-n", self.ns(role), "-4", "-o", "addr", "show", "dev", "eth0")
            if re.search(r"inet %s/" % re.escape(VIP), out):
                held.append(role)
        return held

    # -- processes --------------------------------------------------------------

    def in_ns(self, role, name, argv):
        return self.spawn(name, ["ip", "netns", "exec", self.ns(role)] + argv)

    def start_backend(self, name):
        script = self.path("backend.py")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(BACKEND_PY)
        return self.in_ns(name, "backend-" + name,
                          [harness.PYTHON, script, name, BACKENDS[name], str(PORT),
                           self.path(name + ".readyz")])

    def set_readyz(self, status):
        for b in BACKENDS:
            with open(self.path(b + ".readyz"), "w") as f:
                f.write(str(status))

    def lbd_config(self, role):
        d = self.path(role)
        os.makedirs(os.path.join(d, "state"), exist_ok=True)
        cfg = {
            "state_dir": os.path.join(d, "state"),
            "shutdown_grace": "1s",
            "admin": {"socket": os.path.join(d, "admin.sock")},
            "log": {"format": "text", "level": "info"},
            "frontends": [{
                "name": "apiserver", "listen": ["%s:%d" % (VIP, PORT)], "pool": "masters",
                "mode": "tcp", "freebind": True,
                "timeouts": {"connect": "500ms", "idle": "30s"}, "retries": 1,
            }],
            "pools": [{
                "name": "masters", "balance": "round_robin",
                "backends": [{"name": n, "address": "%s:%d" % (ip, PORT)}
                             for n, ip in BACKENDS.items()],
                "health": {"type": "http", "path": "/readyz", "expect_status": 200,
                           "interval": "300ms", "timeout": "200ms", "rise": 1, "fall": 2},
            }],
        }
        path = os.path.join(d, "lbd.yaml")
        with open(path, "w") as f:
            f.write(harness.to_yaml(cfg))
        return path

    def start_lbd(self, role):
        p = self.in_ns(role, "lbd-" + role, [harness.LBD, "-c", self.path(role, "lbd.yaml")])
        # Listening on the VIP it does not hold: that is what freebind is for.
        p.log.wait(r"listening on %s:%d" % (re.escape(VIP), PORT), T(10), proc=p)
        for b in BACKENDS:
            p.log.wait(r"backend masters/%s is UP" % b, T(10), proc=p)
        return p

    def keepalived_config(self, role):
        peer = [r for r in NODES if r != role][0]
        # keepalived's enable_script_security refuses a script in a
        # directory others may write to: the check runs a root-only copy.
        bindir = self.path("bin")
        if not os.path.exists(os.path.join(bindir, "lbctl")):
            os.makedirs(bindir, mode=0o755, exist_ok=True)
            shutil.copy(LBCTL, os.path.join(bindir, "lbctl"))
        with open(TEMPLATE) as f:
            # The header comment shows the fields themselves; leave it out.
            text = "".join(l for l in f if not l.startswith("#"))
        fields = {
            "ROUTER_ID": "lbd-" + role, "INTERFACE": "eth0", "VRID": "51",
            "PRIORITY": str(PRIORITY[role]), "SELF_IP": NODES[role], "PEER_IP": NODES[peer],
            "VIP_CIDR": VIP + "/24", "LBCTL": os.path.join(bindir, "lbctl"),
            "ADMIN_SOCKET": self.path(role, "admin.sock"),
        }
        for k, v in fields.items():
            text = text.replace("{{%s}}" % k, v)
        self.assertNotIn("{{", text, "a template field was left unfilled")
        os.makedirs(self.path(role), exist_ok=True)
        path = self.path(role, "keepalived.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def start_keepalived(self, role):
        conf = self.keepalived_config(role)
        d = self.path(role)
        return self.in_ns(role, "keepalived-" + role, [
            KEEPALIVED, "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
            "--use-file", conf, "--pid", os.path.join(d, "keepalived.pid"),
            "--vrrp_pid", os.path.join(d, "vrrp.pid"), "--config-id", "lbd-" + role])

    def start_prober(self):
        script = self.path("prober.py")
        with open(script, "w") as f:
            f.write(PROBER_PY)
        return self.in_ns("c", "prober", [harness.PYTHON, "-u", script, VIP, str(PORT), "0.05"])

    def probes(self, prober, since=0.0):
        """(start, ok, what) for every attempt that started at or after since."""
        out = []
        for line in prober.log.lines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[1] in ("ok", "fail"):
                t = float(parts[0])
                if t >= since:
                    out.append((t, parts[1] == "ok", parts[2]))
        return out

    def wait_probes_ok(self, prober, since, n, timeout, what):
        """Waits until the last n attempts after since all succeeded."""
        def ok():
            p = self.probes(prober, since)
            return len(p) >= n and all(x[1] for x in p[-n:])
        wait_for(ok, timeout, what)

    # -- the test ---------------------------------------------------------------

    def test_keepalived_conf_template_is_valid(self):
        """The template, filled in (its comments left out), passes
        keepalived's own config test."""
        os.makedirs(self.path("a"), exist_ok=True)
        conf = self.keepalived_config("a")
        r = subprocess.run([KEEPALIVED, "--config-test", "--use-file", conf],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))

    def test_deploy_md_sed_command(self):
        """docs/deploy.md's sed line, run as written (paths moved into the
        test dir), gives a config keepalived accepts."""
        with open(os.path.join(ROOT, "docs", "deploy.md")) as f:
            doc = f.read()
        m = re.search(r"^(sed .*?keepalived\.conf\.tmpl > /etc/keepalived/keepalived\.conf)$",
                      doc, re.M | re.S)
        self.assertIsNotNone(m, "docs/deploy.md has no sed line for the template")
        out = self.path("keepalived.conf")
        cmd = m.group(1).replace("/usr/share/doc/lbd/examples/keepalived.conf.tmpl", TEMPLATE)
        cmd = cmd.replace("/etc/keepalived/keepalived.conf", out)
        # keepalived checks that the track_script exists: the built lbctl,
        # in a root-only directory, stands in for the installed one.
        self.keepalived_config("a")
        cmd = cmd.replace("/usr/bin/lbctl", self.path("bin", "lbctl"))
        subprocess.run(["bash", "-euc", cmd], check=True, timeout=20)
        with open(out) as f:
            text = f.read()
        body = "".join(l for l in text.splitlines(True) if not l.lstrip().startswith("#"))
        self.assertNotIn("{{", body, "the documented sed left a field unfilled")
        r = subprocess.run([KEEPALIVED, "--config-test", "--use-file", out],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))

    def test_failover_and_no_split_brain(self):
        for b in BACKENDS:
            self.start_backend(b)
        lbds = {}
        for role in NODES:
            self.lbd_config(role)
            lbds[role] = self.start_lbd(role)
        kas = {role: self.start_keepalived(role) for role in NODES}

        # One side takes the VIP (the higher priority, unless the other's
        # timer fired first); the other stays BACKUP.
        t0 = time.monotonic()
        wait_for(lambda: len(self.vip_holders()) == 1, T(15), "one node to hold the VIP")
        active = self.vip_holders()[0]
        standby = [r for r in NODES if r != active][0]
        kas[standby].log.wait(r"Entering BACKUP STATE", T(10), proc=kas[standby])
        print("\n  [pair] VIP on %s %.1fs after keepalived started" % (active, time.monotonic() - t0),
              file=sys.stderr, flush=True)

        prober = self.start_prober()
        self.wait_probes_ok(prober, 0.0, 10, T(10), "the VIP to answer the client")
        served = {x[2] for x in self.probes(prober) if x[1]}
        self.assertEqual(served, set(BACKENDS), "both backends serve through the VIP")

        # Every master answers /readyz 503 (an etcd election) for 8s while
        # still serving: both lbds relay in fail-safe, so neither node may
        # give up the VIP (its track_script asks whether lbd can serve, not
        # whether the masters are ready): one holder throughout, no probe lost.
        marks = {r: lbds[r].log.mark() for r in NODES}
        ka_marks = {r: kas[r].log.mark() for r in NODES}
        t_fail = time.monotonic()
        self.set_readyz(503)
        for r in NODES:
            lbds[r].log.wait(r"pool masters: all backends failing health checks, fail-safe",
                             T(10), since=marks[r], proc=lbds[r])
        samples = []
        while time.monotonic() - t_fail < 8.0:
            samples.append(tuple(self.vip_holders()))
            time.sleep(0.1)
        self.set_readyz(200)
        t_ok = time.monotonic()
        for r in NODES:
            lbds[r].log.wait(r"pool masters: fail-safe over", T(10), since=marks[r], proc=lbds[r])
        during = [x for x in self.probes(prober, t_fail) if x[0] <= t_ok]
        lost = [s for s in samples if s != (active,)]
        fails = [x for x in during if not x[1]]
        print("  [pair] every /readyz 503 for 8s: VIP on %s in %d of %d samples; %d probes ok, "
              "%d failed" % (active, len(samples) - len(lost), len(samples),
                              len(during) - len(fails), len(fails)),
              file=sys.stderr, flush=True)
        self.assertFalse(lost, "the VIP left %s while every master failed /readyz: %r"
                         % (active, sorted(set(lost))))
        self.assertFalse(fails, "connections failed through the VIP in fail-safe: %r" % fails[:5])
        self.assertGreater(len(during), 50)
        for r in NODES:
            self.assertIsNone(kas[r].log.find(r"Entering FAULT STATE", since=ka_marks[r]),
                              "keepalived %s went FAULT over the masters' /readyz" % r)

        # Kill the active lbd (no goodbye): its track_script fails, keepalived
        # goes FAULT and gives up the VIP, the standby takes it.
        mark = kas[active].log.mark()
        t_kill = time.monotonic()
        os.kill(lbds[active].pid, signal.SIGKILL)
        lbds[active].wait(T(5))
        wait_for(lambda: self.vip_holders() == [standby], T(15),
                 "the VIP to move from %s to %s" % (active, standby))
        t_moved = time.monotonic()
        kas[active].log.wait(r"Entering FAULT STATE", T(5), since=mark, proc=kas[active])
        self.wait_probes_ok(prober, t_kill, 20, T(15),
                            "new connections to succeed through %s" % standby)

        after = self.probes(prober, t_kill)
        fails = [x for x in after if not x[1]]
        last_fail = fails[-1][0] if fails else t_kill
        recovered = next(x[0] for x in after if x[1] and x[0] > last_fail)
        gap = recovered - t_kill
        outage = (recovered - fails[0][0]) if fails else 0.0
        msg = ("failover: VIP moved %.2fs after the kill; first new connection through %s "
               "succeeded %.2fs after the kill (client saw %d failed attempts over %.2fs)"
               % (t_moved - t_kill, standby, gap, len(fails), outage))
        print("  [pair] " + msg, file=sys.stderr, flush=True)
        self.assertLess(gap, T(8), msg)

        # Bring the killed lbd back: its keepalived returns to BACKUP and,
        # with nopreempt, leaves the VIP where it is. Exactly one holder,
        # sampled over a few advertisement intervals, and the VIP keeps
        # answering throughout.
        mark = kas[active].log.mark()
        lbds[active] = self.start_lbd(active)
        kas[active].log.wait(r"Entering BACKUP STATE", T(10), since=mark, proc=kas[active])
        t_back = time.monotonic()
        samples = []
        while time.monotonic() - t_back < 3.0:
            samples.append(tuple(self.vip_holders()))
            time.sleep(0.1)
        bad = [s for s in samples if s != (standby,)]
        self.assertFalse(bad, "split brain or lost VIP after %s came back: %r" % (active, bad))
        self.wait_probes_ok(prober, t_back, 20, T(10), "the VIP to keep answering")
        self.assertTrue(all(x[1] for x in self.probes(prober, t_back)),
                        "connections failed after %s came back" % active)
        print("  [pair] %s back as BACKUP: VIP held by %s alone in %d samples over 3s"
              % (active, standby, len(samples)), file=sys.stderr, flush=True)

        for k in kas.values():
            k.stop(timeout=T(5))
        # keepalived gives the VIP up when it stops.
        wait_for(lambda: self.vip_holders() == [], T(5), "keepalived to release the VIP")


if __name__ == "__main__":
    unittest.main()
