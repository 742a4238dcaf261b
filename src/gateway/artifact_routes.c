/* The artifacts API: whole blobs up to one request's limit, resumable upload
 * sessions for anything larger (evhttp buffers a body whole, so no request
 * may carry a huge one), HEAD/GET of blobs streamed from disk with sendfile,
 * and garbage collection. The store itself is src/registry/artifacts.c. */
#include "gateway/gw_int.h"

#include <errno.h>
#include <event2/bufferevent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ART_PREFIX     "/v1/artifacts"
#define SMALL_BODY_MAX 4096 /* JSON bodies of create and complete */

static void not_allowed(struct evhttp_request *req, const char *allow)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    gw_reply_error(req, 405, "method_not_allowed", "%s is not allowed here; use %s",
                   gw_method_name(evhttp_request_get_command(req)), allow);
}

/* Maps a store error to a status and code; err.msg is the message. */
static void reply_store_error(struct evhttp_request *req, int rc, const struct thaw_err *err)
{
    int status = 500;
    const char *code = "storage_failed";
    switch (rc) {
    case THAW_ENOTFOUND:
        status = 404, code = "not_found";
        break;
    case THAW_ECONFLICT:
        status = 400, code = "digest_mismatch";
        break;
    case THAW_ERANGE:
        status = 413, code = "too_large";
        break;
    case THAW_EINVAL:
        status = 400, code = "invalid_request";
        break;
    case THAW_ESTATE:
        status = 409, code = "upload_incomplete";
        break;
    case THAW_EBUSY:
        status = 503, code = "overloaded";
        break;
    case -ENOSPC:
    case -EDQUOT:
        status = 507, code = "insufficient_storage";
        break;
    default:
        break;
    }
    gw_reply_error(req, status, code, "%s", err->msg[0] ? err->msg : thaw_strerror(rc));
}

/* The request body as iovecs over evbuffer's chains (no copy). The array
 * is the caller's to free(); NULL only when out of memory. */
static struct iovec *body_iov(struct evhttp_request *req, size_t *n, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    int cnt = evbuffer_peek(in, -1, NULL, NULL, 0);
    if (cnt < 0) cnt = 0;
    struct evbuffer_iovec *ev = calloc((size_t)cnt + 1, sizeof(*ev));
    struct iovec *iov = calloc((size_t)cnt + 1, sizeof(*iov));
    if (!ev || !iov) {
        free(ev);
        free(iov);
        return NULL;
    }
    cnt = evbuffer_peek(in, -1, NULL, ev, cnt);
    for (int i = 0; i < cnt; i++) {
        iov[i].iov_base = ev[i].iov_base;
        iov[i].iov_len = ev[i].iov_len;
    }
    free(ev);
    *n = (size_t)(cnt > 0 ? cnt : 0);
    return iov;
}

/* A small JSON body: NULL with *bad false when empty, NULL with *bad true
 * (and a reply sent) when it is not a JSON object. */
static json_t *small_json(struct evhttp_request *req, bool *bad)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    *bad = false;
    if (len == 0) return NULL;
    if (len > SMALL_BODY_MAX) {
        *bad = true;
        gw_reply_error(req, 413, "too_large", "this body may be at most %d bytes", SMALL_BODY_MAX);
        return NULL;
    }
    char buf[SMALL_BODY_MAX + 1];
    evbuffer_copyout(in, buf, len);
    json_error_t je;
    json_t *j = json_loadb(buf, len, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        *bad = true;
        gw_reply_error(req, 400, "invalid_json", "body must be a JSON object%s%s",
                       je.text[0] ? ": " : "", je.text);
        return NULL;
    }
    return j;
}

/* Value of a query parameter copied into out, or NULL. */
static const char *query_param(struct evhttp_request *req, const char *key, char *out, size_t n)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (!q) return NULL;
    struct evkeyvalq kv;
    if (evhttp_parse_query_str(q, &kv)) return NULL;
    const char *v = evhttp_find_header(&kv, key);
    const char *r = v && strlen(v) < n ? out : NULL;
    if (r) str_copy(out, v, n);
    evhttp_clear_headers(&kv);
    return r;
}

/* The expected digest of a request: JSON "digest", ?digest= or the
 * x-thaw-digest header. Returns false (reply sent) when one is malformed. */
static bool expected_digest(struct evhttp_request *req, const json_t *body, char *out,
                            const char **expect)
{
    char q[128];
    const char *v = json_string_value(json_object_get(body, "digest"));
    if (!v) v = query_param(req, "digest", q, sizeof(q));
    if (!v) v = evhttp_find_header(evhttp_request_get_input_headers(req), "x-thaw-digest");
    *expect = NULL;
    if (!v) return true;
    if (!artifact_digest_valid(v)) {
        gw_reply_error(req, 400, "invalid_digest",
                       "a digest is sha256: followed by 64 lowercase hex digits");
        return false;
    }
    str_copy(out, v, ARTIFACT_DIGEST_SIZE);
    *expect = out;
    return true;
}

static void add_header_i64(struct evhttp_request *req, const char *name, int64_t v)
{
    char s[24];
    snprintf(s, sizeof(s), "%lld", (long long)v);
    evhttp_add_header(evhttp_request_get_output_headers(req), name, s);
}

static json_t *info_json(const struct artifact_info *info)
{
    return json_pack("{s:s, s:I, s:b}", "digest", info->digest, "size", (json_int_t)info->size,
                     "created", info->created);
}

static void reply_stored(struct evhttp_request *req, const struct artifact_info *info)
{
    char loc[128];
    snprintf(loc, sizeof(loc), ART_PREFIX "/%s", info->digest);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
    gw_reply_jsonv(req, info->created ? 201 : 200, info_json(info));
}

/* ---- whole blobs ---- */

static void put_blob(struct artifact_store *as, struct evhttp_request *req)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_DEPLOY)) return;
    char want[ARTIFACT_DIGEST_SIZE];
    const char *expect;
    if (!expected_digest(req, NULL, want, &expect)) return;
    size_t n, len;
    struct iovec *iov = body_iov(req, &n, &len);
    if (!iov) {
        gw_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    struct artifact_info info;
    struct thaw_err err = {0};
    int rc = artifact_put(as, iov, n, expect, &info, &err);
    free(iov);
    if (rc)
        reply_store_error(req, rc, &err);
    else
        reply_stored(req, &info);
}

/* Streams a blob with sendfile: the file is added to the connection's own
 * output buffer (which drains to the socket), so nothing of it is read into
 * the node's memory. */
static void send_blob(struct evhttp_request *req, const char *digest, int fd, int64_t size)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char etag[ARTIFACT_DIGEST_SIZE + 2];
    snprintf(etag, sizeof(etag), "\"%s\"", digest);
    evhttp_add_header(h, "Content-Type", "application/octet-stream");
    evhttp_add_header(h, "ETag", etag);
    evhttp_add_header(h, "x-thaw-digest", digest);
    evhttp_add_header(h, "Cache-Control", "public, max-age=31536000, immutable");
    add_header_i64(req, "Content-Length", size);
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD || size == 0 || !bev) {
        close(fd);
        evhttp_send_reply(req, 200, NULL, NULL);
        return;
    }
    evhttp_send_reply_start(req, 200, NULL);
    if (evbuffer_add_file(bufferevent_get_output(bev), fd, 0, (ev_off_t)size)) {
        /* Headers are out: all that is left is to cut the connection short. */
        close(fd);
        OBS_LOG(LOG_ERROR, "artifact_send_failed", LOG_S("digest", digest));
        evhttp_connection_free_on_completion(conn);
    }
    evhttp_send_reply_end(req);
}

static void get_blob(struct artifact_store *as, struct evhttp_request *req, const char *digest)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_READ)) return;
    if (!artifact_digest_valid(digest)) {
        gw_reply_error(req, 400, "invalid_digest",
                       "a digest is sha256: followed by 64 lowercase hex digits");
        return;
    }
    int fd;
    int64_t size;
    struct thaw_err err = {0};
    int rc = artifact_open(as, digest, &fd, &size, &err);
    if (rc)
        reply_store_error(req, rc, &err);
    else
        send_blob(req, digest, fd, size);
}

struct list_ctx {
    json_t *arr;
    size_t max;
};

static int list_one(void *arg, const char *digest, int64_t size)
{
    struct list_ctx *c = arg;
    if (json_array_size(c->arr) >= c->max) return 1;
    json_array_append_new(c->arr,
                          json_pack("{s:s, s:I}", "digest", digest, "size", (json_int_t)size));
    return 0;
}

static void list_blobs(struct artifact_store *as, struct evhttp_request *req)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_READ)) return;
    struct list_ctx c = {json_array(), 10000};
    struct thaw_err err = {0};
    int rc = artifact_list(as, list_one, &c, &err);
    if (rc < 0) {
        json_decref(c.arr);
        reply_store_error(req, rc, &err);
        return;
    }
    gw_reply_jsonv(req, 200, json_pack("{s:o, s:b}", "artifacts", c.arr, "truncated", rc == 1));
}

/* ---- upload sessions ---- */

static json_t *upload_json(struct artifact_store *as, const struct artifact_upload_info *u)
{
    char loc[64];
    snprintf(loc, sizeof(loc), ART_PREFIX "/uploads/%s", u->id);
    json_t *j = json_pack("{s:s, s:I, s:I, s:s, s:I}", "id", u->id, "offset", (json_int_t)u->offset,
                          "chunk_max", (json_int_t)artifact_store_chunk_max(as), "location", loc,
                          "expires_after_ms", (json_int_t)artifact_store_upload_ttl_ms(as));
    json_object_set_new(j, "size", u->size >= 0 ? json_integer(u->size) : json_null());
    return j;
}

static void upload_headers(struct evhttp_request *req, const struct artifact_upload_info *u)
{
    add_header_i64(req, "Upload-Offset", u->offset);
    if (u->size >= 0) add_header_i64(req, "Upload-Length", u->size);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
}

static void create_upload(struct artifact_store *as, struct evhttp_request *req)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_DEPLOY)) return;
    bool bad;
    json_t *body = small_json(req, &bad);
    if (bad) return;
    char want[ARTIFACT_DIGEST_SIZE];
    const char *expect;
    json_t *jsize = json_object_get(body, "size");
    if (jsize && !json_is_null(jsize) &&
        (!json_is_integer(jsize) || json_integer_value(jsize) < 0)) {
        json_decref(body);
        gw_reply_error(req, 400, "invalid_request", "size must be a non-negative integer");
        return;
    }
    int64_t size = json_is_integer(jsize) ? (int64_t)json_integer_value(jsize) : -1;
    if (!expected_digest(req, body, want, &expect)) {
        json_decref(body);
        return;
    }
    json_decref(body);
    struct thaw_err err = {0};
    struct artifact_info have;
    if (expect && artifact_confirm(as, expect, &have) == 0) {
        /* Already stored (and now re-confirmed, so GC's grace restarts): no upload needed. */
        gw_reply_jsonv(req, 200,
                       json_pack("{s:s, s:I, s:b}", "digest", have.digest, "size",
                                 (json_int_t)have.size, "exists", 1));
        return;
    }
    struct artifact_upload_info u;
    int rc = artifact_upload_create(as, size, &u, &err);
    if (rc) {
        reply_store_error(req, rc, &err);
        return;
    }
    char loc[64];
    snprintf(loc, sizeof(loc), ART_PREFIX "/uploads/%s", u.id);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Location", loc);
    upload_headers(req, &u);
    gw_reply_jsonv(req, 201, upload_json(as, &u));
}

/* Parses Upload-Offset: decimal digits only. */
static bool parse_offset(const char *s, int64_t *out)
{
    if (!s || !*s || strlen(s) > 18) return false;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return true;
}

static void append_upload(struct artifact_store *as, struct evhttp_request *req, const char *id)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_DEPLOY)) return;
    int64_t offset;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Upload-Offset");
    if (!parse_offset(h, &offset)) {
        gw_reply_error(req, 400, "invalid_offset",
                       "PATCH needs an Upload-Offset header with the byte offset of this chunk");
        return;
    }
    size_t n, len;
    struct iovec *iov = body_iov(req, &n, &len);
    if (!iov) {
        gw_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    struct artifact_upload_info u;
    struct thaw_err err = {0};
    int rc = artifact_upload_append(as, id, offset, iov, n, &u, &err);
    free(iov);
    if (rc == THAW_ECONFLICT) {
        /* Tells the client where to resume, in the header and the body. */
        upload_headers(req, &u);
        gw_reply_jsonv(req, 409,
                       json_pack("{s:{s:s, s:s, s:I}}", "error", "code", "offset_mismatch",
                                 "message", err.msg, "offset", (json_int_t)u.offset));
        return;
    }
    if (rc) {
        reply_store_error(req, rc, &err);
        return;
    }
    upload_headers(req, &u);
    gw_reply_jsonv(req, 200, json_pack("{s:s, s:I}", "id", u.id, "offset", (json_int_t)u.offset));
}

static void stat_upload(struct artifact_store *as, struct evhttp_request *req, const char *id)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_DEPLOY)) return;
    struct artifact_upload_info u;
    struct thaw_err err = {0};
    int rc = artifact_upload_stat(as, id, &u, &err);
    if (rc) {
        reply_store_error(req, rc, &err);
        return;
    }
    upload_headers(req, &u);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        evhttp_send_reply(req, 200, NULL, NULL);
        return;
    }
    json_t *j = upload_json(as, &u);
    json_object_set_new(j, "idle_ms", json_integer(u.idle_ms));
    gw_reply_jsonv(req, 200, j);
}

static void complete_upload(struct artifact_store *as, struct evhttp_request *req, const char *id)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_DEPLOY)) return;
    bool bad;
    json_t *body = small_json(req, &bad);
    if (bad) return;
    char want[ARTIFACT_DIGEST_SIZE];
    const char *expect;
    bool ok = expected_digest(req, body, want, &expect);
    json_decref(body);
    if (!ok) return;
    if (!expect) {
        gw_reply_error(
            req, 400, "digest_required",
            "completing an upload needs the expected digest ({\"digest\":\"sha256:...\"})");
        return;
    }
    struct artifact_info info;
    struct thaw_err err = {0};
    int rc = artifact_upload_complete(as, id, expect, &info, &err);
    if (rc)
        reply_store_error(req, rc, &err);
    else
        reply_stored(req, &info);
}

static void abort_upload(struct artifact_store *as, struct evhttp_request *req, const char *id)
{
    if (!gw_require_scope(req, SECURITY_SCOPE_DEPLOY)) return;
    struct thaw_err err = {0};
    int rc = artifact_upload_abort(as, id, &err);
    if (rc)
        reply_store_error(req, rc, &err);
    else
        gw_reply_jsonv(req, 200, json_pack("{s:s, s:b}", "id", id, "aborted", 1));
}

static void route_upload(struct artifact_store *as, struct evhttp_request *req, const char *rest)
{
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char id[ARTIFACT_UPLOAD_ID_SIZE + 1];
    const char *slash = strchr(rest, '/');
    size_t len = slash ? (size_t)(slash - rest) : strlen(rest);
    if (len >= sizeof(id)) len = sizeof(id) - 1; /* too long: the store says not found */
    memcpy(id, rest, len);
    id[len] = 0;
    if (!slash) {
        if (cmd == EVHTTP_REQ_PATCH)
            append_upload(as, req, id);
        else if (cmd == EVHTTP_REQ_HEAD || cmd == EVHTTP_REQ_GET)
            stat_upload(as, req, id);
        else if (cmd == EVHTTP_REQ_DELETE)
            abort_upload(as, req, id);
        else
            not_allowed(req, "PATCH, HEAD, GET, DELETE");
    } else if (strcmp(slash, "/complete") == 0) {
        if (cmd == EVHTTP_REQ_POST)
            complete_upload(as, req, id);
        else
            not_allowed(req, "POST");
    } else {
        gw_reply_error(req, 404, "not_found", "no such route under " ART_PREFIX "/uploads");
    }
}

/* ---- garbage collection ---- */

static int refs_from_deployment(void *arg, const char *name, const char *spec_json,
                                const char *owner)
{
    json_t *j = json_loads(spec_json, 0, NULL);
    int rc = j ? artifact_refs_scan_json(arg, j) : 0;
    json_decref(j);
    return rc;
}

static void on_removed(void *ctx, const char *digest, int64_t size)
{
    json_array_append_new(ctx, json_pack("{s:s, s:I}", "digest", digest, "size", (json_int_t)size));
}

/* POST /v1/artifacts/gc[?min_age=1h][&dry_run=true]: removes blobs that no
 * deployment or version names. The referenced set is every digest written anywhere in
 * a stored deployment spec; versions will feed the same interface. */
static void run_gc(struct gateway *gw, struct artifact_store *as, struct evhttp_request *req)
{
    const struct access_principal *who = gw_principal();
    if (!who || !who->platform_admin) {
        gw_reply_error(req, 403, "forbidden", "garbage collection needs a platform admin key");
        return;
    }
    char v[64];
    int64_t min_age_ms = 3600 * 1000;
    if (query_param(req, "min_age", v, sizeof(v)) && parse_duration_ms(v, &min_age_ms)) {
        gw_reply_error(req, 400, "invalid_request", "min_age must be a duration like 1h or 0s");
        return;
    }
    bool dry = query_param(req, "dry_run", v, sizeof(v)) && (!strcmp(v, "true") || !strcmp(v, "1"));
    struct artifact_refs refs = {0};
    struct thaw_err err = {0};
    int rc = store_deployment_list(gw->store, refs_from_deployment, &refs, &err);
    /* Every stored version counts, not only the deployed ones: a rollback
     * or a pinned request may need any of them. */
    if (!rc) rc = registry_version_refs(gw->store, &refs, &err);
    if (rc) {
        artifact_refs_free(&refs);
        gw_reply_error(req, 500, "store_failed", "%s", err.msg);
        return;
    }
    json_t *removed = json_array();
    struct artifact_gc_opts o = {
        artifact_refs_contains_cb, &refs, min_age_ms, dry, on_removed, removed};
    struct artifact_gc_stats st;
    rc = artifact_gc(as, &o, &st, &err);
    artifact_refs_free(&refs);
    if (rc) {
        json_decref(removed);
        reply_store_error(req, rc, &err);
        return;
    }
    OBS_LOG(LOG_INFO, "artifact_gc", LOG_I("removed", (int)st.removed),
            LOG_I("kept_referenced", (int)st.kept_referenced),
            LOG_I("expired_uploads", (int)st.expired_uploads), LOG_S("by", who->key_id));
    gw_reply_jsonv(req, 200,
                   json_pack("{s:o, s:I, s:I, s:I, s:I, s:b, s:I}", "removed", removed,
                             "removed_bytes", (json_int_t)st.removed_bytes, "kept_referenced",
                             (json_int_t)st.kept_referenced, "kept_young",
                             (json_int_t)st.kept_young, "expired_uploads",
                             (json_int_t)st.expired_uploads, "dry_run", dry, "min_age_ms",
                             (json_int_t)min_age_ms));
}

/* ---- dispatch ---- */

void gw_route_artifacts(struct gw_worker *w, struct evhttp_request *req, const char *path)
{
    struct gateway *gw = w->gw;
    struct artifact_store *as = gw->cfg.artifacts;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *rest = path + strlen(ART_PREFIX);
    if (!as) {
        gw_reply_error(req, 503, "unavailable", "this node has no artifact store");
    } else if (*rest == 0) {
        if (cmd == EVHTTP_REQ_POST)
            put_blob(as, req);
        else if (cmd == EVHTTP_REQ_GET)
            list_blobs(as, req);
        else
            not_allowed(req, "GET, POST");
    } else if (strcmp(rest, "/gc") == 0) {
        if (cmd == EVHTTP_REQ_POST)
            run_gc(gw, as, req);
        else
            not_allowed(req, "POST");
    } else if (strcmp(rest, "/uploads") == 0) {
        if (cmd == EVHTTP_REQ_POST)
            create_upload(as, req);
        else
            not_allowed(req, "POST");
    } else if (strncmp(rest, "/uploads/", 9) == 0) {
        route_upload(as, req, rest + 9);
    } else if (strchr(rest + 1, '/') == NULL) {
        if (cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD)
            get_blob(as, req, rest + 1);
        else
            not_allowed(req, "GET, HEAD");
    } else {
        gw_reply_error(req, 404, "not_found", "no such route: %s", path);
    }
}
