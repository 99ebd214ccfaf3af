"""test_monitoring.py - the Prometheus alert rules and the Grafana dashboard
that ship in packaging/ (issue 18).

- `promtool check rules` passes on packaging/prometheus/lbd-alerts.yml, and
  `promtool test rules` on lbd-alerts.test.yml: each alert (VIP down, backend
  down, fail-safe, gate lease stale, gate refusing for hours, ...) fires on
  the series that mean it and not on healthy ones.
- The dashboard (packaging/grafana/lbd.json) is valid JSON with unique panel
  ids, and every query in it is PromQL that promtool parses (each one checked
  as a recording rule, Grafana's $variables replaced).
- Every lbd_* metric named in the rules or the dashboard exists in a running
  lbd's /metrics (with a gate, so its families are there too): a rename in
  the code breaks this test, not an operator's alert.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, ROOT, T, wait_for  # noqa: E402

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
RULES = os.path.join(ROOT, "packaging", "prometheus", "lbd-alerts.yml")
RULES_TEST = os.path.join(ROOT, "packaging", "prometheus", "lbd-alerts.test.yml")
DASHBOARD = os.path.join(ROOT, "packaging", "grafana", "lbd.json")
# What Grafana substitutes before it sends a query.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h",
                "$instance": ".*"}
# Series Prometheus makes itself, not lbd.
PROMETHEUS_OWN = {"up"}


def dashboard_exprs():
    with open(DASHBOARD) as f:
        d = json.load(f)
    out = []
    for p in d["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return d, out


def rule_exprs():
    import yaml
    with open(RULES) as f:
        r = yaml.safe_load(f)
    return [(x["alert"], x["expr"]) for g in r["groups"] for x in g["rules"]]


def metric_names(expr):
    """Metric names in a PromQL expression: lbd's (lbd_*) and the bare
    identifiers followed by { (up{...})."""
    names = set(re.findall(r"\b(lbd_[a-z0-9_]+)\b", expr))
    names |= set(re.findall(r"\b([a-z_][a-z0-9_]*)\{", expr))
    return names


class TestMonitoring(harness.TestCase):

    def promtool(self, *args):
        harness.require_binary(PROMTOOL, "apt-get install prometheus (make deps)")
        return subprocess.run([PROMTOOL] + list(args), capture_output=True, text=True,
                              timeout=T(60), cwd=os.path.dirname(RULES))

    def test_alert_rules_check_and_fire(self):
        r = self.promtool("check", "rules", RULES)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout + r.stderr)
        names = {a for a, _ in rule_exprs()}
        for want in ("LbdDown", "LbdVipNoBackend", "LbdBackendDown", "LbdPoolFailSafe",
                     "LbdGateLeaseStale", "LbdGateRefusing"):
            self.assertIn(want, names)
        r = self.promtool("test", "rules", RULES_TEST)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        # Every alert has a unit test.
        with open(RULES_TEST) as f:
            tested = set(re.findall(r"alertname: (\w+)", f.read()))
        self.assertEqual(names - tested, set(), "alerts without a promtool unit test")

    def test_dashboard_queries_parse(self):
        d, exprs = dashboard_exprs()
        ids = [p["id"] for p in d["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        self.assertTrue(d.get("uid") and d.get("title"))
        self.assertGreater(len(exprs), 10)
        rules = ["groups:", "  - name: dashboard", "    rules:"]
        for i, (_, e) in enumerate(exprs):
            for k, v in GRAFANA_VARS.items():
                e = e.replace(k, v)
            self.assertNotIn("$", e, "a Grafana variable this test does not know: " + e)
            rules += ["      - record: dashboard:q%d" % i, "        expr: %s" % json.dumps(e)]
        path = self.path("dashboard-rules.yml")
        with open(path, "w") as f:
            f.write("\n".join(rules) + "\n")
        r = self.promtool("check", "rules", path)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_every_metric_named_exists_in_lbd(self):
        harness.require_binary(PROMTOOL, "apt-get install prometheus (make deps)")
        m = self.start_apiserver("master-1")
        tokens = self.path("gate-tokens")
        with open(tokens, "w") as f:
            f.write("* admin-token-for-the-test\n")
        os.chmod(tokens, 0o600)
        mport = harness.free_port()
        cfg = self.lbd_config([m], extra={"metrics": {"listen": "%s:%d" % (LOOPBACK, mport)}})
        cfg["gate"] = {"listen": "%s:%d" % (LOOPBACK, harness.free_port()), "tokens_file": tokens,
                       "quorum": {"pool": "vip"}, "concurrency": {"masters": 1, "workers": 1}}
        self.start_lbd(cfg, wait_up=["vip/master-1"])

        def exported():
            st, _, body = harness.http_get(LOOPBACK, mport, "/metrics", tls=False)
            if st != 200 or b"lbd_gate_leases{" not in body:
                return None  # the gate's families arrive with its first pong
            return {ln.split("{")[0].split(" ")[0] for ln in body.decode().splitlines()
                    if ln and not ln.startswith("#")}

        have = wait_for(exported, T(20), "the gate's families in /metrics")
        named = {}
        for where, e in rule_exprs() + dashboard_exprs()[1]:
            for n in metric_names(e) - PROMETHEUS_OWN:
                named.setdefault(n, where)
        self.assertIn("lbd_backend_up", named)
        self.assertIn("lbd_gate_leases", named)
        missing = {n: w for n, w in named.items() if n not in have}
        self.assertEqual(missing, {}, "named in the rules/dashboard (name: where) but not "
                         "exported by lbd")


if __name__ == "__main__":
    unittest.main()
