/*
 * cmd_node.c - lbctl node list | cordon | uncordon | drain.
 *
 * Talks to the apiserver named by the kubeconfig (--kubeconfig/--context,
 * global options), with kube/kube.c; drain is upgrade/drain.c, which
 * behaves as `kubectl drain`. Progress goes to stdout as kubectl prints it
 * (to stderr with -o json, where stdout carries only the final JSON).
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/duration.h"
#include "common/xmalloc.h"
#include "lbctl/lbctl.h"
#include "upgrade/drain.h"
#include "kube/kube.h"
#include "kube/kubeconfig.h"

static const char NODE_HELP[] =
    "NAME\n"
    "    lbctl node - list, cordon, uncordon and drain Kubernetes nodes\n\n"
    "SYNOPSIS\n"
    "    lbctl [--kubeconfig FILE] [--context NAME] [-o json] node list\n"
    "    lbctl ... node cordon NODE\n"
    "    lbctl ... node uncordon NODE\n"
    "    lbctl ... node drain NODE... [--ignore-daemonsets] [--delete-emptydir-data]\n"
    "              [--force] [--grace-period S] [--timeout D] [--disable-eviction]\n"
    "              [--pod-selector SEL] [--dry-run[=client|server]]\n"
    "              [--skip-wait-for-delete-timeout S]\n\n"
    "DESCRIPTION\n"
    "    Reads the kubeconfig as kubectl does: --kubeconfig, else the first file\n"
    "    of $KUBECONFIG (later ones are not merged), else ~/.kube/config;\n"
    "    --context, else current-context. k3s's /etc/rancher/k3s/k3s.yaml works.\n"
    "    'lbctl node VERB --help' describes each verb.\n\n"
    "EXIT STATUS\n"
    "    0 ok, 1 error (or pods refused by drain), 2 usage, 4 drain timed out\n";

static const char LIST_HELP[] =
    "NAME\n"
    "    lbctl node list - the cluster's nodes\n\n"
    "SYNOPSIS\n"
    "    lbctl [-o json] node list\n\n"
    "DESCRIPTION\n"
    "    One line per node: NAME, STATUS (Ready/NotReady, with\n"
    "    SchedulingDisabled when cordoned), ROLES, VERSION (kubelet),\n"
    "    INTERNAL-IP and BOOT-ID (changes when the node reboots).\n"
    "    With -o json: an array of {name, ready, readyReason, unschedulable,\n"
    "    roles, kubeletVersion, bootID, internalIP, labels}.\n";

static const char CORDON_HELP[] =
    "NAME\n"
    "    lbctl node cordon|uncordon - mark a node (un)schedulable\n\n"
    "SYNOPSIS\n"
    "    lbctl node cordon NODE\n"
    "    lbctl node uncordon NODE\n\n"
    "DESCRIPTION\n"
    "    Sets or clears spec.unschedulable with the strategic-merge patch\n"
    "    kubectl cordon sends. Doing it twice is not an error ('already\n"
    "    cordoned'). With -o json: {node, unschedulable, changed}.\n";

static const char DRAIN_HELP[] =
    "NAME\n"
    "    lbctl node drain - cordon nodes and evict their pods, as kubectl drain\n\n"
    "SYNOPSIS\n"
    "    lbctl node drain NODE... [OPTIONS]\n\n"
    "DESCRIPTION\n"
    "    Cordons every NODE, then drains them one after another: lists the\n"
    "    node's pods once and evicts them all in parallel through the Eviction\n"
    "    API, which honours PodDisruptionBudgets. An eviction refused with 429\n"
    "    is retried after the answer's Retry-After, else every 5s, until\n"
    "    --timeout. Waits until each pod is gone. A pod that arrives on the\n"
    "    node after the listing is left alone, as kubectl leaves it. Mirror\n"
    "    (static) pods are skipped. Nothing is evicted if some pod is refused:\n"
    "    DaemonSet pods without --ignore-daemonsets, pods with emptyDir volumes\n"
    "    without --delete-emptydir-data, pods without a controller without\n"
    "    --force. A node stays cordoned whatever happens. When a node cannot be\n"
    "    drained the others still are, and the ones left are listed at the end.\n\n"
    "OPTIONS\n"
    "    --ignore-daemonsets     leave DaemonSet pods (never deleted)\n"
    "    --delete-emptydir-data  evict pods with emptyDir volumes (data lost)\n"
    "    --force                 evict pods no controller will re-create\n"
    "    --grace-period S        seconds for each pod to stop; -1 (default):\n"
    "                            the pod's own terminationGracePeriodSeconds\n"
    "    --timeout D             give up after D (\"90s\", \"5m\"); 0 = never\n"
    "                            (default)\n"
    "    --disable-eviction      DELETE pods instead of evicting them: bypasses\n"
    "                            PodDisruptionBudgets\n"
    "    --retry-interval D      wait between evictions refused by a PDB (5s)\n"
    "    --pod-selector SEL      only the pods matching this label selector\n"
    "                            (\"app=web\", \"tier!=db,canary\")\n"
    "    --dry-run[=client|server]\n"
    "                            client (the default with no value): change\n"
    "                            nothing, print what would be cordoned and\n"
    "                            evicted; server: send the cordon and the\n"
    "                            evictions with dryRun=All, so the apiserver\n"
    "                            checks them (PDBs, rights) and stores nothing;\n"
    "                            none: a real drain\n"
    "    --skip-wait-for-delete-timeout S\n"
    "                            do not wait for a pod that has been terminating\n"
    "                            for more than S seconds (0: always wait)\n\n"
    "OUTPUT\n"
    "    Progress as kubectl prints it (\"node/N cordoned\", \"evicting pod NS/P\",\n"
    "    \"pod/P evicted\", \"node/N drained\", with \" (dry run)\" or\n"
    "    \" (server dry run)\" in a dry run). On timeout, the pods left and\n"
    "    whether a PodDisruptionBudget blocks each. With -o json, progress goes\n"
    "    to stderr and stdout gets {node, status: drained|refused|timeout|failed,\n"
    "    evicted, skipped, error, left: [{namespace, name, pdbBlocked, reason}]}\n"
    "    (an array of them for several nodes).\n\n"
    "EXIT STATUS\n"
    "    0 every node drained, 1 a node refused or failed, 2 usage, 4 a node\n"
    "    timed out (and none failed)\n";

static bool wants_help(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return true;
	return false;
}

static struct kube *connect_kube(const struct lbctl_opts *o)
{
	struct kubeconfig kc;
	struct kube *k;
	char *err = NULL;

	if (kubeconfig_load(o->kubeconfig, o->context, &kc, &err) < 0) {
		fprintf(stderr, "lbctl: %s\n", err);
		free(err);
		return NULL;
	}
	k = kube_new(&kc);
	kubeconfig_free(&kc);
	return k;
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2));

	printf("%s\n", s);
	free(s);
	json_decref(j);
}

static void kube_fail(const char *what, const struct kube_err *e)
{
	char buf[700];

	fprintf(stderr, "lbctl: %s: %s\n", what, kube_err_str(e, buf, sizeof(buf)));
}

static int node_list(struct kube *k, bool json)
{
	struct kube_node_list l;
	struct kube_err e;

	if (kube_node_list(k, &l, &e) < 0) {
		kube_fail("listing nodes", &e);
		return EXIT_ERROR;
	}
	if (json) {
		json_t *arr = json_array();
		for (size_t i = 0; i < l.n; i++) {
			struct kube_node *n = &l.v[i];
			json_array_append_new(
			    arr, json_pack("{s:s,s:b,s:s?,s:b,s:s,s:s?,s:s?,s:s?,s:O}", "name",
					   n->name ? n->name : "", "ready", n->ready, "readyReason",
					   n->ready_reason, "unschedulable", n->unschedulable,
					   "roles", n->roles, "kubeletVersion", n->kubelet_version,
					   "bootID", n->boot_id, "internalIP", n->internal_ip,
					   "labels", n->labels));
		}
		print_json(arr);
	} else {
		int wn = 4, wr = 5, wv = 7;
		for (size_t i = 0; i < l.n; i++) {
			struct kube_node *n = &l.v[i];
			if (n->name && (int)strlen(n->name) > wn)
				wn = (int)strlen(n->name);
			if ((int)strlen(n->roles) > wr)
				wr = (int)strlen(n->roles);
			if (n->kubelet_version && (int)strlen(n->kubelet_version) > wv)
				wv = (int)strlen(n->kubelet_version);
		}
		printf("%-*s   %-26s %-*s   %-*s   %-15s %s\n", wn, "NAME", "STATUS", wr, "ROLES",
		       wv, "VERSION", "INTERNAL-IP", "BOOT-ID");
		for (size_t i = 0; i < l.n; i++) {
			struct kube_node *n = &l.v[i];
			char status[64];
			snprintf(status, sizeof(status), "%s%s", n->ready ? "Ready" : "NotReady",
				 n->unschedulable ? ",SchedulingDisabled" : "");
			printf("%-*s   %-26s %-*s   %-*s   %-15s %s\n", wn, n->name ? n->name : "",
			       status, wr, *n->roles ? n->roles : "<none>", wv,
			       n->kubelet_version ? n->kubelet_version : "<unknown>",
			       n->internal_ip ? n->internal_ip : "<none>",
			       n->boot_id ? n->boot_id : "<none>");
		}
	}
	kube_node_list_free(&l);
	return EXIT_OK;
}

static int node_cordon(struct kube *k, const char *node, bool on, bool json)
{
	struct kube_err e;
	bool changed;

	if (drain_cordon(k, node, on, &changed, &e) < 0) {
		char what[300];
		snprintf(what, sizeof(what), "%s %s", on ? "cordon" : "uncordon", node);
		kube_fail(what, &e);
		return EXIT_ERROR;
	}
	if (json)
		print_json(json_pack("{s:s,s:b,s:b}", "node", node, "unschedulable", on, "changed",
				     changed));
	else
		printf("node/%s %s%s\n", node, changed ? "" : "already ",
		       on ? "cordoned" : "uncordoned");
	return EXIT_OK;
}

static void drain_progress(void *arg, enum drain_event ev, const char *ns, const char *name,
			   const char *msg)
{
	FILE *f = arg;

	switch (ev) {
	case DRAIN_EV_CORDONED:
		fprintf(f, "node/%s cordoned%s%s\n", name, msg ? " " : "", msg ? msg : "");
		break;
	case DRAIN_EV_ALREADY_CORDONED:
		fprintf(f, "node/%s already cordoned%s%s\n", name, msg ? " " : "", msg ? msg : "");
		break;
	case DRAIN_EV_WARNING:
		fprintf(stderr, "Warning: %s\n", msg);
		break;
	case DRAIN_EV_EVICTING:
		fprintf(f, "evicting pod %s/%s%s%s\n", ns, name, msg ? " " : "", msg ? msg : "");
		break;
	case DRAIN_EV_DELETING:
		fprintf(f, "deleting pod %s/%s%s%s\n", ns, name, msg ? " " : "", msg ? msg : "");
		break;
	case DRAIN_EV_RETRY:
		/* msg: "(will retry after 5s): why" */
		fprintf(stderr, "error when evicting pods/\"%s\" -n \"%s\" %s\n", name, ns, msg);
		break;
	case DRAIN_EV_GONE:
		fprintf(f, "pod/%s %s\n", name, msg);
		break;
	case DRAIN_EV_DRAINED:
		fprintf(f, "node/%s drained%s%s\n", name, msg ? " " : "", msg ? msg : "");
		break;
	}
	fflush(f);
}

static int parse_timeout(const char *s, int64_t *ms)
{
	char *end;
	long v;

	if (duration_parse(s, ms) == 0)
		return 0;
	v = strtol(s, &end, 10); /* kubectl takes a bare 0 for "no limit" */
	if (*s && !*end && v == 0) {
		*ms = 0;
		return 0;
	}
	return -1;
}

static json_t *drain_json(const char *node, const struct drain_result *r)
{
	static const char *names[] = {"drained", "refused", "timeout", "failed"};
	json_t *left = json_array();

	for (size_t i = 0; i < r->nleft; i++)
		json_array_append_new(left,
				      json_pack("{s:s,s:s,s:b,s:s}", "namespace", r->left[i].ns,
						"name", r->left[i].name, "pdbBlocked",
						r->left[i].pdb_blocked, "reason", r->left[i].why));
	return json_pack("{s:s,s:s,s:I,s:I,s:s?,s:o}", "node", node, "status", names[r->status],
			 "evicted", (json_int_t)r->evicted, "skipped", (json_int_t)r->skipped,
			 "error", r->error, "left", left);
}

/* r->error without drain's 'unable to drain node "N": ' (kubectl says it its own way). */
static const char *drain_why(const char *node, const char *error)
{
	char *prefix = xasprintf("unable to drain node \"%s\": ", node);
	size_t n = strlen(prefix);
	const char *why = strncmp(error, prefix, n) == 0 ? error + n : error;

	free(prefix);
	return why;
}

static int parse_drain_opts(int argc, char **argv, struct drain_opts *o, bool *json)
{
	static const struct option longopts[] = {
	    {"ignore-daemonsets", no_argument, NULL, 'd'},
	    {"delete-emptydir-data", no_argument, NULL, 'e'},
	    {"force", no_argument, NULL, 'f'},
	    {"grace-period", required_argument, NULL, 'g'},
	    {"timeout", required_argument, NULL, 't'},
	    {"disable-eviction", no_argument, NULL, 'x'},
	    {"retry-interval", required_argument, NULL, 'r'},
	    {"pod-selector", required_argument, NULL, 'p'},
	    {"dry-run", optional_argument, NULL, 'n'},
	    {"skip-wait-for-delete-timeout", required_argument, NULL, 's'},
	    {"output", required_argument, NULL, 'o'},
	    {NULL, 0, NULL, 0},
	};
	char *end;
	long v;
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o->ignore_daemonsets = true;
			break;
		case 'e':
			o->delete_emptydir_data = true;
			break;
		case 'f':
			o->force = true;
			break;
		case 'x':
			o->disable_eviction = true;
			break;
		case 'g':
			o->grace_period_s = (int)strtol(optarg, &end, 10);
			if (!*optarg || *end || o->grace_period_s < -1) {
				fprintf(stderr, "lbctl: --grace-period takes seconds (-1: the "
						"pod's own)\n");
				return -1;
			}
			break;
		case 't':
			if (parse_timeout(optarg, &o->timeout_ms) < 0) {
				fprintf(stderr, "lbctl: --timeout takes a duration such as 90s "
						"or 5m\n");
				return -1;
			}
			break;
		case 'r':
			if (duration_parse(optarg, &o->retry_ms) < 0 || o->retry_ms <= 0) {
				fprintf(stderr, "lbctl: --retry-interval takes a duration\n");
				return -1;
			}
			if (o->poll_ms > o->retry_ms)
				o->poll_ms = o->retry_ms;
			break;
		case 'p':
			if (!*optarg || strpbrk(optarg, " \t\r\n")) {
				fprintf(stderr, "lbctl: --pod-selector takes a label selector such "
						"as app=web\n");
				return -1;
			}
			o->pod_selector = optarg;
			break;
		case 'n':
			if (!optarg || strcmp(optarg, "client") == 0)
				o->dry_run = DRAIN_DRY_CLIENT;
			else if (strcmp(optarg, "server") == 0)
				o->dry_run = DRAIN_DRY_SERVER;
			else if (strcmp(optarg, "none") == 0)
				o->dry_run = DRAIN_DRY_NONE;
			else {
				fprintf(stderr,
					"lbctl: invalid dry-run value (%s): must be "
					"\"none\", \"server\", or \"client\"\n",
					optarg);
				return -1;
			}
			break;
		case 's':
			v = strtol(optarg, &end, 10);
			if (!*optarg || *end || v < 0 || v > 86400 * 365) {
				fprintf(stderr, "lbctl: --skip-wait-for-delete-timeout takes "
						"seconds\n");
				return -1;
			}
			o->skip_wait_for_delete_timeout_s = (int)v;
			break;
		case 'o':
			*json = strcmp(optarg, "json") == 0;
			break;
		default:
			fputs(DRAIN_HELP, stderr);
			return -1;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "lbctl: node drain takes one NODE or more (see lbctl node drain "
				"--help)\n");
		return -1;
	}
	return 0;
}

/*
 * As kubectl drain: cordon every node first, then drain each in turn; a node
 * that fails is reported ("continuing command...") and the others are still
 * drained; the ones left are listed at the end.
 */
static int node_drain(const struct lbctl_opts *lo, int argc, char **argv, bool json)
{
	FILE *out = NULL;
	struct drain_opts o;
	struct kube *k;
	json_t *results;
	bool failed = false, timed_out = false;
	char **pending, *whys = NULL;
	size_t npending = 0;
	int first;

	drain_opts_init(&o);
	if (parse_drain_opts(argc, argv, &o, &json) < 0)
		return EXIT_USAGE;
	first = optind;
	out = json ? stderr : stdout;
	k = connect_kube(lo);
	if (!k)
		return EXIT_ERROR;
	results = json_array();
	pending = xcalloc((size_t)(argc - first), sizeof(*pending));
	for (int i = first; i < argc; i++) {
		char *err = NULL;
		if (drain_cordon_node(k, argv[i], &o, drain_progress, out, &err) < 0) {
			fprintf(stderr, "error: %s\n", err);
			free(err);
			json_decref(results);
			free(pending);
			kube_free(&k);
			return EXIT_ERROR;
		}
	}
	o.cordoned = true;
	for (int i = first; i < argc; i++) {
		struct drain_result r;
		int rc = drain_node(k, argv[i], &o, drain_progress, out, &r);

		json_array_append_new(results, drain_json(argv[i], &r));
		if (rc != DRAIN_OK) {
			fprintf(stderr,
				"error: unable to drain node \"%s\" due to error: %s, continuing "
				"command...\n",
				argv[i], r.error ? drain_why(argv[i], r.error) : "unknown");
			pending[npending++] = argv[i];
			char *w = xasprintf("%s%s%s", whys ? whys : "", whys ? ", " : "",
					    r.error ? drain_why(argv[i], r.error) : "unknown");
			free(whys);
			whys = w;
			if (rc == DRAIN_TIMEOUT)
				timed_out = true;
			else
				failed = true;
		}
		drain_result_free(&r);
	}
	if (npending) {
		fprintf(stderr, "There are pending nodes to be drained:\n");
		for (size_t i = 0; i < npending; i++)
			fprintf(stderr, " %s\n", pending[i]);
		/* kubectl's aggregate: the error alone, or "[a, b]" for several. */
		fprintf(stderr, npending == 1 ? "%s\n" : "[%s]\n", whys);
	}
	free(whys);
	if (json) {
		if (json_array_size(results) == 1)
			print_json(json_incref(json_array_get(results, 0)));
		else
			print_json(json_incref(results));
	}
	json_decref(results);
	free(pending);
	kube_free(&k);
	return failed ? EXIT_ERROR : timed_out ? EXIT_TIMEOUT : EXIT_OK;
}

int cmd_node(int argc, char **argv, const struct lbctl_opts *o)
{
	const char *verb = argc > 1 ? argv[1] : NULL;
	struct kube *k;
	bool json = o->json;
	int rc;

	if (!verb || strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 ||
	    strcmp(verb, "help") == 0) {
		fputs(NODE_HELP, verb ? stdout : stderr);
		return verb ? EXIT_OK : EXIT_USAGE;
	}
	if (strcmp(verb, "list") && strcmp(verb, "cordon") && strcmp(verb, "uncordon") &&
	    strcmp(verb, "drain")) {
		fprintf(stderr, "lbctl: node: unknown verb '%s' (list, cordon, uncordon, drain)\n",
			verb);
		return EXIT_USAGE;
	}
	if (wants_help(argc - 1, argv + 1)) {
		fputs(strcmp(verb, "list") == 0	   ? LIST_HELP
		      : strcmp(verb, "drain") == 0 ? DRAIN_HELP
						   : CORDON_HELP,
		      stdout);
		return EXIT_OK;
	}
	/* -o json is also accepted after the verb (lbctl node list -o json). */
	for (int i = 2; i + 1 < argc; i++)
		if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) &&
		    strcmp(argv[i + 1], "json") == 0)
			json = true;
	if (strcmp(verb, "list") == 0 && argc != 2 && !(argc == 4 && json)) {
		fprintf(stderr, "lbctl: node list takes no arguments\n");
		return EXIT_USAGE;
	}
	if ((strcmp(verb, "cordon") == 0 || strcmp(verb, "uncordon") == 0) && argc != 3 &&
	    !(argc == 5 && json)) {
		fprintf(stderr, "lbctl: node %s takes exactly one NODE\n", verb);
		return EXIT_USAGE;
	}
	if (strcmp(verb, "drain") == 0)
		return node_drain(o, argc - 1, argv + 1, json);
	k = connect_kube(o);
	if (!k)
		return EXIT_ERROR;
	if (strcmp(verb, "list") == 0)
		rc = node_list(k, json);
	else
		rc = node_cordon(
		    k, (strcmp(argv[2], "-o") && strcmp(argv[2], "--output")) ? argv[2] : argv[4],
		    strcmp(verb, "cordon") == 0, json);
	kube_free(&k);
	return rc;
}
