/* test_kube.c - kube_err is clean text whatever the apiserver (or a proxy)
 * answers: a loopback server plays the apiserver for one request. */
#include <check.h>

#include "tests/unit/unit.h"
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/text.h"
#include "kube/kube.h"

#define FFFD "\xEF\xBF\xBD"

struct fake {
	int lfd, port;
	const char *reply;
	size_t reply_len;
	size_t stream; /* fake_stream: body bytes to send */
	size_t sent;   /* fake_stream: body bytes the client took */
	pthread_t th;
};

/* Reads a request's head (the requests here are small and have no body). */
static void read_head(int fd)
{
	char buf[4096];
	size_t got = 0;

	while (got < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
}

/* Answers one request with f->reply, then closes. */
static void *fake_main(void *arg)
{
	struct fake *f = arg;
	int fd = accept(f->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	read_head(fd);
	if (write(fd, f->reply, f->reply_len) < 0)
		perror("fake apiserver: write");
	close(fd);
	return NULL;
}

/* Answers one request with 200 and a JSON array of f->stream bytes, sent
 * in 1 MiB pieces until the client stops taking them; counts what it took. */
static void *fake_stream(void *arg)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				   "Connection: close\r\n\r\n";
	struct fake *f = arg;
	size_t piece = 1 << 20;
	char *buf = malloc(piece);
	int fd = accept(f->lfd, NULL, NULL);

	if (fd < 0 || !buf)
		goto out;
	read_head(fd);
	if (send(fd, head, sizeof(head) - 1, MSG_NOSIGNAL) < 0)
		goto out;
	memset(buf, ' ', piece);
	while (f->sent < f->stream) {
		size_t n = f->stream - f->sent < piece ? f->stream - f->sent : piece;
		buf[0] = f->sent == 0 ? '[' : ' ';
		buf[n - 1] = f->sent + n == f->stream ? ']' : ' ';
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w <= 0)
			break; /* the client closed: enough */
		f->sent += (size_t)w;
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

/* Listens on an ephemeral loopback port and runs fn(f) on a thread. */
static void fake_start(struct fake *f, void *(*fn)(void *))
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);

	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(f->lfd, 0);
	ck_assert_int_eq(bind(f->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(f->lfd, 4), 0);
	ck_assert_int_eq(getsockname(f->lfd, (struct sockaddr *)&sa, &sl), 0);
	f->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&f->th, NULL, fn, f), 0);
}

/* Runs one GET against a fake answering reply (len bytes); returns the error. */
static struct kube_err get_err(const char *reply, size_t len)
{
	struct fake f = {.reply = reply, .reply_len = len};
	struct kubeconfig kc = {0};
	struct kube_err e;
	struct kube *k;
	char server[64];
	json_t *out = NULL;

	fake_start(&f, fake_main);
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", f.port);
	kc.server = server;
	k = kube_new(&kc);
	kube_set_timeout(k, 5000);
	ck_assert_int_eq(kube_request(k, "GET", "/api/v1/nodes/x", NULL, NULL, &out, &e), -1);
	ck_assert_ptr_null(out);
	kube_free(&k);
	pthread_join(f.th, NULL);
	close(f.lfd);
	return e;
}

static void assert_clean(const struct kube_err *e)
{
	char buf[1024];
	json_t *j;

	ck_assert_msg(text_is_clean(e->message), "message: %s", e->message);
	ck_assert(text_is_clean(e->reason));
	ck_assert(text_is_clean(e->cause));
	ck_assert(text_is_clean(kube_err_str(e, buf, sizeof(buf))));
	/* What used to fail: the message into JSON. */
	j = json_pack("{s:s,s:s}", "reason", e->reason, "message", e->message);
	ck_assert_ptr_nonnull(j);
	json_decref(j);
}

START_TEST(test_503_cut_inside_a_character)
{
	/* 199 bytes of 'x' then euro signs: the 200-byte excerpt would end
	 * inside the first one. Also a NUL, an ESC and a newline. */
	static char reply[1024];
	int n = snprintf(reply, sizeof(reply),
			 "HTTP/1.1 503 Service Unavailable\r\n"
			 "Content-Type: text/plain\r\nConnection: close\r\n\r\n");
	size_t len = (size_t)n;
	memset(reply + len, 'x', 199);
	len += 199;
	for (int i = 0; i < 20; i++) {
		memcpy(reply + len, "\xE2\x82\xAC", 3);
		len += 3;
	}
	struct kube_err e = get_err(reply, len);

	ck_assert_int_eq(e.status, 503);
	assert_clean(&e);
	ck_assert_msg(strncmp(e.message, "HTTP 503: xxx", 13) == 0, "message: %s", e.message);
	ck_assert_msg(strlen(e.message) <= strlen("HTTP 503: ") + 200, "message: %s", e.message);
	ck_assert_msg(strstr(e.message, "...") != NULL, "cut without a mark: %s", e.message);

	static const char ctl[] = "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n"
				  "<html>\n\x1b[2Jbad\0gateway\xff</html>";
	e = get_err(ctl, sizeof(ctl) - 1);
	ck_assert_int_eq(e.status, 502);
	assert_clean(&e);
	ck_assert_str_eq(e.message,
			 "HTTP 502: <html> " FFFD "[2Jbad" FFFD "gateway" FFFD "</html>");

	static const char empty[] = "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n";
	e = get_err(empty, sizeof(empty) - 1);
	ck_assert_str_eq(e.message, "HTTP 500: (empty answer)");
}
END_TEST

START_TEST(test_status_object_with_controls)
{
	/* A Status object is valid JSON, hence UTF-8, but \u escapes can still
	 * carry control characters into reason, message and cause. */
	static const char reply[] =
	    "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
	    "Connection: close\r\n\r\n"
	    "{\"kind\":\"Status\",\"reason\":\"Too\\nMany\",\"message\":\"caf\\u00e9\\r\\n"
	    "info: gate: forged\\u001b[0m\",\"details\":{\"causes\":[{\"reason\":"
	    "\"Disruption\\u0007Budget\"}]}}";
	struct kube_err e = get_err(reply, sizeof(reply) - 1);

	ck_assert_int_eq(e.status, 429);
	assert_clean(&e);
	ck_assert_str_eq(e.reason, "Too Many");
	ck_assert_str_eq(e.message, "caf\xC3\xA9  info: gate: forged" FFFD "[0m");
	ck_assert_str_eq(e.cause, "Disruption" FFFD "Budget");
}
END_TEST

START_TEST(test_answer_too_large)
{
	/* A 2xx answer of 96 MiB (valid JSON): refused once it passes the
	 * bound, with a clear error, instead of growing a buffer without end. */
	struct fake f = {.stream = (size_t)96 << 20};
	struct kubeconfig kc = {0};
	struct kube_err e;
	struct kube *k;
	char server[64];
	json_t *out = NULL;

	fake_start(&f, fake_stream);
	snprintf(server, sizeof(server), "http://127.0.0.1:%d", f.port);
	kc.server = server;
	k = kube_new(&kc);
	kube_set_timeout(k, 20000);
	int rc = kube_request(k, "GET", "/api/v1/pods", NULL, NULL, &out, &e);
	kube_free(&k);
	pthread_join(f.th, NULL);
	close(f.lfd);
	ck_assert_msg(rc == -1, "a %zu-byte answer was taken whole", f.sent);
	ck_assert_ptr_null(out);
	ck_assert_msg(strstr(e.message, "response larger than 64 MiB"), "message: %s", e.message);
	ck_assert_msg(strstr(e.message, "GET /api/v1/pods"), "message: %s", e.message);
	assert_clean(&e);
	ck_assert_msg(f.sent < f.stream, "the client read all %zu bytes", f.sent);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("kube");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_503_cut_inside_a_character);
	tcase_add_test(tc, test_status_object_with_controls);
	tcase_add_test(tc, test_answer_too_large);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
