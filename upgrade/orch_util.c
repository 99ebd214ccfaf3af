/*
 * orch_util.c - the orchestrator's small helpers: events (orch_emit), the run's failure
 * flag (orch_stopping, orch_fail_run), string builders (sbuf, strv) and kubelet
 * version comparison.
 */
#define _GNU_SOURCE
#include "upgrade/orchestrator_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/xmalloc.h"
#include "common/http.h"
#include "upgrade/drain.h"
#include "upgrade/exec.h"
#include "kube/kube.h"
#include "kube/kubeconfig.h"

/* ---- small helpers -------------------------------------------------------------------- */

void orch_emit(struct orch *o, enum orch_ev type, const char *node, const char *step,
	       int64_t step_start, const char *fmt, ...)
{
	char *m = NULL;
	va_list ap;
	int64_t now = mono_ms();

	if (fmt) {
		va_start(ap, fmt);
		if (vasprintf(&m, fmt, ap) < 0)
			abort();
		va_end(ap);
	}
	struct orch_event ev = {type,
				node ? node : "-",
				step ? step : "-",
				m ? m : "",
				step_start ? now - step_start : 0,
				now - o->p->run_start};
	pthread_mutex_lock(&o->p->ev_mu);
	if (o->on_event)
		o->on_event(o->ev_arg, &ev);
	pthread_mutex_unlock(&o->p->ev_mu);
	free(m);
}

bool orch_stopping(struct orch *o)
{
	bool failed;
	pthread_mutex_lock(&o->p->fmu);
	failed = o->p->rc != ORCH_OK;
	pthread_mutex_unlock(&o->p->fmu);
	return failed || (o->stop && *o->stop);
}

bool orch_interrupted(struct orch *o)
{
	return o->stop && *o->stop;
}

void orch_fail_run(struct orch *o, int rc, const char *msg)
{
	pthread_mutex_lock(&o->p->fmu);
	if (o->p->rc == ORCH_OK) {
		o->p->rc = rc;
		o->p->fail_msg = xstrdup(msg);
	}
	pthread_mutex_unlock(&o->p->fmu);
}

const char *orch_dur(int64_t ms, char *buf, size_t len)
{
	return duration_format(ms, buf, len);
}

void orch_sleep_ms(int64_t ms)
{
	usleep((useconds_t)(ms * 1000));
}

__attribute__((format(printf, 2, 3))) void orch_sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	char *m;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		abort();
	va_end(ap);
	size_t l = strlen(m);
	b->s = xrealloc(b->s, b->n + l + 1);
	memcpy(b->s + b->n, m, l + 1);
	b->n += l;
	free(m);
}

__attribute__((format(printf, 2, 3))) void orch_sv_add(struct strv *s, const char *fmt, ...)
{
	va_list ap;
	char *m;
	va_start(ap, fmt);
	if (vasprintf(&m, fmt, ap) < 0)
		abort();
	va_end(ap);
	s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
	s->v[s->n++] = m;
}

void orch_sv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	xfree(&s->v);
	s->n = 0;
}

/* ---- versions --------------------------------------------------------------------------- */

/* <0, 0, >0 by major.minor.patch; 0 also when unparsable (caller checks). */
int orch_vcmp(const char *a, const char *b)
{
	int a1, a2, a3, b1, b2, b3;
	if (plan_version_parse(a, &a1, &a2, &a3) < 0 || plan_version_parse(b, &b1, &b2, &b3) < 0)
		return 0;
	if (a1 != b1)
		return a1 - b1;
	if (a2 != b2)
		return a2 - b2;
	return a3 - b3;
}

/* Whether kubelet version v is the target: the same string, or the same
 * numbers when the target has no build suffix. */
bool orch_at_target(const char *v, const char *target)
{
	if (!v || !target)
		return false;
	if (!strcmp(v, target))
		return true;
	return !strpbrk(target, "+-") && orch_vcmp(v, target) == 0 &&
	       plan_version_parse(v, &(int){0}, &(int){0}, &(int){0}) == 0;
}

/* Splits text into lines (pointers into a copy; caller frees *buf and the array). */
static char **split_lines(const char *text, char **buf, size_t *n)
{
	size_t cap = 16;
	char **v = xcalloc(cap, sizeof(*v));
	*n = 0;
	*buf = xstrdup(text ? text : "");
	for (char *p = *buf; *p;) {
		char *nl = strchr(p, '\n');
		if (*n == cap)
			v = xrealloc(v, (cap *= 2) * sizeof(*v));
		v[(*n)++] = p;
		if (!nl)
			break;
		*nl = 0;
		p = nl + 1;
	}
	return v;
}

char *orch_line_diff(const char *a, const char *b)
{
	char *ba, *bb;
	size_t na, nb;
	char **la = split_lines(a, &ba, &na), **lb = split_lines(b, &bb, &nb);
	struct sbuf out = {0};

	if (na > 4000 || nb > 4000) { /* not a plan anyone writes: say so, no table */
		orch_sb_add(&out, "(%zu lines before, %zu after)\n", na, nb);
	} else {
		/* longest common subsequence, then walk it */
		size_t w = nb + 1;
		unsigned short *t = xcalloc((na + 1) * w, sizeof(*t));
		for (size_t i = na; i-- > 0;)
			for (size_t j = nb; j-- > 0;)
				t[i * w + j] = !strcmp(la[i], lb[j]) ? t[(i + 1) * w + j + 1] + 1
					       : t[(i + 1) * w + j] >= t[i * w + j + 1]
						   ? t[(i + 1) * w + j]
						   : t[i * w + j + 1];
		size_t i = 0, j = 0;
		while (i < na || j < nb) {
			if (i < na && j < nb && !strcmp(la[i], lb[j])) {
				i++, j++;
			} else if (j < nb && (i == na || t[i * w + j + 1] > t[(i + 1) * w + j])) {
				orch_sb_add(&out, "+ %s\n", lb[j++]);
			} else {
				orch_sb_add(&out, "- %s\n", la[i++]);
			}
		}
		free(t);
	}
	free(la);
	free(lb);
	free(ba);
	free(bb);
	return out.s ? out.s : xstrdup("");
}
