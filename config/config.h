/*
 * config.h - /etc/lbd/lbd.yaml as typed, validated structs.
 *
 * config_load() parses the file with libyaml, applies defaults, validates
 * everything (types, ranges, unknown keys, duplicate names, references between
 * sections, addresses) and collects every error as "file:line:col: message".
 * A config is only ever used whole: either it loaded without errors or it is
 * thrown away. The structs here are settings only; live state (connection
 * counts, health) lives beside them in lbd/pool.h, as in relayd's
 * struct table { struct table_config conf; ... }.
 */
#ifndef LBD_CONFIG_H
#define LBD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "common/log.h"

enum balance { BAL_LEAST_CONN, BAL_ROUND_ROBIN, BAL_SOURCE_HASH };
enum fe_mode { FE_MODE_TCP, FE_MODE_TLS };
enum health_type { HC_HTTPS, HC_HTTP, HC_TCP };

/* A socket address written as "IP:PORT", "[IPv6]:PORT", ":PORT" (any) or
 * "NAME:PORT" (a host name, resolved when the config is loaded). */
struct sockaddr_conf {
	char *text; /* as written in the file */
	struct sockaddr_storage ss;
	socklen_t len;
	bool resolved; /* text names a host; ss is what it resolved to */
};

/* For checks (lbd as a TLS client): verify the server against ca (or the
 * system store), present cert/key, send sni. For listeners (lbd as a TLS
 * server): serve cert/key; when ca is set, require client certificates
 * signed by it; verify and sni do not apply. */
/* An extra certificate of a TLS listener, served to clients whose SNI
 * matches one of its names (tls.certs). */
struct tls_cert {
	char *cert, *key;
};

struct tls_conf {
	bool verify; /* verify the peer's certificate (default true) */
	char *ca;    /* CA bundle path, or NULL for the system store */
	char *cert;  /* client certificate (checks) or server certificate (listeners) */
	char *key;
	char *sni;		/* server name sent by checks; NULL: none */
	struct tls_cert *certs; /* listeners: more certificates, picked by SNI */
	size_t ncerts;
};

struct health_conf {
	enum health_type type; /* default https */
	char *path;	       /* default "/readyz" */
	int expect_status;     /* default 200 */
	int64_t interval_ms;   /* default 2s */
	int64_t timeout_ms;    /* default 1s; must be < interval */
	int rise;	       /* default 2 */
	int fall;	       /* default 3 */
	struct tls_conf tls;   /* verify defaults to true */
	char *token_file;      /* bearer token sent with each probe (read at each probe) */
};

struct backend_conf {
	char *name;
	struct sockaddr_conf addr;
	int weight; /* 0..256, default 1; 0 takes no new connections */
};

/* Which down backends get their established connections closed
 * (lbd/drain.c): transport death only (default), any failure, or none. */
enum down_close { DOWN_CLOSE_TRANSPORT, DOWN_CLOSE_ANY, DOWN_CLOSE_NEVER };

struct pool_conf {
	char *name;
	enum balance balance;	  /* default least_conn */
	int64_t drain_timeout_ms; /* default 5m */
	int64_t
	    drain_close_rate; /* connections closed per second after the deadline, default 100 */
	struct backend_conf *backends;
	size_t nbackends;
	struct health_conf health;
	struct rebalance_conf {
		bool enabled;	   /* default off */
		int64_t rate;	   /* closes per second, whole pool, default 10 */
		int max_share_pct; /* of a backend's connections per round, default 25 */
		int tolerance_pct; /* spread within this % of the fair share, default 20 */
	} rebalance;
	enum down_close close_on_down; /* default transport */
	int64_t down_close_rate;       /* connections closed per second once down, default 100 */
};

struct frontend_conf {
	char *name;
	struct sockaddr_conf *listen;
	size_t nlisten;
	char *pool;		    /* name of a pool in config.pools */
	enum fe_mode mode;	    /* default tcp */
	int max_connections;	    /* default 10000 */
	int64_t connect_timeout_ms; /* timeouts.connect, default 3s */
	int64_t idle_timeout_ms;    /* timeouts.idle, default 1h (watches are long and quiet) */
	int retries;		    /* other backends tried after a failed connect, default 2 */
	bool freebind;		    /* listen on an address not (yet) held, default false */
	struct tls_conf tls;	    /* mode tls: cert and key to serve */
	/* A dead peer found on established connections, between checks: */
	int64_t fin_timeout_ms;	       /* timeouts.fin: half-closed and idle, default 30s, 0 off */
	int64_t user_timeout_ms;       /* timeouts.backend_user_timeout: TCP_USER_TIMEOUT, 20s */
	int64_t keepalive_idle_ms;     /* tcp_keepalive.idle, both sides, default 30s, 0 off */
	int64_t keepalive_interval_ms; /* tcp_keepalive.interval, default 10s */
	int keepalive_count;	       /* tcp_keepalive.count, default 3 */
	bool log_connections; /* one line per closed connection (HAProxy tcplog), default off */
	/* a backend that resets or closes before its first byte: replay the
	 * client's first bytes (up to 16 KiB) to another one, default on */
	bool retry_on_empty_response;
};

/* Every HTTP listener's bounds (admin, metrics, gate): max_connections and
 * request_timeout, shared with gate/conf.c, which checks what it is sent. */
#define CONF_LISTENER_MAX_CONN_DEFAULT 64
#define CONF_LISTENER_MAX_CONN_MAX 65535
#define CONF_REQUEST_TIMEOUT_DEFAULT_MS 10000
#define CONF_REQUEST_TIMEOUT_MIN_MS 100
#define CONF_REQUEST_TIMEOUT_MAX_MS (3600 * 1000)

struct admin_conf {
	char *socket;		      /* default /run/lbd/admin.sock */
	int socket_mode;	      /* default 0600 */
	struct sockaddr_conf *listen; /* optional TCP listener, NULL if none */
	struct tls_conf tls;	      /* for the TCP listener */
	char *token_file;	      /* bearer token for the TCP listener */
	/* Bounds of both listeners (socket and TCP), as for metrics and gate:
	 * beyond max_connections open connections a new one is closed at once;
	 * a request must arrive whole within request_timeout_ms of accept. */
	int max_connections;	    /* default 64, 1..65535 */
	int64_t request_timeout_ms; /* request_timeout, default 10s, 100ms..1h */
};

struct metrics_conf {
	struct sockaddr_conf *listen; /* optional plain-HTTP /metrics listener */
	int max_connections;	      /* open connections at most, default 64, 1..65535 */
	int64_t request_timeout_ms;   /* request_timeout: whole request, default 10s, 100ms..1h */
};

struct log_conf {
	enum log_format format; /* default text */
	enum log_level level;	/* default info */
};

struct gate_window {
	char **days; /* "mon".."sun" */
	size_t ndays;
	char *start, *end; /* "HH:MM" */
	char *tz;	   /* default "UTC" */
};

struct gate_member {
	char *node, *backend, *etcd;
};

struct gate_label_cap {
	char *label; /* a node label such as topology.kubernetes.io/zone */
	int max;     /* at most this many leases per value of the label */
};

/*
 * A field added here must be added in gate/conf.c too: gate_conf_dup()
 * (pointers; scalars come with the struct copy), gate_conf_to_json() and
 * gate_conf_from_json() (the settings the gate process gets from lbd), and
 * gate_conf_free() in config.c; tests/unit/test_gateconf.c checks the
 * round trip field by field.
 */
struct gate_conf {
	bool enabled; /* true when the file has a gate section */
	struct sockaddr_conf *listen;
	struct tls_conf tls;
	char *tokens_file;
	int max_connections;	    /* on listen, default 64, 1..65535 */
	int64_t request_timeout_ms; /* request_timeout on listen, default 10s, 100ms..1h */
	enum { GATE_STORE_FILE, GATE_STORE_KUBERNETES } store;
	int conc_masters; /* default 1 */
	int conc_workers; /* default 1 */
	struct gate_label_cap *per_label;
	size_t nper_label;
	char *quorum_pool;
	char **etcd_endpoints;
	size_t netcd_endpoints;
	char *etcd_ca, *etcd_cert, *etcd_key;
	char *kubeconfig;
	bool require_all_nodes_ready;
	struct gate_window *windows;
	size_t nwindows;
	char *alerts_prometheus_url, *alerts_filter;
	int64_t lease_ttl_ms; /* default 30m */
	int64_t soak_ms;      /* default 0 */
	struct gate_member *members;
	size_t nmembers;
};

struct config {
	char *path;
	char *state_dir;	   /* default /var/lib/lbd */
	int threads;		   /* worker threads, 0 = one per core (default) */
	int64_t shutdown_grace_ms; /* SIGTERM: wait this long for connections, default 30s */
	bool freebind;		   /* default of frontends[].freebind (the standby of a pair) */
	struct admin_conf admin;
	struct metrics_conf metrics;
	struct log_conf log;
	struct frontend_conf *frontends;
	size_t nfrontends;
	struct pool_conf *pools;
	size_t npools;
	struct gate_conf gate;
};

/* Every error found, in file order. */
struct config_errors {
	char **msgs; /* "file:line:col: message" */
	size_t n;
};

/*
 * Loads and validates path. On success returns a config and leaves errs
 * empty; on failure returns NULL and errs holds every error (caller frees
 * with config_errors_free). Never exits, never logs.
 */
struct config *config_load(const char *path, struct config_errors *errs);
/* Same, from a string already in memory; name is used in messages. */
struct config *config_load_string(const char *name, const char *yaml, size_t len,
				  struct config_errors *errs);
void config_free(struct config *cfg);
void config_errors_free(struct config_errors *errs);

const struct pool_conf *config_pool(const struct config *cfg, const char *name);

/* The one rule for pool and backend names, in the config file and in the
 * admin API alike (a name is a path segment there, /v1/pools/{pool}/...):
 * 1 to 253 of a-z A-Z 0-9 . - _, and neither "." nor ".." (clients
 * normalise those away, so such a backend could never be reached). NULL if
 * name is valid, else why not (a static string). */
const char *config_name_check(const char *name);

/* Address helpers, shared with the admin API (which validates addresses too). */
int sockaddr_conf_parse(const char *text, struct sockaddr_conf *out, const char **why);
/*
 * As sockaddr_conf_parse, and "NAME:PORT" too: the name is resolved now
 * (getaddrinfo; it may block on DNS), its first IPv4 address taken, else
 * its first IPv6 one, and out->resolved set. *why says why a name does not
 * resolve (a per-thread buffer, valid until the next call).
 */
int sockaddr_conf_resolve(const char *text, struct sockaddr_conf *out, const char **why);
/* false: sockaddr_conf_resolve() refuses every name without asking DNS (the
 * config fuzzer, whose random names must not become DNS queries). */
void sockaddr_conf_set_dns(bool on);
/* a's address as numbers, "192.0.2.1:6443" or "[2001:db8::1]:6443", into buf. */
const char *sockaddr_conf_numeric(const struct sockaddr_conf *a, char *buf, size_t len);
/* true if a and b are the same endpoint: family, address and port, with an
 * IPv4-mapped IPv6 address ([::ffff:192.0.2.1]:P) the same as its IPv4
 * address (192.0.2.1:P), since a connection to either reaches the same
 * socket. An IPv6 scope id counts. */
bool sockaddr_conf_same(const struct sockaddr_conf *a, const struct sockaddr_conf *b);
/* a's port, in host order. */
int sockaddr_conf_port(const struct sockaddr_conf *a);
void sockaddr_conf_copy(struct sockaddr_conf *dst, const struct sockaddr_conf *src);
void sockaddr_conf_free(struct sockaddr_conf *a);

void tls_conf_copy(struct tls_conf *dst, const struct tls_conf *src);
void tls_conf_free(struct tls_conf *t);
void backend_conf_copy(struct backend_conf *dst, const struct backend_conf *src);
void backend_conf_free(struct backend_conf *b);
void health_conf_copy(struct health_conf *dst, const struct health_conf *src);
void health_conf_free(struct health_conf *h);

const char *balance_name(enum balance b);
const char *down_close_name(enum down_close d);
int balance_parse(const char *s, enum balance *out);
const char *health_type_name(enum health_type t);

/* Every key of the config file's tables, one "path<TAB>type" line each
 * (lists as "frontends[].name"; a user's key as NODE or LABEL): what
 * `lbd --dump-config-keys` prints and docs/config.md is tested against. */
void config_dump_keys(FILE *f);

#endif
