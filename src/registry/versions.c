/* Versions and traffic: the immutable version document of a spec and its
 * digest, the traffic document (weights over versions, shadow, canary) and
 * the deploy that records a version and moves traffic in one store
 * transaction. The scale thread routes by these documents; this file only
 * gives them a form. */
#include "registry/registry.h"

#include "store/store.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

int registry_version_parse(const char *s)
{
    if (!s) return 0;
    if (*s == 'v' || *s == 'V') s++;
    if (*s < '1' || *s > '9') return 0;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        v = v * 10 + (*s - '0');
        if (v > 1000000000) return 0;
    }
    return (int)v;
}

/* ---- the traffic document ---- */

int registry_traffic_weight(const struct registry_traffic *t, int v)
{
    for (int i = 0; i < t->n; i++)
        if (t->w[i].version == v) return t->w[i].weight;
    return 0;
}

int registry_traffic_full(const struct registry_traffic *t)
{
    for (int i = 0; i < t->n; i++)
        if (t->w[i].weight == 100) return t->w[i].version;
    return 0;
}

static int cmp_weight(const void *a, const void *b)
{
    const int *x = a, *y = b; /* {version, weight} pairs */
    return x[0] - y[0];
}

void registry_traffic_set(struct registry_traffic *t, int v, int w)
{
    /* Drop v, then scale what is left to 100 - w with largest remainders,
     * so shares keep their proportions and the sum is exactly 100. */
    int n = 0, sum = 0;
    for (int i = 0; i < t->n; i++) {
        if (t->w[i].version == v || t->w[i].weight <= 0) continue;
        t->w[n++] = t->w[i];
        sum += t->w[i].weight;
    }
    int rest = 100 - w;
    if (sum == 0 || rest <= 0) {
        n = 0;
        rest = 0;
        w = 100;
    }
    double rem[REGISTRY_SPLIT_MAX];
    int given = 0;
    for (int i = 0; i < n; i++) {
        double exact = (double)t->w[i].weight * rest / sum;
        t->w[i].weight = (int)floor(exact);
        rem[i] = exact - t->w[i].weight;
        given += t->w[i].weight;
    }
    while (given < rest && n > 0) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (rem[i] > rem[best]) best = i;
        t->w[best].weight++;
        rem[best] = -1;
        given++;
    }
    int m = 0;
    for (int i = 0; i < n; i++)
        if (t->w[i].weight > 0) t->w[m++] = t->w[i];
    if (w > 0 && m < REGISTRY_SPLIT_MAX) {
        t->w[m].version = v;
        t->w[m].weight = w;
        m++;
    }
    t->n = m;
    qsort(t->w, (size_t)t->n, sizeof(t->w[0]), cmp_weight);
}

static json_t *vname(int v)
{
    char s[16];
    snprintf(s, sizeof(s), "v%d", v);
    return json_string(s);
}

json_t *registry_traffic_json(const struct registry_traffic *t)
{
    json_t *w = json_object();
    for (int i = 0; i < t->n; i++) {
        char k[16];
        snprintf(k, sizeof(k), "v%d", t->w[i].version);
        json_object_set_new(w, k, json_integer(t->w[i].weight));
    }
    json_t *o = json_pack("{s:o}", "weights", w);
    if (t->shadow_version)
        json_object_set_new(o, "shadow",
                            json_pack("{s:o, s:f}", "version", vname(t->shadow_version), "percent",
                                      t->shadow_percent));
    const struct registry_canary *c = &t->canary;
    if (c->version) {
        json_t *steps = json_array();
        for (int i = 0; i < c->n_steps; i++)
            json_array_append_new(steps, json_integer(c->steps[i]));
        json_object_set_new(o, "canary",
                            json_pack("{s:o, s:o, s:o, s:i, s:I, s:I, s:f, s:f, s:i, s:s}",
                                      "version", vname(c->version), "baseline", vname(c->baseline),
                                      "steps", steps, "step", c->step, "interval_ms",
                                      (json_int_t)c->interval_ms, "window_ms",
                                      (json_int_t)c->window_ms, "max_error_rate", c->max_error_rate,
                                      "max_p95_ratio", c->max_p95_ratio, "min_requests",
                                      c->min_requests, "state", c->state));
    }
    return o;
}

char *registry_traffic_dump(const struct registry_traffic *t)
{
    json_t *o = registry_traffic_json(t);
    char *s = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(o);
    return s;
}

static int version_field(json_t *v, const char *what, struct thaw_err *err)
{
    int n = json_is_string(v) ? registry_version_parse(json_string_value(v))
            : json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < 1000000000
                ? (int)json_integer_value(v)
                : 0;
    if (!n) thaw_errf(err, THAW_EINVAL, "field '%s' must name a version like \"v3\"", what);
    return n;
}

int registry_traffic_parse(const char *json, struct registry_traffic *t, struct thaw_err *err)
{
    memset(t, 0, sizeof(*t));
    if (!json || !*json) return 0;
    json_t *o = json_loads(json, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return thaw_errf(err, THAW_EFORMAT, "traffic document is not a JSON object");
    }
    int rc = 0;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(o, "weights"), k, v)
    {
        int n = registry_version_parse(k);
        if (!n || !json_is_integer(v) || t->n == REGISTRY_SPLIT_MAX) {
            rc = thaw_errf(err, THAW_EFORMAT, "traffic document has a bad weight '%s'", k);
            break;
        }
        t->w[t->n].version = n;
        t->w[t->n].weight = (int)json_integer_value(v);
        t->n++;
    }
    qsort(t->w, (size_t)t->n, sizeof(t->w[0]), cmp_weight);
    json_t *sh = json_object_get(o, "shadow");
    if (!rc && json_is_object(sh)) {
        t->shadow_version = version_field(json_object_get(sh, "version"), "shadow.version", err);
        t->shadow_percent = json_number_value(json_object_get(sh, "percent"));
        if (!t->shadow_version) rc = THAW_EFORMAT;
    }
    json_t *c = json_object_get(o, "canary");
    if (!rc && json_is_object(c)) {
        struct registry_canary *k2 = &t->canary;
        k2->version = version_field(json_object_get(c, "version"), "canary.version", err);
        k2->baseline = version_field(json_object_get(c, "baseline"), "canary.baseline", err);
        size_t i;
        json_array_foreach(json_object_get(c, "steps"), i,
                           v) if (k2->n_steps < REGISTRY_CANARY_STEPS_MAX)
            k2->steps[k2->n_steps++] = (int)json_integer_value(v);
        k2->step = (int)json_integer_value(json_object_get(c, "step"));
        k2->interval_ms = json_integer_value(json_object_get(c, "interval_ms"));
        k2->window_ms = json_integer_value(json_object_get(c, "window_ms"));
        k2->max_error_rate = json_number_value(json_object_get(c, "max_error_rate"));
        k2->max_p95_ratio = json_number_value(json_object_get(c, "max_p95_ratio"));
        k2->min_requests = (int)json_integer_value(json_object_get(c, "min_requests"));
        str_copy(k2->state, json_string_value(json_object_get(c, "state")) ?: "running",
                 sizeof(k2->state));
        if (!k2->version || !k2->baseline || k2->n_steps == 0 || k2->step < 0 ||
            k2->step >= k2->n_steps)
            rc = thaw_errf(err, THAW_EFORMAT, "traffic document has a bad canary");
    }
    json_decref(o);
    return rc;
}

/* ---- version documents ---- */

static int sha256_hex(const char *data, size_t len, char out[ARTIFACT_DIGEST_SIZE])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) return -1;
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The version document as JSON (*obj) and as canonical text (*doc), and
 * the digest of that text. */
static int version_doc(const struct deploy_spec *spec, json_t **obj, char **doc,
                       char digest[ARTIFACT_DIGEST_SIZE], struct thaw_err *err)
{
    *doc = NULL;
    *obj = NULL;
    json_t *canon = registry_spec_to_json(spec);
    struct artifact_refs refs = {0};
    if (!canon || artifact_refs_scan_json(&refs, canon)) {
        json_decref(canon);
        artifact_refs_free(&refs);
        return thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    /* Sorted and unique, so the same spec always makes the same document. */
    json_t *arts = json_array();
    artifact_refs_has(&refs, "sha256:"); /* sorts */
    for (size_t i = 0; i < refs.n; i++)
        if (i == 0 || strcmp(refs.digests[i], refs.digests[i - 1]))
            json_array_append_new(arts, json_string(refs.digests[i]));
    artifact_refs_free(&refs);
    json_t *o = json_pack("{s:o, s:o}", "artifacts", arts, "spec", canon);
    *doc = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10)) : NULL;
    if (!*doc || sha256_hex(*doc, strlen(*doc), digest)) {
        json_decref(o);
        free(*doc);
        *doc = NULL;
        return thaw_errf(err, THAW_ENOMEM, "cannot digest the version");
    }
    *obj = o;
    return 0;
}

int registry_version_doc(const struct deploy_spec *spec, char **doc,
                         char digest[ARTIFACT_DIGEST_SIZE], struct thaw_err *err)
{
    json_t *o = NULL;
    int rc = version_doc(spec, &o, doc, digest, err);
    json_decref(o);
    return rc;
}

int registry_version_spec(const char *doc, const struct registry_sealer *sealer,
                          struct deploy_spec **out, struct thaw_err *err)
{
    json_t *o = json_loads(doc, 0, NULL);
    json_t *spec = json_object_get(o, "spec");
    int rc = spec ? registry_env_open(sealer, spec, true, err)
                  : thaw_errf(err, THAW_EFORMAT, "stored version is not a version document");
    if (!rc) rc = registry_spec_from_json(spec, out, err);
    json_decref(o);
    return rc;
}

/* ---- deploy ---- */

struct deploy_ctx {
    int pct;
    struct registry_traffic *t;
    int parse_rc;
};

static char *deploy_traffic(void *arg, int version, bool created, const char *current)
{
    struct deploy_ctx *c = arg;
    struct thaw_err err = {0};
    (void)created;
    if (registry_traffic_parse(current, c->t, &err)) {
        /* An unreadable document is replaced rather than kept broken. */
        memset(c->t, 0, sizeof(*c->t));
    }
    struct registry_traffic *t = c->t;
    if (t->n == 0 || c->pct >= 100 || c->pct < 0) {
        t->n = 0;
        registry_traffic_set(t, version, 100);
    } else if (c->pct > 0 || registry_traffic_weight(t, version) > 0) {
        /* A canary deploy: the new version gets its share, the others the rest. */
        registry_traffic_set(t, version, c->pct);
    }
    /* A running analysis or shadow of this very version is superseded. */
    if (t->canary.version && registry_traffic_full(t) == t->canary.version)
        memset(&t->canary, 0, sizeof(t->canary));
    if (t->canary.version && c->pct >= 100) memset(&t->canary, 0, sizeof(t->canary));
    if (t->shadow_version && registry_traffic_weight(t, t->shadow_version) == 100)
        t->shadow_version = 0, t->shadow_percent = 0;
    return registry_traffic_dump(t);
}

int registry_deploy(struct store *st, const struct registry_sealer *sealer,
                    const struct deploy_spec *spec, const char *owner, const char *actor,
                    int traffic_pct, struct registry_deploy_result *out, struct thaw_err *err)
{
    memset(out, 0, sizeof(*out));
    char *plain = NULL;
    json_t *o = NULL;
    int rc = version_doc(spec, &o, &plain, out->digest, err);
    if (rc) return rc;
    free(plain);
    /* The digest is of the plain spec (the same manifest is the same
     * version); only what is written is sealed. The deployment row keeps the
     * same spec as the version document. */
    json_t *canon = json_object_get(o, "spec");
    rc = registry_env_seal(sealer, owner, canon, err);
    char *doc = rc ? NULL : json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
    char *spec_json =
        rc ? NULL : json_dumps(canon, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!rc && (!doc || !spec_json)) rc = thaw_errf(err, THAW_ENOMEM, "out of memory");
    if (rc) {
        free(doc);
        free(spec_json);
        return rc;
    }
    struct deploy_ctx c = {.pct = traffic_pct, .t = &out->traffic};
    struct store_deploy_result r;
    char reason[64];
    snprintf(reason, sizeof(reason), "deploy%s",
             traffic_pct >= 0 && traffic_pct < 100 ? " (canary share)" : "");
    rc = store_version_deploy(st, spec->name, owner, actor, out->digest, doc, spec_json,
                              deploy_traffic, &c, reason, &r, err);
    free(doc);
    free(spec_json);
    if (rc) return rc;
    out->version = r.version;
    out->created = r.created;
    out->existed = r.existed;
    out->traffic_changed = r.traffic_changed;
    out->rev = r.rev;
    /* The stored document is the truth (unchanged traffic was not rewritten). */
    struct thaw_err perr = {0};
    if (registry_traffic_parse(r.traffic, &out->traffic, &perr))
        memset(&out->traffic, 0, sizeof(out->traffic));
    free(r.traffic);
    return 0;
}

struct rollback_ctx {
    int current_full;
    int target;
};

static int rollback_cb(void *arg, const struct store_traffic_entry *e)
{
    struct rollback_ctx *c = arg;
    struct registry_traffic t;
    struct thaw_err err = {0};
    if (registry_traffic_parse(e->traffic, &t, &err)) return 0;
    int full = registry_traffic_full(&t);
    /* Oldest first: the last match wins. */
    if (full && full != c->current_full) c->target = full;
    return 0;
}

int registry_rollback_target(struct store *st, const char *name, const struct registry_traffic *cur,
                             struct thaw_err *err)
{
    struct rollback_ctx c = {registry_traffic_full(cur), 0};
    int rc = store_traffic_log(st, name, rollback_cb, &c, err);
    if (rc) return 0; /* err says why */
    if (!c.target)
        thaw_errf(err, THAW_ESTATE, "deployment '%s' has no earlier version that had 100%% traffic",
                  name);
    return c.target;
}

static int refs_cb(void *ctx, const char *deployment, const struct store_version *v)
{
    (void)deployment;
    json_t *o = v->spec_json ? json_loads(v->spec_json, 0, NULL) : NULL;
    int rc = o ? artifact_refs_scan_json(ctx, o) : 0;
    json_decref(o);
    return rc;
}

int registry_version_refs(struct store *st, struct artifact_refs *refs, struct thaw_err *err)
{
    return store_version_list(st, NULL, true, refs_cb, refs, err);
}

struct collect_ctx {
    json_t *list; /* [[n, doc], ...] */
};

static int collect_cb(void *arg, const char *deployment, const struct store_version *v)
{
    (void)deployment;
    struct collect_ctx *c = arg;
    /* Copied out: the store holds its lock during the walk, and parsing or
     * applying a version may need the store again. */
    json_array_append_new(c->list, json_pack("[i, s]", v->n, v->spec_json ? v->spec_json : ""));
    return 0;
}

int registry_versions_load(struct store *st, const struct registry_sealer *sealer, const char *name,
                           void (*cb)(void *ctx, int version, struct deploy_spec *spec), void *ctx,
                           int *bad, struct thaw_err *err)
{
    struct collect_ctx c = {json_array()};
    if (bad) *bad = 0;
    if (!c.list) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    int rc = store_version_list(st, name, true, collect_cb, &c, err);
    size_t i;
    json_t *e;
    json_array_foreach(c.list, i, e)
    {
        if (rc) break;
        struct deploy_spec *spec = NULL;
        struct thaw_err perr = {0};
        if (registry_version_spec(json_string_value(json_array_get(e, 1)), sealer, &spec, &perr)) {
            if (bad) (*bad)++;
            continue;
        }
        cb(ctx, (int)json_integer_value(json_array_get(e, 0)), spec);
    }
    json_decref(c.list);
    return rc;
}

int registry_traffic_load(struct store *st, const char *name, struct registry_traffic *t,
                          int64_t *rev, struct thaw_err *err)
{
    char *doc = NULL;
    int rc = store_traffic_get(st, name, &doc, rev, err);
    if (!rc) rc = registry_traffic_parse(doc, t, err);
    free(doc);
    return rc;
}
