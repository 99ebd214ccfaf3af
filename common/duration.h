/*
 * duration.h - durations as operators write them: "500ms", "2s", "5m", "1h",
 * and combinations such as "1m30s". Values are milliseconds.
 */
#ifndef LBD_DURATION_H
#define LBD_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Returns 0 and sets *ms, or -1 if s is not a duration (a bare number is not). */
int duration_parse(const char *s, int64_t *ms);
/* Writes the shortest exact form ("1m30s", "250ms", "0s") into buf. */
const char *duration_format(int64_t ms, char *buf, size_t len);

#endif
