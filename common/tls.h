/*
 * tls.h - the one place lbd builds a TLS server context: frontends in
 * mode tls, the admin listener and the gate listener all use it, so they
 * share the same policy: TLS 1.2 or newer, forward-secret AEAD ciphers only,
 * no renegotiation, and client certificates required when a CA is given.
 */
#ifndef LBD_COMMON_TLS_H
#define LBD_COMMON_TLS_H

#include <openssl/ssl.h>

#include "config/config.h"

/* Loads t->cert (a chain) and t->key, and each of t->certs, served to
 * clients whose SNI one of its names matches. who names the user in errors
 * ("frontend vip"). Returns NULL with *err (caller frees) on failure. */
SSL_CTX *tls_server_ctx(const struct tls_conf *t, const char *who, char **err);

#endif
