#!/usr/bin/env python3
"""run.py - the integration tests, one file per unittest process, JOBS at once.

Most integration tests wait: for a check interval, a kubesim grace period, an
upgrade's soak. On 2 cores one file after another leaves the machine idle most
of the time (`make test`: user+sys a quarter of the wall clock), so files run
side by side, JOBS of them (LBD_TEST_JOBS, default 2; 1 runs them one after
another). Each file is its own process with its own temporary directories,
ephemeral ports and namespaces, as when it runs alone.

The longest files start first: each run writes every file's time to
$LBD_BUILD/integration-times.json, and the next run orders by it (files not
yet timed go first); a fresh build dir uses tests/integration/times.json. Every file's output is printed whole when it ends, then a
summary; the exit status is 1 if any file failed.

    tests/integration/run.py [TEST_FILE...]      (LBD_BUILD, SAN as for unittest)
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# Files that use fixed, well-known addresses of this machine (the demo's VIP
# 127.0.0.1:6443, the installed package's service and /etc/lbd): never two of
# them at once.
EXCLUSIVE = {"test_demo.py", "test_packaging.py"}
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def times_path():
    build = os.environ.get("LBD_BUILD", "build")
    return os.path.join(ROOT, build, "integration-times.json")


def load_times():
    """This build's last times, else the ones kept beside this file (a fresh
    clone: the long upgrade files must not start last)."""
    for path in (times_path(), os.path.join(HERE, "times.json")):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            pass
    return {}


def save_times(times):
    path = times_path()
    try:
        with open(path + ".tmp", "w") as f:
            json.dump(times, f, indent=1, sort_keys=True)
        os.rename(path + ".tmp", path)
    except OSError:
        pass  # a read-only build dir: the next run orders by name


def main(argv):
    files = argv or sorted(f for f in os.listdir(HERE) if f.startswith("test_") and f.endswith(".py"))
    jobs = max(1, int(os.environ.get("LBD_TEST_JOBS", "2")))
    known = load_times()
    # longest first; untimed ones count as longest
    queue = sorted(files, key=lambda f: (-known.get(f, 1e9), f))
    running, results, t0 = {}, {}, time.monotonic()
    while queue or running:
        while queue and len(running) < jobs:
            busy = any(f in EXCLUSIVE for _, f, _, _ in running.values())
            ready = [f for f in queue if not (busy and f in EXCLUSIVE)]
            if not ready:
                break
            f = ready[0]
            queue.remove(f)
            out = open(os.path.join(ROOT, os.environ.get("LBD_BUILD", "build"),
                                    "integration-%s.log" % f[:-3]), "w+")
            p = subprocess.Popen([sys.executable, "-m", "unittest", "discover", "-s", HERE,
                                  "-p", f, "-v"], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            running[p.pid] = (p, f, out, time.monotonic())
        pid, status = os.wait()
        if pid not in running:
            continue
        p, f, out, started = running.pop(pid)
        p.returncode = os.waitstatus_to_exitcode(status)
        took = time.monotonic() - started
        out.seek(0)
        sys.stdout.write("==== %s (%.0f s, exit %d)\n%s\n" % (f, took, p.returncode, out.read()))
        sys.stdout.flush()
        out.close()
        results[f] = (p.returncode, took)
        known[f] = round(took, 1)
    save_times(known)
    failed = sorted(f for f, (rc, _) in results.items() if rc != 0)
    print("==== integration: %d files in %.0f s, %d at a time; slowest: %s" % (
        len(results), time.monotonic() - t0, jobs,
        ", ".join("%s %.0fs" % (f, t) for f, (_, t) in
                  sorted(results.items(), key=lambda kv: -kv[1][1])[:5])))
    if failed:
        print("==== FAILED: %s" % " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
