"""test_status_page.py - the status page (issue 18) in a real browser.

lbd runs in front of two fake masters with a metrics listener. Debian's
headless Chromium opens GET / on that listener and is driven over the
DevTools protocol on a pipe (--remote-debugging-pipe: no port, no websocket
library): the page shows both backends UP; one master's /readyz then fails,
and the SAME page - never reloaded - must show it DOWN with the check's
reason within a few refreshes, and a drain's progress. A phone-sized screenshot is kept in the build
dir (status-page-*.png) as an artifact. The metrics listener serves the page
and the read-only routes it reads, never a mutation. With a gate, the page
shows a lease taken through the admin socket and what another master's
request would get now (refused: one master at a time).

Every wait is a bounded poll; Chromium and lbd are stopped by PID.
"""

import base64
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, T, wait_for  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class DevTools:
    """Chromium, headless, spoken to over --remote-debugging-pipe: it reads
    NUL-terminated JSON commands on fd 3 and writes answers on fd 4."""

    def __init__(self, profile, log_path):
        to_r, self._to_w = os.pipe()
        self._from_r, from_w = os.pipe()

        def fds():  # in the child: the two pipe ends become fds 3 and 4
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)

        self._log = open(log_path, "ab")
        # Only loopback traffic: none of Chromium's own calls home (updates, sync,
        # safe browsing, field trials, DNS prefetch), and no name is resolved at
        # all (every host but 127.0.0.1 is "not found", without a DNS query;
        # anything else would go to a proxy on a closed loopback port).
        argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-default-apps", "--no-default-browser-check",
                "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                "--disable-features=Translate,OptimizationHints,MediaRouter,"
                "DialMediaRouteProvider,AsyncDns",
                "--no-pings", "--dns-prefetch-disable", "--metrics-recording-only",
                "--safebrowsing-disable-auto-update",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--proxy-server=http://127.0.0.1:9",  # loopback itself is never proxied
                "--remote-debugging-pipe", "--user-data-dir=" + profile,
                "--window-size=412,915", "about:blank"]
        # Its own session: stop() kills its group, which holds only its children.
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                      stderr=self._log, preexec_fn=fds, close_fds=False,
                                      start_new_session=True)
        os.close(to_r)
        os.close(from_w)
        self._next = 0
        self._buf = b""
        self.session = None

    def stop(self):
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(T(5))
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(T(5))
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for fd in (self._to_w, self._from_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()

    def call(self, method, params=None, session=True, timeout=None):
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + (timeout or T(20))
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                m = json.loads(raw)
                if m.get("id") != self._next:
                    continue  # an event, or an answer nobody waits for
                if "error" in m:
                    raise AssertionError("DevTools %s: %s" % (method, m["error"]))
                return m.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0 or self.popen.poll() is not None:
                raise AssertionError("DevTools %s: no answer (chromium %s)" %
                                     (method, "exited" if self.popen.poll() is not None else "alive"))
            r, _, _ = select.select([self._from_r], [], [], min(left, 0.5))
            if r:
                chunk = os.read(self._from_r, 1 << 16)
                if not chunk:
                    raise AssertionError("DevTools: chromium closed the pipe")
                self._buf += chunk

    def open(self, url):
        target = self.call("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        # A phone's viewport (a Pixel 7's CSS size), media queries and all.
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 412, "height": 915, "deviceScaleFactor": 1, "mobile": True})

    def js(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return r.get("result", {}).get("value")

    def screenshot(self, path):
        """The whole page, as tall as it is, at the phone's width."""
        size = self.call("Page.getLayoutMetrics").get("cssContentSize") or {}
        clip = {"x": 0, "y": 0, "width": size.get("width", 412),
                "height": min(size.get("height", 915), 8000), "scale": 1}
        data = self.call("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                    "captureBeyondViewport": True})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))


# What the page shows for a backend, read from its DOM.
ROW_JS = """(function () {
  var rows = document.querySelectorAll('tr[data-backend]'), out = {};
  for (var i = 0; i < rows.length; i++) {
    var r = rows[i], why = r.querySelector('td[data-label="why down"]');
    out[r.getAttribute('data-backend')] = {health: r.getAttribute('data-health'),
      why: why ? why.textContent : null};
  }
  return {rows: out, refreshes: +document.getElementById('refreshes').textContent,
          gate: (document.querySelector('[data-gate]') || {}).textContent || null,
          state: document.getElementById('state').textContent};
})()"""


class StatusPageTest(harness.TestCase):

    def setUp(self):
        super().setUp()
        harness.require_binary(CHROMIUM, "apt-get install chromium (make deps)")

    def start(self):
        m1 = self.start_apiserver("master-1")
        m2 = self.start_apiserver("master-2")
        self.mport = harness.free_port()
        cfg = self.lbd_config([m1, m2], extra={"metrics": {"listen": "%s:%d" % (LOOPBACK, self.mport)}})
        self.lbd = self.start_lbd(cfg, wait_up=["vip/master-1", "vip/master-2"])
        self.vip_port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        return m1, m2

    def browser(self):
        b = DevTools(self.path("chromium-profile"), self.path("chromium.log"))
        self.addCleanup(b.stop)
        return b

    def artifact(self, name):
        return os.path.join(harness.BUILD, "status-page-%s.png" % name)

    def test_page_shows_a_failed_backend_down_with_its_reason(self):
        m1, _ = self.start()
        b = self.browser()
        b.open("http://%s:%d/" % (LOOPBACK, self.mport))

        def view(pred):
            def f():
                v = b.js(ROW_JS)
                return v if v and pred(v) else None
            return f

        v = wait_for(view(lambda v: v["rows"].get("master-1", {}).get("health") == "UP" and
                          v["rows"].get("master-2", {}).get("health") == "UP"),
                     T(30), "the page shows both backends UP")
        self.assertIn("not enabled", v["gate"])
        first = v["refreshes"]
        b.screenshot(self.artifact("up"))

        m1.fail()  # /readyz answers 503 from now on
        self.lbd.log.wait(r"backend vip/master-1 is DOWN", T(15), proc=self.lbd)
        v = wait_for(view(lambda v: v["rows"]["master-1"]["health"] == "DOWN"), T(30),
                     "the page (not reloaded) shows master-1 DOWN")
        self.assertGreater(v["refreshes"], first, "redrawn in place by a refresh")
        self.assertRegex(v["rows"]["master-1"]["why"], r"503", "the reason, as lbctl pools says it")
        self.assertEqual(v["rows"]["master-2"]["health"], "UP")
        # Drain progress: a connection held open through the VIP (to master-2,
        # the only backend up), then master-2 drained: the page counts it down.
        c = socket.create_connection((LOOPBACK, self.vip_port), timeout=T(5))
        self.addCleanup(c.close)
        sock = self.path("admin.sock")
        def active_on_master2():
            bes = harness.admin_request(sock, "GET", "/v1/pools/vip")[2]["backends"]
            return [x["active"] for x in bes if x["name"] == "master-2"] == [1]
        wait_for(active_on_master2, T(10), "the held connection on master-2")
        st, _, _ = harness.admin_request(sock, "PATCH", "/v1/pools/vip/backends/master-2",
                                         {"state": "drain"})
        self.assertEqual(st, 200)
        drain_js = ("(function () { var r = document.querySelector('tr[data-backend=\"master-2\"] "
                    "td[data-label=\"drain\"]'); return r ? r.textContent : ''; })()")
        text = wait_for(lambda: (lambda t: t if "draining" in t else None)(b.js(drain_js)), T(30),
                        "the page shows master-2 draining")
        self.assertRegex(text, r"1 connection left")
        # The page was never reloaded: the same document redrew itself.
        self.assertEqual(b.js("performance.getEntriesByType('navigation').length"), 1)
        b.screenshot(self.artifact("down"))
        with open(self.artifact("down"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # Readable on a phone: no horizontal scrolling at 412 px.
        self.assertLessEqual(b.js("document.documentElement.scrollWidth"), 412)
        # Self-contained: nothing but lbd's own routes was fetched.
        urls = b.js("performance.getEntriesByType('resource').map(function (e) { return e.name; })")
        for u in urls:
            self.assertTrue(u.startswith("http://%s:%d/" % (LOOPBACK, self.mport)), u)

    def test_page_shows_the_gate_leases_and_arithmetic(self):
        masters = [self.start_apiserver("master-%d" % i) for i in (1, 2, 3)]
        tokens = self.path("gate-tokens")
        with open(tokens, "w") as f:
            f.write("* admin-token-of-the-test\n")
        os.chmod(tokens, 0o600)
        self.mport = harness.free_port()
        cfg = self.lbd_config(masters, extra={"metrics": {"listen": "%s:%d" % (LOOPBACK, self.mport)}})
        cfg["gate"] = {"listen": "%s:%d" % (LOOPBACK, harness.free_port()), "tokens_file": tokens,
                       "quorum": {"pool": "vip"}, "concurrency": {"masters": 1, "workers": 1}}
        self.lbd = self.start_lbd(cfg, wait_up=["vip/master-%d" % i for i in (1, 2, 3)])
        sock = cfg["admin"]["socket"]

        def granted():
            st, _, body = harness.admin_request(sock, "POST", "/v1/gate/leases",
                                                {"node": "master-1", "role": "master",
                                                 "reason": "kernel update"})
            return st == 201 and body
        wait_for(granted, T(20), "a master lease for master-1 (the gate process starting)")
        b = self.browser()
        b.open("http://%s:%d/" % (LOOPBACK, self.mport))
        gate_js = """(function () {
          var lease = document.querySelector('tr[data-lease="master-1"]');
          var g = document.getElementById('gate');
          return {lease: lease ? lease.textContent : null, text: g.textContent,
                  on: !!document.querySelector('[data-gate="on"]')};
        })()"""
        v = wait_for(lambda: (lambda x: x if x and x["on"] and x["lease"] else None)(b.js(gate_js)),
                     T(30), "the page shows master-1's lease")
        self.assertIn("kernel update", v["lease"])
        self.assertIn("master", v["lease"])
        # What a request would get now: another master is refused (one master at a
        # time), with the reasons and the arithmetic behind them.
        self.assertIn("What a request would get now", v["text"])
        self.assertRegex(v["text"], r"master-2\s*refused now")
        self.assertIn("(any worker)", v["text"])
        b.screenshot(self.artifact("gate"))

    def test_listeners_serve_the_page_and_only_read_only_routes(self):
        self.start()
        sock = self.path("admin.sock")
        st, hdr, body = harness.http_get(LOOPBACK, self.mport, "/", tls=False)
        self.assertEqual(st, 200)
        self.assertIn(b"<title>lbd status</title>", body)
        # and a policy that lets it load nothing but itself and the JSON API
        h = {k.lower(): v for k, v in dict(hdr).items()}
        self.assertIn("default-src 'none'", h.get("content-security-policy", ""), hdr)
        self.assertIn("connect-src 'self'", h.get("content-security-policy", ""), hdr)
        self.assertEqual(h.get("x-content-type-options"), "nosniff", hdr)
        st2, _, body2 = harness.admin_request(sock, "GET", "/")
        self.assertEqual(st2, 200)
        self.assertEqual(body2.encode() if isinstance(body2, str) else body2, body)
        # No external asset: no src= or href= leaving the listener.
        self.assertNotRegex(body, rb"(src|href)=\"(https?:)?//")
        for path in ("/v1/status", "/v1/pools"):
            st, _, _ = harness.http_get(LOOPBACK, self.mport, path, tls=False)
            self.assertEqual(st, 200, path)
        # Mutations and everything else stay on the admin socket only.
        for method, path in (("POST", "/v1/reload"), ("POST", "/v1/restart"),
                             ("POST", "/v1/pools/vip/backends"),
                             ("DELETE", "/v1/pools/vip/backends/master-1"),
                             ("PATCH", "/v1/pools/vip/backends/master-1"),
                             ("GET", "/v1/pools/vip/backends/master-1"),
                             ("GET", "/v1/gate/leases")):
            st, _, _ = harness.http_get(LOOPBACK, self.mport, path, tls=False, method=method,
                                        body=b"{}" if method != "GET" else None)
            self.assertEqual(st, 404, "%s %s on the metrics listener" % (method, path))
        st, _, _ = harness.http_get(LOOPBACK, self.mport, "/", tls=False, method="POST", body=b"{}")
        self.assertEqual(st, 405)
        self.assertIsNone(self.lbd.poll())


if __name__ == "__main__":
    unittest.main()
