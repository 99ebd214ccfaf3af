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
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import T  # noqa: E402

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
        if not shutil.which("dpkg-deb") or not shutil.which("dpkg-gencontrol"):
            raise unittest.SkipTest("dpkg-dev is not installed (make deps installs it)")
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
                     "./usr/share/doc/lbd/examples/keepalived.conf.tmpl"]:
            self.assertRegex(listing, r"(?m) %s$" % re.escape(path))
        tmp = self.tmpdir()
        sh(["dpkg-deb", "-e", deb, tmp])
        with open(os.path.join(tmp, "conffiles")) as f:
            self.assertEqual(f.read().split(), ["/etc/lbd/lbd.yaml"])

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="lbd-deb-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def test_lintian_no_errors(self):
        if not shutil.which("lintian"):
            self.skipTest("lintian is not installed (make deps installs it)")
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
        if not shutil.which("systemd-analyze"):
            print("  [packaging] systemd-analyze not installed: unit not verified",
                  file=sys.stderr)
            return
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
            self.skipTest("dpkg -i needs root")
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "lbd"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
        if r.returncode == 0 and b"installed" in r.stdout and b"not-installed" not in r.stdout:
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
        if shutil.which("man"):
            rc, out = sh(["man", "-w", "lbd", "lbctl"], check=False)
            self.assertEqual(rc, 0, out)
        # A first install does not enable lbd (the default config points
        # at documentation addresses).
        self.assertFalse(os.path.exists("/etc/systemd/system/multi-user.target.wants/lbd.service"))

        if shutil.which("systemd-analyze"):
            rc, out = sh(["systemd-analyze", "verify", "/lib/systemd/system/lbd.service"],
                         check=False)
            self.assertEqual(rc, 0, "systemd-analyze verify:\n" + out)
            self.assertEqual(out.strip(), "", "systemd-analyze verify warned:\n" + out)
        else:
            print("  [packaging] systemd-analyze not installed: unit not verified",
                  file=sys.stderr)

        self.purge()
        for p in ["/usr/sbin/lbd", "/usr/bin/lbctl", "/etc/lbd", "/var/lib/lbd",
                  "/lib/systemd/system/lbd.service", "/lib/systemd/system/lbd-gate-watch.service"]:
            self.assertFalse(os.path.exists(p), "%s left after purge" % p)


class SdNotifyTest(harness.TestCase):
    """lbd under a fake systemd: an abstract $NOTIFY_SOCKET."""

    def recv(self, sock):
        try:
            return sock.recv(4096).decode()
        except socket.timeout:
            self.fail("no sd_notify message within the timeout")

    def test_ready_reload_stopping(self):
        if not os.access(harness.LBD, os.X_OK):
            self.skipTest("%s not built" % harness.LBD)
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
