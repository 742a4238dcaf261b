/* What finding a key and its tenant costs as a node holds more of them:
 * access_authenticate (a key this thread verified before, so the lookup
 * and the live-record checks, not the hash), access_admit with the tenant's
 * and the key's limits, access_tenant_exists and access_usage_record (every
 * tenant active today), on a real SQLite store holding 10 keys and 10,000
 * (one tenant per 10 keys), the key looked up being the last created.
 * Prints ns/op and the 10,000:10 ratio of the same run (1.0 = independent
 * of the count).
 * usage: bench_access [iterations-scale] [large-count] */
#include "access/access.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const struct access_principal ROOT = {
    .key_id = "root", .tenant = ACCESS_ROOT_TENANT, .scopes = ~0u, .platform_admin = true};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile size_t sink;

struct env {
    char dir[96];
    struct store *s;
    struct access *a;
    char hdr[128], tenant[32];
    struct access_principal p;
    double build_s;
};

struct result {
    double ns[4]; /* authenticate, admit + release, tenant exists, usage record */
};

/* A store with n_keys keys, one tenant per 10, under a temporary dir. */
static int setup(struct env *e, int n_keys)
{
    struct stat st;
    /* tmpfs when there is one: building 10,000 keys is that many commits */
    snprintf(e->dir, sizeof(e->dir), "%s/thaw-bench-access-XXXXXX",
             stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (!mkdtemp(e->dir)) return -1;
    char path[160];
    snprintf(path, sizeof(path), "%s/thaw.db", e->dir);
    struct thaw_err err = {0};
    unsigned char secret[32] = {9};
    int rc = store_open_sqlite(path, &e->s, &err);
    if (!rc) rc = access_open(e->s, secret, &e->a, &err);
    char key[SECURITY_KEY_STR_SIZE];
    double t0 = now_s();
    json_t *body = json_pack("{s:[s], s:{s:i}}", "scopes", "invoke", "limits", "rps", 1000000);
    json_t *tl = json_pack("{s:i, s:i}", "rps", 1000000, "daily_requests", 1000000000);
    for (int i = 0; !rc && i < n_keys; i++) {
        json_t *o = NULL;
        if (i % 10 == 0) {
            snprintf(e->tenant, sizeof(e->tenant), "tenant-%d", i / 10);
            rc = access_tenant_create(e->a, &ROOT, e->tenant, tl, &o, &err);
            json_decref(o);
            o = NULL;
            /* every tenant active today: usage finds its day among them */
            access_usage_record(e->a, e->tenant, "dep", false, 1, 1);
        }
        if (!rc) rc = access_key_create(e->a, &ROOT, e->tenant, body, key, &o, &err);
        json_decref(o);
    }
    json_decref(body);
    json_decref(tl);
    e->build_s = now_s() - t0;
    snprintf(e->hdr, sizeof(e->hdr), "Bearer %s", key);
    if (!rc) rc = access_authenticate(e->a, e->hdr, &e->p, &err);
    if (rc) fprintf(stderr, "bench_access: %s\n", err.msg);
    return rc;
}

static void teardown(struct env *e)
{
    access_free(e->a);
    store_close(e->s);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_access: cannot remove %s\n", e->dir);
}

static void measure(struct env *e, long iters, struct result *r)
{
    struct thaw_err err = {0};
    struct access_principal p;
    double t0 = now_s();
    for (long i = 0; i < iters; i++)
        sink += (size_t)access_authenticate(e->a, e->hdr, &p, &err);
    r->ns[0] = (now_s() - t0) * 1e9 / (double)iters;
    t0 = now_s();
    for (long i = 0; i < iters; i++) {
        struct access_admission adm;
        access_admit(e->a, &e->p, &adm);
        sink += adm.allowed;
        access_release(e->a, &e->p, &adm);
    }
    r->ns[1] = (now_s() - t0) * 1e9 / (double)iters;
    t0 = now_s();
    for (long i = 0; i < iters; i++)
        sink += access_tenant_exists(e->a, e->tenant);
    r->ns[2] = (now_s() - t0) * 1e9 / (double)iters;
    t0 = now_s();
    for (long i = 0; i < iters; i++)
        access_usage_record(e->a, e->tenant, "dep", false, 1, 1);
    r->ns[3] = (now_s() - t0) * 1e9 / (double)iters;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

#define ROUNDS 5

int main(int argc, char **argv)
{
    long iters = 200000;
    if (argc > 1) iters = (long)(atof(argv[1]) * (double)iters);
    int large = argc > 2 ? atoi(argv[2]) : 10000;
    if (iters < 1000) iters = 1000;
    if (large < 20) large = 20;
    struct env e[2];
    memset(e, 0, sizeof(e));
    if (setup(&e[0], 10) || setup(&e[1], large)) return 1;
    /* Both sets live at once, measured in alternating rounds (medians), so
     * a machine whose speed drifts during the run affects both alike. */
    struct result warm, r[2][ROUNDS];
    measure(&e[0], iters / 2, &warm);
    for (int k = 0; k < ROUNDS; k++)
        for (int i = 0; i < 2; i++)
            measure(&e[i], iters, &r[i][k]);
    printf("access lookups: 10 keys (1 tenant) vs %d keys (%d tenants), last key created, "
           "%ld iterations x %d alternating rounds, medians\n",
           large, large / 10, iters, ROUNDS);
    printf("  %-40s %10s %10s %8s\n", "", "10 keys", "large", "ratio");
    const char *labels[4] = {"authenticate (verified key, cached)", "admit + release (limits)",
                             "tenant exists", "usage record (tenant's day)"};
    for (int m = 0; m < 4; m++) {
        double med[2];
        for (int i = 0; i < 2; i++) {
            double v[ROUNDS];
            for (int k = 0; k < ROUNDS; k++)
                v[k] = r[i][k].ns[m];
            qsort(v, ROUNDS, sizeof(v[0]), cmp_double);
            med[i] = v[ROUNDS / 2];
        }
        printf("  %-40s %7.1f ns %7.1f ns %7.2fx\n", labels[m], med[0], med[1], med[1] / med[0]);
    }
    printf("  (building the large set: %.1f s)\n", e[1].build_s);
    teardown(&e[0]);
    teardown(&e[1]);
    return sink == 42 ? 1 : 0;
}
