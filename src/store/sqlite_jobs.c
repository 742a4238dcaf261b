/* The SQLite store's jobs section: jobs, their attempts, idempotency keys
 * and webhook deliveries, on a connection of their own (WAL, full synchronous
 * commits) so the job traffic never waits behind the deployments' lock. Hot
 * statements are prepared once and kept. */
#include "store/store_int.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_CACHED 32

struct sj {
    sqlite3 *db;
    pthread_mutex_t lock;
    struct {
        const char *sql; /* identity: the static string's address */
        sqlite3_stmt *stmt;
    } cache[N_CACHED];
};

static const char *schema =
    "CREATE TABLE IF NOT EXISTS jobs ("
    "  id TEXT PRIMARY KEY, deployment TEXT NOT NULL, state INTEGER NOT NULL,"
    "  attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, run_at_ms INTEGER NOT NULL,"
    "  finished_ms INTEGER NOT NULL DEFAULT 0, expires_ms INTEGER NOT NULL DEFAULT 0,"
    "  expired INTEGER NOT NULL DEFAULT 0, input BLOB, result BLOB, webhook TEXT);"
    "CREATE INDEX IF NOT EXISTS jobs_due ON jobs(deployment, run_at_ms) WHERE state <= 1;"
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, deployment);"
    "CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs(expires_ms) WHERE expires_ms > 0;"
    "CREATE TABLE IF NOT EXISTS job_attempts ("
    "  job_id TEXT NOT NULL, n INTEGER NOT NULL, started_ms INTEGER, ended_ms INTEGER,"
    "  status INTEGER, code TEXT, message BLOB, PRIMARY KEY(job_id, n)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS job_idempotency ("
    "  key TEXT PRIMARY KEY, body_hash BLOB NOT NULL, job_id TEXT NOT NULL,"
    "  expires_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS job_idempotency_expiry ON job_idempotency(expires_ms);"
    "CREATE TABLE IF NOT EXISTS webhooks ("
    "  id INTEGER PRIMARY KEY, job_id TEXT NOT NULL, url TEXT NOT NULL, body BLOB,"
    "  state INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_ms INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL, last_error TEXT);"
    "CREATE INDEX IF NOT EXISTS webhooks_due ON webhooks(next_ms) WHERE state = 0;";

static struct sj *SJ(struct store *s)
{
    return s->jobs_state;
}

static int db_err(struct sj *j, struct thaw_err *err, const char *what)
{
    return thaw_errf(err, THAW_EIO, "store: %s: %s", what, sqlite3_errmsg(j->db));
}

/* A cached statement, reset and with bindings cleared; NULL on error. */
static sqlite3_stmt *stmt(struct sj *j, const char *sql, struct thaw_err *err)
{
    int free_slot = -1;
    for (int i = 0; i < N_CACHED; i++) {
        if (j->cache[i].sql == sql) {
            sqlite3_reset(j->cache[i].stmt);
            sqlite3_clear_bindings(j->cache[i].stmt);
            return j->cache[i].stmt;
        }
        if (!j->cache[i].sql && free_slot < 0) free_slot = i;
    }
    /* N_CACHED exceeds the number of distinct cached statements. */
    if (free_slot < 0) {
        thaw_errf(err, THAW_EIO, "store: statement cache full");
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v3(j->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        db_err(j, err, "prepare");
        return NULL;
    }
    j->cache[free_slot].sql = sql;
    j->cache[free_slot].stmt = st;
    return st;
}

static int exec(struct sj *j, const char *sql, struct thaw_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(j->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = thaw_errf(err, THAW_EIO, "store: %s", msg ? msg : "exec failed");
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

/* A stepped statement left unreset keeps a read transaction open, and a
 * stale one makes the next write fail at once with "database is locked":
 * every cached statement is reset whenever the connection is put down. */
static void reset_all(struct sj *j)
{
    for (int i = 0; i < N_CACHED && j->cache[i].stmt; i++)
        sqlite3_reset(j->cache[i].stmt);
}

static int begin(struct sj *j, struct thaw_err *err)
{
    pthread_mutex_lock(&j->lock);
    int rc = exec(j, "BEGIN IMMEDIATE", err);
    if (rc) pthread_mutex_unlock(&j->lock);
    return rc;
}

/* Commits when rc is 0, else rolls back; unlocks; returns rc (or the
 * commit's error). */
static int end(struct sj *j, int rc, struct thaw_err *err)
{
    reset_all(j);
    if (!rc) rc = exec(j, "COMMIT", err);
    if (rc) exec(j, "ROLLBACK", NULL);
    pthread_mutex_unlock(&j->lock);
    return rc;
}

/* Transactions whose loss in a crash is harmless (leases) skip the fsync. */
static int begin_lazy(struct sj *j, struct thaw_err *err)
{
    pthread_mutex_lock(&j->lock);
    int rc = exec(j, "PRAGMA synchronous=NORMAL", err);
    if (!rc) rc = exec(j, "BEGIN IMMEDIATE", err);
    if (rc) {
        exec(j, "PRAGMA synchronous=FULL", NULL);
        pthread_mutex_unlock(&j->lock);
    }
    return rc;
}

static int end_lazy(struct sj *j, int rc, struct thaw_err *err)
{
    reset_all(j);
    if (!rc) rc = exec(j, "COMMIT", err);
    if (rc) exec(j, "ROLLBACK", NULL);
    exec(j, "PRAGMA synchronous=FULL", NULL);
    pthread_mutex_unlock(&j->lock);
    return rc;
}

static char *col_dup(sqlite3_stmt *st, int col, size_t *len)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL) {
        if (len) *len = 0;
        return NULL;
    }
    const void *p = sqlite3_column_blob(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    if (n) memcpy(out, p, n);
    out[n] = 0;
    if (len) *len = n;
    return out;
}

static void bind_blob(sqlite3_stmt *st, int i, const char *p, size_t n)
{
    if (p)
        sqlite3_bind_blob64(st, i, p, n, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static void bind_text(sqlite3_stmt *st, int i, const char *p)
{
    if (p)
        sqlite3_bind_text(st, i, p, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* ---- submit ---- */

static const char *SQL_IDEM_GET =
    "SELECT body_hash, job_id, expires_ms FROM job_idempotency WHERE key = ?1";
static const char *SQL_IDEM_PUT = "INSERT OR REPLACE INTO job_idempotency(key, body_hash, job_id, "
                                  "expires_ms) VALUES (?1, ?2, ?3, ?4)";
static const char *SQL_JOB_INSERT =
    "INSERT INTO jobs(id, deployment, state, max_attempts, created_ms, updated_ms, run_at_ms, "
    "input, webhook, tenant, key_id) VALUES (?1, ?2, 0, ?3, ?4, ?4, ?4, ?5, ?6, ?7, ?8)";

/* 1: seen (outcome set), 0: new, <0: error. */
static int idem_check(struct sj *j, struct store_job_submit *sub, int64_t now, struct thaw_err *err)
{
    sqlite3_stmt *st = stmt(j, SQL_IDEM_GET, err);
    if (!st) return THAW_EIO;
    sqlite3_bind_text(st, 1, sub->idem_key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) return 0;
    if (step != SQLITE_ROW) return db_err(j, err, "read idempotency key");
    if (sqlite3_column_int64(st, 2) <= now) return 0; /* expired: replaced below */
    const void *h = sqlite3_column_blob(st, 0);
    bool same = sqlite3_column_bytes(st, 0) == 32 && memcmp(h, sub->body_hash, 32) == 0;
    sub->outcome = same ? THAW_EEXIST : THAW_ECONFLICT;
    str_copy(sub->existing_id, (const char *)sqlite3_column_text(st, 1), sizeof(sub->existing_id));
    return 1;
}

static int submit_one(struct sj *j, struct store_job_submit *sub, int64_t now, struct thaw_err *err)
{
    sub->outcome = 0;
    sub->existing_id[0] = 0;
    if (sub->idem_key) {
        int rc = idem_check(j, sub, now, err);
        if (rc) return rc < 0 ? rc : 0;
    }
    sqlite3_stmt *st = stmt(j, SQL_JOB_INSERT, err);
    if (!st) return THAW_EIO;
    sqlite3_bind_text(st, 1, sub->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sub->deployment, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, sub->max_attempts);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_blob64(st, 5, sub->input ? sub->input : "", sub->input_len, SQLITE_STATIC);
    bind_text(st, 6, sub->webhook);
    sqlite3_bind_text(st, 7, sub->tenant ? sub->tenant : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, sub->key_id ? sub->key_id : "", -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) return db_err(j, err, "insert job");
    if (!sub->idem_key) return 0;
    if (!(st = stmt(j, SQL_IDEM_PUT, err))) return THAW_EIO;
    sqlite3_bind_text(st, 1, sub->idem_key, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, sub->body_hash, 32, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sub->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, sub->idem_expires_ms);
    if (sqlite3_step(st) != SQLITE_DONE) return db_err(j, err, "insert idempotency key");
    return 0;
}

static int sj_submit(struct store *s, struct store_job_submit *subs, size_t n, int64_t now,
                     struct thaw_err *err)
{
    struct sj *j = SJ(s);
    int rc = begin(j, err);
    if (rc) return rc;
    size_t first = 0;
    bool conflict = false, keyed = false;
    for (size_t i = 0; i < n && !rc; i++) {
        if (i == 0 || subs[i].group_start) {
            first = i;
            conflict = false;
            /* Only a request with keys can conflict; the others skip the savepoint. */
            keyed = subs[i].idem_key != NULL;
            if (keyed && (rc = exec(j, "SAVEPOINT request", err))) break;
        }
        rc = submit_one(j, &subs[i], now, err);
        conflict |= subs[i].outcome == THAW_ECONFLICT;
        if (rc || (i + 1 < n && !subs[i + 1].group_start)) continue;
        /* The request's last job: a conflict anywhere undoes all of it. */
        if (conflict) {
            rc = exec(j, "ROLLBACK TO request", err);
            for (size_t k = first; k <= i; k++)
                subs[k].outcome = THAW_ECONFLICT;
        }
        if (!rc && keyed) rc = exec(j, "RELEASE request", err);
    }
    return end(j, rc, err);
}

/* ---- lease, renew, complete ---- */

static const char *SQL_LEASE =
    "UPDATE jobs SET state = 1, attempts = attempts + 1, run_at_ms = ?3, updated_ms = ?2 "
    "WHERE rowid IN (SELECT rowid FROM jobs WHERE deployment = ?1 AND state <= 1 "
    "AND run_at_ms <= ?2 ORDER BY run_at_ms LIMIT ?4) "
    "RETURNING id, attempts, max_attempts, input, created_ms, webhook, tenant, key_id";

static int sj_lease(struct store *s, const char *deployment, int64_t now, int64_t until,
                    struct store_job_lease *out, int max, struct thaw_err *err)
{
    struct sj *j = SJ(s);
    int rc = begin_lazy(j, err), n = 0;
    if (rc) return rc;
    sqlite3_stmt *st = stmt(j, SQL_LEASE, err);
    if (!st) return end_lazy(j, THAW_EIO, err);
    sqlite3_bind_text(st, 1, deployment, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, until);
    sqlite3_bind_int(st, 4, max);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW && n < max) {
        struct store_job_lease *l = &out[n];
        memset(l, 0, sizeof(*l));
        str_copy(l->id, (const char *)sqlite3_column_text(st, 0), sizeof(l->id));
        l->attempt = sqlite3_column_int(st, 1);
        l->max_attempts = sqlite3_column_int(st, 2);
        l->input = col_dup(st, 3, &l->input_len);
        l->created_ms = sqlite3_column_int64(st, 4);
        l->webhook = col_dup(st, 5, NULL);
        if (sqlite3_column_text(st, 6))
            str_copy(l->tenant, (const char *)sqlite3_column_text(st, 6), sizeof(l->tenant));
        if (sqlite3_column_text(st, 7))
            str_copy(l->key_id, (const char *)sqlite3_column_text(st, 7), sizeof(l->key_id));
        n++;
    }
    if (step != SQLITE_DONE && step != SQLITE_ROW) rc = db_err(j, err, "lease jobs");
    sqlite3_reset(st);
    rc = end_lazy(j, rc, err);
    if (rc) {
        for (int i = 0; i < n; i++) {
            free(out[i].input);
            free(out[i].webhook);
        }
        return rc;
    }
    return n;
}

static const char *SQL_RENEW =
    "UPDATE jobs SET run_at_ms = ?3 WHERE id = ?1 AND state = 1 AND attempts = ?2";

static int sj_renew(struct store *s, const char *const *ids, const int *attempts,
                    const int64_t *until, size_t n, struct thaw_err *err)
{
    struct sj *j = SJ(s);
    int rc = begin_lazy(j, err);
    if (rc) return rc;
    for (size_t i = 0; i < n && !rc; i++) {
        sqlite3_stmt *st = stmt(j, SQL_RENEW, err);
        if (!st) {
            rc = THAW_EIO;
            break;
        }
        sqlite3_bind_text(st, 1, ids[i], -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, attempts[i]);
        sqlite3_bind_int64(st, 3, until[i]);
        if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, err, "renew lease");
    }
    return end_lazy(j, rc, err);
}

static const char *SQL_COMPLETE =
    "UPDATE jobs SET state = ?3, attempts = attempts - ?4, run_at_ms = ?5, updated_ms = ?6, "
    "finished_ms = ?7, expires_ms = ?8, result = ?9 WHERE id = ?1 AND state = 1 AND attempts = ?2";
static const char *SQL_ATTEMPT =
    "INSERT OR REPLACE INTO job_attempts(job_id, n, started_ms, ended_ms, status, code, message, "
    "version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char *SQL_HOOK_ADD = "INSERT INTO webhooks(job_id, url, body, state, next_ms, "
                                  "created_ms) VALUES (?1, ?2, ?3, 0, ?4, ?4)";

static bool state_final(int st)
{
    return st >= STORE_JOB_SUCCEEDED;
}

static int complete_one(struct sj *j, struct store_job_outcome *o, struct thaw_err *err)
{
    bool final = state_final(o->new_state);
    sqlite3_stmt *st = stmt(j, SQL_COMPLETE, err);
    if (!st) return THAW_EIO;
    sqlite3_bind_text(st, 1, o->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, o->attempt);
    sqlite3_bind_int(st, 3, o->new_state);
    sqlite3_bind_int(st, 4, o->release ? 1 : 0);
    sqlite3_bind_int64(st, 5, final ? 0 : o->run_at_ms);
    sqlite3_bind_int64(st, 6, o->ended_ms);
    sqlite3_bind_int64(st, 7, final ? o->ended_ms : 0);
    sqlite3_bind_int64(st, 8, final && o->new_state != STORE_JOB_DEAD ? o->expires_ms : 0);
    bind_blob(st, 9, o->result, o->result_len);
    if (sqlite3_step(st) != SQLITE_DONE) return db_err(j, err, "complete job");
    if (sqlite3_changes(j->db) == 0) {
        o->outcome = THAW_ESTATE;
        return 0;
    }
    o->outcome = 0;
    if (!o->release) {
        if (!(st = stmt(j, SQL_ATTEMPT, err))) return THAW_EIO;
        sqlite3_bind_text(st, 1, o->id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, o->attempt);
        sqlite3_bind_int64(st, 3, o->started_ms);
        sqlite3_bind_int64(st, 4, o->ended_ms);
        sqlite3_bind_int(st, 5, o->status);
        bind_text(st, 6, o->code);
        bind_blob(st, 7, o->message, o->message_len);
        sqlite3_bind_int(st, 8, o->version);
        if (sqlite3_step(st) != SQLITE_DONE) return db_err(j, err, "record attempt");
    }
    if (final && o->webhook_url && o->webhook_body) {
        if (!(st = stmt(j, SQL_HOOK_ADD, err))) return THAW_EIO;
        sqlite3_bind_text(st, 1, o->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, o->webhook_url, -1, SQLITE_STATIC);
        bind_blob(st, 3, o->webhook_body, o->webhook_body_len);
        sqlite3_bind_int64(st, 4, o->ended_ms);
        if (sqlite3_step(st) != SQLITE_DONE) return db_err(j, err, "queue webhook");
    }
    return 0;
}

static int sj_complete(struct store *s, struct store_job_outcome *o, size_t n, struct thaw_err *err)
{
    struct sj *j = SJ(s);
    int rc = begin(j, err);
    if (rc) return rc;
    for (size_t i = 0; i < n && !rc; i++)
        rc = complete_one(j, &o[i], err);
    return end(j, rc, err);
}

/* ---- reading ---- */

#define JOB_COLS                                                                                   \
    "id, deployment, state, attempts, max_attempts, created_ms, updated_ms, run_at_ms, "           \
    "finished_ms, expires_ms, expired, webhook, tenant, key_id"

static void read_job(sqlite3_stmt *st, struct store_job *out)
{
    memset(out, 0, sizeof(*out));
    str_copy(out->id, (const char *)sqlite3_column_text(st, 0), sizeof(out->id));
    str_copy(out->deployment, (const char *)sqlite3_column_text(st, 1), sizeof(out->deployment));
    out->state = sqlite3_column_int(st, 2);
    out->attempts = sqlite3_column_int(st, 3);
    out->max_attempts = sqlite3_column_int(st, 4);
    out->created_ms = sqlite3_column_int64(st, 5);
    out->updated_ms = sqlite3_column_int64(st, 6);
    out->run_at_ms = sqlite3_column_int64(st, 7);
    out->finished_ms = sqlite3_column_int64(st, 8);
    out->expires_ms = sqlite3_column_int64(st, 9);
    out->expired = sqlite3_column_int(st, 10) != 0;
    out->webhook = col_dup(st, 11, NULL);
    if (sqlite3_column_text(st, 12))
        str_copy(out->tenant, (const char *)sqlite3_column_text(st, 12), sizeof(out->tenant));
    if (sqlite3_column_text(st, 13))
        str_copy(out->key_id, (const char *)sqlite3_column_text(st, 13), sizeof(out->key_id));
}

static const char *SQL_GET = "SELECT " JOB_COLS ", input, result FROM jobs WHERE id = ?1";
static const char *SQL_ATTEMPTS = "SELECT n, started_ms, ended_ms, status, code, message, version "
                                  "FROM job_attempts WHERE job_id = ?1 ORDER BY n";

static int read_attempts(struct sj *j, struct store_job *out, struct thaw_err *err)
{
    sqlite3_stmt *st = stmt(j, SQL_ATTEMPTS, err);
    if (!st) return THAW_EIO;
    sqlite3_bind_text(st, 1, out->id, -1, SQLITE_STATIC);
    size_t cap = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n_attempt_log == cap) {
            cap = cap ? cap * 2 : 4;
            struct store_job_attempt *a = realloc(out->attempt_log, cap * sizeof(*a));
            if (!a) return thaw_errf(err, THAW_ENOMEM, "store: out of memory");
            out->attempt_log = a;
        }
        struct store_job_attempt *a = &out->attempt_log[out->n_attempt_log++];
        memset(a, 0, sizeof(*a));
        a->n = sqlite3_column_int(st, 0);
        a->started_ms = sqlite3_column_int64(st, 1);
        a->ended_ms = sqlite3_column_int64(st, 2);
        a->status = sqlite3_column_int(st, 3);
        if (sqlite3_column_text(st, 4))
            str_copy(a->code, (const char *)sqlite3_column_text(st, 4), sizeof(a->code));
        a->message = col_dup(st, 5, &a->message_len);
        a->version = sqlite3_column_int(st, 6);
    }
    return step == SQLITE_DONE ? 0 : db_err(j, err, "read attempts");
}

static int sj_get(struct store *s, const char *id, bool with_data, struct store_job *out,
                  struct thaw_err *err)
{
    struct sj *j = SJ(s);
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&j->lock);
    int rc = 0;
    sqlite3_stmt *st = stmt(j, SQL_GET, err);
    if (!st) {
        rc = THAW_EIO;
        goto out;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        rc = thaw_errf(err, THAW_ENOTFOUND, "job '%s' not found", id);
        goto out;
    }
    if (step != SQLITE_ROW) {
        rc = db_err(j, err, "read job");
        goto out;
    }
    read_job(st, out);
    if (with_data) {
        out->input = col_dup(st, 14, &out->input_len);
        out->result = col_dup(st, 15, &out->result_len);
        sqlite3_reset(st);
        rc = read_attempts(j, out, err);
    }
out:
    reset_all(j);
    pthread_mutex_unlock(&j->lock);
    if (rc) store_job_clear(out);
    return rc;
}

static int sj_list(struct store *s, const struct store_job_filter *f, store_job_cb cb, void *ctx,
                   struct thaw_err *err)
{
    struct sj *j = SJ(s);
    struct buf sql = {0};
    buf_append_str(&sql, "SELECT " JOB_COLS " FROM jobs WHERE 1");
    if (f->deployment) buf_append_str(&sql, " AND deployment = ?1");
    if (f->state >= 0) buf_append_str(&sql, " AND state = ?2");
    if (f->after_id) buf_append_str(&sql, " AND rowid > (SELECT rowid FROM jobs WHERE id = ?3)");
    /* In the query, not after it: a page never carries (or is cut short by)
     * another tenant's jobs. Rows without a tenant predate it and stay
     * visible by deployment, as they were. */
    if (f->tenant) buf_append_str(&sql, " AND (tenant = ?5 OR tenant = '')");
    buf_append_str(&sql, " ORDER BY rowid LIMIT ?4");
    if (!sql.data) return thaw_errf(err, THAW_ENOMEM, "store: out of memory");
    pthread_mutex_lock(&j->lock);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if (sqlite3_prepare_v2(j->db, sql.data, -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(j, err, "prepare");
        goto out;
    }
    bind_text(st, 1, f->deployment);
    sqlite3_bind_int(st, 2, f->state);
    bind_text(st, 3, f->after_id);
    sqlite3_bind_int(st, 4, f->limit > 0 ? f->limit : 100);
    bind_text(st, 5, f->tenant);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_job job;
        read_job(st, &job);
        rc = cb(ctx, &job);
        store_job_clear(&job);
        if (rc) goto out;
    }
    if (step != SQLITE_DONE) rc = db_err(j, err, "list jobs");
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&j->lock);
    buf_free(&sql);
    return rc;
}

/* ---- cancel, dead letters, recovery, expiry ---- */

static const char *SQL_STATE = "SELECT state FROM jobs WHERE id = ?1";
static const char *SQL_CANCEL = "UPDATE jobs SET state = 5, updated_ms = ?2, finished_ms = ?2, "
                                "expires_ms = ?3, run_at_ms = 0 WHERE id = ?1 AND state <= 1";

static int sj_cancel(struct store *s, const char *id, int64_t now, int64_t expires_ms,
                     int *prev_state, struct thaw_err *err)
{
    struct sj *j = SJ(s);
    int rc = begin(j, err);
    if (rc) return rc;
    sqlite3_stmt *st = stmt(j, SQL_STATE, err);
    if (!st) return end(j, THAW_EIO, err);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE)
        return end(j, thaw_errf(err, THAW_ENOTFOUND, "job '%s' not found", id), err);
    if (step != SQLITE_ROW) return end(j, db_err(j, err, "read job"), err);
    *prev_state = sqlite3_column_int(st, 0);
    sqlite3_reset(st);
    if (state_final(*prev_state))
        return end(j, thaw_errf(err, THAW_ESTATE, "job '%s' has already ended", id), err);
    if (!(st = stmt(j, SQL_CANCEL, err))) return end(j, THAW_EIO, err);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_int64(st, 3, expires_ms);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, err, "cancel job");
    return end(j, rc, err);
}

/* Runs a one-off statement binding ?1 id (text or NULL), ?2 deployment, ?3
 * now, ?4 tenant; for SELECTs calls row for each row. */
static int run_sql(struct sj *j, const char *sql, const char *id, const char *dep,
                   const char *tenant, int64_t now, void (*row)(void *ctx, sqlite3_stmt *st),
                   void *ctx, struct thaw_err *err)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(j->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(j, err, "prepare");
    int np = sqlite3_bind_parameter_count(st);
    if (np >= 1) bind_text(st, 1, id);
    if (np >= 2) bind_text(st, 2, dep);
    if (np >= 3) sqlite3_bind_int64(st, 3, now);
    if (np >= 4) bind_text(st, 4, tenant);
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW)
        if (row) row(ctx, st);
    sqlite3_finalize(st);
    return step == SQLITE_DONE ? 0 : db_err(j, err, "update jobs");
}

#define DEAD_MATCH                                                                                 \
    "state = 4 AND (?1 IS NULL OR id = ?1) AND (?2 IS NULL OR deployment = ?2) AND "               \
    "(?4 IS NULL OR tenant = ?4 OR tenant = '')"

struct replay_ctx {
    void (*cb)(void *ctx, const char *deployment);
    void *ctx;
    int n;
};

static void replay_row(void *arg, sqlite3_stmt *st)
{
    struct replay_ctx *r = arg;
    r->n++;
    if (r->cb) r->cb(r->ctx, (const char *)sqlite3_column_text(st, 0));
}

static int sj_replay(struct store *s, const char *id, const char *dep, const char *tenant,
                     int64_t now, void (*cb)(void *ctx, const char *deployment), void *ctx, int *n,
                     struct thaw_err *err)
{
    struct sj *j = SJ(s);
    struct replay_ctx r = {cb, ctx, 0};
    int rc = begin(j, err);
    if (rc) return rc;
    rc = run_sql(j,
                 "UPDATE jobs SET state = 0, attempts = 0, run_at_ms = ?3, updated_ms = ?3, "
                 "finished_ms = 0, expires_ms = 0 WHERE " DEAD_MATCH " RETURNING deployment",
                 id, dep, tenant, now, replay_row, &r, err);
    if (!rc && id && r.n == 0)
        rc = thaw_errf(err, THAW_ENOTFOUND, "job '%s' is not in the dead-letter queue", id);
    *n = r.n;
    return end(j, rc, err);
}

static void count_row(void *arg, sqlite3_stmt *st)
{
    (*(int *)arg)++;
}

static int sj_purge(struct store *s, const char *id, const char *dep, const char *tenant, int *n,
                    struct thaw_err *err)
{
    struct sj *j = SJ(s);
    int rc = begin(j, err);
    if (rc) return rc;
    *n = 0;
    rc = run_sql(
        j, "DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM jobs WHERE " DEAD_MATCH ")",
        id, dep, tenant, 0, NULL, NULL, err);
    if (!rc)
        rc = run_sql(j, "DELETE FROM jobs WHERE " DEAD_MATCH " RETURNING id", id, dep, tenant, 0,
                     count_row, n, err);
    if (!rc && id && *n == 0)
        rc = thaw_errf(err, THAW_ENOTFOUND, "job '%s' is not in the dead-letter queue", id);
    return end(j, rc, err);
}

static int sj_recover(struct store *s, int64_t now, struct thaw_err *err)
{
    struct sj *j = SJ(s);
    int n = 0;
    int rc = begin(j, err);
    if (rc) return rc;
    /* The interrupted attempt was the node's fault, not the job's. */
    rc = run_sql(j,
                 "UPDATE jobs SET state = 0, attempts = MAX(attempts - 1, 0), run_at_ms = ?3, "
                 "updated_ms = ?3 WHERE state = 1 AND (?1 IS NULL) AND (?2 IS NULL) RETURNING id",
                 NULL, NULL, NULL, now, count_row, &n, err);
    rc = end(j, rc, err);
    return rc ? rc : n;
}

struct counts_ctx {
    void (*cb)(void *ctx, const char *deployment, int n);
    void *ctx;
};

static void counts_row(void *arg, sqlite3_stmt *st)
{
    struct counts_ctx *c = arg;
    c->cb(c->ctx, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int(st, 1));
}

static int sj_active_counts(struct store *s, void (*cb)(void *, const char *, int), void *ctx,
                            struct thaw_err *err)
{
    struct sj *j = SJ(s);
    struct counts_ctx c = {cb, ctx};
    pthread_mutex_lock(&j->lock);
    int rc = run_sql(j,
                     "SELECT deployment, COUNT(*) FROM jobs WHERE state <= 1 AND (?1 IS NULL) "
                     "GROUP BY deployment",
                     NULL, NULL, NULL, 0, counts_row, &c, err);
    pthread_mutex_unlock(&j->lock);
    return rc;
}

static int sj_expire(struct store *s, int64_t now, int64_t tomb, struct thaw_err *err)
{
    struct sj *j = SJ(s);
    int n = 0;
    char sql[512];
    int rc = begin(j, err);
    if (rc) return rc;
    rc = run_sql(j,
                 "UPDATE jobs SET input = NULL, result = NULL, expired = 1 WHERE expires_ms > 0 "
                 "AND expires_ms <= ?3 AND expired = 0 AND (?1 IS NULL) AND (?2 IS NULL) "
                 "RETURNING id",
                 NULL, NULL, NULL, now, count_row, &n, err);
    snprintf(sql, sizeof(sql),
             "DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM jobs WHERE expired = 1 "
             "AND expires_ms <= %lld)",
             (long long)(now - tomb));
    if (!rc) rc = run_sql(j, sql, NULL, NULL, NULL, 0, NULL, NULL, err);
    snprintf(sql, sizeof(sql), "DELETE FROM jobs WHERE expired = 1 AND expires_ms <= %lld",
             (long long)(now - tomb));
    if (!rc) rc = run_sql(j, sql, NULL, NULL, NULL, 0, NULL, NULL, err);
    snprintf(sql, sizeof(sql), "DELETE FROM job_idempotency WHERE expires_ms <= %lld",
             (long long)now);
    if (!rc) rc = run_sql(j, sql, NULL, NULL, NULL, 0, NULL, NULL, err);
    snprintf(sql, sizeof(sql), "DELETE FROM webhooks WHERE state = 1 AND created_ms <= %lld",
             (long long)(now - tomb));
    if (!rc) rc = run_sql(j, sql, NULL, NULL, NULL, 0, NULL, NULL, err);
    rc = end(j, rc, err);
    return rc ? rc : n;
}

/* ---- webhooks ---- */

static void read_hook(sqlite3_stmt *st, struct store_webhook *w, bool with_body)
{
    memset(w, 0, sizeof(*w));
    w->id = sqlite3_column_int64(st, 0);
    str_copy(w->job_id, (const char *)sqlite3_column_text(st, 1), sizeof(w->job_id));
    w->url = col_dup(st, 2, NULL);
    w->state = sqlite3_column_int(st, 3);
    w->attempts = sqlite3_column_int(st, 4);
    w->next_ms = sqlite3_column_int64(st, 5);
    w->created_ms = sqlite3_column_int64(st, 6);
    if (sqlite3_column_text(st, 7))
        str_copy(w->last_error, (const char *)sqlite3_column_text(st, 7), sizeof(w->last_error));
    if (with_body) w->body = col_dup(st, 8, &w->body_len);
}

#define HOOK_COLS "id, job_id, url, state, attempts, next_ms, created_ms, last_error"

static const char *SQL_HOOK_DUE = "SELECT " HOOK_COLS ", body FROM webhooks WHERE state = 0 AND "
                                  "next_ms <= ?1 ORDER BY next_ms LIMIT ?2";

static int sj_webhook_due(struct store *s, int64_t now, struct store_webhook *out, int max,
                          struct thaw_err *err)
{
    struct sj *j = SJ(s);
    pthread_mutex_lock(&j->lock);
    int n = 0, rc = 0, step;
    sqlite3_stmt *st = stmt(j, SQL_HOOK_DUE, err);
    if (!st) {
        pthread_mutex_unlock(&j->lock);
        return THAW_EIO;
    }
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int(st, 2, max);
    while (n < max && (step = sqlite3_step(st)) == SQLITE_ROW)
        read_hook(st, &out[n++], true);
    if (n < max && step != SQLITE_DONE) rc = db_err(j, err, "read webhooks");
    reset_all(j);
    pthread_mutex_unlock(&j->lock);
    if (rc) {
        for (int i = 0; i < n; i++)
            store_webhook_clear(&out[i]);
        return rc;
    }
    return n;
}

static const char *SQL_HOOK_UPDATE =
    "UPDATE webhooks SET state = ?2, attempts = ?3, next_ms = ?4, last_error = ?5 WHERE id = ?1";

static int sj_webhook_update(struct store *s, int64_t id, int state, int attempts, int64_t next_ms,
                             const char *last_error, struct thaw_err *err)
{
    struct sj *j = SJ(s);
    int rc = begin(j, err);
    if (rc) return rc;
    sqlite3_stmt *st = stmt(j, SQL_HOOK_UPDATE, err);
    if (!st) return end(j, THAW_EIO, err);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, state);
    sqlite3_bind_int(st, 3, attempts);
    sqlite3_bind_int64(st, 4, next_ms);
    bind_text(st, 5, last_error);
    if (sqlite3_step(st) != SQLITE_DONE) rc = db_err(j, err, "update webhook");
    return end(j, rc, err);
}

static int sj_webhook_next(struct store *s, int64_t *next_ms, struct thaw_err *err)
{
    struct sj *j = SJ(s);
    pthread_mutex_lock(&j->lock);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    *next_ms = INT64_MAX;
    if (sqlite3_prepare_v2(j->db, "SELECT MIN(next_ms) FROM webhooks WHERE state = 0", -1, &st,
                           NULL) != SQLITE_OK)
        rc = db_err(j, err, "prepare");
    else if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *next_ms = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&j->lock);
    return rc;
}

static int sj_webhook_list(struct store *s, int state, int limit, store_webhook_cb cb, void *ctx,
                           struct thaw_err *err)
{
    struct sj *j = SJ(s);
    pthread_mutex_lock(&j->lock);
    sqlite3_stmt *st = NULL;
    int rc = 0, step;
    if (sqlite3_prepare_v2(j->db,
                           "SELECT " HOOK_COLS " FROM webhooks WHERE (?1 < 0 OR state = ?1) "
                           "ORDER BY id DESC LIMIT ?2",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(j, err, "prepare");
        goto out;
    }
    sqlite3_bind_int(st, 1, state);
    sqlite3_bind_int(st, 2, limit > 0 ? limit : 100);
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_webhook w;
        read_hook(st, &w, false);
        rc = cb(ctx, &w);
        store_webhook_clear(&w);
        if (rc) goto out;
    }
    if (step != SQLITE_DONE) rc = db_err(j, err, "list webhooks");
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&j->lock);
    return rc;
}

static int hook_change(struct store *s, const char *sql, int64_t id, int64_t now, int *n,
                       struct thaw_err *err)
{
    struct sj *j = SJ(s);
    int rc = begin(j, err);
    if (rc) return rc;
    sqlite3_stmt *st = NULL;
    *n = 0;
    if (sqlite3_prepare_v2(j->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(j, err, "prepare");
    } else {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, now);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_err(j, err, "change webhooks");
        else
            *n = sqlite3_changes(j->db);
    }
    sqlite3_finalize(st);
    if (!rc && id && *n == 0)
        rc = thaw_errf(err, THAW_ENOTFOUND, "webhook delivery %lld is not dead-lettered",
                       (long long)id);
    return end(j, rc, err);
}

static int sj_webhook_replay(struct store *s, int64_t id, int64_t now, int *n, struct thaw_err *err)
{
    return hook_change(s,
                       "UPDATE webhooks SET state = 0, attempts = 0, next_ms = ?2 WHERE state = 2 "
                       "AND (?1 = 0 OR id = ?1)",
                       id, now, n, err);
}

static int sj_webhook_purge(struct store *s, int64_t id, int *n, struct thaw_err *err)
{
    return hook_change(s,
                       "DELETE FROM webhooks WHERE state = 2 AND (?1 = 0 OR id = ?1) AND ?2 >= 0",
                       id, 0, n, err);
}

/* ---- attach ---- */

static const struct store_jobs_ops sqlite_jobs_ops = {
    .submit = sj_submit,
    .lease = sj_lease,
    .renew = sj_renew,
    .complete = sj_complete,
    .get = sj_get,
    .list = sj_list,
    .cancel = sj_cancel,
    .replay = sj_replay,
    .purge = sj_purge,
    .recover = sj_recover,
    .active_counts = sj_active_counts,
    .expire = sj_expire,
    .webhook_due = sj_webhook_due,
    .webhook_update = sj_webhook_update,
    .webhook_next = sj_webhook_next,
    .webhook_list = sj_webhook_list,
    .webhook_replay = sj_webhook_replay,
    .webhook_purge = sj_webhook_purge,
};

void sqlite_jobs_detach(struct store *s)
{
    struct sj *j = s ? s->jobs_state : NULL;
    if (!j) return;
    for (int i = 0; i < N_CACHED; i++)
        sqlite3_finalize(j->cache[i].stmt);
    sqlite3_close(j->db);
    pthread_mutex_destroy(&j->lock);
    free(j);
    s->jobs_state = NULL;
    s->jobs_ops = NULL;
}

/* Attempts record the deployment version that answered (added with
 * versions; files from before get the column, 0 for their old rows). */
static int add_attempt_version(struct sj *j, struct thaw_err *err)
{
    sqlite3_stmt *st = NULL;
    bool has = false;
    if (sqlite3_prepare_v2(j->db, "PRAGMA table_info(job_attempts)", -1, &st, NULL) != SQLITE_OK)
        return db_err(j, err, "read job_attempts columns");
    while (sqlite3_step(st) == SQLITE_ROW)
        has |= strcmp((const char *)sqlite3_column_text(st, 1), "version") == 0;
    sqlite3_finalize(st);
    return has ? 0
               : exec(j, "ALTER TABLE job_attempts ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
                      err);
}

/* Jobs record the tenant that submitted them (added for issue 3; files
 * from before get the column, "" for their old rows, which stay visible by
 * deployment as they were). */
static int add_job_tenant(struct sj *j, struct thaw_err *err)
{
    sqlite3_stmt *st = NULL;
    bool has = false;
    if (sqlite3_prepare_v2(j->db, "PRAGMA table_info(jobs)", -1, &st, NULL) != SQLITE_OK)
        return db_err(j, err, "read jobs columns");
    while (sqlite3_step(st) == SQLITE_ROW)
        has |= strcmp((const char *)sqlite3_column_text(st, 1), "tenant") == 0;
    sqlite3_finalize(st);
    int rc = has ? 0 : exec(j, "ALTER TABLE jobs ADD COLUMN tenant TEXT NOT NULL DEFAULT ''", err);
    /* A tenant's listing walks its own jobs, not everyone's. */
    if (!rc) rc = exec(j, "CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs(tenant, state)", err);
    return rc;
}

/* Jobs record the id of the key that submitted them (its quotas are
 * charged for their attempts, and revoking it stops them); files from
 * before get the column, "" for their old rows (charged to the tenant). */
static int add_job_key(struct sj *j, struct thaw_err *err)
{
    sqlite3_stmt *st = NULL;
    bool has = false;
    if (sqlite3_prepare_v2(j->db, "PRAGMA table_info(jobs)", -1, &st, NULL) != SQLITE_OK)
        return db_err(j, err, "read jobs columns");
    while (sqlite3_step(st) == SQLITE_ROW)
        has |= strcmp((const char *)sqlite3_column_text(st, 1), "key_id") == 0;
    sqlite3_finalize(st);
    return has ? 0 : exec(j, "ALTER TABLE jobs ADD COLUMN key_id TEXT NOT NULL DEFAULT ''", err);
}

int sqlite_jobs_attach(struct store *s, const char *path, struct thaw_err *err)
{
    struct sj *j = calloc(1, sizeof(*j));
    if (!j) return thaw_errf(err, THAW_ENOMEM, "store: out of memory");
    pthread_mutex_init(&j->lock, NULL);
    s->jobs_state = j;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = 0;
    if (sqlite3_open_v2(path, &j->db, flags, NULL) != SQLITE_OK) {
        rc = thaw_errf(err, THAW_EIO, "store: cannot open %s for jobs: %s", path,
                       j->db ? sqlite3_errmsg(j->db) : "out of memory");
    }
    if (!rc) {
        sqlite3_busy_timeout(j->db, 10000);
        rc = exec(j, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err);
    }
    if (!rc) rc = exec(j, schema, err);
    if (!rc) rc = add_attempt_version(j, err);
    if (!rc) rc = add_job_tenant(j, err);
    if (!rc) rc = add_job_key(j, err);
    if (rc) {
        sqlite_jobs_detach(s);
        return rc;
    }
    s->jobs_ops = &sqlite_jobs_ops;
    return 0;
}
