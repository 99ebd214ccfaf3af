/* metrics.c - see metrics.h. */
#include "lbd/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/version.h"
#include "common/xmalloc.h"
#include "lbd/drain.h"
#include "lbd/server.h"

/* Label values: backslash, double quote and newline escaped. */
static void esc(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{pool="..",backend=".."<extra>} */
static void be_labels(FILE *f, const char *name, const struct pool *p, const struct backend *b)
{
	fprintf(f, "%s{pool=\"", name);
	esc(f, p->conf.name);
	fputs("\",backend=\"", f);
	esc(f, b->conf.name);
	fputc('"', f);
}

typedef void (*be_metric_fn)(FILE *f, const char *name, const struct pool *p,
			     const struct backend *b);

static void each_backend(FILE *f, const struct server *s, const char *name, const char *type,
			 const char *help, be_metric_fn fn)
{
	head(f, name, type, help);
	for (size_t i = 0; i < s->npools; i++)
		for (size_t j = 0; j < s->pools[i]->nbe; j++)
			fn(f, name, s->pools[i], s->pools[i]->be[j]);
}

#define SIMPLE(fnname, expr)                                                                       \
	static void fnname(FILE *f, const char *name, const struct pool *p,                        \
			   const struct backend *b)                                                \
	{                                                                                          \
		be_labels(f, name, p, b);                                                          \
		fprintf(f, "} %llu\n", (unsigned long long)(expr));                                \
	}

SIMPLE(m_up, backend_is_up(b))
SIMPLE(m_known, b->health.known)
SIMPLE(m_weight, b->conf.weight)
SIMPLE(m_active, b->active)
SIMPLE(m_cfail, b->connect_failures)
SIMPLE(m_empty, b->empty_retries)
SIMPLE(m_htrans, b->health_changes)
SIMPLE(m_strans, b->state_changes)
SIMPLE(m_drain_closed, b->drain_forced)
SIMPLE(m_down_closed, b->down_closed)
SIMPLE(m_rb_closed, b->rb_closed)

static void m_state(FILE *f, const char *name, const struct pool *p, const struct backend *b)
{
	for (enum backend_state st = BE_ENABLED; st <= BE_DISABLED; st++) {
		be_labels(f, name, p, b);
		fprintf(f, ",state=\"%s\"} %d\n", backend_state_name(st), b->state == st);
	}
}

static void m_total(FILE *f, const char *name, const struct pool *p, const struct backend *b)
{
	struct backend_counts n;

	backend_counts_read(b, &n);
	be_labels(f, name, p, b);
	fprintf(f, "} %llu\n", (unsigned long long)n.connects);
}

static void m_bytes(FILE *f, const char *name, const struct pool *p, const struct backend *b)
{
	struct backend_counts n;

	backend_counts_read(b, &n);
	be_labels(f, name, p, b);
	fprintf(f, ",direction=\"to_backend\"} %llu\n", (unsigned long long)n.bytes_out);
	be_labels(f, name, p, b);
	fprintf(f, ",direction=\"from_backend\"} %llu\n", (unsigned long long)n.bytes_in);
}

static void m_check_fail(FILE *f, const char *name, const struct pool *p, const struct backend *b)
{
	for (int r = 0; r < CHK_REASON_MAX; r++) {
		if (r == CHK_OK)
			continue;
		be_labels(f, name, p, b);
		fprintf(f, ",reason=\"%s\"} %llu\n", check_reason_name(r),
			(unsigned long long)b->check_fails[r]);
	}
}

static void m_drain_left(FILE *f, const char *name, const struct pool *p, const struct backend *b)
{
	double left = drainer_seconds_left(b);

	be_labels(f, name, p, b);
	fprintf(f, "} %.3f\n", b->state == BE_DRAIN && left > 0 ? left : 0.0);
}

/* One backend's histogram: per-bucket counts (not cumulative) over nle
 * bounds and a last +Inf bucket, their sum in microseconds. */
static void hist_lines(FILE *f, const char *name, const struct pool *p, const struct backend *b,
		       const double *le, int nle, const uint64_t *per_bucket, uint64_t usec_sum)
{
	char series[128];
	uint64_t cum = 0;

	snprintf(series, sizeof(series), "%s_bucket", name);
	for (int k = 0; k <= nle; k++) {
		cum += per_bucket[k];
		be_labels(f, series, p, b);
		if (k < nle)
			fprintf(f, ",le=\"%g\"} %llu\n", le[k], (unsigned long long)cum);
		else
			fprintf(f, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
	}
	snprintf(series, sizeof(series), "%s_sum", name);
	be_labels(f, series, p, b);
	fprintf(f, "} %.6f\n", (double)usec_sum / 1e6);
	snprintf(series, sizeof(series), "%s_count", name);
	be_labels(f, series, p, b);
	fprintf(f, "} %llu\n", (unsigned long long)cum);
}

static void m_check_hist(FILE *f, const char *name, const struct pool *p, const struct backend *b)
{
	hist_lines(f, name, p, b, pool_check_hist_le, CHECK_HIST_BUCKETS, b->check_hist,
		   (uint64_t)b->check_usec_sum);
}

static void m_connect_hist(FILE *f, const char *name, const struct pool *p, const struct backend *b)
{
	struct backend_counts n;

	backend_counts_read(b, &n);
	hist_lines(f, name, p, b, pool_connect_hist_le, CONNECT_HIST_BUCKETS, n.connect_hist,
		   n.connect_usec_sum);
}

static void fe_line(FILE *f, const char *name, const struct frontend *fe, const char *extra,
		    uint64_t v)
{
	fprintf(f, "%s{frontend=\"", name);
	esc(f, fe->conf.name);
	fprintf(f, "\"%s} %llu\n", extra, (unsigned long long)v);
}

static void m_frontends(FILE *f, const struct server *s)
{
	head(f, "lbd_frontend_active_connections", "gauge", "Client connections open now.");
	for (size_t i = 0; i < s->nfes; i++)
		fe_line(f, "lbd_frontend_active_connections", s->fes[i], "", s->fes[i]->active);
	head(f, "lbd_frontend_connections_total", "counter", "Client connections accepted.");
	for (size_t i = 0; i < s->nfes; i++)
		fe_line(f, "lbd_frontend_connections_total", s->fes[i], "", s->fes[i]->total);
	head(f, "lbd_frontend_refused_total", "counter",
	     "Client connections closed at once, by reason.");
	for (size_t i = 0; i < s->nfes; i++) {
		fe_line(f, "lbd_frontend_refused_total", s->fes[i], ",reason=\"max_connections\"",
			s->fes[i]->refused_max);
		fe_line(f, "lbd_frontend_refused_total", s->fes[i], ",reason=\"no_backend\"",
			s->fes[i]->no_backend);
	}
	head(f, "lbd_frontend_tls_handshake_failures_total", "counter",
	     "Mode tls: client handshakes that failed or timed out.");
	for (size_t i = 0; i < s->nfes; i++)
		fe_line(f, "lbd_frontend_tls_handshake_failures_total", s->fes[i], "",
			s->fes[i]->tls_failures);
	head(f, "lbd_frontend_connect_retries_total", "counter",
	     "Connects moved to another backend after a refused or timed-out connect.");
	for (size_t i = 0; i < s->nfes; i++)
		fe_line(f, "lbd_frontend_connect_retries_total", s->fes[i], "", s->fes[i]->retried);
}

/* lbd_build_info{version="0.1.0-1",commit="g1a2b3c"} 1, from lbd_version
 * ("0.1.0-1 (g1a2b3c)"; no commit when not built from git). */
static void build_info(FILE *f)
{
	const char *open = strstr(lbd_version, " (");
	size_t vlen = open ? (size_t)(open - lbd_version) : strlen(lbd_version);
	char *version = xstrndup(lbd_version, vlen);
	char *commit = xstrdup(open ? open + 2 : "");

	commit[strcspn(commit, ")")] = '\0';
	head(f, "lbd_build_info", "gauge", "Always 1; the labels say which build runs.");
	fputs("lbd_build_info{version=\"", f);
	esc(f, version);
	fputs("\",commit=\"", f);
	esc(f, commit);
	fputs("\"} 1\n", f);
	free(version);
	free(commit);
}

char *metrics_render(const struct server *s, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	if (!f)
		xmalloc_oom(0);
	build_info(f);
	head(f, "lbd_start_time_seconds", "gauge", "When lbd started, unix time.");
	fprintf(f, "lbd_start_time_seconds %lld\n", (long long)s->started_wall);
	head(f, "lbd_reloads_total", "counter", "Config reloads asked for.");
	fprintf(f, "lbd_reloads_total %llu\n", (unsigned long long)s->reloads);
	head(f, "lbd_reload_failures_total", "counter", "Config reloads refused.");
	fprintf(f, "lbd_reload_failures_total %llu\n", (unsigned long long)s->reload_failures);
	head(f, "lbd_runtime_edits", "gauge", "Entries in the persisted runtime overlay.");
	fprintf(f, "lbd_runtime_edits %zu\n", s->st.n);
	head(f, "lbd_pool_fail_safe", "gauge",
	     "1 when no backend passes its checks and lbd routes to those still live.");
	for (size_t i = 0; i < s->npools; i++) {
		fputs("lbd_pool_fail_safe{pool=\"", f);
		esc(f, s->pools[i]->conf.name);
		fprintf(f, "\"} %d\n", s->pools[i]->fail_safe);
	}
	each_backend(f, s, "lbd_backend_up", "gauge", "1 if the backend passes its health checks.",
		     m_up);
	each_backend(f, s, "lbd_backend_health_known", "gauge",
		     "1 once the backend has a check result.", m_known);
	each_backend(f, s, "lbd_backend_admin_state", "gauge",
		     "The backend's admin state (enabled, drain, disabled): 1 for the current one.",
		     m_state);
	each_backend(f, s, "lbd_backend_weight", "gauge", "Balancing weight.", m_weight);
	each_backend(f, s, "lbd_backend_active_connections", "gauge", "Connections open now.",
		     m_active);
	each_backend(f, s, "lbd_backend_connections_total", "counter", "Connections ever made.",
		     m_total);
	each_backend(f, s, "lbd_backend_connect_failures_total", "counter",
		     "Connects that failed (refused, unreachable, timed out).", m_cfail);
	each_backend(f, s, "lbd_backend_empty_response_retries_total", "counter",
		     "Connections the backend reset or closed before sending a byte, whose client "
		     "was moved to another backend with its first bytes replayed "
		     "(retry_on_empty_response).",
		     m_empty);
	each_backend(f, s, "lbd_backend_bytes_total", "counter", "Bytes relayed, by direction.",
		     m_bytes);
	each_backend(f, s, "lbd_backend_connect_seconds", "histogram",
		     "Time from connect to established, of connects that succeeded.",
		     m_connect_hist);
	each_backend(f, s, "lbd_backend_check_duration_seconds", "histogram",
		     "Duration of health checks.", m_check_hist);
	each_backend(f, s, "lbd_backend_check_failures_total", "counter",
		     "Failed health checks, by reason.", m_check_fail);
	each_backend(f, s, "lbd_backend_health_transitions_total", "counter",
		     "Health changes (up/down).", m_htrans);
	each_backend(f, s, "lbd_backend_state_transitions_total", "counter", "Admin state changes.",
		     m_strans);
	each_backend(f, s, "lbd_backend_drain_seconds_left", "gauge",
		     "Seconds until the drain deadline (0 when not draining).", m_drain_left);
	each_backend(f, s, "lbd_backend_drain_closed", "gauge",
		     "Connections closed by the deadline of the backend's last drain.",
		     m_drain_closed);
	each_backend(f, s, "lbd_backend_down_closed_total", "counter",
		     "Connections closed because the backend was down (close_on_down).",
		     m_down_closed);
	each_backend(f, s, "lbd_backend_rebalance_closed_total", "counter",
		     "Connections closed to spread the pool's connections again (rebalance).",
		     m_rb_closed);
	m_frontends(f, s);
	if (fclose(f) != 0) /* a memory stream's only failure */
		xmalloc_oom(0);
	return buf;
}
