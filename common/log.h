/*
 * log.h - one line per event, to stderr, as text or as JSON lines.
 *
 * Every function takes a printf format (checked by the compiler). A line is
 * written with a single write(2), so lines from different threads never mix.
 * The formatted message goes through text.h's cleaner first: a line is one
 * line of valid UTF-8 whatever a quoted outside text held (\n, ESC, bad bytes).
 * fatal() is for start-up errors and impossible states only; it exits 1.
 *
 * Structured fields: log_kv() adds key/value pairs beside "msg" in a JSON
 * line, so Loki or Elasticsearch can filter on them without parsing the
 * message; a text line is the message alone (which names them already):
 *
 *   log_kv(LOG_LVL_WARN, LOG_KV("pool", p, "backend", b, "reason", why),
 *          "backend %s/%s is DOWN: %s", p, b, why);
 *   -> {"ts":"...","level":"warn","msg":"backend m/m1 is DOWN: ...",
 *       "pool":"m","backend":"m1","reason":"..."}
 *
 * The keys in use: pool, backend, frontend, node, reason, lease, fence,
 * holder, role, state. A pair whose value is NULL is left out. Values are
 * cleaned as the message is. Never "ts", "level" or "msg".
 */
#ifndef LBD_LOG_H
#define LBD_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERR };
enum log_format { LOG_FMT_TEXT, LOG_FMT_JSON };

void log_setup(enum log_format fmt, enum log_level min, const char *ident);
int log_level_parse(const char *s, enum log_level *out);
int log_format_parse(const char *s, enum log_format *out);

void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void log_vmsg(enum log_level lvl, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

/* kv: key, value, key, value, ..., NULL (LOG_KV builds one in place). */
#define LOG_KV(...) ((const char *const[]){__VA_ARGS__, NULL})
void log_kv(enum log_level lvl, const char *const *kv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vkv(enum log_level lvl, const char *const *kv, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* A number as a field value: buf must outlive the log_kv() call. */
const char *log_u64(char buf[24], unsigned long long v);

/*
 * A trouble that every request can meet (an unreadable tokens file) must not
 * write a line per request: a stranger could fill the disk. A log_limit
 * lets one line through per period and counts the rest, so the next line
 * can say how many there were. Not thread-safe: one per thread of use.
 */
struct log_limit {
	int64_t last_ms;     /* when the last line was let through; 0: never */
	uint64_t suppressed; /* events since then that were not logged */
};

/* One event at now_ms (a monotonic clock). true: log it now, and *skipped
 * is how many events were not logged since the last line (the count starts
 * again). false: counted, not to be logged. */
bool log_limit_due(struct log_limit *l, int64_t period_ms, int64_t now_ms, uint64_t *skipped);

/* Invariants: a violated one is a bug in lbd, never bad input. */
#define BUG_ON(cond)                                                                               \
	do {                                                                                       \
		if (cond)                                                                          \
			fatal("BUG at %s:%d: %s", __FILE__, __LINE__, #cond);                      \
	} while (0)

#endif
