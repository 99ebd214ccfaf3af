/*
 * fuzz_kubeconfig.c - kubeconfig_load_string() on arbitrary YAML, with and
 * without an explicit context.
 *
 * A kubeconfig names files (certificate-authority, client-key, tokenFile);
 * while the target runs, fopen is confined (link flag --wrap=fopen) to a
 * scratch directory holding a few small files, so a mutated path can neither
 * block on a FIFO or /dev/stdin nor read the machine's files.
 *
 * Invariants: no crash or leak; success has a server; failure leaves kc empty
 * and gives a reason that starts with the file's name and is one line (names
 * quoted from the file may hold newlines: they must not reach the message).
 */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"
#include "kube/kubeconfig.h"

FILE *__real_fopen(const char *path, const char *mode);
FILE *__wrap_fopen(const char *path, const char *mode);

static char dir[64];
static int in_target;

FILE *__wrap_fopen(const char *path, const char *mode)
{
	size_t n = strlen(dir);

	if (in_target && (strncmp(path, dir, n) != 0 || path[n] != '/' || strstr(path, "..") ||
			  strchr(mode, 'w') || strchr(mode, 'a') || strchr(mode, '+'))) {
		errno = ENOENT;
		return NULL;
	}
	return __real_fopen(path, mode);
}

static void put(const char *name, const char *text)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = __real_fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fclose(f) != 0)
		fatal("fuzz_kubeconfig: cannot write %s", path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_quiet_logs();
	snprintf(dir, sizeof(dir), "/tmp/lbd-fuzz-kc.%d", (int)getpid());
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		fatal("fuzz_kubeconfig: mkdir %s", dir);
	fuzz_scratch_at_exit(dir);
	put("ca.crt", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
	put("client.crt", "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n");
	put("client.key", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
	put("token", "abc.def\n");
	put("empty", "");
	return 0;
}

static void one(const uint8_t *data, size_t size, const char *context)
{
	struct kubeconfig kc;
	char *err = NULL;

	memset(&kc, 0, sizeof(kc));
	in_target = 1;
	int rc = kubeconfig_load_string((const char *)data, size, "fuzz-kubeconfig", dir, context,
					&kc, &err);
	in_target = 0;
	if (rc == 0) {
		FUZZ_ASSERT(err == NULL, "success with an error: %s", err);
		FUZZ_ASSERT(kc.server != NULL, "success without a server");
		FUZZ_ASSERT((kc.cert.data == NULL) == (kc.key.data == NULL),
			    "a client certificate without its key, or the reverse");
	} else {
		FUZZ_ASSERT(err != NULL, "failure without a reason");
		FUZZ_ASSERT(strncmp(err, "fuzz-kubeconfig:", 16) == 0,
			    "reason without the file: %s", err);
		FUZZ_ASSERT(strchr(err, '\n') == NULL, "reason of more than one line: %s", err);
		FUZZ_ASSERT(kc.server == NULL && kc.token == NULL && kc.key.data == NULL,
			    "failure left credentials in kc");
		free(err);
	}
	kubeconfig_free(&kc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one(data, size, NULL);
	one(data, size, "other");
	return 0;
}
