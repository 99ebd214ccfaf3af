/*
 * gatesup.c - see gatesup.h.
 *
 * States: STARTING (spawned, no "ready" yet), RUNNING, RESTARTING (dead,
 * a restart is scheduled). Forwarded admin requests wait in a list with
 * their ids; each is answered by the gate's "resp", by a 503 when the gate
 * process dies, or by a 504 after GATESUP_REQUEST_MS. Nothing here blocks:
 * spawning is fork + exec, the channel is a bufferevent, reaping is
 * waitpid(WNOHANG) on SIGCHLD.
 */
#define _GNU_SOURCE
#include "lbd/gatesup.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/sock.h"
#include "common/xmalloc.h"
#include "config/config.h"
#include "gate/conf.h"
#include "gate/proc.h"
#include "lbd/admin.h"
#include "lbd/handover.h"
#include "lbd/pool.h"
#include "lbd/server.h"

#define GATESUP_POOL_MS 500
#define GATESUP_PING_MS 1000
#define GATESUP_REQUEST_MS 30000
#define GATESUP_MAX_PENDING 64
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define STABLE_MS 30000

enum gs_state { GS_STARTING, GS_RUNNING, GS_RESTARTING };

struct pending {
	uint64_t id;
	struct admin_req *r; /* deferred */
	int64_t deadline_ms;
	struct pending *next;
};

struct gatesup {
	struct event_base *base;
	struct server *srv;
	struct config *conf; /* the gate section to hand over (gate_conf_dup) */
	bool set_aside;
	int listen_fd; /* gate.listen, bound here; -1 if none */
	enum gs_state state;
	pid_t pid;	/* the gate process, 0 when there is none */
	pid_t reap_pid; /* one killed, not reaped yet */
	struct msgchan *ch;
	int64_t started_ms, since_wall; /* this process's start (mono), state change (unix s) */
	unsigned restarts;
	char last_exit[96];
	int64_t backoff_ms;
	int64_t last_pong_ms;
	uint64_t ping_seq, next_id;
	struct pending *pending;
	size_t npending;
	struct event *restart_ev, *tick_ev, *pool_ev, *chld_ev;
	struct event *orphan_ev; /* the channel closed: SIGCHLD should follow */
	char *metrics;		 /* the gate's last /metrics text (from its pong) */
	bool held;		 /* gatesup_go() not called yet: no process */
	bool retired;		 /* handed over to a new lbd: none any more */
};

static void spawn(struct gatesup *g);

static void set_state(struct gatesup *g, enum gs_state st)
{
	g->state = st;
	g->since_wall = time(NULL);
}

static void tell(struct gatesup *g, json_t *m)
{
	if (g->ch && msg_send(g->ch, m) < 0)
		log_warn("gate: cannot queue a message for the gate process (%zu bytes waiting)",
			 msg_queued(g->ch));
	json_decref(m);
}

/* ---- forwarded requests ------------------------------------------------------------- */

static void answer(struct pending *p, int status, json_t *body)
{
	admin_reply_json(p->r, status, body);
	free(p);
}

/* Answers every waiting request with status (the gate process is gone). */
static void fail_pending(struct gatesup *g, int status, const char *why)
{
	while (g->pending) {
		struct pending *p = g->pending;
		g->pending = p->next;
		answer(p, status, json_pack("{s:s}", "error", why));
	}
	g->npending = 0;
}

static void forward(struct admin_req *r, struct gatesup *g, const char *path)
{
	const char *method = admin_method(r) == ADMIN_GET      ? "GET"
			     : admin_method(r) == ADMIN_POST   ? "POST"
			     : admin_method(r) == ADMIN_DELETE ? "DELETE"
							       : "OTHER";
	json_t *body = NULL;
	bool bad = false;

	if (g->retired) {
		admin_error(r, 503, "gate restarting: it moved to the new lbd");
		return;
	}
	if (!g->ch) {
		admin_error(r, 503, "gate restarting");
		return;
	}
	if (g->npending >= GATESUP_MAX_PENDING) {
		admin_error(r, 503, "gate busy: %d requests are waiting for it",
			    GATESUP_MAX_PENDING);
		return;
	}
	if (admin_method(r) == ADMIN_POST) {
		body = admin_body(r, &bad);
		if (bad)
			return; /* admin_body answered 400 */
	}
	struct pending *p = xcalloc(1, sizeof(*p));
	p->id = ++g->next_id;
	p->deadline_ms = mono_ms() + GATESUP_REQUEST_MS;
	json_t *m = json_pack("{s:s,s:I,s:s,s:s,s:o?}", "t", "req", "id", (json_int_t)p->id,
			      "method", method, "path", path, "body", body);
	if (!m || msg_send(g->ch, m) < 0) {
		json_decref(m);
		free(p);
		admin_error(r, 503, "gate busy: cannot reach the gate process");
		return;
	}
	json_decref(m);
	p->r = admin_defer(r);
	p->next = g->pending;
	g->pending = p;
	g->npending++;
}

static void on_resp(struct gatesup *g, json_t *m)
{
	uint64_t id = (uint64_t)json_integer_value(json_object_get(m, "id"));
	int status = (int)json_integer_value(json_object_get(m, "status"));
	json_t *body = json_object_get(m, "body");

	for (struct pending **pp = &g->pending; *pp; pp = &(*pp)->next) {
		struct pending *p = *pp;
		if (p->id != id)
			continue;
		*pp = p->next;
		g->npending--;
		if (status < 200 || status > 599 || !json_is_object(body))
			answer(p, 502,
			       json_pack("{s:s}", "error", "a malformed answer from the gate"));
		else
			answer(p, status, json_incref(body));
		return;
	}
	/* Already answered with a 504: the gate was late. */
}

static void expire_pending(struct gatesup *g)
{
	int64_t now = mono_ms();

	for (struct pending **pp = &g->pending; *pp;) {
		struct pending *p = *pp;
		if (p->deadline_ms > now) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		g->npending--;
		answer(p, 504,
		       json_pack("{s:s}", "error", "the gate process did not answer in time"));
	}
}

static void route_status(struct admin_req *r, void *arg)
{
	forward(r, arg, "/v1/gate/status");
}

static void route_leases(struct admin_req *r, void *arg)
{
	forward(r, arg, "/v1/gate/leases");
}

static void route_lease(struct admin_req *r, void *arg)
{
	char path[512];
	snprintf(path, sizeof(path), "/v1/gate/leases/%s", admin_param(r, 0));
	forward(r, arg, path);
}

/* ---- what lbd tells the gate -------------------------------------------------------- */

/* The quorum pool as the policy reads it: health and admin state of each backend. */
static json_t *pool_msg(const struct gatesup *g)
{
	const char *name = g->conf->gate.quorum_pool;
	struct pool *p = name ? server_pool(g->srv, name) : NULL;
	json_t *arr = json_array();

	if (!name || !p) {
		json_decref(arr);
		return json_pack("{s:s,s:b,s:s?}", "t", "pool", "known", 0, "why",
				 name ? "lbd has no pool of that name" : NULL);
	}
	for (size_t i = 0; i < p->nbe; i++) {
		const struct backend *b = p->be[i];
		bool up = backend_is_up(b);
		const char *detail = up		   ? NULL
				     : b->has_fail ? b->last_fail.detail
						   : "no check result yet";
		json_t *o = json_pack("{s:s,s:b,s:s,s:i}", "name", b->conf.name, "up", up, "state",
				      backend_state_name(b->state), "weight", b->conf.weight);
		/* detail quotes a backend's answer: outside text, cleaned by check.c. */
		if (o && detail)
			json_object_set_new(o, "detail", json_string(detail));
		if (o)
			json_array_append_new(arr, o);
	}
	return json_pack("{s:s,s:b,s:o}", "t", "pool", "known", 1, "backends", arr);
}

static json_t *hello_msg(const struct gatesup *g)
{
	const struct config *cfg = g->srv->cfg;
	json_t *conf = gate_conf_to_json(&g->conf->gate);

	if (!conf)
		return NULL;
	return json_pack("{s:s,s:o,s:s,s:b,s:i,s:i}", "t", "hello", "conf", conf, "state_dir",
			 cfg->state_dir, "set_aside", g->set_aside, "log_format",
			 (int)cfg->log.format, "log_level", (int)cfg->log.level);
}

static void on_pool_timer(evutil_socket_t fd, short what, void *arg)
{
	struct gatesup *g = arg;

	if (g->ch)
		tell(g, pool_msg(g));
}

/* ---- the gate process's life -------------------------------------------------------- */

static const char *describe(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d%s", WTERMSIG(status),
			 WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "status %#x", status);
	return buf;
}

/* The gate process is dead (pid already reaped: 0) or must go: kill it if
 * it still runs, answer what waited on it, and schedule the next one. */
static void lost(struct gatesup *g, pid_t pid, const char *why)
{
	int64_t up = mono_ms() - g->started_ms;

	evtimer_del(g->orphan_ev);
	msg_close(&g->ch);
	fail_pending(g, 503, "gate restarting");
	if (g->pid > 0) {
		kill(g->pid, SIGKILL); /* not reaped yet, so the pid is still its */
		g->reap_pid = g->pid;
	}
	g->pid = 0;
	if (g->state == GS_RESTARTING)
		return;
	if (g->srv->stopping || g->retired) {
		log_info("gate: process %d %s while lbd stops; not restarting it", (int)pid, why);
		set_state(g, GS_RESTARTING);
		return;
	}
	g->backoff_ms =
	    up >= STABLE_MS || g->backoff_ms == 0
		? BACKOFF_MIN_MS
		: (g->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : g->backoff_ms * 2);
	snprintf(g->last_exit, sizeof(g->last_exit), "%s", why);
	log_warn("gate: process %d %s; restarting in %lldms", (int)pid, why,
		 (long long)g->backoff_ms);
	set_state(g, GS_RESTARTING);
	struct timeval tv = {g->backoff_ms / 1000, (g->backoff_ms % 1000) * 1000};
	evtimer_add(g->restart_ev, &tv);
}

static void on_restart(evutil_socket_t fd, short what, void *arg)
{
	struct gatesup *g = arg;
	g->restarts++;
	spawn(g);
}

static void on_sigchld(evutil_socket_t sig, short what, void *arg)
{
	struct gatesup *g = arg;
	int status;
	char buf[80];

	/* Only our own: lbd has other children (a new lbd during a restart). */
	if (g->reap_pid > 0 && waitpid(g->reap_pid, &status, WNOHANG) == g->reap_pid)
		g->reap_pid = 0;
	if (g->pid > 0 && waitpid(g->pid, &status, WNOHANG) == g->pid) {
		pid_t pid = g->pid;
		g->pid = 0; /* reaped: never signal that number again */
		lost(g, pid, describe(status, buf, sizeof(buf)));
	}
}

/* The channel closed but no SIGCHLD came: a process that closed fd 3 is broken. */
static void on_orphan(evutil_socket_t fd, short what, void *arg)
{
	struct gatesup *g = arg;
	lost(g, g->pid, "closed its channel and did not exit; killed");
}

static void on_msg(struct msgchan *c, json_t *m, void *arg)
{
	struct gatesup *g = arg;
	const char *t = json_string_value(json_object_get(m, "t"));

	g->last_pong_ms = mono_ms(); /* any message shows its loop turns */
	if (strcmp(t, "resp") == 0) {
		on_resp(g, m);
	} else if (strcmp(t, "ready") == 0) {
		set_state(g, GS_RUNNING);
		log_info("gate: process %d is ready", (int)g->pid);
		tell(g, pool_msg(g));
	} else if (strcmp(t, "pong") == 0) {
		const char *text = json_string_value(json_object_get(m, "metrics"));
		free(g->metrics);
		g->metrics = text ? xstrdup(text) : NULL;
	} else {
		log_warn("gate: unknown message '%s' from the gate process; ignored", t);
	}
}

/* Usually the process died, and SIGCHLD, which says how, follows at once. */
static void on_closed(struct msgchan *c, const char *why, void *arg)
{
	struct gatesup *g = arg;
	struct timeval tv = {1, 0};

	msg_close(&g->ch);
	fail_pending(g, 503, "gate restarting");
	evtimer_add(g->orphan_ev, &tv);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct gatesup *g = arg;

	expire_pending(g);
	if (!g->ch)
		return;
	if (mono_ms() - g->last_pong_ms > GATESUP_HEARTBEAT_MS) {
		char buf[64];
		snprintf(buf, sizeof(buf), "did not answer for %ds; killed",
			 GATESUP_HEARTBEAT_MS / 1000);
		lost(g, g->pid, buf);
		return;
	}
	tell(g, json_pack("{s:s,s:I}", "t", "ping", "seq", (json_int_t)++g->ping_seq));
}

/*
 * fork + exec of this very binary (/proc/self/exe: the same build, even if
 * a package upgrade replaced the file) with the channel on fd 3 and
 * gate.listen on fd 4. Between fork and exec only async-signal-safe calls:
 * lbd has threads.
 */
static void spawn(struct gatesup *g)
{
	int sv[2];
	char *argv[] = {"lbd-gate", GATE_PROCESS_ARG, NULL};
	json_t *hello = hello_msg(g);

	if (!hello || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		json_decref(hello);
		lost(g, 0,
		     hello ? "could not be started (socketpair failed)"
			   : "could not be started (settings do not encode)");
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		int c = fcntl(sv[1], F_DUPFD, 10);
		int l = g->listen_fd >= 0 ? fcntl(g->listen_fd, F_DUPFD, 10) : -1;
		if (c < 0 || dup2(c, GATE_CHAN_FD) < 0 || (l >= 0 && dup2(l, GATE_LISTEN_FD) < 0))
			_exit(127);
		if (l < 0)
			close(GATE_LISTEN_FD);
		close_range(GATE_LISTEN_FD + 1, ~0U, 0);
		execv("/proc/self/exe", argv);
		_exit(127);
	}
	close(sv[1]);
	if (pid < 0) {
		close(sv[0]);
		json_decref(hello);
		char buf[80];
		snprintf(buf, sizeof(buf), "could not be started (fork: %s)", strerror(errno));
		lost(g, 0, buf);
		return;
	}
	g->pid = pid;
	g->started_ms = g->last_pong_ms = mono_ms();
	g->ch = msg_open(g->base, sv[0], on_msg, on_closed, g);
	set_state(g, GS_STARTING);
	log_info("gate: started process %d", pid);
	tell(g, hello);
}

/* ---- status ------------------------------------------------------------------------- */

static void status_json(json_t *o, void *arg)
{
	const struct gatesup *g = arg;
	static const char *const names[] = {"starting", "running", "restarting"};
	char since[32];
	time_t t = (time_t)g->since_wall;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(since, sizeof(since), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(o, "gate",
			    json_pack("{s:s,s:i,s:i,s:s?,s:s}", "state", names[g->state], "pid",
				      g->pid > 0 ? (int)g->pid : 0, "restarts", (int)g->restarts,
				      "last_exit", g->last_exit[0] ? g->last_exit : NULL, "since",
				      since));
}

/* ---- metrics ------------------------------------------------------------------------ */

/* lbd's own view of the gate process, then the gate's families as of its
 * last pong (a second old at most; none while it is down). */
static char *metrics_text(void *arg)
{
	const struct gatesup *g = arg;

	return xasprintf("# HELP lbd_gate_process_up 1 while the gate process runs and "
			 "answers.\n# TYPE lbd_gate_process_up gauge\nlbd_gate_process_up %d\n"
			 "# HELP lbd_gate_process_restarts_total Times lbd restarted the gate "
			 "process.\n# TYPE lbd_gate_process_restarts_total counter\n"
			 "lbd_gate_process_restarts_total %u\n%s",
			 g->state == GS_RUNNING && g->ch ? 1 : 0, g->restarts,
			 g->state == GS_RUNNING && g->ch && g->metrics ? g->metrics : "");
}

/* ---- life --------------------------------------------------------------------------- */

struct gatesup *gatesup_start(struct event_base *base, struct server *s, struct admin *a,
			      bool set_aside, bool hold, char **err)
{
	const struct gate_conf *gc = &s->cfg->gate;
	struct gatesup *g;

	*err = NULL;
	if (!gc->enabled)
		return NULL;
	g = xcalloc(1, sizeof(*g));
	g->base = base;
	g->srv = s;
	g->conf = gate_conf_dup(gc);
	g->set_aside = set_aside;
	g->listen_fd = -1;
	if (gc->listen) {
		g->listen_fd = handover_take(
		    HANDOVER_GATE, (const struct sockaddr *)&gc->listen->ss, gc->listen->len);
		if (g->listen_fd < 0)
			g->listen_fd = sock_listen_tcp((const struct sockaddr *)&gc->listen->ss,
						       gc->listen->len, 128, "gate.listen",
						       gc->listen->text, err);
		if (g->listen_fd < 0) {
			config_free(g->conf);
			free(g);
			return NULL;
		}
	}
	g->restart_ev = evtimer_new(base, on_restart, g);
	g->orphan_ev = evtimer_new(base, on_orphan, g);
	g->chld_ev = evsignal_new(base, SIGCHLD, on_sigchld, g);
	event_add(g->chld_ev, NULL);
	struct timeval ping = {GATESUP_PING_MS / 1000, 0}, pool = {0, GATESUP_POOL_MS * 1000};
	g->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, g);
	event_add(g->tick_ev, &ping);
	g->pool_ev = event_new(base, -1, EV_PERSIST, on_pool_timer, g);
	event_add(g->pool_ev, &pool);
	admin_route(a, ADMIN_GET, "/v1/gate/status", route_status, g);
	admin_route(a, ADMIN_GET | ADMIN_POST, "/v1/gate/leases", route_leases, g);
	admin_route(a, ADMIN_DELETE, "/v1/gate/leases/{node}", route_lease, g);
	admin_on_status(a, status_json, g);
	admin_on_metrics(a, metrics_text, g);
	g->held = hold;
	set_state(g, GS_STARTING);
	if (!hold)
		spawn(g);
	return g;
}

void gatesup_go(struct gatesup *g)
{
	if (!g || !g->held)
		return;
	g->held = false;
	spawn(g);
}

int gatesup_listen_fd(const struct gatesup *g)
{
	return g ? g->listen_fd : -1;
}

/* Stops the gate process and waits (2 s at most) until it is gone. */
static void stop_process(struct gatesup *g)
{
	fail_pending(g, 503, "gate restarting");
	msg_close(&g->ch); /* the gate process exits on EOF */
	pid_t pid = g->pid ? g->pid : g->reap_pid;
	if (pid > 0) {
		int status;
		kill(pid, SIGTERM);
		for (int i = 0; i < 200 && waitpid(pid, &status, WNOHANG) == 0; i++)
			usleep(10 * 1000);
		if (waitpid(pid, &status, WNOHANG) == 0) {
			log_warn("gate: process %d did not stop in 2s; killing it", pid);
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
		}
	}
	g->pid = g->reap_pid = 0;
}

void gatesup_retire(struct gatesup *g)
{
	if (!g)
		return;
	g->retired = true;
	evtimer_del(g->restart_ev);
	evtimer_del(g->orphan_ev);
	stop_process(g);
	set_state(g, GS_RESTARTING);
	log_info("gate: stopped; the new lbd runs the gate now");
}

void gatesup_reload(struct gatesup *g, const struct config *cfg)
{
	const struct gate_conf *nc = &cfg->gate;

	if (!g) {
		if (nc->enabled)
			log_warn("reload: a gate section was added; the gate starts at the next "
				 "restart of lbd");
		return;
	}
	if (!nc->enabled) {
		log_warn("reload: the gate section was removed; the gate keeps running with its "
			 "current settings until the next restart of lbd");
		return;
	}
	if (!gate_conf_listen_eq(&g->conf->gate, nc))
		log_warn("reload: gate.listen changed to %s; it needs a restart of lbd, the gate "
			 "stays on %s",
			 nc->listen ? nc->listen->text : "(none)",
			 g->conf->gate.listen ? g->conf->gate.listen->text : "(none)");
	/* Keep the address lbd holds: what the next gate process gets is true. */
	struct gate_conf want = *nc;
	want.listen = g->conf->gate.listen;
	struct config *next = gate_conf_dup(&want);
	config_free(g->conf);
	g->conf = next;
	json_t *conf = gate_conf_to_json(&g->conf->gate);
	if (g->ch && conf)
		tell(g, json_pack("{s:s,s:o}", "t", "conf", "conf", conf));
	else
		json_decref(conf);
	on_pool_timer(-1, 0, g); /* quorum.pool may name another pool now */
}

void gatesup_stop(struct gatesup **gp)
{
	struct gatesup *g = *gp;

	if (!g)
		return;
	fail_pending(g, 503, "lbd is stopping");
	stop_process(g);
	event_free(g->restart_ev);
	event_free(g->orphan_ev);
	event_free(g->chld_ev);
	event_free(g->tick_ev);
	event_free(g->pool_ev);
	if (g->listen_fd >= 0)
		close(g->listen_fd);
	config_free(g->conf);
	free(g->metrics);
	free(g);
	*gp = NULL;
}
