/* The embedded store: one SQLite file in WAL mode, full synchronous commits,
 * schema versioned with user_version so later releases can migrate it. */
#include "store/store_int.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

struct sqlite_store {
    struct store base;
    sqlite3 *db;
    pthread_mutex_t lock; /* one connection, serialised: writes are few */
};

static const char *schema_v1 = "CREATE TABLE IF NOT EXISTS deployments ("
                               "  name TEXT PRIMARY KEY,"
                               "  spec TEXT NOT NULL,"
                               "  updated_ms INTEGER NOT NULL,"
                               "  owner TEXT NOT NULL DEFAULT '');";

/* v2: deployments have an owner; documents; the audit trail. */
static const char *schema_v2 = "CREATE TABLE IF NOT EXISTS docs ("
                               "  collection TEXT NOT NULL, id TEXT NOT NULL, value TEXT NOT NULL,"
                               "  PRIMARY KEY (collection, id)) WITHOUT ROWID;"
                               "CREATE TABLE IF NOT EXISTS audit ("
                               "  seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL,"
                               "  actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,"
                               "  outcome TEXT NOT NULL, details TEXT NOT NULL, prev_hash BLOB NOT NULL,"
                               "  hash BLOB NOT NULL);";

/* v3: immutable versions per deployment, and the traffic over them (one
 * document with a revision on the deployment row, every change logged). */
static const char *schema_v3 =
    "CREATE TABLE IF NOT EXISTS versions ("
    "  deployment TEXT NOT NULL, n INTEGER NOT NULL, digest TEXT NOT NULL, spec TEXT NOT NULL,"
    "  actor TEXT NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (deployment, n));"
    "CREATE UNIQUE INDEX IF NOT EXISTS versions_digest ON versions(deployment, digest);"
    "CREATE TABLE IF NOT EXISTS traffic_log ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT, deployment TEXT NOT NULL, rev INTEGER NOT NULL,"
    "  time_ms INTEGER NOT NULL, actor TEXT NOT NULL, reason TEXT NOT NULL, traffic TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS traffic_log_dep ON traffic_log(deployment, seq);";

static int user_version(struct sqlite_store *st)
{
    sqlite3_stmt *stmt = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &stmt, NULL) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW)
        v = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return v;
}

static int db_error(struct sqlite_store *st, struct thaw_err *err, const char *what)
{
    return thaw_errf(err, THAW_EIO, "store: %s: %s", what, sqlite3_errmsg(st->db));
}

static int sq_exec(struct sqlite_store *st, const char *sql, struct thaw_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = thaw_errf(err, THAW_EIO, "store: %s", msg ? msg : "exec failed");
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

static void sq_close(struct store *s)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite_jobs_detach(s); /* jobs: its own connection */
    sqlite3_close(st->db);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

static int sq_deployment_put(struct store *s, const char *name, const char *spec,
                             const char *owner, struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO deployments(name, spec, updated_ms, owner) "
                           "VALUES (?1, ?2, ?3, ?4) "
                           "ON CONFLICT(name) DO UPDATE SET spec = ?2, updated_ms = ?3, owner = ?4",
                           -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_error(st, err, "prepare");
        goto out;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, spec, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, time_wall_ms());
    sqlite3_bind_text(stmt, 4, owner ? owner : "", -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) rc = db_error(st, err, "write deployment");
out:
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static int sq_deployment_get(struct store *s, const char *name, char **spec, struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    *spec = NULL;
    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db, "SELECT spec FROM deployments WHERE name = ?1", -1, &stmt,
                           NULL) != SQLITE_OK) {
        rc = db_error(st, err, "prepare");
        goto out;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
        *spec = str_dup((const char *)sqlite3_column_text(stmt, 0));
        if (!*spec) rc = thaw_errf(err, THAW_ENOMEM, "store: out of memory");
    } else if (step == SQLITE_DONE) {
        rc = thaw_errf(err, THAW_ENOTFOUND, "deployment '%s' not found", name);
    } else {
        rc = db_error(st, err, "read deployment");
    }
out:
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static int sq_deployment_delete(struct store *s, const char *name, struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    bool in_tx = false;
    pthread_mutex_lock(&st->lock);
    /* The deployment, its versions and its traffic history go together. */
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        rc = db_error(st, err, "begin");
        goto out;
    }
    in_tx = true;
    if (sqlite3_prepare_v2(st->db, "DELETE FROM deployments WHERE name = ?1", -1, &stmt, NULL) !=
        SQLITE_OK) {
        rc = db_error(st, err, "prepare");
        goto out;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        rc = db_error(st, err, "delete deployment");
        goto out;
    }
    if (sqlite3_changes(st->db) == 0) {
        rc = thaw_errf(err, THAW_ENOTFOUND, "deployment '%s' not found", name);
        goto out;
    }
    static const char *const more[] = {"DELETE FROM versions WHERE deployment = ?1",
                                       "DELETE FROM traffic_log WHERE deployment = ?1"};
    for (size_t i = 0; i < ARRAY_LEN(more) && !rc; i++) {
        sqlite3_finalize(stmt);
        stmt = NULL;
        if (sqlite3_prepare_v2(st->db, more[i], -1, &stmt, NULL) != SQLITE_OK) {
            rc = db_error(st, err, "prepare");
            break;
        }
        sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE) rc = db_error(st, err, "delete versions");
    }
out:
    sqlite3_finalize(stmt);
    if (in_tx) {
        if (!rc && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
            rc = db_error(st, err, "commit");
        if (rc) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static int sq_deployment_list(struct store *s, store_deployment_cb cb, void *ctx,
                              struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db, "SELECT name, spec, owner FROM deployments ORDER BY name", -1, &stmt,
                           NULL) != SQLITE_OK) {
        rc = db_error(st, err, "prepare");
        goto out;
    }
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        rc = cb(ctx, (const char *)sqlite3_column_text(stmt, 0),
                (const char *)sqlite3_column_text(stmt, 1),
                (const char *)sqlite3_column_text(stmt, 2));
        if (rc) goto out;
    }
    if (step != SQLITE_DONE) rc = db_error(st, err, "list deployments");
out:
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

/* ---- documents ---- */

/* Prepares sql under the lock; on failure unlocks and reports. */
static int prep(struct sqlite_store *st, const char *sql, sqlite3_stmt **stmt, struct thaw_err *err)
{
    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL) != SQLITE_OK) {
        int rc = db_error(st, err, "prepare");
        pthread_mutex_unlock(&st->lock);
        return rc;
    }
    return 0;
}

static int done(struct sqlite_store *st, sqlite3_stmt *stmt, int rc)
{
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static int sq_doc_put(struct store *s, const char *collection, const char *id, const char *json,
                      struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt;
    int rc = prep(st, "INSERT OR REPLACE INTO docs(collection, id, value) VALUES (?1, ?2, ?3)",
                  &stmt, err);
    if (rc) return rc;
    sqlite3_bind_text(stmt, 1, collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, json, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) rc = db_error(st, err, "write document");
    return done(st, stmt, rc);
}

static int sq_doc_put_all(struct store *s, const struct store_doc_write *w, size_t n,
                          struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt;
    int rc = prep(st, "INSERT OR REPLACE INTO docs(collection, id, value) VALUES (?1, ?2, ?3)",
                  &stmt, err);
    if (rc) return rc;
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return done(st, stmt, db_error(st, err, "begin"));
    for (size_t i = 0; !rc && i < n; i++) {
        sqlite3_reset(stmt);
        sqlite3_bind_text(stmt, 1, w[i].collection, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, w[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, w[i].json, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE) rc = db_error(st, err, "write document");
    }
    if (!rc && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_error(st, err, "commit");
    if (rc) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return done(st, stmt, rc);
}

static int sq_doc_get(struct store *s, const char *collection, const char *id, char **json,
                      struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt;
    *json = NULL;
    int rc = prep(st, "SELECT value FROM docs WHERE collection = ?1 AND id = ?2", &stmt, err);
    if (rc) return rc;
    sqlite3_bind_text(stmt, 1, collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
        *json = str_dup((const char *)sqlite3_column_text(stmt, 0));
        if (!*json) rc = thaw_errf(err, THAW_ENOMEM, "store: out of memory");
    } else if (step == SQLITE_DONE) {
        rc = thaw_errf(err, THAW_ENOTFOUND, "%s '%s' not found", collection, id);
    } else {
        rc = db_error(st, err, "read document");
    }
    return done(st, stmt, rc);
}

static int sq_doc_delete(struct store *s, const char *collection, const char *id,
                         struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt;
    int rc = prep(st, "DELETE FROM docs WHERE collection = ?1 AND id = ?2", &stmt, err);
    if (rc) return rc;
    sqlite3_bind_text(stmt, 1, collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, id, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) rc = db_error(st, err, "delete document");
    else if (sqlite3_changes(st->db) == 0)
        rc = thaw_errf(err, THAW_ENOTFOUND, "%s '%s' not found", collection, id);
    return done(st, stmt, rc);
}

static int sq_doc_list(struct store *s, const char *collection, store_doc_cb cb, void *ctx,
                       struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt;
    int rc = prep(st, "SELECT id, value FROM docs WHERE collection = ?1 ORDER BY id", &stmt, err);
    if (rc) return rc;
    sqlite3_bind_text(stmt, 1, collection, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        rc = cb(ctx, (const char *)sqlite3_column_text(stmt, 0),
                (const char *)sqlite3_column_text(stmt, 1));
        if (rc) return done(st, stmt, rc);
    }
    if (step != SQLITE_DONE) rc = db_error(st, err, "list documents");
    return done(st, stmt, rc);
}

/* ---- audit ---- */

static int sq_audit_append(struct store *s, const struct store_audit_row *r, struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt;
    int rc = prep(st,
                  "INSERT INTO audit(seq, time_ms, actor, action, target, outcome, details, "
                  "prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                  &stmt, err);
    if (rc) return rc;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)r->seq);
    sqlite3_bind_int64(stmt, 2, r->time_ms);
    sqlite3_bind_text(stmt, 3, r->actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, r->action, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, r->target, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 6, r->outcome, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 7, r->details ? r->details : "", -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 8, r->prev_hash, sizeof(r->prev_hash), SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 9, r->hash, sizeof(r->hash), SQLITE_STATIC);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_CONSTRAINT)
        rc = thaw_errf(err, THAW_ECONFLICT, "audit entry %llu exists", (unsigned long long)r->seq);
    else if (step != SQLITE_DONE) rc = db_error(st, err, "append audit entry");
    return done(st, stmt, rc);
}

static int sq_audit_list(struct store *s, uint64_t after_seq, size_t limit, store_audit_cb cb,
                         void *ctx, struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt;
    int rc = prep(st,
                  "SELECT seq, time_ms, actor, action, target, outcome, details, prev_hash, hash "
                  "FROM audit "
                  "WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                  &stmt, err);
    if (rc) return rc;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)after_seq);
    sqlite3_bind_int64(stmt, 2, limit ? (sqlite3_int64)limit : -1);
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct store_audit_row row = {
            .seq = (uint64_t)sqlite3_column_int64(stmt, 0),
            .time_ms = sqlite3_column_int64(stmt, 1),
            .actor = (const char *)sqlite3_column_text(stmt, 2),
            .action = (const char *)sqlite3_column_text(stmt, 3),
            .target = (const char *)sqlite3_column_text(stmt, 4),
            .outcome = (const char *)sqlite3_column_text(stmt, 5),
            .details = (const char *)sqlite3_column_text(stmt, 6),
        };
        const void *ph = sqlite3_column_blob(stmt, 7), *h = sqlite3_column_blob(stmt, 8);
        if (ph && sqlite3_column_bytes(stmt, 7) == (int)sizeof(row.prev_hash))
            memcpy(row.prev_hash, ph, sizeof(row.prev_hash));
        if (h && sqlite3_column_bytes(stmt, 8) == (int)sizeof(row.hash))
            memcpy(row.hash, h, sizeof(row.hash));
        rc = cb(ctx, &row);
        if (rc) return done(st, stmt, rc);
    }
    if (step != SQLITE_DONE) rc = db_error(st, err, "list audit entries");
    return done(st, stmt, rc);
}

/* ---- versions and traffic ---- */

/* Runs one statement already prepared by the caller's sql with text
 * bindings; helper for the transactions below (lock held). */
static int step_text(struct sqlite_store *st, const char *sql, const char *const *texts,
                     const int64_t *ints, int n_texts, int n_ints, struct thaw_err *err)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(st->db, sql, -1, &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "prepare");
    for (int i = 0; i < n_texts; i++)
        sqlite3_bind_text(stmt, i + 1, texts[i], -1, SQLITE_STATIC);
    for (int i = 0; i < n_ints; i++)
        sqlite3_bind_int64(stmt, n_texts + i + 1, ints[i]);
    int rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : db_error(st, err, "write");
    sqlite3_finalize(stmt);
    return rc;
}

/* Reads the traffic document and revision of name (lock held): 0,
 * THAW_ENOTFOUND or an error. *traffic is malloc'd. */
static int read_traffic(struct sqlite_store *st, const char *name, char **traffic, int64_t *rev,
                        struct thaw_err *err)
{
    sqlite3_stmt *stmt = NULL;
    *traffic = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT traffic, traffic_rev FROM deployments WHERE name = ?1",
                           -1, &stmt, NULL) != SQLITE_OK)
        return db_error(st, err, "prepare");
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    int rc = 0, step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(stmt, 0);
        *traffic = str_dup(t ? t : "");
        *rev = sqlite3_column_int64(stmt, 1);
        if (!*traffic) rc = thaw_errf(err, THAW_ENOMEM, "store: out of memory");
    } else if (step == SQLITE_DONE) {
        rc = thaw_errf(err, THAW_ENOTFOUND, "deployment '%s' not found", name);
    } else {
        rc = db_error(st, err, "read traffic");
    }
    sqlite3_finalize(stmt);
    return rc;
}

/* Writes traffic as revision rev and logs it (lock held, inside a transaction). */
static int write_traffic(struct sqlite_store *st, const char *name, const char *traffic,
                         int64_t rev, const char *actor, const char *reason, struct thaw_err *err)
{
    int64_t now = time_wall_ms();
    int rc = step_text(st, "UPDATE deployments SET traffic = ?1, traffic_rev = ?3 WHERE name = ?2",
                       (const char *const[]){traffic, name}, (const int64_t[]){rev}, 2, 1, err);
    if (!rc)
        rc = step_text(
            st,
            "INSERT INTO traffic_log(deployment, actor, reason, traffic, rev, time_ms) "
            "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            (const char *const[]){name, actor ? actor : "node", reason ? reason : "", traffic},
            (const int64_t[]){rev, now}, 4, 2, err);
    return rc;
}

static int tx_begin(struct sqlite_store *st, struct thaw_err *err)
{
    return sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : db_error(st, err, "begin");
}

static int tx_end(struct sqlite_store *st, int rc, struct thaw_err *err)
{
    if (!rc && sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_error(st, err, "commit");
    if (rc) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int sq_version_deploy(struct store *s, const char *name, const char *owner,
                             const char *actor, const char *digest, const char *version_doc,
                             const char *spec_json, store_traffic_fn fn, void *ctx,
                             const char *reason, struct store_deploy_result *out,
                             struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&st->lock);
    int rc = tx_begin(st, err);
    if (rc) {
        pthread_mutex_unlock(&st->lock);
        return rc;
    }
    sqlite3_stmt *stmt = NULL;
    char *cur = NULL, *next = NULL;
    int64_t rev = 0;
    /* The same digest is the same version. */
    if (sqlite3_prepare_v2(st->db, "SELECT n FROM versions WHERE deployment = ?1 AND digest = ?2",
                           -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_error(st, err, "prepare");
        goto out;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, digest, -1, SQLITE_STATIC);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
        out->version = sqlite3_column_int(stmt, 0);
    } else if (step != SQLITE_DONE) {
        rc = db_error(st, err, "read versions");
        goto out;
    }
    sqlite3_finalize(stmt);
    stmt = NULL;
    if (!out->version) {
        if (sqlite3_prepare_v2(st->db,
                               "SELECT COALESCE(MAX(n), 0) + 1 FROM versions WHERE deployment = ?1",
                               -1, &stmt, NULL) != SQLITE_OK ||
            (sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC),
             sqlite3_step(stmt) != SQLITE_ROW)) {
            rc = db_error(st, err, "number a version");
            goto out;
        }
        out->version = sqlite3_column_int(stmt, 0);
        out->created = true;
        rc = step_text(st,
                       "INSERT INTO versions(deployment, digest, spec, actor, n, created_ms) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                       (const char *const[]){name, digest, version_doc, actor ? actor : "node"},
                       (const int64_t[]){out->version, time_wall_ms()}, 4, 2, err);
        if (rc) goto out;
    }
    rc = read_traffic(st, name, &cur, &rev, err);
    out->existed = rc == 0;
    if (rc == THAW_ENOTFOUND) {
        rc = step_text(st,
                       "INSERT INTO deployments(name, spec, owner, traffic, traffic_rev, "
                       "updated_ms) VALUES (?1, ?2, ?3, '', 0, ?4)",
                       (const char *const[]){name, spec_json, owner ? owner : ""},
                       (const int64_t[]){time_wall_ms()}, 3, 1, err);
        cur = str_dup("");
        rev = 0;
        if (!rc && !cur) rc = thaw_errf(err, THAW_ENOMEM, "store: out of memory");
    } else if (!rc) {
        rc = step_text(st,
                       "UPDATE deployments SET spec = ?2, owner = ?3, updated_ms = ?4 "
                       "WHERE name = ?1",
                       (const char *const[]){name, spec_json, owner ? owner : ""},
                       (const int64_t[]){time_wall_ms()}, 3, 1, err);
    }
    if (rc) goto out;
    next = fn ? fn(ctx, out->version, out->created, cur) : NULL;
    if (next && strcmp(next, cur) != 0) {
        rc = write_traffic(st, name, next, rev + 1, actor, reason, err);
        if (rc) goto out;
        rev++;
        out->traffic_changed = true;
        out->traffic = next;
        next = NULL;
    } else {
        out->traffic = cur;
        cur = NULL;
    }
    out->rev = rev;
out:
    sqlite3_finalize(stmt);
    rc = tx_end(st, rc, err);
    pthread_mutex_unlock(&st->lock);
    free(cur);
    free(next);
    if (rc) {
        free(out->traffic);
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

static void fill_version(sqlite3_stmt *stmt, struct store_version *v)
{
    memset(v, 0, sizeof(*v));
    v->n = sqlite3_column_int(stmt, 0);
    str_copy(v->digest, (const char *)sqlite3_column_text(stmt, 1), sizeof(v->digest));
    str_copy(v->actor, (const char *)sqlite3_column_text(stmt, 2), sizeof(v->actor));
    v->created_ms = sqlite3_column_int64(stmt, 3);
}

static int sq_version_get(struct store *s, const char *name, int n, struct store_version *meta,
                          char **spec_json, struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt;
    if (spec_json) *spec_json = NULL;
    int rc = prep(st,
                  "SELECT n, digest, actor, created_ms, spec FROM versions "
                  "WHERE deployment = ?1 AND n = ?2",
                  &stmt, err);
    if (rc) return rc;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, n);
    int step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
        struct store_version v;
        fill_version(stmt, &v);
        if (meta) *meta = v;
        if (spec_json) {
            *spec_json = str_dup((const char *)sqlite3_column_text(stmt, 4));
            if (!*spec_json) rc = thaw_errf(err, THAW_ENOMEM, "store: out of memory");
        }
    } else if (step == SQLITE_DONE) {
        rc = thaw_errf(err, THAW_ENOTFOUND, "deployment '%s' has no version v%d", name, n);
    } else {
        rc = db_error(st, err, "read version");
    }
    return done(st, stmt, rc);
}

static int sq_version_list(struct store *s, const char *name, bool with_spec, store_version_cb cb,
                           void *ctx, struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt;
    int rc = prep(st,
                  name ? "SELECT n, digest, actor, created_ms, spec, deployment FROM versions "
                         "WHERE deployment = ?1 ORDER BY n"
                       : "SELECT n, digest, actor, created_ms, spec, deployment FROM versions "
                         "ORDER BY deployment, n",
                  &stmt, err);
    if (rc) return rc;
    if (name) sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct store_version v;
        fill_version(stmt, &v);
        if (with_spec) v.spec_json = (const char *)sqlite3_column_text(stmt, 4);
        rc = cb(ctx, (const char *)sqlite3_column_text(stmt, 5), &v);
        if (rc) return done(st, stmt, rc);
    }
    if (step != SQLITE_DONE) rc = db_error(st, err, "list versions");
    return done(st, stmt, rc);
}

static int sq_traffic_get(struct store *s, const char *name, char **traffic, int64_t *rev,
                          struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    pthread_mutex_lock(&st->lock);
    int rc = read_traffic(st, name, traffic, rev, err);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static int sq_traffic_put(struct store *s, const char *name, const char *traffic,
                          int64_t expect_rev, const char *actor, const char *reason,
                          int64_t *new_rev, struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    pthread_mutex_lock(&st->lock);
    int rc = tx_begin(st, err);
    if (rc) {
        pthread_mutex_unlock(&st->lock);
        return rc;
    }
    char *cur = NULL;
    int64_t rev = 0;
    rc = read_traffic(st, name, &cur, &rev, err);
    if (!rc && expect_rev >= 0 && rev != expect_rev)
        rc = thaw_errf(err, THAW_ECONFLICT,
                       "the traffic of '%s' changed meanwhile (revision %lld, expected %lld)", name,
                       (long long)rev, (long long)expect_rev);
    if (!rc) rc = write_traffic(st, name, traffic, rev + 1, actor, reason, err);
    rc = tx_end(st, rc, err);
    pthread_mutex_unlock(&st->lock);
    free(cur);
    if (!rc && new_rev) *new_rev = rev + 1;
    return rc;
}

static int sq_traffic_log(struct store *s, const char *name, store_traffic_log_cb cb, void *ctx,
                          struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt;
    int rc = prep(st,
                  "SELECT rev, time_ms, actor, reason, traffic FROM traffic_log "
                  "WHERE deployment = ?1 ORDER BY seq",
                  &stmt, err);
    if (rc) return rc;
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct store_traffic_entry e = {
            .rev = sqlite3_column_int64(stmt, 0),
            .time_ms = sqlite3_column_int64(stmt, 1),
            .actor = (const char *)sqlite3_column_text(stmt, 2),
            .reason = (const char *)sqlite3_column_text(stmt, 3),
            .traffic = (const char *)sqlite3_column_text(stmt, 4),
        };
        rc = cb(ctx, &e);
        if (rc) return done(st, stmt, rc);
    }
    if (step != SQLITE_DONE) rc = db_error(st, err, "list traffic changes");
    return done(st, stmt, rc);
}

static int migrate(struct sqlite_store *st, struct thaw_err *err)
{
    int v = user_version(st);
    /* One transaction: a crash mid-migration leaves the old schema whole. */
    int rc = sq_exec(st, "BEGIN IMMEDIATE", err);
    if (rc) return rc;
    rc = sq_exec(st, schema_v1, err);
    if (!rc && v == 1) /* v1 files predate owners */
        rc = sq_exec(st, "ALTER TABLE deployments ADD COLUMN owner TEXT NOT NULL DEFAULT ''", err);
    if (!rc) rc = sq_exec(st, schema_v2, err);
    /* v3: the traffic document on the deployment row. Deployments written
     * before versions existed get their v1 when the node restores them. */
    if (!rc && v < 3)
        rc = sq_exec(st,
                     "ALTER TABLE deployments ADD COLUMN traffic TEXT NOT NULL DEFAULT '';"
                     "ALTER TABLE deployments ADD COLUMN traffic_rev INTEGER NOT NULL DEFAULT 0;",
                     err);
    if (!rc) rc = sq_exec(st, schema_v3, err);
    if (!rc) rc = sq_exec(st, "PRAGMA user_version=3;", err);
    if (!rc) rc = sq_exec(st, "COMMIT", err);
    if (rc) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static const struct store_ops sqlite_ops = {
    .close = sq_close,
    .deployment_put = sq_deployment_put,
    .deployment_get = sq_deployment_get,
    .deployment_delete = sq_deployment_delete,
    .deployment_list = sq_deployment_list,
    .doc_put = sq_doc_put,
    .doc_put_all = sq_doc_put_all,
    .doc_get = sq_doc_get,
    .doc_delete = sq_doc_delete,
    .doc_list = sq_doc_list,
    .audit_append = sq_audit_append,
    .audit_list = sq_audit_list,
    .version_deploy = sq_version_deploy,
    .version_get = sq_version_get,
    .version_list = sq_version_list,
    .traffic_get = sq_traffic_get,
    .traffic_put = sq_traffic_put,
    .traffic_log = sq_traffic_log,
};

int store_open_sqlite(const char *path, struct store **out, struct thaw_err *err)
{
    struct sqlite_store *st = calloc(1, sizeof(*st));
    if (!st) return thaw_errf(err, THAW_ENOMEM, "store: out of memory");
    st->base.ops = &sqlite_ops;
    pthread_mutex_init(&st->lock, NULL);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        int rc = thaw_errf(err, THAW_EIO, "store: cannot open %s: %s", path,
                           st->db ? sqlite3_errmsg(st->db) : "out of memory");
        sq_close(&st->base);
        return rc;
    }
    sqlite3_busy_timeout(st->db, 5000);
    int rc = sq_exec(st, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err);
    if (!rc) rc = migrate(st, err);
    if (!rc) rc = sqlite_jobs_attach(&st->base, path, err); /* jobs: tables and ops */
    if (rc) {
        sq_close(&st->base);
        return rc;
    }
    *out = &st->base;
    return 0;
}
