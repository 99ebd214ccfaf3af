/*
 * address.c - "IP:PORT", "[IPv6]:PORT", ":PORT" and "NAME:PORT" to a sockaddr.
 *
 * sockaddr_conf_parse() is numeric only. sockaddr_conf_resolve() takes host
 * names too, as HAProxy does ("master-2.example.internal:6443"): resolved
 * when the config is loaded (at start and at every reload, which lbd logs),
 * never behind the operator's back in between. Shared by the config loader
 * and the admin API, as is the rule for names (also a matter of what a
 * string may be).
 */
#define _GNU_SOURCE /* getaddrinfo_a */
#include "config/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/xmalloc.h"

static int parse_port(const char *s, in_port_t *port, const char **why)
{
	long v = 0;

	if (!*s) {
		*why = "missing port";
		return -1;
	}
	for (const char *p = s; *p; p++) {
		if (!isdigit((unsigned char)*p)) {
			*why = "port is not a number";
			return -1;
		}
		if (v <= 65535)
			v = v * 10 + (*p - '0');
	}
	if (v < 1 || v > 65535) {
		*why = "port out of range";
		return -1;
	}
	*port = htons((in_port_t)v);
	return 0;
}

int sockaddr_conf_parse(const char *text, struct sockaddr_conf *out, const char **why)
{
	const char *dummy, *colon, *portstr;
	char host[INET6_ADDRSTRLEN + 1];
	struct sockaddr_storage ss;
	socklen_t len;
	in_port_t port;
	size_t hlen;

	if (!why)
		why = &dummy;
	memset(out, 0, sizeof(*out));
	memset(&ss, 0, sizeof(ss));
	if (!text || !*text) {
		*why = "empty address";
		return -1;
	}
	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		if (!end) {
			*why = "missing ']' after IPv6 address";
			return -1;
		}
		if (end[1] != ':') {
			*why = end[1] ? "expected ':' after ']'" : "missing port";
			return -1;
		}
		hlen = (size_t)(end - text - 1);
		if (hlen == 0 || hlen >= sizeof(host)) {
			*why = "not an IP address";
			return -1;
		}
		memcpy(host, text + 1, hlen);
		host[hlen] = '\0';
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
			*why = "not an IP address";
			return -1;
		}
		if (parse_port(end + 2, &port, why) < 0)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = port;
		len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		colon = strrchr(text, ':');
		if (!colon) {
			*why = "missing port";
			return -1;
		}
		hlen = (size_t)(colon - text);
		portstr = colon + 1;
		if (memchr(text, ':', hlen)) {
			*why = "IPv6 addresses go in brackets, as [::1]:6443";
			return -1;
		}
		if (hlen >= sizeof(host)) {
			*why = "not an IP address";
			return -1;
		}
		memcpy(host, text, hlen);
		host[hlen] = '\0';
		if (strcmp(host, "*") == 0) {
			*why = "'*:PORT' is HAProxy's spelling: lbd's is ':PORT' (every address, "
			       "IPv4 and IPv6)";
			return -1;
		}
		if (hlen == 0)
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
			*why = "not an IP address";
			return -1;
		}
		if (parse_port(portstr, &port, why) < 0)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = port;
		len = sizeof(*sin);
	}
	out->text = xstrdup(text);
	out->ss = ss;
	out->len = len;
	return 0;
}

/* A DNS name: labels of a-z A-Z 0-9 - _ between dots, at most 253 bytes. */
static bool host_name_ok(const char *h, size_t len)
{
	if (len == 0 || len > 253 || h[0] == '.' || h[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)h[i]) && h[i] != '-' && h[i] != '.' && h[i] != '_')
			return false;
	return true;
}

static bool dns_on = true;

/* How long one name may take to resolve: lbd resolves on its main thread
 * (the config at start and at reload, `backend add`), where checks and the
 * admin API wait meanwhile; a resolver that does not answer must not stall
 * them for the resolver's own retries (5 s x 2 per server by default). */
#define RESOLVE_TIMEOUT_MS 2000

/* A lookup's request, as getaddrinfo_a() wants it kept. */
struct lookup_req {
	struct gaicb cb;
	struct addrinfo hints;
	struct lookup_req *next; /* on the abandoned list */
	char host[];
};

/* Lookups that outlived their deadline: glibc's resolver thread still writes
 * into them, so they are freed only once it is done (by a later lookup). */
static struct lookup_req *abandoned;
static pthread_mutex_t abandoned_mu = PTHREAD_MUTEX_INITIALIZER;

static void reap_abandoned(void)
{
	pthread_mutex_lock(&abandoned_mu);
	for (struct lookup_req **pp = &abandoned; *pp;) {
		struct lookup_req *r = *pp;
		if (gai_error(&r->cb) == EAI_INPROGRESS) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		if (r->cb.ar_result)
			freeaddrinfo(r->cb.ar_result);
		free(r);
	}
	pthread_mutex_unlock(&abandoned_mu);
}

/* getaddrinfo() with a deadline. 0 or an EAI_ code; EAI_AGAIN when the
 * deadline passed (the lookup then goes on the abandoned list). */
static int lookup(const char *host, const struct addrinfo *hints, struct addrinfo **res)
{
	struct lookup_req *r = xmalloc(sizeof(*r) + strlen(host) + 1);
	struct gaicb *list[1] = {&r->cb};
	int rc;

	reap_abandoned();
	strcpy(r->host, host);
	r->hints = *hints;
	r->next = NULL;
	memset(&r->cb, 0, sizeof(r->cb));
	r->cb.ar_name = r->host;
	r->cb.ar_request = &r->hints;
	if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) != 0) {
		free(r);
		return getaddrinfo(host, NULL, hints, res); /* no resolver thread: wait */
	}
	int64_t end = mono_ms() + RESOLVE_TIMEOUT_MS;
	while ((rc = gai_error(&r->cb)) == EAI_INPROGRESS) {
		int64_t left = end - mono_ms();
		if (left <= 0)
			break;
		struct timespec ts = {left / 1000, (left % 1000) * 1000000L};
		gai_suspend((const struct gaicb *const *)list, 1, &ts); /* done, timeout or EINTR */
	}
	if (rc == EAI_INPROGRESS) {
		if (gai_cancel(&r->cb) == EAI_CANCELED) {
			free(r);
		} else {
			pthread_mutex_lock(&abandoned_mu);
			r->next = abandoned;
			abandoned = r;
			pthread_mutex_unlock(&abandoned_mu);
		}
		return EAI_AGAIN;
	}
	*res = r->cb.ar_result;
	free(r);
	return rc;
}

void sockaddr_conf_set_dns(bool on)
{
	dns_on = on;
}

int sockaddr_conf_resolve(const char *text, struct sockaddr_conf *out, const char **why)
{
	static __thread char buf[400];
	const char *dummy, *colon;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *pick;
	in_port_t port;
	char host[254];

	if (!why)
		why = &dummy;
	if (sockaddr_conf_parse(text, out, why) == 0)
		return 0;
	colon = text && text[0] != '[' ? strrchr(text, ':') : NULL;
	if (!colon || !host_name_ok(text, (size_t)(colon - text)))
		return -1;
	if (strspn(text, "0123456789.") == (size_t)(colon - text))
		return -1; /* "10.0.0.256": a bad IP, not a name (getaddrinfo would
			    * take "1.2.3" as 1.2.0.3) */
	if (parse_port(colon + 1, &port, why) < 0)
		return -1;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	if (!dns_on) {
		snprintf(buf, sizeof(buf), "cannot resolve '%s': name resolution is off", host);
		*why = buf;
		return -1;
	}
	int rc = lookup(host, &hints, &res);
	if (rc != 0) {
		snprintf(buf, sizeof(buf), "cannot resolve '%s': %s", host,
			 rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		*why = buf;
		return -1;
	}
	pick = NULL;
	for (struct addrinfo *ai = res; ai && !pick; ai = ai->ai_next)
		if (ai->ai_family == AF_INET)
			pick = ai;
	for (struct addrinfo *ai = res; ai && !pick; ai = ai->ai_next)
		if (ai->ai_family == AF_INET6)
			pick = ai;
	if (!pick || pick->ai_addrlen > sizeof(out->ss)) {
		freeaddrinfo(res);
		snprintf(buf, sizeof(buf), "cannot resolve '%s': no IPv4 or IPv6 address", host);
		*why = buf;
		return -1;
	}
	memset(out, 0, sizeof(*out));
	memcpy(&out->ss, pick->ai_addr, pick->ai_addrlen);
	out->len = pick->ai_addrlen;
	if (out->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&out->ss)->sin_port = port;
	else
		((struct sockaddr_in6 *)&out->ss)->sin6_port = port;
	freeaddrinfo(res);
	out->text = xstrdup(text);
	out->resolved = true;
	return 0;
}

const char *sockaddr_conf_numeric(const struct sockaddr_conf *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%d", ip, ntohs(sin6->sin6_port));
	} else {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%d", ip, ntohs(sin->sin_port));
	}
	return buf;
}

void sockaddr_conf_copy(struct sockaddr_conf *dst, const struct sockaddr_conf *src)
{
	*dst = *src;
	dst->text = src->text ? xstrdup(src->text) : NULL;
}

void sockaddr_conf_free(struct sockaddr_conf *a)
{
	if (a)
		xfree(&a->text);
}

/* The family, address bytes and port of a, an IPv4-mapped IPv6 address
 * reduced to IPv4. */
struct endpoint {
	sa_family_t family;
	unsigned char addr[16];
	in_port_t port;
	uint32_t scope;
};

static struct endpoint endpoint_of(const struct sockaddr_conf *a)
{
	struct endpoint e;

	memset(&e, 0, sizeof(e));
	e.family = a->ss.ss_family;
	if (e.family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
		memcpy(e.addr, &sin->sin_addr, 4);
		e.port = sin->sin_port;
	} else if (e.family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
		e.port = sin6->sin6_port;
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			e.family = AF_INET;
			memcpy(e.addr, sin6->sin6_addr.s6_addr + 12, 4);
		} else {
			memcpy(e.addr, &sin6->sin6_addr, 16);
			e.scope = sin6->sin6_scope_id;
		}
	}
	return e;
}

int sockaddr_conf_port(const struct sockaddr_conf *a)
{
	return ntohs(endpoint_of(a).port);
}

bool sockaddr_conf_same(const struct sockaddr_conf *a, const struct sockaddr_conf *b)
{
	struct endpoint x = endpoint_of(a), y = endpoint_of(b);

	return x.family == y.family && x.port == y.port && x.scope == y.scope &&
	       memcmp(x.addr, y.addr, sizeof(x.addr)) == 0;
}

const char *config_name_check(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > 253)
		return "a name is 1 to 253 of a-z A-Z 0-9 . - _";
	for (const char *c = name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_'))
			return "a name is 1 to 253 of a-z A-Z 0-9 . - _";
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return "'.' and '..' cannot be names (URL paths drop them)";
	return NULL;
}
