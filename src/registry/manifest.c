/* Deployment manifests: strict validation (unknown fields are errors, so a
 * typo never silently falls back to a default) and the canonical JSON form. */
#include "registry/registry.h"

#include "engine/text.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct deploy_scale scale_defaults = {
    .min_instances = 0,
    .max_instances = 4,
    .idle_timeout_ms = 60000,
    .standby_timeout_ms = 600000,
    .queue_limit = 100,
    .queue_timeout_ms = 10000,
    .target_utilization = 0.7,
    .stable_window_ms = 60000,
    .panic_window_ms = 6000,
    .panic_threshold = 2.0,
    .startup_timeout_ms = 30000,
};

static const struct deploy_limits limits_defaults = {
    .memory_bytes = 0,
    .open_files = 1024,
    .cpu_seconds = 0,
    .max_body_bytes = 1 << 20,
};

/* The engine's own sampler defaults (sampler_params_default), a random
 * seed per request, and answers of at most 256 tokens unless asked. */
/* A macro, not a const object: clang (unlike gcc) refuses a const object
 * as the initializer of another static one (model_defaults). */
#define SAMPLING_DEFAULTS                                                                          \
    {                                                                                              \
        .temperature = 0.8, .top_p = 0.95, .top_k = 40, .min_p = 0.05,                             \
        .repetition_penalty = 1.0, .frequency_penalty = 0.0, .presence_penalty = 0.0,              \
        .max_tokens = 256, .seed = -1,                                                             \
    }

static const struct deploy_model model_defaults = {
    .threads = 1,
    .context = 0,
    .max_output_tokens = 512,
    .sampling = SAMPLING_DEFAULTS,
};

static const struct deploy_jobs jobs_defaults = {
    .max_attempts = 3,
    .backoff_base_ms = 1000,
    .backoff_cap_ms = 300000,
    .visibility_timeout_ms = 60000,
    .result_ttl_ms = 86400000,
    .queue_limit = 10000,
    .concurrency = 0,
    .webhook = NULL,
};

bool registry_name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > DEPLOY_NAME_MAX) return false;
    if (!isalnum((unsigned char)name[0])) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(islower(c) || isdigit(c) || c == '-' || c == '_' || c == '.')) return false;
    }
    return true;
}

static void strv_free(char **v)
{
    if (!v) return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

void registry_spec_free(struct deploy_spec *spec)
{
    if (!spec) return;
    free(spec->runtime);
    strv_free(spec->command);
    strv_free(spec->env);
    free(spec->workdir);
    free(spec->model.path);
    free(spec->model.chat_template);
    json_decref(spec->input_schema);
    free(spec->jobs.webhook);
    free(spec);
}

/* Checks that obj has only the allowed keys. */
static int check_keys(const json_t *obj, const char *where, const char *const *allowed,
                      struct thaw_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, key) == 0;
        if (!ok) return thaw_errf(err, THAW_EINVAL, "unknown field '%s%s'", where, key);
    }
    return 0;
}

static int get_int(const json_t *obj, const char *key, const char *where, int64_t lo, int64_t hi,
                   int64_t *out, struct thaw_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_integer(v))
        return thaw_errf(err, THAW_EINVAL, "field '%s%s' must be an integer", where, key);
    json_int_t i = json_integer_value(v);
    if (i < lo || i > hi)
        return thaw_errf(err, THAW_EINVAL, "field '%s%s' must be between %lld and %lld", where, key,
                         (long long)lo, (long long)hi);
    *out = i;
    return 0;
}

static int get_int32(const json_t *obj, const char *key, const char *where, int lo, int hi,
                     int *out, struct thaw_err *err)
{
    int64_t v = *out;
    int rc = get_int(obj, key, where, lo, hi, &v, err);
    if (!rc) *out = (int)v;
    return rc;
}

static int get_double(const json_t *obj, const char *key, const char *where, double lo, double hi,
                      double *out, struct thaw_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_number(v))
        return thaw_errf(err, THAW_EINVAL, "field '%s%s' must be a number", where, key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return thaw_errf(err, THAW_EINVAL, "field '%s%s' must be between %g and %g", where, key, lo,
                         hi);
    *out = d;
    return 0;
}

/* A duration is a string ("250ms", "30s", "5m", "1h") or a number of seconds. */
static int get_duration(const json_t *obj, const char *key, const char *where, int64_t *out,
                        struct thaw_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    int64_t ms;
    if (json_is_string(v)) {
        if (parse_duration_ms(json_string_value(v), &ms))
            return thaw_errf(err, THAW_EINVAL,
                             "field '%s%s' must be a duration like \"500ms\", \"30s\" or \"5m\"",
                             where, key);
    } else if (json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) < 1e9) {
        ms = (int64_t)llround(json_number_value(v) * 1000);
    } else {
        return thaw_errf(err, THAW_EINVAL, "field '%s%s' must be a duration", where, key);
    }
    if (ms > 365LL * 24 * 3600 * 1000)
        return thaw_errf(err, THAW_EINVAL, "field '%s%s' is longer than a year", where, key);
    *out = ms;
    return 0;
}

/* Sizes are integers of bytes or strings with a K/M/G/Ki/Mi/Gi suffix. */
static int get_size(const json_t *obj, const char *key, const char *where, int64_t *out,
                    struct thaw_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        double d = strtod(s, &end);
        static const struct {
            const char *suffix;
            double mult;
        } units[] = {{"", 1},
                     {"B", 1},
                     {"K", 1e3},
                     {"M", 1e6},
                     {"G", 1e9},
                     {"Ki", 1024.0},
                     {"Mi", 1048576.0},
                     {"Gi", 1073741824.0},
                     {"KB", 1e3},
                     {"MB", 1e6},
                     {"GB", 1e9},
                     {"KiB", 1024.0},
                     {"MiB", 1048576.0},
                     {"GiB", 1073741824.0}};
        if (end != s && d >= 0) {
            for (size_t i = 0; i < ARRAY_LEN(units); i++) {
                if (strcmp(end, units[i].suffix) == 0 && d * units[i].mult < 9e18) {
                    *out = (int64_t)(d * units[i].mult);
                    return 0;
                }
            }
        }
    }
    return thaw_errf(err, THAW_EINVAL,
                     "field '%s%s' must be a size like 1048576, \"512Mi\" or \"1G\"", where, key);
}

static int get_bool(const json_t *obj, const char *key, bool *out, struct thaw_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_boolean(v))
        return thaw_errf(err, THAW_EINVAL, "field '%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int get_string(const json_t *obj, const char *key, char **out, struct thaw_err *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v) return 0;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return thaw_errf(err, THAW_EINVAL, "field '%s' must be a non-empty string", key);
    free(*out);
    *out = str_dup(json_string_value(v));
    return *out ? 0 : thaw_errf(err, THAW_ENOMEM, "out of memory");
}

static int parse_command(const json_t *v, struct deploy_spec *spec, struct thaw_err *err)
{
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 256)
        return thaw_errf(err, THAW_EINVAL,
                         "field 'command' must be a non-empty list of strings (argv)");
    size_t n = json_array_size(v);
    spec->command = calloc(n + 1, sizeof(char *));
    if (!spec->command) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(v, i);
        if (!json_is_string(a) || strlen(json_string_value(a)) != json_string_length(a))
            return thaw_errf(err, THAW_EINVAL, "field 'command[%zu]' must be a string", i);
        if (i == 0 && json_string_length(a) == 0)
            return thaw_errf(err, THAW_EINVAL, "field 'command[0]' must name a program");
        spec->command[i] = str_dup(json_string_value(a));
        if (!spec->command[i]) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    return 0;
}

static bool env_name_valid(const char *k)
{
    if (!*k || isdigit((unsigned char)*k)) return false;
    for (; *k; k++)
        if (!(isalnum((unsigned char)*k) || *k == '_')) return false;
    return true;
}

static int parse_env(const json_t *v, struct deploy_spec *spec, struct thaw_err *err)
{
    if (!json_is_object(v) || json_object_size(v) > 256)
        return thaw_errf(err, THAW_EINVAL, "field 'env' must be a map of names to strings");
    spec->env = calloc(json_object_size(v) + 1, sizeof(char *));
    if (!spec->env) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    const char *key;
    json_t *val;
    size_t i = 0;
    json_object_foreach((json_t *)v, key, val)
    {
        if (!env_name_valid(key))
            return thaw_errf(err, THAW_EINVAL, "field 'env.%s' is not a valid variable name", key);
        char num[32];
        const char *s;
        if (json_is_string(val))
            s = json_string_value(val);
        else if (json_is_integer(val)) {
            snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(val));
            s = num;
        } else if (json_is_boolean(val))
            s = json_is_true(val) ? "true" : "false";
        else
            return thaw_errf(err, THAW_EINVAL, "field 'env.%s' must be a string", key);
        struct buf b = {0};
        if (buf_printf(&b, "%s=%s", key, s)) return thaw_errf(err, THAW_ENOMEM, "out of memory");
        spec->env[i++] = buf_steal(&b);
    }
    return 0;
}

static int parse_scale(const json_t *v, struct deploy_scale *sc, struct thaw_err *err)
{
    static const char *const allowed[] = {"min_instances",      "max_instances",   "idle_timeout",
                                          "standby_timeout",    "queue_limit",     "queue_timeout",
                                          "target_utilization", "stable_window",   "panic_window",
                                          "panic_threshold",    "startup_timeout", NULL};
    if (!json_is_object(v)) return thaw_errf(err, THAW_EINVAL, "field 'scale' must be a map");
    int rc = check_keys(v, "scale.", allowed, err);
    if (!rc) rc = get_int32(v, "min_instances", "scale.", 0, 1000, &sc->min_instances, err);
    if (!rc) rc = get_int32(v, "max_instances", "scale.", 1, 1000, &sc->max_instances, err);
    if (!rc) rc = get_int32(v, "queue_limit", "scale.", 0, 1000000, &sc->queue_limit, err);
    if (!rc) rc = get_duration(v, "idle_timeout", "scale.", &sc->idle_timeout_ms, err);
    if (!rc) rc = get_duration(v, "standby_timeout", "scale.", &sc->standby_timeout_ms, err);
    if (!rc) rc = get_duration(v, "queue_timeout", "scale.", &sc->queue_timeout_ms, err);
    if (!rc) rc = get_duration(v, "stable_window", "scale.", &sc->stable_window_ms, err);
    if (!rc) rc = get_duration(v, "panic_window", "scale.", &sc->panic_window_ms, err);
    if (!rc) rc = get_duration(v, "startup_timeout", "scale.", &sc->startup_timeout_ms, err);
    if (!rc)
        rc = get_double(v, "target_utilization", "scale.", 0.05, 1.0, &sc->target_utilization, err);
    if (!rc) rc = get_double(v, "panic_threshold", "scale.", 1.0, 100.0, &sc->panic_threshold, err);
    if (rc) return rc;
    if (sc->min_instances > sc->max_instances)
        return thaw_errf(err, THAW_EINVAL,
                         "field 'scale.min_instances' (%d) exceeds 'scale.max_instances' (%d)",
                         sc->min_instances, sc->max_instances);
    if (sc->stable_window_ms < 1000 || sc->panic_window_ms < 100 ||
        sc->panic_window_ms > sc->stable_window_ms)
        return thaw_errf(err, THAW_EINVAL,
                         "field 'scale.panic_window' must be at least 100ms and at most "
                         "'scale.stable_window' (at least 1s)");
    if (sc->startup_timeout_ms < 100)
        return thaw_errf(err, THAW_EINVAL, "field 'scale.startup_timeout' must be at least 100ms");
    return 0;
}

static int parse_limits(const json_t *v, struct deploy_limits *l, struct thaw_err *err)
{
    static const char *const allowed[] = {"memory", "open_files", "cpu_seconds", "max_body_size",
                                          NULL};
    if (!json_is_object(v)) return thaw_errf(err, THAW_EINVAL, "field 'limits' must be a map");
    int rc = check_keys(v, "limits.", allowed, err);
    if (!rc) rc = get_size(v, "memory", "limits.", &l->memory_bytes, err);
    if (!rc) rc = get_int(v, "open_files", "limits.", 16, 1 << 20, &l->open_files, err);
    if (!rc) rc = get_int(v, "cpu_seconds", "limits.", 0, INT_MAX, &l->cpu_seconds, err);
    if (!rc) rc = get_size(v, "max_body_size", "limits.", &l->max_body_bytes, err);
    if (!rc && l->memory_bytes && l->memory_bytes < (16 << 20))
        rc = thaw_errf(err, THAW_EINVAL, "field 'limits.memory' must be at least 16Mi");
    if (!rc && (l->max_body_bytes < 1 || l->max_body_bytes > (1LL << 30)))
        rc = thaw_errf(err, THAW_EINVAL, "field 'limits.max_body_size' must be 1 byte to 1Gi");
    return rc;
}

/* ---- jobs: block ---- */

static int parse_webhook(const json_t *v, char **out, struct thaw_err *err)
{
    if (json_is_null(v)) return 0;
    const char *s = json_string_value(v);
    size_t n = s ? strlen(s) : 0;
    if (!s || n != json_string_length(v) || n > 2048 ||
        (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0))
        return thaw_errf(err, THAW_EINVAL,
                         "field 'jobs.webhook' must be an http:// or https:// URL of at most "
                         "2048 characters");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return thaw_errf(err, THAW_EINVAL,
                             "field 'jobs.webhook' must not contain spaces or control characters");
    *out = str_dup(s);
    return *out ? 0 : thaw_errf(err, THAW_ENOMEM, "out of memory");
}

static int parse_jobs(const json_t *v, struct deploy_jobs *j, struct thaw_err *err)
{
    static const char *const allowed[] = {"max_attempts",       "backoff_base", "backoff_cap",
                                          "visibility_timeout", "result_ttl",   "queue_limit",
                                          "concurrency",        "webhook",      NULL};
    if (!json_is_object(v)) return thaw_errf(err, THAW_EINVAL, "field 'jobs' must be a map");
    int rc = check_keys(v, "jobs.", allowed, err);
    if (!rc) rc = get_int32(v, "max_attempts", "jobs.", 1, 100, &j->max_attempts, err);
    if (!rc) rc = get_duration(v, "backoff_base", "jobs.", &j->backoff_base_ms, err);
    if (!rc) rc = get_duration(v, "backoff_cap", "jobs.", &j->backoff_cap_ms, err);
    if (!rc) rc = get_duration(v, "visibility_timeout", "jobs.", &j->visibility_timeout_ms, err);
    if (!rc) rc = get_duration(v, "result_ttl", "jobs.", &j->result_ttl_ms, err);
    if (!rc) rc = get_int32(v, "queue_limit", "jobs.", 1, 10000000, &j->queue_limit, err);
    if (!rc) rc = get_int32(v, "concurrency", "jobs.", 0, 100000, &j->concurrency, err);
    json_t *hook = json_object_get(v, "webhook");
    if (!rc && hook) rc = parse_webhook(hook, &j->webhook, err);
    if (rc) return rc;
    if (j->backoff_cap_ms < j->backoff_base_ms)
        return thaw_errf(err, THAW_EINVAL,
                         "field 'jobs.backoff_cap' must be at least 'jobs.backoff_base'");
    if (j->visibility_timeout_ms < 100)
        return thaw_errf(err, THAW_EINVAL,
                         "field 'jobs.visibility_timeout' must be at least 100ms");
    if (j->result_ttl_ms < 100)
        return thaw_errf(err, THAW_EINVAL, "field 'jobs.result_ttl' must be at least 100ms");
    return 0;
}

/* ---- runtimes llm and embed ---- */

bool registry_runtime_is_model(const struct deploy_spec *spec)
{
    return spec->runtime &&
           (strcmp(spec->runtime, "llm") == 0 || strcmp(spec->runtime, "embed") == 0);
}

static int parse_sampling(const json_t *v, struct deploy_sampling *s, bool *max_given,
                          struct thaw_err *err)
{
    static const char *const allowed[] = {"temperature",
                                          "top_p",
                                          "top_k",
                                          "min_p",
                                          "repetition_penalty",
                                          "frequency_penalty",
                                          "presence_penalty",
                                          "max_tokens",
                                          "seed",
                                          NULL};
    if (!json_is_object(v)) return thaw_errf(err, THAW_EINVAL, "field 'sampling' must be a map");
    const char *w = "sampling.";
    int rc = check_keys(v, w, allowed, err);
    if (!rc) rc = get_double(v, "temperature", w, 0, 10, &s->temperature, err);
    if (!rc) rc = get_double(v, "top_p", w, 1e-6, 1, &s->top_p, err);
    if (!rc) rc = get_int32(v, "top_k", w, 0, 1 << 20, &s->top_k, err);
    if (!rc) rc = get_double(v, "min_p", w, 0, 1, &s->min_p, err);
    if (!rc) rc = get_double(v, "repetition_penalty", w, 0.01, 10, &s->repetition_penalty, err);
    if (!rc) rc = get_double(v, "frequency_penalty", w, -2, 2, &s->frequency_penalty, err);
    if (!rc) rc = get_double(v, "presence_penalty", w, -2, 2, &s->presence_penalty, err);
    if (!rc) rc = get_int32(v, "max_tokens", w, 1, 1 << 20, &s->max_tokens, err);
    *max_given = json_object_get(v, "max_tokens") != NULL;
    json_t *seed = json_object_get(v, "seed");
    if (!rc && seed && json_is_null(seed))
        s->seed = -1;
    else if (!rc && seed)
        rc = get_int(v, "seed", w, 0, INT64_MAX, &s->seed, err);
    return rc;
}

static int parse_model_path(const json_t *v, char **out, struct thaw_err *err)
{
    const char *s = json_string_value(v);
    if (!s || !*s || strlen(s) != json_string_length(v) || strlen(s) > 4000)
        return thaw_errf(err, THAW_EINVAL,
                         "field 'model' must be a file path or an artifact digest "
                         "\"sha256:<64 hex digits>\"");
    if (strncmp(s, "sha256:", 7) == 0 && !artifact_digest_valid(s))
        return thaw_errf(err, THAW_EINVAL,
                         "field 'model' must name an artifact as \"sha256:\" and 64 lowercase "
                         "hex digits");
    *out = str_dup(s);
    return *out ? 0 : thaw_errf(err, THAW_ENOMEM, "out of memory");
}

/* Fields of one runtime are errors in a manifest of another, so a manifest
 * never carries settings that silently do nothing. */
static int check_runtime_fields(const json_t *obj, const char *runtime, struct thaw_err *err)
{
    static const char *const exec_only[] = {"command", "env", "workdir", "concurrency", NULL};
    static const char *const model_only[] = {"model",    "threads", "context",
                                             "parallel", "redact",  NULL};
    static const char *const llm_only[] = {"max_output_tokens", "chat_template", "sampling", NULL};
    bool exec = strcmp(runtime, "exec") == 0, llm = strcmp(runtime, "llm") == 0;
    for (const char *const *f = exec_only; !exec && *f; f++)
        if (json_object_get(obj, *f))
            return thaw_errf(
                err, THAW_EINVAL, "field '%s' is not allowed for runtime %s%s", *f, runtime,
                strcmp(*f, "concurrency") == 0 ? " (its instances take 'parallel')" : "");
    for (const char *const *f = model_only; exec && *f; f++)
        if (json_object_get(obj, *f))
            return thaw_errf(err, THAW_EINVAL,
                             "field '%s' is only for runtimes llm and embed, not exec", *f);
    for (const char *const *f = llm_only; !llm && *f; f++)
        if (json_object_get(obj, *f))
            return thaw_errf(err, THAW_EINVAL, "field '%s' is only for runtime llm, not %s", *f,
                             runtime);
    return 0;
}

static int parse_model(const json_t *obj, struct deploy_spec *spec, struct thaw_err *err)
{
    struct deploy_model *m = &spec->model;
    json_t *path = json_object_get(obj, "model");
    if (!path)
        return thaw_errf(err, THAW_EINVAL, "field 'model' is required for runtime %s",
                         spec->runtime);
    int rc = parse_model_path(path, &m->path, err);
    if (!rc) rc = get_int32(obj, "threads", "", 1, 256, &m->threads, err);
    if (!rc) rc = get_int32(obj, "context", "", 0, 1 << 20, &m->context, err);
    if (!rc && m->context > 0 && m->context < 16)
        rc = thaw_errf(err, THAW_EINVAL, "field 'context' must be 0 (the model's) or at least 16");
    spec->concurrency = 4; /* continuous batching is what makes an instance cheap */
    /* A long answer of a CPU-served model takes minutes, not seconds. */
    if (!json_object_get(obj, "timeout")) spec->timeout_ms = 300000;
    if (!rc) rc = get_int32(obj, "parallel", "", 1, 256, &spec->concurrency, err);
    if (!rc) rc = get_bool(obj, "redact", &m->redact, err);
    if (!rc) rc = get_int32(obj, "max_output_tokens", "", 1, 1 << 20, &m->max_output_tokens, err);
    if (!rc) rc = get_string(obj, "chat_template", &m->chat_template, err);
    if (!rc && m->chat_template) {
        enum chat_family f;
        if (chat_family_from_name(m->chat_template, &f, err))
            rc = thaw_errf(err, THAW_EINVAL, "field 'chat_template': %s", err->msg);
    }
    bool max_given = false;
    json_t *sampling = json_object_get(obj, "sampling");
    if (!rc && sampling) rc = parse_sampling(sampling, &m->sampling, &max_given, err);
    /* The default answer length never exceeds the cap the manifest set. */
    if (!rc && !max_given && m->sampling.max_tokens > m->max_output_tokens)
        m->sampling.max_tokens = m->max_output_tokens;
    if (!rc && max_given && m->sampling.max_tokens > m->max_output_tokens)
        rc = thaw_errf(err, THAW_EINVAL,
                       "field 'sampling.max_tokens' (%d) exceeds 'max_output_tokens' (%d)",
                       m->sampling.max_tokens, m->max_output_tokens);
    return rc;
}

int registry_spec_from_json(const json_t *obj, struct deploy_spec **out, struct thaw_err *err)
{
    /* clang-format off */
    static const char *const allowed[] = {
        "name", "runtime", "command", "env", "workdir", "concurrency", "timeout", "scale",
        "limits", "jobs", "sandbox", "network", "shared", "input_schema", "model", "threads",
        "context", "parallel", "max_output_tokens", "chat_template", "sampling", "redact", NULL};
    /* clang-format on */
    if (!json_is_object(obj)) return thaw_errf(err, THAW_EINVAL, "a manifest must be a map");
    struct deploy_spec *spec = calloc(1, sizeof(*spec));
    if (!spec) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    spec->concurrency = 4;
    spec->sandbox = true;
    spec->timeout_ms = 30000;
    spec->scale = scale_defaults;
    spec->limits = limits_defaults;
    spec->jobs = jobs_defaults;
    spec->model = model_defaults;

    int rc = check_keys(obj, "", allowed, err);
    json_t *name = json_object_get(obj, "name");
    if (!rc && !name) rc = thaw_errf(err, THAW_EINVAL, "field 'name' is required");
    if (!rc && (!json_is_string(name) || !registry_name_valid(json_string_value(name))))
        rc = thaw_errf(err, THAW_EINVAL,
                       "field 'name' must be 1-63 characters of a-z, 0-9, '-', '_' or '.', "
                       "starting with a letter or digit");
    if (!rc) str_copy(spec->name, json_string_value(name), sizeof(spec->name));
    if (!rc) rc = get_string(obj, "runtime", &spec->runtime, err);
    if (!rc && !spec->runtime) rc = thaw_errf(err, THAW_EINVAL, "field 'runtime' is required");
    if (!rc && strcmp(spec->runtime, "exec") != 0 && !registry_runtime_is_model(spec))
        rc = thaw_errf(err, THAW_EINVAL,
                       "field 'runtime': unknown runtime '%s' (known: exec, llm, embed)",
                       spec->runtime);
    if (!rc) rc = check_runtime_fields(obj, spec->runtime, err);
    bool exec = !rc && strcmp(spec->runtime, "exec") == 0;
    json_t *cmd = json_object_get(obj, "command");
    if (exec && !cmd)
        rc = thaw_errf(err, THAW_EINVAL, "field 'command' is required for runtime exec");
    if (exec && !rc) rc = parse_command(cmd, spec, err);
    json_t *env = json_object_get(obj, "env");
    if (exec && !rc && env) rc = parse_env(env, spec, err);
    if (exec && !rc) rc = get_string(obj, "workdir", &spec->workdir, err);
    if (exec && !rc) rc = get_int32(obj, "concurrency", "", 1, 1000, &spec->concurrency, err);
    if (!rc && !exec) rc = parse_model(obj, spec, err);
    if (!rc) rc = get_duration(obj, "timeout", "", &spec->timeout_ms, err);
    if (!rc && spec->timeout_ms < 1)
        rc = thaw_errf(err, THAW_EINVAL, "field 'timeout' must be positive");
    json_t *schema = json_object_get(obj, "input_schema");
    if (!rc && schema && !json_is_null(schema)) {
        rc = registry_schema_check(schema, err);
        if (!rc) spec->input_schema = json_deep_copy(schema);
    }
    if (!rc) rc = get_bool(obj, "sandbox", &spec->sandbox, err);
    if (!rc) rc = get_bool(obj, "network", &spec->network, err);
    if (!rc) rc = get_bool(obj, "shared", &spec->shared, err);
    json_t *scale = json_object_get(obj, "scale");
    if (!rc && scale) rc = parse_scale(scale, &spec->scale, err);
    json_t *limits = json_object_get(obj, "limits");
    if (!rc && limits) rc = parse_limits(limits, &spec->limits, err);
    json_t *jobs = json_object_get(obj, "jobs");
    if (!rc && jobs) rc = parse_jobs(jobs, &spec->jobs, err);
    if (rc) {
        registry_spec_free(spec);
        return rc;
    }
    *out = spec;
    return 0;
}

int registry_spec_parse(const char *body, size_t len, const char *content_type,
                        struct deploy_spec **out, struct thaw_err *err)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char)body[i]))
        i++;
    if (i == len) return thaw_errf(err, THAW_EINVAL, "empty manifest");
    bool yaml = content_type ? strstr(content_type, "yaml") != NULL : (i < len && body[i] != '{');
    json_t *doc = NULL;
    if (yaml) {
        int rc = registry_yaml_to_json(body, len, &doc, err);
        if (rc) return rc;
    } else {
        json_error_t jerr;
        doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!doc)
            return thaw_errf(err, THAW_EINVAL, "invalid JSON at line %d column %d: %s", jerr.line,
                             jerr.column, jerr.text);
    }
    int rc = registry_spec_from_json(doc, out, err);
    json_decref(doc);
    /* A value that looks sealed would be taken for one when read back. */
    for (char **e = rc ? NULL : (*out)->env; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq && registry_env_value_sealed(eq + 1)) {
            rc = thaw_errf(err, THAW_EINVAL,
                           "field 'env.%.*s' may not start with '" REGISTRY_SEALED_PREFIX "'",
                           (int)(eq - *e), *e);
            registry_spec_free(*out);
            *out = NULL;
            break;
        }
    }
    return rc;
}

static json_t *strv_json(char **v)
{
    json_t *a = json_array();
    for (char **p = v; p && *p; p++)
        json_array_append_new(a, json_string(*p));
    return a;
}

static json_t *env_json(char **v)
{
    json_t *o = json_object();
    for (char **p = v; p && *p; p++) {
        const char *eq = strchr(*p, '=');
        char *key = strndup(*p, (size_t)(eq - *p));
        if (key) json_object_set_new(o, key, json_string(eq + 1));
        free(key);
    }
    return o;
}

static json_t *ms_json(int64_t ms)
{
    char s[32];
    if (ms % 1000 == 0)
        snprintf(s, sizeof(s), "%llds", (long long)(ms / 1000));
    else
        snprintf(s, sizeof(s), "%lldms", (long long)ms);
    return json_string(s);
}

static void model_json(json_t *o, const struct deploy_spec *spec)
{
    const struct deploy_model *m = &spec->model;
    json_object_set_new(o, "model", json_string(m->path));
    json_object_set_new(o, "threads", json_integer(m->threads));
    json_object_set_new(o, "context", json_integer(m->context));
    json_object_set_new(o, "parallel", json_integer(spec->concurrency));
    json_object_set_new(o, "redact", json_boolean(m->redact));
    if (strcmp(spec->runtime, "llm") != 0) return;
    const struct deploy_sampling *s = &m->sampling;
    json_object_set_new(o, "max_output_tokens", json_integer(m->max_output_tokens));
    if (m->chat_template) json_object_set_new(o, "chat_template", json_string(m->chat_template));
    json_object_set_new(o, "sampling",
                        json_pack("{s:f, s:f, s:i, s:f, s:f, s:f, s:f, s:i, s:o}", "temperature",
                                  s->temperature, "top_p", s->top_p, "top_k", s->top_k, "min_p",
                                  s->min_p, "repetition_penalty", s->repetition_penalty,
                                  "frequency_penalty", s->frequency_penalty, "presence_penalty",
                                  s->presence_penalty, "max_tokens", s->max_tokens, "seed",
                                  s->seed < 0 ? json_null() : json_integer(s->seed)));
}

json_t *registry_spec_to_json(const struct deploy_spec *spec)
{
    const struct deploy_scale *sc = &spec->scale;
    const struct deploy_limits *l = &spec->limits;
    json_t *scale = json_pack(
        "{s:i, s:i, s:o, s:o, s:i, s:o, s:f, s:o, s:o, s:f, s:o}", "min_instances",
        sc->min_instances, "max_instances", sc->max_instances, "idle_timeout",
        ms_json(sc->idle_timeout_ms), "standby_timeout", ms_json(sc->standby_timeout_ms),
        "queue_limit", sc->queue_limit, "queue_timeout", ms_json(sc->queue_timeout_ms),
        "target_utilization", sc->target_utilization, "stable_window",
        ms_json(sc->stable_window_ms), "panic_window", ms_json(sc->panic_window_ms),
        "panic_threshold", sc->panic_threshold, "startup_timeout", ms_json(sc->startup_timeout_ms));
    json_t *limits =
        json_pack("{s:I, s:I, s:I, s:I}", "memory", (json_int_t)l->memory_bytes, "open_files",
                  (json_int_t)l->open_files, "cpu_seconds", (json_int_t)l->cpu_seconds,
                  "max_body_size", (json_int_t)l->max_body_bytes);
    json_t *o = json_pack("{s:s, s:s, s:o, s:o, s:o}", "name", spec->name, "runtime", spec->runtime,
                          "timeout", ms_json(spec->timeout_ms), "scale", scale, "limits", limits);
    if (o && !registry_runtime_is_model(spec)) {
        json_object_set_new(o, "command", strv_json(spec->command));
        json_object_set_new(o, "env", env_json(spec->env));
        json_object_set_new(o, "concurrency", json_integer(spec->concurrency));
        if (spec->workdir) json_object_set_new(o, "workdir", json_string(spec->workdir));
    } else if (o) {
        model_json(o, spec);
    }
    if (o && spec->input_schema) json_object_set(o, "input_schema", spec->input_schema);
    if (o) json_object_set_new(o, "sandbox", json_boolean(spec->sandbox));
    if (o) json_object_set_new(o, "network", json_boolean(spec->network));
    /* Only when set, so versions deployed before the field keep their digests. */
    if (o && spec->shared) json_object_set_new(o, "shared", json_true());
    const struct deploy_jobs *j = &spec->jobs;
    json_t *jobs = json_pack(
        "{s:i, s:o, s:o, s:o, s:o, s:i, s:i, s:o}", "max_attempts", j->max_attempts, "backoff_base",
        ms_json(j->backoff_base_ms), "backoff_cap", ms_json(j->backoff_cap_ms),
        "visibility_timeout", ms_json(j->visibility_timeout_ms), "result_ttl",
        ms_json(j->result_ttl_ms), "queue_limit", j->queue_limit, "concurrency", j->concurrency,
        "webhook", j->webhook ? json_string(j->webhook) : json_null());
    if (o)
        json_object_set_new(o, "jobs", jobs);
    else
        json_decref(jobs);
    return o;
}
