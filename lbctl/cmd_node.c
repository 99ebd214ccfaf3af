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
    "    lbctl ... node drain NODE [--ignore-daemonsets] [--delete-emptydir-data]\n"
    "              [--force] [--grace-period S] [--timeout D] [--disable-eviction]\n\n"
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
    "    lbctl node drain - cordon a node and evict its pods, as kubectl drain\n\n"
    "SYNOPSIS\n"
    "    lbctl node drain NODE [OPTIONS]\n\n"
    "DESCRIPTION\n"
    "    Cordons NODE, then evicts its pods through the Eviction API, which\n"
    "    honours PodDisruptionBudgets: an eviction refused with 429 is retried\n"
    "    every 5s until --timeout. Waits until each pod is gone. Mirror (static)\n"
    "    pods are skipped. Nothing is evicted if some pod is refused:\n"
    "    DaemonSet pods without --ignore-daemonsets, pods with emptyDir volumes\n"
    "    without --delete-emptydir-data, pods without a controller without\n"
    "    --force. The node stays cordoned whatever happens.\n\n"
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
    "    --retry-interval D      wait between evictions refused by a PDB (5s)\n\n"
    "OUTPUT\n"
    "    Progress as kubectl prints it. On timeout, the pods left and whether a\n"
    "    PodDisruptionBudget blocks each. With -o json, progress goes to stderr\n"
    "    and stdout gets {node, status: drained|refused|timeout|failed,\n"
    "    evicted, skipped, error, left: [{namespace, name, pdbBlocked, reason}]}.\n\n"
    "EXIT STATUS\n"
    "    0 drained, 1 refused or failed, 2 usage, 4 timed out\n";

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
		fprintf(f, "node/%s cordoned\n", name);
		break;
	case DRAIN_EV_ALREADY_CORDONED:
		fprintf(f, "node/%s already cordoned\n", name);
		break;
	case DRAIN_EV_WARNING:
		fprintf(stderr, "Warning: %s\n", msg);
		break;
	case DRAIN_EV_EVICTING:
		fprintf(f, "evicting pod %s/%s\n", ns, name);
		break;
	case DRAIN_EV_DELETING:
		fprintf(f, "deleting pod %s/%s\n", ns, name);
		break;
	case DRAIN_EV_RETRY:
		fprintf(stderr, "error when evicting pods/\"%s\" -n \"%s\" (will retry): %s\n",
			name, ns, msg);
		break;
	case DRAIN_EV_GONE:
		fprintf(f, "pod/%s %s\n", name, msg);
		break;
	case DRAIN_EV_DRAINED:
		fprintf(f, "node/%s drained\n", name);
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

static int node_drain(const struct lbctl_opts *lo, int argc, char **argv, bool json)
{
	struct kube *k;
	static const struct option longopts[] = {
	    {"ignore-daemonsets", no_argument, NULL, 'd'},
	    {"delete-emptydir-data", no_argument, NULL, 'e'},
	    {"force", no_argument, NULL, 'f'},
	    {"grace-period", required_argument, NULL, 'g'},
	    {"timeout", required_argument, NULL, 't'},
	    {"disable-eviction", no_argument, NULL, 'x'},
	    {"retry-interval", required_argument, NULL, 'r'},
	    {"output", required_argument, NULL, 'o'},
	    {NULL, 0, NULL, 0},
	};
	struct drain_opts o;
	struct drain_result r;
	const char *node = NULL;
	char *end;
	int ch, rc;

	drain_opts_init(&o);
	optind = 0;
	while ((ch = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o.ignore_daemonsets = true;
			break;
		case 'e':
			o.delete_emptydir_data = true;
			break;
		case 'f':
			o.force = true;
			break;
		case 'x':
			o.disable_eviction = true;
			break;
		case 'g':
			o.grace_period_s = (int)strtol(optarg, &end, 10);
			if (!*optarg || *end || o.grace_period_s < -1) {
				fprintf(stderr, "lbctl: --grace-period takes seconds (-1: the "
						"pod's own)\n");
				return EXIT_USAGE;
			}
			break;
		case 't':
			if (parse_timeout(optarg, &o.timeout_ms) < 0) {
				fprintf(stderr, "lbctl: --timeout takes a duration such as 90s "
						"or 5m\n");
				return EXIT_USAGE;
			}
			break;
		case 'r':
			if (duration_parse(optarg, &o.retry_ms) < 0 || o.retry_ms <= 0) {
				fprintf(stderr, "lbctl: --retry-interval takes a duration\n");
				return EXIT_USAGE;
			}
			if (o.poll_ms > o.retry_ms)
				o.poll_ms = o.retry_ms;
			break;
		case 'o':
			json = strcmp(optarg, "json") == 0;
			break;
		default:
			fputs(DRAIN_HELP, stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "lbctl: node drain takes exactly one NODE (see lbctl node drain "
				"--help)\n");
		return EXIT_USAGE;
	}
	node = argv[optind];
	k = connect_kube(lo);
	if (!k)
		return EXIT_ERROR;
	rc = drain_node(k, node, &o, drain_progress, json ? stderr : stdout, &r);
	if (json) {
		static const char *names[] = {"drained", "refused", "timeout", "failed"};
		json_t *left = json_array();
		for (size_t i = 0; i < r.nleft; i++)
			json_array_append_new(left, json_pack("{s:s,s:s,s:b,s:s}", "namespace",
							      r.left[i].ns, "name", r.left[i].name,
							      "pdbBlocked", r.left[i].pdb_blocked,
							      "reason", r.left[i].why));
		print_json(json_pack("{s:s,s:s,s:I,s:I,s:s?,s:o}", "node", node, "status",
				     names[r.status], "evicted", (json_int_t)r.evicted, "skipped",
				     (json_int_t)r.skipped, "error", r.error, "left", left));
	} else if (r.error) {
		fprintf(stderr, "error: %s\n", r.error);
	}
	drain_result_free(&r);
	kube_free(&k);
	switch (rc) {
	case DRAIN_OK:
		return EXIT_OK;
	case DRAIN_TIMEOUT:
		return EXIT_TIMEOUT;
	default:
		return EXIT_ERROR;
	}
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
