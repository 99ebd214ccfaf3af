"""Frontends in mode tls: lbd terminates TLS (1.2+) in front of plain
backends, re-reads its certificate on SIGHUP, refuses a broken one, and
relays big bodies and half-closes intact."""
import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import LOOPBACK, T, wait_for  # noqa: E402


def peer_cert_cn(port, server_name=None):
    ctx = ssl.create_default_context(cafile=harness.certs()["ca"])
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((LOOPBACK, port), timeout=T(5)) as s:
        with ctx.wrap_socket(s, server_hostname=server_name) as t:
            der = t.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem, capture_output=True,
                         text=True, check=True).stdout
    return re.search(r"CN\s*=\s*(.*)", out).group(1).strip()


def client_cert(d):
    """A client certificate (clientAuth) signed by the harness CA, for
    listeners with tls.ca: returns (cert, key) paths."""
    ca = harness.certs()
    os.makedirs(d, exist_ok=True)
    ext = os.path.join(d, "client.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
    for args in (["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=lbd-client"],
                 ["x509", "-req", "-in", "client.csr", "-CA", ca["ca"], "-CAkey",
                  os.path.join(os.path.dirname(ca["ca"]), "ca.key"), "-CAcreateserial",
                  "-CAserial", os.path.join(d, "ca.srl"), "-out", "client.crt", "-days", "2",
                  "-extfile", ext]):
        subprocess.run(["openssl"] + args, cwd=d, check=True, capture_output=True, timeout=T(30))
    return os.path.join(d, "client.crt"), os.path.join(d, "client.key")


def resume_twice(test, port, request, cert, key):
    """Two connections to port with a client certificate, the second resuming
    the first's session, for TLS 1.2 and 1.3: both answer and the second is
    resumed (an unset session id context made OpenSSL fail it with
    internal_error)."""
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.create_default_context(cafile=harness.certs()["ca"])
        ctx.load_cert_chain(cert, key)
        ctx.maximum_version = version
        session = None
        for i in range(2):
            with socket.create_connection((LOOPBACK, port), timeout=T(5)) as s:
                with ctx.wrap_socket(s, server_hostname="localhost", session=session) as t:
                    t.sendall(request)
                    data = b""
                    while True:
                        d = t.recv(65536)
                        if not d:
                            break
                        data += d
                    test.assertTrue(data.startswith(b"HTTP/1.1 "), (version, i, data[:100]))
                    if i == 0:
                        # TLS 1.3: the ticket came after the handshake, with the answer.
                        session = t.session
                        test.assertIsNotNone(session)
                    else:
                        test.assertTrue(t.session_reused, "%s: session not resumed" % version)



class TlsFrontend(harness.TestCase):
    def start(self):
        self.api = self.start_apiserver("master-1", tls=False)
        c = harness.certs()
        d = self.path("tls")
        os.makedirs(d)
        self.cert, self.key = os.path.join(d, "vip.crt"), os.path.join(d, "vip.key")
        shutil.copy(c["cert"], self.cert)
        shutil.copy(c["key"], self.key)
        cfg = self.lbd_config([self.api], health={"type": "http"},
                              frontend={"mode": "tls", "tls": {"cert": self.cert, "key": self.key}})
        self.lbd = self.start_lbd(cfg, wait_up=["vip/master-1"])
        self.port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        return cfg

    def test_terminates_tls_for_a_plain_backend(self):
        self.start()
        ctx = ssl.create_default_context(cafile=harness.certs()["ca"])
        with socket.create_connection((LOOPBACK, self.port), timeout=T(5)) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                self.assertIn(t.version(), ("TLSv1.2", "TLSv1.3"))
                t.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while True:
                    d = t.recv(65536)
                    if not d:
                        break
                    data += d
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:100])
        self.assertIn(b"x-backend: master-1", data.lower())

    def test_big_body_and_half_close(self):
        self.start()
        body = os.urandom(3 * 1024 * 1024)
        ctx = ssl.create_default_context(cafile=harness.certs()["ca"])
        with socket.create_connection((LOOPBACK, self.port), timeout=T(20)) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                t.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)
                data = b""
                while True:
                    d = t.recv(1 << 16)
                    if not d:
                        break
                    data += d
        head, _, got = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:200])
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(body).hexdigest())

    def test_old_protocols_refused(self):
        self.start()
        for flag in ("-tls1", "-tls1_1"):
            r = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (LOOPBACK, self.port),
                                flag, "-cipher", "DEFAULT@SECLEVEL=0"],
                               input="", capture_output=True, text=True, timeout=T(10))
            self.assertNotEqual(r.returncode, 0, "%s was accepted:\n%s" % (flag, r.stdout[-500:]))
        # The server saw the attempts and refused them (not only our client).
        wait_for(lambda: re.search(r'lbd_frontend_tls_handshake_failures_total\{frontend="vip"\} [1-9]',
                                   self.metrics()), T(5), "lbd counted the refused handshakes")

    def metrics(self):
        r = subprocess.run(["curl", "-sS", "--unix-socket", self.path("admin.sock"), "http://lbd/metrics"],
                           capture_output=True, text=True, timeout=T(5))
        return r.stdout

    def test_sighup_rereads_the_certificate_and_refuses_a_broken_one(self):
        self.start()
        self.assertEqual(peer_cert_cn(self.port), "lbd-test")
        other = harness.make_certs(self.path("other"), cn="lbd-renewed")
        shutil.copy(other["cert"], self.cert)
        shutil.copy(other["key"], self.key)
        mark = self.lbd.log.mark()
        self.lbd.send_signal(signal.SIGHUP)
        self.lbd.log.wait(r"reload: applied", T(10), since=mark)
        self.assertEqual(peer_cert_cn(self.port), "lbd-renewed")
        # A key that does not match: refused, the running certificate stays.
        shutil.copy(harness.certs()["key"], self.key)
        mark = self.lbd.log.mark()
        self.lbd.send_signal(signal.SIGHUP)
        self.lbd.log.wait(r"reload: refused.*(does not match|mismatch)", T(10), since=mark)
        self.assertEqual(peer_cert_cn(self.port), "lbd-renewed")

    def test_sni_picks_the_certificate(self):
        """tls.certs: a client asking for api.example.test gets that
        certificate; without SNI, or for another name, the default one."""
        d = self.path("sni")
        os.makedirs(d)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "sni.key", "-out",
                        "sni.crt", "-days", "2", "-subj", "/CN=lbd-sni",
                        "-addext", "subjectAltName=DNS:api.example.test"],
                       cwd=d, check=True, capture_output=True, timeout=T(30))
        api = self.start_apiserver("master-1", tls=False)
        c = harness.certs()
        cfg = self.lbd_config([api], health={"type": "http"},
                              frontend={"mode": "tls", "tls": {
                                  "cert": c["cert"], "key": c["key"],
                                  "certs": [{"cert": os.path.join(d, "sni.crt"),
                                             "key": os.path.join(d, "sni.key")}]}})
        self.start_lbd(cfg, wait_up=["vip/master-1"])
        port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        self.assertEqual(peer_cert_cn(port, "api.example.test"), "lbd-sni")
        self.assertEqual(peer_cert_cn(port, "localhost"), "lbd-test")
        self.assertEqual(peer_cert_cn(port), "lbd-test")

    def test_session_resumption_with_client_certificates(self):
        """tls.ca set: a client resuming its session is served (a frontend
        and the admin TCP listener, which share common/tls.c)."""
        cert, key = client_cert(self.path("client"))
        api = self.start_apiserver("master-1", tls=False)
        c = harness.certs()
        aport = harness.free_port()
        tok = self.path("token")
        with open(tok, "w") as f:
            f.write("s3cret-token\n")
        os.chmod(tok, 0o600)
        tls = {"cert": c["cert"], "key": c["key"], "ca": c["ca"]}
        cfg = self.lbd_config([api], health={"type": "http"}, frontend={"mode": "tls", "tls": tls})
        cfg["admin"].update({"listen": "127.0.0.1:%d" % aport, "token_file": tok, "tls": tls})
        lbd = self.start_lbd(cfg, wait_up=["vip/master-1"])
        lbd.log.wait(r"admin listener: listening", T(5), proc=lbd)
        port = int(cfg["frontends"][0]["listen"][0].rsplit(":", 1)[1])
        resume_twice(self, port, b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     cert, key)
        resume_twice(self, aport, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Authorization: Bearer s3cret-token\r\n\r\n", cert, key)
        self.assertNotIn("internal error", lbd.log.text().lower())

    def test_missing_certificate_is_a_config_error(self):
        cfg = self.lbd_config([("m", "127.0.0.1:1")], frontend={"mode": "tls"})
        path = self.write_config(cfg)
        rc, out = self.lbd_check(path)
        self.assertEqual(rc, 1)
        self.assertRegex(out, r"lbd.yaml:\d+:\d+: .*tls")


if __name__ == "__main__":
    unittest.main()
