/* TLS on the listener: OpenSSL contexts (TLS 1.2+, forward-secret AEAD
 * ciphers only) handed to libevent through evhttp's bufferevent callback,
 * and swapped on reload so new connections get the new certificate while
 * open ones keep theirs (each SSL holds a reference to its context). */
#include "gateway/gw_int.h"

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>

static const char *ciphers_tls12 = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                   "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                   "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static int ssl_error(struct thaw_err *err, const char *what, const char *path)
{
    char detail[256] = "";
    unsigned long e = ERR_get_error();
    if (e) ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    return thaw_errf(err, THAW_EINVAL, "TLS: %s %s: %s", what, path, detail);
}

static SSL_CTX *make_ctx(const char *cert, const char *key, struct thaw_err *err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_error(err, "cannot create context", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_set_cipher_list(ctx, ciphers_tls12) != 1) {
        ssl_error(err, "cannot set ciphers", "");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ssl_error(err, "cannot load certificate", cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        ssl_error(err, "cannot load private key", key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, "private key does not match certificate", cert);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int gw_tls_load(struct gateway *gw, struct thaw_err *err)
{
    if (!gw->cfg.tls_cert || !gw->cfg.tls_cert[0]) return 0;
    SSL_CTX *ctx = make_ctx(gw->cfg.tls_cert, gw->cfg.tls_key, err);
    if (!ctx) return err ? err->code : THAW_EINVAL;
    pthread_mutex_lock(&gw->tls_lock);
    SSL_CTX *old = gw->tls_ctx;
    gw->tls_ctx = ctx;
    pthread_mutex_unlock(&gw->tls_lock);
    SSL_CTX_free(old);
    return 0;
}

int gw_tls_reload(struct gateway *gw, struct thaw_err *err)
{
    return gw_tls_load(gw, err);
}

/* evhttp asks for each accepted connection's bufferevent here. */
struct bufferevent *gw_tls_bevcb(struct event_base *base, void *arg)
{
    struct gateway *gw = arg;
    pthread_mutex_lock(&gw->tls_lock);
    SSL *ssl = gw->tls_ctx ? SSL_new(gw->tls_ctx) : NULL;
    pthread_mutex_unlock(&gw->tls_lock);
    if (!ssl) return NULL;
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
}

void gw_tls_free(struct gateway *gw)
{
    SSL_CTX_free(gw->tls_ctx);
    gw->tls_ctx = NULL;
}
