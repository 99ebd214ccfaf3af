/* test_config.c - config_load: values, defaults, and the exact text of every error. */
#define _GNU_SOURCE /* unshare */
#include <arpa/inet.h>
#include <check.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include "tests/unit/unit.h"
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/xmalloc.h"
#include "config/config.h"

/* A pool and a frontend that the bad-config cases can build on. */
#define POOL                                                                                       \
	"pools:\n"                                                                                 \
	"  - name: masters\n"                                                                      \
	"    backends:\n"                                                                          \
	"      - name: m1\n"                                                                       \
	"        address: 192.0.2.11:6443\n"
#define FRONTEND                                                                                   \
	"frontends:\n"                                                                             \
	"  - name: vip\n"                                                                          \
	"    listen: :6443\n"                                                                      \
	"    pool: masters\n"

/* Loads yaml under the name lbd.yaml; returns its errors joined by newlines, or NULL. */
static char *errors_of(const char *yaml)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load_string("lbd.yaml", yaml, strlen(yaml), &errs);
	char *out = NULL;
	size_t len = 0;

	if (cfg) {
		ck_assert_int_eq(errs.n, 0);
		config_free(cfg);
		return NULL;
	}
	ck_assert_int_gt(errs.n, 0);
	for (size_t i = 0; i < errs.n; i++) {
		size_t l = strlen(errs.msgs[i]);
		out = xrealloc(out, len + l + 2);
		memcpy(out + len, errs.msgs[i], l);
		len += l;
		out[len++] = '\n';
		out[len] = '\0';
	}
	out[len - 1] = '\0';
	config_errors_free(&errs);
	return out;
}

static void expect_errors(const char *yaml, const char *want)
{
	char *got = errors_of(yaml);

	ck_assert_msg(got != NULL, "config should not load:\n%s", yaml);
	ck_assert_str_eq(got, want);
	free(got);
}

static struct config *load_ok(const char *yaml)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load_string("lbd.yaml", yaml, strlen(yaml), &errs);

	ck_assert_msg(cfg != NULL, "config should load, got: %s", errs.n ? errs.msgs[0] : "?");
	ck_assert_int_eq(errs.n, 0);
	return cfg;
}

static int port_of(const struct sockaddr_conf *a)
{
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

static const char full_yaml[] =
    "state_dir: /tmp/lbd-state\n"
    "threads: 4\n"
    "shutdown_grace: 10s\n"
    "admin:\n"
    "  socket: /tmp/lbd.sock\n"
    "  socket_mode: \"0660\"\n"
    "  listen: 127.0.0.1:8443\n"
    "  token_file: /etc/lbd/token\n"
    "  tls: {cert: /a.crt, key: /a.key}\n"
    "  max_connections: 100\n"
    "  request_timeout: 5s\n"
    "metrics:\n"
    "  listen: \"[::1]:9100\"\n"
    "  max_connections: 1\n"
    "  request_timeout: 100ms\n"
    "log: {format: json, level: debug}\n"
    "frontends:\n"
    "  - name: vip\n"
    "    listen: [\":6443\", \"[::]:6443\"]\n"
    "    pool: masters\n"
    "    mode: tls\n"
    "    max_connections: 500\n"
    "    timeouts: {connect: 2s, idle: 30m}\n"
    "    retries: 5\n"
    "    retry_on_empty_response: false\n"
    "    freebind: true\n"
    "    tls: {cert: /f.crt, key: /f.key, verify: false}\n"
    "pools:\n"
    "  - name: masters\n"
    "    balance: round_robin\n"
    "    drain_timeout: 1m\n"
    "    drain_close_rate: 50\n"
    "    close_on_down: any\n"
    "    down_close_rate: 20\n"
    "    backends:\n"
    "      - {name: m1, address: 192.0.2.11:6443, weight: 0}\n"
    "      - {name: m2, address: \"[2001:db8::2]:6443\", weight: 256}\n"
    "    health:\n"
    "      type: http\n"
    "      path: /livez\n"
    "      expect_status: 204\n"
    "      interval: 5s\n"
    "      timeout: 4s\n"
    "      rise: 1\n"
    "      fall: 5\n"
    "      tls: {verify: false, ca: /ca.crt, sni: kube}\n"
    "  - name: empty\n"
    "    balance: source_hash\n"
    "    backends: []\n"
    "gate:\n"
    "  listen: :9443\n"
    "  tokens_file: /etc/lbd/gate-tokens\n"
    "  max_connections: 65535\n"
    "  request_timeout: 1h\n"
    "  store: kubernetes\n"
    "  concurrency:\n"
    "    masters: 2\n"
    "    workers: 10\n"
    "    per_label: {topology.kubernetes.io/zone: 1, rack: 3}\n"
    "  quorum:\n"
    "    pool: masters\n"
    "    etcd:\n"
    "      endpoints: [https://192.0.2.11:2379, https://192.0.2.12:2379]\n"
    "      ca: /e/ca\n"
    "      cert: /e/cert\n"
    "      key: /e/key\n"
    "  kubeconfig: /etc/lbd/kubeconfig\n"
    "  require_all_nodes_ready: yes\n"
    "  windows:\n"
    "    - {days: [sat, sun], start: \"01:00\", end: \"05:30\", tz: Europe/Berlin}\n"
    "    - {start: \"22:00\", end: \"24:00\"}\n"
    "  alerts: {prometheus_url: \"http://prom:9090\", filter: 'severity=\"critical\"'}\n"
    "  lease_ttl: 1h\n"
    "  soak: 90s\n"
    "  members:\n"
    "    node-a: {backend: m1, etcd: etcd-a}\n"
    "    node-b: {etcd: etcd-b}\n";

START_TEST(test_full_config)
{
	struct config *cfg = load_ok(full_yaml);
	const struct frontend_conf *fe;
	const struct pool_conf *p;
	const struct gate_conf *g = &cfg->gate;

	ck_assert_str_eq(cfg->path, "lbd.yaml");
	ck_assert_str_eq(cfg->state_dir, "/tmp/lbd-state");
	ck_assert_int_eq(cfg->threads, 4);
	ck_assert_int_eq(cfg->shutdown_grace_ms, 10000);
	ck_assert_str_eq(cfg->admin.socket, "/tmp/lbd.sock");
	ck_assert_int_eq(cfg->admin.socket_mode, 0660);
	ck_assert_str_eq(cfg->admin.listen->text, "127.0.0.1:8443");
	ck_assert_int_eq(port_of(cfg->admin.listen), 8443);
	ck_assert_str_eq(cfg->admin.token_file, "/etc/lbd/token");
	ck_assert_str_eq(cfg->admin.tls.cert, "/a.crt");
	ck_assert_int_eq(cfg->metrics.listen->ss.ss_family, AF_INET6);
	ck_assert_int_eq(port_of(cfg->metrics.listen), 9100);
	ck_assert_int_eq(cfg->admin.max_connections, 100);
	ck_assert_int_eq(cfg->admin.request_timeout_ms, 5000);
	ck_assert_int_eq(cfg->metrics.max_connections, 1);
	ck_assert_int_eq(cfg->metrics.request_timeout_ms, 100);
	ck_assert_int_eq(cfg->log.format, LOG_FMT_JSON);
	ck_assert_int_eq(cfg->log.level, LOG_LVL_DEBUG);

	ck_assert_int_eq(cfg->nfrontends, 1);
	fe = &cfg->frontends[0];
	ck_assert_str_eq(fe->name, "vip");
	ck_assert_int_eq(fe->nlisten, 2);
	ck_assert_int_eq(fe->listen[0].ss.ss_family, AF_INET);
	ck_assert_uint_eq(((struct sockaddr_in *)&fe->listen[0].ss)->sin_addr.s_addr, INADDR_ANY);
	ck_assert_int_eq(fe->listen[0].len, sizeof(struct sockaddr_in));
	ck_assert_int_eq(fe->listen[1].ss.ss_family, AF_INET6);
	ck_assert_int_eq(port_of(&fe->listen[1]), 6443);
	ck_assert_str_eq(fe->pool, "masters");
	ck_assert_int_eq(fe->mode, FE_MODE_TLS);
	ck_assert_int_eq(fe->max_connections, 500);
	ck_assert_int_eq(fe->connect_timeout_ms, 2000);
	ck_assert_int_eq(fe->idle_timeout_ms, 30 * 60000);
	ck_assert_int_eq(fe->retries, 5);
	ck_assert(!fe->retry_on_empty_response);
	ck_assert(fe->freebind);
	ck_assert(!fe->tls.verify);
	ck_assert_str_eq(fe->tls.key, "/f.key");

	ck_assert_int_eq(cfg->npools, 2);
	p = config_pool(cfg, "masters");
	ck_assert_ptr_eq(p, &cfg->pools[0]);
	ck_assert_int_eq(p->balance, BAL_ROUND_ROBIN);
	ck_assert_int_eq(p->drain_timeout_ms, 60000);
	ck_assert_int_eq(p->drain_close_rate, 50);
	ck_assert_int_eq(p->close_on_down, DOWN_CLOSE_ANY);
	ck_assert_int_eq(p->down_close_rate, 20);
	ck_assert_int_eq(p->nbackends, 2);
	ck_assert_str_eq(p->backends[0].name, "m1");
	ck_assert_int_eq(p->backends[0].weight, 0);
	ck_assert_str_eq(p->backends[1].addr.text, "[2001:db8::2]:6443");
	ck_assert_int_eq(p->backends[1].weight, 256);
	ck_assert_int_eq(p->health.type, HC_HTTP);
	ck_assert_str_eq(p->health.path, "/livez");
	ck_assert_int_eq(p->health.expect_status, 204);
	ck_assert_int_eq(p->health.interval_ms, 5000);
	ck_assert_int_eq(p->health.timeout_ms, 4000);
	ck_assert_int_eq(p->health.rise, 1);
	ck_assert_int_eq(p->health.fall, 5);
	ck_assert(!p->health.tls.verify);
	ck_assert_str_eq(p->health.tls.ca, "/ca.crt");
	ck_assert_str_eq(p->health.tls.sni, "kube");
	ck_assert_ptr_null(p->health.tls.cert);
	p = config_pool(cfg, "empty");
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(p->balance, BAL_SOURCE_HASH);
	ck_assert_int_eq(p->nbackends, 0);
	ck_assert_ptr_null(config_pool(cfg, "nope"));

	ck_assert(g->enabled);
	ck_assert_int_eq(port_of(g->listen), 9443);
	ck_assert_str_eq(g->tokens_file, "/etc/lbd/gate-tokens");
	ck_assert_int_eq(g->max_connections, 65535);
	ck_assert_int_eq(g->request_timeout_ms, 3600000);
	ck_assert_int_eq(g->store, GATE_STORE_KUBERNETES);
	ck_assert_int_eq(g->conc_masters, 2);
	ck_assert_int_eq(g->conc_workers, 10);
	ck_assert_int_eq(g->nper_label, 2);
	ck_assert_str_eq(g->per_label[0].label, "topology.kubernetes.io/zone");
	ck_assert_int_eq(g->per_label[0].max, 1);
	ck_assert_str_eq(g->per_label[1].label, "rack");
	ck_assert_int_eq(g->per_label[1].max, 3);
	ck_assert_str_eq(g->quorum_pool, "masters");
	ck_assert_int_eq(g->netcd_endpoints, 2);
	ck_assert_str_eq(g->etcd_endpoints[1], "https://192.0.2.12:2379");
	ck_assert_str_eq(g->etcd_key, "/e/key");
	ck_assert_str_eq(g->kubeconfig, "/etc/lbd/kubeconfig");
	ck_assert(g->require_all_nodes_ready);
	ck_assert_int_eq(g->nwindows, 2);
	ck_assert_int_eq(g->windows[0].ndays, 2);
	ck_assert_str_eq(g->windows[0].days[1], "sun");
	ck_assert_str_eq(g->windows[0].start, "01:00");
	ck_assert_str_eq(g->windows[0].end, "05:30");
	ck_assert_str_eq(g->windows[0].tz, "Europe/Berlin");
	ck_assert_int_eq(g->windows[1].ndays, 7); /* no days: every day */
	ck_assert_str_eq(g->windows[1].tz, "UTC");
	ck_assert_str_eq(g->alerts_prometheus_url, "http://prom:9090");
	ck_assert_str_eq(g->alerts_filter, "severity=\"critical\"");
	ck_assert_int_eq(g->lease_ttl_ms, 3600000);
	ck_assert_int_eq(g->soak_ms, 90000);
	ck_assert_int_eq(g->nmembers, 2);
	ck_assert_str_eq(g->members[0].node, "node-a");
	ck_assert_str_eq(g->members[0].backend, "m1");
	ck_assert_ptr_null(g->members[1].backend);
	ck_assert_str_eq(g->members[1].etcd, "etcd-b");
	config_free(cfg);
}
END_TEST

START_TEST(test_defaults)
{
	struct config *cfg = load_ok(FRONTEND POOL);
	const struct frontend_conf *fe = &cfg->frontends[0];
	const struct pool_conf *p = &cfg->pools[0];

	ck_assert_str_eq(cfg->state_dir, "/var/lib/lbd");
	ck_assert_int_eq(cfg->threads, 0);
	ck_assert_int_eq(cfg->shutdown_grace_ms, 30000);
	ck_assert_str_eq(cfg->admin.socket, "/run/lbd/admin.sock");
	ck_assert_int_eq(cfg->admin.socket_mode, 0600);
	ck_assert_ptr_null(cfg->admin.listen);
	ck_assert_ptr_null(cfg->metrics.listen);
	ck_assert_int_eq(cfg->admin.max_connections, 64);
	ck_assert_int_eq(cfg->admin.request_timeout_ms, 10000);
	ck_assert_int_eq(cfg->metrics.max_connections, 64);
	ck_assert_int_eq(cfg->metrics.request_timeout_ms, 10000);
	ck_assert_int_eq(cfg->log.format, LOG_FMT_TEXT);
	ck_assert_int_eq(cfg->log.level, LOG_LVL_INFO);
	/* ":6443" is every address: IPv4, and IPv6 where the host has it (issue 18) */
	int v6 = socket(AF_INET6, SOCK_STREAM, 0);
	ck_assert_int_eq(fe->nlisten, v6 >= 0 ? 2 : 1);
	ck_assert_str_eq(fe->listen[0].text, ":6443");
	ck_assert_int_eq(fe->listen[0].ss.ss_family, AF_INET);
	if (v6 >= 0) {
		close(v6);
		ck_assert_str_eq(fe->listen[1].text, ":6443");
		ck_assert_int_eq(fe->listen[1].ss.ss_family, AF_INET6);
		ck_assert_int_eq(port_of(&fe->listen[1]), 6443);
	}
	ck_assert_int_eq(fe->mode, FE_MODE_TCP);
	ck_assert_int_eq(fe->max_connections, 10000);
	ck_assert_int_eq(fe->connect_timeout_ms, 3000);
	ck_assert_int_eq(fe->idle_timeout_ms, 3600000);
	ck_assert_int_eq(fe->retries, 2);
	ck_assert(!fe->freebind);
	ck_assert_int_eq(fe->fin_timeout_ms, 30000);
	ck_assert_int_eq(fe->user_timeout_ms, 20000);
	ck_assert_int_eq(fe->keepalive_idle_ms, 30000);
	ck_assert_int_eq(fe->keepalive_interval_ms, 10000);
	ck_assert_int_eq(fe->keepalive_count, 3);
	ck_assert(!fe->log_connections);
	ck_assert(fe->retry_on_empty_response);
	ck_assert_int_eq(p->balance, BAL_LEAST_CONN);
	ck_assert_int_eq(p->drain_timeout_ms, 300000);
	ck_assert_int_eq(p->drain_close_rate, 100);
	ck_assert_int_eq(p->close_on_down, DOWN_CLOSE_TRANSPORT);
	ck_assert_int_eq(p->down_close_rate, 100);
	ck_assert(!p->rebalance.enabled);
	ck_assert_int_eq(p->rebalance.rate, 10);
	ck_assert_int_eq(p->rebalance.max_share_pct, 25);
	ck_assert_int_eq(p->rebalance.tolerance_pct, 20);
	ck_assert_int_eq(p->backends[0].weight, 1);
	ck_assert_int_eq(p->health.type, HC_HTTPS);
	ck_assert_str_eq(p->health.path, "/readyz");
	ck_assert_int_eq(p->health.expect_status, 200);
	ck_assert_int_eq(p->health.interval_ms, 2000);
	ck_assert_int_eq(p->health.timeout_ms, 1000);
	ck_assert_int_eq(p->health.rise, 2);
	ck_assert_int_eq(p->health.fall, 3);
	ck_assert(p->health.tls.verify);
	ck_assert(!cfg->gate.enabled);
	config_free(cfg);

	/* An empty gate section turns the gate on with its defaults. */
	cfg = load_ok(FRONTEND POOL "gate:\n");
	ck_assert(cfg->gate.enabled);
	ck_assert_int_eq(cfg->gate.store, GATE_STORE_FILE);
	ck_assert_int_eq(cfg->gate.conc_masters, 1);
	ck_assert_int_eq(cfg->gate.conc_workers, 1);
	ck_assert_int_eq(cfg->gate.lease_ttl_ms, 30 * 60000);
	ck_assert_int_eq(cfg->gate.soak_ms, 0);
	ck_assert_int_eq(cfg->gate.max_connections, 64);
	ck_assert_int_eq(cfg->gate.request_timeout_ms, 10000);
	config_free(cfg);
}
END_TEST

START_TEST(test_freebind_default)
{
	struct config *cfg =
	    load_ok("freebind: true\n"
		    "frontends:\n"
		    "  - {name: a, listen: ':6443', pool: masters}\n"
		    "  - {name: b, listen: ':6444', pool: masters, freebind: false}\n" POOL);

	ck_assert(cfg->freebind);
	ck_assert(cfg->frontends[0].freebind);	/* inherits the top level */
	ck_assert(!cfg->frontends[1].freebind); /* says otherwise */
	config_free(cfg);
	cfg = load_ok(FRONTEND POOL);
	ck_assert(!cfg->frontends[0].freebind);
	config_free(cfg);
}
END_TEST

START_TEST(test_examples_load)
{
	static const char *const files[] = {"config/examples/demo.yaml",
					    "config/examples/k3s-three-masters.yaml"};

	for (size_t i = 0; i < 2; i++) {
		struct config_errors errs = {0};
		struct config *cfg = config_load(files[i], &errs);

		ck_assert_msg(cfg != NULL, "%s: %s", files[i], errs.n ? errs.msgs[0] : "?");
		ck_assert_int_eq(cfg->npools, 1);
		ck_assert_int_eq(cfg->pools[0].nbackends, 3);
		ck_assert(!cfg->pools[0].health.tls.verify);
		config_free(cfg);
	}
}
END_TEST

START_TEST(test_demo_values)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load("config/examples/demo.yaml", &errs);
	const struct pool_conf *p;

	ck_assert_ptr_nonnull(cfg);
	ck_assert_str_eq(cfg->state_dir, "build/demo/state");
	ck_assert_str_eq(cfg->admin.socket, "build/demo/admin.sock");
	ck_assert_str_eq(cfg->frontends[0].name, "demo-vip");
	ck_assert_str_eq(cfg->frontends[0].listen[0].text, "127.0.0.1:6443");
	p = config_pool(cfg, "masters");
	ck_assert_str_eq(p->backends[2].name, "master-3");
	ck_assert_int_eq(port_of(&p->backends[2].addr), 16443);
	ck_assert_int_eq(p->health.interval_ms, 1000);
	ck_assert_int_eq(p->health.timeout_ms, 500);
	ck_assert_int_eq(p->health.fall, 2);
	config_free(cfg);
}
END_TEST

START_TEST(test_load_file_errors)
{
	struct config_errors errs = {0};
	char path[] = "/tmp/test_config_XXXXXX";
	int fd = mkstemp(path);
	static const char bad[] = FRONTEND POOL "threads: many\n";

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, bad, sizeof(bad) - 1), (int)(sizeof(bad) - 1));
	close(fd);
	ck_assert_ptr_null(config_load(path, &errs));
	ck_assert_int_eq(errs.n, 1);
	{
		char *want =
		    xasprintf("%s:10:10: threads: invalid integer 'many' (expected 0..256)", path);
		ck_assert_str_eq(errs.msgs[0], want);
		free(want);
	}
	config_errors_free(&errs);
	unlink(path);

	ck_assert_ptr_null(config_load("/nonexistent/lbd.yaml", &errs));
	ck_assert_int_eq(errs.n, 1);
	ck_assert_str_eq(errs.msgs[0],
			 "/nonexistent/lbd.yaml: cannot open: No such file or directory");
	config_errors_free(&errs);
	ck_assert_int_eq(errs.n, 0);
	ck_assert_ptr_null(errs.msgs);
}
END_TEST

/* Rebalance with source_hash would close connections for ever: a closed
 * client hashes back to the backend it left. */
START_TEST(test_rebalance_needs_a_spreading_balance)
{
	expect_errors(FRONTEND "pools:\n  - name: masters\n    balance: source_hash\n"
			       "    rebalance: {enabled: true}\n    backends:\n"
			       "      - {name: m1, address: '192.0.2.11:6443'}\n",
		      "lbd.yaml:8:16: pools[0]: rebalance needs balance least_conn or round_robin "
		      "(with source_hash a closed client comes back to the same backend)");
	config_free(load_ok(FRONTEND "pools:\n  - name: masters\n    balance: round_robin\n"
				     "    rebalance: {enabled: true}\n    backends:\n"
				     "      - {name: m1, address: '192.0.2.11:6443'}\n"));
}
END_TEST

START_TEST(test_unknown_key)
{
	expect_errors(FRONTEND POOL "stat_dir: /x\n",
		      "lbd.yaml:10:1: unknown key 'stat_dir' in the top level (did you mean "
		      "'state_dir'?)");
	expect_errors(FRONTEND POOL "    health:\n      intervall: 2s\n      colour: red\n",
		      "lbd.yaml:11:7: unknown key 'intervall' in pools[0].health (did you mean "
		      "'interval'?)\n"
		      "lbd.yaml:12:7: unknown key 'colour' in pools[0].health");
}
END_TEST

START_TEST(test_bad_duration)
{
	expect_errors(FRONTEND POOL "    health:\n      interval: fast\n",
		      "lbd.yaml:11:17: pools[0].health.interval: invalid duration 'fast' (use "
		      "500ms, 2s, 5m, 1h)");
	expect_errors(FRONTEND POOL "    health:\n      interval: 50ms\n",
		      "lbd.yaml:11:17: pools[0].health.interval: 50ms is too short (at least "
		      "100ms)");
	expect_errors(FRONTEND POOL "shutdown_grace: 30\n",
		      "lbd.yaml:10:17: shutdown_grace: invalid duration '30' (use 500ms, 2s, 5m, "
		      "1h)");
}
END_TEST

/* Issue 18: "interval: 1s" alone, or "interval: 200ms, timeout: 500ms" (HAProxy
 * takes a timeout above inter) were refused. */
START_TEST(test_timeout_default_and_above_interval)
{
	static const struct {
		const char *health;
		int64_t interval, timeout;
	} cases[] = {
	    {"      interval: 1s\n", 1000, 1000},
	    {"      interval: 500ms\n", 500, 500},
	    {"      interval: 5s\n", 5000, 1000},
	    {"      interval: 200ms\n      timeout: 500ms\n", 200, 500},
	    {"      interval: 1s\n      timeout: 1s\n", 1000, 1000},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *yaml = xasprintf(FRONTEND POOL "    health:\n%s", cases[i].health);
		struct config *cfg = load_ok(yaml);
		ck_assert_int_eq(cfg->pools[0].health.interval_ms, cases[i].interval);
		ck_assert_int_eq(cfg->pools[0].health.timeout_ms, cases[i].timeout);
		config_free(cfg);
		free(yaml);
	}
}
END_TEST

START_TEST(test_health_token_file)
{
	struct config *cfg =
	    load_ok(FRONTEND POOL "    health:\n      token_file: /etc/lbd/readyz.token\n");
	ck_assert_str_eq(cfg->pools[0].health.token_file, "/etc/lbd/readyz.token");
	config_free(cfg);
	cfg = load_ok(FRONTEND POOL);
	ck_assert_ptr_null(cfg->pools[0].health.token_file);
	config_free(cfg);
	/* A tcp check sends no request to carry the token. */
	char *got = errors_of(FRONTEND POOL "    health:\n      type: tcp\n"
					    "      token_file: /etc/lbd/readyz.token\n");
	ck_assert_ptr_nonnull(got);
	ck_assert_msg(strstr(got, "pools[0].health: token_file needs an http or https check"), "%s",
		      got);
	free(got);
}
END_TEST

START_TEST(test_duplicate_pool)
{
	expect_errors(FRONTEND POOL "  - name: masters\n",
		      "lbd.yaml:10:11: pools[1]: duplicate pool name 'masters' (first at line 6)");
}
END_TEST

START_TEST(test_duplicate_backend)
{
	expect_errors(FRONTEND POOL "      - name: m1\n        address: 192.0.2.12:6443\n",
		      "lbd.yaml:10:15: pools[0].backends[1]: duplicate backend name 'm1' in pool "
		      "'masters' (first at line 8)");
	expect_errors(FRONTEND POOL "      - name: m2\n        address: 192.0.2.11:6443\n",
		      "lbd.yaml:11:18: pools[0].backends[1]: backend address '192.0.2.11:6443' is "
		      "already used by 'm1' (line 9)");
}
END_TEST

/* A backend's name is a path segment of the admin API
 * (/v1/pools/{pool}/backends/{name}): "." and ".." are normalised away by
 * clients and '/' splits it, so such a backend could never be edited. */
START_TEST(test_bad_backend_names)
{
	expect_errors(FRONTEND POOL "      - name: ..\n        address: 192.0.2.12:6443\n",
		      "lbd.yaml:10:15: pools[0].backends[1].name: '.' and '..' cannot be names "
		      "(URL paths drop them)");
	expect_errors(FRONTEND POOL "      - name: .\n        address: 192.0.2.12:6443\n",
		      "lbd.yaml:10:15: pools[0].backends[1].name: '.' and '..' cannot be names "
		      "(URL paths drop them)");
	expect_errors(FRONTEND POOL "      - name: a/b\n        address: 192.0.2.12:6443\n",
		      "lbd.yaml:10:15: pools[0].backends[1].name: a name is 1 to 253 of a-z A-Z "
		      "0-9 . - _");
	expect_errors(FRONTEND "pools:\n  - name: ..\n    backends: []\n",
		      "lbd.yaml:4:11: frontends[0].pool: no pool named 'masters'\n"
		      "lbd.yaml:6:11: pools[0].name: '.' and '..' cannot be names (URL paths drop "
		      "them)");
	/* Dots inside a name are fine (node names are DNS names). */
	config_free(
	    load_ok(FRONTEND POOL "      - name: ..m.2..\n        address: 192.0.2.12:6443\n"));
}
END_TEST

START_TEST(test_name_rule)
{
	char long_name[300];

	ck_assert_ptr_null(config_name_check("master-1.example_2"));
	ck_assert_ptr_null(config_name_check("..."));
	ck_assert_ptr_null(config_name_check(".hidden"));
	ck_assert_ptr_nonnull(config_name_check("."));
	ck_assert_ptr_nonnull(config_name_check(".."));
	ck_assert_ptr_nonnull(config_name_check(""));
	ck_assert_ptr_nonnull(config_name_check("a/b"));
	ck_assert_ptr_nonnull(config_name_check("a b"));
	ck_assert_ptr_nonnull(config_name_check("a%2fb"));
	memset(long_name, 'a', sizeof(long_name));
	long_name[253] = '\0';
	ck_assert_ptr_null(config_name_check(long_name));
	long_name[253] = 'a';
	long_name[254] = '\0';
	ck_assert_ptr_nonnull(config_name_check(long_name));
}
END_TEST

START_TEST(test_sockaddr_same)
{
	struct sockaddr_conf v4, mapped, v6, other_port;

	ck_assert_int_eq(sockaddr_conf_parse("192.0.2.1:80", &v4, NULL), 0);
	ck_assert_int_eq(sockaddr_conf_parse("[::ffff:192.0.2.1]:80", &mapped, NULL), 0);
	ck_assert_int_eq(sockaddr_conf_parse("[2001:db8::c000:201]:80", &v6, NULL), 0);
	ck_assert_int_eq(sockaddr_conf_parse("[::ffff:192.0.2.1]:81", &other_port, NULL), 0);
	ck_assert(sockaddr_conf_same(&v4, &mapped));
	ck_assert(sockaddr_conf_same(&mapped, &v4));
	ck_assert(sockaddr_conf_same(&mapped, &mapped));
	ck_assert(!sockaddr_conf_same(&v4, &v6));
	ck_assert(!sockaddr_conf_same(&v4, &other_port));
	sockaddr_conf_free(&v4);
	sockaddr_conf_free(&mapped);
	sockaddr_conf_free(&v6);
	sockaddr_conf_free(&other_port);
}
END_TEST

/* An IPv4-mapped IPv6 address is the IPv4 address: the same backend twice. */
START_TEST(test_duplicate_backend_mapped_address)
{
	expect_errors(FRONTEND POOL
		      "      - name: m2\n        address: '[::ffff:192.0.2.11]:6443'\n",
		      "lbd.yaml:11:18: pools[0].backends[1]: backend address "
		      "'[::ffff:192.0.2.11]:6443' is already used by 'm1' (line 9)");
	config_free(load_ok(FRONTEND POOL
			    "      - name: m2\n        address: '[::ffff:192.0.2.11]:6444'\n"));
}
END_TEST

START_TEST(test_missing_pool)
{
	expect_errors("frontends:\n"
		      "  - name: vip\n"
		      "    listen: :6443\n"
		      "    pool: mastres\n" POOL,
		      "lbd.yaml:4:11: frontends[0].pool: no pool named 'mastres'");
}
END_TEST

START_TEST(test_bad_addresses)
{
	expect_errors("frontends:\n"
		      "  - name: vip\n"
		      "    listen:\n"
		      "      - :65536\n"
		      "      - 'bad host:6443'\n"
		      "      - 10.0.0.1\n"
		      "      - ::1:6443\n"
		      "      - '[::1'\n"
		      "      - :https\n"
		      "      - '[fe80::zz]:1'\n"
		      "    pool: masters\n" POOL,
		      "lbd.yaml:4:9: frontends[0].listen[0]: invalid address ':65536': port out of "
		      "range\n"
		      "lbd.yaml:5:9: frontends[0].listen[1]: invalid address 'bad host:6443': not "
		      "an IP address\n"
		      "lbd.yaml:6:9: frontends[0].listen[2]: invalid address '10.0.0.1': missing "
		      "port\n"
		      "lbd.yaml:7:9: frontends[0].listen[3]: invalid address '::1:6443': IPv6 "
		      "addresses go in brackets, as [::1]:6443\n"
		      "lbd.yaml:8:9: frontends[0].listen[4]: invalid address '[::1': missing ']' "
		      "after IPv6 address\n"
		      "lbd.yaml:9:9: frontends[0].listen[5]: invalid address ':https': port is not "
		      "a number\n"
		      "lbd.yaml:10:9: frontends[0].listen[6]: invalid address '[fe80::zz]:1': not "
		      "an IP address");
	expect_errors(FRONTEND POOL "      - name: m2\n        address: 192.0.2.12:0\n",
		      "lbd.yaml:11:18: pools[0].backends[1].address: invalid address "
		      "'192.0.2.12:0': port out of range");
}
END_TEST

START_TEST(test_sockaddr_parse)
{
	struct sockaddr_conf a, b;
	const char *why = NULL;

	ck_assert_int_eq(sockaddr_conf_parse("[::1]:443", &a, &why), 0);
	ck_assert_int_eq(a.len, sizeof(struct sockaddr_in6));
	sockaddr_conf_copy(&b, &a);
	ck_assert_str_eq(b.text, "[::1]:443");
	ck_assert_ptr_ne(b.text, a.text);
	ck_assert_int_eq(port_of(&b), 443);
	sockaddr_conf_free(&a);
	sockaddr_conf_free(&b);
	ck_assert_ptr_null(a.text);
	ck_assert_int_eq(sockaddr_conf_parse("1.2.3.4:", &a, &why), -1);
	ck_assert_str_eq(why, "missing port");
	ck_assert_ptr_null(a.text);
	ck_assert_int_eq(sockaddr_conf_parse("1.2.3.4:99999999999999999999", &a, &why), -1);
	ck_assert_str_eq(why, "port out of range");
	ck_assert_int_eq(sockaddr_conf_parse("1.2.3:80", &a, NULL), -1);
	ck_assert_int_eq(sockaddr_conf_parse("", &a, &why), -1);
	ck_assert_int_eq(sockaddr_conf_parse("[::1]", &a, &why), -1);
	ck_assert_str_eq(why, "missing port");
}
END_TEST

START_TEST(test_weight_range)
{
	expect_errors(FRONTEND POOL "        weight: 300\n",
		      "lbd.yaml:10:17: pools[0].backends[0].weight: 300 is out of range (0..256)");
	expect_errors(FRONTEND POOL "        weight: -1\n",
		      "lbd.yaml:10:17: pools[0].backends[0].weight: -1 is out of range (0..256)");
	expect_errors(FRONTEND POOL "        weight: heavy\n",
		      "lbd.yaml:10:17: pools[0].backends[0].weight: invalid integer 'heavy' "
		      "(expected 0..256)");
}
END_TEST

START_TEST(test_bad_balance)
{
	expect_errors(FRONTEND POOL "    balance: rr\n",
		      "lbd.yaml:10:14: pools[0].balance: invalid balance 'rr' (use least_conn, "
		      "round_robin or source_hash)");
}
END_TEST

/* For a lookup of a name /etc/hosts lacks: moves this (forked) test into a
 * mount namespace of its own whose /etc/resolv.conf names only 127.0.0.1, so
 * the lookup fails on loopback and no DNS query leaves the machine. Returns
 * 0, or -1 (and says why) without mount namespaces (not root): the caller
 * then leaves the lookup out. */
static int loopback_resolver(void)
{
	char conf[] = "/tmp/lbd-unit-resolv-XXXXXX", line[256];
	static const char text[] = "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n";
	FILE *ns = fopen("/etc/nsswitch.conf", "r");
	int fd, ok = 0;

	/* glibc must ask /etc/hosts and resolv.conf's servers only: not nscd,
	 * systemd-resolved or mDNS, which would send the query on */
	while (ns && fgets(line, sizeof(line), ns))
		if (strncmp(line, "hosts:", 6) == 0 &&
		    strspn(line + 6, " \tfilesdnmyhotam\n") < strcspn(line + 6, "#"))
			ok = -1;
	if (ns)
		fclose(ns);
	if (ok < 0 || access("/var/run/nscd/socket", F_OK) == 0) {
		fprintf(stderr, "skipped (needs host lookups through resolv.conf only): "
				"a name that does not resolve\n");
		return -1;
	}
	fd = mkstemp(conf);
	if (fd < 0)
		return -1;
	if (write(fd, text, sizeof(text) - 1) == (ssize_t)sizeof(text) - 1 &&
	    unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
	    mount(conf, "/etc/resolv.conf", NULL, MS_BIND, NULL) == 0)
		ok = 1;
	else
		perror("skipped, needs mount namespaces (root): a name that does not resolve");
	close(fd);
	unlink(conf);
	return ok ? 0 : -1;
}

/* Issue 18: host names in backend and listen addresses, resolved at load;
 * one that does not resolve is an error at its place. */
START_TEST(test_host_names)
{
	struct config *cfg = load_ok("frontends:\n  - name: vip\n    listen: localhost:6443\n"
				     "    pool: masters\n"
				     "pools:\n  - name: masters\n    backends:\n"
				     "      - {name: m1, address: 'localhost:7001'}\n"
				     "      - {name: m2, address: '10.0.0.2:7001'}\n");
	const struct sockaddr_conf *l = &cfg->frontends[0].listen[0];
	const struct sockaddr_conf *b = &cfg->pools[0].backends[0].addr;
	char buf[64];

	ck_assert(l->resolved);
	ck_assert_str_eq(l->text, "localhost:6443");
	ck_assert(b->resolved);
	ck_assert_str_eq(b->text, "localhost:7001");
	ck_assert_int_eq(port_of(b), 7001);
	sockaddr_conf_numeric(b, buf, sizeof(buf));
	ck_assert_msg(!strcmp(buf, "127.0.0.1:7001") || !strcmp(buf, "[::1]:7001"), "%s", buf);
	ck_assert(!cfg->pools[0].backends[1].addr.resolved);
	config_free(cfg);

	/* a name that does not resolve, looked up on loopback only */
	if (loopback_resolver() == 0) {
		char *err = errors_of(FRONTEND POOL
				      "      - {name: m2, address: 'nonexistent.invalid:6443'}\n");
		ck_assert_ptr_nonnull(err);
		ck_assert_msg(strstr(err, "lbd.yaml:10:29: pools[0].backends[1].address: invalid "
					  "address 'nonexistent.invalid:6443': cannot resolve "
					  "'nonexistent.invalid': ") == err,
			      "%s", err);
		free(err);
	}
	/* a bad IP stays a bad IP, not a name */
	expect_errors(FRONTEND POOL "      - {name: m2, address: '10.0.0.256:6443'}\n",
		      "lbd.yaml:10:29: pools[0].backends[1].address: invalid address "
		      "'10.0.0.256:6443': not an IP address");
}
END_TEST

/* Issue 18: what an operator coming from HAProxy writes gets lbd's word. */
START_TEST(test_haproxy_hints)
{
	expect_errors(FRONTEND POOL "    balance: roundrobin\n",
		      "lbd.yaml:10:14: pools[0].balance: invalid balance 'roundrobin' (use "
		      "least_conn, round_robin or source_hash): HAProxy's roundrobin is lbd's "
		      "round_robin");
	expect_errors(FRONTEND POOL "    balance: source\n",
		      "lbd.yaml:10:14: pools[0].balance: invalid balance 'source' (use least_conn, "
		      "round_robin or source_hash): HAProxy's source is lbd's source_hash");
	expect_errors(FRONTEND POOL "    balance: leastconn\n",
		      "lbd.yaml:10:14: pools[0].balance: invalid balance 'leastconn' (use "
		      "least_conn, round_robin or source_hash): HAProxy's leastconn is lbd's "
		      "least_conn");
	expect_errors("frontends:\n  - name: vip\n    listen: '*:6443'\n    pool: masters\n" POOL,
		      "lbd.yaml:3:13: frontends[0].listen: invalid address '*:6443': '*:PORT' "
		      "is HAProxy's spelling: lbd's is ':PORT' (every address, IPv4 and IPv6)");
}
END_TEST

START_TEST(test_tls_mode_needs_cert)
{
	expect_errors(FRONTEND "    mode: tls\n    tls: {cert: /f.crt}\n" POOL,
		      "lbd.yaml:5:11: frontends[0].mode: mode tls requires tls.cert and tls.key");
}
END_TEST

START_TEST(test_tls_sni_certs)
{
	struct config *cfg = load_ok(FRONTEND "    mode: tls\n"
					      "    tls:\n"
					      "      cert: /a.crt\n"
					      "      key: /a.key\n"
					      "      certs: [{cert: /b.crt, key: /b.key}]\n" POOL);
	ck_assert_uint_eq(cfg->frontends[0].tls.ncerts, 1);
	ck_assert_str_eq(cfg->frontends[0].tls.certs[0].key, "/b.key");
	config_free(cfg);
	expect_errors(FRONTEND "    mode: tls\n"
			       "    tls:\n"
			       "      cert: /a.crt\n"
			       "      key: /a.key\n"
			       "      certs: [{cert: /b.crt}]\n" POOL,
		      "lbd.yaml:9:15: frontends[0]: tls.certs[0] needs both cert and key");
}
END_TEST

START_TEST(test_yaml_syntax_error)
{
	expect_errors(FRONTEND "    pool: [masters\n" POOL,
		      "lbd.yaml:6:6: YAML syntax error: did not find expected ',' or ']' (while "
		      "parsing a flow sequence at line 5)");
	expect_errors("a: b: c\n", "lbd.yaml:1:5: YAML syntax error: mapping values are not "
				   "allowed in this context");
}
END_TEST

START_TEST(test_many_errors)
{
	/* Every error in the file, in file order, not only the first. */
	expect_errors(
	    "threads: 999\n"
	    "frontends:\n"
	    "  - name: vip\n"
	    "    listen: 1.2.3.4:0\n"
	    "    pool: nope\n"
	    "    retries: 17\n"
	    "pools:\n"
	    "  - name: masters\n"
	    "    health:\n"
	    "      type: icmp\n"
	    "      path: readyz\n"
	    "      rise: 0\n"
	    "log:\n"
	    "  level: loud\n",
	    "lbd.yaml:1:10: threads: 999 is out of range (0..256)\n"
	    "lbd.yaml:4:13: frontends[0].listen: invalid address '1.2.3.4:0': port out of "
	    "range\n"
	    "lbd.yaml:5:11: frontends[0].pool: no pool named 'nope'\n"
	    "lbd.yaml:6:14: frontends[0].retries: 17 is out of range (0..16)\n"
	    "lbd.yaml:10:13: pools[0].health.type: invalid type 'icmp' (use https, http "
	    "or tcp)\n"
	    "lbd.yaml:11:13: pools[0].health.path: must start with '/'\n"
	    "lbd.yaml:12:13: pools[0].health.rise: 0 is out of range (1..100)\n"
	    "lbd.yaml:14:10: log.level: invalid level 'loud' (use debug, info, warn or "
	    "error)");
}
END_TEST

START_TEST(test_admin_listen_needs_token)
{
	expect_errors(FRONTEND POOL "admin:\n  listen: 127.0.0.1:8443\n",
		      "lbd.yaml:11:11: admin.listen: a TCP admin listener needs admin.token_file "
		      "(no token, no access)");
}
END_TEST

/* max_connections and request_timeout: the same bounds on every listener. */
START_TEST(test_listener_bounds)
{
	expect_errors(FRONTEND POOL "admin:\n"
				    "  max_connections: 0\n"
				    "  request_timeout: 99ms\n"
				    "metrics: {max_connections: 65536, request_timeout: 61m}\n"
				    "gate:\n"
				    "  max_connections: many\n"
				    "  request_timeout: 10\n",
		      "lbd.yaml:11:20: admin.max_connections: 0 is out of range (1..65535)\n"
		      "lbd.yaml:12:20: admin.request_timeout: 99ms is too short (at least "
		      "100ms)\n"
		      "lbd.yaml:13:28: metrics.max_connections: 65536 is out of range "
		      "(1..65535)\n"
		      "lbd.yaml:13:52: metrics.request_timeout: 61m is too long (at most 1h)\n"
		      "lbd.yaml:15:20: gate.max_connections: invalid integer 'many' (expected "
		      "1..65535)\n"
		      "lbd.yaml:16:20: gate.request_timeout: invalid duration '10' (use 500ms, 2s, "
		      "5m, 1h)");
	expect_errors(FRONTEND POOL "admin: {max_conections: 5}\n",
		      "lbd.yaml:10:9: unknown key 'max_conections' in admin (did you mean "
		      "'max_connections'?)");
}
END_TEST

START_TEST(test_gate_quorum_pool)
{
	expect_errors(FRONTEND POOL "gate:\n  quorum:\n    pool: workers\n",
		      "lbd.yaml:12:11: gate.quorum.pool: no pool named 'workers'");
	expect_errors(FRONTEND POOL "gate:\n  quorum: {pool: masters}\n  members:\n"
				    "    node-1: {backend: m9}\n",
		      "lbd.yaml:13:23: gate.members.node-1.backend: pool 'masters' has no backend "
		      "named 'm9'");
}
END_TEST

START_TEST(test_gate_values)
{
	expect_errors(
	    FRONTEND POOL "gate:\n"
			  "  concurrency: {masters: 10, per_label: {zone: 0}}\n"
			  "  windows:\n"
			  "    - {days: [monday], start: \"2:00\", end: \"25:00\"}\n"
			  "    - {days: [], end: \"05:00\"}\n"
			  "  store: etcd\n"
			  "  alerts: {prometheus_url: prom:9090}\n",
	    "lbd.yaml:11:26: gate.concurrency.masters: 10 is out of range (1..9)\n"
	    "lbd.yaml:11:48: gate.concurrency.per_label.zone: 0 is out of range "
	    "(1..1000)\n"
	    "lbd.yaml:13:15: gate.windows[0].days[0]: expected a day: mon, tue, wed, thu, "
	    "fri, sat or sun\n"
	    "lbd.yaml:13:31: gate.windows[0].start: expected a time as HH:MM, e.g. 02:30\n"
	    "lbd.yaml:13:44: gate.windows[0].end: time out of range (00:00..24:00)\n"
	    "lbd.yaml:14:7: gate.windows[1]: missing required key 'start'\n"
	    "lbd.yaml:14:14: gate.windows[1].days: no days given; leave 'days' out to "
	    "mean every day\n"
	    "lbd.yaml:15:10: gate.store: invalid store 'etcd' (use file or kubernetes)\n"
	    "lbd.yaml:16:28: gate.alerts.prometheus_url: expected a URL starting with "
	    "http:// or https://");
}
END_TEST

START_TEST(test_structure_errors)
{
	expect_errors("", "lbd.yaml: the file is empty (it needs at least frontends and pools)");
	expect_errors("# only a comment\n",
		      "lbd.yaml: the file is empty (it needs at least frontends and pools)");
	expect_errors("- a\n- b\n",
		      "lbd.yaml:1:1: the top level must be a mapping (key: value), got a list");
	expect_errors(POOL, "lbd.yaml:1:1: frontends: at least one frontend is required");
	expect_errors("frontends: []\n" POOL,
		      "lbd.yaml:1:12: frontends: at least one frontend is required");
	expect_errors("frontends:\n  - listen: []\n" POOL,
		      "lbd.yaml:2:5: frontends[0]: missing required key 'name'\n"
		      "lbd.yaml:2:5: frontends[0]: missing required key 'pool'\n"
		      "lbd.yaml:2:13: frontends[0].listen: at least one listen address is "
		      "required");
	expect_errors(FRONTEND POOL "log: text\n",
		      "lbd.yaml:10:6: log: expected a mapping (key: value), got a string");
	expect_errors(FRONTEND POOL "threads: 1\nthreads: 2\n",
		      "lbd.yaml:11:1: threads: duplicate key 'threads' (first at line 10)");
	expect_errors(FRONTEND POOL "state_dir: &a /x\nadmin: {socket: *a}\n",
		      "lbd.yaml:11:17: admin.socket: YAML aliases (*name) are not supported; write "
		      "the value out");
	expect_errors(FRONTEND POOL "---\nthreads: 1\n",
		      "lbd.yaml:10:1: only one YAML document is allowed (found a second '---')");
	expect_errors(
	    FRONTEND POOL "admin: {socket_mode: 0800}\n",
	    "lbd.yaml:10:22: admin.socket_mode: invalid file mode '0800' (use octal, e.g. "
	    "0600)");
	expect_errors(FRONTEND POOL "metrics: {listen: [1, 2]}\n",
		      "lbd.yaml:10:19: metrics.listen: expected an address (IP:PORT), got a list");
	expect_errors(
	    FRONTEND POOL "    backends: [{address: 192.0.2.1:1}]\n",
	    "lbd.yaml:10:5: pools[0].backends: duplicate key 'backends' (first at line 7)");
	expect_errors(FRONTEND "pools:\n  - backends: [{address: 192.0.2.1:1}]\n",
		      "lbd.yaml:4:11: frontends[0].pool: no pool named 'masters'\n"
		      "lbd.yaml:6:5: pools[0]: missing required key 'name'\n"
		      "lbd.yaml:6:16: pools[0].backends[0]: missing required key 'name'");
}
END_TEST

START_TEST(test_duplicate_frontend_and_listen)
{
	expect_errors(
	    FRONTEND "  - name: vip\n    listen: 0.0.0.0:6443\n    pool: masters\n" POOL,
	    "lbd.yaml:5:11: frontends[1]: duplicate frontend name 'vip' (first at line "
	    "2)\n"
	    "lbd.yaml:6:13: frontends[1].listen: address '0.0.0.0:6443' is also the listen "
	    "address of frontend 'vip'");
}
END_TEST

/* Garbage in: no crash, no leak (run under SAN=1), and errors that name the file. */
START_TEST(test_garbage_does_not_crash)
{
	static const char *const inputs[] = {
	    "\x00\x01\x02",
	    "\xff\xfe\xfd",
	    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
	    "{a: {b: {c: {d: [1, 2, {e: f}]}}}}",
	    "frontends: {name: x}\npools: 7\ngate: [1]\nadmin: ~\nmetrics: null\n",
	    "frontends:\n  - 1\n  - [2]\n  - ~\npools:\n  - backends: 5\n    health: []\n",
	    "? [a]\n: b\n",
	    "!!binary frontends: x\n",
	    "%YAML 1.1\n---\nfrontends: &x [*x]\n",
	    "gate: {members: {a: 1, '': {}}, concurrency: {per_label: [1]}, windows: {}}\n",
	    "\"\\0\": 1\nstate_dir: \"a\\0b\"\n",
	};

	for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
		struct config_errors errs = {0};
		size_t len = i == 0 ? 3 : strlen(inputs[i]);
		struct config *cfg = config_load_string("fuzz.yaml", inputs[i], len, &errs);

		ck_assert_ptr_null(cfg);
		ck_assert_int_gt(errs.n, 0);
		for (size_t j = 0; j < errs.n; j++)
			ck_assert_msg(strncmp(errs.msgs[j], "fuzz.yaml", 9) == 0, "%s",
				      errs.msgs[j]);
		config_errors_free(&errs);
	}
}
END_TEST

START_TEST(test_helpers)
{
	struct config *cfg = load_ok(full_yaml);
	struct health_conf h;
	struct backend_conf b;
	struct tls_conf t;
	enum balance bal;

	health_conf_copy(&h, &cfg->pools[0].health);
	backend_conf_copy(&b, &cfg->pools[0].backends[1]);
	tls_conf_copy(&t, &cfg->admin.tls);
	config_free(cfg);
	ck_assert_str_eq(h.path, "/livez");
	ck_assert_str_eq(h.tls.sni, "kube");
	ck_assert_int_eq(h.interval_ms, 5000);
	ck_assert_str_eq(b.name, "m2");
	ck_assert_int_eq(b.weight, 256);
	ck_assert_int_eq(port_of(&b.addr), 6443);
	ck_assert_str_eq(t.key, "/a.key");
	health_conf_free(&h);
	backend_conf_free(&b);
	tls_conf_free(&t);
	ck_assert_ptr_null(h.path);
	ck_assert_ptr_null(b.name);

	ck_assert_str_eq(balance_name(BAL_SOURCE_HASH), "source_hash");
	ck_assert_int_eq(balance_parse("round_robin", &bal), 0);
	ck_assert_int_eq(bal, BAL_ROUND_ROBIN);
	ck_assert_int_eq(balance_parse("random", &bal), -1);
	ck_assert_str_eq(health_type_name(HC_TCP), "tcp");
	ck_assert_str_eq(health_type_name(HC_HTTPS), "https");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *good = tcase_create("good"), *bad = tcase_create("bad");

	tcase_add_test(good, test_full_config);
	tcase_add_test(good, test_defaults);
	tcase_add_test(good, test_freebind_default);
	tcase_add_test(good, test_tls_sni_certs);
	tcase_add_test(good, test_examples_load);
	tcase_add_test(good, test_demo_values);
	tcase_add_test(good, test_helpers);
	tcase_add_test(good, test_sockaddr_parse);
	tcase_add_test(good, test_name_rule);
	tcase_add_test(good, test_sockaddr_same);
	tcase_add_test(bad, test_load_file_errors);
	tcase_add_test(bad, test_unknown_key);
	tcase_add_test(bad, test_rebalance_needs_a_spreading_balance);
	tcase_add_test(bad, test_bad_duration);
	tcase_add_test(good, test_timeout_default_and_above_interval);
	tcase_add_test(bad, test_health_token_file);
	tcase_add_test(bad, test_duplicate_pool);
	tcase_add_test(bad, test_duplicate_backend);
	tcase_add_test(bad, test_bad_backend_names);
	tcase_add_test(bad, test_duplicate_backend_mapped_address);
	tcase_add_test(bad, test_missing_pool);
	tcase_add_test(bad, test_bad_addresses);
	tcase_add_test(bad, test_weight_range);
	tcase_add_test(bad, test_bad_balance);
	tcase_add_test(bad, test_haproxy_hints);
	tcase_add_test(good, test_host_names);
	tcase_add_test(bad, test_tls_mode_needs_cert);
	tcase_add_test(bad, test_yaml_syntax_error);
	tcase_add_test(bad, test_many_errors);
	tcase_add_test(bad, test_admin_listen_needs_token);
	tcase_add_test(bad, test_listener_bounds);
	tcase_add_test(bad, test_gate_quorum_pool);
	tcase_add_test(bad, test_gate_values);
	tcase_add_test(bad, test_structure_errors);
	tcase_add_test(bad, test_duplicate_frontend_and_listen);
	tcase_add_test(bad, test_garbage_does_not_crash);
	suite_add_tcase(s, good);
	suite_add_tcase(s, bad);
	return unit_run(s);
}
