/* duration.c - see duration.h. */
#include "duration.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const struct {
	const char *suffix;
	int64_t ms;
} units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 24 * 3600 * 1000},
};

int duration_parse(const char *s, int64_t *ms)
{
	int64_t total = 0;

	if (!s || !*s)
		return -1;
	while (*s) {
		int64_t n = 0;
		size_t ulen = 0, best = (size_t)-1;

		if (!isdigit((unsigned char)*s))
			return -1;
		for (; isdigit((unsigned char)*s); s++) {
			if (n > (INT64_MAX - 9) / 10)
				return -1;
			n = n * 10 + (*s - '0');
		}
		/* The longest suffix that matches wins ("ms" before "m"). */
		for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
			size_t l = strlen(units[i].suffix);
			if (strncmp(s, units[i].suffix, l) == 0 && l > ulen) {
				ulen = l;
				best = i;
			}
		}
		if (best == (size_t)-1)
			return -1;
		if (n > INT64_MAX / units[best].ms || total > INT64_MAX - n * units[best].ms)
			return -1;
		total += n * units[best].ms;
		s += ulen;
	}
	*ms = total;
	return 0;
}

const char *duration_format(int64_t ms, char *buf, size_t len)
{
	size_t off = 0;

	if (ms == 0) {
		snprintf(buf, len, "0s");
		return buf;
	}
	for (int i = (int)(sizeof(units) / sizeof(units[0])) - 1; i >= 0 && off < len; i--) {
		if (ms >= units[i].ms) {
			off += (size_t)snprintf(buf + off, len - off, "%lld%s",
						(long long)(ms / units[i].ms), units[i].suffix);
			ms %= units[i].ms;
		}
	}
	return buf;
}
