/* Private to src/gateway: the gateway object, its workers, and the helpers
 * the route handlers share. */
#ifndef THAW_GW_INT_H
#define THAW_GW_INT_H

#include "access/access.h"
#include "gateway/gateway.h"
#include "obs/obs.h"
#include "scale/scale.h"
#include "store/store.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

struct gw_msg {
    struct gw_msg *next;
    struct gw_call *call;
    enum inv_event_kind kind;
    int status;
    const char *code;
    char *payload;
};

#define GW_SERIES_CACHE 128

struct gw_series_slot {
    char deployment[DEPLOY_NAME_MAX + 1];
    int code;
    int version;
    struct metric_series *count;
    struct metric_series *duration;
};

struct gw_worker {
    struct gateway *gw;
    int index;
    pthread_t thread;
    bool thread_started;
    bool shared_base; /* runs on another loop; never freed or joined here */
    struct event_base *base;
    struct evhttp *http;
    int fd;
    struct evhttp_bound_socket *bound;
    struct event *outbox_ev, *stop_accept_ev;
    pthread_mutex_t outbox_lock;
    struct gw_msg *out_head, *out_tail;
    struct gw_series_slot series[GW_SERIES_CACHE];
    int last_status; /* set by the reply helpers, for the access log */
};

struct gw_deployment {
    char name[DEPLOY_NAME_MAX + 1];
    char owner[ACCESS_NAME_MAX + 1];
    char runtime[8];  /* "exec", "llm", "embed" */
    int64_t known_at; /* unix seconds this node first saw it (OpenAI's "created") */
    int64_t max_body_bytes; /* the latest deployed version's */
    json_t *input_schema;   /* owned by the table; use through gw_validate_input */
    /* Each version's own rules (versions are immutable): owned by the
     * table, read under its lock only (a looked-up copy must not use it). */
    struct gw_version_rules *vrules;
    size_t n_vrules, cap_vrules;
};

/* What a request is checked against before it goes to a version. */
struct gw_version_rules {
    int version;
    int64_t max_body_bytes;
    json_t *input_schema; /* NULL: any input */
};

/* The version a request goes to, picked before it is checked. */
struct gw_route {
    int version; /* 0: none could be picked here (the scale answers why) */
    bool routed; /* picked by traffic, not pinned by x-thaw-version */
    bool sticky; /* x-thaw-sticky was given: sticky_hash is its key's */
    uint64_t sticky_hash;
};

/* Who is calling, for the request a worker is handling right now. */
struct gw_auth {
    struct access_principal who;
    struct access_admission adm;
};

struct gateway {
    struct gateway_config cfg;
    struct store *store;
    struct scale *scale;
    struct access *access;
    struct registry_sealer sealer; /* deployment env values, under access's data keys */
    int port;
    int n_workers;
    struct gw_worker *workers;
    _Atomic int inflight;
    _Atomic int ready;
    _Atomic int draining;

    pthread_rwlock_t deps_lock;
    struct gw_deployment *deps;
    size_t n_deps, cap_deps;

    struct metric_family *f_requests, *f_duration, *f_tokens;
    struct jobs *jobs; /* jobs: set by gw_set_jobs, NULL = none */

    pthread_mutex_t tls_lock;
    struct ssl_ctx_st *tls_ctx; /* NULL: plain HTTP */
};

int gw_tls_load(struct gateway *gw, struct thaw_err *err);
struct bufferevent *gw_tls_bevcb(struct event_base *base, void *arg);
void gw_tls_free(struct gateway *gw);

/* Which API shape a call answers in: the native one, or OpenAI's. */
enum gw_api { GW_API_NATIVE, GW_API_COMPLETION, GW_API_CHAT, GW_API_EMBED };

/* One HTTP request to a deployment, wrapping the invocation handed to scale. */
struct gw_call {
    struct invocation inv; /* first: scale's callbacks get &call->inv */
    struct evhttp_request *req;
    struct gw_worker *worker;
    uint64_t t0_ns;
    bool stream_started;
    char path[128];
    struct gw_auth auth; /* released when the call ends */
    enum gw_api api;
    bool metered;               /* an llm/embed deployment: its answers carry token usage */
    bool include_usage, base64; /* see gw_call_opts */
    int64_t created;            /* OpenAI "created", unix seconds */
    uint64_t prompt_tokens, completion_tokens; /* from the answer's usage, for metering */
    /* The client closed the connection: the scale was asked to cancel, and
     * the answers still to come are metered and dropped. req stays ours to
     * end (libevent detached it) unless it went with the connection (NULL). */
    bool closed;
    bool cancel_asked;      /* scale_cancel was called */
    struct event *close_ev; /* EV_CLOSED on the socket while the answer is awaited */
};

/* The HTTP status and error code for a thaw status code (THAW_EINVAL ->
 * 400 "invalid_request", ENOTFOUND -> 404, EEXIST/ECONFLICT/ESTATE -> 409,
 * EDENIED -> 403, anything else 500 "internal"). */
int gw_status_for(int rc);
const char *gw_code_for(int rc);

/* Responses. Each sends exactly one reply and ends the request. */
void gw_reply_json(struct evhttp_request *req, int status, const char *body, size_t len);
void gw_reply_error(struct evhttp_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void gw_reply_jsonv(struct evhttp_request *req, int status, json_t *v); /* steals v */
/* Sets x-request-id from the client's (if well-formed) or a new one; returns it. */
const char *gw_request_id(struct evhttp_request *req, char out[65]);

/* Request accounting for metrics and the access log. */
/* Call with what was captured before the reply: after evhttp_send_reply the
 * request may already be freed. */
void gw_request_done(struct gw_worker *w, const char *method, const char *path,
                     const char *deployment, int status, uint64_t t0_ns, const char *rid,
                     const char *start_state);
/* The same for an answer a deployment version gave (metrics labelled by it). */
void gw_request_done_v(struct gw_worker *w, const char *method, const char *path,
                       const char *deployment, int version, int status, uint64_t t0_ns,
                       const char *rid, const char *start_state);
const char *gw_method_name(enum evhttp_cmd_type cmd);

/* The caller of the request being handled on this worker thread (valid only
 * inside a route handler, before it returns). */
const struct access_principal *gw_principal(void);
void gw_set_principal(const struct access_principal *p);
/* The worker whose request is being handled on this thread (for the
 * status the access log records). */
void gw_set_current_worker(struct gw_worker *w);
/* Answers 403 unless the caller holds scope; returns true when it does. */
bool gw_require_scope(struct evhttp_request *req, unsigned scope);
/* Looks up a deployment the caller may use; answers 404 otherwise. */
bool gw_usable_deployment(struct gateway *gw, struct evhttp_request *req, const char *name,
                          struct gw_deployment *out);
/* Admin routes: tenants, keys, grants and the audit trail. */
bool gw_route_admin(struct gw_worker *w, struct evhttp_request *req, const char *path);
void gw_route_grants(struct gw_worker *w, struct evhttp_request *req, const char *name,
                     const char *rest);

/* Deployment table. */
bool gw_deployment_lookup(struct gateway *gw, const char *name, struct gw_deployment *out);
/* The body limit of version `version` of deployment name: the latest
 * deployed version's for version 0 or one this gateway has not seen (a
 * pin of a version that does not exist, which the scale then refuses);
 * -1 for an unknown deployment. */
int64_t gw_max_body(struct gateway *gw, const char *name, int version);
/* Checks a request body against the input schema of version `version`
 * (as gw_max_body picks it), if it has one. Returns 0, or THAW_EINVAL with
 * err naming the failing path. */
int gw_validate_input(struct gateway *gw, const char *name, int version, const char *body,
                      size_t len, struct thaw_err *err);
/* Picks the version a request to name goes to, from its headers: an
 * x-thaw-version pin, or traffic (by its x-thaw-sticky key, or by weight)
 * as the scale would pick it, so the request is checked against the rules
 * of the version that serves it. False when the pin is malformed: then it
 * has answered 400 and logged the request. */
bool gw_pick_version(struct gw_worker *w, struct evhttp_request *req, const char *path,
                     const char *name, const char *rid, uint64_t t0, struct gw_route *out);
/* Names the version a refusal applied the rules of (x-thaw-version), as
 * answers name the version that served them. */
void gw_version_header(struct evhttp_request *req, int version);

/* Routes. */
void gw_route(struct evhttp_request *req, void *worker);
/* Returns true when the request became an invocation, which then owns auth
 * (released when it is answered). */
bool gw_handle_invoke(struct gw_worker *w, struct evhttp_request *req, const char *name,
                      const char *rid, const struct gw_auth *auth);
void gw_outbox_cb(evutil_socket_t fd, short what, void *arg);
/* Frees an answer that will never be delivered, and its call when it was
 * the last event (shutdown only). */
void gw_msg_drop(struct gw_msg *m);
/* Hands a validated input (compact JSON, ownership passes) for dep to the
 * scale thread. Returns true when submitted; on failure it has answered and
 * logged the request. */
struct gw_call_opts {
    enum gw_api api;
    bool stream;
    bool include_usage; /* OpenAI streams: a last chunk with usage */
    bool base64;        /* OpenAI embeddings as base64 float32 */
    struct gw_route route; /* from gw_pick_version */
};
bool gw_call_submit(struct gw_worker *w, struct evhttp_request *req, const char *path,
                    const struct gw_deployment *dep, const char *rid, const struct gw_auth *auth,
                    uint64_t t0, char *input, size_t input_len, const struct gw_call_opts *opts);
/* Ends a call: releases its admission, logs it and frees it. */
void gw_call_finish(struct gw_call *c, int status);
void gw_call_headers(struct gw_call *c);
/* Answers a call with an error (Retry-After on a 503 that has one) and ends it. */
void gw_call_fail(struct gw_call *c, int status, const char *code, const char *msg);
/* Starts a 200 text/event-stream answer; then each gw_sse_data sends one
 * "data: ..." event (event names one when not NULL). */
void gw_sse_start(struct gw_call *c);
void gw_sse_send(struct gw_call *c, const char *event, const char *data);
/* Answers and logs a request that never became a call. */
void gw_reject(struct gw_worker *w, struct evhttp_request *req, const char *path, const char *name,
               const char *rid, uint64_t t0, int status, const char *code, const char *msg);
/* Charges the token usage in an llm/embed answer to the caller's quotas
 * and metrics. */
void gw_meter_tokens(struct gw_call *c, const json_t *output);
/* OpenAI-compatible API (openai.c): GET /v1/models[/{id}] (false for other
 * paths), the POST routes (which log themselves; true when the request
 * became a call that owns auth), and the answers of their calls. */
bool gw_route_models(struct gw_worker *w, struct evhttp_request *req, const char *path);
bool gw_is_openai_post(const char *path, enum gw_api *api);
bool gw_handle_openai(struct gw_worker *w, struct evhttp_request *req, enum gw_api api,
                      const char *rid, const struct gw_auth *auth);
void gw_openai_deliver(struct gw_msg *m);
/* Versions and traffic (version_routes.c): /v1/deployments/NAME/{versions,
 * traffic, promote, rollback, canary}; returns false for other actions. */
bool gw_route_versions(struct gw_worker *w, struct evhttp_request *req, const char *name,
                       const char *action);
/* Parses a JSON object body; answers 400 and returns NULL when it is not. */
json_t *gw_json_body(struct evhttp_request *req);
/* Artifacts (artifact_routes.c): everything under /v1/artifacts. */
void gw_route_artifacts(struct gw_worker *w, struct evhttp_request *req, const char *path);
/* Jobs (jobs_routes.c): /v1/deployments/NAME/jobs, and /v1/jobs... and
 * /v1/dlq...; both return true when the request logs itself (answered later). */
bool gw_handle_jobs(struct gw_worker *w, struct evhttp_request *req, const char *name,
                    const char *rid);
bool gw_route_jobs(struct gw_worker *w, struct evhttp_request *req, const char *path,
                   const char *rid);

#endif
