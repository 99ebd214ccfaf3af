/* tls.c - see tls.h. */
#include "lbd/tls.h"

#include <openssl/err.h>

#include "common/xmalloc.h"

/* TLS 1.2 suites: ECDHE key exchange, AEAD only. TLS 1.3 keeps OpenSSL's
 * defaults, which are all AEAD. */
#define TLS12_CIPHERS                                                                              \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static char *ssl_error(void)
{
	char buf[256];
	unsigned long e = ERR_get_error();

	ERR_clear_error();
	if (!e)
		return xstrdup("unknown error");
	ERR_error_string_n(e, buf, sizeof(buf));
	return xstrdup(buf);
}

SSL_CTX *tls_server_ctx(const struct tls_conf *t, const char *who, char **err)
{
	SSL_CTX *ctx;
	char *why;

	if (!t->cert || !t->key) {
		*err = xasprintf("%s: TLS needs tls.cert and tls.key", who);
		return NULL;
	}
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		why = ssl_error();
		*err = xasprintf("%s: cannot create a TLS context: %s", who, why);
		free(why);
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* A peer closing without close_notify is an EOF, as for plain TCP. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				     SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS);
	/* The relay may retry a partial write from another buffer. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				  SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
		why = ssl_error();
		*err = xasprintf("%s: cannot load certificate %s: %s", who, t->cert, why);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1) {
		why = ssl_error();
		*err = xasprintf("%s: cannot load key %s: %s", who, t->key, why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		why = ssl_error();
		*err = xasprintf("%s: key %s does not match certificate %s: %s", who, t->key,
				 t->cert, why);
		goto fail;
	}
	if (t->ca) {
		if (SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1) {
			why = ssl_error();
			*err = xasprintf("%s: cannot load CA %s: %s", who, t->ca, why);
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	return ctx;
fail:
	free(why);
	SSL_CTX_free(ctx);
	return NULL;
}
