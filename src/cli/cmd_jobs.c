/* The CLI for async jobs: `thaw jobs submit|get|ls|cancel` and the
 * dead-letter queue, `thaw dlq ls|show|replay|purge|webhooks`. */
#include "cli/cli.h"
#include "cli/cli_cmds.h"
#include "cli/client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JOBS_USAGE                                                                                 \
    "usage: thaw jobs submit NAME [-d JSON | < file] [--wait SECONDS]\n"                           \
    "       thaw jobs get ID [--wait SECONDS]\n"                                                   \
    "       thaw jobs ls [--deployment NAME] [--state STATE] [--limit N]\n"                        \
    "       thaw jobs cancel ID\n"                                                                 \
    "options: --server URL, --json\n"

#define DLQ_USAGE                                                                                  \
    "usage: thaw dlq [ls] [--deployment NAME] [--limit N]\n"                                       \
    "       thaw dlq show ID\n"                                                                    \
    "       thaw dlq replay ID | --all [--deployment NAME]\n"                                      \
    "       thaw dlq purge ID | --all [--deployment NAME]\n"                                       \
    "       thaw dlq webhooks [ls | replay [ID] | purge [ID]]\n"                                   \
    "options: --server URL, --json\n"

/* Appends "&name=value" (URL-escaping value) when value is set. */
static void query_add(struct buf *q, const char *name, const char *value)
{
    if (!value) return;
    buf_printf(q, "%c%s=", q->len ? '&' : '?', name);
    for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-_.~", *p))
            buf_append(q, p, 1);
        else
            buf_printf(q, "%%%02X", *p);
    }
}

static void print_pretty(const char *body)
{
    json_t *j = body ? json_loads(body, 0, NULL) : NULL;
    char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
    puts(s ? s : (body ? body : ""));
    free(s);
    json_decref(j);
}

/* One request; prints the answer pretty (or as is with --json) on success. */
static int call(const struct cli_opts *o, const char *method, const char *path, const char *body,
                bool print)
{
    struct cli_response r;
    cli_http(o, method, path, body, body ? strlen(body) : 0, body ? "application/json" : NULL, NULL,
             NULL, NULL, &r);
    int code = cli_exit_for(&r);
    if (code == CLI_EXIT_OK && print) {
        if (o->json)
            fputs(r.body.data ? r.body.data : "\n", stdout);
        else
            print_pretty(r.body.data);
    }
    cli_response_free(&r);
    return code;
}

static void print_jobs_table(const char *body)
{
    json_t *j = json_loads(body ? body : "", 0, NULL);
    printf("%-36s  %-20s  %-9s  %8s\n", "ID", "DEPLOYMENT", "STATE", "ATTEMPTS");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "jobs"), i, v)
    {
        printf("%-36s  %-20s  %-9s  %8lld\n", json_string_value(json_object_get(v, "id")),
               json_string_value(json_object_get(v, "deployment")),
               json_string_value(json_object_get(v, "state")),
               (long long)json_integer_value(json_object_get(v, "attempts")));
    }
    const char *next = json_string_value(json_object_get(j, "next"));
    if (next) printf("(more: --after %s)\n", next);
    json_decref(j);
}

static int list(const struct cli_opts *o, const char *base, const struct buf *q)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s%s", base, q->data ? q->data : "");
    struct cli_response r;
    cli_http(o, "GET", path, NULL, 0, NULL, NULL, NULL, NULL, &r);
    int code = cli_exit_for(&r);
    if (code == CLI_EXIT_OK) {
        if (o->json)
            fputs(r.body.data ? r.body.data : "\n", stdout);
        else
            print_jobs_table(r.body.data);
    }
    cli_response_free(&r);
    return code;
}

/* Parses the options shared by the listing commands; returns false on an
 * unknown one. */
static bool list_opts(int argc, char **argv, int from, struct buf *q, bool *all)
{
    for (int i = from; i < argc; i++) {
        if (!strcmp(argv[i], "--deployment") && i + 1 < argc)
            query_add(q, "deployment", argv[++i]);
        else if (!strcmp(argv[i], "--state") && i + 1 < argc)
            query_add(q, "state", argv[++i]);
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc)
            query_add(q, "limit", argv[++i]);
        else if (!strcmp(argv[i], "--after") && i + 1 < argc)
            query_add(q, "after", argv[++i]);
        else if (!strcmp(argv[i], "--all") && all)
            *all = true;
        else
            return false;
    }
    return true;
}

static int jobs_submit_cmd(const struct cli_opts *o, int argc, char **argv)
{
    const char *name = NULL, *data = NULL, *wait = NULL;
    for (int i = 2; i < argc; i++) {
        if ((!strcmp(argv[i], "-d") || !strcmp(argv[i], "--data")) && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp(argv[i], "--wait") && i + 1 < argc)
            wait = argv[++i];
        else if (!name && argv[i][0] != '-')
            name = argv[i];
        else
            return fputs(JOBS_USAGE, stderr), CLI_EXIT_USAGE;
    }
    if (!name) return fputs(JOBS_USAGE, stderr), CLI_EXIT_USAGE;
    struct buf in = {0};
    if (data)
        buf_append_str(&in, data);
    else if (!isatty(0) && cli_read_file("-", &in)) {
        fprintf(stderr, "thaw: cannot read stdin\n");
        return CLI_EXIT_USAGE;
    }
    json_error_t jerr;
    json_t *input =
        json_loadb(in.data ? in.data : "null", in.data ? in.len : 4, JSON_DECODE_ANY, &jerr);
    buf_free(&in);
    if (!input) {
        fprintf(stderr, "thaw: the input is not valid JSON: %s\n", jerr.text);
        return CLI_EXIT_USAGE;
    }
    json_t *req = json_pack("{s:o}", "input", input);
    char *body = json_dumps(req, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(req);
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s/jobs", name);
    struct cli_response r;
    cli_http(o, "POST", path, body, body ? strlen(body) : 0, "application/json", NULL, NULL, NULL,
             &r);
    free(body);
    int code = cli_exit_for(&r);
    char id[64] = "";
    if (code == CLI_EXIT_OK) {
        json_t *j = json_loads(r.body.data ? r.body.data : "", 0, NULL);
        snprintf(id, sizeof(id), "%s",
                 json_string_value(json_object_get(j, "id"))
                     ? json_string_value(json_object_get(j, "id"))
                     : "");
        json_decref(j);
        if (!wait) {
            if (o->json)
                fputs(r.body.data ? r.body.data : "\n", stdout);
            else
                puts(id);
        }
    }
    cli_response_free(&r);
    if (code != CLI_EXIT_OK || !wait) return code;
    snprintf(path, sizeof(path), "/v1/jobs/%s?wait=%s", id, wait);
    return call(o, "GET", path, NULL, true);
}

int cli_cmd_jobs(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    const char *sub = argc > 1 ? argv[1] : "ls";
    char path[512];
    if (!strcmp(sub, "submit")) return jobs_submit_cmd(&o, argc, argv);
    if (!strcmp(sub, "get") && (argc == 3 || (argc == 5 && !strcmp(argv[3], "--wait")))) {
        snprintf(path, sizeof(path), "/v1/jobs/%s%s%s", argv[2], argc == 5 ? "?wait=" : "",
                 argc == 5 ? argv[4] : "");
        return call(&o, "GET", path, NULL, true);
    }
    if (!strcmp(sub, "cancel") && argc == 3) {
        snprintf(path, sizeof(path), "/v1/jobs/%s", argv[2]);
        return call(&o, "DELETE", path, NULL, true);
    }
    if (!strcmp(sub, "ls") || !strcmp(sub, "--deployment") || !strcmp(sub, "--state")) {
        struct buf q = {0};
        bool ok = list_opts(argc, argv, strcmp(sub, "ls") ? 1 : 2, &q, NULL);
        int code = ok ? list(&o, "/v1/jobs", &q) : (fputs(JOBS_USAGE, stderr), CLI_EXIT_USAGE);
        buf_free(&q);
        return code;
    }
    fputs(JOBS_USAGE, stderr);
    return CLI_EXIT_USAGE;
}

static int dlq_webhooks(const struct cli_opts *o, int argc, char **argv)
{
    const char *op = argc > 2 ? argv[2] : "ls";
    const char *id = argc > 3 ? argv[3] : NULL;
    char path[256];
    if (!strcmp(op, "ls") && argc <= 3) return call(o, "GET", "/v1/dlq/webhooks", NULL, true);
    if (!strcmp(op, "replay") && argc <= 4) {
        snprintf(path, sizeof(path), "/v1/dlq/webhooks%s%s/replay", id ? "/" : "", id ? id : "");
        return call(o, "POST", path, NULL, true);
    }
    if (!strcmp(op, "purge") && argc <= 4) {
        snprintf(path, sizeof(path), "/v1/dlq/webhooks%s%s", id ? "/" : "", id ? id : "");
        return call(o, "DELETE", path, NULL, true);
    }
    fputs(DLQ_USAGE, stderr);
    return CLI_EXIT_USAGE;
}

/* replay or purge: one ID, or --all (optionally one deployment's). */
static int dlq_change(const struct cli_opts *o, int argc, char **argv, bool replay)
{
    struct buf q = {0};
    bool all = false;
    const char *id = argc > 2 && argv[2][0] != '-' ? argv[2] : NULL;
    int code = CLI_EXIT_USAGE;
    char path[512];
    if (!list_opts(argc, argv, id ? 3 : 2, &q, &all) || (!id) == (!all)) {
        fputs(DLQ_USAGE, stderr);
    } else if (id) {
        snprintf(path, sizeof(path), "/v1/dlq/%s%s", id, replay ? "/replay" : "");
        code = call(o, replay ? "POST" : "DELETE", path, NULL, true);
    } else {
        snprintf(path, sizeof(path), "/v1/dlq%s%s", replay ? "/replay" : "", q.data ? q.data : "");
        code = call(o, replay ? "POST" : "DELETE", path, NULL, true);
    }
    buf_free(&q);
    return code;
}

int cli_cmd_dlq(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    const char *sub = argc > 1 ? argv[1] : "ls";
    if (!strcmp(sub, "show") && argc == 3) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/dlq/%s", argv[2]);
        return call(&o, "GET", path, NULL, true);
    }
    if (!strcmp(sub, "replay")) return dlq_change(&o, argc, argv, true);
    if (!strcmp(sub, "purge")) return dlq_change(&o, argc, argv, false);
    if (!strcmp(sub, "webhooks")) return dlq_webhooks(&o, argc, argv);
    if (!strcmp(sub, "ls") || sub[0] == '-') {
        struct buf q = {0};
        bool ok = list_opts(argc, argv, strcmp(sub, "ls") ? 1 : 2, &q, NULL);
        int code = ok ? list(&o, "/v1/dlq", &q) : (fputs(DLQ_USAGE, stderr), CLI_EXIT_USAGE);
        buf_free(&q);
        return code;
    }
    fputs(DLQ_USAGE, stderr);
    return CLI_EXIT_USAGE;
}
