/* test_gateconf.c - the gate settings as JSON (lbd -> gate process): round trip and bad input. */
#include <check.h>

#include "tests/unit/unit.h"
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"
#include "config/config.h"
#include "gate/conf.h"

/*
 * A tripwire, not a proof: a field added to struct gate_conf usually changes
 * its size. When this fails, add the field to gate_conf_dup(),
 * gate_conf_to_json(), gate_conf_from_json(), gate_conf_free() in config.c,
 * gate_conf_eq() below and full_yaml, then update the size.
 */
#if UINTPTR_MAX == 0xffffffffffffffffu
_Static_assert(
    sizeof(struct gate_conf) == 256,
    "struct gate_conf changed: update gate/conf.c's dup/to_json/from_json and this test");
#endif

#define POOL                                                                                       \
	"frontends:\n"                                                                             \
	"  - {name: vip, listen: \":6443\", pool: masters}\n"                                      \
	"pools:\n"                                                                                 \
	"  - name: masters\n"                                                                      \
	"    backends:\n"                                                                          \
	"      - {name: m1, address: 192.0.2.11:6443}\n"                                           \
	"      - {name: m2, address: 192.0.2.12:6443}\n"

/* Every setting of the gate section given, none at its default. */
static const char full_yaml[] =
    POOL "gate:\n"
	 "  listen: \"[::1]:9443\"\n"
	 "  tls:\n"
	 "    verify: false\n"
	 "    ca: /g/ca.crt\n"
	 "    cert: /g/gate.crt\n"
	 "    key: /g/gate.key\n"
	 "    sni: gate.example\n"
	 "    certs:\n"
	 "      - {cert: /g/a.crt, key: /g/a.key}\n"
	 "      - {cert: /g/b.crt, key: /g/b.key}\n"
	 "  tokens_file: /etc/lbd/gate-tokens\n"
	 "  max_connections: 500\n"
	 "  request_timeout: 2500ms\n"
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
	 "  require_all_nodes_ready: true\n"
	 "  windows:\n"
	 "    - {days: [sat, sun], start: \"01:00\", end: \"05:30\", tz: Europe/Berlin}\n"
	 "    - {start: \"22:00\", end: \"24:00\"}\n"
	 "  alerts: {prometheus_url: \"http://prom:9090\", filter: 'severity=\"critical\"'}\n"
	 "  lease_ttl: 1h\n"
	 "  soak: 90s\n"
	 "  members:\n"
	 "    node-a: {backend: m1, etcd: etcd-a}\n"
	 "    node-b: {etcd: etcd-b}\n"
	 "    node-c: {}\n";

static struct config *load(const char *yaml)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load_string("lbd.yaml", yaml, strlen(yaml), &errs);

	ck_assert_msg(cfg != NULL, "config should load, got: %s", errs.n ? errs.msgs[0] : "?");
	return cfg;
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool strv_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!str_eq(a[i], b[i]))
			return false;
	return true;
}

static bool tls_eq(const struct tls_conf *x, const struct tls_conf *y)
{
	if (x->verify != y->verify || !str_eq(x->ca, y->ca) || !str_eq(x->cert, y->cert) ||
	    !str_eq(x->key, y->key) || !str_eq(x->sni, y->sni) || x->ncerts != y->ncerts)
		return false;
	for (size_t i = 0; i < x->ncerts; i++)
		if (!str_eq(x->certs[i].cert, y->certs[i].cert) ||
		    !str_eq(x->certs[i].key, y->certs[i].key))
			return false;
	return true;
}

/* Every field of struct gate_conf, one by one; names the first that differs. */
static const char *gate_conf_diff(const struct gate_conf *a, const struct gate_conf *b)
{
	if (a->enabled != b->enabled)
		return "enabled";
	if (!a->listen != !b->listen)
		return "listen";
	if (a->listen &&
	    (!str_eq(a->listen->text, b->listen->text) || a->listen->len != b->listen->len ||
	     memcmp(&a->listen->ss, &b->listen->ss, a->listen->len) != 0))
		return "listen";
	if (!tls_eq(&a->tls, &b->tls))
		return "tls";
	if (!str_eq(a->tokens_file, b->tokens_file))
		return "tokens_file";
	if (a->max_connections != b->max_connections)
		return "max_connections";
	if (a->request_timeout_ms != b->request_timeout_ms)
		return "request_timeout_ms";
	if (a->store != b->store)
		return "store";
	if (a->conc_masters != b->conc_masters || a->conc_workers != b->conc_workers)
		return "concurrency";
	if (a->nper_label != b->nper_label)
		return "per_label";
	for (size_t i = 0; i < a->nper_label; i++)
		if (!str_eq(a->per_label[i].label, b->per_label[i].label) ||
		    a->per_label[i].max != b->per_label[i].max)
			return "per_label";
	if (!str_eq(a->quorum_pool, b->quorum_pool))
		return "quorum_pool";
	if (!strv_eq(a->etcd_endpoints, a->netcd_endpoints, b->etcd_endpoints, b->netcd_endpoints))
		return "etcd_endpoints";
	if (!str_eq(a->etcd_ca, b->etcd_ca) || !str_eq(a->etcd_cert, b->etcd_cert) ||
	    !str_eq(a->etcd_key, b->etcd_key))
		return "etcd files";
	if (!str_eq(a->kubeconfig, b->kubeconfig))
		return "kubeconfig";
	if (a->require_all_nodes_ready != b->require_all_nodes_ready)
		return "require_all_nodes_ready";
	if (a->nwindows != b->nwindows)
		return "windows";
	for (size_t i = 0; i < a->nwindows; i++) {
		const struct gate_window *x = &a->windows[i], *y = &b->windows[i];
		if (!strv_eq(x->days, x->ndays, y->days, y->ndays) || !str_eq(x->start, y->start) ||
		    !str_eq(x->end, y->end) || !str_eq(x->tz, y->tz))
			return "windows";
	}
	if (!str_eq(a->alerts_prometheus_url, b->alerts_prometheus_url) ||
	    !str_eq(a->alerts_filter, b->alerts_filter))
		return "alerts";
	if (a->lease_ttl_ms != b->lease_ttl_ms)
		return "lease_ttl_ms";
	if (a->soak_ms != b->soak_ms)
		return "soak_ms";
	if (a->nmembers != b->nmembers)
		return "members";
	for (size_t i = 0; i < a->nmembers; i++)
		if (!str_eq(a->members[i].node, b->members[i].node) ||
		    !str_eq(a->members[i].backend, b->members[i].backend) ||
		    !str_eq(a->members[i].etcd, b->members[i].etcd))
			return "members";
	return NULL;
}

/* to_json, through text as over the socketpair, and from_json back. */
static struct config *round_trip(const struct gate_conf *g)
{
	json_t *j = gate_conf_to_json(g), *back;
	struct config *out;
	char *text, *err = NULL;

	ck_assert_ptr_nonnull(j);
	text = json_dumps(j, JSON_COMPACT);
	ck_assert_ptr_nonnull(text);
	back = json_loads(text, 0, NULL);
	ck_assert_ptr_nonnull(back);
	out = gate_conf_from_json(back, &err);
	ck_assert_msg(out != NULL, "from_json: %s", err ? err : "?");
	ck_assert_ptr_null(err);
	json_decref(j);
	json_decref(back);
	free(text);
	return out;
}

static void expect_round_trip(const char *yaml)
{
	struct config *cfg = load(yaml), *back = round_trip(&cfg->gate);
	const char *diff = gate_conf_diff(&cfg->gate, &back->gate);

	ck_assert_msg(diff == NULL, "round trip changed %s", diff);
	/* The module's own comparisons agree. */
	ck_assert_ptr_null(gate_conf_changes(&cfg->gate, &back->gate));
	ck_assert(gate_conf_listen_eq(&cfg->gate, &back->gate));
	ck_assert(gate_conf_tls_eq(&cfg->gate, &back->gate));
	config_free(back);
	config_free(cfg);
}

START_TEST(test_round_trip_full)
{
	struct config *cfg = load(full_yaml);
	const struct gate_conf *g = &cfg->gate;

	/* The file did set what the round trip is meant to carry. */
	ck_assert(g->enabled);
	ck_assert_ptr_nonnull(g->listen);
	ck_assert_int_eq(g->tls.ncerts, 2);
	ck_assert(!g->tls.verify);
	ck_assert_int_eq(g->max_connections, 500);
	ck_assert_int_eq(g->request_timeout_ms, 2500);
	ck_assert_int_eq(g->store, GATE_STORE_KUBERNETES);
	ck_assert_int_eq(g->nper_label, 2);
	ck_assert_int_eq(g->netcd_endpoints, 2);
	ck_assert_int_eq(g->nwindows, 2);
	ck_assert_int_eq(g->windows[1].ndays, 7);
	ck_assert_int_eq(g->nmembers, 3);
	ck_assert_ptr_null(g->members[2].backend);
	config_free(cfg);
	expect_round_trip(full_yaml);
}
END_TEST

START_TEST(test_round_trip_defaults)
{
	/* An empty gate section: no listen, nulls everywhere, empty lists. */
	expect_round_trip(POOL "gate:\n");
	/* No gate section at all. */
	expect_round_trip(POOL);
	/* IPv4 any. */
	expect_round_trip(POOL "gate: {listen: \":9443\"}\n");
}
END_TEST

START_TEST(test_json_shape)
{
	struct config *cfg = load(full_yaml);
	json_t *j = gate_conf_to_json(&cfg->gate);

	ck_assert_str_eq(json_string_value(json_object_get(j, "listen")), "[::1]:9443");
	ck_assert_str_eq(json_string_value(json_object_get(j, "store")), "kubernetes");
	ck_assert_int_eq(json_integer_value(json_object_get(j, "request_timeout_ms")), 2500);
	ck_assert(json_is_null(
	    json_object_get(json_array_get(json_object_get(j, "members"), 2), "backend")));
	json_decref(j);
	config_free(cfg);
}
END_TEST

/* from_json(o) must fail, with an error that contains want. */
static void expect_bad(json_t *o, const char *want)
{
	char *err = NULL;
	struct config *cfg = gate_conf_from_json(o, &err);

	ck_assert_msg(cfg == NULL, "should be refused: %s", want);
	ck_assert_ptr_nonnull(err);
	ck_assert_msg(strstr(err, want) != NULL, "error '%s' does not say '%s'", err, want);
	free(err);
}

/* The full settings as JSON, to spoil one part of. */
static json_t *good_json(void)
{
	struct config *cfg = load(full_yaml);
	json_t *j = gate_conf_to_json(&cfg->gate);

	config_free(cfg);
	ck_assert_ptr_nonnull(j);
	return j;
}

/* The value under key in j, which the test expects to be there. */
static json_t *member(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);
	ck_assert_msg(v != NULL, "no key %s", key);
	return v;
}

START_TEST(test_bad_top_level)
{
	json_t *j = json_array();

	expect_bad(NULL, "gate settings: none given");
	expect_bad(j, "gate settings: expected an object, got an array");
	json_decref(j);

	j = good_json();
	json_object_set_new(j, "extra", json_true());
	expect_bad(j, "gate settings: unknown key \"extra\"");
	json_decref(j);
}
END_TEST

/* Every key, left out or of the wrong type, is refused and named. */
START_TEST(test_every_key_checked)
{
	json_t *keys = good_json(), *v;
	const char *key;

	json_object_foreach(keys, key, v)
	{
		json_t *j = good_json();
		char want[128];

		json_object_del(j, key);
		snprintf(want, sizeof(want), "gate settings: %s: missing", key);
		expect_bad(j, want);

		/* Nothing in the settings is an object holding {"?": 1}. */
		json_object_set_new(j, key, json_pack("{s:i}", "?", 1));
		snprintf(want, sizeof(want), "gate settings: %s", key);
		expect_bad(j, want);
		json_decref(j);
	}
	json_decref(keys);
}
END_TEST

START_TEST(test_bad_values)
{
	json_t *j;

	j = good_json();
	json_object_set_new(j, "listen", json_string("nope:99999"));
	expect_bad(j, "gate settings: listen: invalid address \"nope:99999\"");
	json_decref(j);

	j = good_json();
	json_object_set_new(j, "listen", json_integer(9443));
	expect_bad(j, "gate settings: listen: expected an address or null, got an integer");
	json_decref(j);

	j = good_json();
	json_object_set_new(j, "max_connections", json_integer(0));
	expect_bad(j, "gate settings: max_connections: 0 is out of range (1..65535)");
	json_decref(j);

	j = good_json();
	json_object_set_new(j, "conc_workers", json_integer(1LL << 40));
	expect_bad(j, "gate settings: conc_workers: 1099511627776 is out of range");
	json_decref(j);

	j = good_json();
	json_object_set_new(j, "request_timeout_ms", json_real(1500.5));
	expect_bad(j, "gate settings: request_timeout_ms: expected an integer, got a number");
	json_decref(j);

	j = good_json();
	json_object_set_new(j, "lease_ttl_ms", json_integer(-1));
	expect_bad(j, "gate settings: lease_ttl_ms: -1 is out of range");
	json_decref(j);

	j = good_json();
	json_object_set_new(j, "store", json_string("etcd"));
	expect_bad(j, "gate settings: store: expected \"file\" or \"kubernetes\", got another "
		      "string");
	json_decref(j);

	j = good_json();
	json_object_set_new(j, "enabled", json_string("yes"));
	expect_bad(j, "gate settings: enabled: expected a boolean, got a string");
	json_decref(j);

	j = good_json();
	json_object_set_new(j, "tokens_file", json_false());
	expect_bad(j, "gate settings: tokens_file: expected a string or null, got a boolean");
	json_decref(j);

	j = good_json();
	json_array_set_new(member(j, "etcd_endpoints"), 1, json_null());
	expect_bad(j, "gate settings: etcd_endpoints[1]: expected a string, got null");
	json_decref(j);
}
END_TEST

START_TEST(test_bad_nested)
{
	json_t *j;

	j = good_json();
	json_object_set_new(json_array_get(member(member(j, "tls"), "certs"), 1), "key",
			    json_integer(5));
	expect_bad(j, "gate settings: tls.certs[1].key: expected a string or null, got an integer");
	json_decref(j);

	j = good_json();
	json_object_del(member(j, "tls"), "sni");
	expect_bad(j, "gate settings: tls.sni: missing");
	json_decref(j);

	j = good_json();
	json_array_append_new(member(member(j, "tls"), "certs"), json_string("/x.crt"));
	expect_bad(j, "gate settings: tls.certs[2]: expected an object, got a string");
	json_decref(j);

	j = good_json();
	json_object_set_new(json_array_get(member(j, "windows"), 0), "days", json_string("mon"));
	expect_bad(j, "gate settings: windows[0].days: expected an array, got a string");
	json_decref(j);

	j = good_json();
	json_array_set_new(member(json_array_get(member(j, "windows"), 0), "days"), 1,
			   json_string("sunday"));
	expect_bad(j, "gate settings: windows[0].days[1]: expected a day (mon..sun), got "
		      "\"sunday\"");
	json_decref(j);

	j = good_json();
	json_object_set_new(json_array_get(member(j, "windows"), 1), "start", json_null());
	expect_bad(j, "gate settings: windows[1].start: expected a string, got null");
	json_decref(j);

	j = good_json();
	json_object_set_new(json_array_get(member(j, "members"), 2), "node", json_null());
	expect_bad(j, "gate settings: members[2].node: expected a string, got null");
	json_decref(j);

	j = good_json();
	json_object_set_new(json_array_get(member(j, "members"), 0), "zone", json_null());
	expect_bad(j, "gate settings: members[0]: unknown key \"zone\"");
	json_decref(j);

	j = good_json();
	json_object_set_new(json_array_get(member(j, "per_label"), 1), "max", json_string("3"));
	expect_bad(j, "gate settings: per_label[1].max: expected an integer, got a string");
	json_decref(j);

	j = good_json();
	json_object_set_new(json_array_get(member(j, "per_label"), 0), "max", json_integer(0));
	expect_bad(j, "gate settings: per_label[0].max: 0 is out of range");
	json_decref(j);
}
END_TEST

/* Whatever the bytes, from_json answers (the suite runs forked: a crash fails it). */
START_TEST(test_garbage_does_not_crash)
{
	static const char *const texts[] = {
	    "{}",
	    "null",
	    "[]",
	    "\"gate\"",
	    "{\"tls\": null}",
	    "{\"enabled\": true, \"listen\": null, \"tls\": []}",
	    "{\"enabled\": true, \"listen\": \"\", \"tls\": {}}",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		json_t *j = json_loads(texts[i], JSON_DECODE_ANY, NULL);
		char *err = NULL;
		struct config *cfg;

		ck_assert_ptr_nonnull(j);
		cfg = gate_conf_from_json(j, &err);
		ck_assert_msg(cfg == NULL, "accepted %s", texts[i]);
		ck_assert_ptr_nonnull(err);
		free(err);
		json_decref(j);
	}
	/* Each part of the good settings replaced by each kind of value. */
	{
		json_t *kinds[] = {json_null(),	    json_true(),  json_integer(-1), json_real(0.5),
				   json_string(""), json_array(), json_object()};
		json_t *keys = good_json(), *v;
		const char *key;

		json_object_foreach(keys, key, v)
		{
			for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
				json_t *j = good_json();
				char *err = NULL;
				struct config *cfg;

				json_object_set(j, key, kinds[k]);
				cfg = gate_conf_from_json(j, &err);
				ck_assert(!cfg == !!err);
				config_free(cfg);
				free(err);
				json_decref(j);
			}
		}
		json_decref(keys);
		for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
			json_decref(kinds[k]);
	}
	/* A NULL err is allowed. */
	ck_assert_ptr_null(gate_conf_from_json(NULL, NULL));
}
END_TEST

static Suite *gateconf_suite(void)
{
	Suite *s = suite_create("gateconf");
	TCase *good = tcase_create("round trip"), *bad = tcase_create("bad input");

	tcase_add_test(good, test_round_trip_full);
	tcase_add_test(good, test_round_trip_defaults);
	tcase_add_test(good, test_json_shape);
	tcase_add_test(bad, test_bad_top_level);
	tcase_add_test(bad, test_every_key_checked);
	tcase_add_test(bad, test_bad_values);
	tcase_add_test(bad, test_bad_nested);
	tcase_add_test(bad, test_garbage_does_not_crash);
	suite_add_tcase(s, good);
	suite_add_tcase(s, bad);
	return s;
}

int main(void)
{
	return unit_run(gateconf_suite());
}
