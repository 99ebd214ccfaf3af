/*
 * xmalloc.h - the one allocation wrapper. Out of memory aborts with a
 * message, so no caller tests for NULL. xfree(&p) frees and clears.
 */
#ifndef LBD_XMALLOC_H
#define LBD_XMALLOC_H

#include <stddef.h>
#include <stdlib.h> /* free() in xfree() */

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* What they do when malloc fails: a message (n bytes wanted, 0 unknown) and
 * abort(). For a library call whose only failure is out of memory
 * (open_memstream, evtimer_new, json_dumps of clean text), so that it too
 * stops lbd the one way. */
void xmalloc_oom(size_t n) __attribute__((noreturn));

/* Frees *pp and sets it to NULL: no pointer is left at freed memory. */
#define xfree(pp)                                                                                  \
	do {                                                                                       \
		free(*(pp));                                                                       \
		*(pp) = NULL;                                                                      \
	} while (0)

#endif
