/*
 * tz.c - see tz.h. A reader for the tz database's binary files (RFC 8536)
 * just large enough for "what is the UTC offset in zone Z at time t".
 * Zone files are read on every call: a window check runs once per request,
 * files are small, and the page cache keeps them; no cache to invalidate
 * when tzdata is upgraded under a running lbd.
 */
#include "gate/tz.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"

#define TZ_MAX_FILE (1 << 20)

static int64_t be(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v = (v << 8) | p[i];
	if (n == 4)
		return (int32_t)(uint32_t)v;
	return (int64_t)v;
}

/* Zone names are paths under GATE_TZ_DIR: refuse anything that could leave it. */
static bool tz_name_ok(const char *name)
{
	if (!name || !*name || name[0] == '/' || strlen(name) > 200)
		return false;
	if (strstr(name, ".."))
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("/_-+", *p))
			return false;
	return true;
}

static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf;
	size_t n;

	if (!f)
		return NULL;
	buf = xmalloc(TZ_MAX_FILE);
	n = fread(buf, 1, TZ_MAX_FILE, f);
	fclose(f);
	*len = n;
	return buf;
}

/* ---- POSIX TZ rules (the footer) ------------------------------------------------------ */

static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
	static const int md[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && leap(y) ? 29 : md[m - 1];
}

static const char *parse_name(const char *p)
{
	if (*p == '<') {
		const char *e = strchr(p, '>');
		return e ? e + 1 : NULL;
	}
	const char *s = p;
	while (isalpha((unsigned char)*p))
		p++;
	return p - s >= 3 ? p : NULL;
}

/* [+-]hh[:mm[:ss]] into seconds. */
static const char *parse_hms(const char *p, long *out)
{
	int sign = 1;
	long h = 0, m = 0, s = 0;

	if (*p == '+' || *p == '-')
		sign = *p++ == '-' ? -1 : 1;
	if (!isdigit((unsigned char)*p))
		return NULL;
	h = strtol(p, (char **)&p, 10);
	if (*p == ':') {
		m = strtol(p + 1, (char **)&p, 10);
		if (*p == ':')
			s = strtol(p + 1, (char **)&p, 10);
	}
	*out = sign * (h * 3600 + m * 60 + s);
	return p;
}

struct tz_rule_date {
	char kind; /* 'M', 'J' or 'n' */
	int m, w, d, n;
	long time; /* seconds after local midnight */
};

static const char *parse_date(const char *p, struct tz_rule_date *r)
{
	r->time = 7200;
	if (*p == 'M') {
		r->kind = 'M';
		if (sscanf(p + 1, "%d.%d.%d", &r->m, &r->w, &r->d) != 3 || r->m < 1 || r->m > 12 ||
		    r->w < 1 || r->w > 5 || r->d < 0 || r->d > 6)
			return NULL;
		p++;
		while (isdigit((unsigned char)*p) || *p == '.')
			p++;
	} else {
		r->kind = *p == 'J' ? 'J' : 'n';
		if (*p == 'J')
			p++;
		if (!isdigit((unsigned char)*p))
			return NULL;
		r->n = (int)strtol(p, (char **)&p, 10);
	}
	if (*p == '/')
		p = parse_hms(p + 1, &r->time);
	return p;
}

/* Local midnight (as days since the epoch) of the rule's date in year y, plus its time. */
static int64_t rule_local(const struct tz_rule_date *r, int64_t y)
{
	int64_t day;

	if (r->kind == 'M') {
		int64_t first = days_from_civil(y, r->m, 1);
		int wday = (int)(((first + 4) % 7 + 7) % 7);
		int dom = 1 + (r->d - wday + 7) % 7 + (r->w - 1) * 7;
		while (dom > month_days(y, r->m))
			dom -= 7;
		day = first + dom - 1;
	} else if (r->kind == 'J') {
		/* 1..365, February 29 never counted */
		day = days_from_civil(y, 1, 1) + r->n - 1;
		if (leap(y) && r->n >= 60)
			day++;
	} else {
		day = days_from_civil(y, 1, 1) + r->n;
	}
	return day * 86400 + r->time;
}

/* Offset east of UTC at t under POSIX rule s; -1 if s cannot be read. */
static int posix_offset(const char *s, int64_t t, long *off)
{
	const char *p = parse_name(s);
	long std, dst;
	struct tz_rule_date a, b;

	if (!p || !(p = parse_hms(p, &std)))
		return -1;
	std = -std; /* POSIX offsets are west of UTC */
	if (!*p) {
		*off = std;
		return 0;
	}
	if (!(p = parse_name(p)))
		return -1;
	dst = std + 3600;
	if (*p && *p != ',') {
		if (!(p = parse_hms(p, &dst)))
			return -1;
		dst = -dst;
	}
	if (*p != ',')
		return -1; /* no rule: the US default rules are not worth guessing */
	if (!(p = parse_date(p + 1, &a)) || *p != ',' || !(p = parse_date(p + 1, &b)))
		return -1;

	time_t lt = (time_t)(t + std);
	struct tm tm;
	gmtime_r(&lt, &tm);
	int64_t y = tm.tm_year + 1900LL;
	int64_t start = rule_local(&a, y) - std; /* in standard time */
	int64_t end = rule_local(&b, y) - dst;	 /* in daylight time */
	bool in_dst = start < end ? (t >= start && t < end) : !(t >= end && t < start);
	*off = in_dst ? dst : std;
	return 0;
}

/* ---- TZif ----------------------------------------------------------------------------- */

struct tzif_hdr {
	int64_t isut, isstd, leap, time, type, chr;
};

static int tzif_hdr(const unsigned char *p, size_t len, struct tzif_hdr *h)
{
	if (len < 44 || memcmp(p, "TZif", 4) != 0)
		return -1;
	h->isut = be(p + 20, 4);
	h->isstd = be(p + 24, 4);
	h->leap = be(p + 28, 4);
	h->time = be(p + 32, 4);
	h->type = be(p + 36, 4);
	h->chr = be(p + 40, 4);
	if (h->isut < 0 || h->isstd < 0 || h->leap < 0 || h->time < 0 || h->type < 1 ||
	    h->chr < 0 || h->type > 256)
		return -1;
	return 0;
}

static size_t tzif_body_len(const struct tzif_hdr *h, int tsz)
{
	return (size_t)(h->time * tsz + h->time + h->type * 6 + h->chr + h->leap * (tsz + 4) +
			h->isstd + h->isut);
}

static int tzif_offset(const unsigned char *buf, size_t len, int64_t t, long *off)
{
	struct tzif_hdr h;
	const unsigned char *p = buf;
	int tsz = 4;

	if (tzif_hdr(p, len, &h) < 0)
		return -1;
	if (buf[4] >= '2') {
		/* Skip the 32-bit block: the 64-bit one follows with its own header. */
		size_t skip = 44 + tzif_body_len(&h, 4);
		if (skip >= len || tzif_hdr(p + skip, len - skip, &h) < 0)
			return -1;
		p += skip;
		tsz = 8;
	}
	size_t body = tzif_body_len(&h, tsz);
	if (44 + body > (size_t)(buf + len - p))
		return -1;
	const unsigned char *times = p + 44, *idx = times + h.time * tsz, *types = idx + h.time;
	int type = 0;

	if (h.time > 0 && t >= be(times, tsz)) {
		int64_t lo = 0, hi = h.time - 1;
		while (lo < hi) { /* last transition <= t */
			int64_t mid = (lo + hi + 1) / 2;
			if (be(times + mid * tsz, tsz) <= t)
				lo = mid;
			else
				hi = mid - 1;
		}
		/* Past the last transition the footer's rule decides, if there is one. */
		if (lo == h.time - 1 && tsz == 8) {
			const unsigned char *foot = p + 44 + body;
			const unsigned char *e = buf + len;
			if (foot < e && *foot == '\n') {
				char rule[128];
				size_t n = 0;
				for (foot++; foot < e && *foot != '\n' && n + 1 < sizeof(rule);
				     foot++)
					rule[n++] = (char)*foot;
				rule[n] = '\0';
				if (n > 0 && posix_offset(rule, t, off) == 0)
					return 0;
			}
		}
		type = idx[lo];
		if (type >= h.type)
			return -1;
	}
	*off = (long)be(types + type * 6, 4);
	return 0;
}

int tz_offset(const char *name, int64_t t, long *off, const char **why)
{
	char path[512];
	unsigned char *buf;
	size_t len = 0;
	int rc;

	if (name && (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0)) {
		*off = 0;
		return 0;
	}
	if (!tz_name_ok(name)) {
		*why = "not a time zone name";
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%s", GATE_TZ_DIR, name);
	if (!(buf = read_file(path, &len))) {
		*why = "unknown time zone (no file in " GATE_TZ_DIR ")";
		return -1;
	}
	rc = tzif_offset(buf, len, t, off);
	free(buf);
	if (rc < 0)
		*why = "unreadable time zone file";
	return rc;
}

int tz_localtime(const char *name, int64_t t, struct tm *out, const char **why)
{
	long off;

	if (tz_offset(name, t, &off, why) < 0)
		return -1;
	time_t lt = (time_t)(t + off);
	gmtime_r(&lt, out);
	out->tm_gmtoff = off;
	return 0;
}
