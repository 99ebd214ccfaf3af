/* test_kubeconfig.c - kubeconfig parsing: data vs files, credentials, contexts, errors. */
#include <check.h>

#include "tests/unit/unit.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/xmalloc.h"
#include "kube/kubeconfig.h"

/* "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" */
#define PEM_TEXT "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
#define PEM_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo="

static char tmpdir[64];

static void setup(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_kubeconfig.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	ck_assert_int_eq(system(cmd), 0);
}

static char *write_file(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static int load_str(const char *text, const char *ctx, struct kubeconfig *kc, char **err)
{
	return kubeconfig_load_string(text, strlen(text), "kc.yaml", tmpdir, ctx, kc, err);
}

/* The shape k3s writes to /etc/rancher/k3s/k3s.yaml. */
static const char K3S[] = "apiVersion: v1\n"
			  "clusters:\n"
			  "- cluster:\n"
			  "    certificate-authority-data: " PEM_B64 "\n"
			  "    server: https://127.0.0.1:6443\n"
			  "  name: default\n"
			  "contexts:\n"
			  "- context:\n"
			  "    cluster: default\n"
			  "    user: default\n"
			  "  name: default\n"
			  "current-context: default\n"
			  "kind: Config\n"
			  "preferences: {}\n"
			  "users:\n"
			  "- name: default\n"
			  "  user:\n"
			  "    client-certificate-data: " PEM_B64 "\n"
			  "    client-key-data: " PEM_B64 "\n";

START_TEST(test_k3s_inline_data)
{
	struct kubeconfig kc;
	char *err = NULL;

	ck_assert_int_eq(load_str(K3S, NULL, &kc, &err), 0);
	ck_assert_ptr_null(err);
	ck_assert_str_eq(kc.context, "default");
	ck_assert_str_eq(kc.server, "https://127.0.0.1:6443");
	ck_assert_uint_eq(kc.ca.len, strlen(PEM_TEXT));
	ck_assert_mem_eq(kc.ca.data, PEM_TEXT, kc.ca.len);
	ck_assert_mem_eq(kc.cert.data, PEM_TEXT, kc.cert.len);
	ck_assert_mem_eq(kc.key.data, PEM_TEXT, kc.key.len);
	ck_assert_ptr_null(kc.token);
	ck_assert(!kc.insecure);
	ck_assert_str_eq(kc.namespace, "default");
	kubeconfig_free(&kc);
}
END_TEST

START_TEST(test_files_relative_to_kubeconfig)
{
	struct kubeconfig kc;
	char *err = NULL, *ca = write_file("ca.crt", PEM_TEXT), *crt = write_file("a.crt", "CERT"),
	     *key = write_file("a.key", "KEY"), *path;

	path = write_file("config",
			  "clusters:\n"
			  "- name: c\n"
			  "  cluster: {server: 'https://[::1]:6443/', certificate-authority: "
			  "ca.crt}\n"
			  "users:\n"
			  "- name: u\n"
			  "  user: {client-certificate: a.crt, client-key: a.key}\n"
			  "contexts:\n"
			  "- name: x\n"
			  "  context: {cluster: c, user: u, namespace: kube-system}\n"
			  "current-context: x\n");
	ck_assert_int_eq(kubeconfig_load(path, NULL, &kc, &err), 0);
	ck_assert_str_eq(kc.server, "https://[::1]:6443"); /* trailing slash dropped */
	ck_assert_mem_eq(kc.ca.data, PEM_TEXT, kc.ca.len);
	ck_assert_str_eq(kc.cert.data, "CERT");
	ck_assert_str_eq(kc.key.data, "KEY");
	ck_assert_str_eq(kc.namespace, "kube-system");
	ck_assert_str_eq(kc.path, path);
	kubeconfig_free(&kc);
	free(ca);
	free(crt);
	free(key);
	free(path);
}
END_TEST

static const char TWO_CONTEXTS[] = "clusters:\n"
				   "- name: a\n"
				   "  cluster:\n"
				   "    server: https://127.0.0.1:1\n"
				   "    insecure-skip-tls-verify: true\n"
				   "- name: b\n"
				   "  cluster:\n"
				   "    server: https://127.0.0.1:2\n"
				   "users:\n"
				   "- name: tok\n"
				   "  user:\n"
				   "    token: sekrit\n"
				   "- name: tokfile\n"
				   "  user:\n"
				   "    tokenFile: token.txt\n"
				   "- name: nothing\n"
				   "  user: {}\n"
				   "contexts:\n"
				   "- name: ca\n"
				   "  context: {cluster: a, user: tok}\n"
				   "- name: cb\n"
				   "  context: {cluster: b, user: tokfile}\n"
				   "- name: bare\n"
				   "  context: {cluster: a, user: nothing}\n"
				   "- name: lost\n"
				   "  context: {cluster: zz, user: tok}\n"
				   "current-context: ca\n";

START_TEST(test_token_and_context_override)
{
	struct kubeconfig kc;
	char *err = NULL, *tf = write_file("token.txt", "from-file\n");

	ck_assert_int_eq(load_str(TWO_CONTEXTS, NULL, &kc, &err), 0);
	ck_assert_str_eq(kc.context, "ca");
	ck_assert_str_eq(kc.server, "https://127.0.0.1:1");
	ck_assert(kc.insecure);
	ck_assert_str_eq(kc.token, "sekrit");
	ck_assert_ptr_null(kc.cert.data);
	kubeconfig_free(&kc);

	ck_assert_int_eq(load_str(TWO_CONTEXTS, "cb", &kc, &err), 0);
	ck_assert_str_eq(kc.context, "cb");
	ck_assert_str_eq(kc.server, "https://127.0.0.1:2");
	ck_assert(!kc.insecure);
	ck_assert_str_eq(kc.token, "from-file"); /* newline trimmed */
	ck_assert_ptr_nonnull(strstr(kc.token_file, "token.txt"));
	kubeconfig_free(&kc);
	free(tf);
}
END_TEST

START_TEST(test_errors_name_the_line)
{
	struct kubeconfig kc;
	char *err = NULL;

	ck_assert_int_eq(load_str(TWO_CONTEXTS, "nope", &kc, &err), -1);
	ck_assert_str_eq(err, "kc.yaml:18: context 'nope' not found");
	free(err);

	ck_assert_int_eq(load_str(TWO_CONTEXTS, "bare", &kc, &err), -1);
	ck_assert_str_eq(err, "kc.yaml:17: user 'nothing' has no credentials");
	free(err);

	ck_assert_int_eq(load_str(TWO_CONTEXTS, "lost", &kc, &err), -1);
	ck_assert_str_eq(err, "kc.yaml:25: cluster 'zz' (of context 'lost') not found");
	free(err);

	/* tokenFile that does not exist */
	ck_assert_int_eq(load_str(TWO_CONTEXTS, "cb", &kc, &err), -1);
	ck_assert_ptr_nonnull(strstr(err, "kc.yaml:15: tokenFile "));
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
	free(err);

	/* current-context naming a missing context points at current-context */
	ck_assert_int_eq(
	    load_str("contexts: []\nusers: []\ncurrent-context: gone\n", NULL, &kc, &err), -1);
	ck_assert_str_eq(err, "kc.yaml:3: context 'gone' not found");
	free(err);

	ck_assert_int_eq(load_str("clusters: []\n", NULL, &kc, &err), -1);
	ck_assert_str_eq(err, "kc.yaml:1: no current-context is set and no --context was given");
	free(err);
}
END_TEST

/* Names are quoted as written; control characters in them must not break the one line. */
START_TEST(test_errors_are_one_line)
{
	struct kubeconfig kc;
	char *err = NULL;

	ck_assert_int_eq(load_str("contexts: []\ncurrent-context: \"evil\\nkc.yaml:1: fine\"\n",
				  NULL, &kc, &err),
			 -1);
	ck_assert_str_eq(err, "kc.yaml:2: context 'evil?kc.yaml:1: fine' not found");
	free(err);

	/* --context as given, and a user name with a tab, a CR and DEL */
	ck_assert_int_eq(load_str("contexts: []\n", "a\nb", &kc, &err), -1);
	ck_assert_str_eq(err, "kc.yaml:1: context 'a?b' not found");
	free(err);
	ck_assert_int_eq(
	    load_str("clusters: [{name: c, cluster: {server: https://x}}]\n"
		     "contexts: [{name: x, context: {cluster: c, user: \"u\\t\\r\\x7f\"}}]\n"
		     "users: [{name: \"u\\t\\r\\x7f\", user: {}}]\n",
		     "x", &kc, &err),
	    -1);
	ck_assert_str_eq(err, "kc.yaml:3: user 'u\?\?\?' has no credentials");
	free(err);

	/* a server with a line break, a cluster name with an escape sequence */
	ck_assert_int_eq(
	    load_str("clusters: [{name: \"c\\e[2J\", cluster: {server: \"ftp://a\\nb\"}}]\n"
		     "contexts: [{name: x, context: {cluster: \"c\\e[2J\", user: u}}]\n",
		     "x", &kc, &err),
	    -1);
	ck_assert_str_eq(err,
			 "kc.yaml:1: cluster 'c?[2J': server 'ftp://a?b' is not an http(s) URL");
	free(err);
}
END_TEST

START_TEST(test_broken_yaml)
{
	struct kubeconfig kc;
	char *err = NULL, *path;

	path = write_file("broken", "apiVersion: v1\nclusters:\n- name: a\n  cluster: [\n"
				    "current-context: a\n");
	ck_assert_int_eq(kubeconfig_load(path, NULL, &kc, &err), -1);
	ck_assert_ptr_nonnull(err);
	/* "<path>:6:1: did not find expected ',' or ']' while parsing a flow sequence
	 * (started at line 4)": libyaml notices at the end; the start names the culprit. */
	ck_assert_msg(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':',
		      "error should start with the file: %s", err);
	ck_assert_msg(strstr(err, ":6:1: ") && strstr(err, "started at line 4"),
		      "error should name lines 6 and 4: %s", err);
	free(err);
	free(path);

	ck_assert_int_eq(load_str("- just\n- a list\n", NULL, &kc, &err), -1);
	ck_assert_str_eq(err, "kc.yaml:1: a kubeconfig must be a mapping");
	free(err);

	ck_assert_int_eq(kubeconfig_load("/nonexistent/kubeconfig", NULL, &kc, &err), -1);
	ck_assert_str_eq(err, "/nonexistent/kubeconfig: No such file or directory");
	free(err);
}
END_TEST

START_TEST(test_bad_data_and_half_credentials)
{
	struct kubeconfig kc;
	char *err = NULL;

	ck_assert_int_eq(load_str("clusters:\n- name: a\n  cluster:\n    server: https://h:1\n"
				  "    certificate-authority-data: '***'\n"
				  "users:\n- name: u\n  user: {token: t}\n"
				  "contexts:\n- name: c\n  context: {cluster: a, user: u}\n"
				  "current-context: c\n",
				  NULL, &kc, &err),
			 -1);
	ck_assert_str_eq(err, "kc.yaml:5: certificate-authority-data is not valid base64");
	free(err);

	ck_assert_int_eq(
	    load_str("clusters:\n- name: a\n  cluster: {server: https://h:1}\n"
		     "users:\n- name: u\n  user:\n    client-certificate-data: " PEM_B64 "\n"
		     "contexts:\n- name: c\n  context: {cluster: a, user: u}\n"
		     "current-context: c\n",
		     NULL, &kc, &err),
	    -1);
	ck_assert_str_eq(err, "kc.yaml:7: user 'u' has a client certificate but no client key");
	free(err);

	ck_assert_int_eq(load_str("clusters:\n- name: a\n  cluster: {server: https://h:1}\n"
				  "users:\n- name: u\n  user:\n    exec: {command: aws}\n"
				  "contexts:\n- name: c\n  context: {cluster: a, user: u}\n"
				  "current-context: c\n",
				  NULL, &kc, &err),
			 -1);
	ck_assert_ptr_nonnull(strstr(err, "not supported"));
	free(err);
}
END_TEST

START_TEST(test_path_choice)
{
	char buf[256];

	setenv("KUBECONFIG", "/a/first:/b/second", 1);
	ck_assert_str_eq(kubeconfig_path(NULL, buf, sizeof(buf)), "/a/first");
	ck_assert_str_eq(kubeconfig_path("/explicit", buf, sizeof(buf)), "/explicit");
	unsetenv("KUBECONFIG");
	setenv("HOME", "/home/op", 1);
	ck_assert_str_eq(kubeconfig_path(NULL, buf, sizeof(buf)), "/home/op/.kube/config");
}
END_TEST

START_TEST(test_base64)
{
	struct kc_blob b;

	ck_assert_int_eq(kc_base64_decode("aGVs\nbG8=", &b), 0);
	ck_assert_uint_eq(b.len, 5);
	ck_assert_str_eq(b.data, "hello");
	free(b.data);
	ck_assert_int_eq(kc_base64_decode("aGVsbG8", &b), 0); /* unpadded */
	ck_assert_str_eq(b.data, "hello");
	free(b.data);
	ck_assert_int_eq(kc_base64_decode("a=b", &b), -1);
	ck_assert_int_eq(kc_base64_decode("a", &b), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kubeconfig");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_k3s_inline_data);
	tcase_add_test(tc, test_files_relative_to_kubeconfig);
	tcase_add_test(tc, test_token_and_context_override);
	tcase_add_test(tc, test_errors_name_the_line);
	tcase_add_test(tc, test_errors_are_one_line);
	tcase_add_test(tc, test_broken_yaml);
	tcase_add_test(tc, test_bad_data_and_half_credentials);
	tcase_add_test(tc, test_path_choice);
	tcase_add_test(tc, test_base64);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
