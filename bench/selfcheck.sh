#!/bin/sh
# selfcheck.sh - does the bench harness work here? (not part of tests/)
# Runs `bench/run.py --quick --only rps` under a 60 s bound and checks that it
# produced a requests/s row for lbd and HAProxy with no client errors.
#   bench/selfcheck.sh [BUILD_DIR]      (default: build)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
out=$(mktemp -d /tmp/lbd-bench-selfcheck.XXXXXX)
trap 'rm -rf "$out"' EXIT
start=$(date +%s)
timeout -s TERM 60 /usr/bin/python3 bench/run.py --build "$build" --quick --only rps \
	--out "$out" >"$out/log" 2>&1 || { tail -20 "$out/log"; echo "selfcheck: FAILED (run.py)"; exit 1; }
/usr/bin/python3 - "$out/results.json" <<'PY' || { tail -20 "$out/log"; exit 1; }
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]["rps"]["variants"]
for v in ("lbd", "haproxy", "direct"):
    r = m[v]["runs"][0]
    assert r["rate"] > 100 and r["errors"] == 0, "selfcheck: FAILED: %s: %s" % (v, r)
    if v != "direct":
        assert r["cpu_us_per_req"] > 0, "selfcheck: FAILED: %s: no CPU figure" % v
PY
echo "selfcheck: ok in $(( $(date +%s) - start ))s"
