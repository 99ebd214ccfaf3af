"""harness.py - shared helpers for lbd's integration tests (real processes).

Everything here listens on 127.0.0.1 (or ::1 when a test asks for it) on
ephemeral ports, writes into a temp dir per test, and kills every process it
started, by PID, in tearDown and again at exit. Waits are polls with a bound
and a name (wait_for / LogFile.wait), never bare sleeps used as assertions.

    class T(harness.TestCase):
        def test_x(self):
            m = self.start_apiserver("master-1")
            lbd = self.start_lbd(self.lbd_config(backends=[m]))
            ...

Environment: LBD_BUILD (default "build") holds lbd; SAN set and not empty
(sanitizer build) multiplies every timeout by 3; LBD_TEST_TMP is where the
run's temp dir goes (default $TMPDIR or /tmp); LBD_KEEP_TMP=1 keeps it (logs
of every process) after the run; LBD_TEST_VERBOSE=1 prints measurements.
"""

import atexit
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("LBD_BUILD", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
LBD = os.path.join(BUILD, "lbd")
APISERVER = os.path.join(ROOT, "tests", "sim", "apiserver.py")
HEALTH_TOKEN = "lbd-test-health-token-0123456789"  # start_apiserver(profile="k3s") wants it
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SLOW = 3.0 if os.environ.get("SAN") else 1.0


def rss_kb(pid):
    """A process's resident set, KiB (0 if /proc does not say)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


LOOPBACK = "127.0.0.1"

_run_dir = None
_run_lock = threading.Lock()


def T(seconds):
    """A timeout, scaled for sanitizer builds."""
    return seconds * SLOW


def run_dir():
    """The temp area of this test run (certs live here), removed at exit."""
    with _run_lock:
        return run_dir_unlocked()


def _cleanup_run_dir():
    kill_all()
    if _run_dir and not os.environ.get("LBD_KEEP_TMP"):
        shutil.rmtree(_run_dir, ignore_errors=True)


# --------------------------------------------------------------------------
# What the tests need: a failure when it is missing, a skip only for a
# capability this machine lacks.
#
# A binary of the build, a verb of lbctl, or a program from a Debian package
# that `make deps` installs is never a reason to skip: a broken build or an
# incomplete setup would otherwise turn a suite green. Only what a machine may
# lawfully lack (root, network namespaces, IPv6 loopback, a kernel feature)
# skips, and the skip says which capability.


class Missing(AssertionError):
    """Something the tests need is not there (the build, or `make deps`)."""


def require_binary(path, what):
    """path, if it is an executable; else the test fails, naming what to do.
    path may be a bare name, looked up in PATH."""
    found = path if os.sep in path else shutil.which(path)
    if not found or not os.access(found, os.X_OK):
        raise Missing("%s is missing: %s (a test needs it; it is not a reason to skip)"
                      % (path, what))
    return found


def require_verb(binary, *verb):
    """`binary VERB... --help` must succeed: the verb a suite tests exists."""
    require_binary(binary, "run make")
    r = subprocess.run([binary] + list(verb) + ["--help"], capture_output=True, text=True,
                       timeout=T(10))
    if r.returncode != 0:
        raise Missing("%s %s --help exited %d: the verb under test is broken or gone\n%s"
                      % (binary, " ".join(verb), r.returncode, (r.stdout + r.stderr)[-2000:]))


def dns_only_from_resolv_conf():
    """Whether glibc looks names up in /etc/hosts and then through the
    servers of /etc/resolv.conf only (no nscd, systemd-resolved, mDNS)."""
    if os.path.exists("/var/run/nscd/socket"):
        return False
    try:
        with open("/etc/nsswitch.conf") as f:
            for line in f:
                words = line.split("#", 1)[0].split()
                if words and words[0] == "hosts:":
                    return all(w in ("files", "dns", "myhostname") for w in words[1:])
    except OSError:
        return True  # glibc's default without the file: dns, files
    return True


def skip_capability(capability, why=""):
    """Skips the test: this machine lacks a system capability (never a
    package or a build product)."""
    raise unittest.SkipTest("missing system capability: %s%s" % (capability,
                                                                 ": " + why if why else ""))


# --------------------------------------------------------------------------
# Waiting


def note(fmt, *args):
    """A measurement worth seeing: printed when LBD_TEST_VERBOSE is set."""
    if os.environ.get("LBD_TEST_VERBOSE"):
        sys.stderr.write("  [note] " + (fmt % args if args else fmt) + "\n")
        sys.stderr.flush()


class WaitTimeout(AssertionError):
    pass


def wait_for(predicate, timeout, what, interval=0.02):
    """Polls predicate() until it returns a truthy value, which is returned.
    Raises WaitTimeout naming `what` (and the last exception, if any) after
    timeout seconds (already scaled: pass T(x) or a plain number)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
            last_exc = None
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (timeout, what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            raise WaitTimeout(msg)
        time.sleep(interval)


LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z ")


def log_time(line):
    """The wall-clock time (epoch seconds) at the head of an lbd log line, or None."""
    m = LOG_TS.match(line)
    if not m:
        return None
    ts = m.group(1)
    fmt = "%Y-%m-%dT%H:%M:%S.%f" if "." in ts else "%Y-%m-%dT%H:%M:%S"
    return datetime.datetime.strptime(ts, fmt).replace(tzinfo=datetime.timezone.utc).timestamp()


class LogFile:
    """A log file another process writes. mark() remembers where it ends now;
    wait() looks for a regex in what was written after a mark."""

    def __init__(self, path):
        self.path = path

    def text(self, since=0):
        try:
            with open(self.path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def mark(self):
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0

    def lines(self, since=0):
        return self.text(since).splitlines()

    def find(self, regex, since=0):
        """The first whole line after `since` matching regex, or None."""
        r = re.compile(regex)
        for line in self.lines(since):
            if r.search(line):
                return line
        return None

    def wait(self, regex, timeout, since=0, what=None, proc=None):
        """Waits for a line matching regex after `since`; returns the line.
        If proc (a Proc) dies meanwhile, fails at once with its log tail."""
        exited = []

        def found():
            if proc is not None and proc.poll() is not None:
                line = self.find(regex, since)
                if line:
                    return line
                exited.append(proc.poll())
                return True  # stop waiting: it never will
            return self.find(regex, since)
        try:
            line = wait_for(found, timeout, what or "log line /%s/ in %s" % (regex, self.path))
        except WaitTimeout as e:
            raise WaitTimeout("%s; log tail:\n%s" % (e, self.tail(since))) from None
        if exited:
            raise AssertionError("%s exited (%s) before logging /%s/; log tail:\n%s" % (
                proc.name, exited[0], regex, self.tail(since)))
        return line

    def tail(self, since=0, n=40):
        return "\n".join("    " + l for l in self.lines(since)[-n:])


def log_wait(path, regex, timeout, since=0):
    """Waits for regex in the file at path (written after byte offset since)."""
    return LogFile(path).wait(regex, timeout, since)


# --------------------------------------------------------------------------
# Ports and addresses


def free_port(host=LOOPBACK):
    """An ephemeral TCP port free on host right now (the kernel picks it)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def addr_text(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def port_open(host, port, timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# Certificates


_certs = None


def certs():
    """A CA and a server cert for 127.0.0.1, ::1 and localhost, made once per
    run with the openssl CLI. Returns dict(ca=, cert=, key=) paths."""
    global _certs
    with _run_lock:
        if _certs is None or not all(os.path.exists(p) for p in _certs.values()):
            _certs = make_certs(os.path.join(run_dir_unlocked(), "certs"))
        return _certs


def run_dir_unlocked():
    global _run_dir
    if _run_dir is None:
        _run_dir = tempfile.mkdtemp(prefix="lbd-it-", dir=os.environ.get("LBD_TEST_TMP"))
        atexit.register(_cleanup_run_dir)
    # Someone else's clean-up of /tmp may have removed it under us: recreate it.
    os.makedirs(_run_dir, mode=0o700, exist_ok=True)
    return _run_dir


def make_certs(d, cn="lbd-test"):
    """Creates d/{ca.crt,ca.key,server.crt,server.key} unless already there."""
    os.makedirs(d, exist_ok=True)
    out = {"ca": os.path.join(d, "ca.crt"), "cert": os.path.join(d, "server.crt"),
           "key": os.path.join(d, "server.key")}
    if all(os.path.exists(p) for p in out.values()):
        return out

    def ossl(*args):
        r = subprocess.run(["openssl"] + list(args), cwd=d, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr.strip()))

    ext = os.path.join(d, "server.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes,"
                "DNS:kubernetes.default.svc\n")
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=%s CA" % cn)
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=%s" % cn)
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "30", "-extfile", ext)
    os.chmod(out["key"], 0o600)
    return out


# --------------------------------------------------------------------------
# Processes


_procs = []  # every Proc ever started, for the atexit sweep
_procs_lock = threading.Lock()


class Proc:
    """A child process with its PID recorded and its stderr in a file.
    Started in its own session so a terminal's Ctrl-C reaches only us and we
    stop it in order; stop() signals it by PID and waits, bounded."""

    def __init__(self, name, argv, log_path, cwd=None, env=None, stdout=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log = LogFile(log_path)
        self._err = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=stdout if stdout is not None else self._err,
                                      stderr=self._err, cwd=cwd, env=env, start_new_session=True)
        self.pid = self.popen.pid
        self.killed = False  # stop() had to SIGKILL it
        with _procs_lock:
            _procs.append(self)

    def poll(self):
        return self.popen.poll()

    def alive(self):
        return self.popen.poll() is None

    def send_signal(self, sig):
        if self.popen.poll() is None:
            if sig == signal.SIGKILL:
                self.killed = True  # asked for: not a crash
            os.kill(self.pid, sig)

    def wait(self, timeout):
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """sig by PID, wait up to timeout, then SIGKILL the PID and its
        process group (which we created, so it holds only its children).
        Returns the exit status."""
        timeout = T(5) if timeout is None else timeout
        if self.popen.poll() is None:
            if sig == signal.SIGKILL:
                self.killed = True  # asked for: not a crash
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait(timeout) is None:
                self.killed = True
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(T(5))
        # Leftover children in its group (nginx workers after a SIGKILL).
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._err.close()
        except OSError:
            pass
        return self.popen.returncode


def kill_all():
    with _procs_lock:
        procs = list(_procs)
    for p in reversed(procs):
        try:
            p.stop(timeout=2)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# --------------------------------------------------------------------------
# YAML


def to_yaml(obj, indent=0):
    """A small YAML writer for config dicts (strings quoted, lists block style).
    Deterministic and dependency-free, so line:col in lbd's errors are stable."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 1)))
            else:
                out.append("%s%s: %s\n" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                inner = to_yaml(v, indent + 1)
                out.append("%s- %s" % (pad, inner[len(pad) + 2:]))
            else:
                out.append("%s- %s\n" % (pad, _scalar(v)))
    else:
        out.append(pad + _scalar(obj) + "\n")
    return "".join(out)


def _scalar(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[]"
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


# --------------------------------------------------------------------------
# Backends


class Apiserver:
    """A running tests/sim/apiserver.py."""

    def __init__(self, proc, name, host, port, control_port, tls):
        self.proc, self.name, self.host, self.port = proc, name, host, port
        self.control_port, self.tls = control_port, tls

    @property
    def address(self):
        return addr_text(self.host, self.port)

    def control(self, route, method="POST"):
        c = http.client.HTTPConnection(LOOPBACK, self.control_port, timeout=T(5))
        try:
            c.request(method, route)
            r = c.getresponse()
            body = r.read()
            if r.status != 200:
                raise AssertionError("%s control %s %s: %d %s" % (self.name, method, route, r.status, body))
            return json.loads(body)
        finally:
            c.close()

    def fail(self):
        return self.control("/fail")

    def hang(self):
        return self.control("/hang")

    def ok(self):
        return self.control("/ok")

    def stats(self):
        return self.control("/stats", "GET")

    def requests(self, path):
        return self.stats()["requests"].get(path, 0)


class Nginx:
    """A running Debian nginx serving TLS on one port: /readyz is 200 "ok"
    unless the flag file exists (then 503); everything else answers the
    backend's name with an X-Backend header."""

    def __init__(self, name, prefix, port, tls):
        self.name, self.prefix, self.port, self.tls = name, prefix, port, tls
        self.host = LOOPBACK
        self.flag = os.path.join(prefix, "fail")
        self.conf = os.path.join(prefix, "nginx.conf")
        self.pidfile = os.path.join(prefix, "nginx.pid")
        self.proc = None

    @property
    def address(self):
        return addr_text(self.host, self.port)

    def fail(self):
        open(self.flag, "w").close()

    def ok(self):
        try:
            os.unlink(self.flag)
        except FileNotFoundError:
            pass

    def write_conf(self):
        c = certs()
        for d in ("tmp", "logs"):
            os.makedirs(os.path.join(self.prefix, d), exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""
        listen = "listen %s:%d%s;" % (self.host, self.port, " ssl" if self.tls else "")
        tls = ("ssl_certificate %s;\n        ssl_certificate_key %s;\n" % (c["cert"], c["key"])
               if self.tls else "")
        p = self.prefix
        with open(self.conf, "w") as f:
            f.write("""%(user)sworker_processes 1;
error_log %(p)s/logs/error.log info;
events { worker_connections 512; }
http {
    access_log %(p)s/logs/access.log;
    client_body_temp_path %(p)s/tmp/body;
    proxy_temp_path %(p)s/tmp/proxy;
    fastcgi_temp_path %(p)s/tmp/fastcgi;
    uwsgi_temp_path %(p)s/tmp/uwsgi;
    scgi_temp_path %(p)s/tmp/scgi;
    default_type text/plain;
    keepalive_timeout 5s;
    server {
        %(listen)s
        %(tls)s
        add_header X-Backend %(name)s always;
        location = /readyz {
            if (-f %(flag)s) { return 503 "[+]ping ok\\n[-]etcd failed: reason withheld\\nreadyz check failed\\n"; }
            return 200 "ok";
        }
        location / { return 200 "%(name)s\\n"; }
    }
}
""" % dict(user=user, p=p, listen=listen, tls=tls, name=self.name, flag=self.flag))


# --------------------------------------------------------------------------
# Clients


def client_tls_context(verify=False):
    ctx = ssl.create_default_context(cafile=certs()["ca"]) if verify else ssl._create_unverified_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def http_get(host, port, path="/", tls=True, timeout=5.0, method="GET", body=None, headers=None):
    """One request on a new connection. Returns (status, headers dict with
    lower-case names, body bytes)."""
    if tls:
        c = http.client.HTTPSConnection(host, port, timeout=timeout, context=client_tls_context())
    else:
        c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: lbd's admin socket."""

    def __init__(self, path, timeout=5.0):
        super().__init__("lbd", timeout=timeout)
        self.sock_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.sock_path)
        except OSError:
            s.close()
            raise
        self.sock = s


def admin_request(sock, method, path, body=None, raw=None, timeout=None):
    """One admin request on the unix socket at sock: (status, headers dict
    with lower-case names, parsed JSON or text). The body must be UTF-8."""
    c = UnixHTTPConnection(sock, timeout=timeout or T(5))
    try:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        text = r.read().decode()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed
    finally:
        c.close()


class Loop:
    """Calls fn() again and again on a thread, interval seconds apart, until
    stop(); counts the calls that returned and keeps those that raised
    (time, repr) in errors. fn's return values go to results when keep is set."""

    def __init__(self, name, fn, interval=0.05, keep=False):
        self.name, self.fn, self.interval, self.keep = name, fn, interval, keep
        self.ok = 0
        self.errors = []
        self.results = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                v = self.fn()
                self.ok += 1
                if self.keep:
                    self.results.append(v)
            except Exception as e:  # noqa: BLE001 - recorded for the assertion
                self.errors.append((time.monotonic(), repr(e)))
            self._stop.wait(self.interval)

    def stop(self, timeout=None):
        self._stop.set()
        self.thread.join(T(30) if timeout is None else timeout)
        return self


# --------------------------------------------------------------------------
# /proc


def proc_cpu_seconds(pid):
    """utime + stime of the process pid (every thread), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_children(pid):
    """PIDs whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


def proc_fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_nofile(pid):
    """(soft, hard) RLIMIT_NOFILE of pid, from /proc/PID/limits."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no 'Max open files' in /proc/%d/limits" % pid)


# --------------------------------------------------------------------------
# The test case


class TestCase(unittest.TestCase):
    """A test with its own temp dir and processes, all stopped in tearDown."""

    def setUp(self):
        super().setUp()
        # Short: the admin socket lives here and a unix socket path is at most 107 bytes.
        self.tmp = tempfile.mkdtemp(prefix=self.id().rsplit(".", 1)[-1][5:29] + "-", dir=run_dir())
        self.procs = []
        self.addCleanup(self._stop_procs)

    def _stop_procs(self):
        for p in reversed(self.procs):
            p.stop()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def spawn(self, name, argv, **kw):
        p = Proc(name, argv, self.path(name + ".log"), **kw)
        self.procs.append(p)
        return p

    # -- apiserver.py

    def start_apiserver(self, name, port=None, tls=True, mode="ok", host=LOOPBACK, wait=True,
                        profile="k3s"):
        """profile k3s (the default, the stricter): /readyz, /livez and /healthz
        need HEALTH_TOKEN, which lbd_config's checks send (health.token_file);
        kubeadm: they answer anyone."""
        port = port or free_port(host)
        control = free_port()
        argv = [PYTHON, APISERVER, "--name", name, "--listen", addr_text(host, port),
                "--control", addr_text(LOOPBACK, control), "--mode", mode]
        if profile == "k3s":
            argv += ["--health-token", HEALTH_TOKEN]
        if tls:
            c = certs()
            argv += ["--cert", c["cert"], "--key", c["key"]]
        p = self.spawn(name, argv)
        a = Apiserver(p, name, host, port, control, tls)
        if wait:
            self.wait_apiserver(a)
        return a

    def wait_apiserver(self, a):
        def up():
            if a.proc.poll() is not None:
                raise AssertionError("%s exited: %s" % (a.name, a.proc.log.tail()))
            return port_open(a.host, a.port) and port_open(LOOPBACK, a.control_port)
        wait_for(up, T(10), "%s listening on %s" % (a.name, a.address))

    def restart_apiserver(self, a, mode="ok"):
        """Starts a stopped Apiserver again on the same ports."""
        argv = list(a.proc.argv)
        argv[argv.index("--mode") + 1] = mode
        a.proc = self.spawn(a.name, argv)
        self.wait_apiserver(a)
        return a

    # -- nginx

    def start_nginx(self, name, port=None, tls=True):
        port = port or free_port()
        prefix = self.path("nginx-" + name)
        os.makedirs(prefix, exist_ok=True)
        n = Nginx(name, prefix, port, tls)
        n.write_conf()
        self._run_nginx(n)
        return n

    def _run_nginx(self, n):
        argv = ["nginx", "-c", n.conf, "-p", n.prefix + "/", "-e", os.path.join(n.prefix, "logs", "error.log"),
                "-g", "daemon off; pid %s;" % n.pidfile]
        n.proc = self.spawn("nginx-" + n.name, argv)
        wait_for(lambda: n.proc.poll() is None and port_open(n.host, n.port),
                 T(10), "nginx %s on %s (log: %s)" % (n.name, n.address, n.proc.log.tail()))

    def stop_nginx(self, n, graceful=True):
        """SIGQUIT (graceful, like `nginx -s quit`) or SIGTERM, waits for exit."""
        n.proc.stop(signal.SIGQUIT if graceful else signal.SIGTERM, timeout=T(10))

    def restart_nginx(self, n):
        self._run_nginx(n)

    # -- lbd

    def lbd_config(self, backends, name="vip", listen=None, health=None, frontend=None, pool=None,
                   extra=None):
        """A config dict: one frontend on an ephemeral loopback port in front
        of one pool with the given backends (Apiserver/Nginx objects, or
        (name, "host:port") pairs). Short check timings by default."""
        listen = listen or [addr_text(LOOPBACK, free_port())]
        h = {"type": "https", "path": "/readyz", "expect_status": 200, "interval": "300ms",
             "timeout": "200ms", "rise": 2, "fall": 2, "tls": {"verify": False},
             "token_file": self.health_token_file()}
        h.update(health or {})
        if h.get("type") == "tcp" or h.get("token_file") is None:
            h.pop("token_file", None)  # a tcp check sends no request; None: none wanted
        p = {"name": name, "balance": "round_robin",
             "backends": [self._backend_entry(b) for b in backends], "health": h}
        p.update(pool or {})
        fe = {"name": name, "listen": listen, "pool": name, "mode": "tcp", "max_connections": 1000,
              "timeouts": {"connect": "500ms", "idle": "30s"}, "retries": 2}
        fe.update(frontend or {})
        cfg = {"state_dir": self.path("state"), "log": {"format": "text", "level": "info"},
               "frontends": [fe], "pools": [p], "admin": {"socket": self.path("admin.sock")}}
        cfg.update(extra or {})
        return cfg

    def health_token_file(self):
        """A file holding HEALTH_TOKEN, for health.token_file (k3s's /readyz
        wants credentials)."""
        path = self.path("health.token")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(HEALTH_TOKEN + "\n")
            os.chmod(path, 0o600)
        return path

    @staticmethod
    def _backend_entry(b):
        if isinstance(b, tuple):
            return {"name": b[0], "address": b[1], "weight": 1}
        return {"name": b.name, "address": b.address, "weight": 1}

    def write_config(self, cfg, name="lbd.yaml"):
        path = self.path(name)
        os.makedirs(self.path("state"), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(cfg if isinstance(cfg, str) else to_yaml(cfg))
        os.rename(path + ".tmp", path)
        return path

    def start_lbd(self, cfg, wait_listening=True, wait_up=None, args=(), name="lbd"):
        """Writes cfg and runs `lbd -c` in the foreground (args: more options,
        such as ["-F"]); waits for each listen address's "listening on" line
        and, if wait_up lists backend names (POOL/NAME), for their UP lines.
        name names the process and its log (NAME.log): a second lbd in one
        test needs another name, or the first one's lines would match."""
        require_binary(LBD, "run make")
        path = self.write_config(cfg)
        p = self.spawn(name, self.resolver_argv([LBD, "-c", path] + list(args)), cwd=ROOT)
        p.config_path = path
        self.addCleanup(self.check_clean_exit, p)
        if wait_listening and not isinstance(cfg, str):
            for fe in cfg["frontends"]:
                for a in fe["listen"]:
                    p.log.wait(r"listening on %s" % re.escape(a), T(10), proc=p)
        for b in wait_up or []:
            p.log.wait(r"backend %s is UP" % re.escape(b), T(10), proc=p)
        return p

    SAN_MARKERS = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|"
                             r"ThreadSanitizer|Segmentation fault|Assertion .* failed")

    def check_clean_exit(self, p):
        """Stops lbd (SIGTERM) and fails the test if it crashed, exited
        non-zero on its own, or a sanitizer reported anything."""
        rc = p.stop(timeout=T(8))
        bad = self.SAN_MARKERS.search(p.log.text())
        if bad:
            self.fail("%s (pid %d): sanitizer/crash report in its log:\n%s" % (p.name, p.pid, p.log.tail(n=60)))
        if rc != 0 and not (p.killed and rc == -signal.SIGKILL):
            self.fail("%s (pid %d) exited with %s; log tail:\n%s" % (p.name, p.pid, rc, p.log.tail()))

    def lbd_check(self, path):
        """`lbd -t -c path`: returns (exit status, stdout+stderr)."""
        require_binary(LBD, "run make")
        r = subprocess.run(self.resolver_argv([LBD, "-t", "-c", path]), capture_output=True, text=True,
                           timeout=T(20), cwd=ROOT)
        return r.returncode, r.stdout + r.stderr

    # A test that makes lbd look up a name /etc/hosts lacks sets this: lbd then
    # runs in a mount namespace of its own whose /etc/resolv.conf names only
    # 127.0.0.1, so the lookup fails on loopback and no DNS query leaves the
    # machine (the network rules: loopback only). Same network, same PIDs.
    # A loopback address instead of True names the nameserver (a test's own
    # silent one, say), with the resolver's default retries.
    loopback_resolver = False

    def resolver_argv(self, argv):
        if not self.loopback_resolver:
            return argv
        require_binary("unshare", "util-linux")
        if not dns_only_from_resolv_conf():
            skip_capability("host lookups through /etc/resolv.conf only (nsswitch.conf 'hosts: "
                            "files dns', no nscd): another service would send the query on")
        conf = self.path("resolv.conf")
        if not os.path.exists(conf):
            with open(conf, "w") as f:
                if self.loopback_resolver is True:
                    f.write("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
                else:
                    f.write("nameserver %s\n" % self.loopback_resolver)
            probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "mount",
                                    "--bind", conf, "/etc/resolv.conf"], capture_output=True)
            if probe.returncode != 0:
                skip_capability("mount namespaces (unshare --mount; root): %s"
                                % probe.stderr.decode(errors="replace").strip())
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/resolv.conf && exec "$@"', conf] + list(argv)
