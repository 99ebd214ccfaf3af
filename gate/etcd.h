/*
 * etcd.h - what the gate asks etcd, through its v3 JSON gateway (the same
 * port as gRPC): POST /v3/cluster/member/list, /v3/maintenance/status,
 * /v3/maintenance/alarm and GET /health, with the TLS files from
 * gate.quorum.etcd. Blocking (libcurl): called from the gate's input thread.
 *
 * Every configured endpoint is asked, and so is every member's first client
 * URL that no configured endpoint covers, so a member's health is what that
 * member says, and the policy can check that all of them agree on the
 * member list and the cluster ID.
 */
#ifndef LBD_GATE_ETCD_H
#define LBD_GATE_ETCD_H

#include <jansson.h>
#include <stdint.h>

#include "config/config.h"
#include "gate/policy.h"

#define GATE_ETCD_TIMEOUT_MS 1000

/* Asks one endpoint; fills v (v->ok false with v->err on any failure). When
 * members is not NULL, also returns its member list (caller frees with
 * gate_etcd_members_free) and each member's first client URL in urls. */
void gate_etcd_probe(const struct gate_conf *conf, const char *endpoint, int64_t timeout_ms,
		     struct gate_etcd_view *v, struct gate_etcd_member **members, char ***urls,
		     size_t *nmembers);

/* Asks every endpoint and fills e (src.known when at least one answered). */
void gate_etcd_poll(const struct gate_conf *conf, int64_t now_ms, struct gate_etcd_in *e);

void gate_etcd_members_free(struct gate_etcd_member *m, char **urls, size_t n);

/* "8e9e05c52164694d" or 10-digit decimal strings of the JSON gateway. */
int gate_etcd_parse_id(json_t *v, uint64_t *out);

#endif
