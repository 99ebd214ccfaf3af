/* test_atomicfile.c - the one way lbd persists: replace, mode, failures. */
#include <check.h>

#include "tests/unit/unit.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/atomicfile.h"
#include "common/xmalloc.h"

static char dir[64];

static void setup(void)
{
	strcpy(dir, "/tmp/lbd-atomicfile-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
}

static char *slurp(const char *path)
{
	static char buf[256];
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

START_TEST(replaces_with_mode_and_leaves_no_temp)
{
	char *path = xasprintf("%s/state.json", dir), *tmp = xasprintf("%s.tmp", path), *err = NULL;
	struct stat st;

	ck_assert_int_eq(atomic_write_file(path, "one\n", 4, 0600, &err, NULL), 0);
	ck_assert_str_eq(slurp(path), "one\n");
	ck_assert_int_eq(atomic_write_file(path, "two\n", 4, 0600, &err, NULL), 0);
	ck_assert_str_eq(slurp(path), "two\n");
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_ne(access(tmp, F_OK), 0);
	free(path);
	free(tmp);
}
END_TEST

START_TEST(failure_keeps_the_old_version_and_says_why)
{
	char *path = xasprintf("%s/state.json", dir), *tmp = xasprintf("%s.tmp", path), *err = NULL;
	int eno = 0;

	ck_assert_int_eq(atomic_write_file(path, "old\n", 4, 0600, &err, &eno), 0);
	/* A directory where the temp file goes: the write cannot start. */
	ck_assert_int_eq(mkdir(tmp, 0700), 0);
	ck_assert_int_eq(atomic_write_file(path, "new\n", 4, 0600, &err, &eno), -1);
	ck_assert_ptr_nonnull(strstr(err, "state.json.tmp: create: "));
	ck_assert_int_eq(eno, EISDIR);
	ck_assert_str_eq(slurp(path), "old\n");
	free(err);
	rmdir(tmp);
	/* No such directory: a clear error, nothing written. */
	char *nowhere = xasprintf("%s/missing/state.json", dir);
	err = NULL;
	ck_assert_int_eq(atomic_write_file(nowhere, "x", 1, 0600, &err, &eno), -1);
	ck_assert_int_eq(eno, ENOENT);
	free(err);
	free(nowhere);
	free(path);
	free(tmp);
}
END_TEST

static int dir_fsyncs;

static int fsync_dir_fails(int fd)
{
	(void)fd;
	dir_fsyncs++;
	errno = EIO;
	return -1;
}

/* The rename is the commit point: once the new version is in place the
 * write has happened (the next start reads it), so the caller must not be
 * told it failed, or an edit would be answered 5xx yet come back. */
START_TEST(failed_directory_fsync_after_rename_is_success)
{
	char *path = xasprintf("%s/state.json", dir), *tmp = xasprintf("%s.tmp", path), *err = NULL;
	int eno = 0;

	ck_assert_int_eq(atomic_write_file(path, "old\n", 4, 0600, &err, &eno), 0);
	atomicfile_fsync_dir = fsync_dir_fails;
	int rc = atomic_write_file(path, "new\n", 4, 0600, &err, &eno);
	atomicfile_fsync_dir = fsync;
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(dir_fsyncs, 2); /* retried once, then logged */
	ck_assert_ptr_null(err);
	ck_assert_str_eq(slurp(path), "new\n");
	ck_assert_int_ne(access(tmp, F_OK), 0);
	free(path);
	free(tmp);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("atomicfile");
	TCase *tc = tcase_create("write");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, replaces_with_mode_and_leaves_no_temp);
	tcase_add_test(tc, failure_keeps_the_old_version_and_says_why);
	tcase_add_test(tc, failed_directory_fsync_after_rename_is_success);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
