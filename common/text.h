/*
 * text.h - the one gate for text that comes from outside lbd.
 *
 * Apiserver and etcd answers, health-check bodies, command output, curl's
 * error strings: none of it is promised to be UTF-8 or free of control
 * bytes, and a cut at a byte count can split a character. jansson refuses
 * such a string (json_string() returns NULL) and a newline or an ESC in a
 * log line can forge a line or drive the reader's terminal. So such text is
 * cleaned once, where it enters (kube_err, the check detail, exec output,
 * http_json's error), and everything downstream may trust it.
 *
 * "Clean" text is UTF-8 as RFC 3629 defines it (no overlong forms, no
 * surrogates, nothing past U+10FFFF) with no control character: no C0
 * (U+0000..U+001F), no DEL, no C1 (U+0080..U+009F) and no U+2028/U+2029
 * (which some viewers break lines on). Cleaning maps:
 *   - each ill-formed sequence (each maximal subpart, as Unicode and the
 *     WHATWG decoder count them) to one U+FFFD;
 *   - \t \n \v \f \r and U+2028/U+2029 to one space, so a multi-line body
 *     reads as one line (text_clean_lines() keeps \n and \t instead);
 *   - every other control character to U+FFFD.
 * Everything else is kept byte for byte: clean text passes unchanged.
 *
 * A cut (the max argument, or a buffer's size) falls between characters,
 * never inside one, and ends the text with TEXT_CUT_MARK ("...") so a reader
 * knows there was more; the mark counts in the limit.
 */
#ifndef LBD_COMMON_TEXT_H
#define LBD_COMMON_TEXT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TEXT_NO_LIMIT SIZE_MAX
#define TEXT_CUT_MARK "..."

/*
 * The first len bytes of s (NUL bytes included: they are controls), cleaned
 * into a new string (xmalloc; the caller frees) of at most max bytes before
 * its NUL. s NULL gives "". Never NULL.
 */
char *text_clean(const char *s, size_t len, size_t max);

/* As text_clean() but keeps \n and \t, and turns "\r\n" into "\n": for
 * multi-line text shown as such (a command's output in a failure message).
 * Never for a log line. */
char *text_clean_lines(const char *s, size_t len, size_t max);

/* As text_clean() into dst (dstlen bytes, NUL included; dstlen 0 writes
 * nothing). Returns strlen(dst). dst must not overlap s. */
size_t text_clean_buf(char *dst, size_t dstlen, const char *s, size_t len);

/* true if s (NUL-terminated) is clean as defined above, so text_clean()
 * would return it unchanged. NULL counts as clean (there is no text). */
bool text_is_clean(const char *s);

/* A JSON string of s, cleaned if it is not clean already. Never NULL:
 * s NULL gives JSON null, and so does running out of memory (the only way
 * json_string() can fail on clean text). */
json_t *text_json(const char *s);

/* The last max bytes of s at most, starting on a character boundary (so a
 * clean s gives a clean tail): a pointer into s. */
const char *text_tail(const char *s, size_t max);

#endif
