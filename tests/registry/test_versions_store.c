/* Versions and traffic on a real SQLite store: digests decide version
 * numbers, the traffic document is compare-and-set, deletes take versions
 * with them, a rollback finds the last full version; and the traffic
 * arithmetic and sticky hashing keep their promises. */
#include "registry/registry.h"
#include "scale/scale.h"
#include "store/store.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

static struct store *S;
static char dir[] = "/tmp/thaw-versions-XXXXXX";

static struct deploy_spec *spec_with_tag(const char *tag)
{
    char m[512];
    snprintf(m, sizeof(m),
             "{\"name\":\"svc\",\"runtime\":\"exec\",\"command\":[\"/bin/true\"],\"env\":{\"TAG\":"
             "\"%s\",\"MODEL\":\"sha256:%064d\"}}",
             tag, 7);
    struct deploy_spec *s = NULL;
    struct thaw_err err = {0};
    if (registry_spec_parse(m, strlen(m), NULL, &s, &err)) fprintf(stderr, "%s\n", err.msg);
    return s;
}

static int deploy(const char *tag, int pct, struct registry_deploy_result *r)
{
    struct deploy_spec *s = spec_with_tag(tag);
    struct thaw_err err = {0};
    int rc = s ? registry_deploy(S, NULL, s, "root", "key1", pct, r, &err) : -1;
    registry_spec_free(s);
    return rc;
}

static void test_digest_decides_number(void)
{
    struct registry_deploy_result r;
    ASSERT_EQ(deploy("a", -1, &r), 0);
    ASSERT_EQ(r.version, 1);
    ASSERT(r.created && !r.existed);
    char d1[ARTIFACT_DIGEST_SIZE];
    memcpy(d1, r.digest, sizeof(d1));
    ASSERT_EQ(deploy("a", -1, &r), 0);
    ASSERT_EQ(r.version, 1);
    ASSERT(!r.created && r.existed && !r.traffic_changed);
    ASSERT_STR_EQ(r.digest, d1);
    ASSERT_EQ(deploy("b", 10, &r), 0); /* a canary share */
    ASSERT_EQ(r.version, 2);
    ASSERT_EQ(registry_traffic_weight(&r.traffic, 1), 90);
    ASSERT_EQ(registry_traffic_weight(&r.traffic, 2), 10);
    ASSERT_EQ(deploy("c", 0, &r), 0); /* dark */
    ASSERT_EQ(r.version, 3);
    ASSERT_EQ(registry_traffic_weight(&r.traffic, 3), 0);
    ASSERT_EQ(registry_traffic_weight(&r.traffic, 1) + registry_traffic_weight(&r.traffic, 2), 100);
    /* The stored document names the artifact and parses back to the spec. */
    struct store_version meta;
    char *doc = NULL;
    struct thaw_err err = {0};
    ASSERT_EQ(store_version_get(S, "svc", 1, &meta, &doc, &err), 0);
    ASSERT_STR_EQ(meta.actor, "key1");
    ASSERT_STR_EQ(meta.digest, d1);
    ASSERT(strstr(doc, "\"artifacts\":[\"sha256:0000") != NULL);
    struct deploy_spec *back = NULL;
    ASSERT_EQ(registry_version_spec(doc, NULL, &back, &err), 0);
    ASSERT_STR_EQ(back->name, "svc");
    registry_spec_free(back);
    free(doc);
    ASSERT_EQ(store_version_get(S, "svc", 9, NULL, NULL, &err), THAW_ENOTFOUND);
    struct artifact_refs refs = {0};
    ASSERT_EQ(registry_version_refs(S, &refs, &err), 0);
    char want[80];
    snprintf(want, sizeof(want), "sha256:%064d", 7);
    ASSERT(artifact_refs_has(&refs, want));
    artifact_refs_free(&refs);
}

static void test_traffic_compare_and_set(void)
{
    struct registry_traffic t;
    int64_t rev = 0, nrev = 0;
    struct thaw_err err = {0};
    ASSERT_EQ(registry_traffic_load(S, "svc", &t, &rev, &err), 0);
    char *doc = registry_traffic_dump(&t);
    ASSERT_EQ(store_traffic_put(S, "svc", doc, rev, "op", "same", &nrev, &err), 0);
    ASSERT_EQ(nrev, rev + 1);
    /* A writer that read the old revision loses. */
    ASSERT_EQ(store_traffic_put(S, "svc", doc, rev, "op", "stale", &nrev, &err), THAW_ECONFLICT);
    ASSERT_EQ(store_traffic_put(S, "nope", doc, -1, "op", "x", &nrev, &err), THAW_ENOTFOUND);
    free(doc);
}

static int count_log(void *ctx, const struct store_traffic_entry *e)
{
    (*(int *)ctx)++;
    return e->rev > 0 ? 0 : -1;
}

static void test_rollback_target(void)
{
    struct registry_traffic t;
    int64_t rev;
    struct thaw_err err = {0};
    ASSERT_EQ(registry_traffic_load(S, "svc", &t, &rev, &err), 0);
    /* Split now; the last full version was v1. */
    ASSERT_EQ(registry_rollback_target(S, "svc", &t, &err), 1);
    struct registry_deploy_result r;
    ASSERT_EQ(deploy("b", -1, &r), 0); /* v2 gets everything */
    ASSERT_EQ(registry_traffic_full(&r.traffic), 2);
    ASSERT_EQ(registry_rollback_target(S, "svc", &r.traffic, &err), 1);
    int n = 0;
    ASSERT_EQ(store_traffic_log(S, "svc", count_log, &n, &err), 0);
    ASSERT_CMP(n, >=, 4);
}

static int count_versions(void *ctx, const char *dep, const struct store_version *v)
{
    (*(int *)ctx)++;
    return 0;
}

static void test_delete_takes_versions(void)
{
    struct thaw_err err = {0};
    ASSERT_EQ(store_deployment_delete(S, "svc", &err), 0);
    int n = 0;
    ASSERT_EQ(store_version_list(S, "svc", false, count_versions, &n, &err), 0);
    ASSERT_EQ(n, 0);
    struct registry_deploy_result r;
    ASSERT_EQ(deploy("z", -1, &r), 0);
    ASSERT_EQ(r.version, 1); /* a new deployment of the name starts over */
    ASSERT(!r.existed);
}

/* A toy sealer: "<owner>|<purpose>|" + the bytes reversed; opening checks
 * the purpose, as the AEAD's associated data would. */
static int toy_seal(void *ctx, const char *owner, const char *purpose, const void *pt, size_t len,
                    struct buf *out, struct thaw_err *err)
{
    (void)ctx;
    (void)err;
    if (buf_printf(out, "%s|%s|", owner, purpose)) return THAW_ENOMEM;
    for (size_t i = len; i > 0; i--)
        if (buf_append(out, (const char *)pt + i - 1, 1)) return THAW_ENOMEM;
    return 0;
}

static int toy_open(void *ctx, const char *purpose, const void *blob, size_t len, struct buf *out,
                    struct thaw_err *err)
{
    (void)ctx;
    const char *b = blob, *p1 = memchr(b, '|', len);
    size_t pl = strlen(purpose);
    if (!p1 || (size_t)(b + len - p1) < pl + 2 || memcmp(p1 + 1, purpose, pl) || p1[1 + pl] != '|')
        return thaw_errf(err, THAW_EDENIED, "does not open");
    const char *pt = p1 + pl + 2;
    for (const char *q = b + len; q > pt; q--)
        if (buf_append(out, q - 1, 1)) return THAW_ENOMEM;
    return 0;
}

static const struct registry_sealer TOY = {NULL, toy_seal, toy_open};

static void spec_loaded(void *ctx, int version, struct deploy_spec *spec)
{
    (void)version;
    char *seen = ctx;
    for (char **e = spec->env; e && *e; e++)
        if (!strncmp(*e, "TAG=", 4)) snprintf(seen, 64, "%s", *e + 4);
    registry_spec_free(spec);
}

/* Env values are stored sealed, the digest is still the plain spec's, and
 * loading opens them; a reader without reveal sees "(hidden)"; artifacts
 * named in env still count for GC through the version document. */
static void test_sealed_env(void)
{
    struct deploy_spec *s = spec_with_tag("secret-tag-77");
    struct thaw_err err = {0};
    char plain_digest[ARTIFACT_DIGEST_SIZE];
    char *plain = NULL;
    ASSERT_EQ(registry_version_doc(s, &plain, plain_digest, &err), 0);
    free(plain);
    struct registry_deploy_result r, r2;
    ASSERT_EQ(registry_deploy(S, &TOY, s, "acme", "key1", -1, &r, &err), 0);
    ASSERT_STR_EQ(r.digest, plain_digest);
    ASSERT_EQ(registry_deploy(S, &TOY, s, "acme", "key1", -1, &r2, &err), 0);
    ASSERT_EQ(r2.version, r.version);
    ASSERT(!r2.created);
    registry_spec_free(s);
    char *doc = NULL, *row = NULL;
    ASSERT_EQ(store_version_get(S, "svc", r.version, NULL, &doc, &err), 0);
    ASSERT_EQ(store_deployment_get(S, "svc", &row, &err), 0);
    ASSERT(strstr(doc, "secret-tag-77") == NULL && strstr(row, "secret-tag-77") == NULL);
    ASSERT(strstr(doc, REGISTRY_SEALED_PREFIX) != NULL);
    ASSERT(strstr(row, REGISTRY_SEALED_PREFIX) != NULL);
    struct deploy_spec *back = NULL;
    ASSERT_EQ(registry_version_spec(doc, &TOY, &back, &err), 0);
    bool found = false;
    for (char **e = back->env; e && *e; e++)
        found |= !strcmp(*e, "TAG=secret-tag-77");
    ASSERT(found);
    registry_spec_free(back);
    /* Without a sealer a sealed value does not pass as plain. */
    ASSERT_EQ(registry_version_spec(doc, NULL, &back, &err), THAW_ESTATE);
    json_t *j = json_loads(row, 0, NULL);
    ASSERT_EQ(registry_env_open(&TOY, j, false, &err), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "env"), "TAG")), "(hidden)");
    json_decref(j);
    /* Moved to another variable it no longer opens, and nothing half-opened
     * is left behind. */
    j = json_loads(row, 0, NULL);
    json_t *env = json_object_get(j, "env");
    json_object_set(env, "MODEL", json_object_get(env, "TAG"));
    ASSERT_EQ(registry_env_open(&TOY, j, true, &err), THAW_EDENIED);
    ASSERT_STR_EQ(json_string_value(json_object_get(env, "TAG")), "(hidden)");
    json_decref(j);
    free(doc);
    free(row);
    char seen[64] = "";
    int bad = 0;
    ASSERT_EQ(registry_versions_load(S, &TOY, "svc", spec_loaded, seen, &bad, &err), 0);
    ASSERT_EQ(bad, 0);
    ASSERT_STR_EQ(seen, "secret-tag-77"); /* the last version is the sealed one */
    struct artifact_refs refs = {0};
    ASSERT_EQ(registry_version_refs(S, &refs, &err), 0);
    char want[80];
    snprintf(want, sizeof(want), "sha256:%064d", 7);
    ASSERT(artifact_refs_has(&refs, want));
    artifact_refs_free(&refs);
    /* A manifest may not carry the prefix itself. */
    const char *m = "{\"name\":\"x\",\"runtime\":\"exec\",\"command\":[\"/bin/true\"],"
                    "\"env\":{\"A\":\"ok\",\"B\":\"" REGISTRY_SEALED_PREFIX "zz\"}}";
    ASSERT_EQ(registry_spec_parse(m, strlen(m), NULL, &back, &err), THAW_EINVAL);
    ASSERT(back == NULL);
    ASSERT_CONTAINS(err.msg, "env.B");
}

static void test_traffic_arithmetic(void)
{
    struct registry_traffic t = {0};
    registry_traffic_set(&t, 3, 100);
    registry_traffic_set(&t, 4, 33);
    ASSERT_EQ(registry_traffic_weight(&t, 3), 67);
    ASSERT_EQ(registry_traffic_weight(&t, 4), 33);
    registry_traffic_set(&t, 5, 10); /* 67:33 over 90 -> 60:30 */
    ASSERT_EQ(registry_traffic_weight(&t, 3) + registry_traffic_weight(&t, 4) +
                  registry_traffic_weight(&t, 5),
              100);
    ASSERT_EQ(registry_traffic_weight(&t, 3), 60);
    ASSERT_EQ(registry_traffic_weight(&t, 5), 10);
    registry_traffic_set(&t, 4, 100);
    ASSERT_EQ(t.n, 1);
    ASSERT_EQ(registry_traffic_full(&t), 4);
    /* The document round-trips to the same text. */
    t.shadow_version = 3;
    t.shadow_percent = 12.5;
    char *a = registry_traffic_dump(&t);
    struct registry_traffic u;
    struct thaw_err err = {0};
    ASSERT_EQ(registry_traffic_parse(a, &u, &err), 0);
    char *b = registry_traffic_dump(&u);
    ASSERT_STR_EQ(a, b);
    free(a);
    free(b);
    ASSERT_EQ(registry_traffic_parse("[1]", &u, &err), THAW_EFORMAT);
    ASSERT_EQ(registry_version_parse("v12"), 12);
    ASSERT_EQ(registry_version_parse("12"), 12);
    ASSERT_EQ(registry_version_parse("v0"), 0);
    ASSERT_EQ(registry_version_parse("v1x"), 0);
    ASSERT_EQ(registry_version_parse(""), 0);
}

static void test_sticky_hashing(void)
{
    struct registry_traffic t = {0};
    registry_traffic_set(&t, 1, 100);
    registry_traffic_set(&t, 2, 25);
    enum { KEYS = 20000 };
    int on2 = 0;
    static unsigned char first[KEYS];
    for (uint64_t k = 0; k < KEYS; k++) {
        int v = scale_pick_sticky(&t, k * 0x9E3779B97F4A7C15ULL + 17);
        ASSERT(v == 1 || v == 2);
        first[k] = (unsigned char)v;
        on2 += v == 2;
    }
    /* The share of keys follows the weights (sd ~0.3% here). */
    ASSERT_NEAR((double)on2 / KEYS, 0.25, 0.02);
    /* Growing v2 moves keys only onto v2. */
    registry_traffic_set(&t, 2, 50);
    int moved = 0;
    for (uint64_t k = 0; k < KEYS; k++) {
        int v = scale_pick_sticky(&t, k * 0x9E3779B97F4A7C15ULL + 17);
        if (first[k] == 2) ASSERT_EQ(v, 2);
        moved += v != first[k];
    }
    ASSERT_NEAR((double)moved / KEYS, 0.25, 0.02);
}

int main(void)
{
    if (!mkdtemp(dir)) return 1;
    char path[256];
    snprintf(path, sizeof(path), "%s/thaw.db", dir);
    struct thaw_err err = {0};
    if (store_open_sqlite(path, &S, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    RUN(test_digest_decides_number);
    RUN(test_traffic_compare_and_set);
    RUN(test_rollback_target);
    RUN(test_delete_takes_versions);
    RUN(test_sealed_env);
    RUN(test_traffic_arithmetic);
    RUN(test_sticky_hashing);
    store_close(S);
    unlink(path);
    char wal[300];
    snprintf(wal, sizeof(wal), "%s-wal", path);
    unlink(wal);
    snprintf(wal, sizeof(wal), "%s-shm", path);
    unlink(wal);
    rmdir(dir);
    return TEST_REPORT();
}
