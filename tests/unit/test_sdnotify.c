/* test_sdnotify.c - the sd_notify datagrams, to a path and to an abstract socket. */
#include <check.h>

#include "tests/unit/unit.h"
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/sdnotify.h"

/* A receiving socket bound to name ("/path" or "@abstract"). */
static int listener(const char *name)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t n = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	memcpy(sun.sun_path, name, n);
	if (name[0] == '@')
		sun.sun_path[0] = '\0';
	else
		n++;
	ck_assert_msg(bind(fd, (struct sockaddr *)&sun,
			   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) == 0,
		      "bind %s: %s", name, strerror(errno));
	return fd;
}

static char *recv_msg(int fd)
{
	static char buf[4096];
	ssize_t r = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);

	ck_assert_msg(r >= 0, "nothing received: %s", strerror(errno));
	buf[r] = '\0';
	return buf;
}

START_TEST(test_unset_is_noop)
{
	unsetenv("NOTIFY_SOCKET");
	ck_assert_int_eq(sdnotify_ready("x"), 0);
	setenv("NOTIFY_SOCKET", "", 1);
	ck_assert_int_eq(sdnotify("READY=1"), 0);
}
END_TEST

START_TEST(test_bad_names)
{
	setenv("NOTIFY_SOCKET", "relative/path", 1);
	ck_assert_int_eq(sdnotify("READY=1"), -1);
	setenv("NOTIFY_SOCKET", "@", 1);
	ck_assert_int_eq(sdnotify("READY=1"), -1);
	char longp[200];
	memset(longp, 'a', sizeof(longp) - 1);
	longp[0] = '/';
	longp[sizeof(longp) - 1] = '\0';
	setenv("NOTIFY_SOCKET", longp, 1);
	ck_assert_int_eq(sdnotify("READY=1"), -1);
	/* Nobody listening: an error, not a crash. */
	setenv("NOTIFY_SOCKET", "/nonexistent/lbd-notify", 1);
	ck_assert_int_eq(sdnotify("READY=1"), -1);
}
END_TEST

START_TEST(test_path_socket)
{
	char dir[] = "/tmp/lbd-sdnotify-XXXXXX", path[64];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	int fd = listener(path);
	setenv("NOTIFY_SOCKET", path, 1);

	ck_assert_int_eq(sdnotify_ready("2 frontends, 1 pool"), 1);
	ck_assert_str_eq(recv_msg(fd), "READY=1\nSTATUS=2 frontends, 1 pool");
	ck_assert_int_eq(sdnotify_ready(NULL), 1);
	ck_assert_str_eq(recv_msg(fd), "READY=1");
	ck_assert_int_eq(sdnotify_stopping("draining"), 1);
	ck_assert_str_eq(recv_msg(fd), "STOPPING=1\nSTATUS=draining");
	ck_assert_int_eq(sdnotify_status("hello"), 1);
	ck_assert_str_eq(recv_msg(fd), "STATUS=hello");

	close(fd);
	unlink(path);
	rmdir(dir);
}
END_TEST

START_TEST(test_abstract_reloading)
{
	char name[64];
	unsigned long long usec = 0;

	snprintf(name, sizeof(name), "@lbd-test-notify-%d", (int)getpid());
	int fd = listener(name);
	setenv("NOTIFY_SOCKET", name, 1);

	ck_assert_int_eq(sdnotify_reloading(), 1);
	char *m = recv_msg(fd);
	ck_assert_msg(strncmp(m, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0, "got %s", m);
	ck_assert_int_eq(sscanf(m + 27, "%llu", &usec), 1);
	ck_assert(usec > 0);
	ck_assert_ptr_nonnull(strstr(m, "\nSTATUS="));
	close(fd);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("sdnotify");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_unset_is_noop);
	tcase_add_test(tc, test_bad_names);
	tcase_add_test(tc, test_path_socket);
	tcase_add_test(tc, test_abstract_reloading);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
