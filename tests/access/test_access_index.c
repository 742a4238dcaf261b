/* Many tenants and keys through the access API on a real SQLite store:
 * 2,000 tenants with 10 keys each are created, every key authenticates to
 * its tenant, revoked keys and the keys of deleted tenants are refused,
 * deleted names can be created again, grants of 20 deployments to the
 * tenants answer access_can_use (some removed, one deployment forgotten),
 * each tenant's usage lands on its own day, and all of it holds after reloading from the store (the
 * lookups are indexes now, not list walks). */
#include "access/access.h"
#include "store/store.h"
#include "test.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define N_TENANTS 2000
#define PER       10
#define N_KEYS    (N_TENANTS * PER)

static struct store *S;
static struct access *A;
static char dir[64];
static const unsigned char SECRET[32] = {7, 7, 7};
static const struct access_principal ROOT = {
    .key_id = "root", .tenant = ACCESS_ROOT_TENANT, .scopes = ~0u, .platform_admin = true};

static char (*keys)[SECURITY_KEY_STR_SIZE];
static bool revoked[N_KEYS], deleted[N_TENANTS];

static void tenant_name(int t, char out[16])
{
    snprintf(out, 16, "t%04d", t);
}

static int auth(const char *key, struct access_principal *p, struct thaw_err *err)
{
    char h[256];
    snprintf(h, sizeof(h), "Bearer %s", key);
    return access_authenticate(A, h, p, err);
}

/* Every key and tenant answers as the flags say. */
static void check_all(void)
{
    int bad = 0;
    for (int i = 0; i < N_KEYS; i++) {
        struct access_principal p;
        struct thaw_err err = {0};
        char want[16];
        tenant_name(i / PER, want);
        int rc = auth(keys[i], &p, &err);
        bool ok = revoked[i] || deleted[i / PER]
                      ? rc == THAW_EDENIED && strstr(err.msg, "revoked") != NULL
                      : rc == 0 && strcmp(p.tenant, want) == 0;
        if (!ok && bad++ < 5) fprintf(stderr, "  key %d: rc %d %s\n", i, rc, err.msg);
    }
    ASSERT_EQ(bad, 0);
    for (int t = 0; t < N_TENANTS; t++) {
        char name[16];
        tenant_name(t, name);
        if (access_tenant_exists(A, name) == deleted[t]) bad++;
    }
    ASSERT_EQ(bad, 0);
    ASSERT(!access_tenant_exists(A, "t9999"));
    ASSERT(!access_tenant_exists(A, ""));
}

static void open_access(void)
{
    struct thaw_err err = {0};
    ASSERT_EQ(access_open(S, SECRET, &A, &err), 0);
    char generated[SECURITY_KEY_STR_SIZE];
    bool was = false;
    ASSERT_EQ(access_bootstrap(A, NULL, generated, &was, &err), 0);
}

static void test_create_and_look_up(void)
{
    struct thaw_err err = {0};
    for (int t = 0; t < N_TENANTS; t++) {
        char name[16];
        tenant_name(t, name);
        json_t *out = NULL;
        /* Every tenth tenant allows one request a day: its limits are found
         * through the index too. */
        json_t *limits = t % 10 ? NULL : json_pack("{s:i}", "daily_requests", 1);
        ASSERT_EQ(access_tenant_create(A, &ROOT, name, limits, &out, &err), 0);
        json_decref(limits);
        json_decref(out);
    }
    json_t *body = json_pack("{s:[s]}", "scopes", "invoke");
    for (int i = 0; i < N_KEYS; i++) {
        char name[16];
        tenant_name(i / PER, name);
        json_t *info = NULL;
        ASSERT_EQ(access_key_create(A, &ROOT, name, body, keys[i], &info, &err), 0);
        json_decref(info);
    }
    json_decref(body);
    check_all();
    /* An unknown id, and a known id with another secret. */
    struct access_principal p;
    char forged[SECURITY_KEY_STR_SIZE];
    snprintf(forged, sizeof(forged), "%s", keys[N_KEYS / 2]);
    size_t n = strlen(forged);
    forged[n - 1] = forged[n - 1] == 'a' ? 'b' : 'a';
    ASSERT_EQ(auth(forged, &p, &err), THAW_EDENIED);
    ASSERT_CONTAINS(err.msg, "unknown API key");
    forged[5] = forged[5] == 'a' ? 'b' : 'a';
    ASSERT_EQ(auth(forged, &p, &err), THAW_EDENIED);
    ASSERT_CONTAINS(err.msg, "unknown API key");
    /* Limits: tenant 1990's one request, then a refusal; tenant 1991 has none. */
    struct access_admission adm;
    ASSERT_EQ(auth(keys[1990 * PER], &p, &err), 0);
    access_admit(A, &p, &adm);
    ASSERT(adm.allowed);
    access_release(A, &p, &adm);
    access_admit(A, &p, &adm);
    ASSERT(!adm.allowed);
    ASSERT_STR_EQ(adm.reason, "daily_requests");
    ASSERT_EQ(auth(keys[1991 * PER], &p, &err), 0);
    for (int i = 0; i < 3; i++) {
        access_admit(A, &p, &adm);
        ASSERT(adm.allowed);
        access_release(A, &p, &adm);
    }
    json_t *list = NULL;
    ASSERT_EQ(access_key_list(A, &ROOT, "t1234", &list, &err), 0);
    ASSERT_EQ(json_array_size(list), PER);
    json_decref(list);
}

static void test_revoke_and_delete(void)
{
    struct thaw_err err = {0};
    for (int i = 0; i < N_KEYS; i += 3) {
        char id[SECURITY_KEY_ID_LEN + 1];
        snprintf(id, sizeof(id), "%.*s", SECURITY_KEY_ID_LEN, keys[i] + 5);
        ASSERT_EQ(access_key_revoke(A, &ROOT, id, &err), 0);
        revoked[i] = true;
    }
    /* A quarter of the tenants, in an order that moves the others around
     * (each delete fills its place with the last tenant). */
    for (int t = 0; t < N_TENANTS; t += 4) {
        char name[16];
        tenant_name((t * 7) % N_TENANTS, name);
        ASSERT_EQ(access_tenant_delete(A, &ROOT, name, &err), 0);
        deleted[(t * 7) % N_TENANTS] = true;
    }
    char name[16];
    tenant_name(0, name);
    ASSERT(deleted[0]);
    ASSERT_EQ(access_tenant_delete(A, &ROOT, name, &err), THAW_ENOTFOUND);
    check_all();
    /* A deleted name can be created again; its old keys stay revoked. */
    for (int t = 0; t < 40; t++) {
        if (!deleted[t]) continue;
        tenant_name(t, name);
        json_t *out = NULL;
        ASSERT_EQ(access_tenant_create(A, &ROOT, name, NULL, &out, &err), 0);
        json_decref(out);
        deleted[t] = false;
        for (int k = 0; k < PER; k++)
            revoked[t * PER + k] = true;
    }
    check_all();
}

/* Grants of 20 deployments (owned by root) to every tenant, as
 * access_can_use sees them for the tenants' own keys; some removed, one
 * deployment forgotten. Checked again after the reload. */
static bool grant_state(int d, int t)
{
    return d != 7 && (t + d) % 5 != 0;
}

static void check_grants(void)
{
    int bad = 0;
    for (int t = 0; t < N_TENANTS; t += 3) {
        struct access_principal p = {.scopes = ~0u};
        tenant_name(t, p.tenant);
        snprintf(p.key_id, sizeof(p.key_id), "k");
        for (int d = 0; d < 20; d++) {
            char dep[16];
            snprintf(dep, sizeof(dep), "dep%02d", d);
            if (access_can_use(A, &p, dep, ACCESS_ROOT_TENANT) != grant_state(d, t)) bad++;
        }
    }
    ASSERT_EQ(bad, 0);
}

static void test_grants(void)
{
    struct thaw_err err = {0};
    for (int t = 0; t < N_TENANTS; t += 3) {
        char name[16];
        tenant_name(t, name);
        if (deleted[t]) {
            json_t *out = NULL;
            ASSERT_EQ(access_tenant_create(A, &ROOT, name, NULL, &out, &err), 0);
            json_decref(out);
            deleted[t] = false;
            for (int k = 0; k < PER; k++)
                revoked[t * PER + k] = true;
        }
        for (int d = 0; d < 20; d++) {
            char dep[16];
            snprintf(dep, sizeof(dep), "dep%02d", d);
            ASSERT_EQ(access_grant_add(A, &ROOT, dep, ACCESS_ROOT_TENANT, name, &err), 0);
        }
    }
    for (int t = 0; t < N_TENANTS; t += 3) {
        char name[16];
        tenant_name(t, name);
        for (int d = 0; d < 20; d++) {
            char dep[16];
            snprintf(dep, sizeof(dep), "dep%02d", d);
            if ((t + d) % 5 == 0)
                ASSERT_EQ(access_grant_remove(A, &ROOT, dep, ACCESS_ROOT_TENANT, name, &err), 0);
        }
    }
    access_grants_forget(A, "dep07");
    ASSERT_EQ(access_grant_remove(A, &ROOT, "dep07", ACCESS_ROOT_TENANT, "t0003", &err),
              THAW_ENOTFOUND);
    json_t *l = access_grant_list(A, "dep07");
    ASSERT_EQ(json_array_size(l), 0);
    json_decref(l);
    check_grants();
}

/* Usage of every tenant today (each finds its own day among 2,000). */
static void test_usage(void)
{
    for (int r = 0; r < 3; r++)
        for (int t = 0; t < N_TENANTS; t++) {
            char name[16];
            tenant_name(t, name);
            access_usage_record(A, name, "dep", r == 2, (uint64_t)t, 1);
        }
    int64_t today = (int64_t)time(NULL) / 86400;
    int bad = 0;
    for (int t = 0; t < N_TENANTS; t += 7) {
        char name[16];
        tenant_name(t, name);
        json_t *u = NULL;
        struct thaw_err err = {0};
        ASSERT_EQ(access_usage_get(A, name, today, &u, &err), 0);
        json_t *tot = json_object_get(u, "totals");
        if (json_integer_value(json_object_get(tot, "requests")) != 3 ||
            json_integer_value(json_object_get(tot, "failed")) != 1 ||
            json_integer_value(json_object_get(tot, "prompt_tokens")) != 3 * t)
            bad++;
        json_decref(u);
    }
    ASSERT_EQ(bad, 0);
}

static void test_reload(void)
{
    access_free(A);
    A = NULL;
    open_access();
    check_all();
    check_grants();
    /* Still writable after the reload: a new tenant and key. */
    struct thaw_err err = {0};
    json_t *out = NULL, *info = NULL;
    ASSERT_EQ(access_tenant_create(A, &ROOT, "after-reload", NULL, &out, &err), 0);
    json_decref(out);
    json_t *body = json_pack("{s:[s]}", "scopes", "read");
    char key[SECURITY_KEY_STR_SIZE];
    ASSERT_EQ(access_key_create(A, &ROOT, "after-reload", body, key, &info, &err), 0);
    json_decref(body);
    json_decref(info);
    struct access_principal p;
    ASSERT_EQ(auth(key, &p, &err), 0);
    ASSERT_STR_EQ(p.tenant, "after-reload");
}

int main(void)
{
    /* Tens of thousands of durable writes: on tmpfs where there is one
     * (each fsync on a disk would make this a minute-long test). */
    struct stat st;
    const char *root =
        stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof(dir), "%s/thaw-access-index-XXXXXX", root);
    if (!mkdtemp(dir)) return 1;
    char path[128];
    snprintf(path, sizeof(path), "%s/thaw.db", dir);
    struct thaw_err err = {0};
    keys = calloc(N_KEYS, sizeof(*keys));
    if (!keys || store_open_sqlite(path, &S, &err)) {
        fprintf(stderr, "store: %s\n", err.msg);
        return 1;
    }
    open_access();
    RUN(test_create_and_look_up);
    RUN(test_revoke_and_delete);
    RUN(test_grants);
    RUN(test_usage);
    RUN(test_reload);
    access_free(A);
    store_close(S);
    free(keys);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return TEST_REPORT();
}
