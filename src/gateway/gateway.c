/* Gateway set-up: listening sockets, worker threads with their event loops,
 * the table of known deployments, response helpers and request metrics. */
#include "gateway/gw_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- responses ---- */

/* The worker whose thread is running, for the access log's status. */
static _Thread_local struct gw_worker *current_worker;

void gw_set_current_worker(struct gw_worker *w)
{
    current_worker = w;
}

void gw_reply_json(struct evhttp_request *req, int status, const char *body, size_t len)
{
    if (current_worker) current_worker->last_status = status;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    struct evbuffer *b = evbuffer_new();
    if (b) {
        evbuffer_add(b, body, len);
        evbuffer_add(b, "\n", 1);
    }
    evhttp_send_reply(req, status, NULL, b);
    if (b) evbuffer_free(b);
}

void gw_reply_jsonv(struct evhttp_request *req, int status, json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(v);
    if (!s) {
        gw_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    gw_reply_json(req, status, s, strlen(s));
    free(s);
}

void gw_reply_error(struct evhttp_request *req, int status, const char *code, const char *fmt, ...)
{
    struct buf msg = {0}, body = {0};
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&msg, fmt, ap);
    va_end(ap);
    buf_printf(&body, "{\"error\":{\"code\":\"%s\",\"message\":", code);
    buf_append_json_string(&body, msg.data ? msg.data : "", msg.len);
    buf_append_str(&body, "}}");
    gw_reply_json(req, status, body.data ? body.data : "{}", body.len);
    buf_free(&msg);
    buf_free(&body);
}

static bool rid_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.';
}

const char *gw_request_id(struct evhttp_request *req, char out[65])
{
    const char *in = evhttp_find_header(evhttp_request_get_input_headers(req), "x-request-id");
    size_t n = in ? strlen(in) : 0;
    bool ok = n > 0 && n <= 64;
    for (size_t i = 0; ok && i < n; i++) ok = rid_char_ok(in[i]);
    if (ok) memcpy(out, in, n + 1);
    else random_hex_id(out);
    evhttp_add_header(evhttp_request_get_output_headers(req), "x-request-id", out);
    return out;
}

/* ---- metrics and access log ---- */

static struct gw_series_slot *series_for(struct gw_worker *w, const char *dep, int code,
                                         int version)
{
    uint32_t h = 2166136261u ^ (uint32_t)code;
    h = (h ^ (uint32_t)version) * 16777619u;
    for (const char *p = dep; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    struct gw_series_slot *sl = &w->series[h % GW_SERIES_CACHE];
    if (sl->count && sl->code == code && sl->version == version && strcmp(sl->deployment, dep) == 0)
        return sl;
    char codes[8], vlabel[16] = "";
    snprintf(codes, sizeof(codes), "%d", code);
    /* Requests refused before a version was chosen have an empty version. */
    if (version > 0) snprintf(vlabel, sizeof(vlabel), "v%d", version);
    /* Request series are never dropped, so cached pointers stay valid. */
    sl->count = obs_metric_series(w->gw->f_requests, (const char *[]){dep, codes, vlabel});
    sl->duration = obs_metric_series(w->gw->f_duration, (const char *[]){dep, vlabel});
    sl->code = code;
    sl->version = version;
    str_copy(sl->deployment, dep, sizeof(sl->deployment));
    return sl;
}

void gw_request_done(struct gw_worker *w, const char *method, const char *path,
                     const char *deployment, int status, uint64_t t0_ns, const char *rid,
                     const char *start_state)
{
    gw_request_done_v(w, method, path, deployment, 0, status, t0_ns, rid, start_state);
}

void gw_request_done_v(struct gw_worker *w, const char *method, const char *path,
                       const char *deployment, int version, int status, uint64_t t0_ns,
                       const char *rid, const char *start_state)
{
    double secs = (double)(time_now_ns() - t0_ns) / 1e9;
    if (deployment) {
        struct gw_series_slot *sl = series_for(w, deployment, status, version);
        obs_metric_add(sl->count, 1);
        obs_metric_observe(sl->duration, secs);
    }
    if (!w->gw->cfg.access_log || obs_log_level() > LOG_INFO) return;
    OBS_LOG(LOG_INFO, "request", LOG_S("request_id", rid), LOG_S("method", method),
            LOG_S("path", path), LOG_S("deployment", deployment), LOG_I("version", version),
            LOG_I("status", status), LOG_D("ms", secs * 1000), LOG_S("start", start_state));
}

/* ---- who is calling ---- */

static _Thread_local const struct access_principal *current_principal;

void gw_set_principal(const struct access_principal *p)
{
    current_principal = p;
}

const struct access_principal *gw_principal(void)
{
    return current_principal;
}

bool gw_require_scope(struct evhttp_request *req, unsigned scope)
{
    const struct access_principal *p = current_principal;
    if (p && security_scopes_allow(p->scopes, scope)) return true;
    char need[32] = "";
    security_scopes_format(scope, false, need, sizeof(need));
    gw_reply_error(req, 403, "forbidden", "this key lacks the '%s' scope", need);
    return false;
}

bool gw_usable_deployment(struct gateway *gw, struct evhttp_request *req, const char *name,
                          struct gw_deployment *out)
{
    const struct access_principal *p = current_principal;
    if (gw_deployment_lookup(gw, name, out) && p &&
        access_can_use(gw->access, p, name, out->owner))
        return true;
    /* The same answer whether it is missing or someone else's. */
    gw_reply_error(req, 404, "not_found", "deployment '%s' not found", name);
    return false;
}

/* ---- deployment table ---- */

void gw_deployment_known(struct gateway *gw, const struct deploy_spec *spec, const char *owner)
{
    pthread_rwlock_wrlock(&gw->deps_lock);
    size_t i;
    for (i = 0; i < gw->n_deps; i++)
        if (strcmp(gw->deps[i].name, spec->name) == 0) break;
    if (i == gw->n_deps) {
        if (gw->n_deps == gw->cap_deps) {
            size_t cap = gw->cap_deps ? gw->cap_deps * 2 : 16;
            struct gw_deployment *d = realloc(gw->deps, cap * sizeof(*d));
            if (!d) goto out;
            gw->deps = d;
            gw->cap_deps = cap;
        }
        memset(&gw->deps[i], 0, sizeof(gw->deps[i]));
        gw->deps[i].known_at = time_wall_ms() / 1000;
        gw->n_deps++;
    }
    str_copy(gw->deps[i].name, spec->name, sizeof(gw->deps[i].name));
    str_copy(gw->deps[i].owner, owner ? owner : "", sizeof(gw->deps[i].owner));
    str_copy(gw->deps[i].runtime, spec->runtime ? spec->runtime : "", sizeof(gw->deps[i].runtime));
    json_decref(gw->deps[i].input_schema);
    gw->deps[i].input_schema = spec->input_schema ? json_deep_copy(spec->input_schema) : NULL;
    gw->deps[i].max_body_bytes = spec->limits.max_body_bytes;
out:
    pthread_rwlock_unlock(&gw->deps_lock);
}

bool gw_deployment_lookup(struct gateway *gw, const char *name, struct gw_deployment *out)
{
    bool found = false;
    pthread_rwlock_rdlock(&gw->deps_lock);
    for (size_t i = 0; i < gw->n_deps && !found; i++) {
        if (strcmp(gw->deps[i].name, name) == 0) {
            *out = gw->deps[i];
            found = true;
        }
    }
    pthread_rwlock_unlock(&gw->deps_lock);
    return found;
}

bool gw_deployment_owner(struct gateway *gw, const char *name, char *out, size_t n)
{
    struct gw_deployment d;
    if (!gw_deployment_lookup(gw, name, &d)) return false;
    str_copy(out, d.owner[0] ? d.owner : ACCESS_ROOT_TENANT, n);
    return true;
}

bool gw_deployment_metered(struct gateway *gw, const char *name)
{
    struct gw_deployment d;
    if (!gw_deployment_lookup(gw, name, &d)) return false;
    return strcmp(d.runtime, "llm") == 0 || strcmp(d.runtime, "embed") == 0;
}

static void vrules_free(struct gw_deployment *d)
{
    for (size_t k = 0; k < d->n_vrules; k++)
        json_decref(d->vrules[k].input_schema);
    free(d->vrules);
    d->vrules = NULL;
    d->n_vrules = d->cap_vrules = 0;
}

void gw_version_known(struct gateway *gw, const struct deploy_spec *spec, int version)
{
    if (version <= 0) return;
    pthread_rwlock_wrlock(&gw->deps_lock);
    struct gw_deployment *d = NULL;
    for (size_t i = 0; i < gw->n_deps && !d; i++)
        if (strcmp(gw->deps[i].name, spec->name) == 0) d = &gw->deps[i];
    bool known = false;
    for (size_t k = 0; d && k < d->n_vrules && !known; k++)
        known = d->vrules[k].version == version;
    if (d && !known && d->n_vrules == d->cap_vrules) {
        size_t cap = d->cap_vrules ? d->cap_vrules * 2 : 4;
        struct gw_version_rules *v = realloc(d->vrules, cap * sizeof(*v));
        if (v) {
            d->vrules = v;
            d->cap_vrules = cap;
        }
    }
    /* Without memory the version is checked by the latest's rules. */
    if (d && !known && d->n_vrules < d->cap_vrules) {
        d->vrules[d->n_vrules++] = (struct gw_version_rules){
            .version = version,
            .max_body_bytes = spec->limits.max_body_bytes,
            .input_schema = spec->input_schema ? json_deep_copy(spec->input_schema) : NULL,
        };
    }
    pthread_rwlock_unlock(&gw->deps_lock);
}

void gw_deployment_forget(struct gateway *gw, const char *name)
{
    pthread_rwlock_wrlock(&gw->deps_lock);
    for (size_t i = 0; i < gw->n_deps; i++) {
        if (strcmp(gw->deps[i].name, name) == 0) {
            json_decref(gw->deps[i].input_schema);
            vrules_free(&gw->deps[i]);
            gw->deps[i] = gw->deps[--gw->n_deps];
            break;
        }
    }
    pthread_rwlock_unlock(&gw->deps_lock);
}

/* The rules of version `version` of name (see gw_max_body): latest when
 * that version is not known here; false for an unknown deployment. With
 * deps_lock held; the schema stays valid while it is. */
static bool rules_of(struct gateway *gw, const char *name, int version, int64_t *max_body,
                     const json_t **schema)
{
    for (size_t i = 0; i < gw->n_deps; i++) {
        const struct gw_deployment *d = &gw->deps[i];
        if (strcmp(d->name, name) != 0) continue;
        *max_body = d->max_body_bytes;
        *schema = d->input_schema;
        for (size_t k = 0; version > 0 && k < d->n_vrules; k++) {
            if (d->vrules[k].version != version) continue;
            *max_body = d->vrules[k].max_body_bytes;
            *schema = d->vrules[k].input_schema;
            break;
        }
        return true;
    }
    return false;
}

int64_t gw_max_body(struct gateway *gw, const char *name, int version)
{
    int64_t max = -1;
    const json_t *schema;
    pthread_rwlock_rdlock(&gw->deps_lock);
    if (!rules_of(gw, name, version, &max, &schema)) max = -1;
    pthread_rwlock_unlock(&gw->deps_lock);
    return max;
}

int gw_validate_input(struct gateway *gw, const char *name, int version, const char *body,
                      size_t len, struct thaw_err *err)
{
    int rc = 0;
    int64_t max;
    const json_t *schema = NULL;
    pthread_rwlock_rdlock(&gw->deps_lock);
    if (rules_of(gw, name, version, &max, &schema) && schema) {
        json_t *v = len ? json_loadb(body, len, JSON_DECODE_ANY, NULL) : json_null();
        rc = v ? registry_schema_validate(schema, v, err)
               : thaw_errf(err, THAW_EINVAL, "input is not valid JSON");
        json_decref(v);
    }
    pthread_rwlock_unlock(&gw->deps_lock);
    return rc;
}

void gw_version_header(struct evhttp_request *req, int version)
{
    if (version <= 0) return;
    char v[16];
    snprintf(v, sizeof(v), "v%d", version);
    evhttp_add_header(evhttp_request_get_output_headers(req), "x-thaw-version", v);
}

bool gw_pick_version(struct gw_worker *w, struct evhttp_request *req, const char *path,
                     const char *name, const char *rid, uint64_t t0, struct gw_route *out)
{
    struct evkeyvalq *hin = evhttp_request_get_input_headers(req);
    const char *pin = evhttp_find_header(hin, "x-thaw-version");
    *out = (struct gw_route){0};
    if (pin && !(out->version = registry_version_parse(pin))) {
        gw_reject(w, req, path, name, rid, t0, 400, "invalid_version",
                  "header x-thaw-version must name a version like v3");
        return false;
    }
    const char *sticky = evhttp_find_header(hin, "x-thaw-sticky");
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = sticky; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    out->sticky = sticky && *sticky;
    out->sticky_hash = h;
    if (!out->version) {
        out->version = scale_route(w->gw->scale, name, out->sticky, h);
        out->routed = out->version > 0;
    }
    return true;
}

/* ---- sockets and workers ---- */

static int listen_socket(const char *host, int port, struct thaw_err *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ports[16];
    snprintf(ports, sizeof(ports), "%d", port);
    int gai = getaddrinfo(host, ports, &hints, &res);
    if (gai) return thaw_errf(err, THAW_EINVAL, "cannot resolve %s: %s", host, gai_strerror(gai));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    int rc = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
        bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 1024)) {
        rc = thaw_errf(err, -errno, "cannot listen on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return rc ? rc : fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len)) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void stop_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_worker *w = arg;
    if (w->bound) {
        evhttp_del_accept_socket(w->http, w->bound); /* closes the fd */
        w->bound = NULL;
        w->fd = -1;
    }
}

static void *worker_main(void *arg)
{
    struct gw_worker *w = arg;
    current_worker = w;
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static int worker_init(struct gateway *gw, struct gw_worker *w, int fd, struct thaw_err *err)
{
    w->gw = gw;
    w->fd = -1;
    pthread_mutex_init(&w->outbox_lock, NULL);
    w->shared_base = gw->cfg.shared_base && gw->cfg.threads == 1;
    w->base = w->shared_base ? gw->cfg.shared_base : event_base_new();
    if (!w->base) return thaw_errf(err, THAW_ENOMEM, "cannot create event base");
    w->http = evhttp_new(w->base);
    w->outbox_ev = event_new(w->base, -1, EV_READ, gw_outbox_cb, w);
    w->stop_accept_ev = event_new(w->base, -1, EV_READ, stop_accept_cb, w);
    if (!w->http || !w->outbox_ev || !w->stop_accept_ev)
        return thaw_errf(err, THAW_ENOMEM, "cannot create http server");
    evhttp_set_max_headers_size(w->http, (ev_ssize_t)gw->cfg.max_header_bytes);
    evhttp_set_max_body_size(w->http, (ev_ssize_t)gw->cfg.max_body_bytes);
    evhttp_set_timeout(w->http, gw->cfg.read_timeout_s);
    evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(w->http, "application/json");
    evhttp_set_gencb(w->http, gw_route, w);
    if (gw->tls_ctx) evhttp_set_bevcb(w->http, gw_tls_bevcb, gw);
    w->bound = evhttp_accept_socket_with_handle(w->http, fd);
    if (!w->bound) return thaw_errf(err, THAW_EIO, "cannot accept on listening socket");
    w->fd = fd;
    return 0;
}

struct gateway *gw_new(const struct gateway_config *cfg, struct store *store, struct scale *scale,
                       struct access *access, struct thaw_err *err)
{
    struct gateway *gw = calloc(1, sizeof(*gw));
    if (!gw) {
        thaw_errf(err, THAW_ENOMEM, "out of memory");
        return NULL;
    }
    gw->cfg = *cfg;
    gw->store = store;
    gw->scale = scale;
    gw->access = access;
    gw->sealer = (struct registry_sealer){access, access_seal_hook, access_unseal_hook};
    pthread_rwlock_init(&gw->deps_lock, NULL);
    pthread_mutex_init(&gw->tls_lock, NULL);
    if (gw_tls_load(gw, err)) goto fail;
    int n = cfg->threads > 0 ? cfg->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    gw->workers = calloc((size_t)n, sizeof(struct gw_worker));
    if (!gw->workers) {
        thaw_errf(err, THAW_ENOMEM, "out of memory");
        goto fail;
    }
    gw->f_requests =
        obs_metric_family("thaw_requests_total", "Requests to deployments.", METRIC_COUNTER,
                          (const char *[]){"deployment", "code", "version", NULL}, NULL, 0);
    static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                     0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5,
                                     5,      10,      30,     60};
    gw->f_duration = obs_metric_family(
        "thaw_request_duration_seconds", "Time from request to complete answer.", METRIC_HISTOGRAM,
        (const char *[]){"deployment", "version", NULL}, buckets, (int)ARRAY_LEN(buckets));
    gw->f_tokens = obs_metric_family("thaw_tokens_total",
                                     "Tokens processed by llm and embed deployments.",
                                     METRIC_COUNTER,
                                     (const char *[]){"deployment", "tenant", "kind", NULL}, NULL, 0);
    int port = cfg->port;
    for (int i = 0; i < n; i++) {
        int fd = listen_socket(cfg->host, port, err);
        if (fd < 0) goto fail;
        if (i == 0) port = gw->port = bound_port(fd);
        gw->workers[i].index = i;
        gw->n_workers = i + 1;
        if (worker_init(gw, &gw->workers[i], fd, err)) {
            close(fd);
            goto fail;
        }
    }
    return gw;
fail:
    gw_free(gw);
    return NULL;
}

int gw_port(const struct gateway *gw)
{
    return gw->port;
}

int gw_start(struct gateway *gw, struct thaw_err *err)
{
    for (int i = 0; i < gw->n_workers; i++) {
        struct gw_worker *w = &gw->workers[i];
        if (w->shared_base) continue;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return thaw_errf(err, THAW_EIO, "cannot start gateway thread");
        w->thread_started = true;
    }
    return 0;
}

void gw_set_ready(struct gateway *gw, int ready)
{
    atomic_store(&gw->ready, ready);
}

void gw_stop_accepting(struct gateway *gw)
{
    atomic_store(&gw->draining, 1);
    for (int i = 0; i < gw->n_workers; i++)
        if (gw->workers[i].stop_accept_ev) event_active(gw->workers[i].stop_accept_ev, EV_READ, 0);
}

int gw_inflight(const struct gateway *gw)
{
    return atomic_load(&((struct gateway *)gw)->inflight);
}

void gw_join(struct gateway *gw)
{
    if (!gw) return;
    for (int i = 0; i < gw->n_workers; i++) {
        struct gw_worker *w = &gw->workers[i];
        if (w->thread_started) {
            event_base_loopexit(w->base, NULL);
            pthread_join(w->thread, NULL);
            w->thread_started = false;
        }
    }
}

void gw_free(struct gateway *gw)
{
    if (!gw) return;
    gw_join(gw);
    for (int i = 0; i < gw->n_workers; i++) {
        struct gw_worker *w = &gw->workers[i];
        /* Answers nobody will read (a forced stop): their calls' requests
         * go with the connections below, so only the memory is freed. */
        while (w->out_head) {
            struct gw_msg *m = w->out_head;
            w->out_head = m->next;
            gw_msg_drop(m);
        }
        if (w->http) evhttp_free(w->http); /* closes bound sockets */
        else if (w->fd >= 0) close(w->fd);
        if (w->outbox_ev) event_free(w->outbox_ev);
        if (w->stop_accept_ev) event_free(w->stop_accept_ev);
        if (w->base && !w->shared_base) event_base_free(w->base);
        pthread_mutex_destroy(&w->outbox_lock);
    }
    free(gw->workers);
    for (size_t i = 0; i < gw->n_deps; i++) {
        json_decref(gw->deps[i].input_schema);
        vrules_free(&gw->deps[i]);
    }
    free(gw->deps);
    gw_tls_free(gw);
    pthread_mutex_destroy(&gw->tls_lock);
    pthread_rwlock_destroy(&gw->deps_lock);
    free(gw);
}
