/* Private to src/store: the operations table every implementation fills. */
#ifndef THAW_STORE_INT_H
#define THAW_STORE_INT_H

#include "store/store.h"

struct store_ops {
    void (*close)(struct store *s);
    int (*deployment_put)(struct store *s, const char *name, const char *spec_json,
                          struct thaw_err *err);
    int (*deployment_get)(struct store *s, const char *name, char **spec_json,
                          struct thaw_err *err);
    int (*deployment_delete)(struct store *s, const char *name, struct thaw_err *err);
    int (*deployment_list)(struct store *s, store_deployment_cb cb, void *ctx,
                           struct thaw_err *err);
};

struct store {
    const struct store_ops *ops;
};

#endif
