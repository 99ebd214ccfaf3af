/* text.c - see text.h. */
#include "common/text.h"

#include <string.h>

#include "common/xmalloc.h"

#define BAD UINT32_MAX /* what utf8_next() yields for an ill-formed sequence */
#define MARK_LEN (sizeof(TEXT_CUT_MARK) - 1)

/*
 * Decodes the character at p (n >= 1 bytes left) into *cp and returns how
 * many bytes it takes. An ill-formed sequence gives BAD and the length of
 * its maximal subpart: the lead byte and the continuation bytes that were
 * still possible, so "\xE2\x82A" is one bad sequence then 'A'.
 *
 * RFC 3629's table, with the second byte's range narrowed where it must be:
 *   C2..DF  80..BF                     (C0, C1 would be overlong)
 *   E0      A0..BF  80..BF             (no overlong)
 *   E1..EC  80..BF  80..BF
 *   ED      80..9F  80..BF             (no surrogates D800..DFFF)
 *   EE..EF  80..BF  80..BF
 *   F0      90..BF  80..BF  80..BF     (no overlong)
 *   F1..F3  80..BF  80..BF  80..BF
 *   F4      80..8F  80..BF  80..BF     (nothing past U+10FFFF)
 */
static size_t utf8_next(const unsigned char *p, size_t n, uint32_t *cp)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xBF;
	size_t more;
	uint32_t v;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		more = 1;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		more = 2;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		more = 3;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		*cp = BAD; /* a stray continuation byte, C0, C1 or F5..FF */
		return 1;
	}
	for (size_t i = 1; i <= more; i++) {
		if (i >= n || p[i] < lo || p[i] > hi) {
			*cp = BAD;
			return i;
		}
		v = (v << 6) | (p[i] & 0x3F);
		lo = 0x80, hi = 0xBF;
	}
	*cp = v;
	return more + 1;
}

/* What cleaning makes of one character. */
enum cls { KEEP, SPACE, REPLACE, NEWLINE, TAB };

static enum cls classify(uint32_t cp, bool lines)
{
	if (cp == BAD)
		return REPLACE;
	if (cp == '\n')
		return lines ? NEWLINE : SPACE;
	if (cp == '\t')
		return lines ? TAB : SPACE;
	if (cp == '\v' || cp == '\f' || cp == '\r' || cp == 0x2028 || cp == 0x2029)
		return SPACE;
	if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))
		return REPLACE;
	return KEEP;
}

/*
 * The one cleaning loop: writes at most max bytes of clean text to dst and
 * a NUL after them (dst holds max + 1), returns the length.
 */
static size_t clean_into(char *dst, size_t max, const char *src, size_t len, bool lines)
{
	const unsigned char *s = (const unsigned char *)src;
	size_t i = 0, n = 0;
	bool cut = false;

	while (i < len) {
		uint32_t cp;
		size_t k = utf8_next(s + i, len - i, &cp);
		const char *piece = (const char *)s + i;
		size_t pl = k;

		if (lines && cp == '\r' && i + 1 < len && s[i + 1] == '\n') {
			i++; /* "\r\n" -> "\n" */
			continue;
		}
		switch (classify(cp, lines)) {
		case KEEP:
			break;
		case SPACE:
			piece = " ", pl = 1;
			break;
		case NEWLINE:
			piece = "\n", pl = 1;
			break;
		case TAB:
			piece = "\t", pl = 1;
			break;
		case REPLACE:
			piece = "\xEF\xBF\xBD", pl = 3; /* U+FFFD */
			break;
		}
		if (pl > max - n) {
			cut = true;
			break;
		}
		memcpy(dst + n, piece, pl);
		n += pl;
		i += k;
	}
	if (cut && max >= MARK_LEN) {
		/* Drop whole characters (what is in dst is well-formed) until the mark fits. */
		while (n > max - MARK_LEN) {
			do
				n--;
			while (n > 0 && ((unsigned char)dst[n] & 0xC0) == 0x80);
		}
		memcpy(dst + n, TEXT_CUT_MARK, MARK_LEN);
		n += MARK_LEN;
	}
	dst[n] = '\0';
	return n;
}

/* Every input byte gives at most 3 output bytes (one byte -> U+FFFD). */
static char *clean_alloc(const char *s, size_t len, size_t max, bool lines)
{
	size_t cap, n;
	char *out;

	if (!s)
		len = 0;
	cap = len > (SIZE_MAX - 1) / 3 ? SIZE_MAX - 1 : len * 3;
	if (cap > max)
		cap = max;
	out = xmalloc(cap + 1);
	n = clean_into(out, cap, s, len, lines);
	return n < cap ? xrealloc(out, n + 1) : out;
}

char *text_clean(const char *s, size_t len, size_t max)
{
	return clean_alloc(s, len, max, false);
}

char *text_clean_lines(const char *s, size_t len, size_t max)
{
	return clean_alloc(s, len, max, true);
}

size_t text_clean_buf(char *dst, size_t dstlen, const char *s, size_t len)
{
	if (dstlen == 0)
		return 0;
	return clean_into(dst, dstlen - 1, s, s ? len : 0, false);
}

bool text_is_clean(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	if (!s)
		return true;
	n = strlen(s);
	while (n > 0) {
		uint32_t cp;
		size_t k;

		if (*p >= 0x20 && *p < 0x7F) { /* printable ASCII: the common case, no decoding */
			p++, n--;
			continue;
		}
		k = utf8_next(p, n, &cp);
		if (classify(cp, false) != KEEP)
			return false;
		p += k, n -= k;
	}
	return true;
}

json_t *text_json(const char *s)
{
	json_t *j;

	if (!s)
		return json_null();
	if (text_is_clean(s)) {
		j = json_string(s);
	} else {
		char *c = text_clean(s, strlen(s), TEXT_NO_LIMIT);
		j = json_string(c);
		free(c);
	}
	return j ? j : json_null();
}

const char *text_tail(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n <= max)
		return s;
	s += n - max;
	while (((unsigned char)*s & 0xC0) == 0x80)
		s++;
	return s;
}
