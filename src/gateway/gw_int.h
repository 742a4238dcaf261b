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
    int64_t max_body_bytes;
    json_t *input_schema; /* owned by the table; use through gw_validate_input */
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
    int port;
    int n_workers;
    struct gw_worker *workers;
    _Atomic int inflight;
    _Atomic int ready;
    _Atomic int draining;

    pthread_rwlock_t deps_lock;
    struct gw_deployment *deps;
    size_t n_deps, cap_deps;

    struct metric_family *f_requests, *f_duration;
    struct jobs *jobs; /* jobs: set by gw_set_jobs, NULL = none */

    pthread_mutex_t tls_lock;
    struct ssl_ctx_st *tls_ctx; /* NULL: plain HTTP */
};

int gw_tls_load(struct gateway *gw, struct thaw_err *err);
struct bufferevent *gw_tls_bevcb(struct event_base *base, void *arg);
void gw_tls_free(struct gateway *gw);

/* One HTTP request to a deployment, wrapping the invocation handed to scale. */
struct gw_call {
    struct invocation inv; /* first: scale's callbacks get &call->inv */
    struct evhttp_request *req;
    struct gw_worker *worker;
    uint64_t t0_ns;
    bool stream_started;
    char path[128];
    struct gw_auth auth; /* released when the call ends */
};

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
void gw_deployment_forget(struct gateway *gw, const char *name);
/* Checks a request body against the deployment's input schema, if it has
 * one. Returns 0, or THAW_EINVAL with err naming the failing path. */
int gw_validate_input(struct gateway *gw, const char *name, const char *body, size_t len,
                      struct thaw_err *err);

/* Routes. */
void gw_route(struct evhttp_request *req, void *worker);
/* Returns true when the request became an invocation, which then owns auth
 * (released when it is answered). */
bool gw_handle_invoke(struct gw_worker *w, struct evhttp_request *req, const char *name,
                      const char *rid, const struct gw_auth *auth);
void gw_outbox_cb(evutil_socket_t fd, short what, void *arg);
/* Artifacts (artifact_routes.c): everything under /v1/artifacts. */
void gw_route_artifacts(struct gw_worker *w, struct evhttp_request *req, const char *path);
/* Jobs (jobs_routes.c): /v1/deployments/NAME/jobs, and /v1/jobs... and
 * /v1/dlq...; both return true when the request logs itself (answered later). */
bool gw_handle_jobs(struct gw_worker *w, struct evhttp_request *req, const char *name,
                    const char *rid);
bool gw_route_jobs(struct gw_worker *w, struct evhttp_request *req, const char *path,
                   const char *rid);

#endif
