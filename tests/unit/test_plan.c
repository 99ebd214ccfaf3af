/* test_plan.c - plan loading, validation with file:line:col, templates; the
 * journal's round trip; exec's bounds. */
#include <check.h>

#include "tests/unit/unit.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "upgrade/exec.h"
#include "upgrade/journal.h"
#include "upgrade/plan.h"

static const char good_upgrade[] =
    "kind: upgrade\n"
    "version: v1.31.5+k3s1\n"
    "kubeconfig: /etc/rancher/k3s/k3s.yaml\n"
    "lbd: {socket: /run/lbd/admin.sock}\n"
    "pool: masters\n"
    "nodes:\n"
    "  - {name: m1, role: master, backend: master-1, host: root@192.0.2.11}\n"
    "  - {name: m2, role: master}\n"
    "  - {name: w1, role: worker, host: 192.0.2.21}\n"
    "upgrade_command: ssh {host} 'curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION={version} "
    "sh -'\n"
    "hooks: {preflight: 'k3s etcd-snapshot save --name pre-upgrade-{date}'}\n"
    "drain: {timeout: 90s, grace_period: 10, ignore_daemonsets: true, force: false}\n"
    "timeouts: {node_ready: 4m, backend_drain: 30s, command: 10m, gate: 1h}\n"
    "workers: {concurrency: 2}\n"
    "soak: 45s\n";

static struct plan load_ok(const char *text)
{
	struct plan p;
	struct plan_errors e;
	int rc = plan_load_string(text, strlen(text), "p.yaml", &p, &e);
	ck_assert_msg(rc == 0, "plan should load: %s", e.n ? e.msgs[0] : "?");
	return p;
}

/* Loads text, expects failure, returns all messages joined by newlines. */
static char *load_bad(const char *text)
{
	struct plan p;
	struct plan_errors e;
	int rc = plan_load_string(text, strlen(text), "p.yaml", &p, &e);
	ck_assert_msg(rc == -1, "plan should not load");
	size_t len = 1;
	for (size_t i = 0; i < e.n; i++)
		len += strlen(e.msgs[i]) + 1;
	char *all = calloc(1, len);
	for (size_t i = 0; i < e.n; i++) {
		strcat(all, e.msgs[i]);
		strcat(all, "\n");
	}
	plan_errors_free(&e);
	return all;
}

#define ck_assert_has(all, needle)                                                                 \
	ck_assert_msg(strstr((all), (needle)) != NULL, "missing \"%s\" in:\n%s", (needle), (all))

START_TEST(test_good_upgrade)
{
	struct plan p = load_ok(good_upgrade);
	ck_assert_int_eq(p.kind, PLAN_UPGRADE);
	ck_assert_str_eq(p.version, "v1.31.5+k3s1");
	ck_assert_str_eq(p.lbd_socket, "/run/lbd/admin.sock");
	ck_assert_uint_eq(p.nnodes, 3);
	ck_assert_str_eq(p.nodes[0].backend, "master-1");
	ck_assert_str_eq(p.nodes[0].host, "root@192.0.2.11");
	/* defaults: backend, host and etcd member are the node's name */
	ck_assert_str_eq(p.nodes[1].backend, "m2");
	ck_assert_str_eq(p.nodes[1].host, "m2");
	ck_assert_str_eq(p.nodes[1].etcd, "m2");
	ck_assert_int_eq(p.nodes[2].role, PLAN_WORKER);
	ck_assert_ptr_null(p.nodes[2].backend);
	ck_assert_int_eq(p.drain_timeout_ms, 90000);
	ck_assert_int_eq(p.grace_period_s, 10);
	ck_assert(p.ignore_daemonsets);
	ck_assert(!p.delete_emptydir_data);
	ck_assert_int_eq(p.t_node_ready_ms, 240000);
	ck_assert_int_eq(p.t_gate_ms, 3600000);
	ck_assert_int_eq(p.worker_concurrency, 2);
	ck_assert_int_eq(p.soak_ms, 45000);
	ck_assert_int_eq(p.lease_ttl_ms, 600000); /* default */
	ck_assert_ptr_nonnull(plan_node_find(&p, "w1"));
	ck_assert_ptr_null(plan_node_find(&p, "nope"));
	plan_free(&p);
}
END_TEST

START_TEST(test_good_migration)
{
	static const char text[] = "kind: migration\n"
				   "pool: masters\n"
				   "nodes:\n"
				   "  - {name: old, role: master}\n"
				   "  - {name: vm, role: master, address: '192.0.2.51:6443'}\n"
				   "  - {name: m2, role: master, address: 192.0.2.12:6443}\n"
				   "replace: [{old: old, new: vm}]\n"
				   "add: [m2]\n"
				   "join_command: ssh {host} join --as {new}\n"
				   "remove_command: ssh {host} k3s-uninstall.sh # {old}\n"
				   "etcd: {endpoints: [https://192.0.2.12:2379], ca: ca.crt}\n";
	struct plan p = load_ok(text);
	ck_assert_int_eq(p.kind, PLAN_MIGRATION);
	ck_assert_ptr_null(p.version);
	ck_assert_uint_eq(p.nreplace, 1);
	ck_assert_str_eq(p.replace[0].old_node, "old");
	ck_assert_str_eq(p.replace[0].new_node, "vm");
	ck_assert_uint_eq(p.nadd, 1);
	ck_assert_str_eq(p.add[0], "m2");
	ck_assert_str_eq(p.nodes[1].address, "192.0.2.51:6443");
	ck_assert_uint_eq(p.netcd_endpoints, 1);
	ck_assert_str_eq(p.etcd_ca, "ca.crt");
	plan_free(&p);
}
END_TEST

START_TEST(test_bad_plans)
{
	char *all;

	/* every error at once, each at its value, in file order */
	all = load_bad("kind: upgrade\n"
		       "version: 1.31\n"
		       "pool: masters\n"
		       "nodes:\n"
		       "  - {name: m1, role: boss}\n"
		       "  - {name: 'w;rm -rf /', role: worker}\n"
		       "  - {name: m1, role: master, colour: red}\n"
		       "upgrade_command: ssh {host} upgrade {verison}\n"
		       "drain: {timeout: soon, force: maybe}\n"
		       "workers: {concurrency: 0}\n"
		       "sock: 1m\n");
	ck_assert_has(all, "p.yaml:2:10: version: '1.31' is not a Kubernetes version");
	ck_assert_has(all, "p.yaml:5:22: nodes.role: expected master or worker, got 'boss'");
	ck_assert_has(all, "p.yaml:6:12: nodes.name: 'w;rm -rf /' is not a node name");
	ck_assert_has(all, "p.yaml:7:30: nodes: unknown key 'colour'");
	ck_assert_has(all, "p.yaml:7:12: nodes: m1 is listed twice (first at line 5)");
	ck_assert_has(all, "p.yaml:8:37: upgrade_command: unknown placeholder {verison}");
	ck_assert_has(all, "p.yaml:9:18: drain.timeout: 'soon' is not a duration");
	ck_assert_has(all, "p.yaml:9:31: drain.force: expected true or false, got 'maybe'");
	ck_assert_has(all,
		      "p.yaml:10:24: workers.concurrency: expected a whole number from 1 to 100");
	ck_assert_has(all, "p.yaml:11:1: unknown key 'sock'");
	ck_assert(strstr(all, "p.yaml:2:") < strstr(all, "p.yaml:11:"));
	free(all);

	/* missing essentials */
	all = load_bad("kind: upgrade\nnodes: []\n");
	ck_assert_has(all, "p.yaml:1:1: version: missing");
	ck_assert_has(all, "p.yaml:1:1: pool: missing");
	ck_assert_has(all, "p.yaml:1:1: upgrade_command: missing (lbctl never guesses");
	ck_assert_has(all, "p.yaml:2:8: nodes: empty");
	free(all);

	/* a placeholder with no value in that template */
	all =
	    load_bad("kind: upgrade\nversion: v1.31.0\npool: p\nnodes: [{name: a, role: worker}]\n"
		     "upgrade_command: \"x {node}\"\n"
		     "hooks: {preflight: \"snap {node}\"}\n");
	ck_assert_has(all, "p.yaml:6:26: hooks.preflight: {node} has no value here");
	free(all);

	/* migrations: cross-references */
	all = load_bad("kind: migration\npool: p\n"
		       "nodes:\n  - {name: a, role: master}\n  - {name: b, role: worker}\n"
		       "replace:\n  - {old: a, new: b}\n  - {old: zz, new: a}\n"
		       "add: [b]\n");
	ck_assert_has(all, "p.yaml:7:5: replace: a is a master but b is a worker");
	ck_assert_has(all, "p.yaml:7:5: replace: removing master a needs etcd.endpoints");
	ck_assert_has(all, "p.yaml:8:5: replace: old node zz is not in nodes");
	ck_assert_has(all, "p.yaml:4:5: nodes: a is a new master: give its backend address");
	ck_assert_has(all, "p.yaml:9:7: add: b is a worker");
	ck_assert_has(all, "p.yaml:1:1: remove_command: missing: a replace deletes the old node");
	free(all);

	/* upgrade-only and YAML syntax */
	all = load_bad("kind: upgrade\nversion: v1.31.0\npool: p\nnodes: [{name: a, role: "
		       "worker}]\nupgrade_command: x\nreplace: []\n");
	ck_assert_has(all, "p.yaml:6:10: replace: only in a plan of kind migration");
	free(all);
	all = load_bad("kind: upgrade\nnodes: [\n");
	ck_assert_has(all, "p.yaml:3:1: ");
	free(all);
	all = load_bad("");
	ck_assert_has(all, "p.yaml:1:1: empty plan");
	free(all);
	all = load_bad("kind: [upgrade]\nlbd: {url: https://x:1}\n");
	ck_assert_has(all, "p.yaml:1:7: kind: expected a string, got a list");
	ck_assert_has(all, "p.yaml:2:6: lbd: url needs token_file");
	free(all);
}
END_TEST

START_TEST(test_missing_file)
{
	struct plan p;
	struct plan_errors e;
	ck_assert_int_eq(plan_load("/nonexistent/plan.yaml", &p, &e), -1);
	ck_assert_uint_eq(e.n, 1);
	ck_assert_str_eq(e.msgs[0], "/nonexistent/plan.yaml: No such file or directory");
	plan_errors_free(&e);
}
END_TEST

START_TEST(test_expand)
{
	struct plan_vars v = {
	    .node = "m1", .host = "root@h1", .version = "v1.31.5+k3s1", .date = "20240501-103000"};
	char *err = NULL, *out;
	size_t off = 99;

	out = plan_expand("ssh {host} 'INSTALL_K3S_VERSION={version} sh' # {node} {date}", &v, &err,
			  NULL);
	ck_assert_str_eq(out, "ssh root@h1 'INSTALL_K3S_VERSION=v1.31.5+k3s1 sh' # m1 "
			      "20240501-103000");
	free(out);
	/* the shell's own ${...} and braces that are not placeholders stay */
	out = plan_expand("echo ${HOME} {} { node } {{node}} a{b", &v, &err, NULL);
	ck_assert_str_eq(out, "echo ${HOME} {} { node } {m1} a{b");
	free(out);
	ck_assert_ptr_null(plan_expand("x {nodes}", &v, &err, &off));
	ck_assert_uint_eq(off, 2);
	ck_assert_str_eq(err, "unknown placeholder {nodes} (known: {node}, {host}, {version}, "
			      "{date}, {old}, {new})");
	free(err);
	ck_assert_ptr_null(plan_expand("rm {old}", &v, &err, &off));
	ck_assert_str_eq(err, "{old} has no value here");
	free(err);
	out = plan_expand("", &v, &err, NULL);
	ck_assert_str_eq(out, "");
	free(out);
}
END_TEST

START_TEST(test_versions)
{
	int a, b, c;
	ck_assert_int_eq(plan_version_parse("v1.31.5+k3s1", &a, &b, &c), 0);
	ck_assert(a == 1 && b == 31 && c == 5);
	ck_assert_int_eq(plan_version_parse("1.30.0", &a, &b, &c), 0);
	ck_assert_int_eq(plan_version_parse("v1.30.0-rc.1", &a, &b, &c), 0);
	ck_assert_int_eq(plan_version_parse("v1.30", &a, &b, &c), -1);
	ck_assert_int_eq(plan_version_parse("v1.30.0;id", &a, &b, &c), -1);
	ck_assert_int_eq(plan_version_parse("vx.1.2", &a, &b, &c), -1);
}
END_TEST

START_TEST(test_journal_round_trip)
{
	char dir[] = "/tmp/test_plan.XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char plan[256], *err = NULL;
	snprintf(plan, sizeof(plan), "%s/plan.yaml", dir);
	FILE *f = fopen(plan, "w");
	fputs(good_upgrade, f);
	fclose(f);

	struct journal j, again;
	ck_assert_int_eq(journal_create(&j, plan, "upgrade", &err), 0);
	/* a second run of the same plan is locked out */
	ck_assert_int_eq(journal_create(&again, plan, "upgrade", &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "another lbctl is running this plan"));
	free(err);
	err = NULL;
	struct jstep *s1 = journal_add(&j, "m1", "lease", NULL);
	journal_add(&j, "m1", "drain", NULL);
	journal_add(&j, "w1", "lease", "already at v1.31.5+k3s1")->state = JS_SKIPPED;
	ck_assert_int_eq(journal_mark(&j, s1, JS_RUNNING, NULL, &err), 0);
	ck_assert_int_eq(journal_mark(&j, s1, JS_DONE, "granted", &err), 0);
	struct jstep *s2 = journal_find(&j, "m1", "drain");
	ck_assert_int_eq(journal_mark(&j, s2, JS_RUNNING, NULL, &err), 0);
	journal_close(&j);

	ck_assert(journal_exists(plan));
	ck_assert_int_eq(journal_load(&j, plan, true, &err), 0);
	ck_assert_uint_eq(j.n, 3);
	ck_assert_int_eq(j.steps[0].state, JS_DONE);
	ck_assert_int_eq(j.steps[0].runs, 1);
	ck_assert_str_eq(j.steps[0].note, "granted");
	ck_assert_int_eq(j.steps[1].state, JS_RUNNING);
	ck_assert_int_eq(j.steps[2].state, JS_SKIPPED);
	ck_assert_str_eq(j.status, "running");
	char *h = journal_hash_file(plan);
	ck_assert_str_eq(h, j.plan_hash);
	free(h);
	journal_close(&j);

	/* the history log has a timestamped line per change */
	char logp[300], line[512];
	int starts = 0, dones = 0;
	snprintf(logp, sizeof(logp), "%s.log", plan);
	f = fopen(logp, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		ck_assert_msg(line[4] == '-' && line[10] == 'T', "no timestamp: %s", line);
		starts += strstr(line, " m1 lease: start") != NULL;
		dones += strstr(line, " m1 lease: done") != NULL;
	}
	fclose(f);
	ck_assert_int_eq(starts, 1);
	ck_assert_int_eq(dones, 1);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static int nlines;
static void count_line(void *arg, const char *line)
{
	(void)arg;
	(void)line;
	nlines++;
}

START_TEST(test_exec)
{
	struct exec_result r;
	char buf[64];
	nlines = 0;
	ck_assert_int_eq(
	    exec_run("echo one; echo two >&2; exit 0", 5000, count_line, NULL, NULL, &r), 0);
	ck_assert_int_eq(nlines, 2);
	ck_assert_str_eq(r.output, "one\ntwo\n");
	exec_result_free(&r);
	ck_assert_int_eq(exec_run("echo bad; exit 3", 5000, NULL, NULL, NULL, &r), -1);
	ck_assert_int_eq(r.status, 3);
	ck_assert_str_eq(exec_result_str(&r, buf, sizeof(buf)), "exit status 3");
	exec_result_free(&r);
	ck_assert_int_eq(exec_run("sleep 30", 300, NULL, NULL, NULL, &r), -1);
	ck_assert(r.timed_out);
	ck_assert(r.elapsed_ms < 6000);
	exec_result_free(&r);
}
END_TEST

static bool stop_now(void *arg)
{
	(void)arg;
	return true;
}

static char last_line[4096];
static void keep_line(void *arg, const char *line)
{
	(void)arg;
	snprintf(last_line, sizeof(last_line), "%s", line);
}

/* A command's output is outside text: lines reach the callback clean, the
 * kept output keeps only its newlines and tabs. */
START_TEST(test_exec_dirty_output)
{
	struct exec_result r;

	ck_assert_int_eq(exec_run("printf 'ok\\r\\n\\033[2J\\tcaf\\303\\251 \\342\\202\\n'; exit 1",
				  5000, keep_line, NULL, NULL, &r),
			 -1);
	ck_assert_str_eq(last_line, "\xEF\xBF\xBD[2J caf\xC3\xA9 \xEF\xBF\xBD");
	ck_assert_str_eq(r.output, "ok\n\xEF\xBF\xBD[2J\tcaf\xC3\xA9 \xEF\xBF\xBD\n");
	exec_result_free(&r);
}
END_TEST

/* A detached job: recorded before it starts, its fate read back from its marker. */
static int started_calls, started_pid;
static int record_job(void *arg, const struct exec_job *job)
{
	started_calls++;
	started_pid = job->pid;
	ck_assert_uint_gt(job->start, 0); /* its keeper is there to be looked at */
	return arg ? -1 : 0;		  /* arg set: the journal write failed */
}

START_TEST(test_exec_job)
{
	char dir[] = "/tmp/lbd-job-XXXXXX", marker[128], out[128], flag[128], cmd[400], buf[128];
	struct exec_result r;
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(marker, sizeof(marker), "%s/m.exit", dir);
	snprintf(out, sizeof(out), "%s/m.out", dir);
	snprintf(flag, sizeof(flag), "%s/ran", dir);

	/* Runs, exit status to the marker, output to the file and the lines. */
	snprintf(cmd, sizeof(cmd), "echo one; echo two >&2; touch %s; exit 3", flag);
	struct exec_job job = {.cmd = cmd, .marker = marker, .output = out};
	nlines = 0;
	ck_assert_int_eq(exec_job_run(&job, 5000, record_job, count_line, NULL, NULL, &r), -1);
	ck_assert_int_eq(started_calls, 1);
	ck_assert_int_eq(started_pid, job.pid);
	ck_assert_int_eq(r.status, 3);
	ck_assert_int_eq(nlines, 2);
	ck_assert_str_eq(r.output, "one\ntwo\n");
	exec_result_free(&r);
	memset(&r, 0, sizeof(r));
	ck_assert_int_eq(exec_job_fate(&job, &r), EXEC_ENDED);
	ck_assert_int_eq(r.status, 3);
	/* Followed again later (a resume): the same answer, nothing run again. */
	ck_assert_int_eq(unlink(flag), 0);
	ck_assert_int_eq(exec_job_follow(&job, 5000, NULL, NULL, NULL, &r), -1);
	ck_assert_int_eq(r.status, 3);
	ck_assert_int_ne(access(flag, F_OK), 0);
	exec_result_free(&r);

	/* Not recorded, not started. */
	ck_assert_int_eq(exec_job_run(&job, 5000, record_job, NULL, NULL, (void *)1, &r), -1);
	exec_result_free(&r);
	ck_assert_int_eq(exec_job_fate(&job, &r), EXEC_NOT_STARTED);
	ck_assert_int_ne(access(flag, F_OK), 0);

	/* Still running after its follower stops following (Ctrl-C); then followed
	 * to its end by someone else; a reused pid is not taken for it. */
	snprintf(cmd, sizeof(cmd), "sleep 3; touch %s", flag);
	ck_assert_int_eq(exec_job_run(&job, 10000, NULL, NULL, stop_now, NULL, &r), -1);
	ck_assert(r.running);
	ck_assert_str_eq(exec_result_str(&r, buf, sizeof(buf)),
			 "still running (lbctl stopped following it)");
	exec_result_free(&r);
	ck_assert_int_eq(exec_job_fate(&job, &r), EXEC_RUNNING);
	struct exec_job other = job;
	other.start++;
	ck_assert_int_eq(exec_job_fate(&other, &r), EXEC_LOST);
	ck_assert_int_eq(exec_job_follow(&job, 10000, NULL, NULL, NULL, &r), 0);
	ck_assert_int_eq(access(flag, F_OK), 0);
	exec_result_free(&r);
	waitpid(job.pid, NULL, 0);

	/* Timed out: its group is killed, and it says so. */
	snprintf(cmd, sizeof(cmd), "sleep 30");
	ck_assert_int_eq(exec_job_run(&job, 300, NULL, NULL, NULL, NULL, &r), -1);
	ck_assert(r.timed_out);
	ck_assert(r.elapsed_ms < 6000);
	exec_result_free(&r);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("plan");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_good_upgrade);
	tcase_add_test(tc, test_good_migration);
	tcase_add_test(tc, test_bad_plans);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_expand);
	tcase_add_test(tc, test_versions);
	tcase_add_test(tc, test_journal_round_trip);
	tcase_add_test(tc, test_exec);
	tcase_add_test(tc, test_exec_dirty_output);
	tcase_add_test(tc, test_exec_job);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
