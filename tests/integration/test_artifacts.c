/* Artifacts through the real binary: exact bytes back, digest mismatches,
 * oversized, truncated, corrupted and interrupted uploads, the same blob
 * uploaded concurrently, kill -9 of the node during an upload (no blob under
 * the digest, the session resumes after a restart), GC sparing referenced
 * blobs and uploads in progress, session expiry, and `thaw push` of a
 * multi-chunk file resuming after the client is killed. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define CHUNK     (1 << 20) /* the node's --artifact-chunk-max in these tests */
#define AUTH      "Authorization: Bearer " TEST_ADMIN_KEY

static struct node N;

static void str_copy(char *dst, const char *src, size_t n)
{
    snprintf(dst, n, "%s", src);
}

/* ---- helpers ---- */

static char *pattern(size_t n, unsigned seed)
{
    char *p = malloc(n ? n : 1);
    uint32_t x = seed * 2654435761u + 7;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (char)(x >> 8);
    }
    return p;
}

static void sha256_of(const void *d, size_t n, char out[80])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(d, n, md, &len, EVP_sha256(), NULL);
    strcpy(out, "sha256:");
    for (int i = 0; i < 32; i++)
        sprintf(out + 7 + 2 * i, "%02x", md[i]);
}

struct bin {
    char *data;
    size_t len;
};

static size_t bin_cb(char *d, size_t s, size_t n, void *arg)
{
    struct bin *b = arg;
    char *p = realloc(b->data, b->len + s * n + 1);
    if (!p) return 0;
    memcpy(p + b->len, d, s * n);
    b->len += s * n;
    p[b->len] = 0;
    b->data = p;
    return s * n;
}

static size_t hdr_cb(char *d, size_t s, size_t n, void *arg)
{
    struct resp *r = arg;
    size_t have = strlen(r->headers), add = s * n;
    if (have + add < sizeof(r->headers)) {
        memcpy(r->headers + have, d, add);
        r->headers[have + add] = 0;
    }
    return add;
}

/* A request with a binary body (may be NULL) and extra headers; the reply
 * body is r->body (NUL-terminated) and its length *out_len. */
static int req(const struct node *n, const char *method, const char *path, const void *body,
               size_t len, const char *const *headers, struct resp *r, size_t *out_len)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", n->port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    bool own_auth = false;
    for (int i = 0; headers && headers[i]; i++) {
        h = curl_slist_append(h, headers[i]);
        own_auth |= strncmp(headers[i], "Authorization:", 14) == 0;
    }
    if (!own_auth) h = curl_slist_append(h, AUTH);
    struct bin b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, bin_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, hdr_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    r->body = b.data ? b.data : calloc(1, 1);
    if (out_len) *out_len = b.len;
    return cc == CURLE_OK ? 0 : -1;
}

static long post_json(const char *path, const char *json, json_t **out)
{
    struct resp r;
    const char *h[] = {"Content-Type: application/json", NULL};
    req(&N, "POST", path, json, json ? strlen(json) : 0, h, &r, NULL);
    if (out) *out = resp_json(&r);
    long st = r.status;
    resp_free(&r);
    return st;
}

static long patch(const char *id, int64_t offset, const void *d, size_t n, json_t **out)
{
    char path[128], off[64];
    snprintf(path, sizeof(path), "/v1/artifacts/uploads/%s", id);
    snprintf(off, sizeof(off), "Upload-Offset: %lld", (long long)offset);
    const char *h[] = {off, "Content-Type: application/offset+octet-stream", NULL};
    struct resp r;
    req(&N, "PATCH", path, d, n, h, &r, NULL);
    if (out) *out = resp_json(&r);
    long st = r.status;
    resp_free(&r);
    return st;
}

/* Starts a session; returns its id in id (33 bytes) or "" on failure. */
static void session(int64_t size, char *id)
{
    char body[64] = "";
    if (size >= 0) snprintf(body, sizeof(body), "{\"size\":%lld}", (long long)size);
    json_t *j = NULL;
    long st = post_json("/v1/artifacts/uploads", body[0] ? body : NULL, &j);
    const char *v = json_string_value(json_object_get(j, "id"));
    str_copy(id, st == 201 && v ? v : "", 33);
    json_decref(j);
}

static long complete(const char *id, const char *digest, json_t **out)
{
    char path[128], body[128];
    snprintf(path, sizeof(path), "/v1/artifacts/uploads/%s/complete", id);
    snprintf(body, sizeof(body), "{\"digest\":\"%s\"}", digest);
    return post_json(path, body, out);
}

/* GET a blob; returns the status, with the bytes in *data (free). */
static long get_blob(const char *digest, char **data, size_t *len)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/artifacts/%s", digest);
    struct resp r;
    req(&N, "GET", path, NULL, 0, NULL, &r, len);
    *data = r.body;
    return r.status;
}

static int64_t upload_offset(const char *id)
{
    char path[128], v[32];
    snprintf(path, sizeof(path), "/v1/artifacts/uploads/%s", id);
    struct resp r;
    req(&N, "HEAD", path, NULL, 0, NULL, &r, NULL);
    int64_t off = r.status == 200 && resp_header(&r, "Upload-Offset", v, sizeof(v)) ? atoll(v) : -1;
    resp_free(&r);
    return off;
}

static bool blob_file_exists(const char *digest)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/artifacts/sha256/%.2s/%s", N.data, digest + 7, digest + 9);
    return access(p, F_OK) == 0;
}

static int files_in(const char *sub)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "find '%s/artifacts/%s' -type f 2>/dev/null | wc -l", N.data, sub);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f && fscanf(f, "%d", &n) != 1) n = -1;
    if (f) pclose(f);
    return n;
}

/* ---- tests ---- */

static void test_put_get_exact_bytes(void)
{
    size_t n = 300000;
    char *d = pattern(n, 1), want[80];
    d[0] = 0; /* binary, NULs included */
    sha256_of(d, n, want);
    struct resp r;
    ASSERT_EQ(req(&N, "POST", "/v1/artifacts", d, n, NULL, &r, NULL), 0);
    ASSERT_EQ(r.status, 201);
    json_t *j = resp_json(&r);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "digest")), want);
    ASSERT_EQ(json_integer_value(json_object_get(j, "size")), (long long)n);
    json_decref(j);
    resp_free(&r);
    /* Again: already stored, 200, nothing rewritten. */
    ASSERT_EQ(req(&N, "POST", "/v1/artifacts", d, n, NULL, &r, NULL), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    char *back;
    size_t len;
    ASSERT_EQ(get_blob(want, &back, &len), 200);
    ASSERT_EQ(len, n);
    ASSERT(memcmp(back, d, n) == 0);
    free(back);
    char path[128], v[100];
    snprintf(path, sizeof(path), "/v1/artifacts/%s", want);
    ASSERT_EQ(req(&N, "HEAD", path, NULL, 0, NULL, &r, NULL), 0);
    ASSERT_EQ(r.status, 200);
    ASSERT_STR_EQ(resp_header(&r, "Content-Length", v, sizeof(v)), "300000");
    ASSERT_STR_EQ(resp_header(&r, "x-thaw-digest", v, sizeof(v)), want);
    resp_free(&r);
    /* An empty blob is a blob. */
    char empty[80];
    sha256_of("", 0, empty);
    ASSERT_EQ(req(&N, "POST", "/v1/artifacts", "", 0, NULL, &r, NULL), 0);
    ASSERT(r.status == 201 || r.status == 200);
    resp_free(&r);
    ASSERT_EQ(get_blob(empty, &back, &len), 200);
    ASSERT_EQ(len, 0);
    free(back);
    free(d);
}

static void test_errors_are_json(void)
{
    char *back;
    size_t len;
    const char *absent = "sha256:00000000000000000000000000000000000000000000000000000000000000ff";
    ASSERT_EQ(get_blob(absent, &back, &len), 404);
    ASSERT_CONTAINS(back, "\"not_found\"");
    free(back);
    ASSERT_EQ(get_blob("sha256:..%2F..%2Fthaw.db", &back, &len), 400);
    ASSERT_CONTAINS(back, "\"invalid_digest\"");
    free(back);
    ASSERT_EQ(get_blob("../thaw.db", &back, &len), 404); /* collapsed to /v1/thaw.db */
    free(back);
    struct resp r;
    ASSERT_EQ(req(&N, "DELETE", "/v1/artifacts/x", NULL, 0, NULL, &r, NULL), 0);
    ASSERT_EQ(r.status, 405);
    resp_free(&r);
    ASSERT_EQ(post_json("/v1/artifacts/uploads", "{\"size\":-1}", NULL), 400);
    ASSERT_EQ(post_json("/v1/artifacts/uploads", "[1,2", NULL), 400);
    ASSERT_EQ(patch("0123456789abcdef0123456789abcdef", 0, "x", 1, NULL), 404);
    ASSERT_EQ(patch("../../../etc", 0, "x", 1, NULL), 404);
    char id[33];
    session(-1, id);
    ASSERT_EQ(strlen(id), 32);
    char path[128];
    snprintf(path, sizeof(path), "/v1/artifacts/uploads/%s", id);
    const char *bad[] = {"Upload-Offset: -1", NULL};
    ASSERT_EQ(req(&N, "PATCH", path, "x", 1, bad, &r, NULL), 0);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "invalid_offset");
    resp_free(&r);
    ASSERT_EQ(req(&N, "PATCH", path, "x", 1, NULL, &r, NULL), 0); /* no offset at all */
    ASSERT_EQ(r.status, 400);
    resp_free(&r);
    /* Completing needs the expected digest. */
    snprintf(path, sizeof(path), "/v1/artifacts/uploads/%s/complete", id);
    ASSERT_EQ(post_json(path, NULL, NULL), 400);
    ASSERT_EQ(post_json(path, "{\"digest\":\"md5:abc\"}", NULL), 400);
    /* A key is needed. */
    const char *noauth[] = {"Authorization:", NULL};
    ASSERT_EQ(req(&N, "GET", "/v1/artifacts", NULL, 0, noauth, &r, NULL), 0);
    ASSERT_EQ(r.status, 401);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v1/artifacts/uploads/%s", id);
    ASSERT_EQ(req(&N, "DELETE", path, NULL, 0, NULL, &r, NULL), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT_EQ(upload_offset(id), -1);
}

static void test_digest_mismatch_keeps_nothing(void)
{
    size_t n = 200000;
    char *d = pattern(n, 2), want[80], got[80], path[200];
    sha256_of(d, n, want);
    d[12345] ^= 0x10; /* corrupted in transit */
    sha256_of(d, n, got);
    snprintf(path, sizeof(path), "/v1/artifacts?digest=%s", want);
    struct resp r;
    ASSERT_EQ(req(&N, "POST", path, d, n, NULL, &r, NULL), 0);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "digest_mismatch");
    ASSERT_CONTAINS(r.body, want);
    ASSERT_CONTAINS(r.body, got);
    resp_free(&r);
    ASSERT(!blob_file_exists(want));
    ASSERT(!blob_file_exists(got));
    ASSERT_EQ(files_in("tmp"), 0);
    /* The same through a session: the mismatch ends it, nothing kept. */
    char id[33];
    session((int64_t)n, id);
    ASSERT_EQ(patch(id, 0, d, n, NULL), 200);
    json_t *j = NULL;
    ASSERT_EQ(complete(id, want, &j), 400);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                  "digest_mismatch");
    json_decref(j);
    ASSERT(!blob_file_exists(want));
    ASSERT(!blob_file_exists(got));
    ASSERT_EQ(upload_offset(id), -1);
    free(d);
}

static void test_oversized(void)
{
    size_t n = CHUNK + 1;
    char *d = pattern(3 * CHUNK, 3);
    struct resp r;
    /* Over the chunk limit but under the node's body limit: 413 from the route. */
    ASSERT_EQ(req(&N, "POST", "/v1/artifacts", d, n, NULL, &r, NULL), 0);
    ASSERT_EQ(r.status, 413);
    ASSERT_CONTAINS(r.body, "upload session");
    resp_free(&r);
    /* Over the node's body limit (2 MiB here): refused from the headers, before
     * any of the body is read. */
    char head[400], out[2048];
    int hl = snprintf(head, sizeof(head),
                      "POST /v1/artifacts HTTP/1.1\r\nHost: x\r\n%s\r\n"
                      "Content-Length: %d\r\n\r\n",
                      AUTH, 3 * CHUNK);
    ASSERT(raw_exchange(&N, head, (size_t)hl, out, sizeof(out), 2000) > 0);
    ASSERT_CONTAINS(out, "HTTP/1.1 413");
    char id[33];
    session(CHUNK + 10, id);
    json_t *j = NULL;
    ASSERT_EQ(patch(id, 0, d, n, &j), 413);
    json_decref(j);
    ASSERT_EQ(upload_offset(id), 0);
    ASSERT_EQ(patch(id, 0, d, CHUNK, NULL), 200);
    /* Past the declared size. */
    ASSERT_EQ(patch(id, CHUNK, d, 11, NULL), 413);
    ASSERT_EQ(upload_offset(id), CHUNK);
    ASSERT_EQ(patch(id, CHUNK, d + CHUNK, 10, NULL), 200);
    char want[80];
    sha256_of(d, CHUNK + 10, want);
    ASSERT_EQ(complete(id, want, NULL), 201);
    free(d);
}

static void test_truncated_and_offsets(void)
{
    size_t n = 2 * CHUNK + 5000;
    char *d = pattern(n, 4), want[80];
    sha256_of(d, n, want);
    char id[33];
    session((int64_t)n, id);
    ASSERT_EQ(patch(id, 0, d, CHUNK, NULL), 200);
    /* A repeated chunk (its answer was lost) gets 409 and the offset to go on from. */
    json_t *j = NULL;
    ASSERT_EQ(patch(id, 0, d, CHUNK, &j), 409);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(j, "error"), "offset")), CHUNK);
    json_decref(j);
    ASSERT_EQ(patch(id, 2 * CHUNK, d, 10, NULL), 409); /* a gap */
    ASSERT_EQ(patch(id, CHUNK, d + CHUNK, CHUNK, NULL), 200);
    /* Truncated: completing early is refused and the session stays. */
    ASSERT_EQ(complete(id, want, &j), 409);
    ASSERT_CONTAINS(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                    "incomplete");
    json_decref(j);
    ASSERT(!blob_file_exists(want));
    ASSERT_EQ(upload_offset(id), 2 * CHUNK);
    ASSERT_EQ(patch(id, 2 * CHUNK, d + 2 * CHUNK, 5000, NULL), 200);
    ASSERT_EQ(complete(id, want, &j), 201);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "digest")), want);
    json_decref(j);
    char *back;
    size_t len;
    ASSERT_EQ(get_blob(want, &back, &len), 200);
    ASSERT(len == n && memcmp(back, d, n) == 0);
    free(back);
    /* A finished session is gone. */
    ASSERT_EQ(patch(id, (int64_t)n, "x", 1, NULL), 404);
    free(d);
}

/* A PATCH whose body stops half way: evhttp never hands it over, so none of
 * it lands in the session. */
static void test_interrupted_request(void)
{
    char id[33];
    session(-1, id);
    char *d = pattern(CHUNK, 5);
    ASSERT_EQ(patch(id, 0, d, 1000, NULL), 200);
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "PATCH /v1/artifacts/uploads/%s HTTP/1.1\r\nHost: x\r\n%s\r\n"
                      "Upload-Offset: 1000\r\nContent-Length: %d\r\n\r\n",
                      id, AUTH, CHUNK);
    size_t part = 100000;
    char *msg = malloc((size_t)hl + part);
    memcpy(msg, head, (size_t)hl);
    memcpy(msg + hl, d, part);
    char out[256];
    raw_exchange(&N, msg, (size_t)hl + part, out, sizeof(out), 300);
    free(msg);
    sleep_ms(100);
    ASSERT_EQ(upload_offset(id), 1000);
    ASSERT_EQ(patch(id, 1000, d + 1000, 5000, NULL), 200);
    ASSERT_EQ(upload_offset(id), 6000);
    char want[80];
    sha256_of(d, 6000, want);
    ASSERT_EQ(complete(id, want, NULL), 201);
    free(d);
}

struct racer {
    const char *d;
    size_t n;
    bool session;
    long status;
    char digest[80];
};

static void *race_main(void *arg)
{
    struct racer *x = arg;
    json_t *j = NULL;
    if (!x->session) {
        struct resp r;
        req(&N, "POST", "/v1/artifacts", x->d, x->n, NULL, &r, NULL);
        x->status = r.status;
        j = resp_json(&r);
        resp_free(&r);
    } else {
        char id[33], want[80];
        session((int64_t)x->n, id);
        sha256_of(x->d, x->n, want);
        for (size_t off = 0; off < x->n; off += 256 << 10)
            patch(id, (int64_t)off, x->d + off, MIN(256 << 10, x->n - off), NULL);
        x->status = complete(id, want, &j);
    }
    const char *v = json_string_value(json_object_get(j, "digest"));
    str_copy(x->digest, v ? v : "", sizeof(x->digest));
    json_decref(j);
    return NULL;
}

static void test_same_blob_concurrently(void)
{
    size_t n = CHUNK;
    char *d = pattern(n, 6), want[80];
    sha256_of(d, n, want);
    struct racer x[6];
    pthread_t t[6];
    for (int i = 0; i < 6; i++) {
        x[i] = (struct racer){.d = d, .n = n, .session = i >= 3};
        pthread_create(&t[i], NULL, race_main, &x[i]);
    }
    int created = 0;
    for (int i = 0; i < 6; i++) {
        pthread_join(t[i], NULL);
        ASSERT(x[i].status == 200 || x[i].status == 201);
        ASSERT_STR_EQ(x[i].digest, want);
        created += x[i].status == 201;
    }
    ASSERT_EQ(created, 1);
    char *back;
    size_t len;
    ASSERT_EQ(get_blob(want, &back, &len), 200);
    ASSERT(len == n && memcmp(back, d, n) == 0);
    free(back);
    ASSERT_EQ(files_in("tmp"), 0);
    ASSERT_EQ(files_in("uploads"), 0);
    free(d);
}

static void test_kill9_during_upload(void)
{
    size_t n = 3 * CHUNK + 777;
    char *d = pattern(n, 7), want[80];
    sha256_of(d, n, want);
    char id[33];
    session((int64_t)n, id);
    ASSERT_EQ(patch(id, 0, d, CHUNK, NULL), 200);
    ASSERT_EQ(patch(id, CHUNK, d + CHUNK, CHUNK, NULL), 200);
    /* A third chunk is on the wire when the node dies. */
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "PATCH /v1/artifacts/uploads/%s HTTP/1.1\r\nHost: x\r\n%s\r\n"
                      "Upload-Offset: %d\r\nContent-Length: %d\r\n\r\n",
                      id, AUTH, 2 * CHUNK, CHUNK);
    char out[64];
    raw_exchange(&N, head, (size_t)hl, out, sizeof(out), 50);
    kill(N.pid, SIGKILL);
    waitpid(N.pid, NULL, 0);
    N.pid = 0;
    ASSERT(!blob_file_exists(want));
    const char *flags[] = {"--artifact-chunk-max", "1048576", "--max-body-size", "2097152", NULL};
    ASSERT_EQ(node_start(&N, flags), 0);
    /* The session survived, with every acknowledged byte. */
    ASSERT_EQ(upload_offset(id), 2 * CHUNK);
    ASSERT_EQ(patch(id, 2 * CHUNK, d + 2 * CHUNK, CHUNK, NULL), 200);
    ASSERT_EQ(patch(id, 3 * CHUNK, d + 3 * CHUNK, 777, NULL), 200);
    ASSERT_EQ(complete(id, want, NULL), 201);
    char *back;
    size_t len;
    ASSERT_EQ(get_blob(want, &back, &len), 200);
    ASSERT(len == n && memcmp(back, d, n) == 0);
    free(back);
    free(d);
}

static void test_gc_spares_referenced_and_uploading(void)
{
    char *a = pattern(5000, 8), *b = pattern(6000, 9), da[80], db[80];
    sha256_of(a, 5000, da);
    sha256_of(b, 6000, db);
    struct resp r;
    req(&N, "POST", "/v1/artifacts", a, 5000, NULL, &r, NULL);
    resp_free(&r);
    req(&N, "POST", "/v1/artifacts", b, 6000, NULL, &r, NULL);
    resp_free(&r);
    char manifest[1024];
    snprintf(manifest, sizeof(manifest),
             "{\"name\":\"uses-a\",\"runtime\":\"exec\",\"command\":[\"%s\"],"
             "\"env\":{\"MODEL_DIGEST\":\"%s\"}}",
             testfn_path(), da);
    ASSERT_EQ(deploy(&N, manifest), 201);
    /* An upload in progress of b's bytes. */
    char id[33];
    session(6000, id);
    ASSERT_EQ(patch(id, 0, b, 3000, NULL), 200);
    /* With the default grace period nothing this fresh goes. */
    json_t *j = NULL;
    ASSERT_EQ(post_json("/v1/artifacts/gc", NULL, &j), 200);
    ASSERT_EQ(json_array_size(json_object_get(j, "removed")), 0);
    ASSERT(json_integer_value(json_object_get(j, "kept_referenced")) >= 1);
    json_decref(j);
    ASSERT_EQ(post_json("/v1/artifacts/gc?min_age=0s&dry_run=true", NULL, &j), 200);
    ASSERT(json_is_true(json_object_get(j, "dry_run")));
    json_decref(j);
    ASSERT(blob_file_exists(db));
    ASSERT_EQ(post_json("/v1/artifacts/gc?min_age=0s", NULL, &j), 200);
    bool removed_b = false, removed_a = false;
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(j, "removed"), i, e)
    {
        const char *d = json_string_value(json_object_get(e, "digest"));
        removed_a |= d && !strcmp(d, da);
        removed_b |= d && !strcmp(d, db);
    }
    json_decref(j);
    ASSERT(removed_b);
    ASSERT(!removed_a);
    char *back;
    size_t len;
    ASSERT_EQ(get_blob(da, &back, &len), 200);
    ASSERT(len == 5000 && memcmp(back, a, 5000) == 0);
    free(back);
    ASSERT_EQ(get_blob(db, &back, &len), 404);
    free(back);
    /* The upload in progress was not touched and completes. */
    ASSERT_EQ(upload_offset(id), 3000);
    ASSERT_EQ(patch(id, 3000, b + 3000, 3000, NULL), 200);
    ASSERT_EQ(complete(id, db, NULL), 201);
    ASSERT(blob_file_exists(db));
    /* Once no deployment names a, it goes too. */
    ASSERT_EQ(req(&N, "DELETE", "/v1/deployments/uses-a", NULL, 0, NULL, &r, NULL), 0);
    ASSERT_EQ(r.status, 200);
    resp_free(&r);
    ASSERT_EQ(post_json("/v1/artifacts/gc?min_age=0s", NULL, &j), 200);
    json_decref(j);
    ASSERT(!blob_file_exists(da));
    free(a);
    free(b);
}

static void test_sessions_expire(void)
{
    struct node M = {0};
    const char *flags[] = {"--artifact-upload-ttl", "1s", NULL};
    ASSERT_EQ(node_start(&M, flags), 0);
    struct node saved = N;
    N = M;
    char idle[33], busy[33];
    session(-1, idle);
    session(-1, busy);
    sleep_ms(1300);
    ASSERT_EQ(patch(busy, 0, "abc", 3, NULL), 200);
    json_t *j = NULL;
    ASSERT_EQ(post_json("/v1/artifacts/gc", NULL, &j), 200);
    ASSERT_EQ(json_integer_value(json_object_get(j, "expired_uploads")), 1);
    json_decref(j);
    ASSERT_EQ(upload_offset(idle), -1);
    ASSERT_EQ(upload_offset(busy), 3);
    M = N;
    N = saved;
    node_cleanup(&M);
}

/* ---- thaw push ---- */

static char cache_dir[300];

static pid_t spawn_push(const char *file, const char *extra, const char *out)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        char server[64];
        snprintf(server, sizeof(server), "http://127.0.0.1:%d", N.port);
        setenv("THAW_KEY", TEST_ADMIN_KEY, 1);
        setenv("XDG_CACHE_HOME", cache_dir, 1);
        const char *argv[12] = {thaw_path(), "push", file, "--server", server, "--json"};
        int a = 6;
        if (extra) {
            argv[a++] = "--limit-rate";
            argv[a++] = extra;
        }
        argv[a] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static json_t *push_wait(pid_t pid, const char *out, int *code)
{
    int st;
    waitpid(pid, &st, 0);
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    json_t *j = json_load_file(out, JSON_DISABLE_EOF_CHECK, NULL);
    if (!j) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "cat '%s' >&2", out);
        if (system(cmd)) {
        }
    }
    return j;
}

static char *write_file(const char *name, size_t n, unsigned seed, char digest[80], char **data)
{
    static char path[400];
    snprintf(path, sizeof(path), "%s/%s", cache_dir, name);
    *data = pattern(n, seed);
    sha256_of(*data, n, digest);
    FILE *f = fopen(path, "wb");
    fwrite(*data, 1, n, f);
    fclose(f);
    return path;
}

/* The one session id a push in progress has written to its state file. */
static bool state_session(char *id)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "cat '%s'/thaw/push/*.json 2>/dev/null", cache_dir);
    FILE *f = popen(cmd, "r");
    json_t *j = f ? json_loadf(f, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    if (f) pclose(f);
    const char *s = json_string_value(json_object_get(j, "session"));
    if (s) str_copy(id, s, 33);
    json_decref(j);
    return s != NULL;
}

static void test_push_multi_chunk(void)
{
    char digest[80], *data, out[400];
    const char *file = write_file("six.bin", 6 * CHUNK + 123, 10, digest, &data);
    snprintf(out, sizeof(out), "%s/push.out", cache_dir);
    int code;
    json_t *j = push_wait(spawn_push(file, NULL, out), out, &code);
    ASSERT_EQ(code, 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "digest")), digest);
    ASSERT(json_is_false(json_object_get(j, "existed")));
    ASSERT_EQ(json_integer_value(json_object_get(j, "uploaded_bytes")), 6 * CHUNK + 123);
    json_decref(j);
    char *back;
    size_t len;
    ASSERT_EQ(get_blob(digest, &back, &len), 200);
    ASSERT(len == 6 * CHUNK + 123 && memcmp(back, data, len) == 0);
    free(back);
    /* Pushing it again uploads nothing. */
    j = push_wait(spawn_push(file, NULL, out), out, &code);
    ASSERT_EQ(code, 0);
    ASSERT(json_is_true(json_object_get(j, "existed")));
    json_decref(j);
    free(data);
}

static void test_push_resumes_after_kill(void)
{
    char digest[80], *data, out[400], id[33] = "";
    size_t n = 8 * CHUNK;
    const char *file = write_file("eight.bin", n, 11, digest, &data);
    snprintf(out, sizeof(out), "%s/push.out", cache_dir);
    /* 2 MiB/s: about four seconds, killed once the server has 2 chunks. */
    pid_t pid = spawn_push(file, "2M", out);
    int64_t got = -1;
    for (long end = now_ms() + 20000; now_ms() < end; sleep_ms(50)) {
        if (!id[0]) state_session(id);
        if (id[0] && (got = upload_offset(id)) >= 2 * CHUNK) break;
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ASSERT(id[0] != 0);
    ASSERT_CMP(got, >=, 2 * CHUNK);
    ASSERT_CMP(got, <, (int64_t)n);
    got = upload_offset(id);
    int code;
    json_t *j = push_wait(spawn_push(file, NULL, out), out, &code);
    ASSERT_EQ(code, 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "digest")), digest);
    ASSERT_EQ(json_integer_value(json_object_get(j, "resumed_from")), got);
    ASSERT_EQ(json_integer_value(json_object_get(j, "uploaded_bytes")), (int64_t)n - got);
    json_decref(j);
    char *back;
    size_t len;
    ASSERT_EQ(get_blob(digest, &back, &len), 200);
    ASSERT(len == n && memcmp(back, data, n) == 0);
    free(back);
    ASSERT(!state_session(id)); /* the state file is gone */
    ASSERT_EQ(upload_offset(id), -1);
    free(data);
}

static void test_push_errors(void)
{
    char out[400];
    snprintf(out, sizeof(out), "%s/push.out", cache_dir);
    int code;
    json_decref(push_wait(spawn_push("/no/such/file", NULL, out), out, &code));
    ASSERT_EQ(code, 2);
    json_decref(push_wait(spawn_push(cache_dir, NULL, out), out, &code)); /* a directory */
    ASSERT_EQ(code, 2);
    struct node saved = N;
    N.port = 1; /* nothing listens there */
    char digest[80], *data;
    const char *file = write_file("small.bin", 100, 12, digest, &data);
    json_decref(push_wait(spawn_push(file, NULL, out), out, &code));
    N = saved;
    ASSERT_EQ(code, 4);
    free(data);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    snprintf(cache_dir, sizeof(cache_dir), "/tmp/thaw-push-XXXXXX");
    if (!mkdtemp(cache_dir)) return 1;
    const char *flags[] = {"--artifact-chunk-max", "1048576", "--max-body-size", "2097152", NULL};
    if (node_start(&N, flags)) {
        fprintf(stderr, "node did not start\n");
        return 1;
    }
    RUN(test_put_get_exact_bytes);
    RUN(test_errors_are_json);
    RUN(test_digest_mismatch_keeps_nothing);
    RUN(test_oversized);
    RUN(test_truncated_and_offsets);
    RUN(test_interrupted_request);
    RUN(test_same_blob_concurrently);
    RUN(test_kill9_during_upload);
    RUN(test_gc_spares_referenced_and_uploading);
    RUN(test_sessions_expire);
    RUN(test_push_multi_chunk);
    RUN(test_push_resumes_after_kill);
    RUN(test_push_errors);
    node_cleanup(&N);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cache_dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    curl_global_cleanup();
    return TEST_REPORT();
}
