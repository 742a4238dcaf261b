/* Node configuration from three layers: a YAML file (--config), THAW_*
 * environment variables, and flags; each later layer wins. */
#include "node/node.h"
#include "registry/registry.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void node_config_defaults(struct node_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    str_copy(cfg->host, "127.0.0.1", sizeof(cfg->host));
    cfg->port = 8080;
    str_copy(cfg->data_dir, "./thaw-data", sizeof(cfg->data_dir));
    str_copy(cfg->log_level, "info", sizeof(cfg->log_level));
    cfg->threads = 0;
    cfg->drain_timeout_ms = 30000;
    cfg->stop_grace_ms = 5000;
    cfg->max_body_bytes = 64LL << 20;
    cfg->max_header_bytes = 16 << 10;
    cfg->read_timeout_s = 30;
    cfg->access_log = 1;
    cfg->artifact_chunk_max = 64LL << 20;
    cfg->artifact_upload_ttl_ms = 24LL * 3600 * 1000;
}

/* "HOST:PORT", "[v6]:PORT" or ":PORT". */
static int parse_listen(struct node_config *cfg, const char *v, const char *src,
                        struct thaw_err *err)
{
    const char *colon = strrchr(v, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon[1] == 0 || *end || port < 0 || port > 65535)
        return thaw_errf(err, THAW_EINVAL, "%s: listen address must be HOST:PORT, got '%s'", src,
                         v);
    size_t hl = (size_t)(colon - v);
    if (hl >= 2 && v[0] == '[' && v[hl - 1] == ']') {
        v++;
        hl -= 2;
    }
    if (hl >= sizeof(cfg->host)) return thaw_errf(err, THAW_EINVAL, "%s: host too long", src);
    if (hl == 0)
        str_copy(cfg->host, "0.0.0.0", sizeof(cfg->host));
    else {
        memcpy(cfg->host, v, hl);
        cfg->host[hl] = 0;
    }
    cfg->port = (int)port;
    return 0;
}

static int parse_int(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) return THAW_EINVAL;
    *out = n;
    return 0;
}

/* Sets one setting by name from a string, whichever layer it came from. */
static int set_option(struct node_config *cfg, const char *key, const char *v, const char *src,
                      struct thaw_err *err)
{
    long n;
    int64_t ms;
    if (!strcmp(key, "listen")) return parse_listen(cfg, v, src, err);
    if (!strcmp(key, "data")) {
        if (!*v || strlen(v) >= sizeof(cfg->data_dir))
            return thaw_errf(err, THAW_EINVAL, "%s: data dir must be a path", src);
        str_copy(cfg->data_dir, v, sizeof(cfg->data_dir));
        return 0;
    }
    if (!strcmp(key, "log_level")) {
        if (strcmp(v, "debug") && strcmp(v, "info") && strcmp(v, "warn") && strcmp(v, "error"))
            return thaw_errf(err, THAW_EINVAL, "%s: log level must be debug, info, warn or error",
                             src);
        str_copy(cfg->log_level, v, sizeof(cfg->log_level));
        return 0;
    }
    if (!strcmp(key, "threads")) {
        if (parse_int(v, 0, 256, &n))
            return thaw_errf(err, THAW_EINVAL, "%s: threads must be 0-256", src);
        cfg->threads = (int)n;
        return 0;
    }
    if (!strcmp(key, "tls_cert") || !strcmp(key, "tls_key")) {
        char *dst = key[4] == 'c' ? cfg->tls_cert : cfg->tls_key;
        if (!*v || strlen(v) >= sizeof(cfg->tls_cert))
            return thaw_errf(err, THAW_EINVAL, "%s: %s must be a path", src, key);
        str_copy(dst, v, sizeof(cfg->tls_cert));
        return 0;
    }
    if (!strcmp(key, "kek_file") || !strcmp(key, "admin_key_file")) {
        char *dst = key[0] == 'k' ? cfg->kek_file : cfg->admin_key_file;
        if (!*v || strlen(v) >= sizeof(cfg->kek_file))
            return thaw_errf(err, THAW_EINVAL, "%s: %s must be a path", src, key);
        str_copy(dst, v, sizeof(cfg->kek_file));
        return 0;
    }
    if (!strcmp(key, "access_log")) {
        if (strcmp(v, "on") && strcmp(v, "off") && strcmp(v, "true") && strcmp(v, "false"))
            return thaw_errf(err, THAW_EINVAL, "%s: access log must be on or off", src);
        cfg->access_log = !strcmp(v, "on") || !strcmp(v, "true");
        return 0;
    }
    if (!strcmp(key, "security")) {
        if (strcmp(v, "on") && strcmp(v, "off"))
            return thaw_errf(err, THAW_EINVAL, "%s: security must be on or off", src);
        cfg->security_off = !strcmp(v, "off");
        return 0;
    }
    if (!strcmp(key, "read_timeout")) {
        if (parse_duration_ms(v, &ms) || ms < 1000)
            return thaw_errf(err, THAW_EINVAL, "%s: read timeout must be a duration >= 1s", src);
        cfg->read_timeout_s = (int)(ms / 1000);
        return 0;
    }
    if (!strcmp(key, "drain_timeout") || !strcmp(key, "stop_grace")) {
        if (parse_duration_ms(v, &ms))
            return thaw_errf(err, THAW_EINVAL, "%s: %s must be a duration like 30s", src, key);
        *(key[0] == 'd' ? &cfg->drain_timeout_ms : &cfg->stop_grace_ms) = ms;
        return 0;
    }
    if (!strcmp(key, "max_body_size") || !strcmp(key, "max_header_size")) {
        if (parse_int(v, 1024, 1L << 30, &n))
            return thaw_errf(err, THAW_EINVAL, "%s: %s must be bytes between 1024 and 1Gi", src,
                             key);
        *(key[4] == 'b' ? &cfg->max_body_bytes : &cfg->max_header_bytes) = n;
        return 0;
    }
    if (!strcmp(key, "artifact_chunk_max")) {
        if (parse_int(v, 4096, 1L << 30, &n))
            return thaw_errf(err, THAW_EINVAL, "%s: %s must be bytes between 4096 and 1Gi", src,
                             key);
        cfg->artifact_chunk_max = n;
        return 0;
    }
    if (!strcmp(key, "artifact_upload_ttl")) {
        if (parse_duration_ms(v, &ms) || ms < 1000)
            return thaw_errf(err, THAW_EINVAL, "%s: %s must be a duration >= 1s", src, key);
        cfg->artifact_upload_ttl_ms = ms;
        return 0;
    }
    return thaw_errf(err, THAW_EINVAL, "%s: unknown setting '%s'", src, key);
}

static const char *const settings[] = {"listen",
                                       "data",
                                       "log_level",
                                       "threads",
                                       "read_timeout",
                                       "drain_timeout",
                                       "stop_grace",
                                       "max_body_size",
                                       "max_header_size",
                                       "access_log",
                                       "kek_file",
                                       "admin_key_file",
                                       "artifact_chunk_max",
                                       "artifact_upload_ttl",
                                       "tls_cert",
                                       "tls_key",
                                       "security",
                                       NULL};

static int load_file(struct node_config *cfg, const char *path, struct thaw_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return thaw_errf(err, -errno, "cannot read config %s: %s", path, strerror(errno));
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < (1 << 20))
        buf_append(&b, chunk, n);
    fclose(f);
    json_t *doc = NULL;
    int rc = registry_yaml_to_json(b.data ? b.data : "", b.len, &doc, err);
    buf_free(&b);
    if (rc) return rc;
    if (!json_is_object(doc)) {
        json_decref(doc);
        return thaw_errf(err, THAW_EINVAL, "config %s must be a map of settings", path);
    }
    const char *key;
    json_t *v;
    char src[1100];
    snprintf(src, sizeof(src), "config %s", path);
    json_object_foreach(doc, key, v)
    {
        char num[64];
        const char *s = json_string_value(v);
        if (json_is_integer(v))
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v)), s = num;
        else if (json_is_real(v))
            snprintf(num, sizeof(num), "%g", json_real_value(v)), s = num;
        if (!s)
            rc = thaw_errf(err, THAW_EINVAL, "%s: '%s' must be a string or number", src, key);
        else
            rc = set_option(cfg, key, s, src, err);
        if (rc) break;
    }
    json_decref(doc);
    return rc;
}

static int load_env(struct node_config *cfg, struct thaw_err *err)
{
    for (const char *const *k = settings; *k; k++) {
        char name[64] = "THAW_";
        for (size_t i = 0; (*k)[i] && i < 50; i++) {
            char c = (*k)[i];
            name[5 + i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
            name[6 + i] = 0;
        }
        const char *v = getenv(name);
        if (v && *v) {
            int rc = set_option(cfg, *k, v, name, err);
            if (rc) return rc;
        }
    }
    return 0;
}

static int check_tls(const struct node_config *cfg, struct thaw_err *err)
{
    if (!cfg->tls_cert[0] != !cfg->tls_key[0])
        return thaw_errf(err, THAW_EINVAL, "--tls-cert and --tls-key go together");
    return 0;
}

/* security: off serves anyone who can connect, so only this machine may. */
static int check_security(const struct node_config *cfg, struct thaw_err *err)
{
    if (!cfg->security_off) return 0;
    const char *h = cfg->host;
    bool loopback = !strcmp(h, "localhost") || !strcmp(h, "::1") || !strncmp(h, "127.", 4);
    if (!loopback)
        return thaw_errf(err, THAW_EINVAL,
                         "security: off is only allowed on a loopback address (127.0.0.1, ::1), "
                         "not on '%s'",
                         h);
    return 0;
}

int node_config_load(struct node_config *cfg, int argc, char **argv, struct thaw_err *err)
{
    const char *config_file = getenv("THAW_CONFIG");
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--config") && i + 1 < argc) config_file = argv[i + 1];
    int rc = 0;
    if (config_file && *config_file) rc = load_file(cfg, config_file, err);
    if (!rc) rc = load_env(cfg, err);
    for (int i = 1; !rc && i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return thaw_errf(err, THAW_EINVAL, "unexpected argument '%s'", a);
        char key[64];
        const char *eq = strchr(a, '=');
        size_t kl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (kl >= sizeof(key)) return thaw_errf(err, THAW_EINVAL, "unknown flag '%s'", a);
        memcpy(key, a + 2, kl);
        key[kl] = 0;
        for (char *p = key; *p; p++)
            if (*p == '-') *p = '_';
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return thaw_errf(err, THAW_EINVAL, "flag --%s needs a value", a + 2);
        if (!strcmp(key, "config")) continue;
        char src[80];
        snprintf(src, sizeof(src), "flag --%.60s", a + 2);
        rc = set_option(cfg, key, v, src, err);
    }
    if (!rc) rc = check_tls(cfg, err);
    if (!rc) rc = check_security(cfg, err);
    return rc;
}
