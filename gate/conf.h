/*
 * conf.h - private copies of the gate section, and what changed between two.
 *
 * The gate's threads read their settings while lbd's main loop may reload
 * the config, so each keeps a copy of its own (gate.c under its mutex, the
 * input poller handed a new one by message) and never points into the
 * server's struct config, which the next reload frees.
 */
#ifndef LBD_GATE_CONF_H
#define LBD_GATE_CONF_H

#include <stdbool.h>

#include "config/config.h"

/*
 * A deep copy of src, as the gate section of an otherwise empty config:
 * free it with config_free(). A field added to struct gate_conf that holds
 * a pointer must be copied here too.
 */
struct config *gate_conf_dup(const struct gate_conf *src);

bool gate_conf_str_eq(const char *a, const char *b);
bool gate_conf_listen_eq(const struct gate_conf *a, const struct gate_conf *b);
bool gate_conf_tls_eq(const struct gate_conf *a, const struct gate_conf *b);
/* The settings of each input the poller asks. */
bool gate_conf_etcd_eq(const struct gate_conf *a, const struct gate_conf *b);
bool gate_conf_alerts_eq(const struct gate_conf *a, const struct gate_conf *b);

/*
 * The names of the live settings that differ between a and b, as
 * "concurrency, windows" (caller frees), or NULL when none does. listen,
 * tls and store are left out (they need a restart; the caller says so).
 */
char *gate_conf_changes(const struct gate_conf *a, const struct gate_conf *b);

#endif
