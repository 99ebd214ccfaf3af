/*
 * proc.c - the gate process: what `lbd --gate-process` runs (see proc.h).
 *
 * lbd starts it (lbd/gatesup.c) with fd 3, a socketpair to lbd, and fd 4,
 * gate.listen already bound, when there is one. The process waits for the
 * hello (the gate settings lbd validated, serialised by gate_conf_to_json:
 * the config file is never parsed twice), starts the gate on its one event
 * loop, says ready, and from then on answers lbd's messages:
 *
 *   lbd -> gate   hello {conf, state_dir, set_aside, log_format, log_level}
 *                       (the log enums' values: both ends are one binary)
 *                 conf  {conf}                 a reload
 *                 pool  {known, why, backends: [{name, up, state, weight, detail}]}
 *                 ping  {seq}
 *                 req   {id, method, path, body}   an admin-socket gate route
 *   gate -> lbd   ready {}
 *                 pong  {seq, metrics}      metrics: Prometheus text (gate_metrics)
 *                 resp  {id, status, body}
 *
 * When lbd goes away (the channel closes) the gate process exits; lbd also
 * asks the kernel to send it SIGTERM when lbd dies.
 */
#include "gate/proc.h"

#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/log.h"
#include "common/msg.h"
#include "common/xmalloc.h"
#include "config/config.h"
#include "gate/conf.h"
#include "gate/gate.h"
#include "gate/inputs.h"

struct proc {
	struct event_base *base;
	struct msgchan *ch;
	struct gate *g;
	int listen_fd;
	int status; /* the exit status */
};

static void stop(struct proc *p, int status)
{
	p->status = status;
	event_base_loopbreak(p->base);
}

/* hello and conf carry the gate section; hello also what else the gate needs. */
static struct config *conf_of(json_t *m, char **err)
{
	const char *state_dir = json_string_value(json_object_get(m, "state_dir"));
	struct config *cfg = gate_conf_from_json(json_object_get(m, "conf"), err);

	if (cfg && state_dir)
		cfg->state_dir = xstrdup(state_dir);
	return cfg;
}

static void on_hello(struct proc *p, json_t *m)
{
	json_int_t f = json_integer_value(json_object_get(m, "log_format"));
	json_int_t l = json_integer_value(json_object_get(m, "log_level"));
	char *err = NULL;
	struct config *cfg;

	if (p->g) {
		log_warn("gate: a second hello from lbd; ignored");
		return;
	}
	/* The enums' values: lbd and this process are the same binary. */
	log_setup(f == LOG_FMT_JSON ? LOG_FMT_JSON : LOG_FMT_TEXT,
		  l >= LOG_LVL_DEBUG && l <= LOG_LVL_ERR ? (enum log_level)l : LOG_LVL_INFO,
		  "lbd-gate");
	if (!(cfg = conf_of(m, &err)) || !cfg->state_dir) {
		log_err("gate: the settings from lbd are unusable: %s", err ? err : "no state_dir");
		free(err);
		config_free(cfg);
		stop(p, 1);
		return;
	}
	p->g = gate_start(p->base, cfg, p->listen_fd, json_is_true(json_object_get(m, "set_aside")),
			  &err);
	p->listen_fd = -1; /* the gate owns it now, started or not */
	if (!p->g) {
		log_err("gate: cannot start: %s", err);
		free(err);
		stop(p, 1);
		return;
	}
	json_t *ready = json_pack("{s:s}", "t", "ready");
	msg_send(p->ch, ready);
	json_decref(ready);
}

static void on_pool(struct proc *p, json_t *m)
{
	struct gate_pool_in in = {0};
	json_t *arr = json_object_get(m, "backends"), *b;
	size_t i;

	in.src.known = json_is_true(json_object_get(m, "known"));
	in.src.at_ms = gate_now_ms(); /* its age counts from here: lbd sends twice a second */
	in.src.why = (char *)json_string_value(json_object_get(m, "why"));
	in.v = xcalloc(json_array_size(arr) + 1, sizeof(*in.v));
	json_array_foreach(arr, i, b)
	{
		const char *name = json_string_value(json_object_get(b, "name"));
		if (!name)
			continue;
		in.v[in.n].name = (char *)name;
		in.v[in.n].up = json_is_true(json_object_get(b, "up"));
		/* Takes traffic: enabled, weight above 0 (what lbd says; absent: yes). */
		const char *state = json_string_value(json_object_get(b, "state"));
		json_t *weight = json_object_get(b, "weight");
		in.v[in.n].serving = (!state || strcmp(state, "enabled") == 0) &&
				     (!weight || json_integer_value(weight) > 0);
		in.v[in.n].detail = (char *)json_string_value(json_object_get(b, "detail"));
		in.n++;
	}
	gate_set_pool(p->g, &in); /* copies */
	free(in.v);
}

static void on_req(struct proc *p, json_t *m)
{
	json_t *id = json_object_get(m, "id"), *body = json_object_get(m, "body"), *out = NULL;
	const char *method = json_string_value(json_object_get(m, "method"));
	const char *path = json_string_value(json_object_get(m, "path"));
	int status;

	if (!json_is_integer(id))
		return; /* nothing to answer to */
	if (!method || !path) {
		status = 400;
		out = json_pack("{s:s}", "error", "a forwarded request without method or path");
	} else {
		status =
		    gate_handle(p->g, method, path, NULL, json_is_null(body) ? NULL : body, &out);
	}
	json_t *r =
	    json_pack("{s:s,s:O,s:i,s:o?}", "t", "resp", "id", id, "status", status, "body", out);
	if (!r || msg_send(p->ch, r) < 0) {
		/* The answer does not encode: a fixed one, so lbd's client is answered. */
		json_decref(r);
		r = json_pack("{s:s,s:O,s:i,s:{s:s}}", "t", "resp", "id", id, "status", 500, "body",
			      "error", "internal error: the gate's answer could not be encoded");
		msg_send(p->ch, r);
	}
	json_decref(r);
}

static void on_msg(struct msgchan *c, json_t *m, void *arg)
{
	struct proc *p = arg;
	const char *t = json_string_value(json_object_get(m, "t"));
	char *err = NULL;

	if (strcmp(t, "hello") == 0) {
		on_hello(p, m);
		return;
	}
	if (!p->g) {
		log_warn("gate: a %s message before the hello; ignored", t);
		return;
	}
	if (strcmp(t, "ping") == 0) {
		/* The pong carries the gate's metrics: lbd serves /metrics. */
		char *metrics = gate_metrics(p->g);
		json_t *r = json_pack("{s:s,s:O?,s:s?}", "t", "pong", "seq",
				      json_object_get(m, "seq"), "metrics", metrics);
		msg_send(c, r);
		json_decref(r);
		free(metrics);
	} else if (strcmp(t, "pool") == 0) {
		on_pool(p, m);
	} else if (strcmp(t, "req") == 0) {
		on_req(p, m);
	} else if (strcmp(t, "conf") == 0) {
		struct config *cfg = conf_of(m, &err);
		if (cfg)
			gate_reload(p->g, cfg);
		else
			log_warn("gate: reload: the settings from lbd are unusable: %s", err);
		free(err);
	} else {
		log_warn("gate: unknown message '%s' from lbd; ignored", t);
	}
}

static void on_closed(struct msgchan *c, const char *why, void *arg)
{
	struct proc *p = arg;
	log_info("gate: lbd is gone (%s); exiting", why);
	stop(p, 0);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct proc *p = arg;
	log_info("gate: %s; exiting", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	stop(p, 0);
}

int gate_process_main(int chan_fd, int listen_fd)
{
	struct proc p = {.listen_fd = listen_fd};
	struct event *sigs[2];
	int signos[2] = {SIGTERM, SIGINT};

	prctl(PR_SET_NAME, "lbd-gate", 0, 0, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
	if (getppid() == 1)
		return 0; /* lbd died before the line above */
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN); /* reloads come from lbd, as a message */
	log_setup(LOG_FMT_TEXT, LOG_LVL_INFO, "lbd-gate");
	if (!(p.base = event_base_new()))
		fatal("gate: cannot create the event loop");
	p.ch = msg_open(p.base, chan_fd, on_msg, on_closed, &p);
	for (int i = 0; i < 2; i++) {
		sigs[i] = evsignal_new(p.base, signos[i], on_signal, &p);
		event_add(sigs[i], NULL);
	}
	event_base_dispatch(p.base);
	for (int i = 0; i < 2; i++)
		event_free(sigs[i]);
	gate_stop(&p.g);
	msg_close(&p.ch);
	if (p.listen_fd >= 0)
		close(p.listen_fd);
	event_base_free(p.base);
	return p.status;
}
