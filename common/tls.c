/* tls.c - see tls.h. */
#include "common/tls.h"

#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

/* One context: the policy of tls.h with one certificate (cert, key). */
static SSL_CTX *ctx_new(const struct tls_conf *t, const char *cert, const char *key,
			const char *who, char **err)
{
	SSL_CTX *ctx;
	char *why;

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
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		why = ssl_error();
		*err = xasprintf("%s: cannot load certificate %s: %s", who, cert, why);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		why = ssl_error();
		*err = xasprintf("%s: cannot load key %s: %s", who, key, why);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		why = ssl_error();
		*err =
		    xasprintf("%s: key %s does not match certificate %s: %s", who, key, cert, why);
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
	/* With client certificates verified, OpenSSL refuses to resume a
	 * session (internal_error) unless the context names what the session
	 * was verified for. The listener's name is that: stable across
	 * connections, reloads and workers, and distinct between listeners.
	 * Every SNI context of a listener gets the same id, so a handshake
	 * moved to one of them keeps it. SHA-256 fits SSL_MAX_SID_CTX_LENGTH. */
	unsigned char sid[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)who, strlen(who), sid);
	if (SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid)) != 1) {
		why = ssl_error();
		*err = xasprintf("%s: cannot set the session id context: %s", who, why);
		goto fail;
	}
	return ctx;
fail:
	free(why);
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * SNI: the extra certificates (tls.certs) each get a context of their own;
 * the servername callback moves a handshake to the first one whose
 * certificate names the host the client asked for (X509_check_host, so
 * wildcards and SANs count). No SNI, or no match: the default certificate.
 * The set hangs off the default context as ex_data and goes with it.
 */
struct sni_set {
	size_t n;
	SSL_CTX *ctx[];
};

static int sni_index = -1;
static pthread_once_t sni_once = PTHREAD_ONCE_INIT;

static void sni_set_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
			 void *argp)
{
	struct sni_set *set = ptr;

	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		SSL_CTX_free(set->ctx[i]);
	free(set);
}

static void sni_init(void)
{
	sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_set_free);
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
	const struct sni_set *set = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	if (!name)
		return SSL_TLSEXT_ERR_NOACK;
	for (size_t i = 0; i < set->n; i++) {
		X509 *x = SSL_CTX_get0_certificate(set->ctx[i]);
		if (x && X509_check_host(x, name, 0, 0, NULL) == 1) {
			SSL_set_SSL_CTX(ssl, set->ctx[i]);
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *tls_server_ctx(const struct tls_conf *t, const char *who, char **err)
{
	SSL_CTX *ctx;
	struct sni_set *set;

	if (!t->cert || !t->key) {
		*err = xasprintf("%s: TLS needs tls.cert and tls.key", who);
		return NULL;
	}
	if (!(ctx = ctx_new(t, t->cert, t->key, who, err)))
		return NULL;
	if (t->ncerts == 0)
		return ctx;
	pthread_once(&sni_once, sni_init);
	set = xcalloc(1, sizeof(*set) + t->ncerts * sizeof(set->ctx[0]));
	SSL_CTX_set_ex_data(ctx, sni_index, set); /* freed with ctx from here on */
	for (size_t i = 0; i < t->ncerts; i++) {
		set->ctx[i] = ctx_new(t, t->certs[i].cert, t->certs[i].key, who, err);
		if (!set->ctx[i]) {
			SSL_CTX_free(ctx);
			return NULL;
		}
		set->n++;
	}
	SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
	SSL_CTX_set_tlsext_servername_arg(ctx, set);
	return ctx;
}
