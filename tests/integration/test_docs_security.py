"""test_docs_security.py - SECURITY.md's promises table cites tests that exist.

The table under "## Promises and their tests" has one row per promise; its last
column cites tests as `FILE::TEST` (a Python test method `def TEST(`, or a Check
test `START_TEST(TEST)`) or `FILE` alone (a fuzz harness, a corpus input, the CI
script). Every promise cites at least one test, every cited file exists, every
cited test is defined in it, and the promises are numbered 1..N in order. No
process is started.
"""

import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SECURITY = os.path.join(harness.ROOT, "SECURITY.md")
CITE = re.compile(r"`((?:tests|\.ci)/[\w./-]+?)(?:::(\w+))?`")


def promise_rows(text):
    """[(number, promise, tests cell)] of the promises table."""
    m = re.search(r"^## Promises and their tests\n(.*?)(?=^## )", text, re.M | re.S)
    if not m:
        raise AssertionError("SECURITY.md has no '## Promises and their tests' section")
    rows = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 3 and cells[0].isdigit():
            rows.append((int(cells[0]), cells[1], cells[-1]))
    return rows


def defines(path, name):
    with open(path, errors="replace") as f:
        src = f.read()
    if path.endswith(".py"):
        return re.search(r"^\s*def %s\(" % re.escape(name), src, re.M) is not None
    return re.search(r"^START_TEST\(%s\)" % re.escape(name), src, re.M) is not None


class TestSecurityTable(unittest.TestCase):
    def setUp(self):
        with open(SECURITY) as f:
            self.text = f.read()
        self.rows = promise_rows(self.text)

    def test_one_table_numbered_in_order(self):
        self.assertGreaterEqual(len(self.rows), 10, "the promises table lost its rows")
        self.assertEqual([r[0] for r in self.rows], list(range(1, len(self.rows) + 1)),
                         "promises numbered 1..N, in order")
        section = re.search(r"^## Promises and their tests\n(.*?)(?=^## )", self.text,
                            re.M | re.S).group(1)
        headers = [l for l in section.splitlines() if re.match(r"^\|\s*#\s*\|", l)]
        self.assertEqual(len(headers), 1, "one table of promises and tests")

    def test_every_promise_cites_existing_tests(self):
        missing = []
        for num, promise, tests in self.rows:
            cites = CITE.findall(tests)
            if not cites:
                missing.append("promise %d cites no test (FILE::TEST or FILE)" % num)
            for path, name in cites:
                full = os.path.join(harness.ROOT, path)
                if not os.path.exists(full):
                    missing.append("promise %d: %s does not exist" % (num, path))
                elif name and not defines(full, name):
                    missing.append("promise %d: %s defines no test %s" % (num, path, name))
        self.assertEqual(missing, [], "SECURITY.md cites what is not there:\n" +
                         "\n".join(missing))

    def test_parser_sees_a_bad_citation(self):
        """The checks above are not vacuous: a made-up test is caught."""
        rows = promise_rows("## Promises and their tests\n\n| # | P | T |\n|---|---|---|\n"
                            "| 1 | x | `tests/unit/test_orch.c::no_such_test` |\n\n## Next\n")
        self.assertEqual(len(rows), 1)
        (path, name), = CITE.findall(rows[0][2])
        self.assertFalse(defines(os.path.join(harness.ROOT, path), name))
        self.assertTrue(defines(os.path.join(harness.ROOT, path), "test_dry_run_300_nodes"))


if __name__ == "__main__":
    unittest.main()
