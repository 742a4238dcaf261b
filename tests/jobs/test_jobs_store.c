/* The store's jobs section on a real SQLite file: submissions with
 * idempotency keys (same hash, other hash, a conflicting request rolled back
 * whole), leases with attempt tokens so a stale runner cannot record a
 * result, retries that wait for their time, cancel, the dead-letter queue,
 * recovery after a restart, result expiry, webhook deliveries, and the
 * submitting tenant kept with each job (listing and dead letters filtered by
 * it in the query; a file from before tenants gains the column). */
#include "store/store.h"
#include "test.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[64], path[128];

static struct store *open_store(void)
{
    struct store *s = NULL;
    struct thaw_err err = {0};
    if (store_open_sqlite(path, &s, &err)) fprintf(stderr, "  open: %s\n", err.msg);
    return s;
}

static struct store_job_submit sub(const char *id, const char *dep, const char *input,
                                   const char *key, uint8_t hash_byte)
{
    struct store_job_submit s = {.group_start = true,
                                 .deployment = dep,
                                 .input = input,
                                 .input_len = strlen(input),
                                 .max_attempts = 3,
                                 .idem_key = key,
                                 .idem_expires_ms = 1000000};
    str_copy(s.id, id, sizeof(s.id));
    memset(s.body_hash, hash_byte, sizeof(s.body_hash));
    return s;
}

static void test_submit_and_idempotency(void)
{
    struct store *s = open_store();
    ASSERT(s != NULL);
    struct thaw_err err = {0};
    struct store_job_submit a[3] = {sub("j1", "d", "{\"x\":1}", "k1", 1),
                                    sub("j2", "d", "{\"x\":2}", NULL, 2),
                                    sub("j3", "e", "3", "k3", 3)};
    a[0].idem_expires_ms = 3500;
    ASSERT_EQ(store_job_submit(s, a, 3, 1000, &err), 0);
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(a[i].outcome, 0);
    /* Same key, same hash: the existing job. Other hash: a conflict. */
    struct store_job_submit b[2] = {sub("j4", "d", "{\"x\":1}", "k1", 1),
                                    sub("j5", "d", "{\"x\":9}", "k3", 9)};
    ASSERT_EQ(store_job_submit(s, b, 2, 2000, &err), 0);
    ASSERT_EQ(b[0].outcome, THAW_EEXIST);
    ASSERT_STR_EQ(b[0].existing_id, "j1");
    ASSERT_EQ(b[1].outcome, THAW_ECONFLICT);
    struct store_job job;
    ASSERT_EQ(store_job_get(s, "j4", false, &job, &err), THAW_ENOTFOUND);
    ASSERT_EQ(store_job_get(s, "j5", false, &job, &err), THAW_ENOTFOUND);
    /* A request of two where the second conflicts writes neither. */
    struct store_job_submit c[2] = {sub("j6", "d", "6", "k6", 6), sub("j7", "d", "7", "k1", 7)};
    c[1].group_start = false;
    ASSERT_EQ(store_job_submit(s, c, 2, 3000, &err), 0);
    ASSERT_EQ(c[0].outcome, THAW_ECONFLICT);
    ASSERT_EQ(c[1].outcome, THAW_ECONFLICT);
    ASSERT_EQ(store_job_get(s, "j6", false, &job, &err), THAW_ENOTFOUND);
    /* An expired key is free again. */
    struct store_job_submit d = sub("j8", "d", "8", "k1", 8);
    ASSERT_EQ(store_job_submit(s, &d, 1, 4000, &err), 0);
    ASSERT_EQ(d.outcome, 0);
    /* What was stored reads back. */
    ASSERT_EQ(store_job_get(s, "j1", true, &job, &err), 0);
    ASSERT_STR_EQ(job.deployment, "d");
    ASSERT_EQ(job.state, STORE_JOB_QUEUED);
    ASSERT_EQ(job.input_len, 7);
    ASSERT(memcmp(job.input, "{\"x\":1}", 7) == 0);
    ASSERT_EQ(job.attempts, 0);
    ASSERT_EQ(job.max_attempts, 3);
    store_job_clear(&job);
    store_close(s);
}

static void test_lease_complete_tokens(void)
{
    struct store *s = open_store();
    struct thaw_err err = {0};
    struct store_job_lease l[4];
    /* Oldest first; only deployment d; at most max. */
    int n = store_job_lease(s, "d", 5000, 100000, l, 4, &err);
    ASSERT_EQ(n, 3); /* j1, j2, j8 */
    ASSERT_STR_EQ(l[0].id, "j1");
    ASSERT_EQ(l[0].attempt, 1);
    ASSERT_EQ(store_job_lease(s, "d", 5000, 100000, l + 3, 1, &err), 0); /* all leased */
    /* A retry of j1 waits until its time. */
    struct store_job_outcome o = {.id = "j1",
                                  .attempt = 1,
                                  .new_state = STORE_JOB_QUEUED,
                                  .run_at_ms = 7000,
                                  .started_ms = 5000,
                                  .ended_ms = 5100,
                                  .status = 502,
                                  .code = "instance_crashed",
                                  .message = "bye",
                                  .message_len = 3};
    ASSERT_EQ(store_job_complete(s, &o, 1, &err), 0);
    ASSERT_EQ(o.outcome, 0);
    /* The same token again is stale now. */
    ASSERT_EQ(store_job_complete(s, &o, 1, &err), 0);
    ASSERT_EQ(o.outcome, THAW_ESTATE);
    struct store_job_lease l2[2];
    ASSERT_EQ(store_job_lease(s, "d", 6999, 100000, l2, 2, &err), 0);
    ASSERT_EQ(store_job_lease(s, "d", 7000, 100000, l2, 2, &err), 1);
    ASSERT_STR_EQ(l2[0].id, "j1");
    ASSERT_EQ(l2[0].attempt, 2);
    /* j2's lease runs out at 7500: leasing again bumps its token, and the
     * first runner's late answer is refused. */
    const char *ids1[] = {"j2"};
    int att1[] = {1};
    int64_t until1[] = {7500};
    ASSERT_EQ(store_job_renew(s, ids1, att1, until1, 1, &err), 0);
    struct store_job_lease l3[2];
    ASSERT_EQ(store_job_lease(s, "d", 7400, 9000, l3, 2, &err), 0);
    ASSERT_EQ(store_job_lease(s, "d", 7500, 9000, l3, 2, &err), 1);
    ASSERT_STR_EQ(l3[0].id, "j2");
    ASSERT_EQ(l3[0].attempt, 2);
    struct store_job_outcome late = {.id = "j2",
                                     .attempt = 1,
                                     .new_state = STORE_JOB_SUCCEEDED,
                                     .ended_ms = 7100,
                                     .status = 200,
                                     .result = "r",
                                     .result_len = 1};
    ASSERT_EQ(store_job_complete(s, &late, 1, &err), 0);
    ASSERT_EQ(late.outcome, THAW_ESTATE);
    /* Renewal keeps a lease alive past its expiry. */
    const char *ids[] = {"j2"};
    int att[] = {2};
    int64_t until[] = {20000};
    ASSERT_EQ(store_job_renew(s, ids, att, until, 1, &err), 0);
    ASSERT_EQ(store_job_lease(s, "d", 10000, 30000, l3 + 1, 1, &err), 0);
    /* Success with a result and a webhook delivery, in one transaction. */
    struct store_job_outcome ok = {.id = "j2",
                                   .attempt = 2,
                                   .new_state = STORE_JOB_SUCCEEDED,
                                   .started_ms = 7000,
                                   .ended_ms = 7200,
                                   .status = 200,
                                   .result = "{\"y\":2}",
                                   .result_len = 7,
                                   .expires_ms = 50000,
                                   .webhook_url = "http://hook/x",
                                   .webhook_body = "{}",
                                   .webhook_body_len = 2};
    ASSERT_EQ(store_job_complete(s, &ok, 1, &err), 0);
    ASSERT_EQ(ok.outcome, 0);
    struct store_job job;
    ASSERT_EQ(store_job_get(s, "j2", true, &job, &err), 0);
    ASSERT_EQ(job.state, STORE_JOB_SUCCEEDED);
    ASSERT_EQ(job.result_len, 7);
    ASSERT_EQ(job.finished_ms, 7200);
    ASSERT_EQ(job.expires_ms, 50000);
    ASSERT_EQ(job.n_attempt_log, 1); /* the lost attempt 1 left no record */
    ASSERT_EQ(job.attempt_log[0].n, 2);
    store_job_clear(&job);
    ASSERT_EQ(store_job_get(s, "j1", true, &job, &err), 0);
    ASSERT_EQ(job.n_attempt_log, 1);
    ASSERT_STR_EQ(job.attempt_log[0].code, "instance_crashed");
    ASSERT_EQ(job.attempt_log[0].message_len, 3);
    ASSERT_EQ(job.attempt_log[0].status, 502);
    store_job_clear(&job);
    for (int i = 0; i < n; i++) {
        free(l[i].input);
        free(l[i].webhook);
    }
    free(l2[0].input);
    free(l2[0].webhook);
    free(l3[0].input);
    free(l3[0].webhook);
    store_close(s);
}

static void count_cb(void *ctx, const char *dep, int n)
{
    if (strcmp(dep, "d") == 0) *(int *)ctx = n;
}

static void test_dead_cancel_recover(void)
{
    struct store *s = open_store();
    struct thaw_err err = {0};
    /* j1 (running, attempt 2) dies; j8 (running) is left for recovery. */
    struct store_job_outcome o = {.id = "j1",
                                  .attempt = 2,
                                  .new_state = STORE_JOB_DEAD,
                                  .ended_ms = 8000,
                                  .status = 500,
                                  .code = "function_error"};
    ASSERT_EQ(store_job_complete(s, &o, 1, &err), 0);
    ASSERT_EQ(o.outcome, 0);
    int active = -1;
    ASSERT_EQ(store_job_active_counts(s, count_cb, &active, &err), 0);
    ASSERT_EQ(active, 1); /* j8 */
    /* Replay brings it back with fresh attempts; purge needs a dead job. */
    int n = 0;
    ASSERT_EQ(store_job_replay(s, "j1", NULL, NULL, 9000, NULL, NULL, &n, &err), 0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(store_job_replay(s, "j1", NULL, NULL, 9000, NULL, NULL, &n, &err), THAW_ENOTFOUND);
    ASSERT_EQ(store_job_purge(s, "j1", NULL, NULL, &n, &err), THAW_ENOTFOUND);
    struct store_job job;
    ASSERT_EQ(store_job_get(s, "j1", false, &job, &err), 0);
    ASSERT_EQ(job.state, STORE_JOB_QUEUED);
    ASSERT_EQ(job.attempts, 0);
    store_job_clear(&job);
    /* Cancel: queued jobs can be, ended ones cannot. */
    int prev = -1;
    ASSERT_EQ(store_job_cancel(s, "j1", 9100, 99999, &prev, &err), 0);
    ASSERT_EQ(prev, STORE_JOB_QUEUED);
    ASSERT_EQ(store_job_cancel(s, "j1", 9100, 99999, &prev, &err), THAW_ESTATE);
    ASSERT_EQ(store_job_cancel(s, "nope", 9100, 99999, &prev, &err), THAW_ENOTFOUND);
    /* Restart: the running j8 is queued again, its interrupted attempt refunded. */
    store_close(s);
    s = open_store();
    ASSERT_EQ(store_job_recover(s, 10000, &err), 1);
    ASSERT_EQ(store_job_get(s, "j8", false, &job, &err), 0);
    ASSERT_EQ(job.state, STORE_JOB_QUEUED);
    ASSERT_EQ(job.attempts, 0);
    store_job_clear(&job);
    store_close(s);
}

static int list_cb(void *ctx, const struct store_job *j)
{
    (*(int *)ctx)++;
    return 0;
}

static void test_list_expire(void)
{
    struct store *s = open_store();
    struct thaw_err err = {0};
    int n = 0;
    struct store_job_filter all = {NULL, -1, NULL, 100, NULL};
    ASSERT_EQ(store_job_list(s, &all, list_cb, &n, &err), 0);
    ASSERT_EQ(n, 4); /* j1 j2 j3 j8, nothing that was rolled back */
    n = 0;
    struct store_job_filter dq = {"d", STORE_JOB_QUEUED, NULL, 100, NULL};
    ASSERT_EQ(store_job_list(s, &dq, list_cb, &n, &err), 0);
    ASSERT_EQ(n, 1); /* j8 */
    n = 0;
    struct store_job_filter after = {NULL, -1, "j2", 100, NULL};
    ASSERT_EQ(store_job_list(s, &after, list_cb, &n, &err), 0);
    ASSERT_EQ(n, 2); /* j3, j8 */
    /* j2's result (expires 50000) goes; the tombstone says so until later. */
    ASSERT_EQ(store_job_expire(s, 60000, 100000, &err),
              1); /* j2; the cancelled j1 keeps its until 99999 */
    struct store_job job;
    ASSERT_EQ(store_job_get(s, "j2", true, &job, &err), 0);
    ASSERT(job.expired);
    ASSERT(job.result == NULL);
    ASSERT(job.input == NULL);
    store_job_clear(&job);
    ASSERT_EQ(store_job_expire(s, 200000, 100000, &err), 1); /* now j1 */
    ASSERT_EQ(store_job_get(s, "j2", false, &job, &err), THAW_ENOTFOUND);
    store_close(s);
}

static int hook_count(void *ctx, const struct store_webhook *w)
{
    (*(int *)ctx)++;
    return 0;
}

static void test_webhooks(void)
{
    struct store *s = open_store();
    struct thaw_err err = {0};
    struct store_webhook w[4];
    int64_t next = 0;
    ASSERT_EQ(store_webhook_next(s, &next, &err), 0);
    ASSERT_EQ(next, 7200);
    ASSERT_EQ(store_webhook_due(s, 7000, w, 4, &err), 0);
    ASSERT_EQ(store_webhook_due(s, 8000, w, 4, &err), 1);
    ASSERT_STR_EQ(w[0].job_id, "j2");
    ASSERT_STR_EQ(w[0].url, "http://hook/x");
    ASSERT_EQ(w[0].body_len, 2);
    int64_t id = w[0].id;
    store_webhook_clear(&w[0]);
    ASSERT_EQ(store_webhook_update(s, id, 0, 1, 9000, "refused", &err), 0);
    ASSERT_EQ(store_webhook_due(s, 8500, w, 4, &err), 0);
    ASSERT_EQ(store_webhook_update(s, id, 2, 5, 9000, "refused", &err), 0);
    ASSERT_EQ(store_webhook_due(s, 99999, w, 4, &err), 0);
    int n = 0;
    ASSERT_EQ(store_webhook_list(s, 2, 10, hook_count, &n, &err), 0);
    ASSERT_EQ(n, 1);
    int changed = 0;
    ASSERT_EQ(store_webhook_replay(s, id, 10000, &changed, &err), 0);
    ASSERT_EQ(changed, 1);
    ASSERT_EQ(store_webhook_due(s, 10000, w, 4, &err), 1);
    ASSERT_EQ(w[0].attempts, 0);
    store_webhook_clear(&w[0]);
    ASSERT_EQ(store_webhook_purge(s, id, &changed, &err), THAW_ENOTFOUND); /* not dead */
    ASSERT_EQ(store_webhook_update(s, id, 2, 1, 0, "x", &err), 0);
    ASSERT_EQ(store_webhook_purge(s, 0, &changed, &err), 0);
    ASSERT_EQ(changed, 1);
    store_close(s);
}

static int id_cb(void *ctx, const struct store_job *j)
{
    strcat(ctx, j->id);
    strcat(ctx, j->tenant[0] ? "@" : "@-");
    strcat(ctx, j->tenant);
    strcat(ctx, " ");
    return 0;
}

/* A jobs table as files written before tenants were kept had it: the store
 * adds the column, the old row gets tenant "" and stays in every tenant's
 * listing of its deployment; new rows are filtered by tenant. */
static void test_tenant_and_old_files(void)
{
    char old[160];
    snprintf(old, sizeof(old), "%s/old.db", dir);
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(old, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TABLE jobs (id TEXT PRIMARY KEY, deployment TEXT NOT NULL, "
                           "state INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, "
                           "max_attempts INTEGER NOT NULL, created_ms INTEGER NOT NULL, "
                           "updated_ms INTEGER NOT NULL, run_at_ms INTEGER NOT NULL, "
                           "finished_ms INTEGER NOT NULL DEFAULT 0, expires_ms INTEGER NOT NULL "
                           "DEFAULT 0, expired INTEGER NOT NULL DEFAULT 0, input BLOB, result "
                           "BLOB, webhook TEXT);"
                           "INSERT INTO jobs(id, deployment, state, max_attempts, created_ms, "
                           "updated_ms, run_at_ms, input) VALUES ('old1', 'd', 4, 3, 1, 1, 1, 'x')",
                           NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    struct store *s = NULL;
    struct thaw_err err = {0};
    ASSERT_EQ(store_open_sqlite(old, &s, &err), 0);
    struct store_job_submit a[3] = {sub("n1", "d", "1", NULL, 1), sub("n2", "d", "2", NULL, 2),
                                    sub("n3", "d", "3", NULL, 3)};
    a[0].tenant = "ta";
    a[1].tenant = "tb";
    a[2].tenant = "tb";
    a[1].key_id = "kb1"; /* the submitting key's id; n1 and n3 have none */
    ASSERT_EQ(store_job_submit(s, a, 3, 1000, &err), 0);
    char ids[256] = "";
    struct store_job_filter fa = {"d", -1, NULL, 100, "ta"};
    ASSERT_EQ(store_job_list(s, &fa, id_cb, ids, &err), 0);
    ASSERT_STR_EQ(ids, "old1@- n1@ta ");
    ids[0] = 0;
    /* The limit counts only the tenant's rows: no page cut short by others'. */
    struct store_job_filter fb = {"d", -1, "old1", 1, "tb"};
    ASSERT_EQ(store_job_list(s, &fb, id_cb, ids, &err), 0);
    ASSERT_STR_EQ(ids, "n2@tb ");
    ids[0] = 0;
    struct store_job_filter any = {"d", -1, NULL, 100, NULL};
    ASSERT_EQ(store_job_list(s, &any, id_cb, ids, &err), 0);
    ASSERT_STR_EQ(ids, "old1@- n1@ta n2@tb n3@tb ");
    struct store_job job;
    ASSERT_EQ(store_job_get(s, "n2", false, &job, &err), 0);
    ASSERT_STR_EQ(job.tenant, "tb");
    ASSERT_STR_EQ(job.key_id, "kb1");
    store_job_clear(&job);
    ASSERT_EQ(store_job_get(s, "old1", true, &job, &err), 0);
    ASSERT_STR_EQ(job.key_id, ""); /* rows from before keys were kept */
    ASSERT_EQ(job.input_len, 1);   /* the columns after key_id still line up */
    store_job_clear(&job);
    /* Leases carry the tenant, so the run gets that tenant's instances,
     * and the key, whose quotas its attempts spend. */
    struct store_job_lease l[4];
    ASSERT_EQ(store_job_lease(s, "d", 2000, 9000, l, 4, &err), 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_STR_EQ(l[i].tenant, strcmp(l[i].id, "n1") == 0 ? "ta" : "tb");
        ASSERT_STR_EQ(l[i].key_id, strcmp(l[i].id, "n2") == 0 ? "kb1" : "");
        free(l[i].input);
        free(l[i].webhook);
    }
    /* Dead letters: a row without a tenant is still purged by whoever may
     * use its deployment, as before. */
    int n = 0;
    ASSERT_EQ(store_job_purge(s, "old1", NULL, "ta", &n, &err), 0);
    ASSERT_EQ(n, 1);
    store_close(s);
    /* Reopening a migrated file is a no-op. */
    ASSERT_EQ(store_open_sqlite(old, &s, &err), 0);
    ASSERT_EQ(store_job_get(s, "n1", false, &job, &err), 0);
    ASSERT_STR_EQ(job.tenant, "ta");
    store_job_clear(&job);
    store_close(s);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/thaw-jobs-store-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    snprintf(path, sizeof(path), "%s/thaw.db", dir);
    RUN(test_submit_and_idempotency);
    RUN(test_lease_complete_tokens);
    RUN(test_dead_cancel_recover);
    RUN(test_list_expire);
    RUN(test_webhooks);
    RUN(test_tenant_and_old_files);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "cleanup failed\n");
    return TEST_REPORT();
}
