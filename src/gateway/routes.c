/* Routing and the native control API: health, readiness, metrics and
 * deployments. Invocations live in invoke.c. */
#include "gateway/gw_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREFIX "/v1/deployments"

const char *gw_method_name(enum evhttp_cmd_type cmd)
{
    switch (cmd) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    default:
        return "OTHER";
    }
}

static void method_not_allowed(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    gw_reply_error(req, 405, "method_not_allowed", "%s is not allowed here; use %s",
                   gw_method_name(evhttp_request_get_command(req)), allow);
}

/* Copies the request body; NULL with *len 0 for an empty one. */
static char *body_copy(struct evhttp_request *req, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    char *data = malloc(*len + 1);
    if (!data) return NULL;
    evbuffer_copyout(in, data, *len);
    data[*len] = 0;
    return data;
}

static void handle_metrics(struct evhttp_request *req)
{
    /* Metrics name every tenant's deployments: the platform's own keys only. */
    const struct access_principal *who = gw_principal();
    if (!gw_require_scope(req, SECURITY_SCOPE_READ)) return;
    if (strcmp(who->tenant, ACCESS_ROOT_TENANT) != 0) {
        gw_reply_error(req, 403, "forbidden", "metrics need a read key of the root tenant");
        return;
    }
    struct buf out = {0};
    obs_metrics_render(&out);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");

    struct evbuffer *b = evbuffer_new();
    if (b && out.data) evbuffer_add(b, out.data, out.len);
    evhttp_send_reply(req, 200, NULL, b);
    if (b) evbuffer_free(b);
    buf_free(&out);
}

/* A stored spec as its reader may see it: env values opened for the owner
 * and the platform admin, "(hidden)" for tenants that use it by a grant. */
static json_t *deployment_view(struct gateway *gw, const char *name, const char *spec_json,
                               const char *owner)
{
    json_t *spec = json_loads(spec_json, 0, NULL);
    if (!spec) return NULL;
    const struct access_principal *who = gw_principal();
    bool reveal = who && (who->platform_admin || !strcmp(who->tenant, owner));
    struct thaw_err err = {0};
    if (registry_env_open(&gw->sealer, spec, reveal, &err)) /* then all "(hidden)" */
        OBS_LOG(LOG_ERROR, "deployment_env_open_failed", LOG_S("deployment", name),
                LOG_S("error", err.msg));
    json_t *status = scale_status(gw->scale, name);
    json_object_set_new(spec, "status", status ? status : json_null());
    return spec;
}

/* How much traffic a deploy gives its version: ?traffic=N (0-100) or
 * ?promote=false (0); all of it by default. -2 when malformed. */
static int deploy_traffic_param(struct evhttp_request *req)
{
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq q;
    int pct = 100;
    if (!query || evhttp_parse_query_str(query, &q) != 0) return pct;
    const char *t = evhttp_find_header(&q, "traffic"), *p = evhttp_find_header(&q, "promote");
    if (t) {
        char *end;
        long v = strtol(t, &end, 10);
        pct = (*t && !*end && v >= 0 && v <= 100) ? (int)v : -2;
    } else if (p) {
        pct = !strcmp(p, "false") || !strcmp(p, "0") ? 0 : !strcmp(p, "true") ? 100 : -2;
    }
    evhttp_clear_headers(&q);
    return pct;
}

static void create_deployment(struct gateway *gw, struct evhttp_request *req)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_DEPLOY)) return;
    const struct access_principal *who = gw_principal();
    int pct = deploy_traffic_param(req);
    if (pct == -2) {
        gw_reply_error(req, 400, "invalid_request",
                       "query 'traffic' must be 0-100 and 'promote' true or false");
        return;
    }
    size_t len;
    char *body = body_copy(req, &len);
    if (!body) {
        gw_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    const char *ctype = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    struct deploy_spec *spec = NULL;
    struct thaw_err err = {0};
    if (registry_spec_parse(body, len, ctype && strstr(ctype, "yaml") ? ctype : NULL, &spec,
                            &err)) {
        free(body);
        gw_reply_error(req, 400, "invalid_manifest", "%s", err.msg);
        return;
    }
    free(body);
    struct gw_deployment prev;
    bool existed = gw_deployment_lookup(gw, spec->name, &prev);
    const char *owner = existed ? prev.owner : who->tenant;
    if (existed && strcmp(prev.owner, who->tenant) && !who->platform_admin) {
        /* Someone else's name: say no without saying whose. */
        gw_reply_error(req, 403, "forbidden", "deployment name '%s' is taken", spec->name);
        registry_spec_free(spec);
        return;
    }
    /* One transaction: the version (new, or the one with the same digest),
     * the deployment row and the traffic move. */
    struct registry_deploy_result dr;
    if (registry_deploy(gw->store, &gw->sealer, spec, owner, who->key_id, pct, &dr, &err)) {
        gw_reply_error(req, 500, "store_failed", "%s", err.msg);
        registry_spec_free(spec);
        return;
    }
    json_t *canon = registry_spec_to_json(spec);
    char name[DEPLOY_NAME_MAX + 1], owner_copy[ACCESS_NAME_MAX + 1];
    str_copy(name, spec->name, sizeof(name));
    str_copy(owner_copy, owner, sizeof(owner_copy));
    gw_deployment_known(gw, spec, owner_copy);
    gw_version_known(gw, spec, dr.version);
    scale_apply_version(gw->scale, spec, dr.version); /* takes ownership */
    scale_set_traffic(gw->scale, name, &dr.traffic, dr.rev);
    char vlabel[16];
    snprintf(vlabel, sizeof(vlabel), "v%d", dr.version);
    json_t *tj = registry_traffic_json(&dr.traffic);
    char *tdoc = tj ? json_dumps(tj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    struct buf details = {0};
    buf_printf(&details, "{\"version\":\"%s\",\"digest\":\"%s\",\"new_version\":%s,\"traffic\":%s}",
               vlabel, dr.digest, dr.created ? "true" : "false", tdoc ? tdoc : "null");
    access_audit(gw->access, who, dr.existed ? "deployment.update" : "deployment.create", name,
                 "ok", details.data);
    buf_free(&details);
    free(tdoc);
    if (canon) {
        json_object_set_new(canon, "version", json_string(vlabel));
        json_object_set_new(canon, "digest", json_string(dr.digest));
        json_object_set_new(canon, "new_version", json_boolean(dr.created));
        json_object_set(canon, "traffic", tj);
    }
    json_decref(tj);
    gw_reply_jsonv(req, dr.existed ? 200 : 201, canon);
}

/* GET /v1/usage[?tenant=T][&day=YYYY-MM-DD]: a tenant's usage for one UTC
 * day (today by default); other tenants' only for the platform admin. */
static void handle_usage(struct gateway *gw, struct evhttp_request *req)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_READ)) return;
    const struct access_principal *who = gw_principal();
    struct evkeyvalq q;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (evhttp_parse_query_str(query ? query : "", &q) != 0) {
        gw_reply_error(req, 400, "invalid_query", "the query string is malformed");
        return;
    }
    const char *tenant = evhttp_find_header(&q, "tenant");
    const char *day_s = evhttp_find_header(&q, "day");
    int64_t day = time_wall_ms() / 86400000;
    struct tm tm = {0};
    char *end = day_s ? strptime(day_s, "%Y-%m-%d", &tm) : NULL;
    if (day_s && (!end || *end)) {
        evhttp_clear_headers(&q);
        gw_reply_error(req, 400, "invalid_query", "'day' must be YYYY-MM-DD");
        return;
    }
    if (day_s) day = (int64_t)timegm(&tm) / 86400;
    if (!tenant) tenant = who->tenant;
    if (strcmp(tenant, who->tenant) != 0 && !who->platform_admin) {
        gw_reply_error(req, 403, "forbidden", "a key sees its own tenant's usage only");
    } else if (!access_tenant_exists(gw->access, tenant)) {
        gw_reply_error(req, 404, "not_found", "tenant '%s' not found", tenant);
    } else {
        json_t *v = NULL;
        struct thaw_err err = {0};
        if (access_usage_get(gw->access, tenant, day, &v, &err))
            gw_reply_error(req, 500, "internal", "%s", err.msg);
        else
            gw_reply_jsonv(req, 200, v);
    }
    evhttp_clear_headers(&q);
}

struct list_ctx {
    struct gateway *gw;
    json_t *rows; /* [[name, spec, owner], ...] */
};

/* Only collects: opening env values may read a data key from the store,
 * which holds its lock during its own listing. */
static int list_cb(void *arg, const char *name, const char *spec_json, const char *owner)
{
    struct list_ctx *c = arg;
    if (!access_can_use(c->gw->access, gw_principal(), name, owner)) return 0;
    json_array_append_new(c->rows, json_pack("[s, s, s]", name, spec_json, owner ? owner : ""));
    return 0;
}

static void list_deployments(struct gateway *gw, struct evhttp_request *req)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_READ)) return;
    struct list_ctx c = {gw, json_array()};
    struct thaw_err err = {0};
    if (!c.rows || store_deployment_list(gw->store, list_cb, &c, &err)) {
        json_decref(c.rows);
        gw_reply_error(req, 500, "store_failed", "%s", c.rows ? err.msg : "out of memory");
        return;
    }
    json_t *arr = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(c.rows, i, row)
    {
        json_t *v = deployment_view(gw, json_string_value(json_array_get(row, 0)),
                                    json_string_value(json_array_get(row, 1)),
                                    json_string_value(json_array_get(row, 2)));
        if (v) json_array_append_new(arr, v);
    }
    json_decref(c.rows);
    gw_reply_jsonv(req, 200, json_pack("{s:o}", "deployments", arr));
}

static void get_deployment(struct gateway *gw, struct evhttp_request *req, const char *name)
{
    struct gw_deployment dep;
    if (!gw_require_scope(req, SECURITY_SCOPE_READ) || !gw_usable_deployment(gw, req, name, &dep))
        return;
    char *spec = NULL;
    struct thaw_err err = {0};
    int rc = store_deployment_get(gw->store, name, &spec, &err);
    if (rc == THAW_ENOTFOUND) {
        gw_reply_error(req, 404, "not_found", "deployment '%s' not found", name);
        return;
    }
    if (rc) {
        gw_reply_error(req, 500, "store_failed", "%s", err.msg);
        return;
    }
    json_t *v = deployment_view(gw, name, spec, dep.owner);
    free(spec);
    if (v) {
        json_object_set_new(v, "owner", json_string(dep.owner));
        json_object_set_new(v, "grants", access_grant_list(gw->access, name));
        struct registry_traffic t;
        int64_t rev;
        struct thaw_err terr = {0};
        if (registry_traffic_load(gw->store, name, &t, &rev, &terr) == 0)
            json_object_set_new(v, "traffic", registry_traffic_json(&t));
    }
    gw_reply_jsonv(req, 200, v);
}

static void delete_deployment(struct gateway *gw, struct evhttp_request *req, const char *name)
{
    struct gw_deployment dep;
    const struct access_principal *who = gw_principal();
    if (!gw_require_scope(req, SECURITY_SCOPE_DEPLOY) || !gw_usable_deployment(gw, req, name, &dep))
        return;
    if (strcmp(dep.owner, who->tenant) && !who->platform_admin) {
        gw_reply_error(req, 403, "forbidden", "only the owner may delete deployment '%s'", name);
        return;
    }
    struct thaw_err err = {0};
    int rc = store_deployment_delete(gw->store, name, &err);
    if (rc == THAW_ENOTFOUND) {
        gw_reply_error(req, 404, "not_found", "deployment '%s' not found", name);
        return;
    }
    if (rc) {
        gw_reply_error(req, 500, "store_failed", "%s", err.msg);
        return;
    }
    gw_deployment_forget(gw, name);
    access_grants_forget(gw->access, name);
    scale_remove(gw->scale, name);
    access_audit(gw->access, who, "deployment.delete", name, "ok", NULL);
    gw_reply_jsonv(req, 200, json_pack("{s:s, s:b}", "name", name, "deleted", 1));
}

/* Splits "/v1/deployments/NAME[/ACTION]"; returns false for other paths. */
static bool split_deployment_path(const char *path, char *name, size_t n, const char **action)
{
    if (strncmp(path, PREFIX "/", sizeof(PREFIX)) != 0) return false;
    const char *p = path + sizeof(PREFIX);
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    if (len == 0 || len >= n) return false;
    memcpy(name, p, len);
    name[len] = 0;
    *action = slash ? slash + 1 : "";
    return true;
}

static bool route_deployment(struct gateway *gw, struct gw_worker *w, struct evhttp_request *req,
                             const char *path, const char *rid, struct gw_auth *auth)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char name[DEPLOY_NAME_MAX + 2];
    const char *action;
    if (!split_deployment_path(path, name, sizeof(name), &action) || !registry_name_valid(name)) {
        gw_reply_error(req, 404, "not_found", "no such route: %s", path);
        return false;
    }
    if (strcmp(action, "") == 0) {
        if (cmd == EVHTTP_REQ_GET)
            get_deployment(gw, req, name);
        else if (cmd == EVHTTP_REQ_DELETE)
            delete_deployment(gw, req, name);
        else
            method_not_allowed(req, "GET, DELETE");
    } else if (strcmp(action, "invoke") == 0) {
        if (cmd == EVHTTP_REQ_POST) return gw_handle_invoke(w, req, name, rid, auth);
        method_not_allowed(req, "POST");
    } else if (strcmp(action, "jobs") == 0) { /* jobs: jobs_routes.c */
        gw_handle_jobs(w, req, name, rid);
    } else if (strcmp(action, "grants") == 0 || strncmp(action, "grants/", 7) == 0) {
        gw_route_grants(w, req, name, action + 6);
    } else if (gw_route_versions(w, req, name, action)) {
        /* versions, traffic, promote, rollback, canary: version_routes.c */
    } else {
        gw_reply_error(req, 404, "not_found", "no such route: %s", path);
    }
    return false;
}

/* v in decimal into out (at least 11 bytes); the rate-limit headers go on
 * every limited request, and snprintf showed in their cost. */
static const char *u32_text(char *out, uint32_t v)
{
    char *p = out + 11;
    *p = 0;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

/* 401 for a missing or bad key, 429 past a limit; true when the request may
 * go on (then auth->adm must be released once it is answered). */
static bool authenticate_and_admit(struct gateway *gw, struct evhttp_request *req,
                                   struct gw_auth *auth)
{
    memset(auth, 0, sizeof(*auth));
    if (gw->cfg.no_auth) {
        /* security: off (loopback only, logged at start): the cost of the
         * checks below is what the security benchmark measures. */
        str_copy(auth->who.key_id, "insecure", sizeof(auth->who.key_id));
        str_copy(auth->who.tenant, "root", sizeof(auth->who.tenant));
        auth->who.scopes = security_scopes_effective(SECURITY_SCOPE_ADMIN);
        auth->who.platform_admin = true;
        auth->adm.allowed = true;
        return true;
    }
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *hdr = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    struct thaw_err err = {0};
    if (access_authenticate(gw->access, hdr, &auth->who, &err)) {
        evhttp_add_header(out, "WWW-Authenticate", "Bearer");
        gw_reply_error(req, 401, "unauthorized", "%s", err.msg);
        return false;
    }
    access_admit(gw->access, &auth->who, &auth->adm);
    char v[24];
    /* Each header costs libevent an allocation, scans and a printf: the
     * three took more than the checks themselves. A 429 always carries
     * them; a request that passes only once the tighter bucket is half
     * spent, when a client has a reason to slow down. */
    if (auth->adm.has_rate &&
        (!auth->adm.allowed || (uint64_t)auth->adm.remaining * 2 < auth->adm.limit)) {
        evhttp_add_header(out, "x-ratelimit-limit", u32_text(v, auth->adm.limit));
        evhttp_add_header(out, "x-ratelimit-remaining", u32_text(v, auth->adm.remaining));
        evhttp_add_header(out, "x-ratelimit-reset", u32_text(v, auth->adm.reset_s));
    }
    if (auth->adm.allowed) return true;
    snprintf(v, sizeof(v), "%u", auth->adm.retry_after_s ? auth->adm.retry_after_s : 1);
    evhttp_add_header(out, "Retry-After", v);
    gw_reply_error(req, 429, "rate_limited", "too many requests for this key or tenant (%s limit)",
                   auth->adm.reason);
    return false;
}

void gw_route(struct evhttp_request *req, void *arg)
{
    struct gw_worker *w = arg;
    struct gateway *gw = w->gw;
    gw_set_current_worker(w);
    uint64_t t0 = time_now_ns();
    char rid[65], logpath[128];
    gw_request_id(req, rid);
    const char *method = gw_method_name(evhttp_request_get_command(req));
    if (atomic_load(&gw->draining))
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    if (!path) path = "/";
    str_copy(logpath, path, sizeof(logpath));
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    w->last_status = 200;

    if (strcmp(path, "/healthz") == 0) {
        if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)
            gw_reply_json(req, 200, "{\"status\":\"ok\"}", 15);
        else
            method_not_allowed(req, "GET");
        goto out;
    }
    if (strcmp(path, "/readyz") == 0) {
        if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)
            method_not_allowed(req, "GET");
        else if (atomic_load(&gw->ready) && !atomic_load(&gw->draining))
            gw_reply_json(req, 200, "{\"status\":\"ready\"}", 18);
        else
            gw_reply_error(req, 503, "not_ready", "the node is %s",
                           atomic_load(&gw->draining) ? "draining" : "starting");
        goto out;
    }
    /* Everything else needs a key, and passes the key's and tenant's limits. */
    struct gw_auth auth;
    if (!authenticate_and_admit(gw, req, &auth)) goto out;
    gw_set_principal(&auth.who);
    bool taken = false; /* an invocation took over the admission */
    enum gw_api api;
    if (strcmp(path, "/v1/deployments") == 0 || strncmp(path, PREFIX "/", sizeof(PREFIX)) == 0) {
        if (strcmp(path, PREFIX) == 0) {
            if (cmd == EVHTTP_REQ_GET)
                list_deployments(gw, req);
            else if (cmd == EVHTTP_REQ_POST)
                create_deployment(gw, req);
            else
                method_not_allowed(req, "GET, POST");
        } else {
            taken = route_deployment(gw, w, req, path, rid, &auth);
            if ((strstr(logpath, "/invoke") || strstr(logpath, "/jobs")) &&
                cmd == EVHTTP_REQ_POST) {
                /* invoke and jobs log themselves */
                gw_set_principal(NULL);
                if (!taken) access_release(gw->access, &auth.who, &auth.adm);
                return;
            }
        }
    } else if ((strncmp(path, "/v1/jobs", 8) == 0 && (path[8] == 0 || path[8] == '/')) ||
               (strncmp(path, "/v1/dlq", 7) == 0 && (path[7] == 0 || path[7] == '/'))) {
        if (gw_route_jobs(w, req, path, rid)) { /* jobs: jobs_routes.c */
            gw_set_principal(NULL);
            access_release(gw->access, &auth.who, &auth.adm);
            return;
        }
    } else if (gw_is_openai_post(path, &api)) { /* openai.c; logs itself */
        taken = gw_handle_openai(w, req, api, rid, &auth);
        gw_set_principal(NULL);
        if (!taken) access_release(gw->access, &auth.who, &auth.adm);
        return;
    } else if (gw_route_models(w, req, path)) {
        /* GET /v1/models: openai.c */
    } else if (strncmp(path, "/v1/artifacts", 13) == 0 && (path[13] == 0 || path[13] == '/')) {
        gw_route_artifacts(w, req, path); /* artifact_routes.c */
    } else if (gw_route_admin(w, req, path)) {
        /* tenants, keys, audit: admin_routes.c */
    } else if (strcmp(path, "/v1/usage") == 0) {
        if (cmd == EVHTTP_REQ_GET)
            handle_usage(gw, req);
        else
            method_not_allowed(req, "GET");
    } else if (strcmp(path, "/metrics") == 0) {
        if (cmd == EVHTTP_REQ_GET)
            handle_metrics(req);
        else
            method_not_allowed(req, "GET");
    } else {
        gw_reply_error(req, 404, "not_found", "no such route: %s", path);
    }
    gw_set_principal(NULL);
    if (!taken) access_release(gw->access, &auth.who, &auth.adm);
out:
    gw_request_done(w, method, logpath, NULL, w->last_status, t0, rid, NULL);
}
