/* The audit trail: every change appended with the hash of the one before
 * (HMAC-SHA256 under a key derived from the node's KEK, which is never in the
 * store), so editing, inserting or removing an entry is detectable. */
#include "access/access_int.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct tail_ctx {
    struct access *a;
};

static int tail_cb(void *ctx, const struct store_audit_row *row)
{
    struct access *a = ctx;
    a->audit_seq = row->seq;
    memcpy(a->audit_prev, row->hash, sizeof(a->audit_prev));
    return 0;
}

int access_audit_load_tail(struct access *a, struct thaw_err *err)
{
    /* Walks the whole trail once at start-up; it is small next to the jobs. */
    return store_audit_list(a->store, 0, 0, tail_cb, a, err);
}

int access_audit(struct access *a, const struct access_principal *actor, const char *action,
                 const char *target, const char *outcome, const char *details)
{
    pthread_mutex_lock(&a->audit_lock);
    struct security_audit_entry e = {
        .seq = a->audit_seq + 1,
        .time_ms = time_wall_ms(),
        .actor = actor ? actor->key_id : "node",
        .action = action,
        .target = target ? target : "",
        .outcome = outcome ? outcome : "ok",
        .details = details ? details : "",
    };
    security_audit_seal(a->audit_key, sizeof(a->audit_key), a->audit_seq ? a->audit_prev : NULL,
                        &e);
    struct store_audit_row row = {.seq = e.seq,
                                  .time_ms = e.time_ms,
                                  .actor = e.actor,
                                  .action = e.action,
                                  .target = e.target,
                                  .outcome = e.outcome,
                                  .details = e.details};
    memcpy(row.prev_hash, e.prev_hash, sizeof(row.prev_hash));
    memcpy(row.hash, e.hash, sizeof(row.hash));
    struct thaw_err err = {0};
    int rc = store_audit_append(a->store, &row, &err);
    if (!rc) {
        a->audit_seq = e.seq;
        memcpy(a->audit_prev, e.hash, sizeof(a->audit_prev));
    }
    pthread_mutex_unlock(&a->audit_lock);
    return rc;
}

static int list_cb(void *ctx, const struct store_audit_row *r)
{
    char hash[65];
    sodium_bin2hex(hash, sizeof(hash), r->hash, sizeof(r->hash));
    json_t *details = r->details && *r->details ? json_string(r->details) : json_null();
    json_array_append_new((json_t *)ctx,
                          json_pack("{s:I, s:I, s:s, s:s, s:s, s:s, s:o, s:s}", "seq",
                                    (json_int_t)r->seq, "time_ms", (json_int_t)r->time_ms, "actor",
                                    r->actor, "action", r->action, "target", r->target, "outcome",
                                    r->outcome, "details", details, "hash", hash));
    return 0;
}

json_t *access_audit_list(struct access *a, uint64_t after_seq, size_t limit)
{
    json_t *arr = json_array();
    if (store_audit_list(a->store, after_seq, limit, list_cb, arr, NULL)) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

struct verify_ctx {
    struct security_audit_verifier v;
    uint64_t n;
    int rc;
};

static int verify_cb(void *ctx, const struct store_audit_row *r)
{
    struct verify_ctx *c = ctx;
    struct security_audit_entry e = {.seq = r->seq,
                                     .time_ms = r->time_ms,
                                     .actor = r->actor,
                                     .action = r->action,
                                     .target = r->target,
                                     .outcome = r->outcome,
                                     .details = r->details};
    memcpy(e.prev_hash, r->prev_hash, sizeof(e.prev_hash));
    memcpy(e.hash, r->hash, sizeof(e.hash));
    c->n++;
    c->rc = security_audit_verify_next(&c->v, &e);
    return c->rc;
}

int access_audit_verify(struct store *store, const unsigned char secret32[32], uint64_t *n_entries,
                        struct thaw_err *err)
{
    unsigned char key[32], pepper[32];
    int krc = access_node_secrets(store, secret32, false, pepper, key, err);
    sodium_memzero(pepper, sizeof(pepper));
    if (krc) return krc;
    struct security_audit_report rep = {0};
    struct verify_ctx c = {.n = 0};
    security_audit_verify_begin(&c.v, key, sizeof(key), 1, NULL, NULL, &rep);
    int rc = store_audit_list(store, 0, 0, verify_cb, &c, err);
    if (rc && rc != THAW_EFORMAT) return rc;
    if (!c.rc) c.rc = security_audit_verify_end(&c.v);
    sodium_memzero(key, sizeof(key));
    if (n_entries) *n_entries = c.n;
    if (c.rc)
        return thaw_errf(err, THAW_EFORMAT, "audit trail damaged at entry %llu: %s",
                         (unsigned long long)rep.seq, rep.msg);
    return 0;
}
