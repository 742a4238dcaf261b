/* The jobs API: submitting to /v1/deployments/{name}/jobs (answered once
 * the job is durable), /v1/jobs (get, long-poll, cancel, list) and /v1/dlq
 * (dead jobs and dead webhook deliveries). Answers that come from another
 * thread (the committer, a finished job) reach the connection's worker
 * through a one-shot event. */
#include "gateway/gw_int.h"
#include "jobs/jobs.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MAX_MS 120000

void gw_set_jobs(struct gateway *gw, struct jobs *jobs)
{
    gw->jobs = jobs;
}

/* A request answered later, on its worker. */
struct later {
    struct jobs_request r; /* first: jobs' callback gets &later->r */
    struct gw_worker *w;
    struct evhttp_request *req;
    struct event *ev;
    uint64_t t0;
    char rid[65], path[128], deployment[DEPLOY_NAME_MAX + 1], job_id[64];
    const char *method;
    bool single;
    /* submission storage */
    char **inputs;
    size_t *lens;
    char *webhook, *idem_key;
    struct access_principal who; /* the submitter: charged once its jobs are stored */
    bool charge;
};

static void later_free(struct later *l)
{
    for (size_t i = 0; l->inputs && i < l->r.n; i++)
        free(l->inputs[i]);
    free(l->inputs);
    free(l->lens);
    free(l->webhook);
    free(l->idem_key);
    free(l->r.ids);
    if (l->ev) event_free(l->ev);
    free(l);
}

static void later_done(struct later *l)
{
    struct gw_worker *w = l->w;
    gw_request_done(w, l->method, l->path, l->deployment[0] ? l->deployment : NULL, w->last_status,
                    l->t0, l->rid, NULL);
    atomic_fetch_sub(&w->gw->inflight, 1);
    later_free(l);
}

static struct later *later_new(struct gw_worker *w, struct evhttp_request *req, const char *rid,
                               event_callback_fn cb)
{
    struct later *l = calloc(1, sizeof(*l));
    if (!l) return NULL;
    l->w = w;
    l->req = req;
    l->t0 = time_now_ns();
    l->method = gw_method_name(evhttp_request_get_command(req));
    str_copy(l->rid, rid, sizeof(l->rid));
    str_copy(l->path, evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)), sizeof(l->path));
    l->ev = event_new(w->base, -1, 0, cb, l);
    if (!l->ev) {
        free(l);
        return NULL;
    }
    atomic_fetch_add(&w->gw->inflight, 1);
    return l;
}

/* ---- helpers ---- */

static int reply_err_status(struct evhttp_request *req, int rc, const struct thaw_err *err);

static bool is_admin(void)
{
    const struct access_principal *p = gw_principal();
    return p && security_scopes_allow(p->scopes, SECURITY_SCOPE_ADMIN);
}

/* The tenant whose jobs the caller may see: NULL for the platform admin
 * (everyone's), else its own. */
static const char *caller_tenant(void)
{
    const struct access_principal *p = gw_principal();
    return p && p->platform_admin ? NULL : p ? p->tenant : "";
}

/* A job is its submitter's: only keys of that tenant and the platform admin
 * see it, whoever else may use its deployment (a grant shares the function,
 * not the data). Others are answered 404, as for a job that does not exist,
 * so ids do not leak either. Jobs kept before tenants were (tenant "") are
 * seen as they were: by admins and whoever may use the deployment. */
static bool job_visible(struct gateway *gw, struct evhttp_request *req, const char *id)
{
    const struct access_principal *who = gw_principal();
    char tenant[64], dep[DEPLOY_NAME_MAX + 1];
    struct thaw_err err = {0};
    int rc = jobs_whose(gw->jobs, id, tenant, dep, &err);
    if (rc) {
        reply_err_status(req, rc, &err);
        return false;
    }
    if (who && who->platform_admin) return true;
    if (tenant[0]) {
        if (who && strcmp(who->tenant, tenant) == 0) return true;
        gw_reply_error(req, 404, "not_found", "job '%s' not found", id);
        return false;
    }
    if (is_admin()) return true;
    struct gw_deployment d;
    return gw_usable_deployment(gw, req, dep, &d);
}

/* Listing across deployments is for admins; one deployment's for whoever
 * may use it. */
static bool deployment_visible(struct gateway *gw, struct evhttp_request *req, const char *dep)
{
    struct gw_deployment d;
    if (dep) return is_admin() || gw_usable_deployment(gw, req, dep, &d);
    return gw_require_scope(req, SECURITY_SCOPE_ADMIN);
}

static bool no_jobs(struct gateway *gw, struct evhttp_request *req)
{
    if (gw->jobs) return false;
    gw_reply_error(req, 503, "jobs_unavailable", "this node does not run jobs");
    return true;
}

static bool job_id_valid(const char *id)
{
    if (strncmp(id, "job_", 4) != 0 || strlen(id) != JOBS_ID_LEN) return false;
    for (const char *p = id + 4; *p; p++)
        if (!isxdigit((unsigned char)*p)) return false;
    return true;
}

/* Query parameters; the caller frees q with evhttp_clear_headers. */
static int parse_query(struct evhttp_request *req, struct evkeyvalq *q)
{
    const char *qs = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    return evhttp_parse_query_str(qs ? qs : "", q); /* initialises q */
}

static int reply_err_status(struct evhttp_request *req, int rc, const struct thaw_err *err)
{
    switch (rc) {
    case THAW_ENOTFOUND:
        gw_reply_error(req, 404, "not_found", "%s", err->msg);
        return 404;
    case THAW_ESTATE:
        gw_reply_error(req, 409, "conflict", "%s", err->msg);
        return 409;
    case THAW_EINVAL:
        gw_reply_error(req, 400, "invalid_request", "%s", err->msg);
        return 400;
    default:
        gw_reply_error(req, 500, "store_failed", "%s", err->msg);
        return 500;
    }
}

static void set_retry_after(struct evhttp_request *req, int s)
{
    char ra[16];
    snprintf(ra, sizeof(ra), "%d", s > 0 ? s : 1);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
}

/* ---- submit ---- */

static void submit_answer(evutil_socket_t fd, short what, void *arg)
{
    struct later *l = arg;
    struct jobs_request *r = &l->r;
    struct evhttp_request *req = l->req;
    /* A submission of n jobs counts n daily requests; its admission
     * counted one (an idempotent replay, 200, created nothing). */
    if (r->status == 202 && l->charge && r->n > 1)
        access_charge_requests(l->w->gw->access, &l->who, r->n - 1);
    if (r->status == 202 || r->status == 200) {
        json_t *body = NULL;
        if (l->single && r->status == 200) {
            struct thaw_err err = {0};
            if (jobs_get(l->w->gw->jobs, r->ids[0], &body, &err)) body = NULL;
        }
        if (!body && l->single) {
            body = json_pack("{s:s, s:s, s:s}", "id", r->ids[0], "deployment", r->deployment,
                             "state", "queued");
        } else if (!body) {
            json_t *arr = json_array();
            for (size_t i = 0; i < r->n; i++)
                json_array_append_new(arr, json_pack("{s:s}", "id", r->ids[i]));
            body = json_pack("{s:o}", "jobs", arr);
        }
        const char *version = json_string_value(json_object_get(body, "version"));
        if (version)
            evhttp_add_header(evhttp_request_get_output_headers(req), "x-thaw-version", version);
        if (l->single) {
            char loc[96];
            snprintf(loc, sizeof(loc), "/v1/jobs/%s", r->ids[0]);
            evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
        }
        gw_reply_jsonv(req, r->status, body);
    } else {
        if (r->status == 429 || r->status == 503) set_retry_after(req, r->retry_after_s);
        gw_reply_error(req, r->status, r->code ? r->code : "error", "%s", r->message);
    }
    later_done(l);
}

static void submit_done(struct jobs_request *r)
{
    struct later *l = (struct later *)r;
    event_active(l->ev, EV_READ, 0);
}

/* Compact one-line JSON of v. */
static char *compact(const json_t *v, size_t *len)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) *len = strlen(s);
    return s;
}

/* Fills l's inputs from the body: {"input": X} or {"inputs": [X, ...]},
 * with an optional "webhook". Returns 0 or an HTTP status with msg set. */
static int parse_submit(struct later *l, const char *body, size_t len, int64_t max_input, char *msg,
                        size_t msg_n)
{
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        snprintf(msg, msg_n, "request body is not valid JSON (line %d, column %d): %s", jerr.line,
                 jerr.column, jerr.text);
        return 400;
    }
    int st = 0;
    const char *key;
    json_t *v, *input = json_object_get(doc, "input"), *inputs = json_object_get(doc, "inputs");
    json_t *hook = json_object_get(doc, "webhook");
    if (!json_is_object(doc)) {
        snprintf(msg, msg_n, "a submission is an object: {\"input\": ...} or {\"inputs\": [...]}");
        st = 400;
        goto out;
    }
    json_object_foreach(doc, key, v)
    {
        if (strcmp(key, "input") && strcmp(key, "inputs") && strcmp(key, "webhook")) {
            snprintf(msg, msg_n, "unknown field '%s' (known: input, inputs, webhook)", key);
            st = 400;
            goto out;
        }
    }
    if (!!input == !!inputs) {
        snprintf(msg, msg_n, "give exactly one of 'input' or 'inputs'");
        st = 400;
        goto out;
    }
    if (inputs && (!json_is_array(inputs) || json_array_size(inputs) == 0 ||
                   json_array_size(inputs) > JOBS_BATCH_MAX)) {
        snprintf(msg, msg_n, "'inputs' must be a list of 1 to %d inputs", JOBS_BATCH_MAX);
        st = 400;
        goto out;
    }
    if (hook && !json_is_null(hook)) {
        if (!json_is_string(hook) || strlen(json_string_value(hook)) != json_string_length(hook)) {
            snprintf(msg, msg_n, "'webhook' must be a URL string");
            st = 400;
            goto out;
        }
        l->webhook = str_dup(json_string_value(hook));
    }
    size_t n = inputs ? json_array_size(inputs) : 1;
    l->single = !inputs;
    l->inputs = calloc(n, sizeof(char *));
    l->lens = calloc(n, sizeof(size_t));
    if (!l->inputs || !l->lens) {
        snprintf(msg, msg_n, "out of memory");
        st = 503;
        goto out;
    }
    l->r.n = n;
    for (size_t i = 0; i < n; i++) {
        l->inputs[i] = compact(inputs ? json_array_get(inputs, i) : input, &l->lens[i]);
        if (!l->inputs[i]) {
            snprintf(msg, msg_n, "out of memory");
            st = 503;
            goto out;
        }
        if ((int64_t)l->lens[i] > max_input) {
            snprintf(msg, msg_n, "input %zu is %zu bytes, over the deployment's limit of %lld", i,
                     l->lens[i], (long long)max_input);
            st = 413;
            goto out;
        }
    }
out:
    json_decref(doc);
    return st;
}

static void submit(struct gw_worker *w, struct evhttp_request *req, const char *name,
                   const char *rid)
{
    struct gateway *gw = w->gw;
    struct gw_deployment dep;
    struct later *l = later_new(w, req, rid, submit_answer);
    if (!l) {
        gw_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    str_copy(l->deployment, name, sizeof(l->deployment));
    if (!gw_require_scope(req, SECURITY_SCOPE_INVOKE) ||
        !gw_usable_deployment(gw, req, name, &dep)) {
        later_done(l);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *body = (const char *)evbuffer_pullup(in, -1);
    /* Each attempt is routed by the weights when it runs, so an input must
     * pass the rules of every version with traffic now (the latest
     * deployed version's when none has any). */
    int vs[REGISTRY_SPLIT_MAX];
    int nv = gw->scale ? scale_route_versions(gw->scale, name, vs, (int)ARRAY_LEN(vs)) : 0;
    if (nv == 0) vs[nv++] = 0;
    int64_t limit = INT64_MAX;
    for (int k = 0; k < nv; k++) {
        int64_t m = gw_max_body(gw, name, vs[k]);
        if (m >= 0 && m < limit) limit = m;
    }
    char msg[320];
    int st = parse_submit(l, body ? body : "", len, limit, msg, sizeof(msg));
    if (st) {
        gw_reply_error(req, st, st == 413 ? "body_too_large" : "invalid_request", "%s", msg);
        later_done(l);
        return;
    }
    /* The input schemas, as on the invoke path, before anything is stored:
     * a job that cannot be valid is refused now, not dead later. */
    for (size_t i = 0; i < l->r.n; i++) {
        for (int k = 0; k < nv; k++) {
            struct thaw_err verr = {0};
            if (!gw_validate_input(gw, name, vs[k], l->inputs[i], l->lens[i], &verr)) continue;
            char ver[24] = "";
            if (nv > 1) snprintf(ver, sizeof(ver), " (version v%d)", vs[k]);
            if (l->single)
                gw_reply_error(req, 400, "invalid_input", "%s%s", verr.msg, ver);
            else
                gw_reply_error(req, 400, "invalid_input", "inputs[%zu]: %s%s", i, verr.msg, ver);
            later_done(l);
            return;
        }
    }
    /* Keys are the tenant's own: the same key from two tenants is two keys. */
    const char *key = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
    const struct access_principal *who = gw_principal();
    /* Jobs spend the submitting key's and tenant's quotas as synchronous
     * calls do (their attempts' tokens are charged as they answer): a key
     * or tenant already out of daily requests or tokens is refused now,
     * the same 429 as an invoke, rather than queueing work it cannot pay. */
    if (who && !gw->cfg.no_auth) {
        uint32_t retry_s = 0;
        const char *reason = NULL;
        bool tokens = strcmp(dep.runtime, "llm") == 0 || strcmp(dep.runtime, "embed") == 0;
        if (!access_jobs_admit(gw->access, who, l->r.n - 1, tokens, &retry_s, &reason)) {
            set_retry_after(req, (int)retry_s);
            if (!strcmp(reason, "daily_tokens"))
                gw_reply_error(
                    req, 429, "rate_limited",
                    "this key or tenant has spent its daily tokens (daily_tokens limit)");
            else
                gw_reply_error(req, 429, "rate_limited",
                               "too many requests for this key or tenant (daily_requests limit): "
                               "%zu jobs count as %zu requests",
                               l->r.n, l->r.n);
            later_done(l);
            return;
        }
        l->who = *who;
        l->charge = true;
        str_copy(l->r.key_id, who->key_id, sizeof(l->r.key_id));
    }
    if (key && !jobs_idem_key_valid(key)) {
        gw_reply_error(req, 400, "invalid_idempotency_key",
                       "Idempotency-Key must be 1-255 printable ASCII characters without spaces");
        later_done(l);
        return;
    }
    if (key) {
        struct buf kb = {0};
        buf_printf(&kb, "%s/%s", who ? who->tenant : "", key);
        l->idem_key = buf_steal(&kb);
    }
    str_copy(l->r.deployment, name, sizeof(l->r.deployment));
    /* The job is the submitter's: sealed under its key, seen by it alone. */
    str_copy(l->r.tenant, who ? who->tenant : "", sizeof(l->r.tenant));
    l->r.inputs = l->inputs;
    l->r.input_lens = l->lens;
    l->r.webhook = l->webhook;
    l->r.idem_key = l->idem_key;
    l->r.done = submit_done;
    jobs_submit(gw->jobs, &l->r);
}

/* ---- get, long-poll, cancel, list ---- */

static void reply_job(struct gateway *gw, struct evhttp_request *req, const char *id)
{
    json_t *v = NULL;
    struct thaw_err err = {0};
    int rc = jobs_get(gw->jobs, id, &v, &err);
    if (rc) {
        reply_err_status(req, rc, &err);
        return;
    }
    if (json_is_true(json_object_get(v, "expired"))) {
        gw_reply_error(req, 410, "result_expired",
                       "job '%s' ended and its result was deleted after its result_ttl", id);
        json_decref(v);
        return;
    }
    const char *version = json_string_value(json_object_get(v, "version"));
    if (version) /* as invoke answers do: the version that served it */
        evhttp_add_header(evhttp_request_get_output_headers(req), "x-thaw-version", version);
    gw_reply_jsonv(req, 200, v);
}

static void wait_answer(evutil_socket_t fd, short what, void *arg)
{
    struct later *l = arg;
    reply_job(l->w->gw, l->req, l->job_id);
    later_done(l);
}

static void wait_fired(void *arg)
{
    struct later *l = arg;
    event_active(l->ev, EV_READ, 0);
}

static void get_job(struct gw_worker *w, struct evhttp_request *req, const char *id,
                    const char *rid, bool *async)
{
    struct evkeyvalq q;
    parse_query(req, &q);
    const char *wait = evhttp_find_header(&q, "wait");
    int64_t wait_ms = 0;
    if (wait && (parse_duration_ms(wait, &wait_ms) || wait_ms < 0)) {
        evhttp_clear_headers(&q);
        gw_reply_error(req, 400, "invalid_request",
                       "'wait' must be a number of seconds or a duration like \"30s\"");
        return;
    }
    evhttp_clear_headers(&q);
    if (wait_ms > WAIT_MAX_MS) wait_ms = WAIT_MAX_MS;
    struct later *l = wait_ms > 0 ? later_new(w, req, rid, wait_answer) : NULL;
    if (!l) {
        reply_job(w->gw, req, id);
        return;
    }
    *async = true;
    str_copy(l->job_id, id, sizeof(l->job_id));
    jobs_watch(w->gw->jobs, id, wait_ms, wait_fired, l);
}

static void cancel_job(struct gateway *gw, struct evhttp_request *req, const char *id)
{
    json_t *v = NULL;
    struct thaw_err err = {0};
    int rc = jobs_cancel(gw->jobs, id, &v, &err);
    if (rc)
        reply_err_status(req, rc, &err);
    else
        gw_reply_jsonv(req, 200, v);
}

static int query_int(struct evkeyvalq *q, const char *name, int dflt)
{
    const char *s = evhttp_find_header(q, name);
    return s ? atoi(s) : dflt;
}

static void list_jobs(struct gateway *gw, struct evhttp_request *req, const char *deployment,
                      const char *force_state)
{
    struct evkeyvalq q;
    parse_query(req, &q);
    const char *dep = deployment ? deployment : evhttp_find_header(&q, "deployment");
    const char *state = force_state ? force_state : evhttp_find_header(&q, "state");
    if (!gw_require_scope(req, SECURITY_SCOPE_READ) || !deployment_visible(gw, req, dep)) {
        evhttp_clear_headers(&q);
        return;
    }
    json_t *v = NULL;
    struct thaw_err err = {0};
    int rc = jobs_list(gw->jobs, dep, caller_tenant(), state, evhttp_find_header(&q, "after"),
                       query_int(&q, "limit", 100), &v, &err);
    evhttp_clear_headers(&q);
    if (rc)
        reply_err_status(req, rc, &err);
    else
        gw_reply_jsonv(req, 200, v);
}

static void method_not_allowed(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    gw_reply_error(req, 405, "method_not_allowed", "%s is not allowed here; use %s",
                   gw_method_name(evhttp_request_get_command(req)), allow);
}

bool gw_handle_jobs(struct gw_worker *w, struct evhttp_request *req, const char *name,
                    const char *rid)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (no_jobs(w->gw, req)) return false;
    if (cmd == EVHTTP_REQ_POST) {
        submit(w, req, name, rid);
        return true;
    }
    if (cmd == EVHTTP_REQ_GET)
        list_jobs(w->gw, req, name, NULL);
    else
        method_not_allowed(req, "GET, POST");
    return false;
}

/* ---- dead letters ---- */

static void reply_count(struct evhttp_request *req, const char *what, int rc, int n,
                        const struct thaw_err *err)
{
    if (rc)
        reply_err_status(req, rc, err);
    else
        gw_reply_jsonv(req, 200, json_pack("{s:i}", what, n));
}

static void dlq_webhooks(struct gateway *gw, struct evhttp_request *req, const char *rest)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct thaw_err err = {0};
    int n = 0;
    if (*rest == 0) {
        if (cmd == EVHTTP_REQ_GET) {
            struct evkeyvalq q;
            parse_query(req, &q);
            const char *st = evhttp_find_header(&q, "state");
            json_t *v = NULL;
            int rc = jobs_webhook_list(gw->jobs, st ? st : "dead", query_int(&q, "limit", 100), &v,
                                       &err);
            evhttp_clear_headers(&q);
            if (rc)
                reply_err_status(req, rc, &err);
            else
                gw_reply_jsonv(req, 200, v);
        } else if (cmd == EVHTTP_REQ_DELETE) {
            {
                int rc_ = jobs_webhook_purge(gw->jobs, 0, &n, &err);
                reply_count(req, "purged", rc_, n, &err);
            }
        } else {
            method_not_allowed(req, "GET, DELETE");
        }
        return;
    }
    if (strcmp(rest, "/replay") == 0) {
        if (cmd == EVHTTP_REQ_POST) {
            int rc_ = jobs_webhook_replay(gw->jobs, 0, &n, &err);
            reply_count(req, "replayed", rc_, n, &err);
        } else
            method_not_allowed(req, "POST");
        return;
    }
    char *end;
    long long id = strtoll(rest + 1, &end, 10);
    if (rest[0] != '/' || end == rest + 1 || id <= 0 || (*end && strcmp(end, "/replay"))) {
        gw_reply_error(req, 404, "not_found", "no such route");
        return;
    }
    if (*end) {
        if (cmd == EVHTTP_REQ_POST) {
            int rc_ = jobs_webhook_replay(gw->jobs, id, &n, &err);
            reply_count(req, "replayed", rc_, n, &err);
        } else
            method_not_allowed(req, "POST");
    } else if (cmd == EVHTTP_REQ_DELETE) {
        {
            int rc_ = jobs_webhook_purge(gw->jobs, id, &n, &err);
            reply_count(req, "purged", rc_, n, &err);
        }
    } else {
        method_not_allowed(req, "DELETE");
    }
}

static void dlq_all(struct gateway *gw, struct evhttp_request *req, bool replay)
{
    struct evkeyvalq q;
    parse_query(req, &q);
    struct thaw_err err = {0};
    int n = 0;
    const char *dep = evhttp_find_header(&q, "deployment");
    if (!deployment_visible(gw, req, dep)) {
        evhttp_clear_headers(&q);
        return;
    }
    /* A grantee empties only its own dead letters, never another tenant's. */
    int rc = replay ? jobs_dlq_replay(gw->jobs, NULL, dep, caller_tenant(), &n, &err)
                    : jobs_dlq_purge(gw->jobs, NULL, dep, caller_tenant(), &n, &err);
    evhttp_clear_headers(&q);
    reply_count(req, replay ? "replayed" : "purged", rc, n, &err);
}

static void dlq_one(struct gateway *gw, struct evhttp_request *req, const char *id,
                    const char *action)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct thaw_err err = {0};
    int n = 0;
    if (strcmp(action, "/replay") == 0) {
        if (cmd == EVHTTP_REQ_POST) {
            int rc_ = jobs_dlq_replay(gw->jobs, id, NULL, caller_tenant(), &n, &err);
            reply_count(req, "replayed", rc_, n, &err);
        } else
            method_not_allowed(req, "POST");
        return;
    }
    if (*action) {
        gw_reply_error(req, 404, "not_found", "no such route");
        return;
    }
    if (cmd == EVHTTP_REQ_DELETE) {
        {
            int rc_ = jobs_dlq_purge(gw->jobs, id, NULL, caller_tenant(), &n, &err);
            reply_count(req, "purged", rc_, n, &err);
        }
        return;
    }
    if (cmd != EVHTTP_REQ_GET) {
        method_not_allowed(req, "GET, DELETE");
        return;
    }
    json_t *v = NULL;
    int rc = jobs_get(gw->jobs, id, &v, &err);
    if (!rc && strcmp(json_string_value(json_object_get(v, "state")), "dead") != 0) {
        json_decref(v);
        gw_reply_error(req, 404, "not_found", "job '%s' is not in the dead-letter queue", id);
        return;
    }
    if (rc)
        reply_err_status(req, rc, &err);
    else
        gw_reply_jsonv(req, 200, v);
}

static void route_dlq(struct gateway *gw, struct evhttp_request *req, const char *rest)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (!gw_require_scope(req, SECURITY_SCOPE_DEPLOY)) return;
    if (*rest == 0) {
        if (cmd == EVHTTP_REQ_GET)
            list_jobs(gw, req, NULL, "dead");
        else if (cmd == EVHTTP_REQ_DELETE)
            dlq_all(gw, req, false);
        else
            method_not_allowed(req, "GET, DELETE");
    } else if (strcmp(rest, "/replay") == 0) {
        if (cmd == EVHTTP_REQ_POST)
            dlq_all(gw, req, true);
        else
            method_not_allowed(req, "POST");
    } else if (strncmp(rest, "/webhooks", 9) == 0 && (rest[9] == 0 || rest[9] == '/')) {
        if (gw_require_scope(req, SECURITY_SCOPE_ADMIN)) dlq_webhooks(gw, req, rest + 9);
    } else {
        char id[64];
        const char *slash = strchr(rest + 1, '/');
        size_t len = slash ? (size_t)(slash - rest - 1) : strlen(rest + 1);
        if (rest[0] != '/' || len >= sizeof(id)) {
            gw_reply_error(req, 404, "not_found", "no such route");
            return;
        }
        memcpy(id, rest + 1, len);
        id[len] = 0;
        if (!job_id_valid(id))
            gw_reply_error(req, 404, "not_found", "job '%s' not found", id);
        else if (job_visible(gw, req, id))
            dlq_one(gw, req, id, slash ? slash : "");
    }
}

bool gw_route_jobs(struct gw_worker *w, struct evhttp_request *req, const char *path,
                   const char *rid)
{
    struct gateway *gw = w->gw;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (no_jobs(gw, req)) return false;
    if (strncmp(path, "/v1/dlq", 7) == 0) {
        route_dlq(gw, req, path + 7);
        return false;
    }
    const char *rest = path + 8; /* after "/v1/jobs" */
    if (*rest == 0) {
        if (cmd == EVHTTP_REQ_GET)
            list_jobs(gw, req, NULL, NULL);
        else
            method_not_allowed(req, "GET");
        return false;
    }
    const char *id = rest + 1;
    if (!job_id_valid(id)) {
        gw_reply_error(req, 404, "not_found", "job '%s' not found", id);
        return false;
    }
    bool async = false;
    if (cmd == EVHTTP_REQ_GET) {
        if (gw_require_scope(req, SECURITY_SCOPE_READ) && job_visible(gw, req, id))
            get_job(w, req, id, rid, &async);
    } else if (cmd == EVHTTP_REQ_DELETE) {
        if (gw_require_scope(req, SECURITY_SCOPE_INVOKE) && job_visible(gw, req, id))
            cancel_job(gw, req, id);
    } else {
        method_not_allowed(req, "GET, DELETE");
    }
    return async;
}
