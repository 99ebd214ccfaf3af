/*
 * conf.h - private copies of the gate section, what changed between two,
 * and the section as JSON for the gate process.
 *
 * The gate's threads read their settings while lbd's main loop may reload
 * the config, so each keeps a copy of its own (gate.c under its mutex, the
 * input poller handed a new one by message) and never points into the
 * server's struct config, which the next reload frees.
 */
#ifndef LBD_GATE_CONF_H
#define LBD_GATE_CONF_H

#include <jansson.h>
#include <stdbool.h>

#include "config/config.h"

/*
 * A deep copy of src, as the gate section of an otherwise empty config:
 * free it with config_free(). A field added to struct gate_conf that holds
 * a pointer must be copied here too, and every field added goes into
 * gate_conf_to_json() and gate_conf_from_json() (see config.h).
 */
struct config *gate_conf_dup(const struct gate_conf *src);

/*
 * The settings as one JSON object, for the gate process (lbd's hello and
 * conf messages): every field of struct gate_conf under its own name (listen
 * as its text, durations in ms, store as "file" or "kubernetes", a string
 * not set as null, lists as arrays of objects). Returns a new reference, or
 * NULL when a string is not valid UTF-8 (not from a config that loaded:
 * libyaml refuses such files) or memory ran out.
 */
json_t *gate_conf_to_json(const struct gate_conf *c);
/*
 * The reverse: the settings in o, checked as bytes from outside (every key
 * present, nothing unknown, types, ranges, listen re-parsed), as the gate
 * section of an otherwise empty config (free it with config_free()), or NULL
 * and *err (caller frees) saying what is wrong and where: "gate settings:
 * windows[0].days[1]: expected a day (mon..sun), got \"monday\"".
 */
struct config *gate_conf_from_json(json_t *o, char **err);

bool gate_conf_str_eq(const char *a, const char *b);
bool gate_conf_listen_eq(const struct gate_conf *a, const struct gate_conf *b);
bool gate_conf_tls_eq(const struct gate_conf *a, const struct gate_conf *b);
/* The settings of each input the poller asks. */
bool gate_conf_etcd_eq(const struct gate_conf *a, const struct gate_conf *b);
bool gate_conf_alerts_eq(const struct gate_conf *a, const struct gate_conf *b);

/*
 * The names of the live settings that differ between a and b, as
 * "concurrency, windows" (caller frees), or NULL when none does. listen,
 * tls, max_connections, request_timeout and store are left out (they need
 * a restart; the caller says so).
 */
char *gate_conf_changes(const struct gate_conf *a, const struct gate_conf *b);

#endif
