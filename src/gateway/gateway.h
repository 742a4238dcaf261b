/* The HTTP gateway: libevent worker threads, each with its own listening
 * socket (SO_REUSEPORT) and event loop, serving the native API. Requests to
 * deployments go to the scale thread and their answers come back to the
 * worker that owns the connection. Errors are always JSON:
 * {"error":{"code":"snake_case","message":"..."}}. */
#ifndef THAW_GATEWAY_H
#define THAW_GATEWAY_H

#include "base/base.h"
#include "registry/registry.h"

#include <stdint.h>

struct store;
struct scale;
struct access;
struct gateway;

struct gateway_config {
    const char *host;
    int port;                /* 0 picks a free port; see gw_port */
    int threads;             /* worker threads; 0 = number of CPUs */
    size_t max_header_bytes; /* request line + headers */
    size_t max_body_bytes;   /* node-wide cap, enforced while reading */
    int read_timeout_s;      /* idle time allowed between bytes of a request */
    int access_log;          /* log one line per request */
    /* With threads == 1 and a shared base, the one worker runs on that loop
     * (the scale thread's): no hand-over between threads on the hot path,
     * at the price of control requests that write to disk pausing it. */
    struct event_base *shared_base;
    const char *tls_cert; /* PEM chain; with tls_key, serve HTTPS only */
    const char *tls_key;
    struct artifact_store *artifacts; /* /v1/artifacts; borrowed, NULL = none */
    /* Benchmarks only (security: off): every request acts as the root admin,
     * with no key checked and no limit applied. */
    bool no_auth;
};

/* Binds the listening sockets (so the port is known and errors surface
 * early) without starting threads. Returns NULL and fills err on failure. */
struct gateway *gw_new(const struct gateway_config *cfg, struct store *store, struct scale *scale,
                       struct access *access, struct thaw_err *err);
/* The port actually bound. */
int gw_port(const struct gateway *gw);
/* Starts the worker threads. */
int gw_start(struct gateway *gw, struct thaw_err *err);
/* Tells the gateway about a deployment that exists (at start-up: those in
 * the store) and the tenant that owns it. Thread-safe. */
void gw_deployment_known(struct gateway *gw, const struct deploy_spec *spec, const char *owner);
/* Tells the gateway the rules (input schema, body limit) of one version of
 * a deployment it knows, which requests routed to that version are checked
 * against. Versions are immutable: a version already known is kept.
 * Thread-safe. */
void gw_version_known(struct gateway *gw, const struct deploy_spec *spec, int version);
/* Forgets a deployment (deleted, or not restored after all). Thread-safe. */
void gw_deployment_forget(struct gateway *gw, const char *name);
/* Serves the jobs API with jobs (borrowed); call before gw_start. */
struct jobs;
void gw_set_jobs(struct gateway *gw, struct jobs *jobs);
/* Copies the owner tenant of a known deployment into out; false if unknown.
 * Thread-safe. */
bool gw_deployment_owner(struct gateway *gw, const char *name, char *out, size_t n);
/* Whether a known deployment's answers spend daily tokens (runtime llm or
 * embed, as the synchronous routes count them). Thread-safe. */
bool gw_deployment_metered(struct gateway *gw, const char *name);
/* Marks the node ready (readyz answers 200). */
void gw_set_ready(struct gateway *gw, int ready);
/* Loads the certificate and key again (SIGHUP): new connections use them,
 * open ones keep theirs. On error the old ones stay. Thread-safe. */
int gw_tls_reload(struct gateway *gw, struct thaw_err *err);
/* Stops accepting connections; requests already in flight continue. */
void gw_stop_accepting(struct gateway *gw);
/* Requests received and not yet answered. */
int gw_inflight(const struct gateway *gw);
/* Stops and joins the worker threads. Calls still in flight stay: their
 * answers (the scale fails them when it is freed) are queued and dropped
 * by gw_free, which must come after the scale is gone. */
void gw_join(struct gateway *gw);
/* Joins the workers if still running, drops what was never answered, frees. */
void gw_free(struct gateway *gw);

#endif
