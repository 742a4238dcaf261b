/* Dispatch from the public store interface to the implementation. */
#include "store/store_int.h"

void store_close(struct store *s)
{
    if (s) s->ops->close(s);
}

int store_deployment_put(struct store *s, const char *name, const char *spec_json,
                         struct thaw_err *err)
{
    return s->ops->deployment_put(s, name, spec_json, err);
}

int store_deployment_get(struct store *s, const char *name, char **spec_json,
                         struct thaw_err *err)
{
    return s->ops->deployment_get(s, name, spec_json, err);
}

int store_deployment_delete(struct store *s, const char *name, struct thaw_err *err)
{
    return s->ops->deployment_delete(s, name, err);
}

int store_deployment_list(struct store *s, store_deployment_cb cb, void *ctx,
                          struct thaw_err *err)
{
    return s->ops->deployment_list(s, cb, ctx, err);
}
