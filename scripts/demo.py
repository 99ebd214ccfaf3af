#!/usr/bin/python3
"""demo.py - what `make run` runs: three fake apiserver masters and lbd in front.

    /usr/bin/python3 scripts/demo.py --build build          # foreground, Ctrl-C stops
    /usr/bin/python3 scripts/demo.py --build build --check  # start, probe the VIP, stop

Masters (tests/sim/apiserver.py, TLS with a CA made in build/demo/certs):
  master-1  https://127.0.0.1:16441   control http://127.0.0.1:17441
  master-2  https://127.0.0.1:16442   control http://127.0.0.1:17442
  master-3  https://127.0.0.1:16443   control http://127.0.0.1:17443
lbd runs `-c config/examples/demo.yaml` (VIP 127.0.0.1:6443) from the repo
root. Everything runs as our children, in their own sessions, and is stopped
by PID on Ctrl-C, SIGTERM or any exit. Logs: build/demo/*.log.
"""

import argparse
import os
import signal
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402  (certs, process handling, waits)

MASTERS = [("master-1", 16441, 17441), ("master-2", 16442, 17442), ("master-3", 16443, 17443)]
HOST = "127.0.0.1"
DEFAULT_CONFIG = "config/examples/demo.yaml"


class Stop(BaseException):
    pass


def on_signal(signum, frame):
    raise Stop(signal.Signals(signum).name)


def vip_of(config_path):
    """(host, port) of the first listen address of the first frontend in the
    config, or 127.0.0.1:6443 if it cannot be read."""
    try:
        import yaml
        with open(config_path) as f:
            cfg = yaml.safe_load(f)
        addr = cfg["frontends"][0]["listen"]
        if isinstance(addr, list):  # one address or a list of them
            addr = addr[0]
        host, _, port = addr.rpartition(":")
        return host.strip("[]") or HOST, int(port)
    except Exception:  # noqa: BLE001 - fall back to the documented VIP
        return HOST, 6443


def banner(vip, demo_dir):
    h, p = vip
    url = "https://%s:%d" % (h, p)
    shown = os.path.relpath(demo_dir, ROOT) if demo_dir.startswith(ROOT + os.sep) else demo_dir
    print("""
lbd demo is up: the apiserver VIP %(url)s in front of three fake masters.

Try, in another terminal:
  curl -k %(url)s/version                %(pad)s# which master answered: add -i, see X-Backend
  curl -k %(url)s/readyz
  curl -kN '%(url)s/watch?seconds=30'    %(pad)s# a long WATCH stream through the VIP
  curl -X POST http://127.0.0.1:17441/fail    # master-1 answers /readyz 503: lbd marks it DOWN
  curl -X POST http://127.0.0.1:17441/hang    # master-1 accepts but never answers /readyz
  curl -X POST http://127.0.0.1:17441/ok      # master-1 healthy again: UP after `rise` checks
  curl http://127.0.0.1:17441/stats           # what master-1 has served
  (ports 17442 and 17443 control master-2 and master-3; fail all three to see the fail-safe)
  build/lbctl --socket build/demo/admin.sock pools                    # why a backend is down
  build/lbctl --socket build/demo/admin.sock backend drain masters master-2 --wait
  build/lbctl --socket build/demo/admin.sock backend enable masters master-2

Logs are in %(dir)s. lbd's log follows; Ctrl-C stops everything.
""" % dict(url=url, pad=" " * max(0, 22 - len(url)), dir=shown), flush=True)


def main():
    ap = argparse.ArgumentParser(description="Run the local lbd demo.")
    ap.add_argument("--build", default="build", help="build directory holding lbd (default build)")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="lbd config (default %s)" % DEFAULT_CONFIG)
    ap.add_argument("--check", action="store_true",
                    help="start everything, check GET /version through the VIP, stop; exit 0 if it worked")
    ap.add_argument("--timeout", type=float, default=30, help="bound on each start-up wait, seconds")
    args = ap.parse_args()

    os.chdir(ROOT)
    build = os.path.abspath(args.build)
    lbd = os.path.join(build, "lbd")
    demo_dir = os.path.join(build, "demo")
    if not os.access(lbd, os.X_OK):
        sys.exit("demo: %s is not built; run `make` first" % lbd)
    if not os.path.exists(args.config):
        sys.exit("demo: %s does not exist" % args.config)
    vip = vip_of(args.config)

    busy = [p for p in [vip[1]] + [m[1] for m in MASTERS] + [m[2] for m in MASTERS]
            if harness.port_open(HOST if p != vip[1] else vip[0], p)]
    if busy:
        sys.exit("demo: port(s) %s already in use on 127.0.0.1 (another demo running?)"
                 % ", ".join(map(str, busy)))

    os.makedirs(os.path.join(demo_dir, "state"), exist_ok=True)
    certs = harness.make_certs(os.path.join(demo_dir, "certs"), cn="lbd-demo")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    procs = []
    status = 1
    try:
        for name, port, control in MASTERS:
            p = harness.Proc(name, [harness.PYTHON, harness.APISERVER, "--name", name,
                                    "--listen", "%s:%d" % (HOST, port), "--control", "%s:%d" % (HOST, control),
                                    "--cert", certs["cert"], "--key", certs["key"]],
                             os.path.join(demo_dir, name + ".log"))
            procs.append(p)
        for (name, port, control), p in zip(MASTERS, procs):
            harness.wait_for(lambda: p.alive() and harness.port_open(HOST, port), args.timeout,
                             "%s on %s:%d (see %s)" % (name, HOST, port, p.log_path))

        log_path = os.path.join(demo_dir, "lbd.log")
        open(log_path, "w").close()
        lbd_p = harness.Proc("lbd", [lbd, "-c", args.config], log_path, cwd=ROOT)
        procs.append(lbd_p)
        lbd_p.log.wait(r"listening on", args.timeout, proc=lbd_p, what="lbd listening on the VIP")

        if args.check:
            status = check(vip, lbd_p, args.timeout)
        else:
            banner(vip, demo_dir)
            status = follow(lbd_p)
    except Stop as e:
        print("\ndemo: %s, stopping" % e, flush=True)
        status = 0
    except (AssertionError, harness.WaitTimeout) as e:
        print("demo: %s" % e, file=sys.stderr, flush=True)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p in reversed(procs):  # lbd first, then the masters
            rc = p.stop(timeout=5)
            if not args.check:
                print("demo: stopped %s (pid %d, exit %s)" % (p.name, p.pid, rc), flush=True)
    return status


def follow(lbd_p):
    """Streams lbd's log to stdout until lbd exits (or a signal stops us)."""
    pos = 0
    while True:
        chunk = lbd_p.log.text(pos)
        if chunk:
            sys.stdout.write(chunk)
            sys.stdout.flush()
            pos += len(chunk.encode())
        if not lbd_p.alive():
            print("demo: lbd exited with status %s" % lbd_p.poll(), flush=True)
            return 1
        time.sleep(0.1)


def control(route, port=17441):
    import http.client
    c = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        c.request("POST", route)
        r = c.getresponse()
        r.read()
        if r.status != 200:
            raise AssertionError("POST %s:%d%s: %d" % (HOST, port, route, r.status))
    finally:
        c.close()


def check(vip, lbd_p, timeout):
    """GET /version through the VIP until it works (bounded), then spread a
    few requests: every master should answer at least one."""
    import json
    host, port = vip
    names = {m[0] for m in MASTERS}

    def version():
        st, h, body = harness.http_get(host, port, "/version", timeout=5)
        if st == 200 and json.loads(body).get("gitVersion") and h.get("x-backend") in names:
            return h["x-backend"]
        return None

    first = harness.wait_for(version, timeout, "GET /version through the VIP %s:%d" % (host, port))
    print("demo --check: GET https://%s:%d/version answered by %s" % (host, port, first))
    seen = set()
    for _ in range(30):
        seen.add(version())
        if seen >= names:
            break
    print("demo --check: masters seen through the VIP: %s" % ", ".join(sorted(n for n in seen if n)))
    if seen != names:
        print("demo --check: not every master answered through the VIP", file=sys.stderr)
        return 1

    # What the banner tells people to try: fail master-1, watch lbd route around it.
    mark = lbd_p.log.mark()
    control("/fail")
    line = lbd_p.log.wait(r"backend \S+/master-1 is DOWN", timeout, since=mark, proc=lbd_p)
    print("demo --check: after POST :17441/fail, lbd logged: %s" % line.split(": ", 1)[-1])
    answered = {version() for _ in range(9)}
    if "master-1" in answered:
        print("demo --check: master-1 still got connections while DOWN", file=sys.stderr)
        return 1
    mark = lbd_p.log.mark()
    control("/ok")
    line = lbd_p.log.wait(r"backend \S+/master-1 is UP", timeout, since=mark, proc=lbd_p)
    print("demo --check: after POST :17441/ok, lbd logged: %s" % line.split(": ", 1)[-1])
    if not lbd_p.alive():
        print("demo --check: lbd died; log:\n%s" % lbd_p.log.tail(), file=sys.stderr)
        return 1
    print("demo --check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
