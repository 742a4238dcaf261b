/* Invocations: validating the request, handing it to the scale thread, and
 * turning the answers that come back into an HTTP response or a stream of
 * Server-Sent Events on the worker that owns the connection. */
#include "gateway/gw_int.h"

#include <event2/bufferevent.h>
#include <stdlib.h>
#include <string.h>

static void call_free(struct gw_call *c)
{
    if (c->close_ev) event_free(c->close_ev);
    free(c->inv.input);
    free(c);
}

void gw_call_finish(struct gw_call *c, int status)
{
    struct gw_worker *w = c->worker;
    access_release(w->gw->access, &c->auth.who, &c->auth.adm);
    access_usage_record(w->gw->access, c->auth.who.tenant, c->inv.deployment, status >= 400,
                        c->prompt_tokens, c->completion_tokens);
    gw_request_done_v(w, "POST", c->path, c->inv.deployment, c->inv.version, status, c->t0_ns,
                      c->inv.request_id, c->inv.start_state);
    atomic_fetch_sub(&w->gw->inflight, 1);
    call_free(c);
}

/* Runs on the scale thread: queue the event for the connection's worker. */
static void on_event(struct invocation *inv, enum inv_event_kind kind, int status, const char *code,
                     char *payload)
{
    struct gw_call *c = (struct gw_call *)inv;
    struct gw_worker *w = c->worker;
    struct gw_msg *m = malloc(sizeof(*m));
    if (!m) {
        /* Without memory the event is lost; the final one must not be, so
         * spin briefly rather than leave the client hanging. */
        while (!(m = malloc(sizeof(*m)))) {
        }
    }
    *m = (struct gw_msg){
        .call = c, .kind = kind, .status = status, .code = code, .payload = payload};
    pthread_mutex_lock(&w->outbox_lock);
    bool was_empty = w->out_head == NULL;
    if (w->out_tail)
        w->out_tail->next = m;
    else
        w->out_head = m;
    w->out_tail = m;
    pthread_mutex_unlock(&w->outbox_lock);
    if (was_empty) event_active(w->outbox_ev, EV_READ, 0);
}

void gw_call_headers(struct gw_call *c)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(h, "x-thaw-start", c->inv.start_state ? c->inv.start_state : "warm");
    if (c->inv.version > 0) {
        char v[16];
        snprintf(v, sizeof(v), "v%d", c->inv.version);
        evhttp_add_header(h, "x-thaw-version", v);
    }
}

void gw_sse_send(struct gw_call *c, const char *event, const char *data)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) return;
    if (event) evbuffer_add_printf(b, "event: %s\n", event);
    evbuffer_add_printf(b, "data: %s\n\n", data);
    evhttp_send_reply_chunk(c->req, b);
    evbuffer_free(b);
}

void gw_sse_start(struct gw_call *c)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
    gw_call_headers(c);
    evhttp_add_header(h, "Content-Type", "text/event-stream");
    evhttp_add_header(h, "Cache-Control", "no-cache");
    evhttp_send_reply_start(c->req, 200, "OK");
    c->stream_started = true;
}

static void error_body(struct buf *b, const char *code, const char *msg)
{
    buf_printf(b, "{\"error\":{\"code\":\"%s\",\"message\":", code);
    buf_append_json_string(b, msg ? msg : "", msg ? strlen(msg) : 0);
    buf_append_str(b, "}}");
}

static void cancel_call(struct gw_call *c)
{
    if (c->cancel_asked) return;
    c->cancel_asked = true;
    scale_cancel(c->worker->gw->scale, &c->inv, SCALE_CANCEL_CLIENT_CLOSED);
}

/* libevent calls this when the connection of a call in flight goes away (a
 * write of the stream failed, or the server frees it). Generating on for
 * nobody would hold a sequence, and an instance, for as long as the answer
 * takes: cancel it. */
static void on_client_close(struct evhttp_connection *evcon, void *arg)
{
    struct gw_call *c = arg;
    if (c->closed) return;
    c->closed = true;
    /* On EOF libevent detaches a request still being answered, which we
     * must then end; one still attached is freed with the connection. */
    if (evhttp_request_get_connection(c->req) == evcon) c->req = NULL;
    if (c->close_ev) event_del(c->close_ev); /* its socket is about to be closed */
    cancel_call(c);
}

/* The peer closed its end while the answer is awaited. libevent's HTTP layer
 * reads nothing while answering (so it would only notice at the next write,
 * and a held or non-streamed request has none), but the socket reports the
 * FIN at once. The request is answered as usual afterwards (a 499, or what
 * the runtime got done, metered), into a socket that may be gone. */
static void on_peer_closed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cancel_call(arg);
}

/* Watches the call's connection from now until its final answer. */
static void watch_close(struct gw_call *c)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    if (!evcon) return;
    evhttp_connection_set_closecb(evcon, on_client_close, c);
    struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
    evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
    /* One-shot: a closed socket stays readable-for-close, so it must not
     * fire again. Without EV_CLOSED (no epoll) only writes notice. */
    if (fd >= 0 && (event_base_get_features(c->worker->base) & EV_FEATURE_EARLY_CLOSE))
        c->close_ev = event_new(c->worker->base, fd, EV_CLOSED, on_peer_closed, c);
    if (c->close_ev) event_add(c->close_ev, NULL);
}

/* Before the final answer is sent: the connection may be closed (and its
 * close callback run) as part of sending it, after the call is gone. */
static void unwatch_close(struct gw_call *c)
{
    struct evhttp_connection *evcon = c->req ? evhttp_request_get_connection(c->req) : NULL;
    if (evcon) evhttp_connection_set_closecb(evcon, NULL, NULL);
    if (c->close_ev) event_free(c->close_ev);
    c->close_ev = NULL;
}

static void deliver(struct gw_msg *m)
{
    struct gw_call *c = m->call;
    if (c->metered && m->kind == INV_DONE) {
        json_t *out = json_loads(m->payload, 0, NULL);
        gw_meter_tokens(c, out);
        json_decref(out);
    }
    if (m->kind != INV_CHUNK) unwatch_close(c);
    if (c->closed || c->cancel_asked) {
        /* Nobody to answer (or a client that half-closed and gets an empty
         * 499): the tokens were metered above; end the request (libevent
         * may have left it to us) and log the call as the client's doing. */
        if (m->kind == INV_CHUNK) return;
        if (c->req && c->stream_started)
            evhttp_send_reply_end(c->req);
        else if (c->req)
            evhttp_send_reply(c->req, 499, "Client Closed Request", NULL);
        gw_call_finish(c, 499);
        return;
    }
    if (c->api != GW_API_NATIVE) {
        gw_openai_deliver(m);
        return;
    }
    if (m->kind == INV_CHUNK) {
        if (!c->stream_started) gw_sse_start(c);
        gw_sse_send(c, "chunk", m->payload);
        return;
    }
    if (c->inv.stream && (c->stream_started || m->kind == INV_DONE)) {
        if (!c->stream_started) gw_sse_start(c);
        if (m->kind == INV_DONE) {
            gw_sse_send(c, "done", m->payload);
        } else {
            struct buf b = {0};
            error_body(&b, m->code, m->payload);
            gw_sse_send(c, "error", b.data ? b.data : "{}");
            buf_free(&b);
        }
        evhttp_send_reply_end(c->req);
        gw_call_finish(c, m->kind == INV_DONE ? 200 : m->status);
        return;
    }
    gw_call_headers(c);
    if (m->kind == INV_DONE) {
        gw_reply_json(c->req, 200, m->payload, strlen(m->payload));
        gw_call_finish(c, 200);
        return;
    }
    gw_call_fail(c, m->status, m->code, m->payload);
}

void gw_call_fail(struct gw_call *c, int status, const char *code, const char *msg)
{
    if (status == 503 && c->inv.retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", c->inv.retry_after_s);
        evhttp_add_header(evhttp_request_get_output_headers(c->req), "Retry-After", ra);
    }
    gw_reply_error(c->req, status, code, "%s", msg ? msg : "");
    gw_call_finish(c, status);
}

void gw_outbox_cb(evutil_socket_t fd, short what, void *arg)
{
    struct gw_worker *w = arg;
    pthread_mutex_lock(&w->outbox_lock);
    struct gw_msg *m = w->out_head;
    w->out_head = w->out_tail = NULL;
    pthread_mutex_unlock(&w->outbox_lock);
    while (m) {
        struct gw_msg *next = m->next;
        deliver(m);
        free(m->payload);
        free(m);
        m = next;
    }
}

void gw_msg_drop(struct gw_msg *m)
{
    if (m->kind != INV_CHUNK) {
        unwatch_close(m->call); /* the connection outlives it a little */
        atomic_fetch_sub(&m->call->worker->gw->inflight, 1);
        call_free(m->call);
    }
    free(m->payload);
    free(m);
}

static bool wants_stream(struct evhttp_request *req)
{
    const char *accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    return accept && strstr(accept, "text/event-stream");
}

/* Validates the body as JSON and returns it as one line: the raw bytes when
 * they hold no line break (valid JSON then has none to escape), otherwise
 * re-encoded compactly. An empty body is null. */
static char *input_line(const char *body, size_t len, size_t *out_len, char *why, size_t why_n)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    if (i == len) {
        *out_len = 4;
        return str_dup("null");
    }
    json_error_t jerr;
    json_t *v = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
    if (!v) {
        snprintf(why, why_n, "request body is not valid JSON (line %d, column %d): %s", jerr.line,
                 jerr.column, jerr.text);
        return NULL;
    }
    char *out;
    if (!memchr(body, '\n', len) && !memchr(body, '\r', len)) {
        out = malloc(len + 1);
        if (out) {
            memcpy(out, body, len);
            out[len] = 0;
            *out_len = len;
        }
    } else {
        out = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (out) *out_len = strlen(out);
    }
    json_decref(v);
    if (!out) snprintf(why, why_n, "out of memory");
    return out;
}

void gw_reject(struct gw_worker *w, struct evhttp_request *req, const char *path, const char *name,
               const char *rid, uint64_t t0, int status, const char *code, const char *msg)
{
    gw_reply_error(req, status, code, "%s", msg);
    gw_request_done(w, "POST", path, name, status, t0, rid, NULL);
}

bool gw_handle_invoke(struct gw_worker *w, struct evhttp_request *req, const char *name,
                      const char *rid, const struct gw_auth *auth)
{
    struct gateway *gw = w->gw;
    uint64_t t0 = time_now_ns();
    char path[128], msg[320];
    str_copy(path, evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)), sizeof(path));
    struct gw_deployment dep;
    if (!security_scopes_allow(auth->who.scopes, SECURITY_SCOPE_INVOKE)) {
        gw_reject(w, req, path, NULL, rid, t0, 403, "forbidden",
                  "this key lacks the 'invoke' scope");
        return false;
    }
    if (!gw_deployment_lookup(gw, name, &dep) ||
        !access_can_use(gw->access, &auth->who, name, dep.owner)) {
        snprintf(msg, sizeof(msg), "deployment '%s' not found", name);
        gw_reject(w, req, path, NULL, rid, t0, 404, "not_found", msg);
        return false;
    }
    struct evkeyvalq *hin = evhttp_request_get_input_headers(req);
    if (!evhttp_find_header(hin, "Content-Length") &&
        !evhttp_find_header(hin, "Transfer-Encoding")) {
        gw_reject(w, req, path, name, rid, t0, 411, "length_required",
                  "a request body needs a Content-Length (or chunked encoding)");
        return false;
    }
    /* The version first: the request is checked against its rules. */
    struct gw_call_opts opts = {.api = GW_API_NATIVE, .stream = wants_stream(req)};
    if (!gw_pick_version(w, req, path, name, rid, t0, &opts.route)) return false;
    int version = opts.route.version;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    int64_t limit = gw_max_body(gw, name, version);
    if ((int64_t)len > limit) {
        snprintf(msg, sizeof(msg),
                 "request body of %zu bytes exceeds the deployment's limit of %lld", len,
                 (long long)limit);
        gw_version_header(req, version);
        gw_reject(w, req, path, name, rid, t0, 413, "body_too_large", msg);
        return false;
    }
    const char *body = (const char *)evbuffer_pullup(in, -1);
    size_t input_len;
    char *input = input_line(body ? body : "", len, &input_len, msg, sizeof(msg));
    if (!input) {
        gw_reject(w, req, path, name, rid, t0, 400, "invalid_json", msg);
        return false;
    }
    struct thaw_err verr = {0};
    if (gw_validate_input(gw, name, version, input, input_len, &verr)) {
        free(input);
        gw_version_header(req, version);
        gw_reject(w, req, path, name, rid, t0, 400, "invalid_input", verr.msg);
        return false;
    }
    return gw_call_submit(w, req, path, &dep, rid, auth, t0, input, input_len, &opts);
}

bool gw_call_submit(struct gw_worker *w, struct evhttp_request *req, const char *path,
                    const struct gw_deployment *dep, const char *rid, const struct gw_auth *auth,
                    uint64_t t0, char *input, size_t input_len, const struct gw_call_opts *opts)
{
    uint32_t retry_s;
    bool metered = strcmp(dep->runtime, "llm") == 0 || strcmp(dep->runtime, "embed") == 0;
    if (metered && !access_tokens_left(w->gw->access, &auth->who, &retry_s)) {
        free(input);
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", retry_s);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
        gw_reject(w, req, path, dep->name, rid, t0, 429, "rate_limited",
                  "this key or tenant has spent its daily tokens (daily_tokens limit)");
        return false;
    }
    struct gw_call *c = calloc(1, sizeof(*c));
    if (!c) {
        free(input);
        gw_reject(w, req, path, dep->name, rid, t0, 503, "overloaded", "out of memory");
        return false;
    }
    c->inv.input = input;
    c->inv.input_len = input_len;
    str_copy(c->inv.deployment, dep->name, sizeof(c->inv.deployment));
    str_copy(c->inv.request_id, rid, sizeof(c->inv.request_id));
    str_copy(c->inv.tenant, auth->who.tenant, sizeof(c->inv.tenant));
    str_copy(c->path, path, sizeof(c->path));
    c->inv.stream = opts->stream;
    /* The version the caller's checks were made against (pinned, or picked
     * by traffic); when none could be picked here the scale picks, from
     * the sticky key if there is one. */
    c->inv.version = opts->route.version;
    c->inv.routed = opts->route.routed;
    c->inv.sticky = opts->route.sticky;
    c->inv.sticky_hash = opts->route.sticky_hash;
    c->inv.on_event = on_event;
    c->req = req;
    c->worker = w;
    c->t0_ns = t0;
    c->auth = *auth;
    c->api = opts->api;
    c->include_usage = opts->include_usage;
    c->base64 = opts->base64;
    c->metered = metered;
    c->created = time_wall_ms() / 1000;
    atomic_fetch_add(&w->gw->inflight, 1);
    scale_submit(w->gw->scale, &c->inv);
    /* Answers come back on this thread, after this returns: nothing can
     * have ended the call yet. */
    watch_close(c);
    return true;
}
