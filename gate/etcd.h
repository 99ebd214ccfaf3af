/*
 * etcd.h - the gate's etcd input: kube/etcd.h's poll with the TLS files and
 * endpoints of gate.quorum.etcd, kept with its source bookkeeping (known,
 * when, why not). Blocking: called from the gate's input thread.
 */
#ifndef LBD_GATE_ETCD_H
#define LBD_GATE_ETCD_H

#include <stdint.h>

#include "config/config.h"
#include "gate/policy.h"

#define GATE_ETCD_TIMEOUT_MS 1000

/* Asks every endpoint and fills e (src.known when one gave a member list). */
void gate_etcd_poll(const struct gate_conf *conf, int64_t now_ms, struct gate_etcd_in *e);

#endif
