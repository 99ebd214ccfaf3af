"""test_docs.py - the documentation matches the code (issue 18).

Everything here is derived from the code, not from a frozen list, so a key,
verb or flag added later fails the test until it is documented:

- docs/config.md has one row per key of the config table (`lbd
  --dump-config-keys`, from config/config.c's field tables), with the same
  type, a default and a meaning, and no row for a key lbd does not know.
- README.md links only to files inside the repository, and every top-level
  directory it names exists.
- One port per listener: every gate/admin/metrics/frontend `listen` in the
  docs' YAML, the example configs and packaging/ uses the port of the table in
  docs/deploy.md.
- Every `lbctl ...` command in a shell block of README.md and docs/*.md parses
  with the current lbctl (LBCTL_PARSE_ONLY=1: verbs and flags are checked,
  nothing is sent): an unknown verb or flag fails.
- lbctl(8) and the bash completion name every verb of `lbctl --help` and every
  flag of each verb's `--help` (upgrade and migrate included); lbd(8) names
  every flag of `lbd -h` (-F included).
"""

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ROOT, T  # noqa: E402

LBCTL = os.path.join(harness.BUILD, "lbctl")
DOCS = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
README = os.path.join(ROOT, "README.md")
COMPLETION = os.path.join(ROOT, "packaging", "debian", "lbctl.bash-completion")


def read(path):
    with open(path) as f:
        return f.read()


def run(argv, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=T(20), env=e, cwd=ROOT)


def config_rows():
    """docs/config.md's table rows: {key: (type, default, meaning)}, and the
    keys that appear more than once."""
    rows, dups = {}, []
    for line in read(os.path.join(ROOT, "docs", "config.md")).splitlines():
        m = re.match(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$", line)
        if not m:
            continue
        cells = [c.strip() for c in m.group(2).split("|")]
        if len(cells) < 3:
            continue
        if m.group(1) in rows:
            dups.append(m.group(1))
        rows[m.group(1)] = (cells[0], cells[1], " | ".join(cells[2:]))
    return rows, dups


def fenced_blocks(text, langs):
    """The contents of the fenced blocks (```lang) whose language is in langs
    ("" for none), fences read in order, indented ones too."""
    out, cur, lang = [], None, None
    for line in text.splitlines():
        m = re.match(r"^\s*```\s*([\w-]*)\s*$", line)
        if m and cur is None:
            cur, lang = [], m.group(1)
        elif m and cur is not None and not m.group(1):
            if lang in langs:
                out.append("\n".join(cur) + "\n")
            cur = None
        elif cur is not None:
            cur.append(line)
    return out


def shell_blocks(text):
    return fenced_blocks(text, ("sh", "bash", "console", "shell", ""))


def lbctl_commands(text):
    """Every `lbctl ...` command line in the shell blocks of text, without
    comments, continuation lines joined, cut at a pipe or ;/&&/||."""
    cmds = []
    for block in shell_blocks(text):
        block = re.sub(r"\\\n\s*", " ", block)
        for line in block.splitlines():
            line = re.sub(r"^\s*(\$|#)\s+", "", line) if line.lstrip().startswith("$ ") else line
            # Split into commands at shell operators; keep those that run lbctl.
            for part in re.split(r"\s(?:&&|\|\||;|\|)\s", line):
                part = part.split(" #", 1)[0].strip()
                m = re.search(r"(?:^|\s|/)lbctl(\s.*)?$", part)
                if not m or part.startswith("#"):
                    continue
                # Only a command that runs lbctl (not "man lbctl" or a path).
                words = part.split()
                idx = next((i for i, w in enumerate(words) if w == "lbctl" or w.endswith("/lbctl")), None)
                if idx is None or (idx > 0 and not re.match(r"^(sudo|\w+=\S*|exec|watch)$", words[idx - 1])):
                    continue
                # A synopsis's optional parts ("[--dry-run]") are tried as written,
                # and each of its alternatives ("enable|disable").
                cmd = re.sub(r"[\[\]]", "", " ".join(words[idx:]))
                alt = re.search(r"(?<!\S)([\w-]+(?:\|[\w-]+)+)(?!\S)", cmd)
                choices = alt.group(1).split("|") if alt else [None]
                for ch in choices:
                    cmds.append(cmd if ch is None else cmd[:alt.start(1)] + ch + cmd[alt.end(1):])
    return cmds


class TestConfigReference(unittest.TestCase):

    def test_config_md_has_exactly_the_table_keys(self):
        harness.require_binary(harness.LBD, "run make")
        r = run([harness.LBD, "--dump-config-keys"])
        self.assertEqual(r.returncode, 0, r.stderr)
        table = dict(line.split("\t", 1) for line in r.stdout.splitlines() if line)
        self.assertGreater(len(table), 50)
        rows, dups = config_rows()
        self.assertEqual(dups, [], "keys with more than one row in docs/config.md")
        self.assertEqual(sorted(set(table) - set(rows)), [],
                         "keys of config/config.c missing from docs/config.md")
        self.assertEqual(sorted(set(rows) - set(table)), [],
                         "rows of docs/config.md for keys lbd does not know")
        for key, typ in table.items():
            doc_type, default, meaning = rows[key]
            self.assertEqual(doc_type, typ, "type of %s" % key)
            self.assertTrue(default, "default of %s" % key)
            self.assertGreater(len(meaning), 10, "meaning of %s" % key)


class TestReadme(unittest.TestCase):

    def test_links_stay_in_the_repository(self):
        text = read(README)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            self.assertNotRegex(target, r"^[a-z]+:", "README links outside the repository: " + target)
            path = os.path.normpath(os.path.join(ROOT, target.split("#", 1)[0]))
            self.assertTrue(path.startswith(ROOT + os.sep), "README link leaves the repository: " + target)
            self.assertTrue(os.path.exists(path), "README links to a missing file: " + target)

    def test_named_top_level_dirs_exist(self):
        text = read(README)
        for d in set(re.findall(r"(?<![\w/.-])`([a-z][\w-]*)/`", text)):
            self.assertTrue(os.path.isdir(os.path.join(ROOT, d)),
                            "README names a top-level dir that does not exist: %s/" % d)


class TestPorts(unittest.TestCase):
    """The port of each listener, as docs/deploy.md's table gives it, is the
    only one in the docs, the example configs and packaging/."""

    SECTIONS = {"gate": "gate.listen", "admin": "admin.listen", "metrics": "metrics.listen",
                "frontends": "frontends[].listen"}

    def table(self):
        ports = {}
        for line in read(os.path.join(ROOT, "docs", "deploy.md")).splitlines():
            m = re.match(r"^\|[^|]*\|\s*`([\w\[\].]+)`\s*\|\s*(\d+)\b", line)
            if m:
                ports[m.group(1)] = int(m.group(2))
        return ports

    @staticmethod
    def yaml_texts():
        """(name, text) of every YAML the operator reads: the examples, packaging/,
        and the yaml blocks of README.md and docs/*.md."""
        out = []
        files = glob.glob(os.path.join(ROOT, "config", "examples", "*.yaml"))
        files += glob.glob(os.path.join(ROOT, "packaging", "**", "*.yaml"), recursive=True)
        files += glob.glob(os.path.join(ROOT, "packaging", "**", "*.yml"), recursive=True)
        for f in files:
            out.append((os.path.relpath(f, ROOT), read(f)))
        for f in DOCS + [README]:
            for b in fenced_blocks(read(f), ("yaml", "yml")):
                out.append((os.path.relpath(f, ROOT), b))
        return out

    def test_one_port_per_listener(self):
        want = self.table()
        for key in self.SECTIONS.values():
            self.assertIn(key, want, "docs/deploy.md's port table lacks " + key)
        seen = []
        for name, text in self.yaml_texts():
            section = None
            for line in text.splitlines():
                # A commented-out example counts too: "# gate:", "#   listen: ...".
                body = line[2:] if line.startswith("# ") else line
                m = re.match(r"^([\w-]+):", body)
                if m:
                    section = m.group(1)
                # Flow style on one line: "metrics: {listen: ...}".
                for k, v in re.findall(r"\b(\w+):\s*\{[^}]*\blisten:\s*\[?\s*\"?[^\"\s,}]*:(\d+)", body):
                    seen.append((name, k, int(v), line))
                lm = re.match(r"^\s+(?:- )?(?:\{.*)?listen:\s*\[?\s*\"?[\w.\[\]:-]*:(\d+)", body)
                if lm and section in self.SECTIONS:
                    seen.append((name, section, int(lm.group(1)), line))
        self.assertTrue(any(s[1] == "gate" for s in seen), "no gate listen found: the scan is broken")
        bad = [s for s in seen if s[1] in self.SECTIONS and s[2] != want[self.SECTIONS[s[1]]]]
        self.assertEqual(bad, [], "listen ports that differ from docs/deploy.md's table")

    def test_urls_use_the_listener_ports(self):
        want = self.table()
        files = DOCS + [README] + glob.glob(os.path.join(ROOT, "packaging", "**", "*"), recursive=True)
        files += glob.glob(os.path.join(ROOT, "config", "examples", "*.yaml"))
        bad = []
        for f in files:
            if not os.path.isfile(f):
                continue
            try:
                text = read(f)
            except UnicodeDecodeError:
                continue
            for line in text.splitlines():
                for port in re.findall(r"https://[\w.\[\]:-]*?:(\d{4})\b", line):
                    port = int(port)
                    if "gate" in line.lower() and port not in (want["gate.listen"], 6443, 2379):
                        bad.append((f, line))
                    # lbctl --url, a plan's lbd.url, the admin listener's URL.
                    if ("--url" in line or "url:" in line or "admin" in line.lower()) \
                            and "gate" not in line.lower() \
                            and port not in (want["admin.listen"], 6443, 2379):
                        bad.append((f, line))
        self.assertEqual(bad, [])


class TestLbctlCommands(unittest.TestCase):

    def test_every_documented_lbctl_command_parses(self):
        harness.require_binary(LBCTL, "run make")
        cmds = []
        for f in [README] + DOCS:
            cmds += [(os.path.relpath(f, ROOT), c) for c in lbctl_commands(read(f))]
        self.assertGreater(len(cmds), 10, "the scan found almost no lbctl command")
        failed = []
        for where, c in cmds:
            try:
                argv = shlex.split(c)
            except ValueError as e:
                failed.append((where, c, "not shell: %s" % e))
                continue
            argv = [LBCTL] + [a for a in argv[1:] if not a.startswith("$(")]
            r = run(argv, env={"LBCTL_PARSE_ONLY": "1"})
            if r.returncode != 0:
                failed.append((where, c, (r.stdout + r.stderr).strip()[:200]))
        self.assertEqual(failed, [], "documented lbctl commands that do not parse")

    def test_parse_only_refuses_unknown_verbs_and_flags(self):
        harness.require_binary(LBCTL, "run make")
        env = {"LBCTL_PARSE_ONLY": "1"}
        self.assertEqual(run([LBCTL, "pools"], env).returncode, 0)
        self.assertEqual(run([LBCTL, "-o", "json", "backend", "drain", "vip", "a", "--wait"],
                             env).returncode, 0)
        self.assertEqual(run([LBCTL, "no-such-verb"], env).returncode, 2)
        self.assertEqual(run([LBCTL, "pools", "--no-such-flag"], env).returncode, 2)
        self.assertEqual(run([LBCTL, "backend", "drain", "vip", "a", "--bogus"], env).returncode, 2)


def help_words(text):
    """The verbs and --flags a --help text names."""
    return set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))


class TestManAndCompletion(unittest.TestCase):

    def verbs(self):
        r = run([LBCTL, "--help"])
        m = re.search(r"^VERBS\n(.*?)^\S", r.stdout, re.M | re.S)
        self.assertIsNotNone(m, r.stdout)
        return [l.split()[0] for l in m.group(1).splitlines() if l.strip()]

    def complete(self, *words):
        """What the bash completion offers for `lbctl WORDS...` (the last
        word is the one being completed)."""
        script = ("source /usr/share/bash-completion/bash_completion\n"
                  "source %s\n"
                  "COMP_WORDS=(lbctl %s); COMP_CWORD=%d; COMP_LINE='lbctl %s'; "
                  "COMP_POINT=${#COMP_LINE}\n"
                  "_lbctl; printf '%%s\\n' \"${COMPREPLY[@]}\"\n") % (
                      shlex.quote(COMPLETION), " ".join(shlex.quote(w) for w in words),
                      len(words), " ".join(words))
        r = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True,
                           timeout=T(20), cwd=self.tmp)
        return set(r.stdout.split())

    def setUp(self):
        harness.require_binary(LBCTL, "run make")
        if not os.path.exists("/usr/share/bash-completion/bash_completion"):
            raise harness.Missing("bash-completion is missing: make deps installs it")
        self.tmp = tempfile.mkdtemp(prefix="lbd-docs-")  # _filedir lists the cwd
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def verb_flags(self, verb):
        """The flags VERB --help names, with its sub-verbs' --help, and those sub-verbs."""
        text = run([LBCTL, "--socket", "/nonexistent", verb, "--help"]).stdout
        subs = set(re.findall(r"lbctl (?:\[[^\]]*\] |\.\.\. )*%s ([a-z][a-z-]*)" % re.escape(verb), text))
        for sub in subs:
            text += run([LBCTL, "--socket", "/nonexistent", verb, sub, "--help"]).stdout
        # "see lbctl reload --reset": another verb's flag, not this one's.
        text = re.sub(r"\blbctl ([a-z]+)((?: [a-z][\w-]*)*(?: --[a-z][\w-]*)+)",
                      lambda m: m.group(0) if m.group(1) == verb else "", text)
        return help_words(text) - {"--help"}, subs

    def test_lbctl_man_and_completion_name_every_verb_and_flag(self):
        man = read(os.path.join(ROOT, "packaging", "debian", "lbctl.8"))
        man_text = man.replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")
        verbs = self.verbs()
        self.assertIn("upgrade", verbs)
        self.assertIn("migrate", verbs)
        missing = []
        top = run([LBCTL, "--help"]).stdout
        at = top.find("\nGLOBAL OPTIONS")
        globals_ = help_words(top[at:]) if at >= 0 else set()
        offered = self.complete("--")
        for fl in sorted(globals_ - {"--help"}):
            if fl not in man_text:
                missing.append(("lbctl.8", fl))
            if fl not in offered:
                missing.append(("completion of lbctl --", fl))
        for v in verbs:
            if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(v), man_text):
                missing.append(("lbctl.8", v))
            if v not in self.complete(v[:2]):
                missing.append(("completion of lbctl %s" % v[:2], v))
            flags, subs = self.verb_flags(v)
            flags -= globals_
            offered = self.complete(v, "--")
            for sub in subs:
                offered |= self.complete(v, sub, "--")
                if sub not in self.complete(v, ""):
                    missing.append(("completion of lbctl %s" % v, sub))
            for fl in sorted(flags):
                if fl not in man_text:
                    missing.append(("lbctl.8", "%s %s" % (v, fl)))
                if fl not in offered:
                    missing.append(("completion of lbctl %s [SUB] --" % v, fl))
        self.assertEqual(missing, [], "named by lbctl --help / VERB --help but not documented")

    def test_lbd_man_names_every_flag(self):
        harness.require_binary(harness.LBD, "run make")
        r = run([harness.LBD, "-h"])
        man = read(os.path.join(ROOT, "packaging", "debian", "lbd.8")).replace("\\-", "-")
        flags = set(re.findall(r"^\s+(-[A-Za-z]|--[a-z][a-z-]*)\b", r.stdout, re.M))
        self.assertIn("-F", flags)
        missing = [f for f in sorted(flags) if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(f), man)]
        self.assertEqual(missing, [], "flags of lbd -h missing from lbd(8)")


if __name__ == "__main__":
    unittest.main()
