/* The SQLite store on a real file: deployments survive closing and reopening. */
#include "store/store.h"
#include "test.h"

#include <stdlib.h>
#include <unistd.h>

static int count_cb(void *ctx, const char *name, const char *spec)
{
    (*(int *)ctx)++;
    return 0;
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
    ASSERT_EQ(store_deployment_put(s, "b", "{\"v\":1}", &err), 0);
    ASSERT_EQ(store_deployment_put(s, "a", "{\"v\":2}", &err), 0);
    ASSERT_EQ(store_deployment_put(s, "b", "{\"v\":3}", &err), 0);
    store_close(s);

    ASSERT_EQ(store_open_sqlite(path, &s, &err), 0);
    char *spec = NULL;
    ASSERT_EQ(store_deployment_get(s, "b", &spec, &err), 0);
    ASSERT_STR_EQ(spec, "{\"v\":3}");
    free(spec);
    int n = 0;
    ASSERT_EQ(store_deployment_list(s, count_cb, &n, &err), 0);
    ASSERT_EQ(n, 2);
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
