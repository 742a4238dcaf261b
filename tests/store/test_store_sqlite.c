/* The SQLite store on a real file: deployments survive closing and reopening. */
#include "store/store.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

static int count_cb(void *ctx, const char *name, const char *spec, const char *owner)
{
    (*(int *)ctx)++;
    if (!strcmp(name, "a") && strcmp(owner, "acme")) return -1;
    return 0;
}

static int doc_cb(void *ctx, const char *id, const char *json)
{
    struct buf *b = ctx;
    buf_printf(b, "%s=%s;", id, json);
    return 0;
}

static int audit_cb(void *ctx, const struct store_audit_row *r)
{
    (*(int *)ctx) += (int)r->seq;
    return strcmp(r->action, "x.y") ? -1 : 0;
}

static void test_deployments_persist(void)
{
    char dir[] = "/tmp/thaw-store-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/thaw.db", dir);
    struct store *s = NULL;
    struct thaw_err err = {0};
    ASSERT_EQ(store_open_sqlite(path, &s, &err), 0);
    ASSERT_EQ(store_deployment_put(s, "b", "{\"v\":1}", "root", &err), 0);
    ASSERT_EQ(store_deployment_put(s, "a", "{\"v\":2}", "acme", &err), 0);
    ASSERT_EQ(store_deployment_put(s, "b", "{\"v\":3}", "root", &err), 0);
    ASSERT_EQ(store_doc_put(s, "tenants", "acme", "{\"n\":1}", &err), 0);
    ASSERT_EQ(store_doc_put(s, "tenants", "beta", "{\"n\":2}", &err), 0);
    ASSERT_EQ(store_doc_put(s, "keys", "acme", "{\"other\":1}", &err), 0);
    struct store_audit_row row = {.seq = 1, .time_ms = 5, .actor = "k", .action = "x.y",
                                  .target = "t", .outcome = "ok", .details = ""};
    ASSERT_EQ(store_audit_append(s, &row, &err), 0);
    ASSERT_EQ(store_audit_append(s, &row, &err), THAW_ECONFLICT);
    row.seq = 2;
    ASSERT_EQ(store_audit_append(s, &row, &err), 0);
    store_close(s);

    ASSERT_EQ(store_open_sqlite(path, &s, &err), 0);
    char *spec = NULL;
    ASSERT_EQ(store_deployment_get(s, "b", &spec, &err), 0);
    ASSERT_STR_EQ(spec, "{\"v\":3}");
    free(spec);
    int n = 0;
    ASSERT_EQ(store_deployment_list(s, count_cb, &n, &err), 0);
    ASSERT_EQ(n, 2);
    struct buf docs = {0};
    ASSERT_EQ(store_doc_list(s, "tenants", doc_cb, &docs, &err), 0);
    ASSERT_STR_EQ(docs.data, "acme={\"n\":1};beta={\"n\":2};");
    buf_free(&docs);
    char *doc = NULL;
    ASSERT_EQ(store_doc_get(s, "keys", "acme", &doc, &err), 0);
    ASSERT_STR_EQ(doc, "{\"other\":1}");
    free(doc);
    ASSERT_EQ(store_doc_delete(s, "tenants", "acme", &err), 0);
    ASSERT_EQ(store_doc_get(s, "tenants", "acme", &doc, &err), THAW_ENOTFOUND);
    int seqs = 0;
    ASSERT_EQ(store_audit_list(s, 0, 0, audit_cb, &seqs, &err), 0);
    ASSERT_EQ(seqs, 3);
    ASSERT_EQ(store_deployment_delete(s, "a", &err), 0);
    ASSERT_EQ(store_deployment_delete(s, "a", &err), THAW_ENOTFOUND);
    ASSERT_EQ(store_deployment_get(s, "a", &spec, &err), THAW_ENOTFOUND);
    ASSERT_CONTAINS(err.msg, "not found");
    store_close(s);

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ASSERT_EQ(system(cmd), 0);
}

static void test_open_bad_path(void)
{
    struct store *s = NULL;
    struct thaw_err err = {0};
    ASSERT_NE(store_open_sqlite("/nonexistent-dir/x/thaw.db", &s, &err), 0);
    ASSERT(s == NULL);
    ASSERT_CONTAINS(err.msg, "cannot open");
}

int main(void)
{
    RUN(test_deployments_persist);
    RUN(test_open_bad_path);
    return TEST_REPORT();
}
