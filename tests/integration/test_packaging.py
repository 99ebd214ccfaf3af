"""test_packaging.py - make deb, lintian, dpkg -i / purge, make install, sd_notify.

- `make deb` builds the package; its control data and file list are what the
  docs promise; lintian reports no errors (warnings are printed).
- The package installs on this machine (the issue allows it): the lbd user
  and /var/lib/lbd exist, `lbd -t -c /etc/lbd/lbd.yaml` passes,
  `systemd-analyze verify` passes on the installed unit, the man pages and
  the completion are in place; then `dpkg --purge` removes it all. Skipped
  when not root, or when a package named lbd is already installed (it is
  not ours to replace).
- `make install DESTDIR=... PREFIX=...` lays out the same files, with the
  unit's paths rewritten for the prefix.
- An upgrade of the package replaces a running lbd without refusing a
  connection: dpkg -i of the package, lbd run from /usr/sbin/lbd on the
  packaged admin socket, then dpkg -i of a newer build of it: its postinst
  runs /usr/lib/lbd/seamless-restart (lbctl restart; systemd is not PID 1
  here, so it finds lbd on the socket). New connections every 10 ms all
  succeed, the new pid runs the new version, the old one drains its WATCHes
  and exits 0. The same command with a config the new lbd refuses: a
  warning with the reason, exit 0, the old lbd serves on. Root only, like
  the install test.
- lbd speaks the sd_notify protocol: READY=1 once listening, RELOADING=1 +
  MONOTONIC_USEC and READY=1 around SIGHUP, STOPPING=1 on SIGTERM, to an
  abstract $NOTIFY_SOCKET (what systemd gives a Type=notify service).
- The kured companion unit (lbd-gate-watch.service) is in the package and in
  `make install`, with lbctl's path rewritten for the prefix, no --role, and
  passes `systemd-analyze verify` there.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_self_upgrade  # noqa: E402  (its Upgrades: load, streams, reaping restarted lbds)
from harness import T, wait_for  # noqa: E402

ROOT = harness.ROOT
BUILD = harness.BUILD


def sh(argv, timeout=300, env=None, check=True):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT, env=env)
    out = r.stdout.decode(errors="replace")
    if check and r.returncode != 0:
        raise AssertionError("%s: exit %d:\n%s" % (" ".join(argv), r.returncode, out[-4000:]))
    return r.returncode, out


def version():
    return sh(["dpkg-parsechangelog", "-l", os.path.join(ROOT, "packaging/debian/changelog"),
               "-S", "Version"])[1].strip()


_deb = None


def build_deb():
    """make deb, once per run; returns the .deb's path."""
    global _deb
    if _deb is None:
        harness.require_binary("dpkg-deb", "make deps installs dpkg-dev")
        harness.require_binary("dpkg-gencontrol", "make deps installs dpkg-dev")
        _, out = sh(["make", "-s", "BUILD=" + BUILD, "deb"])
        debs = [l.strip() for l in out.splitlines() if l.strip().endswith(".deb")]
        assert debs, "make deb printed no .deb path:\n" + out
        _deb = debs[-1]
    return _deb


class PackageTest(unittest.TestCase):
    def test_deb_contents(self):
        deb = build_deb()
        self.assertTrue(os.path.exists(deb), deb)
        arch = sh(["dpkg", "--print-architecture"])[1].strip()
        self.assertEqual(os.path.basename(deb), "lbd_%s_%s.deb" % (version(), arch))

        _, info = sh(["dpkg-deb", "-f", deb])
        self.assertRegex(info, r"(?m)^Package: lbd$")
        self.assertRegex(info, r"(?m)^Depends: .*\badduser\b.*\blibevent")
        _, listing = sh(["dpkg-deb", "-c", deb])
        for path in ["./usr/sbin/lbd", "./usr/bin/lbctl", "./etc/lbd/lbd.yaml",
                     "./lib/systemd/system/lbd.service",
                     "./lib/systemd/system/lbd-gate-watch.service",
                     "./usr/share/doc/lbd/examples/lbd-gate-watch.env",
                     "./usr/share/doc/lbd/examples/kured-README.md",
                     "./usr/share/man/man8/lbd.8.gz",
                     "./usr/share/man/man8/lbctl.8.gz",
                     "./usr/share/bash-completion/completions/lbctl",
                     "./usr/share/doc/lbd/copyright", "./usr/share/doc/lbd/changelog.Debian.gz",
                     "./usr/share/doc/lbd/examples/keepalived.conf.tmpl",
                     "./usr/lib/lbd/seamless-restart"]:
            self.assertRegex(listing, r"(?m) %s$" % re.escape(path))
        # Every document and example the docs, the man pages and lbctl's help
        # point at: docs/*.md, every example config and plan, the monitoring
        # files, and each /usr/share/doc/lbd path they name.
        doc = "./usr/share/doc/lbd/"
        want = [doc + f + ".gz" for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")]
        want += [doc + "examples/" + f for f in os.listdir(os.path.join(ROOT, "config", "examples"))
                 if f.endswith(".yaml")]
        want += [doc + "examples/lbd-alerts.yml", doc + "examples/grafana-lbd.json",
                 doc + "SECURITY.md.gz", doc + "README.md.gz"]
        named = ""
        for d in ("docs", "packaging/debian"):
            for f in os.listdir(os.path.join(ROOT, d)):
                if f.endswith((".md", ".8")):
                    with open(os.path.join(ROOT, d, f)) as fh:
                        named += fh.read().replace("\\-", "-")  # roff's hyphens
        for path in sorted(set(want)):
            self.assertRegex(listing, r"(?m) %s$" % re.escape(path))
        # A path named as such: the file, its .gz (a document) or a directory.
        for m in set(re.findall(r"/usr/share/doc/lbd/([\w./-]*\w)", named)):
            self.assertRegex(listing, r"(?m) %s(\.gz|/)?$" % re.escape(doc + m), m)
        tmp = self.tmpdir()
        sh(["dpkg-deb", "-e", deb, tmp])
        with open(os.path.join(tmp, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/lbd/lbd.yaml"])

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="lbd-deb-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_lintian_no_errors(self):
        harness.require_binary("lintian", "make deps installs lintian")
        deb = build_deb()
        rc, out = sh(["lintian", "--pedantic", deb], timeout=300, check=False)
        tags = [l for l in out.splitlines() if re.match(r"^[EWIPX]: ", l)]
        for l in tags:
            print("  [lintian] " + l, file=sys.stderr)
        errors = [l for l in tags if l.startswith("E: ")]
        self.assertEqual(errors, [], "lintian errors:\n" + out)
        self.assertEqual(rc, 0, "lintian exited %d:\n%s" % (rc, out))

    def test_make_install_destdir(self):
        dest = tempfile.mkdtemp(prefix="lbd-install-")
        self.addCleanup(shutil.rmtree, dest, True)
        sh(["make", "-s", "BUILD=" + BUILD, "install", "DESTDIR=" + dest,
            "PREFIX=/usr/local", "SYSCONFDIR=/etc"])
        for p in ["usr/local/sbin/lbd", "usr/local/bin/lbctl", "etc/lbd/lbd.yaml",
                  "etc/lbd/lbd.yaml.example", "usr/local/lib/systemd/system/lbd.service",
                  "usr/local/share/man/man8/lbd.8", "usr/local/share/man/man8/lbctl.8",
                  "usr/local/share/bash-completion/completions/lbctl"]:
            self.assertTrue(os.path.exists(os.path.join(dest, p)), p)
        with open(os.path.join(dest, "usr/local/lib/systemd/system/lbd.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/local/sbin/lbd -c /etc/lbd/lbd.yaml", unit)
        self.assertNotIn("/usr/sbin/lbd", unit)
        watch = os.path.join(dest, "usr/local/lib/systemd/system/lbd-gate-watch.service")
        with open(watch) as f:
            unit = f.read()
        self.assertIn("ExecStart=/usr/local/bin/lbctl --url ${LBD_GATE_URL} "
                      "--token-file /etc/lbd/gate-token", unit)
        self.assertNotIn("/usr/bin/lbctl", unit)
        self.assertNotIn("--role", unit)  # the gate knows the node's role
        self.verify_watch_unit(unit, os.path.join(dest, "usr/local/bin/lbctl"))
        # A second install keeps the operator's config.
        cfg = os.path.join(dest, "etc/lbd/lbd.yaml")
        with open(cfg, "a") as f:
            f.write("# edited by the operator\n")
        sh(["make", "-s", "BUILD=" + BUILD, "install", "DESTDIR=" + dest, "PREFIX=/usr/local"])
        with open(cfg) as f:
            self.assertIn("# edited by the operator", f.read())
        rc, out = sh([os.path.join(dest, "usr/local/sbin/lbd"), "-t", "-c", cfg], check=False)
        self.assertEqual(rc, 0, out)

    def verify_watch_unit(self, unit, lbctl):
        """systemd-analyze verify on the kured companion unit, its lbctl
        pointed at lbctl (verify wants the binary to exist) and without its
        man page reference (not installed outside the package)."""
        harness.require_binary("systemd-analyze", "make deps installs systemd")
        unit = re.sub(r"(?m)^Documentation=.*\n", "", unit)
        unit = re.sub(r"/\S*/bin/lbctl", lbctl, unit)
        d = self.tmpdir()
        path = os.path.join(d, "lbd-gate-watch.service")
        with open(path, "w") as f:
            f.write(unit)
        rc, out = sh(["systemd-analyze", "verify", path], check=False)
        self.assertEqual(rc, 0, "systemd-analyze verify:\n" + out)
        self.assertEqual(out.strip(), "", "systemd-analyze verify warned:\n" + out)


class InstallTest(unittest.TestCase):
    """dpkg -i on this machine, then dpkg --purge: cleaned up even on failure."""

    def setUp(self):
        if os.geteuid() != 0:
            harness.skip_capability("root", "dpkg -i needs it")
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "lbd"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        if r.returncode == 0 and b"installed" in r.stdout and b"not-installed" not in r.stdout:
            # Not a capability: the operator's own lbd is never replaced by a test.
            self.skipTest("a package named lbd is already installed here; not replacing it")
        self.deb = build_deb()

    def purge(self):
        sh(["dpkg", "--purge", "lbd"], timeout=120, check=False)

    def test_install_check_purge(self):
        self.addCleanup(self.purge)
        sh(["dpkg", "-i", self.deb], timeout=120)

        self.assertEqual(sh(["id", "-un", "lbd"])[1].strip(), "lbd")
        st = os.stat("/var/lib/lbd")
        self.assertEqual(st.st_uid, int(sh(["id", "-u", "lbd"])[1]))
        rc, out = sh(["/usr/sbin/lbd", "-t", "-c", "/etc/lbd/lbd.yaml"], check=False)
        self.assertEqual(rc, 0, out)
        self.assertIn("/etc/lbd/lbd.yaml: ok", out)
        rc, out = sh(["/usr/bin/lbctl", "--help"], check=False)
        self.assertEqual(rc, 0, out)
        harness.require_binary("man", "make deps installs man-db")
        rc, out = sh(["man", "-w", "lbd", "lbctl"], check=False)
        self.assertEqual(rc, 0, out)
        # A first install does not enable lbd (the default config points
        # at documentation addresses).
        self.assertFalse(os.path.exists("/etc/systemd/system/multi-user.target.wants/lbd.service"))

        harness.require_binary("systemd-analyze", "make deps installs systemd")
        rc, out = sh(["systemd-analyze", "verify", "/lib/systemd/system/lbd.service"],
                     check=False)
        self.assertEqual(rc, 0, "systemd-analyze verify:\n" + out)
        self.assertEqual(out.strip(), "", "systemd-analyze verify warned:\n" + out)

        self.purge()
        for p in ["/usr/sbin/lbd", "/usr/bin/lbctl", "/etc/lbd", "/var/lib/lbd",
                  "/lib/systemd/system/lbd.service", "/lib/systemd/system/lbd-gate-watch.service"]:
            self.assertFalse(os.path.exists(p), "%s left after purge" % p)


class UnitFileTest(unittest.TestCase):
    """packaging/systemd/lbd.service as shipped: its sandbox and its fd budget."""

    UNIT = os.path.join(ROOT, "packaging", "systemd", "lbd.service")
    # systemd-analyze security --offline=yes with systemd 252: 1.7 before
    # ProcSubset=pid, UMask=0077 and SystemCallFilter=~@resources.
    MAX_EXPOSURE = 1.6

    def directives(self):
        with open(self.UNIT) as f:
            return [l.strip() for l in f if re.match(r"^[A-Z]\w*=", l)]

    def test_sandbox(self):
        d = self.directives()
        for want in ["ProcSubset=pid", "UMask=0077", "SystemCallFilter=~@resources",
                     "ProtectProc=invisible", "NoNewPrivileges=yes"]:
            self.assertIn(want, d)
        harness.require_binary("systemd-analyze", "make deps installs systemd")
        tmp = tempfile.mkdtemp(prefix="lbd-unit-")
        self.addCleanup(shutil.rmtree, tmp, True)
        unit = os.path.join(tmp, "lbd.service")
        shutil.copy(self.UNIT, unit)
        rc, out = sh(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit],
                     check=False)
        m = re.search(r"Overall exposure level for lbd\.service: ([0-9.]+)", out)
        self.assertTrue(m, "no exposure level in:\n" + out[-3000:])
        self.assertLessEqual(float(m.group(1)), self.MAX_EXPOSURE, out[-3000:])
        for cheap in ["ProcSubset=", "UMask=", "SystemCallFilter=~@resources"]:
            self.assertNotRegex(out, r"✗ %s" % re.escape(cheap), out[-3000:])
        # verify: only what an uninstalled unit cannot have (the binary, the man pages).
        rc, out = sh(["systemd-analyze", "verify", unit], check=False)
        left = [l for l in out.splitlines() if l.strip() and
                not re.search(r"/usr/sbin/lbd is not executable|Command 'man (lbd|lbctl)\(8\)'", l)]
        self.assertEqual(left, [], "systemd-analyze verify:\n" + out)

    def test_fd_budget_documented(self):
        """Two descriptors per idle relayed connection, up to six while it
        moves bulk both ways (a splice pipe per bulk direction, borrowed while
        bytes wait in it): the unit and deploy.md say so and budget for it.
        test_hotpath measures the two."""
        with open(self.UNIT) as f:
            unit = f.read()
        with open(os.path.join(ROOT, "docs", "deploy.md")) as f:
            deploy = f.read()
        for name, text in (("lbd.service", unit), ("deploy.md", deploy)):
            flat = " ".join(text.replace("#", " ").split())
            self.assertRegex(flat, r"idle connection .{0,40}holds two", name)
            self.assertRegex(flat, r"up to (\*\*)?six(\*\*)?", name)
            self.assertRegex(flat, r"2 x`? \(?the frontends' `?max_connections", name)
            self.assertRegex(flat, r"4 x`? \(?connections busy with bulk|busy with bulk at once `?x 4",
                             name)
        with open(os.path.join(ROOT, "lbd", "relay.c")) as f:
            relay = f.read()
        # What the six stands on: a pipe (two fds) per direction, two
        # directions; what the two stands on: the pipe goes back when empty.
        self.assertRegex(relay, r"int pipe\[2\];")
        self.assertIn("c->c2b.pipe[0] = c->c2b.pipe[1] = -1;", relay)
        self.assertIn("c->b2c.pipe[0] = c->b2c.pipe[1] = -1;", relay)
        self.assertRegex(relay, r"empty: back to the worker \*/\s+worker_pipe_put")


def package_installed():
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "lbd"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    return r.returncode == 0 and b"installed" in r.stdout and b"not-installed" not in r.stdout


_newer = None


def build_newer_deb():
    """The same package with a newer version (a changelog entry in a temp
    file, through mkdeb.sh's LBD_DEB_CHANGELOG; nothing committed): (path,
    version). The binaries' version follows the changelog's."""
    global _newer
    if _newer is None:
        build_deb()
        pkg = os.path.join(ROOT, "packaging/debian/changelog")
        field = lambda f: sh(["dpkg-parsechangelog", "-l", pkg, "-S", f])[1].strip()  # noqa: E731
        newer = version() + "+upgradetest1"
        d = tempfile.mkdtemp(prefix="lbd-deb2-")
        path = os.path.join(d, "changelog")
        with open(pkg) as f:
            old = f.read()
        with open(path, "w") as f:
            f.write("lbd (%s) unstable; urgency=medium\n\n"
                    "  * A newer build for test_packaging's upgrade test.\n\n"
                    " -- %s  %s\n\n%s" % (newer, field("Maintainer"), field("Date"), old))
        env = dict(os.environ, LBD_DEB_CHANGELOG=path)
        _, out = sh(["make", "-s", "BUILD=" + BUILD, "deb"], env=env)
        shutil.rmtree(d, True)
        debs = [l.strip() for l in out.splitlines() if l.strip().endswith(".deb")]
        assert debs and newer in debs[-1], out
        _newer = (debs[-1], newer)
    return _newer


class DebUpgradeTest(test_self_upgrade.Upgrades):
    """dpkg -i, lbd as the package runs it, dpkg -i of a newer build: the
    postinst's seamless restart. Purged even on failure."""

    SOCK = "/run/lbd/admin.sock"  # the packaged config's, lbctl's default
    lbctl_path = "/usr/bin/lbctl"

    def setUp(self):
        if os.geteuid() != 0:
            harness.skip_capability("root", "dpkg -i needs it")
        if package_installed():
            self.skipTest("a package named lbd is already installed here; not replacing it")
        if os.path.exists(self.SOCK):
            # The machine's own lbd serves there: not a test's to replace.
            self.skipTest("a package named lbd is already installed here; not replacing it "
                          "(%s exists)" % self.SOCK)
        super().setUp()
        self.deb = build_deb()
        self.deb2, self.v2 = build_newer_deb()

    def purge(self):
        sh(["dpkg", "--purge", "lbd"], timeout=120, check=False)

    def dpkg_i(self, deb):
        return sh(["dpkg", "-i", "--force-confold", deb], timeout=120)[1]

    def test_upgrade_restarts_without_refusing(self):
        self.addCleanup(self.purge)  # after every lbd is stopped (cleanups: last first)
        self.dpkg_i(self.deb)
        v1 = version()
        cfg = self.config()  # two apiserver sims, a gate with the file store
        cfg["admin"] = {"socket": self.SOCK}
        old = self.start(cfg, binary="/usr/sbin/lbd")
        self.assertTrue(self.status()["version"].startswith(v1 + " ") or
                        self.status()["version"] == v1, self.status()["version"])
        fence = self.ask("worker-1")["fence"]
        streams = [test_self_upgrade.Stream(self.vip_port) for _ in range(2)]
        for st in streams:
            self.addCleanup(st.close)
        wait_for(lambda: all(len(st.times) >= 3 for st in streams), T(10), "2 WATCHes streaming")
        load = self.clients(0.01)

        # The upgrade: dpkg replaces /usr/sbin/lbd (the running one's file is
        # "(deleted)" now) and the postinst restarts lbd on the socket.
        mark = self.log.mark()
        out = self.dpkg_i(self.deb2)
        m = re.search(r"lbd: lbd restarted: pid (\d+) took over from pid (\d+) \(version ([^\s)]+)",
                      out)
        self.assertTrue(m, "the postinst did not restart lbd:\n%s\nlog:\n%s" % (
            out, self.log.tail(mark)))
        new_pid = int(m.group(1))
        self.learn(new_pid)
        self.assertEqual(int(m.group(2)), old.pid)
        self.assertEqual(m.group(3), self.v2)
        self.assertEqual(os.readlink("/proc/%d/exe" % new_pid), "/usr/sbin/lbd")
        s = self.status()
        self.assertEqual(s["pid"], new_pid, s)
        self.assertTrue(s["version"].startswith(self.v2), s["version"])
        rc, text, err = self.lbctl("status")
        self.assertIn("(pid %d), version %s" % (new_pid, self.v2), text, text + err)
        wait_for(lambda: (self.status().get("previous") or {}).get("connections") == 2, T(5),
                 "the old lbd shown draining its 2 WATCHes")
        rc, text, err = self.lbctl("status")
        self.assertIn("previous lbd (pid %d) still draining: 2 connection(s)" % old.pid, text)

        t = time.monotonic()
        wait_for(lambda: all(st.chunks_after(t) >= 5 for st in streams), T(10),
                 "the WATCHes flowing after the upgrade")
        for st in streams:
            st.close()
        wait_for(lambda: old.poll() is not None, T(15), "the old lbd to exit")
        self.assertEqual(old.poll(), 0)
        n = load.ok
        wait_for(lambda: load.ok >= n + 50, T(10), "the new lbd serving")
        self.assertEqual(load.errors, [], load.summary())
        self.assertEqual(self.leases(), {"worker-1": fence})

        # The postinst's exact command, by hand, with a config the new lbd
        # refuses: a warning with the reason, success, the lbd serves on.
        good = harness.to_yaml(self.cfg)
        self.write_config(good + "bogus_key: 1\n")
        r = subprocess.run(["/usr/lib/lbd/seamless-restart"], capture_output=True, text=True,
                           timeout=T(120))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        harness.note("seamless-restart with a refused config:\n%s", r.stderr)
        self.assertIn("WARNING", r.stderr)
        self.assertIn("keeps serving with the", r.stderr)
        self.assertIn("(%s" % self.v2, r.stderr)
        self.assertIn("bogus_key", r.stderr)
        self.assertEqual(self.status()["pid"], new_pid)
        self.write_config(good)
        r = subprocess.run(["/usr/lib/lbd/seamless-restart"], capture_output=True, text=True,
                           timeout=T(120))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = re.search(r"pid (\d+) took over from pid %d" % new_pid, r.stdout)
        self.assertTrue(m, r.stdout + r.stderr)
        self.learn(int(m.group(1)))
        wait_for(lambda: self.gone(new_pid), T(15), "the second lbd to exit")
        self.assertEqual(self.exit_code(new_pid), 0)

        load.stop()
        harness.note("package upgrade: %s", load.summary())
        self.assertEqual(load.errors, [], load.summary())
        self.assertGreater(load.ok, 100, load.summary())


class SdNotifyTest(harness.TestCase):
    """lbd under a fake systemd: an abstract $NOTIFY_SOCKET."""

    def recv(self, sock):
        try:
            return sock.recv(4096).decode()
        except socket.timeout:
            self.fail("no sd_notify message within the timeout")

    def test_ready_reload_stopping(self):
        harness.require_binary(harness.LBD, "run make")
        name = "lbd-test-notify-%d" % os.getpid()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        sock.bind("\0" + name)
        sock.settimeout(T(10))

        port = harness.free_port()
        cfg = self.lbd_config([("b1", "127.0.0.1:%d" % harness.free_port())],
                              listen=["127.0.0.1:%d" % port], health={"type": "tcp"})
        path = self.write_config(cfg)
        env = dict(os.environ, NOTIFY_SOCKET="@" + name)
        p = self.spawn("lbd", [harness.LBD, "-c", path], env=env)

        msg = self.recv(sock)
        self.assertTrue(msg.startswith("READY=1\n"), msg)
        self.assertIn("STATUS=serving 1 frontends, 1 pools", msg)
        # READY comes after the listener is open.
        self.assertIsNotNone(p.log.find(r"listening on 127\.0\.0\.1:%d" % port))

        p.send_signal(signal.SIGHUP)
        msg = self.recv(sock)
        self.assertRegex(msg, r"^RELOADING=1\nMONOTONIC_USEC=\d+\n")
        msg = self.recv(sock)
        self.assertTrue(msg.startswith("READY=1\n"), msg)
        self.assertIn("config reloaded", msg)

        # A broken config on reload: refused, and systemd hears that too.
        with open(path, "a") as f:
            f.write("bogus_key: 1\n")
        p.send_signal(signal.SIGHUP)
        self.assertRegex(self.recv(sock), r"^RELOADING=1\n")
        self.assertIn("reload refused", self.recv(sock))

        p.send_signal(signal.SIGTERM)
        self.assertTrue(self.recv(sock).startswith("STOPPING=1"))
        self.assertEqual(p.wait(T(10)), 0)


if __name__ == "__main__":
    unittest.main()
