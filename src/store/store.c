/* Dispatch from the public store interface to the implementation. */
#include "store/store_int.h"

void store_close(struct store *s)
{
    if (s) s->ops->close(s);
}

int store_deployment_put(struct store *s, const char *name, const char *spec_json,
                         const char *owner, struct thaw_err *err)
{
    return s->ops->deployment_put(s, name, spec_json, owner, err);
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

int store_doc_put(struct store *s, const char *collection, const char *id, const char *json,
                  struct thaw_err *err)
{
    return s->ops->doc_put(s, collection, id, json, err);
}

int store_doc_put_all(struct store *s, const struct store_doc_write *w, size_t n,
                      struct thaw_err *err)
{
    return s->ops->doc_put_all(s, w, n, err);
}

int store_doc_get(struct store *s, const char *collection, const char *id, char **json,
                  struct thaw_err *err)
{
    return s->ops->doc_get(s, collection, id, json, err);
}

int store_doc_delete(struct store *s, const char *collection, const char *id,
                     struct thaw_err *err)
{
    return s->ops->doc_delete(s, collection, id, err);
}

int store_doc_list(struct store *s, const char *collection, store_doc_cb cb, void *ctx,
                   struct thaw_err *err)
{
    return s->ops->doc_list(s, collection, cb, ctx, err);
}

int store_audit_append(struct store *s, const struct store_audit_row *row, struct thaw_err *err)
{
    return s->ops->audit_append(s, row, err);
}

int store_audit_list(struct store *s, uint64_t after_seq, size_t limit, store_audit_cb cb,
                     void *ctx, struct thaw_err *err)
{
    return s->ops->audit_list(s, after_seq, limit, cb, ctx, err);
}

int store_version_deploy(struct store *s, const char *name, const char *owner, const char *actor,
                         const char *digest, const char *version_doc, const char *spec_json,
                         store_traffic_fn fn, void *ctx, const char *reason,
                         struct store_deploy_result *out, struct thaw_err *err)
{
    return s->ops->version_deploy(s, name, owner, actor, digest, version_doc, spec_json, fn, ctx,
                                  reason, out, err);
}

int store_version_get(struct store *s, const char *name, int n, struct store_version *meta,
                      char **spec_json, struct thaw_err *err)
{
    return s->ops->version_get(s, name, n, meta, spec_json, err);
}

int store_version_list(struct store *s, const char *name, bool with_spec, store_version_cb cb,
                       void *ctx, struct thaw_err *err)
{
    return s->ops->version_list(s, name, with_spec, cb, ctx, err);
}

int store_traffic_get(struct store *s, const char *name, char **traffic, int64_t *rev,
                      struct thaw_err *err)
{
    return s->ops->traffic_get(s, name, traffic, rev, err);
}

int store_traffic_put(struct store *s, const char *name, const char *traffic, int64_t expect_rev,
                      const char *actor, const char *reason, int64_t *new_rev, struct thaw_err *err)
{
    return s->ops->traffic_put(s, name, traffic, expect_rev, actor, reason, new_rev, err);
}

int store_traffic_log(struct store *s, const char *name, store_traffic_log_cb cb, void *ctx,
                      struct thaw_err *err)
{
    return s->ops->traffic_log(s, name, cb, ctx, err);
}
