/* test_text.c - common/text: UTF-8 validation, control bytes, cuts, JSON. */
#include <check.h>

#include "tests/unit/unit.h"
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/text.h"

#define FFFD "\xEF\xBF\xBD"

/* text_clean() of a byte string (its length given, for embedded NULs). */
static void clean_is(const char *in, size_t len, size_t max, const char *want)
{
	char *got = text_clean(in, len, max);

	ck_assert_msg(strcmp(got, want) == 0, "clean(%zu bytes, max %zu) = '%s', want '%s'", len,
		      max, got, want);
	ck_assert(text_is_clean(got));
	free(got);
}

#define CLEAN_IS(lit, want) clean_is(lit, sizeof(lit) - 1, TEXT_NO_LIMIT, want)

START_TEST(test_valid_kept)
{
	static const char *const ok[] = {
	    "",
	    "plain ascii ~!@#$%^&*()",
	    "caf\xC3\xA9",				 /* U+00E9 */
	    "\xC2\xA0",					 /* U+00A0, just past C1 */
	    "\xDF\xBF",					 /* U+07FF, last 2-byte */
	    "\xE0\xA0\x80",				 /* U+0800, first 3-byte */
	    "\xED\x9F\xBF",				 /* U+D7FF, before surrogates */
	    "\xEE\x80\x80",				 /* U+E000, after surrogates */
	    "\xEF\xBF\xBD",				 /* U+FFFD itself */
	    "\xEF\xBF\xBF",				 /* U+FFFF: a noncharacter, yet valid */
	    "\xF0\x90\x80\x80",				 /* U+10000, first 4-byte */
	    "\xF4\x8F\xBF\xBF",				 /* U+10FFFF, the last */
	    "\xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80", /* CJK and an emoji */
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ck_assert_msg(text_is_clean(ok[i]), "%zu should be clean", i);
		clean_is(ok[i], strlen(ok[i]), TEXT_NO_LIMIT, ok[i]);
	}
}
END_TEST

START_TEST(test_invalid)
{
	/* Each maximal subpart of an ill-formed sequence is one U+FFFD. */
	CLEAN_IS("a\x80z", "a" FFFD "z");				     /* lone continuation */
	CLEAN_IS("a\xBF\xBFz", "a" FFFD FFFD "z");			     /* two of them */
	CLEAN_IS("\xC0\xAF", FFFD FFFD);				     /* overlong '/' (C0) */
	CLEAN_IS("\xC1\xBF", FFFD FFFD);				     /* overlong (C1) */
	CLEAN_IS("\xE0\x80\xAF", FFFD FFFD FFFD);			     /* overlong 3-byte */
	CLEAN_IS("\xE0\x9F\xBF", FFFD FFFD FFFD);			     /* overlong U+07FF */
	CLEAN_IS("\xF0\x80\x80\xAF", FFFD FFFD FFFD FFFD);		     /* overlong 4-byte */
	CLEAN_IS("\xF0\x8F\xBF\xBF", FFFD FFFD FFFD FFFD);		     /* overlong U+FFFF */
	CLEAN_IS("\xED\xA0\x80", FFFD FFFD FFFD);			     /* surrogate U+D800 */
	CLEAN_IS("\xED\xBF\xBF", FFFD FFFD FFFD);			     /* surrogate U+DFFF */
	CLEAN_IS("\xED\xA0\xBD\xED\xB8\x80", FFFD FFFD FFFD FFFD FFFD FFFD); /* CESU pair */
	CLEAN_IS("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD);		     /* U+110000 */
	CLEAN_IS("\xF5\x80\x80\x80", FFFD FFFD FFFD FFFD);		     /* F5 lead */
	CLEAN_IS("\xF8\x88\x80\x80\x80", FFFD FFFD FFFD FFFD FFFD);	     /* 5-byte form */
	CLEAN_IS("\xFE\xFF", FFFD FFFD);
	/* Truncated sequences: the lead and its good continuations are one. */
	CLEAN_IS("\xC3", FFFD);
	CLEAN_IS("ab\xE2\x82", "ab" FFFD);
	CLEAN_IS("\xE2\x82z", FFFD "z");
	CLEAN_IS("\xF0\x9F\x98", FFFD);
	CLEAN_IS("\xF0\x9F\x98z\xF0\x9F", FFFD "z" FFFD);
	CLEAN_IS("\xE2\xE2\x82\xAC", FFFD "\xE2\x82\xAC"); /* a lead cut by a new lead */

	static const char *const bad[] = {
	    "\x80", "\xC3", "\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF", "ok\xE2\x82"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!text_is_clean(bad[i]), "%zu should not be clean", i);
}
END_TEST

START_TEST(test_controls)
{
	CLEAN_IS("a\nb", "a b");
	CLEAN_IS("a\r\nb\tc\vd\fe", "a  b c d e");
	CLEAN_IS("x\x1b[31mred", "x" FFFD "[31mred");
	CLEAN_IS("\x01\x7f", FFFD FFFD);
	CLEAN_IS("nul\0here", "nul" FFFD "here");
	CLEAN_IS("c1:\xC2\x80\xC2\x9B|", "c1:" FFFD FFFD "|"); /* U+0080, U+009B (CSI) */
	CLEAN_IS("ls\xE2\x80\xA8ps\xE2\x80\xA9.", "ls ps .");  /* U+2028, U+2029 */
	/* A forged log line stays on one line. */
	CLEAN_IS("down\n2024-01-01T00:00:00Z lbd[1] info: gate: granted",
		 "down 2024-01-01T00:00:00Z lbd[1] info: gate: granted");

	static const char *const bad[] = {"a\nb", "\t",	      "\r",	     "\x1b",
					  "\x7f", "\xC2\x85", "\xE2\x80\xA8"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!text_is_clean(bad[i]), "%zu should not be clean", i);
}
END_TEST

START_TEST(test_lines)
{
	static const char in[] = "line 1\r\nline\t2\n\x1b[2J\rover\n\xFF";
	char *got = text_clean_lines(in, sizeof(in) - 1, TEXT_NO_LIMIT);

	ck_assert_str_eq(got, "line 1\nline\t2\n" FFFD "[2J over\n" FFFD);
	free(got);
}
END_TEST

START_TEST(test_cut)
{
	/* Fits exactly: no mark. One byte more: cut with the mark inside max. */
	clean_is("abcdef", 6, 6, "abcdef");
	clean_is("abcdefg", 7, 6, "abc...");
	clean_is("abcdefg", 7, 3, "...");
	clean_is("abcdefg", 7, 2, "ab"); /* no room for the mark */
	clean_is("abcdefg", 7, 0, "");
	/* Never inside a character: "é" is 2 bytes, "€" 3, the emoji 4. */
	clean_is("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", 8, 6, "\xC3\xA9...");
	clean_is("\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9", 8, 7, "\xC3\xA9\xC3\xA9...");
	clean_is("\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC", 9, 8, "\xE2\x82\xAC...");
	clean_is("x\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 9, 8, "x\xF0\x9F\x98\x80...");
	clean_is("x\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 9, 7, "x...");
	/* A replacement counts at its output size. */
	clean_is("\xFF\xFF\xFF", 3, 8, FFFD "...");
	/* Embedded NUL is text to clean, not the end. */
	clean_is("a\0b", 3, TEXT_NO_LIMIT, "a" FFFD "b");

	/* Every cut of a mixed string is clean and within the limit. */
	static const char mixed[] = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\n\xFF z";
	for (size_t max = 0; max < 40; max++) {
		char *got = text_clean(mixed, sizeof(mixed) - 1, max);
		ck_assert_msg(strlen(got) <= max, "max %zu: %zu bytes", max, strlen(got));
		ck_assert_msg(text_is_clean(got), "max %zu", max);
		free(got);
	}
}
END_TEST

START_TEST(test_buf)
{
	char buf[8];

	ck_assert_uint_eq(text_clean_buf(buf, sizeof(buf), "hello", 5), 5);
	ck_assert_str_eq(buf, "hello");
	ck_assert_uint_eq(text_clean_buf(buf, sizeof(buf), "hello world", 11), 7);
	ck_assert_str_eq(buf, "hell...");
	ck_assert_uint_eq(
	    text_clean_buf(buf, sizeof(buf), "\xE2\x82\xAC\xE2\x82\xAC\xE2\x82\xAC", 9), 6);
	ck_assert_str_eq(buf, "\xE2\x82\xAC...");
	ck_assert_uint_eq(text_clean_buf(buf, 1, "abc", 3), 0);
	ck_assert_str_eq(buf, "");
	buf[0] = 'q';
	ck_assert_uint_eq(text_clean_buf(buf, 0, "abc", 3), 0);
	ck_assert_int_eq(buf[0], 'q'); /* dstlen 0: untouched */
	ck_assert_uint_eq(text_clean_buf(buf, sizeof(buf), NULL, 99), 0);
	ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(test_null_empty)
{
	char *s = text_clean(NULL, 42, TEXT_NO_LIMIT);
	json_t *j;

	ck_assert_str_eq(s, "");
	free(s);
	s = text_clean_lines(NULL, 0, 10);
	ck_assert_str_eq(s, "");
	free(s);
	clean_is("", 0, TEXT_NO_LIMIT, "");
	clean_is("", 0, 0, "");
	ck_assert(text_is_clean(NULL));
	ck_assert(text_is_clean(""));

	j = text_json(NULL);
	ck_assert(json_is_null(j));
	json_decref(j);
	j = text_json("");
	ck_assert_str_eq(json_string_value(j), "");
	json_decref(j);
	j = text_json("503: \xE2\x82\n");
	ck_assert_str_eq(json_string_value(j), "503: " FFFD " ");
	json_decref(j);
	j = text_json("ok \xC3\xA9");
	ck_assert_str_eq(json_string_value(j), "ok \xC3\xA9");
	json_decref(j);
}
END_TEST

START_TEST(test_tail)
{
	const char *s = "ab\xE2\x82\xAC"
			"cd";

	ck_assert_str_eq(text_tail(s, 100), s);
	ck_assert_str_eq(text_tail(s, 7), s);
	ck_assert_str_eq(text_tail(s, 5), "\xE2\x82\xAC"
					  "cd");
	ck_assert_str_eq(text_tail(s, 4), "cd"); /* would start inside the euro sign */
	ck_assert_str_eq(text_tail(s, 3), "cd");
	ck_assert_str_eq(text_tail(s, 0), "");
}
END_TEST

/* A small deterministic generator (xorshift64*), so a failure repeats. */
static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t)((rng * 0x2545F4914F6CDD1DULL) >> 32);
}

START_TEST(test_random)
{
	/* Bytes biased towards the interesting ones: leads, continuations, controls. */
	static const unsigned char pick[] = {0x00, 0x0A, 0x1B, 0x7F, 0x80, 0x9F, 0xBF,
					     0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0,
					     0xF4, 0xF5, 0xFF, 'a',  ' ',  '"'};
	unsigned char in[64];
	char buf[24];

	for (int round = 0; round < 100000; round++) {
		size_t len = rnd() % sizeof(in);
		size_t max = round % 3 == 0 ? TEXT_NO_LIMIT : rnd() % 80;
		for (size_t i = 0; i < len; i++)
			in[i] = rnd() % 2 ? (unsigned char)rnd() : pick[rnd() % sizeof(pick)];

		char *c = text_clean((const char *)in, len, max);
		ck_assert_msg(text_is_clean(c), "round %d", round);
		ck_assert(strlen(c) <= max);
		json_t *j = json_string(c);
		ck_assert_msg(j != NULL, "round %d: json_string refused '%s'", round, c);
		json_decref(j);
		/* Cleaning is idempotent: clean text passes unchanged. */
		char *again = text_clean(c, strlen(c), TEXT_NO_LIMIT);
		ck_assert_str_eq(again, c);
		free(again);
		free(c);

		c = text_clean_lines((const char *)in, len, max);
		j = json_string(c);
		ck_assert(j != NULL);
		json_decref(j);
		for (const char *p = c; *p; p++)
			ck_assert((unsigned char)*p >= 0x20 || *p == '\n' || *p == '\t');
		free(c);

		text_clean_buf(buf, sizeof(buf), (const char *)in, len);
		ck_assert(text_is_clean(buf));

		/* text_json on the raw bytes (cut at the first NUL) is never NULL. */
		in[len] = '\0';
		j = text_json((const char *)in);
		ck_assert(json_is_string(j));
		json_decref(j);
	}
}
END_TEST

/* What one log call writes to stderr (through a pipe). */
static char *log_capture(enum log_format fmt, const char *reason)
{
	static char got[8192];
	int p[2], saved = dup(STDERR_FILENO);
	ssize_t n;

	ck_assert_int_eq(pipe(p), 0);
	dup2(p[1], STDERR_FILENO);
	log_setup(fmt, LOG_LVL_INFO, "test_text");
	log_warn("gate: refused: %s", reason);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[1]);
	n = read(p[0], got, sizeof(got) - 1);
	close(p[0]);
	ck_assert(n > 0);
	got[n] = '\0';
	return got;
}

START_TEST(test_log)
{
	static const char forged[] =
	    "busy\n2024-01-01T00:00:00.000Z lbd[1] info: gate: granted\x1b[2K\xE2\x82";
	char *line = log_capture(LOG_FMT_TEXT, forged);
	char *nl = strchr(line, '\n');

	/* One line, ending the write, clean, with the reason still readable. */
	ck_assert_ptr_nonnull(nl);
	ck_assert_msg(nl[1] == '\0', "more than one line: '%s'", line);
	*nl = '\0';
	ck_assert(text_is_clean(line));
	ck_assert_ptr_nonnull(strstr(line, "refused: busy 2024-01-01T00:00:00.000Z lbd[1] info"));

	line = log_capture(LOG_FMT_JSON, forged);
	json_t *j = json_loads(line, 0, NULL);
	ck_assert_msg(j != NULL, "not JSON: '%s'", line);
	const char *msg = json_string_value(json_object_get(j, "msg"));
	ck_assert_ptr_nonnull(msg);
	ck_assert(text_is_clean(msg));
	json_decref(j);

	/* Clean text is written as it is. */
	line = log_capture(LOG_FMT_TEXT, "caf\xC3\xA9 \"ok\"");
	ck_assert_ptr_nonnull(strstr(line, "warn: gate: refused: caf\xC3\xA9 \"ok\"\n"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("text");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_valid_kept);
	tcase_add_test(tc, test_invalid);
	tcase_add_test(tc, test_controls);
	tcase_add_test(tc, test_lines);
	tcase_add_test(tc, test_cut);
	tcase_add_test(tc, test_buf);
	tcase_add_test(tc, test_null_empty);
	tcase_add_test(tc, test_tail);
	tcase_add_test(tc, test_random);
	tcase_add_test(tc, test_log);
	suite_add_tcase(s, tc);
	return unit_run(s);
}
