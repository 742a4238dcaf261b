/* The CLI commands for versions and traffic: versions (history), traffic
 * (weights and shadow), promote, rollback and canary. Each is one API call;
 * the node does the atomic change and the audit. */
#include "cli/cli.h"
#include "cli/cli_cmds.h"
#include "cli/client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2));
    if (s) puts(s);
    free(s);
}

static void fmt_time(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "v3=90 v4=10" in one line. */
static void fmt_weights(json_t *traffic, char *out, size_t n)
{
    out[0] = 0;
    size_t len = 0;
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(traffic, "weights"), k, v)
    {
        int w = snprintf(out + len, n - len, "%s%s=%lld", len ? " " : "", k,
                         (long long)json_integer_value(v));
        if (w < 0 || (size_t)w >= n - len) break;
        len += (size_t)w;
    }
    json_t *sh = json_object_get(traffic, "shadow");
    if (json_is_object(sh) && len < n)
        snprintf(out + len, n - len, " shadow:%s@%g%%",
                 json_string_value(json_object_get(sh, "version")),
                 json_number_value(json_object_get(sh, "percent")));
}

/* One request, printed as JSON with --json, else by show. */
static int call(struct cli_opts *o, const char *method, const char *path, json_t *body,
                void (*show)(json_t *))
{
    char *b = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct cli_response r;
    cli_http(o, method, path, b, b ? strlen(b) : 0, b ? "application/json" : NULL, NULL, NULL, NULL,
             &r);
    free(b);
    int code = cli_exit_for(&r);
    if (code == CLI_EXIT_OK) {
        json_t *j = json_loads(r.body.data ? r.body.data : "", 0, NULL);
        if (o->json || !show)
            print_json(j);
        else
            show(j);
        json_decref(j);
    }
    cli_response_free(&r);
    return code;
}

static void show_traffic(json_t *j)
{
    char w[512];
    fmt_weights(json_object_get(j, "traffic"), w, sizeof(w));
    printf("%s: %s\n", json_string_value(json_object_get(j, "deployment")), w);
    json_t *c = json_object_get(json_object_get(j, "traffic"), "canary");
    if (json_is_object(c))
        printf("canary %s against %s: %s, step %lld\n",
               json_string_value(json_object_get(c, "version")),
               json_string_value(json_object_get(c, "baseline")),
               json_string_value(json_object_get(c, "state")),
               (long long)json_integer_value(json_object_get(c, "step")) + 1);
}

static void show_versions(json_t *j)
{
    printf("%-8s %-8s %-20s %-18s %s\n", "VERSION", "TRAFFIC", "DEPLOYED", "BY", "DIGEST");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(j, "versions"), i, v)
    {
        char when[32];
        fmt_time(json_integer_value(json_object_get(v, "created_ms")), when, sizeof(when));
        printf("%-8s %6lld%%  %-20s %-18s %s\n", json_string_value(json_object_get(v, "version")),
               (long long)json_integer_value(json_object_get(v, "traffic")), when,
               json_string_value(json_object_get(v, "deployed_by")),
               json_string_value(json_object_get(v, "digest")));
    }
    printf("\ntraffic history:\n");
    json_array_foreach(json_object_get(j, "history"), i, v)
    {
        char when[32], w[512];
        fmt_time(json_integer_value(json_object_get(v, "time_ms")), when, sizeof(when));
        fmt_weights(json_object_get(v, "traffic"), w, sizeof(w));
        printf("  %-20s %-18s %-22s %s\n", when, json_string_value(json_object_get(v, "actor")),
               json_string_value(json_object_get(v, "reason")), w);
    }
    const char *k;
    json_t *s;
    bool header = false;
    json_object_foreach(json_object_get(j, "stats"), k, s)
    {
        static const char *const roles[] = {"primary", "shadow"};
        for (int r = 0; r < 2; r++) {
            json_t *st = json_object_get(s, roles[r]);
            if (json_integer_value(json_object_get(st, "requests")) == 0) continue;
            if (!header) {
                printf("\nlast %llds: %-8s %-8s %9s %7s %9s %9s\n",
                       (long long)json_integer_value(json_object_get(j, "stats_window_ms")) / 1000,
                       "VERSION", "ROLE", "REQUESTS", "ERRORS", "P50(ms)", "P95(ms)");
                header = true;
            }
            printf("%*s%-8s %-8s %9lld %6.2f%% %9.2f %9.2f\n", 10, "", k, roles[r],
                   (long long)json_integer_value(json_object_get(st, "requests")),
                   100 * json_number_value(json_object_get(st, "error_rate")),
                   json_number_value(json_object_get(st, "p50_ms")),
                   json_number_value(json_object_get(st, "p95_ms")));
        }
    }
}

int cli_cmd_versions(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    if (argc != 2) {
        fprintf(stderr, "usage: thaw versions NAME [--server URL] [--json]\n");
        return CLI_EXIT_USAGE;
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s/versions", argv[1]);
    return call(&o, "GET", path, NULL, show_versions);
}

int cli_cmd_traffic(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    const char *usage = "usage: thaw traffic NAME [vN=PERCENT ...] [--shadow vN=PERCENT | "
                        "--shadow off] [--server URL] [--json]\n";
    if (argc < 2 || argv[1][0] == '-') {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    json_t *weights = json_object(), *body = json_object();
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--shadow") && i + 1 < argc) {
            const char *a = argv[++i];
            const char *eq = strchr(a, '=');
            if (!strcmp(a, "off")) {
                json_object_set_new(body, "shadow", json_null());
            } else if (eq) {
                char v[32];
                snprintf(v, sizeof(v), "%.*s", (int)(eq - a), a);
                json_object_set_new(body, "shadow",
                                    json_pack("{s:s, s:f}", "version", v, "percent", atof(eq + 1)));
            } else {
                fputs(usage, stderr);
                json_decref(weights);
                json_decref(body);
                return CLI_EXIT_USAGE;
            }
            continue;
        }
        const char *eq = strchr(argv[i], '=');
        char *end = NULL;
        long w = eq ? strtol(eq + 1, &end, 10) : -1;
        if (!eq || eq == argv[i] || !end || *end || w < 0 || w > 100) {
            fprintf(stderr, "thaw: '%s' is not vN=PERCENT\n", argv[i]);
            json_decref(weights);
            json_decref(body);
            return CLI_EXIT_USAGE;
        }
        char v[32];
        snprintf(v, sizeof(v), "%.*s", (int)(eq - argv[i]), argv[i]);
        json_object_set_new(weights, v, json_integer(w));
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s/traffic", argv[1]);
    int code;
    if (json_object_size(weights) == 0 && json_object_size(body) == 0) {
        code = call(&o, "GET", path, NULL, show_traffic);
    } else {
        if (json_object_size(weights)) json_object_set(body, "weights", weights);
        code = call(&o, "POST", path, body, show_traffic);
    }
    json_decref(weights);
    json_decref(body);
    return code;
}

int cli_cmd_promote(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    if (argc != 3) {
        fprintf(stderr, "usage: thaw promote NAME vN [--server URL] [--json]\n");
        return CLI_EXIT_USAGE;
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s/promote", argv[1]);
    json_t *body = json_pack("{s:s}", "version", argv[2]);
    int code = call(&o, "POST", path, body, show_traffic);
    json_decref(body);
    return code;
}

int cli_cmd_rollback(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    if (argc != 2) {
        fprintf(stderr, "usage: thaw rollback NAME [--server URL] [--json]\n");
        return CLI_EXIT_USAGE;
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s/rollback", argv[1]);
    return call(&o, "POST", path, NULL, show_traffic);
}

int cli_cmd_canary(int argc, char **argv)
{
    struct cli_opts o;
    argc = cli_common_opts(argc, argv, &o);
    const char *usage =
        "usage: thaw canary NAME vN [--steps 10,25,50,100] [--interval 60s] [--window 60s]\n"
        "                   [--max-error-rate 0.01] [--max-p95-ratio 2] [--min-requests 20]\n"
        "                   [--baseline vM]\n"
        "       thaw canary NAME --stop\n";
    if (argc < 3 || argv[1][0] == '-') {
        fputs(usage, stderr);
        return CLI_EXIT_USAGE;
    }
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s/canary", argv[1]);
    if (!strcmp(argv[2], "--stop")) return call(&o, "DELETE", path, NULL, show_traffic);
    json_t *body = json_pack("{s:s}", "version", argv[2]);
    for (int i = 3; i < argc; i++) {
        const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fputs(usage, stderr);
            json_decref(body);
            return CLI_EXIT_USAGE;
        }
        i++;
        if (!strcmp(f, "--steps")) {
            json_t *a = json_array();
            char *copy = strdup(v), *save = NULL;
            for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                json_array_append_new(a, json_integer(atoi(t)));
            free(copy);
            json_object_set_new(body, "steps", a);
        } else if (!strcmp(f, "--interval") || !strcmp(f, "--window") || !strcmp(f, "--baseline")) {
            json_object_set_new(body, f + 2, json_string(v));
        } else if (!strcmp(f, "--max-error-rate")) {
            json_object_set_new(body, "max_error_rate", json_real(atof(v)));
        } else if (!strcmp(f, "--max-p95-ratio")) {
            json_object_set_new(body, "max_p95_ratio", json_real(atof(v)));
        } else if (!strcmp(f, "--min-requests")) {
            json_object_set_new(body, "min_requests", json_integer(atoi(v)));
        } else {
            fputs(usage, stderr);
            json_decref(body);
            return CLI_EXIT_USAGE;
        }
    }
    int code = call(&o, "POST", path, body, show_traffic);
    json_decref(body);
    return code;
}
