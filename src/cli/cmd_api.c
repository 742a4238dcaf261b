/* The CLI commands that talk to a node: deploy, ls, status, invoke, rm, and
 * serve, which runs one. */
#include "cli/cli.h"
#include "cli/cli_cmds.h"
#include "cli/client.h"
#include "node/node.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cli_cmd_serve(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            puts("usage: thaw serve [--listen HOST:PORT] [--data DIR] [--config FILE]\n"
                 "                  [--log-level debug|info|warn|error] [--threads N]\n"
                 "                  [--drain-timeout 30s] [--read-timeout 30s] [--access-log "
                 "on|off]\n"
                 "environment: THAW_LISTEN, THAW_DATA, THAW_CONFIG, THAW_LOG_LEVEL, ...");
            return CLI_EXIT_OK;
        }
    }
    struct node_config cfg;
    node_config_defaults(&cfg);
    struct thaw_err err = {0};
    if (node_config_load(&cfg, argc, argv, &err)) {
        fprintf(stderr, "thaw serve: %s\n", err.msg);
        return CLI_EXIT_USAGE;
    }
    return node_run(&cfg);
}

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s) puts(s);
    free(s);
}

int cli_cmd_deploy(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    const char *file = NULL, *traffic = NULL;
    const char *usage =
        "usage: thaw deploy -f manifest.yaml [--traffic PERCENT] [--server URL] [--json]\n";
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--traffic") && i + 1 < argc)
            traffic = argv[++i]; /* the new version's share; 0 = deploy without traffic */
        else {
            fputs(usage, stderr);
            return CLI_EXIT_USAGE;
        }
    }
    if (!file) {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    struct buf body = {0};
    if (cli_read_file(file, &body)) {
        fprintf(stderr, "thaw: cannot read %s\n", file);
        return CLI_EXIT_USAGE;
    }
    const char *ctype = strstr(file, ".json") ? "application/json" : "application/yaml";
    struct cli_response r;
    char path[96] = "/v1/deployments";
    if (traffic) snprintf(path, sizeof(path), "/v1/deployments?traffic=%.8s", traffic);
    cli_http(&o, "POST", path, body.data, body.len, ctype, NULL, NULL, NULL, &r);
    buf_free(&body);
    int code = cli_exit_for(&r);
    if (code == CLI_EXIT_OK) {
        json_t *j = json_loads(r.body.data, 0, NULL);
        if (o.json)
            print_json(j);
        else
            printf("%s %s %s%s\n", r.status == 201 ? "created" : "updated",
                   json_string_value(json_object_get(j, "name")),
                   json_string_value(json_object_get(j, "version")),
                   json_is_true(json_object_get(j, "new_version")) ? "" : " (same version)");
        json_decref(j);
    }
    cli_response_free(&r);
    return code;
}

static int count(json_t *inst, const char *state)
{
    return (int)json_integer_value(json_object_get(inst, state));
}

static void print_row(json_t *d)
{
    json_t *st = json_object_get(d, "status");
    json_t *inst = json_object_get(st, "instances");
    printf("%-24s %-8s %-9s %5d %8d %7d %9d %5d\n", json_string_value(json_object_get(d, "name")),
           json_string_value(json_object_get(d, "runtime")),
           st && json_is_object(st) ? json_string_value(json_object_get(st, "state")) : "-",
           count(inst, "ready"), count(inst, "starting"), count(inst, "parked"),
           (int)json_integer_value(json_object_get(st, "in_flight")),
           (int)json_integer_value(json_object_get(st, "held")));
}

static void print_header(void)
{
    printf("%-24s %-8s %-9s %5s %8s %7s %9s %5s\n", "NAME", "RUNTIME", "STATE", "READY", "STARTING",
           "STANDBY", "IN-FLIGHT", "HELD");
}

int cli_cmd_ls(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    if (argc > 1) {
        fprintf(stderr, "usage: thaw ls [--server URL] [--json]\n");
        return CLI_EXIT_USAGE;
    }
    struct cli_response r;
    cli_http(&o, "GET", "/v1/deployments", NULL, 0, NULL, NULL, NULL, NULL, &r);
    int code = cli_exit_for(&r);
    if (code == CLI_EXIT_OK) {
        json_t *j = json_loads(r.body.data, 0, NULL);
        if (o.json)
            print_json(j);
        else {
            print_header();
            size_t i;
            json_t *d;
            json_array_foreach(json_object_get(j, "deployments"), i, d) print_row(d);
        }
        json_decref(j);
    }
    cli_response_free(&r);
    return code;
}

int cli_cmd_status(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    if (argc > 2) {
        fprintf(stderr, "usage: thaw status [NAME] [--server URL] [--json]\n");
        return CLI_EXIT_USAGE;
    }
    if (argc == 1) return cli_cmd_ls(1, argv);
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s", argv[1]);
    struct cli_response r;
    cli_http(&o, "GET", path, NULL, 0, NULL, NULL, NULL, NULL, &r);
    int code = cli_exit_for(&r);
    if (code == CLI_EXIT_OK) {
        json_t *j = json_loads(r.body.data, 0, NULL);
        if (o.json)
            print_json(j);
        else {
            print_header();
            print_row(j);
            json_t *st = json_object_get(j, "status");
            printf("\ninstances: ");
            const char *k;
            json_t *v;
            json_object_foreach(json_object_get(st, "instances"), k, v)
                printf("%s=%lld ", k, (long long)json_integer_value(v));
            printf("\ndesired: %lld%s\n",
                   (long long)json_integer_value(json_object_get(st, "desired")),
                   json_is_true(json_object_get(st, "panicking")) ? " (panicking)" : "");
        }
        json_decref(j);
    }
    cli_response_free(&r);
    return code;
}

int cli_cmd_rm(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    if (argc != 2) {
        fprintf(stderr, "usage: thaw rm NAME [--server URL] [--json]\n");
        return CLI_EXIT_USAGE;
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s", argv[1]);
    struct cli_response r;
    cli_http(&o, "DELETE", path, NULL, 0, NULL, NULL, NULL, NULL, &r);
    int code = cli_exit_for(&r);
    if (code == CLI_EXIT_OK) {
        if (o.json)
            printf("%s\n", r.body.data);
        else
            printf("deleted %s\n", argv[1]);
    }
    cli_response_free(&r);
    return code;
}

/* Server-Sent Events from invoke --stream: print each chunk as it comes.
 * String chunks print raw (text streams read naturally), others as JSON. */
struct sse {
    struct buf pending;
    char event[32];
    bool json;
    int failed;
};

static void sse_event(struct sse *s, const char *data)
{
    if (s->json) {
        printf("{\"event\":\"%s\",\"data\":%s}\n", s->event, data);
    } else if (!strcmp(s->event, "chunk") || !strcmp(s->event, "done")) {
        json_t *j = json_loads(data, JSON_DECODE_ANY, NULL);
        if (json_is_string(j))
            fputs(json_string_value(j), stdout);
        else if (!json_is_null(j))
            printf("%s\n", data);
        json_decref(j);
        if (!strcmp(s->event, "done")) putchar('\n');
    } else if (!strcmp(s->event, "error")) {
        json_t *j = json_loads(data, 0, NULL);
        const char *m = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
        fprintf(stderr, "thaw: %s\n", m ? m : data);
        json_decref(j);
        s->failed = 1;
    }
    fflush(stdout);
}

static void sse_data(void *ctx, const char *data, size_t len)
{
    struct sse *s = ctx;
    buf_append(&s->pending, data, len);
    char *end;
    while (s->pending.data && (end = strstr(s->pending.data, "\n\n"))) {
        *end = 0;
        char *line = s->pending.data, *next;
        const char *payload = NULL;
        for (; line; line = next) {
            next = strchr(line, '\n');
            if (next) *next++ = 0;
            if (!strncmp(line, "event: ", 7))
                str_copy(s->event, line + 7, sizeof(s->event));
            else if (!strncmp(line, "data: ", 6))
                payload = line + 6;
        }
        if (payload) sse_event(s, payload);
        buf_consume(&s->pending, (size_t)(end - s->pending.data) + 2);
    }
}

int cli_cmd_invoke(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    const char *name = NULL, *data = NULL;
    bool stream = false;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-d") || !strcmp(argv[i], "--data")) && i + 1 < argc)
            data = argv[++i];
        else if (!strcmp(argv[i], "--stream"))
            stream = true;
        else if (!strcmp(argv[i], "--version") && i + 1 < argc)
            o.version = argv[++i]; /* pin: x-thaw-version */
        else if (!strcmp(argv[i], "--sticky") && i + 1 < argc)
            o.sticky = argv[++i]; /* stay on one version: x-thaw-sticky */
        else if (!name && argv[i][0] != '-')
            name = argv[i];
        else
            name = NULL, i = argc;
    }
    if (!name) {
        fprintf(stderr, "usage: thaw invoke NAME [-d JSON | < file] [--stream] [--version vN] "
                        "[--sticky KEY] [--server URL]\n");
        return CLI_EXIT_USAGE;
    }
    struct buf body = {0};
    if (data)
        buf_append_str(&body, data);
    else if (!isatty(0) && cli_read_file("-", &body)) {
        fprintf(stderr, "thaw: cannot read stdin\n");
        return CLI_EXIT_USAGE;
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s/invoke", name);
    struct cli_response r;
    struct sse s = {.json = o.json};
    cli_http(&o, "POST", path, body.data ? body.data : "", body.len, "application/json",
             stream ? "text/event-stream" : NULL, stream ? sse_data : NULL, &s, &r);
    buf_free(&body);
    int code;
    if (stream && r.status == 200) {
        code = s.failed ? CLI_EXIT_ERROR : CLI_EXIT_OK;
    } else {
        if (stream && s.pending.data) buf_append(&r.body, s.pending.data, s.pending.len);
        code = cli_exit_for(&r);
        if (code == CLI_EXIT_OK) fputs(r.body.data ? r.body.data : "\n", stdout);
    }
    buf_free(&s.pending);
    cli_response_free(&r);
    return code;
}
