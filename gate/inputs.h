/*
 * inputs.h - gathers what the policy decides on, without blocking lbd.
 *
 * A thread of its own polls etcd, the Kubernetes nodes and Prometheus every
 * interval (each call with a timeout) and publishes the results under a
 * mutex, each with the time of its last good answer. The pool's health is
 * published from lbd's main loop (gate_inputs_set_pool), which owns it.
 * A snapshot is a deep copy: the policy runs on it without any lock, and an
 * answer older than max_age counts as unknown (the gate fails closed).
 */
#ifndef LBD_GATE_INPUTS_H
#define LBD_GATE_INPUTS_H

#include <stdint.h>

#include "config/config.h"
#include "gate/policy.h"

#define GATE_INPUTS_INTERVAL_MS 1000
#define GATE_INPUTS_MAX_AGE_MS 5000

struct gate_inputs_src;

/* Copies conf (the source keeps no pointer into it). Loads the kubeconfig
 * (if any) first: an unreadable one makes the nodes input unknown, with the
 * reason, until a reload names one that loads. Never fails today; err is
 * kept for a future input that can. */
struct gate_inputs_src *gate_inputs_start(const struct gate_conf *conf, int64_t interval_ms,
					  char **err);
void gate_inputs_stop(struct gate_inputs_src **s);
/*
 * New settings (a reload; copied, from any thread): handed to the poller by
 * message, taken at the top of its next round, which starts at once. An
 * input whose settings changed (etcd endpoints or TLS files, kubeconfig
 * path, Prometheus URL or filter) is unknown from now until the poller
 * answers with the new ones, and an answer still in flight with the old
 * ones is thrown away. The kubeconfig is re-read on every reconfigure; an
 * unreadable one makes the nodes input unknown, with the reason.
 */
void gate_inputs_reconfigure(struct gate_inputs_src *s, const struct gate_conf *conf);

/* Replaces the pool part (copied); from the loop that owns the pool. */
void gate_inputs_set_pool(struct gate_inputs_src *s, const struct gate_pool_in *p);
/* A deep copy of the latest inputs, stamped now (caller frees with gate_inputs_free). */
void gate_inputs_snapshot(struct gate_inputs_src *s, int64_t now_ms, struct gate_inputs *out);
/* Wakes the poller at once (a request arrived and the data is getting old). */
void gate_inputs_kick(struct gate_inputs_src *s);

/* Wall clock in ms. */
int64_t gate_now_ms(void);

#endif
