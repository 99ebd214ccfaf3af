/*
 * tz.h - wall-clock time in an IANA time zone, without touching $TZ.
 *
 * Maintenance windows are written in a zone ("Europe/Berlin"). localtime_r()
 * only knows the process's zone, and changing $TZ in a threaded daemon races
 * with every getenv() (libcurl calls it), so the gate reads the tz database
 * files itself: TZif v2+ (64-bit transitions) and, past the last transition,
 * the POSIX rule in the file's footer ("CET-1CEST,M3.5.0,M10.5.0/3").
 */
#ifndef LBD_GATE_TZ_H
#define LBD_GATE_TZ_H

#include <stdint.h>
#include <time.h>

/* Directory of the tz database; tests may point it elsewhere. */
#define GATE_TZ_DIR "/usr/share/zoneinfo"

/*
 * The UTC offset in seconds of zone name at unix time t ("UTC" and "Etc/UTC"
 * need no file). Returns 0, or -1 with *why set (static text) for an unknown
 * zone or an unreadable file.
 */
int tz_offset(const char *name, int64_t t, long *off, const char **why);

/* Broken-down local time of t in zone name (tm_wday 0 = Sunday). */
int tz_localtime(const char *name, int64_t t, struct tm *out, const char **why);

#endif
