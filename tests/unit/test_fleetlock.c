/*
 * test_fleetlock.c - what the FleetLock front refuses before it asks the
 * gate: the route and method, the protocol header, the body's shape and
 * the group. Each refusal is a protocol error {"kind", "value"}. These all
 * come before authentication, so no gate is needed (g is NULL); the flows
 * with a gate are tests/integration/test_fleetlock.py.
 */
#include <check.h>
#include <string.h>

#include "gate/fleetlock.h"
#include "tests/unit/unit.h"

static int ask(const char *method, const char *path, const char *hdr, const char *body,
	       const char *want_kind, const char *want_text)
{
	json_t *out = NULL;
	int st = gate_fleetlock(NULL, method, path, hdr, NULL, body, body ? strlen(body) : 0, &out);
	const char *kind = json_string_value(json_object_get(out, "kind"));
	const char *value = json_string_value(json_object_get(out, "value"));

	ck_assert_ptr_nonnull(kind);
	ck_assert_ptr_nonnull(value);
	ck_assert(*kind && *value);
	ck_assert_uint_eq(json_object_size(out), 2);
	ck_assert_str_eq(kind, want_kind);
	if (want_text)
		ck_assert_msg(strstr(value, want_text), "'%s' lacks '%s'", value, want_text);
	json_decref(out);
	return st;
}

#define OK_BODY "{\"client_params\": {\"id\": \"worker-1\", \"group\": \"workers\"}}"

START_TEST(test_routes)
{
	ck_assert(gate_fleetlock_path("/v1/pre-reboot"));
	ck_assert(gate_fleetlock_path("/v1/steady-state"));
	ck_assert(!gate_fleetlock_path("/v1/pre-reboot/"));
	ck_assert(!gate_fleetlock_path("/v1/gate/leases"));
	ck_assert(!gate_fleetlock_path(NULL));
	ck_assert_int_eq(
	    ask("GET", "/v1/pre-reboot", "true", OK_BODY, "method_not_allowed", "POST"), 405);
	ck_assert_int_eq(ask("POST", "/v1/other", "true", OK_BODY, "not_found", NULL), 404);
}
END_TEST

START_TEST(test_header)
{
	ck_assert_int_eq(ask("POST", "/v1/pre-reboot", NULL, OK_BODY, "missing_fleet_lock_header",
			     "fleet-lock-protocol: true"),
			 400);
	ck_assert_int_eq(
	    ask("POST", "/v1/steady-state", "yes", OK_BODY, "missing_fleet_lock_header", NULL),
	    400);
}
END_TEST

START_TEST(test_body)
{
	ck_assert_int_eq(
	    ask("POST", "/v1/pre-reboot", "true", NULL, "bad_request", "client_params"), 400);
	ck_assert_int_eq(ask("POST", "/v1/pre-reboot", "true", "{", "bad_request", "not JSON"),
			 400);
	ck_assert_int_eq(
	    ask("POST", "/v1/pre-reboot", "true", "[1]", "bad_request", "client_params"), 400);
	ck_assert_int_eq(ask("POST", "/v1/pre-reboot", "true",
			     "{\"client_params\": {\"group\": \"workers\"}}", "bad_request",
			     "client_params.id"),
			 400);
	/* A Kubernetes node name: Zincati's default id has no place here unless
	 * it is the node's name. */
	ck_assert_int_eq(ask("POST", "/v1/pre-reboot", "true",
			     "{\"client_params\": {\"id\": \"Worker_1\", \"group\": \"workers\"}}",
			     "bad_request", "client_params.id"),
			 400);
	ck_assert_int_eq(ask("POST", "/v1/pre-reboot", "true",
			     "{\"client_params\": {\"id\": \"worker-1\"}}", "bad_request",
			     "client_params.group"),
			 400);
	ck_assert_int_eq(ask("POST", "/v1/pre-reboot", "true",
			     "{\"client_params\": {\"id\": \"worker-1\", \"group\": \"a b\"}}",
			     "bad_request", "client_params.group"),
			 400);
}
END_TEST

START_TEST(test_groups)
{
	ck_assert_int_eq(ask("POST", "/v1/pre-reboot", "true",
			     "{\"client_params\": {\"id\": \"worker-1\", \"group\": \"blue\"}}",
			     "bad_request", "unknown group 'blue'; the gate knows masters"),
			 400);
	/* Case matters, as in the protocol. */
	ck_assert_int_eq(ask("POST", "/v1/pre-reboot", "true",
			     "{\"client_params\": {\"id\": \"worker-1\", \"group\": \"Workers\"}}",
			     "bad_request", "unknown group"),
			 400);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fleetlock");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_routes);
	tcase_add_test(tc, test_header);
	tcase_add_test(tc, test_body);
	tcase_add_test(tc, test_groups);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
