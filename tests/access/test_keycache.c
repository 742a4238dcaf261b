/* API keys through access_authenticate on a real SQLite store, the same
 * key many times on one thread (so the verified-key cache answers): a wrong
 * secret for a cached key id is refused, and revoking, rotating and
 * deleting the tenant stop a cached key on the very next call. */
#include "access/access.h"
#include "store/store.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

static struct store *S;
static struct access *A;
static char dir[] = "/tmp/thaw-keycache-XXXXXX";
static const struct access_principal ROOT = {
    .key_id = "root", .tenant = ACCESS_ROOT_TENANT, .scopes = ~0u, .platform_admin = true};

static int auth(const char *key, struct access_principal *p, struct thaw_err *err)
{
    char h[256];
    snprintf(h, sizeof(h), "Bearer %s", key);
    return access_authenticate(A, h, p, err);
}

static void new_key(const char *tenant, char key[SECURITY_KEY_STR_SIZE])
{
    json_t *body = json_pack("{s:[s]}", "scopes", "read"), *info = NULL;
    struct thaw_err err = {0};
    ASSERT_EQ(access_key_create(A, &ROOT, tenant, body, key, &info, &err), 0);
    json_decref(body);
    json_decref(info);
}

static void test_cached_key_checks(void)
{
    struct thaw_err err = {0};
    json_t *t = NULL;
    ASSERT_EQ(access_tenant_create(A, &ROOT, "acme", NULL, &t, &err), 0);
    json_decref(t);
    char key[SECURITY_KEY_STR_SIZE];
    new_key("acme", key);
    struct access_principal p;
    for (int i = 0; i < 5; i++) {
        ASSERT_EQ(auth(key, &p, &err), 0);
        ASSERT_STR_EQ(p.tenant, "acme");
    }
    /* Same id, another secret (one character changed): refused even
     * though the real key is cached. */
    char forged[SECURITY_KEY_STR_SIZE];
    snprintf(forged, sizeof(forged), "%s", key);
    size_t n = strlen(forged);
    forged[n - 1] = forged[n - 1] == 'a' ? 'b' : 'a';
    ASSERT_EQ(auth(forged, &p, &err), THAW_EDENIED);
    ASSERT_CONTAINS(err.msg, "unknown API key");
    ASSERT_EQ(auth(key, &p, &err), 0);

    /* Revoked: the next call fails. */
    char id[SECURITY_KEY_ID_LEN + 1];
    snprintf(id, sizeof(id), "%.*s", SECURITY_KEY_ID_LEN, key + 5);
    ASSERT_EQ(access_key_revoke(A, &ROOT, id, &err), 0);
    ASSERT_EQ(auth(key, &p, &err), THAW_EDENIED);
    ASSERT_CONTAINS(err.msg, "revoked");

    /* Rotated: the old key fails at once, the new one works (and caches). */
    new_key("acme", key);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(auth(key, &p, &err), 0);
    snprintf(id, sizeof(id), "%.*s", SECURITY_KEY_ID_LEN, key + 5);
    char rotated[SECURITY_KEY_STR_SIZE];
    json_t *info = NULL;
    ASSERT_EQ(access_key_rotate(A, &ROOT, id, rotated, &info, &err), 0);
    json_decref(info);
    ASSERT_EQ(auth(key, &p, &err), THAW_EDENIED);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(auth(rotated, &p, &err), 0);

    /* The tenant deleted: its cached key stops. */
    ASSERT_EQ(access_tenant_delete(A, &ROOT, "acme", &err), 0);
    ASSERT_EQ(auth(rotated, &p, &err), THAW_EDENIED);
}

/* A second access (another node's secrets) never takes the first one's
 * cached keys for its own. */
static void test_two_accesses(void)
{
    struct thaw_err err = {0};
    json_t *t = NULL;
    ASSERT_EQ(access_tenant_create(A, &ROOT, "beta", NULL, &t, &err), 0);
    json_decref(t);
    char key[SECURITY_KEY_STR_SIZE];
    new_key("beta", key);
    struct access_principal p;
    ASSERT_EQ(auth(key, &p, &err), 0);
    char path[300];
    snprintf(path, sizeof(path), "%s/other.db", dir);
    struct store *s2 = NULL;
    struct access *a2 = NULL;
    unsigned char secret[32];
    memset(secret, 7, sizeof(secret));
    ASSERT_EQ(store_open_sqlite(path, &s2, &err), 0);
    ASSERT_EQ(access_open(s2, secret, &a2, &err), 0);
    char h[256];
    snprintf(h, sizeof(h), "Bearer %s", key);
    ASSERT_EQ(access_authenticate(a2, h, &p, &err), THAW_EDENIED);
    access_free(a2);
    store_close(s2);
    ASSERT_EQ(auth(key, &p, &err), 0);
}

int main(void)
{
    if (!mkdtemp(dir)) return 1;
    char path[256];
    snprintf(path, sizeof(path), "%s/thaw.db", dir);
    struct thaw_err err = {0};
    unsigned char secret[32];
    memset(secret, 3, sizeof(secret));
    char generated[SECURITY_KEY_STR_SIZE];
    bool was = false;
    if (store_open_sqlite(path, &S, &err) || access_open(S, secret, &A, &err) ||
        access_bootstrap(A, NULL, generated, &was, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    RUN(test_cached_key_checks);
    RUN(test_two_accesses);
    access_free(A);
    store_close(S);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cannot remove %s\n", dir);
    return TEST_REPORT();
}
