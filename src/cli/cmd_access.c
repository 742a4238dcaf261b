/* CLI for access control: tenants, keys, and the audit trail (listing it
 * through the API, or verifying a node's store offline). */
#include "access/access.h"
#include "cli/cli.h"
#include "cli/cli_cmds.h"
#include "cli/client.h"
#include "node/node_int.h"
#include "store/store.h"

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int call(const struct cli_opts *o, const char *method, const char *path, json_t *body,
                json_t **out)
{
    char *s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    struct cli_response r;
    cli_http(o, method, path, s, s ? strlen(s) : 0, s ? "application/json" : NULL, NULL, NULL, NULL,
             &r);
    free(s);
    int code = cli_exit_for(&r);
    *out = code == CLI_EXIT_OK && r.body.data ? json_loads(r.body.data, 0, NULL) : NULL;
    cli_response_free(&r);
    return code;
}

static void print(const struct cli_opts *o, json_t *j, const char *human_fmt_key)
{
    if (o->json || !human_fmt_key) {
        char *s = json_dumps(j, JSON_INDENT(2));
        if (s) puts(s);
        free(s);
        return;
    }
    printf("%s\n", json_string_value(json_object_get(j, human_fmt_key)));
}

int cli_cmd_tenants(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    const char *sub = argc > 1 ? argv[1] : "ls";
    json_t *out = NULL;
    int code;
    if (!strcmp(sub, "ls") && argc <= 2) {
        code = call(&o, "GET", "/v1/tenants", NULL, &out);
        if (!code && !o.json) {
            size_t i;
            json_t *t;
            json_array_foreach(json_object_get(out, "tenants"), i, t)
                printf("%s\n", json_string_value(json_object_get(t, "name")));
        } else if (!code)
            print(&o, out, NULL);
    } else if (!strcmp(sub, "create") && argc == 3) {
        code = call(&o, "POST", "/v1/tenants", json_pack("{s:s}", "name", argv[2]), &out);
        if (!code) print(&o, out, "name");
    } else if (!strcmp(sub, "rm") && argc == 3) {
        char path[200];
        snprintf(path, sizeof(path), "/v1/tenants/%s", argv[2]);
        code = call(&o, "DELETE", path, NULL, &out);
        if (!code) printf("deleted %s\n", argv[2]);
    } else {
        fprintf(stderr,
                "usage: thaw tenants [ls | create NAME | rm NAME] [--server URL] [--json]\n");
        return CLI_EXIT_USAGE;
    }
    json_decref(out);
    return code;
}

/* Reads a KEK file the way the node does (hex or base64, 32 bytes). */
static int kek_from_file(const char *path, unsigned char out[32], struct thaw_err *err)
{
    struct node_config cfg;
    node_config_defaults(&cfg);
    if (strlen(path) >= sizeof(cfg.kek_file))
        return thaw_errf(err, THAW_EINVAL, "KEK file path too long");
    str_copy(cfg.kek_file, path, sizeof(cfg.kek_file));
    int rc = node_load_kek(&cfg, out, err);
    if (rc) {
        char msg[sizeof(err->msg)];
        str_copy(msg, err->msg, sizeof(msg));
        thaw_errf(err, rc, "%s: %s", path, msg);
    }
    return rc;
}

/* KEK rotation: re-wraps every data key of a stopped node's store under a
 * new KEK in one transaction (see access_rewrap). */
static int keys_rewrap(int argc, char **argv)
{
    const char *data = NULL, *old_file = NULL, *new_file = NULL;
    for (int i = 0; i < argc; i++) {
        const char **dst = !strcmp(argv[i], "--data")           ? &data
                           : !strcmp(argv[i], "--old-kek-file") ? &old_file
                           : !strcmp(argv[i], "--new-kek-file") ? &new_file
                                                                : NULL;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "thaw keys rewrap: unexpected '%s'\n", argv[i]);
            dst = NULL;
            data = NULL;
            break;
        }
        *dst = argv[++i];
    }
    if (!data || !old_file || !new_file) {
        fprintf(stderr, "usage: thaw keys rewrap --data DIR --old-kek-file A --new-kek-file B\n");
        return CLI_EXIT_USAGE;
    }
    struct thaw_err err = {0};
    unsigned char old_kek[32], new_kek[32];
    struct store *s = NULL;
    int lock_fd = -1;
    size_t n = 0;
    char db[1100];
    snprintf(db, sizeof(db), "%s/thaw.db", data);
    int rc = kek_from_file(old_file, old_kek, &err);
    if (!rc) rc = kek_from_file(new_file, new_kek, &err);
    if (!rc && access(db, F_OK) != 0)
        rc = thaw_errf(&err, THAW_ENOTFOUND, "no thaw store in %s", data);
    if (!rc) rc = node_lock_data_dir(data, &lock_fd, &err);
    if (!rc) rc = store_open_sqlite(db, &s, &err);
    if (!rc) rc = access_rewrap(s, old_kek, new_kek, &n, &err);
    /* Recorded in the audit trail (whose key moved with the data keys). */
    struct access *a = NULL;
    if (!rc && access_open(s, new_kek, &a, &err) == 0) {
        char details[64];
        snprintf(details, sizeof(details), "{\"data_keys\":%zu}", n);
        access_audit(a, NULL, "kek.rewrap", data, "ok", details);
        access_free(a);
    }
    store_close(s);
    if (lock_fd >= 0) close(lock_fd);
    sodium_memzero(old_kek, sizeof(old_kek));
    sodium_memzero(new_kek, sizeof(new_kek));
    if (rc) {
        fprintf(stderr, "thaw keys rewrap: %s\n", err.msg);
        return CLI_EXIT_ERROR;
    }
    printf("re-wrapped %zu data keys under the new KEK; start the node with it\n", n);
    return CLI_EXIT_OK;
}

int cli_cmd_keys(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    const char *sub = argc > 1 ? argv[1] : "";
    json_t *out = NULL;
    char path[256];
    int code;
    if (!strcmp(sub, "create") && argc >= 3) {
        const char *scopes = "invoke,read", *expires = NULL;
        for (int i = 3; i + 1 < argc; i += 2) {
            if (!strcmp(argv[i], "--scopes"))
                scopes = argv[i + 1];
            else if (!strcmp(argv[i], "--expires-in"))
                expires = argv[i + 1];
        }
        json_t *arr = json_array();
        char buf[128];
        str_copy(buf, scopes, sizeof(buf));
        for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
            json_array_append_new(arr, json_string(t));
        json_t *body = json_pack("{s:o}", "scopes", arr);
        if (expires) json_object_set_new(body, "expires_in", json_string(expires));
        snprintf(path, sizeof(path), "/v1/tenants/%s/keys", argv[2]);
        code = call(&o, "POST", path, body, &out);
        if (!code) print(&o, out, "key");
    } else if (!strcmp(sub, "ls") && argc == 3) {
        snprintf(path, sizeof(path), "/v1/tenants/%s/keys", argv[2]);
        code = call(&o, "GET", path, NULL, &out);
        if (!code && !o.json) {
            size_t i;
            json_t *k;
            json_array_foreach(json_object_get(out, "keys"), i, k)
                printf("%s %s\n", json_string_value(json_object_get(k, "id")),
                       json_is_true(json_object_get(k, "revoked")) ? "revoked" : "active");
        } else if (!code)
            print(&o, out, NULL);
    } else if (!strcmp(sub, "revoke") && argc == 3) {
        snprintf(path, sizeof(path), "/v1/keys/%s", argv[2]);
        code = call(&o, "DELETE", path, NULL, &out);
        if (!code) printf("revoked %s\n", argv[2]);
    } else if (!strcmp(sub, "rotate-data") && argc == 3) {
        snprintf(path, sizeof(path), "/v1/tenants/%s/data-keys/rotate", argv[2]);
        code = call(&o, "POST", path, NULL, &out);
        if (!code && o.json)
            print(&o, out, NULL);
        else if (!code)
            printf("tenant %s now seals new data with data key version %lld\n", argv[2],
                   (long long)json_integer_value(json_object_get(out, "version")));
    } else if (!strcmp(sub, "rewrap")) {
        return keys_rewrap(argc - 2, argv + 2);
    } else if (!strcmp(sub, "rotate") && argc == 3) {
        snprintf(path, sizeof(path), "/v1/keys/%s/rotate", argv[2]);
        code = call(&o, "POST", path, NULL, &out);
        if (!code) print(&o, out, "key");
    } else {
        fprintf(
            stderr,
            "usage: thaw keys create TENANT [--scopes invoke,read] [--expires-in 720h]\n"
            "       thaw keys ls TENANT | revoke ID | rotate ID   [--server URL] [--json]\n"
            "       thaw keys rotate-data TENANT   (new data key; old data stays readable)\n"
            "       thaw keys rewrap --data DIR --old-kek-file A --new-kek-file B\n"
            "                                   (KEK rotation, offline: the node is stopped)\n");
        return CLI_EXIT_USAGE;
    }
    json_decref(out);
    return code;
}

/* Offline verification reads the store directly with the node's KEK. */
static int audit_verify(const char *data_dir, int argc, char **argv)
{
    struct node_config cfg;
    node_config_defaults(&cfg);
    struct thaw_err err = {0};
    if (node_config_load(&cfg, argc, argv, &err)) {
        fprintf(stderr, "thaw audit verify: %s\n", err.msg);
        return CLI_EXIT_USAGE;
    }
    if (data_dir) str_copy(cfg.data_dir, data_dir, sizeof(cfg.data_dir));
    char db[1100];
    snprintf(db, sizeof(db), "%s/thaw.db", cfg.data_dir);
    unsigned char kek[32];
    struct store *s = NULL;
    int rc = node_load_kek(&cfg, kek, &err);
    if (!rc) rc = store_open_sqlite(db, &s, &err);
    uint64_t n = 0;
    if (!rc) rc = access_audit_verify(s, kek, &n, &err);
    store_close(s);
    if (rc) {
        fprintf(stderr, "thaw: %s\n", err.msg);
        return CLI_EXIT_ERROR;
    }
    printf("audit trail intact: %llu entries\n", (unsigned long long)n);
    return CLI_EXIT_OK;
}

int cli_cmd_audit(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    if (argc >= 2 && !strcmp(argv[1], "verify")) {
        const char *data = NULL;
        char *rest[16] = {"verify"};
        int n = 1;
        for (int i = 2; i < argc && n < 15; i++) {
            if (!strcmp(argv[i], "--data") && i + 1 < argc)
                data = argv[++i];
            else
                rest[n++] = argv[i];
        }
        return audit_verify(data, n, rest);
    }
    if (argc == 1 || (argc == 2 && !strcmp(argv[1], "ls"))) {
        json_t *out = NULL;
        int code = call(&o, "GET", "/v1/audit", NULL, &out);
        if (!code && !o.json) {
            size_t i;
            json_t *e;
            json_array_foreach(json_object_get(out, "entries"), i, e)
                printf("%6lld %s %-20s %-24s %s\n",
                       (long long)json_integer_value(json_object_get(e, "seq")),
                       json_string_value(json_object_get(e, "actor")),
                       json_string_value(json_object_get(e, "action")),
                       json_string_value(json_object_get(e, "target")),
                       json_string_value(json_object_get(e, "outcome")));
        } else if (!code)
            print(&o, out, NULL);
        json_decref(out);
        return code;
    }
    fprintf(stderr, "usage: thaw audit [ls] [--server URL] [--json]\n"
                    "       thaw audit verify [--data DIR] [--kek-file FILE]\n");
    return CLI_EXIT_USAGE;
}
