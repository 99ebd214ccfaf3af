/* log.c - see log.h. */
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/text.h"

static enum log_format log_fmt = LOG_FMT_TEXT;
static enum log_level log_min = LOG_LVL_INFO;
static const char *log_ident = "lbd";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_format fmt, enum log_level min, const char *ident)
{
	log_fmt = fmt;
	log_min = min;
	if (ident)
		log_ident = ident;
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

int log_format_parse(const char *s, enum log_format *out)
{
	if (strcmp(s, "text") == 0)
		*out = LOG_FMT_TEXT;
	else if (strcmp(s, "json") == 0)
		*out = LOG_FMT_JSON;
	else
		return -1;
	return 0;
}

/* Appends s to buf as the inside of a JSON string. */
static size_t json_escape(char *buf, size_t len, size_t off, const char *s)
{
	for (; *s && off + 7 < len; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[off++] = '\\';
			buf[off++] = (char)c;
		} else if (c < 0x20) {
			off += (size_t)snprintf(buf + off, len - off, "\\u%04x", c);
		} else {
			buf[off++] = (char)c;
		}
	}
	return off;
}

/* Appends ,"key":"value" for each pair of kv whose value is not NULL. */
static size_t json_fields(char *buf, size_t len, size_t off, const char *const *kv)
{
	char clean[512];

	for (size_t i = 0; kv && kv[i]; i += 2) {
		const char *k = kv[i], *v = kv[i + 1];
		if (!v)
			continue;
		if (!text_is_clean(v)) {
			text_clean_buf(clean, sizeof(clean), v, strlen(v));
			v = clean;
		}
		if (off + strlen(k) + 8 >= len)
			break;
		off += (size_t)snprintf(buf + off, len - off, ",\"%s\":\"", k);
		off = json_escape(buf, len, off, v);
		if (off + 2 < len)
			buf[off++] = '"';
	}
	return off;
}

void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
{
	log_vkv(lvl, NULL, fmt, ap);
}

void log_kv(enum log_level lvl, const char *const *kv, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vkv(lvl, kv, fmt, ap);
	va_end(ap);
}

const char *log_u64(char buf[24], unsigned long long v)
{
	snprintf(buf, 24, "%llu", v);
	return buf;
}

void log_vkv(enum log_level lvl, const char *const *kv, const char *fmt, va_list ap)
{
	char raw[2048], clean[2048], line[4200], ts[40];
	const char *msg = raw;
	struct timespec now;
	struct tm tm;
	size_t off;

	if (lvl < log_min)
		return;
	vsnprintf(raw, sizeof(raw), fmt, ap);
	/* A message quotes names, reasons and answers from outside: a newline
	 * there must not start a forged line, nor an ESC drive a terminal. The
	 * scan is all it costs when the text is clean, as it nearly always is. */
	if (!text_is_clean(raw)) {
		text_clean_buf(clean, sizeof(clean), raw, strlen(raw));
		msg = clean;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	off = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + off, sizeof(ts) - off, ".%03ldZ", now.tv_nsec / 1000000);

	if (log_fmt == LOG_FMT_JSON) {
		off = (size_t)snprintf(line, sizeof(line),
				       "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
				       level_names[lvl]);
		off = json_escape(line, sizeof(line), off, msg);
		line[off++] = '"';
		off = json_fields(line, sizeof(line) - 3, off, kv);
		off += (size_t)snprintf(line + off, sizeof(line) - off, "}\n");
	} else {
		off = (size_t)snprintf(line, sizeof(line), "%s %s[%d] %s: %s\n", ts, log_ident,
				       (int)getpid(), level_names[lvl], msg);
	}
	if (off >= sizeof(line))
		off = sizeof(line) - 1, line[off - 1] = '\n';
	/* One write per line; a failed log write has nowhere to be reported. */
	if (write(STDERR_FILENO, line, off) < 0)
		return;
}

#define LOG_FN(name, lvl)                                                                          \
	void name(const char *fmt, ...)                                                            \
	{                                                                                          \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		log_vmsg(lvl, fmt, ap);                                                            \
		va_end(ap);                                                                        \
	}
LOG_FN(log_debug, LOG_LVL_DEBUG)
LOG_FN(log_info, LOG_LVL_INFO)
LOG_FN(log_warn, LOG_LVL_WARN)
LOG_FN(log_err, LOG_LVL_ERR)

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERR, fmt, ap);
	va_end(ap);
	exit(1);
}

bool log_limit_due(struct log_limit *l, int64_t period_ms, int64_t now_ms, uint64_t *skipped)
{
	if (l->last_ms && now_ms - l->last_ms < period_ms) {
		l->suppressed++;
		return false;
	}
	/* now_ms 0 is a valid time too: keep "never" apart from it. */
	l->last_ms = now_ms ? now_ms : 1;
	*skipped = l->suppressed;
	l->suppressed = 0;
	return true;
}
