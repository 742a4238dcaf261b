/* The access API: tenants, their keys, deployment grants and the audit
 * trail. Authorisation beyond scopes (who may manage which tenant) is
 * src/access's; these handlers translate between HTTP and it. */
#include "gateway/gw_int.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int gw_status_for(int rc)
{
    switch (rc) {
    case THAW_EINVAL:
        return 400;
    case THAW_EDENIED:
        return 403;
    case THAW_ENOTFOUND:
        return 404;
    case THAW_EEXIST:
    case THAW_ECONFLICT:
    case THAW_ESTATE:
        return 409;
    default:
        return 500;
    }
}

const char *gw_code_for(int rc)
{
    switch (rc) {
    case THAW_EINVAL:
        return "invalid_request";
    case THAW_EDENIED:
        return "forbidden";
    case THAW_ENOTFOUND:
        return "not_found";
    case THAW_EEXIST:
        return "already_exists";
    case THAW_ECONFLICT:
    case THAW_ESTATE:
        return "conflict";
    default:
        return "internal";
    }
}

static void reply_rc(struct evhttp_request *req, int rc, const struct thaw_err *err)
{
    gw_reply_error(req, gw_status_for(rc), gw_code_for(rc), "%s", err->msg);
}

json_t *gw_json_body(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *data = len ? (const char *)evbuffer_pullup(in, -1) : "{}";
    json_error_t jerr;
    json_t *j = json_loadb(data, len ? len : 2, JSON_REJECT_DUPLICATES, &jerr);
    if (!j || !json_is_object(j)) {
        json_decref(j);
        gw_reply_error(req, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return j;
}

/* A new key is shown exactly once, in this answer. */
static void reply_new_key(struct evhttp_request *req, int status, json_t *info, char *key)
{
    json_object_set_new(info, "key", json_string(key));
    sodium_memzero(key, SECURITY_KEY_STR_SIZE);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    gw_reply_jsonv(req, status, info);
}

static void tenants(struct gateway *gw, struct evhttp_request *req, const char *rest)
{
    const struct access_principal *who = gw_principal();
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct thaw_err err = {0};
    int rc;
    if (*rest == 0) {
        if (cmd == EVHTTP_REQ_GET) {
            if (!gw_require_scope(req, SECURITY_SCOPE_READ)) return;
            gw_reply_jsonv(req, 200,
                           json_pack("{s:o}", "tenants", access_tenant_list(gw->access, who)));
        } else if (cmd == EVHTTP_REQ_POST) {
            json_t *body = gw_json_body(req), *out = NULL;
            if (!body) return;
            rc = access_tenant_create(gw->access, who,
                                      json_string_value(json_object_get(body, "name")),
                                      json_object_get(body, "limits"), &out, &err);
            json_decref(body);
            if (rc)
                reply_rc(req, rc, &err);
            else
                gw_reply_jsonv(req, 201, out);
        } else {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, POST");
            gw_reply_error(req, 405, "method_not_allowed", "use GET or POST");
        }
        return;
    }
    char tenant[ACCESS_NAME_MAX + 2];
    const char *slash = strchr(rest, '/');
    size_t tl = slash ? (size_t)(slash - rest) : strlen(rest);
    if (tl == 0 || tl > ACCESS_NAME_MAX) {
        gw_reply_error(req, 404, "not_found", "no such tenant");
        return;
    }
    memcpy(tenant, rest, tl);
    tenant[tl] = 0;
    if (!slash && cmd == EVHTTP_REQ_DELETE) {
        rc = access_tenant_delete(gw->access, who, tenant, &err);
        if (rc)
            reply_rc(req, rc, &err);
        else
            gw_reply_jsonv(req, 200, json_pack("{s:s, s:b}", "name", tenant, "deleted", 1));
    } else if (slash && !strcmp(slash, "/keys") && cmd == EVHTTP_REQ_POST) {
        json_t *body = gw_json_body(req), *info = NULL;
        if (!body) return;
        char key[SECURITY_KEY_STR_SIZE];
        rc = access_key_create(gw->access, who, tenant, body, key, &info, &err);
        json_decref(body);
        if (rc)
            reply_rc(req, rc, &err);
        else
            reply_new_key(req, 201, info, key);
    } else if (slash && !strcmp(slash, "/data-keys/rotate") && cmd == EVHTTP_REQ_POST) {
        uint32_t version = 0;
        rc = access_rotate_data_key(gw->access, who, tenant, &version, &err);
        if (rc)
            reply_rc(req, rc, &err);
        else
            gw_reply_jsonv(req, 200,
                           json_pack("{s:s, s:i}", "tenant", tenant, "version", (int)version));
    } else if (slash && !strcmp(slash, "/keys") && cmd == EVHTTP_REQ_GET) {
        json_t *out = NULL;
        rc = access_key_list(gw->access, who, tenant, &out, &err);
        if (rc)
            reply_rc(req, rc, &err);
        else
            gw_reply_jsonv(req, 200, json_pack("{s:o}", "keys", out));
    } else {
        gw_reply_error(req, slash && strcmp(slash, "/keys") ? 404 : 405,
                       slash && strcmp(slash, "/keys") ? "not_found" : "method_not_allowed",
                       "no such route or method");
    }
}

static void keys(struct gateway *gw, struct evhttp_request *req, const char *rest)
{
    const struct access_principal *who = gw_principal();
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct thaw_err err = {0};
    char id[SECURITY_KEY_ID_LEN + 2];
    const char *slash = strchr(rest, '/');
    size_t il = slash ? (size_t)(slash - rest) : strlen(rest);
    if (il == 0 || il > SECURITY_KEY_ID_LEN) {
        gw_reply_error(req, 404, "not_found", "no such key");
        return;
    }
    memcpy(id, rest, il);
    id[il] = 0;
    int rc;
    if (!slash && cmd == EVHTTP_REQ_DELETE) {
        rc = access_key_revoke(gw->access, who, id, &err);
        if (rc)
            reply_rc(req, rc, &err);
        else
            gw_reply_jsonv(req, 200, json_pack("{s:s, s:b}", "id", id, "revoked", 1));
    } else if (slash && !strcmp(slash, "/rotate") && cmd == EVHTTP_REQ_POST) {
        char key[SECURITY_KEY_STR_SIZE];
        json_t *info = NULL;
        rc = access_key_rotate(gw->access, who, id, key, &info, &err);
        if (rc)
            reply_rc(req, rc, &err);
        else
            reply_new_key(req, 200, info, key);
    } else {
        gw_reply_error(req, 404, "not_found", "no such route or method");
    }
}

static void audit(struct gateway *gw, struct evhttp_request *req)
{
    const struct access_principal *who = gw_principal();
    if (!who->platform_admin) {
        gw_reply_error(req, 403, "forbidden",
                       "the audit trail needs an admin key of the root tenant");
        return;
    }
    struct evkeyvalq q;
    uint64_t after = 0;
    size_t limit = 1000;
    if (evhttp_parse_query_str(evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)) ?: "",
                               &q) == 0) {
        const char *a = evhttp_find_header(&q, "after"), *l = evhttp_find_header(&q, "limit");
        if (a) after = strtoull(a, NULL, 10);
        if (l && atoi(l) > 0 && atoi(l) <= 10000) limit = (size_t)atoi(l);
        evhttp_clear_headers(&q);
    }
    json_t *entries = access_audit_list(gw->access, after, limit);
    if (!entries)
        gw_reply_error(req, 500, "store_failed", "cannot read the audit trail");
    else
        gw_reply_jsonv(req, 200, json_pack("{s:o}", "entries", entries));
}

bool gw_route_admin(struct gw_worker *w, struct evhttp_request *req, const char *path)
{
    struct gateway *gw = w->gw;
    if (!strcmp(path, "/v1/tenants") || !strncmp(path, "/v1/tenants/", 12)) {
        tenants(gw, req, path[11] ? path + 12 : "");
        return true;
    }
    if (!strncmp(path, "/v1/keys/", 9)) {
        keys(gw, req, path + 9);
        return true;
    }
    if (!strcmp(path, "/v1/audit")) {
        if (evhttp_request_get_command(req) == EVHTTP_REQ_GET)
            audit(gw, req);
        else
            gw_reply_error(req, 405, "method_not_allowed", "use GET");
        return true;
    }
    return false;
}

void gw_route_grants(struct gw_worker *w, struct evhttp_request *req, const char *name,
                     const char *rest)
{
    struct gateway *gw = w->gw;
    const struct access_principal *who = gw_principal();
    struct gw_deployment dep;
    if (!gw_usable_deployment(gw, req, name, &dep)) return;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    struct thaw_err err = {0};
    int rc;
    if (*rest == 0 && cmd == EVHTTP_REQ_GET) {
        if (strcmp(dep.owner, who->tenant) && !who->platform_admin) {
            gw_reply_error(req, 403, "forbidden", "only the owner sees the grants");
            return;
        }
        gw_reply_jsonv(req, 200,
                       json_pack("{s:o}", "tenants", access_grant_list(gw->access, name)));
    } else if (*rest == 0 && cmd == EVHTTP_REQ_POST) {
        json_t *body = gw_json_body(req);
        if (!body) return;
        const char *tenant = json_string_value(json_object_get(body, "tenant"));
        rc = tenant ? access_grant_add(gw->access, who, name, dep.owner, tenant, &err)
                    : thaw_errf(&err, THAW_EINVAL, "field 'tenant' is required");
        if (rc)
            reply_rc(req, rc, &err);
        else
            gw_reply_jsonv(req, 201, json_pack("{s:s, s:s}", "deployment", name, "tenant", tenant));
        json_decref(body);
    } else if (*rest == '/' && cmd == EVHTTP_REQ_DELETE) {
        rc = access_grant_remove(gw->access, who, name, dep.owner, rest + 1, &err);
        if (rc)
            reply_rc(req, rc, &err);
        else
            gw_reply_jsonv(
                req, 200,
                json_pack("{s:s, s:s, s:b}", "deployment", name, "tenant", rest + 1, "revoked", 1));
    } else {
        gw_reply_error(req, 405, "method_not_allowed",
                       "use GET or POST on grants, DELETE on grants/TENANT");
    }
}
