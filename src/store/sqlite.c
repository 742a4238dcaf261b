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
                               "  updated_ms INTEGER NOT NULL);";

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
                             struct thaw_err *err)
{
    struct sqlite_store *st = (struct sqlite_store *)s;
    sqlite3_stmt *stmt = NULL;
    int rc = 0;
    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO deployments(name, spec, updated_ms) VALUES (?1, ?2, ?3) "
                           "ON CONFLICT(name) DO UPDATE SET spec = ?2, updated_ms = ?3",
                           -1, &stmt, NULL) != SQLITE_OK) {
        rc = db_error(st, err, "prepare");
        goto out;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, spec, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 3, time_wall_ms());
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
    pthread_mutex_lock(&st->lock);
    if (sqlite3_prepare_v2(st->db, "DELETE FROM deployments WHERE name = ?1", -1, &stmt, NULL) !=
        SQLITE_OK) {
        rc = db_error(st, err, "prepare");
        goto out;
    }
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) rc = db_error(st, err, "delete deployment");
    else if (sqlite3_changes(st->db) == 0)
        rc = thaw_errf(err, THAW_ENOTFOUND, "deployment '%s' not found", name);
out:
    sqlite3_finalize(stmt);
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
    if (sqlite3_prepare_v2(st->db, "SELECT name, spec FROM deployments ORDER BY name", -1, &stmt,
                           NULL) != SQLITE_OK) {
        rc = db_error(st, err, "prepare");
        goto out;
    }
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        rc = cb(ctx, (const char *)sqlite3_column_text(stmt, 0),
                (const char *)sqlite3_column_text(stmt, 1));
        if (rc) goto out;
    }
    if (step != SQLITE_DONE) rc = db_error(st, err, "list deployments");
out:
    sqlite3_finalize(stmt);
    pthread_mutex_unlock(&st->lock);
    return rc;
}

static const struct store_ops sqlite_ops = {
    .close = sq_close,
    .deployment_put = sq_deployment_put,
    .deployment_get = sq_deployment_get,
    .deployment_delete = sq_deployment_delete,
    .deployment_list = sq_deployment_list,
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
    if (!rc) rc = sq_exec(st, schema_v1, err);
    if (!rc) rc = sq_exec(st, "PRAGMA user_version=1;", err);
    if (!rc) rc = sqlite_jobs_attach(&st->base, path, err); /* jobs: tables and ops */
    if (rc) {
        sq_close(&st->base);
        return rc;
    }
    *out = &st->base;
    return 0;
}
