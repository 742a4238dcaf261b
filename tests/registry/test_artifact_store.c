/* The artifact store on its own: puts, dedupe, digest mismatches, upload
 * sessions (offsets, limits, resume after the store is reopened), races of
 * the same blob, garbage collection and session expiry, hostile names. */
#include "registry/registry.h"
#include "test.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];
static struct artifact_store *S;

static void open_store(int64_t chunk_max, int64_t ttl_ms)
{
    artifact_store_free(S);
    struct artifact_store_config c = {root, chunk_max, ttl_ms};
    struct thaw_err err = {0};
    S = NULL;
    if (artifact_store_open(&c, &S, &err)) fprintf(stderr, "open: %s\n", err.msg);
}

static void sha256_hex(const void *d, size_t n, char out[ARTIFACT_DIGEST_SIZE])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(d, n, md, &len, EVP_sha256(), NULL);
    strcpy(out, "sha256:");
    for (int i = 0; i < 32; i++)
        sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

static char *pattern(size_t n, unsigned seed)
{
    char *p = malloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (char)x;
    }
    return p;
}

static int count_files(const char *sub)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "find '%s/%s' -type f | wc -l", root, sub);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f) {
        if (fscanf(f, "%d", &n) != 1) n = -1;
        pclose(f);
    }
    return n;
}

/* Reads a blob back whole. */
static char *read_blob(const char *digest, int64_t *size)
{
    int fd;
    if (artifact_open(S, digest, &fd, size, NULL)) return NULL;
    char *b = malloc((size_t)*size + 1);
    ssize_t got = pread(fd, b, (size_t)*size, 0);
    close(fd);
    if (got != *size) {
        free(b);
        return NULL;
    }
    return b;
}

static void test_put_get_dedupe(void)
{
    char *d = pattern(100000, 1), want[ARTIFACT_DIGEST_SIZE];
    sha256_hex(d, 100000, want);
    /* Split across uneven pieces: the digest covers them in order. */
    struct iovec iov[3] = {{d, 10}, {d + 10, 0}, {d + 10, 99990}};
    struct artifact_info info;
    struct thaw_err err = {0};
    ASSERT_EQ(artifact_put(S, iov, 3, NULL, &info, &err), 0);
    ASSERT_STR_EQ(info.digest, want);
    ASSERT_EQ(info.size, 100000);
    ASSERT(info.created);
    ASSERT(artifact_digest_valid(info.digest));
    /* Again, with the expected digest: nothing rewritten. */
    ASSERT_EQ(artifact_put(S, iov, 3, want, &info, &err), 0);
    ASSERT(!info.created);
    int64_t size = 0;
    ASSERT_EQ(artifact_stat(S, want, &size, NULL), 0);
    ASSERT_EQ(size, 100000);
    char *back = read_blob(want, &size);
    ASSERT(back != NULL);
    ASSERT(memcmp(back, d, 100000) == 0);
    free(back);
    free(d);
    ASSERT_EQ(count_files("tmp"), 0);
}

static void test_put_mismatch_keeps_nothing(void)
{
    char *d = pattern(5000, 2), want[ARTIFACT_DIGEST_SIZE], got[ARTIFACT_DIGEST_SIZE];
    sha256_hex(d, 5000, got);
    d[17] ^= 1; /* the expected digest is of the original; the data is corrupted */
    sha256_hex(d, 5000, want);
    d[17] ^= 1;
    struct iovec iov = {d, 5000};
    struct artifact_info info;
    struct thaw_err err = {0};
    ASSERT_EQ(artifact_put(S, &iov, 1, want, &info, &err), THAW_ECONFLICT);
    ASSERT_CONTAINS(err.msg, want);
    ASSERT_CONTAINS(err.msg, got);
    ASSERT_EQ(artifact_stat(S, want, NULL, NULL), THAW_ENOTFOUND);
    ASSERT_EQ(artifact_stat(S, got, NULL, NULL), THAW_ENOTFOUND);
    ASSERT_EQ(count_files("tmp"), 0);
    /* A malformed expected digest is bad input, not a mismatch. */
    ASSERT_EQ(artifact_put(S, &iov, 1, "sha256:XYZ", &info, &err), THAW_EINVAL);
    free(d);
}

static void test_put_over_limit(void)
{
    open_store(4096, 0);
    char *d = pattern(4097, 3);
    struct iovec iov = {d, 4097};
    struct artifact_info info;
    struct thaw_err err = {0};
    ASSERT_EQ(artifact_put(S, &iov, 1, NULL, &info, &err), THAW_ERANGE);
    ASSERT_CONTAINS(err.msg, "upload session");
    iov.iov_len = 4096;
    ASSERT_EQ(artifact_put(S, &iov, 1, NULL, &info, &err), 0);
    free(d);
    open_store(1 << 20, 0);
}

static void test_digest_and_names_hostile(void)
{
    static const char *bad[] = {
        "",
        "sha256:",
        "sha256:../../../etc/passwd",
        "sha512:0000000000000000000000000000000000000000000000000000000000000000",
        "sha256:000000000000000000000000000000000000000000000000000000000000000",
        "sha256:00000000000000000000000000000000000000000000000000000000000000000",
        "sha256:ABCDEF0000000000000000000000000000000000000000000000000000000000"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        ASSERT(!artifact_digest_valid(bad[i]));
        ASSERT_EQ(artifact_stat(S, bad[i], NULL, NULL), THAW_ENOTFOUND);
    }
    ASSERT(!artifact_digest_valid(NULL));
    struct artifact_upload_info u;
    ASSERT_EQ(artifact_upload_stat(S, "../../tmp", &u, NULL), THAW_ENOTFOUND);
    ASSERT_EQ(artifact_upload_stat(S, "0123456789abcdef0123456789abcdeX", &u, NULL),
              THAW_ENOTFOUND);
    ASSERT_EQ(artifact_upload_stat(S, "0123456789abcdef0123456789abcdef", &u, NULL),
              THAW_ENOTFOUND);
    ASSERT_EQ(artifact_upload_abort(S, "", NULL), THAW_ENOTFOUND);
}

static void test_session_offsets_and_complete(void)
{
    size_t n = 300000;
    char *d = pattern(n, 4), want[ARTIFACT_DIGEST_SIZE];
    sha256_hex(d, n, want);
    struct artifact_upload_info u, v;
    struct thaw_err err = {0};
    ASSERT_EQ(artifact_upload_create(S, (int64_t)n, &u, &err), 0);
    ASSERT_EQ(strlen(u.id), 32);
    ASSERT_EQ(u.offset, 0);
    ASSERT_EQ(u.size, (int64_t)n);
    struct iovec a = {d, 100000}, b = {d + 100000, 100000}, c = {d + 200000, 100000};
    ASSERT_EQ(artifact_upload_append(S, u.id, 0, &a, 1, &v, &err), 0);
    ASSERT_EQ(v.offset, 100000);
    /* A retry of the same chunk (the answer was lost) is a conflict that says where to go on. */
    ASSERT_EQ(artifact_upload_append(S, u.id, 0, &a, 1, &v, &err), THAW_ECONFLICT);
    ASSERT_EQ(v.offset, 100000);
    ASSERT_EQ(artifact_upload_append(S, u.id, 200000, &c, 1, &v, &err), THAW_ECONFLICT);
    ASSERT_EQ(artifact_upload_append(S, u.id, 100000, &b, 1, &v, &err), 0);
    /* Truncated: completing before the declared size arrived keeps the session. */
    struct artifact_info info;
    ASSERT_EQ(artifact_upload_complete(S, u.id, want, &info, &err), THAW_ESTATE);
    ASSERT_CONTAINS(err.msg, "200000 of 300000");
    ASSERT_EQ(artifact_stat(S, want, NULL, NULL), THAW_ENOTFOUND);
    /* Past the declared size is refused, and nothing of it kept. */
    struct iovec big = {d, 100001};
    ASSERT_EQ(artifact_upload_append(S, u.id, 200000, &big, 1, &v, &err), THAW_ERANGE);
    ASSERT_EQ(artifact_upload_stat(S, u.id, &v, &err), 0);
    ASSERT_EQ(v.offset, 200000);
    ASSERT_EQ(artifact_upload_append(S, u.id, 200000, &c, 1, &v, &err), 0);
    ASSERT_EQ(artifact_upload_complete(S, u.id, want, &info, &err), 0);
    ASSERT_STR_EQ(info.digest, want);
    ASSERT_EQ(info.size, (int64_t)n);
    ASSERT(info.created);
    int64_t size;
    char *back = read_blob(want, &size);
    ASSERT(back && size == (int64_t)n && memcmp(back, d, n) == 0);
    free(back);
    /* The session is gone. */
    ASSERT_EQ(artifact_upload_stat(S, u.id, &v, &err), THAW_ENOTFOUND);
    ASSERT_EQ(artifact_upload_append(S, u.id, n, &a, 1, &v, &err), THAW_ENOTFOUND);
    ASSERT_EQ(count_files("uploads"), 0);
    free(d);
}

static void test_session_chunk_limit(void)
{
    open_store(1000, 0);
    char *d = pattern(1001, 5);
    struct artifact_upload_info u, v;
    struct thaw_err err = {0};
    ASSERT_EQ(artifact_upload_create(S, -1, &u, &err), 0);
    ASSERT_EQ(u.size, -1);
    struct iovec x = {d, 1001};
    ASSERT_EQ(artifact_upload_append(S, u.id, 0, &x, 1, &v, &err), THAW_ERANGE);
    x.iov_len = 1000;
    ASSERT_EQ(artifact_upload_append(S, u.id, 0, &x, 1, &v, &err), 0);
    ASSERT_EQ(artifact_upload_abort(S, u.id, &err), 0);
    ASSERT_EQ(artifact_upload_stat(S, u.id, &v, &err), THAW_ENOTFOUND);
    ASSERT_EQ(count_files("uploads"), 0);
    free(d);
    open_store(1 << 20, 0);
}

static void test_session_mismatch_discards(void)
{
    char *d = pattern(50000, 6), want[ARTIFACT_DIGEST_SIZE], got[ARTIFACT_DIGEST_SIZE];
    sha256_hex(d, 50000, want);
    d[49999] ^= 0x80;
    sha256_hex(d, 50000, got);
    struct artifact_upload_info u;
    struct thaw_err err = {0};
    ASSERT_EQ(artifact_upload_create(S, -1, &u, &err), 0);
    struct iovec x = {d, 50000};
    ASSERT_EQ(artifact_upload_append(S, u.id, 0, &x, 1, NULL, &err), 0);
    struct artifact_info info;
    ASSERT_EQ(artifact_upload_complete(S, u.id, want, &info, &err), THAW_ECONFLICT);
    ASSERT_CONTAINS(err.msg, want);
    ASSERT_CONTAINS(err.msg, got);
    ASSERT_EQ(artifact_stat(S, want, NULL, NULL), THAW_ENOTFOUND);
    ASSERT_EQ(artifact_stat(S, got, NULL, NULL), THAW_ENOTFOUND);
    ASSERT_EQ(artifact_upload_stat(S, u.id, &u, &err), THAW_ENOTFOUND);
    ASSERT_EQ(count_files("uploads"), 0);
    free(d);
}

static void test_session_survives_reopen(void)
{
    size_t n = 3 << 20;
    char *d = pattern(n, 7), want[ARTIFACT_DIGEST_SIZE];
    sha256_hex(d, n, want);
    struct artifact_upload_info u, v;
    struct thaw_err err = {0};
    ASSERT_EQ(artifact_upload_create(S, (int64_t)n, &u, &err), 0);
    struct iovec a = {d, 1 << 20};
    ASSERT_EQ(artifact_upload_append(S, u.id, 0, &a, 1, NULL, &err), 0);
    /* A new store over the same root is a restarted node: the hash state is
     * rebuilt from the partial file. */
    open_store(1 << 20, 0);
    ASSERT_EQ(artifact_upload_stat(S, u.id, &v, &err), 0);
    ASSERT_EQ(v.offset, 1 << 20);
    ASSERT_EQ(v.size, (int64_t)n);
    for (size_t off = 1 << 20; off < n; off += 1 << 20) {
        struct iovec x = {d + off, 1 << 20};
        ASSERT_EQ(artifact_upload_append(S, u.id, (int64_t)off, &x, 1, NULL, &err), 0);
    }
    struct artifact_info info;
    ASSERT_EQ(artifact_upload_complete(S, u.id, want, &info, &err), 0);
    ASSERT_STR_EQ(info.digest, want);
    free(d);
}

struct race {
    const char *data;
    size_t len;
    bool session;
    int rc;
    struct artifact_info info;
};

static void *race_main(void *arg)
{
    struct race *r = arg;
    struct thaw_err err = {0};
    if (!r->session) {
        struct iovec x = {(void *)r->data, r->len};
        r->rc = artifact_put(S, &x, 1, NULL, &r->info, &err);
        return NULL;
    }
    struct artifact_upload_info u;
    r->rc = artifact_upload_create(S, (int64_t)r->len, &u, &err);
    for (size_t off = 0; !r->rc && off < r->len; off += 65536) {
        struct iovec x = {(void *)(r->data + off), MIN(65536, r->len - off)};
        r->rc = artifact_upload_append(S, u.id, (int64_t)off, &x, 1, NULL, &err);
    }
    if (!r->rc) r->rc = artifact_upload_complete(S, u.id, NULL, &r->info, &err);
    return NULL;
}

static void test_same_blob_concurrently(void)
{
    size_t n = 700000;
    char *d = pattern(n, 8), want[ARTIFACT_DIGEST_SIZE];
    sha256_hex(d, n, want);
    struct race r[6];
    pthread_t t[6];
    for (int i = 0; i < 6; i++) {
        r[i] = (struct race){.data = d, .len = n, .session = i % 2 == 1, .rc = -1};
        pthread_create(&t[i], NULL, race_main, &r[i]);
    }
    int created = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        ASSERT_EQ(r[i].rc, 0);
        ASSERT_STR_EQ(r[i].info.digest, want);
        created += r[i].info.created;
    }
    ASSERT_EQ(created, 1);
    int64_t size;
    char *back = read_blob(want, &size);
    ASSERT(back && size == (int64_t)n && memcmp(back, d, n) == 0);
    free(back);
    ASSERT_EQ(count_files("tmp"), 0);
    ASSERT_EQ(count_files("uploads"), 0);
    free(d);
}

struct removed_log {
    int n;
    char last[ARTIFACT_DIGEST_SIZE];
};

static void on_removed(void *ctx, const char *digest, int64_t size)
{
    struct removed_log *l = ctx;
    l->n++;
    str_copy(l->last, digest, sizeof(l->last));
}

static int put_bytes(const char *s, char out[ARTIFACT_DIGEST_SIZE])
{
    struct iovec x = {(void *)s, strlen(s)};
    struct artifact_info info;
    int rc = artifact_put(S, &x, 1, NULL, &info, NULL);
    str_copy(out, info.digest, ARTIFACT_DIGEST_SIZE);
    return rc;
}

static int count_cb(void *ctx, const char *digest, int64_t size)
{
    (*(int *)ctx)++;
    return 0;
}

static void test_gc(void)
{
    open_store(1 << 20, 0);
    struct thaw_err err = {0};
    /* Start from an empty namespace. */
    struct artifact_gc_opts all = {0};
    struct artifact_gc_stats st;
    ASSERT_EQ(artifact_gc(S, &all, &st, &err), 0);
    char keep[ARTIFACT_DIGEST_SIZE], drop[ARTIFACT_DIGEST_SIZE];
    ASSERT_EQ(put_bytes("a referenced blob", keep), 0);
    ASSERT_EQ(put_bytes("an unreferenced blob", drop), 0);
    /* An upload in progress, with the same bytes as the dropped blob. */
    struct artifact_upload_info u;
    ASSERT_EQ(artifact_upload_create(S, -1, &u, &err), 0);
    struct iovec x = {"an unreferenced blob", 20};
    ASSERT_EQ(artifact_upload_append(S, u.id, 0, &x, 1, NULL, &err), 0);

    struct artifact_refs refs = {0};
    json_t *spec = json_pack("{s:s, s:{s:[s]}}", "name", "x", "env", "list",
                             "MODEL=sha256:0000000000000000000000000000000000000000000000000000"
                             "000000000000");
    ASSERT_EQ(artifact_refs_scan_json(&refs, spec), 0);
    json_decref(spec);
    char inside[200];
    snprintf(inside, sizeof(inside), "weights at %s, please", keep);
    json_t *spec2 = json_pack("{s:[s]}", "artifacts", inside);
    ASSERT_EQ(artifact_refs_scan_json(&refs, spec2), 0);
    json_decref(spec2);
    ASSERT_EQ(refs.n, 2);
    ASSERT(artifact_refs_has(&refs, keep));
    ASSERT(!artifact_refs_has(&refs, drop));

    /* Young blobs survive a GC with a grace period. */
    struct removed_log log = {0};
    struct artifact_gc_opts o = {
        artifact_refs_contains_cb, &refs, 3600 * 1000, false, on_removed, &log};
    ASSERT_EQ(artifact_gc(S, &o, &st, &err), 0);
    ASSERT_EQ(st.removed, 0);
    ASSERT_EQ(st.kept_young, 1);
    ASSERT_EQ(st.kept_referenced, 1);
    /* A dry run reports, removes nothing. */
    o.min_age_ms = 0;
    o.dry_run = true;
    ASSERT_EQ(artifact_gc(S, &o, &st, &err), 0);
    ASSERT_EQ(st.removed, 1);
    ASSERT_EQ(artifact_stat(S, drop, NULL, NULL), 0);
    o.dry_run = false;
    ASSERT_EQ(artifact_gc(S, &o, &st, &err), 0);
    ASSERT_EQ(st.removed, 1);
    ASSERT_EQ(st.removed_bytes, 20);
    ASSERT_EQ(log.n, 2);
    ASSERT_STR_EQ(log.last, drop);
    ASSERT_EQ(artifact_stat(S, drop, NULL, NULL), THAW_ENOTFOUND);
    ASSERT_EQ(artifact_stat(S, keep, NULL, NULL), 0);
    int n = 0;
    ASSERT_EQ(artifact_list(S, count_cb, &n, &err), 0);
    ASSERT_EQ(n, 1);
    /* The session was not touched and still completes. */
    ASSERT_EQ(st.expired_uploads, 0);
    struct artifact_info info;
    ASSERT_EQ(artifact_upload_complete(S, u.id, drop, &info, &err), 0);
    ASSERT_EQ(artifact_stat(S, drop, NULL, NULL), 0);
    artifact_refs_free(&refs);
    artifact_refs_free(&refs); /* twice is fine */
}

static void test_sessions_expire(void)
{
    open_store(1 << 20, 150);
    struct thaw_err err = {0};
    struct artifact_upload_info idle, busy;
    ASSERT_EQ(artifact_upload_create(S, -1, &idle, &err), 0);
    ASSERT_EQ(artifact_upload_create(S, -1, &busy, &err), 0);
    usleep(250 * 1000);
    struct iovec x = {"more", 4};
    ASSERT_EQ(artifact_upload_append(S, busy.id, 0, &x, 1, NULL, &err), 0);
    ASSERT_EQ(artifact_uploads_expire(S, &err), 1);
    ASSERT_EQ(artifact_upload_stat(S, idle.id, &idle, &err), THAW_ENOTFOUND);
    ASSERT_EQ(artifact_upload_stat(S, busy.id, &busy, &err), 0);
    ASSERT_EQ(busy.offset, 4);
    /* Sessions left on disk by an earlier run expire too. */
    usleep(250 * 1000);
    open_store(1 << 20, 150);
    struct artifact_gc_opts o = {0};
    struct artifact_gc_stats st;
    ASSERT_EQ(artifact_gc(S, &o, &st, &err), 0);
    ASSERT_EQ(st.expired_uploads, 1);
    ASSERT_EQ(count_files("uploads"), 0);
    open_store(1 << 20, 0);
}

static void test_tmp_cleaned_on_open(void)
{
    char p[400];
    snprintf(p, sizeof(p), "%s/tmp/leftover", root);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    ASSERT(fd >= 0);
    ASSERT_EQ(write(fd, "half", 4), 4);
    close(fd);
    open_store(1 << 20, 0);
    ASSERT_EQ(count_files("tmp"), 0);
    /* A bad root is an error, not a crash. */
    struct artifact_store *s2 = NULL;
    struct artifact_store_config c = {"/proc/no/such/place", 100, 0};
    struct thaw_err err = {0};
    ASSERT(artifact_store_open(&c, &s2, &err) != 0);
    ASSERT(s2 == NULL);
    ASSERT(err.msg[0] != 0);
    artifact_store_free(NULL);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/thaw-art-XXXXXX");
    if (!mkdtemp(root)) return 1;
    open_store(1 << 20, 0);
    if (!S) return 1;
    RUN(test_put_get_dedupe);
    RUN(test_put_mismatch_keeps_nothing);
    RUN(test_put_over_limit);
    RUN(test_digest_and_names_hostile);
    RUN(test_session_offsets_and_complete);
    RUN(test_session_chunk_limit);
    RUN(test_session_mismatch_discards);
    RUN(test_session_survives_reopen);
    RUN(test_same_blob_concurrently);
    RUN(test_gc);
    RUN(test_sessions_expire);
    RUN(test_tmp_cleaned_on_open);
    artifact_store_free(S);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    return TEST_REPORT();
}
