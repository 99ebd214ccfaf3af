/* test_drain.c - drain's pod filters (pure) and pod/node decoding from API JSON. */
#include <check.h>

#include "tests/unit/unit.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "upgrade/drain.h"
#include "kube/kube.h"

static struct kube_pod pod(const char *owner, bool mirror, bool empty_dir, const char *phase)
{
	struct kube_pod p = {0};

	p.ns = (char *)"default";
	p.name = (char *)"p";
	p.uid = (char *)"u";
	p.phase = (char *)(phase ? phase : "Running");
	p.owner_kind = (char *)owner;
	p.owner_name = (char *)(owner ? "o" : NULL);
	p.mirror = mirror;
	p.empty_dir = empty_dir;
	return p;
}

static struct drain_opts opts(bool ds, bool emptydir, bool force)
{
	struct drain_opts o;

	drain_opts_init(&o);
	o.ignore_daemonsets = ds;
	o.delete_emptydir_data = emptydir;
	o.force = force;
	return o;
}

#define VERDICT(p, o, ds) drain_filter_pod(&(p), &(o), (ds)).verdict

START_TEST(test_defaults)
{
	struct drain_opts o;

	drain_opts_init(&o);
	ck_assert_int_eq(o.grace_period_s, -1);
	ck_assert_int_eq(o.retry_ms, 5000);
	ck_assert_int_eq(o.dry_run, DRAIN_DRY_NONE);
	ck_assert_ptr_null(o.pod_selector);
	ck_assert_int_eq(o.skip_wait_for_delete_timeout_s, 0);
	ck_assert(!o.cordoned);
	ck_assert_int_eq(o.timeout_ms, 0);
	ck_assert(!o.force && !o.ignore_daemonsets && !o.delete_emptydir_data);
}
END_TEST

START_TEST(test_replicaset_pod_is_evicted)
{
	struct kube_pod p = pod("ReplicaSet", false, false, NULL);
	struct drain_opts o = opts(false, false, false);
	struct drain_decision d = drain_filter_pod(&p, &o, DRAIN_OWNER_EXISTS);

	ck_assert_int_eq(d.verdict, DRAIN_POD_DELETE);
	ck_assert_ptr_null(d.message);
	p.owner_kind = (char *)"StatefulSet";
	ck_assert_int_eq(VERDICT(p, o, DRAIN_OWNER_EXISTS), DRAIN_POD_DELETE);
}
END_TEST

START_TEST(test_daemonset)
{
	struct kube_pod p = pod("DaemonSet", false, false, NULL);
	struct drain_opts o = opts(false, false, false);
	struct drain_decision d = drain_filter_pod(&p, &o, DRAIN_OWNER_EXISTS);

	ck_assert_int_eq(d.verdict, DRAIN_POD_REFUSE);
	ck_assert_str_eq(
	    d.message, "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)");
	o = opts(true, false, false);
	d = drain_filter_pod(&p, &o, DRAIN_OWNER_EXISTS);
	ck_assert_int_eq(d.verdict, DRAIN_POD_SKIP); /* never deleted */
	ck_assert_str_eq(d.message, "ignoring DaemonSet-managed Pods");
	/* even with force, an existing DaemonSet's pod is not deleted */
	o = opts(true, true, true);
	ck_assert_int_eq(VERDICT(p, o, DRAIN_OWNER_EXISTS), DRAIN_POD_SKIP);
	/* with emptyDir as well: the DaemonSet filter decides first */
	p.empty_dir = true;
	o = opts(true, false, false);
	ck_assert_int_eq(VERDICT(p, o, DRAIN_OWNER_EXISTS), DRAIN_POD_SKIP);
}
END_TEST

START_TEST(test_daemonset_missing)
{
	struct kube_pod p = pod("DaemonSet", false, false, NULL);
	struct drain_opts o = opts(true, false, false);

	ck_assert_int_eq(VERDICT(p, o, DRAIN_OWNER_MISSING), DRAIN_POD_REFUSE);
	o.force = true;
	ck_assert_int_eq(VERDICT(p, o, DRAIN_OWNER_MISSING), DRAIN_POD_DELETE);
	/* a finished DaemonSet pod is simply deleted */
	p = pod("DaemonSet", false, false, "Succeeded");
	o = opts(false, false, false);
	ck_assert_int_eq(VERDICT(p, o, DRAIN_OWNER_EXISTS), DRAIN_POD_DELETE);
}
END_TEST

START_TEST(test_mirror_skipped)
{
	struct kube_pod p = pod("Node", true, false, NULL);
	struct drain_opts o = opts(false, false, false);
	struct drain_decision d = drain_filter_pod(&p, &o, DRAIN_OWNER_EXISTS);

	ck_assert_int_eq(d.verdict, DRAIN_POD_SKIP);
	ck_assert_int_eq(d.filter, DRAIN_F_MIRROR);
	ck_assert_ptr_null(d.message);	 /* silently */
	p = pod(NULL, true, true, NULL); /* unmanaged with emptyDir, still just skipped */
	ck_assert_int_eq(VERDICT(p, o, DRAIN_OWNER_EXISTS), DRAIN_POD_SKIP);
}
END_TEST

START_TEST(test_empty_dir)
{
	struct kube_pod p = pod("ReplicaSet", false, true, NULL);
	struct drain_opts o = opts(false, false, false);
	struct drain_decision d = drain_filter_pod(&p, &o, DRAIN_OWNER_EXISTS);

	ck_assert_int_eq(d.verdict, DRAIN_POD_REFUSE);
	ck_assert_str_eq(d.message, "cannot delete Pods with local storage (use "
				    "--delete-emptydir-data to override)");
	o = opts(false, true, false);
	d = drain_filter_pod(&p, &o, DRAIN_OWNER_EXISTS);
	ck_assert_int_eq(d.verdict, DRAIN_POD_DELETE);
	/* kubectl keeps the last filter's status: the local-storage warning is
	 * dropped when the unmanaged filter is okay (real kubectl prints none). */
	ck_assert_ptr_null(d.message);
	p.owner_kind = NULL;
	o.force = true;
	d = drain_filter_pod(&p, &o, DRAIN_OWNER_EXISTS);
	ck_assert_int_eq(d.verdict, DRAIN_POD_DELETE);
	ck_assert_str_eq(d.message, "deleting Pods that declare no controller");
	/* a completed pod's emptyDir holds nothing anyone needs */
	p = pod("Job", false, true, "Succeeded");
	o = opts(false, false, false);
	ck_assert_int_eq(VERDICT(p, o, DRAIN_OWNER_EXISTS), DRAIN_POD_DELETE);
	/* unmanaged with emptyDir and the flag: still needs --force */
	p = pod(NULL, false, true, NULL);
	o = opts(false, true, false);
	ck_assert_int_eq(VERDICT(p, o, DRAIN_OWNER_EXISTS), DRAIN_POD_REFUSE);
	ck_assert_int_eq(drain_filter_pod(&p, &o, DRAIN_OWNER_EXISTS).filter, DRAIN_F_UNMANAGED);
}
END_TEST

START_TEST(test_unmanaged)
{
	struct kube_pod p = pod(NULL, false, false, NULL);
	struct drain_opts o = opts(true, true, false);
	struct drain_decision d = drain_filter_pod(&p, &o, DRAIN_OWNER_EXISTS);

	ck_assert_int_eq(d.verdict, DRAIN_POD_REFUSE);
	ck_assert_str_eq(d.message,
			 "cannot delete Pods that declare no controller (use --force to override)");
	o.force = true;
	d = drain_filter_pod(&p, &o, DRAIN_OWNER_EXISTS);
	ck_assert_int_eq(d.verdict, DRAIN_POD_DELETE);
	ck_assert_str_eq(d.message, "deleting Pods that declare no controller");
	p = pod(NULL, false, false, "Failed");
	o.force = false;
	ck_assert_int_eq(VERDICT(p, o, DRAIN_OWNER_EXISTS), DRAIN_POD_DELETE);
}
END_TEST

START_TEST(test_pod_from_json)
{
	json_error_t je;
	json_t *j = json_loads(
	    "{\"metadata\":{\"name\":\"web-1\",\"namespace\":\"prod\",\"uid\":\"U1\","
	    "\"deletionTimestamp\":\"2024-01-01T00:00:00Z\","
	    "\"annotations\":{\"kubernetes.io/config.mirror\":\"abc\"},"
	    "\"ownerReferences\":[{\"kind\":\"Foo\",\"name\":\"f\"},"
	    "{\"kind\":\"ReplicaSet\",\"name\":\"web\",\"controller\":true}]},"
	    "\"spec\":{\"nodeName\":\"n1\",\"volumes\":[{\"name\":\"t\",\"projected\":{}},"
	    "{\"name\":\"s\",\"emptyDir\":{}}]},"
	    "\"status\":{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\","
	    "\"status\":\"True\"}]}}",
	    0, &je);
	struct kube_pod p;

	ck_assert_ptr_nonnull(j);
	kube_pod_from_json(j, &p);
	ck_assert_str_eq(p.ns, "prod");
	ck_assert_str_eq(p.name, "web-1");
	ck_assert_str_eq(p.uid, "U1");
	ck_assert_str_eq(p.node, "n1");
	ck_assert_str_eq(p.owner_kind, "ReplicaSet"); /* the controller reference */
	ck_assert_str_eq(p.owner_name, "web");
	ck_assert(p.mirror && p.empty_dir && p.deleting && p.ready);
	/* --skip-wait-for-delete-timeout measures from it */
	ck_assert_str_eq(p.deletion_ts, "2024-01-01T00:00:00Z");
	kube_pod_clear(&p);
	ck_assert_ptr_null(p.deletion_ts);
	json_decref(j);

	j = json_loads("{\"metadata\":{\"name\":\"bare\"}}", 0, &je);
	kube_pod_from_json(j, &p);
	ck_assert_ptr_null(p.owner_kind);
	ck_assert(!p.mirror && !p.empty_dir && !p.deleting && !p.ready);
	ck_assert_ptr_null(p.deletion_ts);
	ck_assert_str_eq(p.ns, "default");
	kube_pod_clear(&p);
	json_decref(j);
}
END_TEST

START_TEST(test_node_from_json)
{
	json_error_t je;
	json_t *j = json_loads(
	    "{\"metadata\":{\"name\":\"m1\",\"labels\":{\"node-role.kubernetes.io/"
	    "control-plane\":\"true\",\"node-role.kubernetes.io/etcd\":\"true\",\"x\":\"y\"}},"
	    "\"spec\":{\"unschedulable\":true},"
	    "\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"Unknown\","
	    "\"reason\":\"NodeStatusUnknown\"}],\"addresses\":[{\"type\":\"Hostname\","
	    "\"address\":\"m1\"},{\"type\":\"InternalIP\",\"address\":\"10.0.0.1\"}],"
	    "\"nodeInfo\":{\"kubeletVersion\":\"v1.30.2\",\"bootID\":\"B\"}}}",
	    0, &je);
	struct kube_node n;

	ck_assert_ptr_nonnull(j);
	kube_node_from_json(j, &n);
	ck_assert_str_eq(n.name, "m1");
	ck_assert(!n.ready);
	ck_assert_str_eq(n.ready_reason, "NodeStatusUnknown");
	ck_assert(n.unschedulable);
	ck_assert_str_eq(n.kubelet_version, "v1.30.2");
	ck_assert_str_eq(n.boot_id, "B");
	ck_assert_str_eq(n.internal_ip, "10.0.0.1");
	ck_assert_ptr_nonnull(strstr(n.roles, "control-plane"));
	ck_assert_ptr_nonnull(strstr(n.roles, "etcd"));
	ck_assert_str_eq(json_string_value(json_object_get(n.labels, "x")), "y");
	kube_node_clear(&n);
	json_decref(j);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("drain");
	TCase *tc = tcase_create("filters");

	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_replicaset_pod_is_evicted);
	tcase_add_test(tc, test_daemonset);
	tcase_add_test(tc, test_daemonset_missing);
	tcase_add_test(tc, test_mirror_skipped);
	tcase_add_test(tc, test_empty_dir);
	tcase_add_test(tc, test_unmanaged);
	tcase_add_test(tc, test_pod_from_json);
	tcase_add_test(tc, test_node_from_json);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
