/*
 * metrics.h - Prometheus text exposition (format 0.0.4) of the daemon's
 * counters, for GET /metrics on the admin socket and the metrics listener.
 *
 * Families (labels in braces):
 *   lbd_build_info{version,commit}           always 1: which build runs
 *   lbd_start_time_seconds, lbd_reloads_total, lbd_reload_failures_total,
 *   lbd_runtime_edits
 *   lbd_pool_fail_safe{pool}
 *   lbd_backend_up{pool,backend}             1 up by its checks, 0 down/unknown
 *   lbd_backend_health_known{pool,backend}
 *   lbd_backend_admin_state{pool,backend,state}   1 for the current state
 *   lbd_backend_weight, lbd_backend_active_connections,
 *   lbd_backend_connections_total, lbd_backend_connect_failures_total,
 *   lbd_backend_empty_response_retries_total (reset or closed before a byte: replayed)
 *   lbd_backend_bytes_total{direction="to_backend"|"from_backend"}
 *   lbd_backend_connect_seconds (histogram: successful connects, per backend)
 *   lbd_backend_check_duration_seconds (histogram: every check, per backend)
 *   lbd_backend_check_failures_total{reason}
 *   lbd_backend_health_transitions_total, lbd_backend_state_transitions_total
 *   lbd_backend_drain_seconds_left, lbd_backend_drain_closed
 *   lbd_frontend_active_connections{frontend}, lbd_frontend_connections_total,
 *   lbd_frontend_refused_total{frontend,reason="max_connections"|"no_backend"}
 * With a gate (lbd/gatesup.c, appended through admin_on_metrics):
 *   lbd_gate_process_up, lbd_gate_process_restarts_total
 *   lbd_gate_leases{role,state="active"|"stale"}
 *   lbd_gate_requests_total{answer="granted"|"renewed"|"refused"|"error",reason}
 *   lbd_gate_input_age_seconds{input="pool"|"etcd"|"nodes"|"alerts"} (-1: unknown)
 *   lbd_gate_store_known
 * Counters are read, never written, here.
 */
#ifndef LBD_METRICS_H
#define LBD_METRICS_H

#include <stddef.h>

struct server;

/* The exposition text (caller frees) and its length. */
char *metrics_render(const struct server *s, size_t *len);

#endif
