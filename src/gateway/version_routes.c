/* Versions and traffic over them: the history view, weights, promote,
 * rollback, shadow copies and canary analysis. Every change is one
 * compare-and-set write of the deployment's traffic document (so two
 * concurrent changes cannot lose one), then takes effect on the scale
 * thread for the next request, and is audited. */
#include "gateway/gw_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *vname(int v)
{
    char s[16];
    snprintf(s, sizeof(s), "v%d", v);
    return json_string(s);
}

/* ---- GET versions: the history ---- */

static int versions_cb(void *ctx, const char *deployment, const struct store_version *v)
{
    (void)deployment;
    json_t *doc = v->spec_json ? json_loads(v->spec_json, 0, NULL) : NULL;
    json_t *arts = json_object_get(doc, "artifacts");
    json_array_append_new(ctx, json_pack("{s:o, s:s, s:s, s:I, s:O}", "version", vname(v->n),
                                         "digest", v->digest, "deployed_by", v->actor, "created_ms",
                                         (json_int_t)v->created_ms, "artifacts",
                                         arts ? arts : json_array()));
    json_decref(doc);
    return 0;
}

static int history_cb(void *ctx, const struct store_traffic_entry *e)
{
    json_t *t = json_loads(e->traffic, 0, NULL);
    json_array_append_new(ctx, json_pack("{s:I, s:I, s:s, s:s, s:o}", "rev", (json_int_t)e->rev,
                                         "time_ms", (json_int_t)e->time_ms, "actor", e->actor,
                                         "reason", e->reason, "traffic", t ? t : json_null()));
    return 0;
}

static void get_versions(struct gateway *gw, struct evhttp_request *req, const char *name)
{
    int64_t window_ms = 300000;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq q;
    if (query && evhttp_parse_query_str(query, &q) == 0) {
        const char *wnd = evhttp_find_header(&q, "window");
        if (wnd && (parse_duration_ms(wnd, &window_ms) || window_ms <= 0)) {
            evhttp_clear_headers(&q);
            gw_reply_error(req, 400, "invalid_request", "query 'window' must be a duration");
            return;
        }
        evhttp_clear_headers(&q);
    }
    json_t *versions = json_array(), *history = json_array();
    struct thaw_err err = {0};
    struct registry_traffic t;
    int64_t rev = 0;
    int rc = store_version_list(gw->store, name, true, versions_cb, versions, &err);
    if (!rc) rc = store_traffic_log(gw->store, name, history_cb, history, &err);
    if (!rc) rc = registry_traffic_load(gw->store, name, &t, &rev, &err);
    if (rc) {
        json_decref(versions);
        json_decref(history);
        gw_reply_error(req, rc == THAW_ENOTFOUND ? 404 : 500,
                       rc == THAW_ENOTFOUND ? "not_found" : "store_failed", "%s", err.msg);
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(versions, i, v)
    {
        int n = registry_version_parse(json_string_value(json_object_get(v, "version")));
        json_object_set_new(v, "traffic", json_integer(registry_traffic_weight(&t, n)));
    }
    json_t *stats = scale_version_stats(gw->scale, name, window_ms);
    gw_reply_jsonv(req, 200,
                   json_pack("{s:s, s:o, s:o, s:I, s:o, s:o, s:I}", "deployment", name, "versions",
                             versions, "traffic", registry_traffic_json(&t), "rev", (json_int_t)rev,
                             "history", history, "stats", stats ? stats : json_object(),
                             "stats_window_ms", (json_int_t)window_ms));
}

/* ---- changes ---- */

/* Builds the next traffic from the current one; returns 0 or an error
 * (err says why, in the caller's words). */
typedef int (*traffic_edit_fn)(struct gateway *gw, const char *name, json_t *body,
                               struct registry_traffic *t, struct thaw_err *err);

static int version_exists(struct gateway *gw, const char *name, int v, struct thaw_err *err)
{
    int rc = store_version_get(gw->store, name, v, NULL, NULL, err);
    if (rc == THAW_ENOTFOUND)
        return thaw_errf(err, THAW_ENOTFOUND, "deployment '%s' has no version v%d", name, v);
    return rc;
}

static int parse_version_value(json_t *v, const char *field, int *out, struct thaw_err *err)
{
    *out = json_is_string(v) ? registry_version_parse(json_string_value(v))
           : json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < 1000000000
               ? (int)json_integer_value(v)
               : 0;
    return *out ? 0
                : thaw_errf(err, THAW_EINVAL, "field '%s' must name a version like \"v3\"", field);
}

static int edit_shadow(struct gateway *gw, const char *name, json_t *sh, struct registry_traffic *t,
                       struct thaw_err *err)
{
    if (json_is_null(sh)) {
        t->shadow_version = 0;
        t->shadow_percent = 0;
        return 0;
    }
    if (!json_is_object(sh))
        return thaw_errf(err, THAW_EINVAL,
                         "field 'shadow' must be {\"version\":\"vN\",\"percent\":P} or null");
    int v;
    int rc = parse_version_value(json_object_get(sh, "version"), "shadow.version", &v, err);
    if (rc) return rc;
    json_t *p = json_object_get(sh, "percent");
    double pct = p ? json_number_value(p) : 100;
    if (p && !json_is_number(p)) pct = -1;
    if (!(pct > 0 && pct <= 100))
        return thaw_errf(err, THAW_EINVAL,
                         "field 'shadow.percent' must be more than 0, at most 100");
    if ((rc = version_exists(gw, name, v, err))) return rc;
    t->shadow_version = v;
    t->shadow_percent = pct;
    return 0;
}

static int edit_weights(struct gateway *gw, const char *name, json_t *body,
                        struct registry_traffic *t, struct thaw_err *err)
{
    json_t *w = json_object_get(body, "weights"), *sh = json_object_get(body, "shadow");
    const char *k;
    json_t *v;
    json_object_foreach(
        body, k,
        v) if (strcmp(k, "weights") &&
               strcmp(k, "shadow")) return thaw_errf(err, THAW_EINVAL,
                                                     "unknown field '%s' (known: weights, shadow)",
                                                     k);
    if (!w && !sh) return thaw_errf(err, THAW_EINVAL, "give 'weights', 'shadow' or both");
    if (w) {
        if (!json_is_object(w) || json_object_size(w) == 0 ||
            json_object_size(w) > REGISTRY_SPLIT_MAX)
            return thaw_errf(err, THAW_EINVAL,
                             "field 'weights' must map 1-%d versions to percentages, e.g. "
                             "{\"v3\":90,\"v4\":10}",
                             REGISTRY_SPLIT_MAX);
        struct registry_traffic nt = *t;
        nt.n = 0;
        int sum = 0;
        json_object_foreach(w, k, v)
        {
            int n = registry_version_parse(k);
            if (!n) return thaw_errf(err, THAW_EINVAL, "'%s' is not a version like v3", k);
            for (int i = 0; i < nt.n; i++) /* "v3" and "3" are one version */
                if (nt.w[i].version == n)
                    return thaw_errf(err, THAW_EINVAL, "version v%d is named twice", n);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100)
                return thaw_errf(err, THAW_EINVAL, "weight of %s must be an integer 0-100", k);
            int rc = version_exists(gw, name, n, err);
            if (rc) return rc;
            sum += (int)json_integer_value(v);
            if (json_integer_value(v) == 0) continue;
            nt.w[nt.n].version = n;
            nt.w[nt.n].weight = (int)json_integer_value(v);
            nt.n++;
        }
        if (sum != 100)
            return thaw_errf(err, THAW_EINVAL, "weights must add up to 100 (they add up to %d)",
                             sum);
        /* Normalised through set so the document has one canonical form. */
        struct registry_traffic sorted = nt;
        sorted.n = 0;
        for (int i = 0; i < nt.n; i++)
            sorted.w[sorted.n++] = nt.w[i];
        for (int i = 0; i < sorted.n; i++)
            for (int j = i + 1; j < sorted.n; j++)
                if (sorted.w[j].version < sorted.w[i].version) {
                    int tv = sorted.w[i].version, tw = sorted.w[i].weight;
                    sorted.w[i] = sorted.w[j];
                    sorted.w[j].version = tv;
                    sorted.w[j].weight = tw;
                }
        *t = sorted;
        /* Weights set by hand end an automatic analysis. */
        memset(&t->canary, 0, sizeof(t->canary));
    }
    return sh ? edit_shadow(gw, name, sh, t, err) : 0;
}

static int edit_promote(struct gateway *gw, const char *name, json_t *body,
                        struct registry_traffic *t, struct thaw_err *err)
{
    int v;
    int rc = parse_version_value(json_object_get(body, "version"), "version", &v, err);
    if (!rc) rc = version_exists(gw, name, v, err);
    if (rc) return rc;
    t->n = 0;
    registry_traffic_set(t, v, 100);
    memset(&t->canary, 0, sizeof(t->canary));
    if (t->shadow_version == v) t->shadow_version = 0, t->shadow_percent = 0;
    return 0;
}

static int edit_rollback(struct gateway *gw, const char *name, json_t *body,
                         struct registry_traffic *t, struct thaw_err *err)
{
    (void)body;
    int v = registry_rollback_target(gw->store, name, t, err);
    if (!v) return err->code ? err->code : THAW_ESTATE;
    t->n = 0;
    registry_traffic_set(t, v, 100);
    memset(&t->canary, 0, sizeof(t->canary));
    if (t->shadow_version == v) t->shadow_version = 0, t->shadow_percent = 0;
    return 0;
}

static int get_steps(json_t *a, struct registry_canary *c, struct thaw_err *err)
{
    if (!a) {
        static const int def[] = {10, 25, 50, 100};
        c->n_steps = (int)ARRAY_LEN(def);
        memcpy(c->steps, def, sizeof(def));
        return 0;
    }
    if (!json_is_array(a) || json_array_size(a) == 0 ||
        json_array_size(a) > REGISTRY_CANARY_STEPS_MAX)
        return thaw_errf(err, THAW_EINVAL, "field 'steps' must be 1-%d percentages",
                         REGISTRY_CANARY_STEPS_MAX);
    size_t i;
    json_t *v;
    int prev = 0;
    json_array_foreach(a, i, v)
    {
        int s = json_is_integer(v) ? (int)json_integer_value(v) : -1;
        if (s <= prev || s > 100)
            return thaw_errf(err, THAW_EINVAL,
                             "field 'steps' must rise strictly, each 1-100 (step %zu)", i);
        c->steps[c->n_steps++] = prev = s;
    }
    if (prev != 100) return thaw_errf(err, THAW_EINVAL, "field 'steps' must end at 100");
    return 0;
}

static int get_ms(json_t *body, const char *key, int64_t def, int64_t *out, struct thaw_err *err)
{
    json_t *v = json_object_get(body, key);
    *out = def;
    if (!v) return 0;
    if (json_is_string(v) && parse_duration_ms(json_string_value(v), out) == 0 && *out >= 100)
        return 0;
    if (json_is_number(v) && json_number_value(v) >= 0.1 && json_number_value(v) < 1e7) {
        *out = (int64_t)llround(json_number_value(v) * 1000);
        return 0;
    }
    return thaw_errf(err, THAW_EINVAL, "field '%s' must be a duration of at least 100ms", key);
}

static int edit_canary(struct gateway *gw, const char *name, json_t *body,
                       struct registry_traffic *t, struct thaw_err *err)
{
    static const char *const allowed[] = {"version",       "baseline",     "steps",
                                          "interval",      "window",       "max_error_rate",
                                          "max_p95_ratio", "min_requests", NULL};
    const char *k;
    json_t *val;
    json_object_foreach(body, k, val)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = !strcmp(*a, k);
        if (!ok) return thaw_errf(err, THAW_EINVAL, "unknown field '%s'", k);
    }
    struct registry_canary c = {0};
    int rc = parse_version_value(json_object_get(body, "version"), "version", &c.version, err);
    if (!rc) rc = version_exists(gw, name, c.version, err);
    if (rc) return rc;
    json_t *b = json_object_get(body, "baseline");
    if (b) {
        rc = parse_version_value(b, "baseline", &c.baseline, err);
        if (!rc) rc = version_exists(gw, name, c.baseline, err);
        if (rc) return rc;
    } else {
        /* The stable version: the one with the most traffic that is not the canary. */
        int best = 0;
        for (int i = 0; i < t->n; i++)
            if (t->w[i].version != c.version && t->w[i].weight > best) {
                best = t->w[i].weight;
                c.baseline = t->w[i].version;
            }
        if (!c.baseline)
            return thaw_errf(err, THAW_ESTATE,
                             "no stable version has traffic to compare v%d with; name a "
                             "'baseline'",
                             c.version);
    }
    if (c.baseline == c.version)
        return thaw_errf(err, THAW_EINVAL, "the canary and its baseline must differ");
    if ((rc = get_steps(json_object_get(body, "steps"), &c, err))) return rc;
    if ((rc = get_ms(body, "interval", 60000, &c.interval_ms, err))) return rc;
    if ((rc = get_ms(body, "window", c.interval_ms, &c.window_ms, err))) return rc;
    json_t *mer = json_object_get(body, "max_error_rate"),
           *mpr = json_object_get(body, "max_p95_ratio"),
           *mr = json_object_get(body, "min_requests");
    c.max_error_rate = mer ? json_number_value(mer) : 0.01;
    c.max_p95_ratio = mpr ? json_number_value(mpr) : 2.0;
    c.min_requests = mr ? (int)json_integer_value(mr) : 20;
    if ((mer && !json_is_number(mer)) || c.max_error_rate < 0 || c.max_error_rate > 1)
        return thaw_errf(err, THAW_EINVAL, "field 'max_error_rate' must be 0-1");
    if ((mpr && !json_is_number(mpr)) || c.max_p95_ratio < 0)
        return thaw_errf(err, THAW_EINVAL, "field 'max_p95_ratio' must be 0 (off) or more");
    if ((mr && !json_is_integer(mr)) || c.min_requests < 1 || c.min_requests > 1000)
        return thaw_errf(err, THAW_EINVAL, "field 'min_requests' must be 1-%d", 1000);
    str_copy(c.state, "running", sizeof(c.state));
    t->n = 0;
    registry_traffic_set(t, c.baseline, 100);
    registry_traffic_set(t, c.version, c.steps[0]);
    if (c.steps[0] >= 100) str_copy(c.state, "promoted", sizeof(c.state));
    t->canary = c;
    return 0;
}

static int edit_canary_stop(struct gateway *gw, const char *name, json_t *body,
                            struct registry_traffic *t, struct thaw_err *err)
{
    (void)gw;
    (void)body;
    if (!t->canary.version || strcmp(t->canary.state, "running") != 0)
        return thaw_errf(err, THAW_ESTATE, "deployment '%s' has no canary analysis running", name);
    str_copy(t->canary.state, "stopped", sizeof(t->canary.state));
    return 0;
}

static void change_traffic(struct gateway *gw, struct evhttp_request *req, const char *name,
                           const char *action, const char *reason, traffic_edit_fn edit,
                           bool has_body)
{
    const struct access_principal *who = gw_principal();
    json_t *body = has_body ? gw_json_body(req) : json_object();
    if (!body) return;
    struct thaw_err err = {0};
    struct registry_traffic t;
    int64_t rev = 0;
    int rc = 0;
    /* Read, edit, compare-and-set: a concurrent change (another call, a
     * canary decision) makes the write fail, and the edit is redone on
     * what it wrote. */
    for (int attempt = 0; attempt < 5; attempt++) {
        rc = registry_traffic_load(gw->store, name, &t, &rev, &err);
        if (!rc) rc = edit(gw, name, body, &t, &err);
        char *doc = rc ? NULL : registry_traffic_dump(&t);
        if (!rc && !doc) rc = thaw_errf(&err, THAW_ENOMEM, "out of memory");
        int64_t new_rev = 0;
        if (!rc)
            rc = store_traffic_put(gw->store, name, doc, rev, who->key_id, reason, &new_rev, &err);
        if (!rc) {
            scale_set_traffic(gw->scale, name, &t, new_rev);
            access_audit(gw->access, who, action, name, "ok", doc);
            free(doc);
            rev = new_rev;
            break;
        }
        free(doc);
        if (rc != THAW_ECONFLICT) break;
    }
    json_decref(body);
    if (rc) {
        access_audit(gw->access, who, action, name, gw_code_for(rc), NULL);
        gw_reply_error(req, gw_status_for(rc), gw_code_for(rc), "%s", err.msg);
        return;
    }
    gw_reply_jsonv(req, 200,
                   json_pack("{s:s, s:o, s:I}", "deployment", name, "traffic",
                             registry_traffic_json(&t), "rev", (json_int_t)rev));
}

bool gw_route_versions(struct gw_worker *w, struct evhttp_request *req, const char *name,
                       const char *action)
{
    struct gateway *gw = w->gw;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    bool is_get = cmd == EVHTTP_REQ_GET;
    static const char *const known[] = {"versions", "traffic", "promote",
                                        "rollback", "canary",  NULL};
    bool found = false;
    for (const char *const *k = known; *k && !found; k++)
        found = !strcmp(action, *k);
    if (!found) return false;
    struct gw_deployment dep;
    if (!gw_require_scope(req, is_get ? SECURITY_SCOPE_READ : SECURITY_SCOPE_DEPLOY) ||
        !gw_usable_deployment(gw, req, name, &dep))
        return true;
    const struct access_principal *who = gw_principal();
    if (!is_get && strcmp(dep.owner, who->tenant) && !who->platform_admin) {
        gw_reply_error(req, 403, "forbidden", "only the owner may change the traffic of '%s'",
                       name);
        return true;
    }
    if (!strcmp(action, "versions") && is_get) {
        get_versions(gw, req, name);
    } else if (!strcmp(action, "traffic") && is_get) {
        struct registry_traffic t;
        int64_t rev;
        struct thaw_err err = {0};
        int rc = registry_traffic_load(gw->store, name, &t, &rev, &err);
        if (rc)
            gw_reply_error(req, gw_status_for(rc), gw_code_for(rc), "%s", err.msg);
        else
            gw_reply_jsonv(req, 200,
                           json_pack("{s:s, s:o, s:I}", "deployment", name, "traffic",
                                     registry_traffic_json(&t), "rev", (json_int_t)rev));
    } else if (!strcmp(action, "traffic") && (cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_PUT)) {
        change_traffic(gw, req, name, "traffic.set", "traffic", edit_weights, true);
    } else if (!strcmp(action, "promote") && cmd == EVHTTP_REQ_POST) {
        change_traffic(gw, req, name, "traffic.promote", "promote", edit_promote, true);
    } else if (!strcmp(action, "rollback") && cmd == EVHTTP_REQ_POST) {
        change_traffic(gw, req, name, "traffic.rollback", "rollback", edit_rollback, false);
    } else if (!strcmp(action, "canary") && cmd == EVHTTP_REQ_POST) {
        change_traffic(gw, req, name, "traffic.canary_start", "canary start", edit_canary, true);
    } else if (!strcmp(action, "canary") && cmd == EVHTTP_REQ_DELETE) {
        change_traffic(gw, req, name, "traffic.canary_stop", "canary stop", edit_canary_stop,
                       false);
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          !strcmp(action, "versions")  ? "GET"
                          : !strcmp(action, "traffic") ? "GET, POST"
                          : !strcmp(action, "canary")  ? "POST, DELETE"
                                                       : "POST");
        gw_reply_error(req, 405, "method_not_allowed", "method not allowed on %s", action);
    }
    return true;
}
