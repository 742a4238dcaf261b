/* The OpenAI-compatible API: GET /v1/models, POST /v1/completions,
 * /v1/chat/completions (streams as Server-Sent Events in OpenAI's chunk
 * format) and /v1/embeddings. Requests are checked and translated into the
 * llm/embed runtimes' inputs; their answers are translated back. The `model`
 * field names a deployment the caller may use. */
#include "gateway/gw_int.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define STOP_MAX 16

bool gw_is_openai_post(const char *path, enum gw_api *api)
{
    if (strcmp(path, "/v1/completions") == 0)
        *api = GW_API_COMPLETION;
    else if (strcmp(path, "/v1/chat/completions") == 0)
        *api = GW_API_CHAT;
    else if (strcmp(path, "/v1/embeddings") == 0)
        *api = GW_API_EMBED;
    else
        return false;
    return true;
}

/* ---- /v1/models ---- */

static bool serves_openai(const struct gw_deployment *d)
{
    return strcmp(d->runtime, "llm") == 0 || strcmp(d->runtime, "embed") == 0;
}

static json_t *model_object(const struct gw_deployment *d)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", d->name, "object", "model", "created",
                     (json_int_t)d->known_at, "owned_by", d->owner, "runtime", d->runtime);
}

bool gw_route_models(struct gw_worker *w, struct evhttp_request *req, const char *path)
{
    struct gateway *gw = w->gw;
    const char *id = NULL;
    if (strcmp(path, "/v1/models") != 0) {
        if (strncmp(path, "/v1/models/", 11) != 0) return false;
        id = path + 11;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET");
        gw_reply_error(req, 405, "method_not_allowed", "use GET");
        return true;
    }
    if (!gw_require_scope(req, SECURITY_SCOPE_READ)) return true;
    if (id) {
        struct gw_deployment d;
        if (!registry_name_valid(id) || !gw_deployment_lookup(gw, id, &d) || !serves_openai(&d) ||
            !access_can_use(gw->access, gw_principal(), id, d.owner)) {
            gw_reply_error(req, 404, "model_not_found", "model '%s' not found", id);
            return true;
        }
        gw_reply_jsonv(req, 200, model_object(&d));
        return true;
    }
    json_t *data = json_array();
    pthread_rwlock_rdlock(&gw->deps_lock);
    for (size_t i = 0; i < gw->n_deps; i++) {
        const struct gw_deployment *d = &gw->deps[i];
        if (serves_openai(d) && access_can_use(gw->access, gw_principal(), d->name, d->owner))
            json_array_append_new(data, model_object(d));
    }
    pthread_rwlock_unlock(&gw->deps_lock);
    gw_reply_jsonv(req, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
    return true;
}

/* ---- requests: OpenAI fields -> runtime input ---- */

struct xlate {
    json_t *in;  /* the request */
    json_t *out; /* the runtime input being built */
    char msg[256];
};

static int bad(struct xlate *x, const char *fmt, const char *field)
{
    snprintf(x->msg, sizeof(x->msg), fmt, field);
    return -1;
}

/* Copies a number field within [lo, hi] (integers only when integer). */
static int copy_number(struct xlate *x, const char *from, const char *to, double lo, double hi,
                       bool integer)
{
    json_t *v = json_object_get(x->in, from);
    if (!v || json_is_null(v)) return 0;
    if (integer ? !json_is_integer(v) : !json_is_number(v))
        return bad(x, integer ? "'%s' must be an integer" : "'%s' must be a number", from);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        snprintf(x->msg, sizeof(x->msg), "'%s' must be between %g and %g", from, lo, hi);
        return -1;
    }
    json_object_set(x->out, to, v);
    return 0;
}

static int copy_stop(struct xlate *x)
{
    json_t *v = json_object_get(x->in, "stop");
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) {
        json_object_set_new(x->out, "stop", json_pack("[O]", v));
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) > STOP_MAX)
        return bad(x, "'%s' must be a string or an array of at most 16 strings", "stop");
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) if (!json_is_string(s) || json_string_length(s) == 0) return bad(
        x, "'%s' must hold non-empty strings", "stop");
    json_object_set(x->out, "stop", v);
    return 0;
}

/* Fields whose meaning thaw cannot honour: refused rather than ignored, so
 * a client never gets an answer it did not ask for. */
static int refuse_unsupported(struct xlate *x)
{
    json_t *v;
    if ((v = json_object_get(x->in, "n")) && !json_is_null(v) &&
        !(json_is_integer(v) && json_integer_value(v) == 1))
        return bad(x, "'%s': only 1 choice per request is supported", "n");
    if ((v = json_object_get(x->in, "best_of")) && !json_is_null(v) &&
        !(json_is_integer(v) && json_integer_value(v) == 1))
        return bad(x, "'%s' is not supported", "best_of");
    if ((v = json_object_get(x->in, "echo")) && json_is_true(v))
        return bad(x, "'%s' is not supported", "echo");
    if ((v = json_object_get(x->in, "suffix")) && !json_is_null(v))
        return bad(x, "'%s' is not supported", "suffix");
    if ((v = json_object_get(x->in, "logit_bias")) && !json_is_null(v) &&
        !(json_is_object(v) && json_object_size(v) == 0))
        return bad(x, "'%s' is not supported", "logit_bias");
    if ((v = json_object_get(x->in, "tools")) && !json_is_null(v) &&
        !(json_is_array(v) && json_array_size(v) == 0))
        return bad(x, "'%s' (function calling) is not supported", "tools");
    if ((v = json_object_get(x->in, "functions")) && !json_is_null(v))
        return bad(x, "'%s' (function calling) is not supported", "functions");
    if ((v = json_object_get(x->in, "response_format")) && !json_is_null(v)) {
        json_t *t = json_object_get(v, "type");
        if (!json_is_string(t) || strcmp(json_string_value(t), "text") != 0)
            return bad(x, "'%s': only {\"type\":\"text\"} is supported", "response_format");
    }
    return 0;
}

static int copy_sampling(struct xlate *x, bool chat)
{
    if (refuse_unsupported(x) || copy_stop(x)) return -1;
    const char *max_field = "max_tokens";
    if (chat && json_object_get(x->in, "max_completion_tokens"))
        max_field = "max_completion_tokens";
    if (copy_number(x, max_field, "max_tokens", 1, 1 << 30, true) ||
        copy_number(x, "temperature", "temperature", 0, 2, false) ||
        copy_number(x, "top_p", "top_p", 0, 1, false) ||
        copy_number(x, "top_k", "top_k", 0, 1 << 20, true) ||
        copy_number(x, "min_p", "min_p", 0, 1, false) ||
        copy_number(x, "repetition_penalty", "repetition_penalty", 0.01, 10, false) ||
        copy_number(x, "frequency_penalty", "frequency_penalty", -2, 2, false) ||
        copy_number(x, "presence_penalty", "presence_penalty", -2, 2, false) ||
        copy_number(x, "seed", "seed", -9.2e18, 9.2e18, true))
        return -1;
    json_t *lp = json_object_get(x->in, "logprobs");
    if (!chat) return copy_number(x, "logprobs", "logprobs", 0, 20, true);
    if (!lp || json_is_null(lp) || json_is_false(lp)) return 0;
    if (!json_is_true(lp)) return bad(x, "'%s' must be a boolean", "logprobs");
    json_t *top = json_object_get(x->in, "top_logprobs");
    if (top && !json_is_null(top) &&
        !(json_is_integer(top) && json_integer_value(top) >= 0 && json_integer_value(top) <= 20))
        return bad(x, "'%s' must be an integer between 0 and 20", "top_logprobs");
    json_object_set_new(x->out, "logprobs",
                        json_integer(top && json_is_integer(top) ? json_integer_value(top) : 0));
    return 0;
}

/* Message content: a string, or an array of {"type":"text","text":...} parts. */
static json_t *message_text(struct xlate *x, json_t *content)
{
    if (json_is_string(content)) return json_incref(content);
    if (!json_is_array(content)) {
        bad(x, "'%s' must be a string or an array of text parts", "messages[].content");
        return NULL;
    }
    struct buf b = {0};
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 ||
            !json_is_string(text)) {
            buf_free(&b);
            bad(x, "'%s': only text parts are supported", "messages[].content");
            return NULL;
        }
        buf_append(&b, json_string_value(text), json_string_length(text));
    }
    json_t *s = json_stringn(b.data ? b.data : "", b.len);
    buf_free(&b);
    return s;
}

static int copy_messages(struct xlate *x)
{
    json_t *msgs = json_object_get(x->in, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad(x, "'%s' must be a non-empty array", "messages");
    json_t *out = json_array();
    json_object_set_new(x->out, "messages", out);
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        json_t *role = json_object_get(m, "role");
        const char *r = json_is_string(role) ? json_string_value(role) : "";
        if (strcmp(r, "developer") == 0) r = "system";
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            snprintf(x->msg, sizeof(x->msg),
                     "'messages[%zu].role' must be system, developer, user or assistant", i);
            return -1;
        }
        json_t *content = json_object_get(m, "content");
        json_t *text =
            content && !json_is_null(content) ? message_text(x, content) : json_string("");
        if (!text) return -1;
        json_array_append_new(out, json_pack("{s:s, s:o}", "role", r, "content", text));
    }
    return 0;
}

static int copy_prompt(struct xlate *x)
{
    json_t *p = json_object_get(x->in, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1) p = json_array_get(p, 0);
    if (!json_is_string(p))
        return bad(x, "'%s' must be a string (token arrays and several prompts are not supported)",
                   "prompt");
    json_object_set(x->out, "prompt", p);
    return 0;
}

static int copy_embed_input(struct xlate *x, bool *base64)
{
    json_t *in = json_object_get(x->in, "input");
    json_t *arr = json_is_string(in) ? json_pack("[O]", in) : json_incref(in);
    json_object_set_new(x->out, "input", arr);
    if (!json_is_array(arr) || json_array_size(arr) == 0 || json_array_size(arr) > 2048)
        return bad(x, "'%s' must be a string or an array of 1 to 2048 strings", "input");
    size_t i;
    json_t *s;
    json_array_foreach(arr, i, s) if (!json_is_string(s) || json_string_length(s) == 0) return bad(
        x, "'%s' must hold non-empty strings (token arrays are not supported)", "input");
    json_t *fmt = json_object_get(x->in, "encoding_format");
    const char *f = json_is_string(fmt) ? json_string_value(fmt) : "float";
    if (fmt && !json_is_null(fmt) &&
        (!json_is_string(fmt) || (strcmp(f, "float") && strcmp(f, "base64"))))
        return bad(x, "'%s' must be \"float\" or \"base64\"", "encoding_format");
    *base64 = strcmp(f, "base64") == 0;
    json_t *dims = json_object_get(x->in, "dimensions");
    if (dims && !json_is_null(dims)) return bad(x, "'%s' is not supported", "dimensions");
    return 0;
}

static int translate(struct xlate *x, enum gw_api api, bool *base64)
{
    switch (api) {
    case GW_API_CHAT:
        json_object_set_new(x->out, "op", json_string("chat"));
        return copy_messages(x) || copy_sampling(x, true) ? -1 : 0;
    case GW_API_COMPLETION:
        json_object_set_new(x->out, "op", json_string("complete"));
        return copy_prompt(x) || copy_sampling(x, false) ? -1 : 0;
    case GW_API_EMBED:
        json_object_set_new(x->out, "op", json_string("embed"));
        return copy_embed_input(x, base64);
    default:
        return bad(x, "%s", "unknown route");
    }
}

static const char *route_runtime(enum gw_api api)
{
    return api == GW_API_EMBED ? "embed" : "llm";
}

bool gw_handle_openai(struct gw_worker *w, struct evhttp_request *req, enum gw_api api,
                      const char *rid, const struct gw_auth *auth)
{
    struct gateway *gw = w->gw;
    uint64_t t0 = time_now_ns();
    char path[128], msg[320];
    str_copy(path, evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req)), sizeof(path));
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
        gw_reject(w, req, path, NULL, rid, t0, 405, "method_not_allowed", "use POST");
        return false;
    }
    if (!security_scopes_allow(auth->who.scopes, SECURITY_SCOPE_INVOKE)) {
        gw_reject(w, req, path, NULL, rid, t0, 403, "forbidden",
                  "this key lacks the 'invoke' scope");
        return false;
    }
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(body);
    json_error_t jerr;
    json_t *in = json_loadb((const char *)evbuffer_pullup(body, -1), len, 0, &jerr);
    if (!json_is_object(in)) {
        snprintf(msg, sizeof(msg), "request body must be a JSON object (line %d, column %d): %s",
                 jerr.line, jerr.column, in ? "not an object" : jerr.text);
        json_decref(in);
        gw_reject(w, req, path, NULL, rid, t0, 400, "invalid_json", msg);
        return false;
    }
    const char *model = json_string_value(json_object_get(in, "model"));
    struct gw_deployment dep;
    if (!model) {
        json_decref(in);
        gw_reject(w, req, path, NULL, rid, t0, 400, "invalid_request",
                  "'model' is required: the name of a deployment");
        return false;
    }
    if (!registry_name_valid(model) || !gw_deployment_lookup(gw, model, &dep) ||
        !access_can_use(gw->access, &auth->who, model, dep.owner)) {
        snprintf(msg, sizeof(msg), "model '%.64s' not found", model);
        json_decref(in);
        gw_reject(w, req, path, NULL, rid, t0, 404, "model_not_found", msg);
        return false;
    }
    /* The version first: the body limit is the one of the version that
     * serves the request. */
    struct gw_call_opts opts = {.api = api};
    if (!gw_pick_version(w, req, path, dep.name, rid, t0, &opts.route)) {
        json_decref(in);
        return false;
    }
    int status = 0;
    const char *code = NULL;
    int64_t limit = gw_max_body(gw, dep.name, opts.route.version);
    if (strcmp(dep.runtime, route_runtime(api)) != 0) {
        snprintf(msg, sizeof(msg), "model '%s' is a %s deployment; this route needs runtime %s",
                 model, dep.runtime, route_runtime(api));
        status = 400, code = "invalid_model";
    } else if ((int64_t)len > limit) {
        snprintf(msg, sizeof(msg),
                 "request body of %zu bytes exceeds the deployment's limit of %lld", len,
                 (long long)limit);
        status = 413, code = "body_too_large";
        gw_version_header(req, opts.route.version);
    }
    struct xlate x = {.in = in, .out = json_object()};
    bool base64 = false;
    if (!status && translate(&x, api, &base64)) {
        snprintf(msg, sizeof(msg), "%s", x.msg);
        status = 400, code = "invalid_request";
    }
    json_t *stream_v = json_object_get(in, "stream");
    bool stream = api != GW_API_EMBED && json_is_true(stream_v);
    bool include_usage =
        json_is_true(json_object_get(json_object_get(in, "stream_options"), "include_usage"));
    char *input = status ? NULL : json_dumps(x.out, JSON_COMPACT);
    json_decref(x.out);
    json_decref(in);
    if (!status && !input)
        status = 503, code = "overloaded", snprintf(msg, sizeof(msg), "out of memory");
    if (status) { /* model pointed into `in`, freed above: dep.name is a copy */
        gw_reject(w, req, path, dep.name, rid, t0, status, code, msg);
        return false;
    }
    opts.stream = stream;
    opts.include_usage = include_usage;
    opts.base64 = base64;
    return gw_call_submit(w, req, path, &dep, rid, auth, t0, input, strlen(input), &opts);
}

/* ---- answers: runtime output -> OpenAI objects ---- */

static json_t *usage_object(const json_t *output)
{
    json_t *u = json_object_get(output, "usage");
    json_int_t p = json_integer_value(json_object_get(u, "prompt_tokens"));
    json_int_t c = json_integer_value(json_object_get(u, "completion_tokens"));
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", p, "completion_tokens", c, "total_tokens",
                     p + c);
}

void gw_meter_tokens(struct gw_call *c, const json_t *output)
{
    json_t *u = json_object_get(output, "usage");
    json_int_t p = json_integer_value(json_object_get(u, "prompt_tokens"));
    json_int_t n = json_integer_value(json_object_get(u, "completion_tokens"));
    if (p < 0 || n < 0 || p + n == 0) return;
    struct gateway *gw = c->worker->gw;
    c->prompt_tokens = (uint64_t)p;
    c->completion_tokens = (uint64_t)n;
    access_charge_tokens(gw->access, &c->auth.who, (uint64_t)(p + n));
    const char *kinds[2] = {"prompt", "completion"};
    json_int_t counts[2] = {p, n};
    for (int i = 0; i < 2; i++) {
        if (!counts[i]) continue;
        struct metric_series *s = obs_metric_series(
            gw->f_tokens, (const char *[]){c->inv.deployment, c->auth.who.tenant, kinds[i]});
        if (s) obs_metric_add(s, (double)counts[i]);
    }
}

/* The runtime's logprobs ([{token, logprob, top:[{token, logprob}]}]) in
 * the shape of the route: chat's {"content":[...]} or the completions
 * API's parallel arrays. */
static json_t *logprobs_object(enum gw_api api, json_t *lps)
{
    if (!json_is_array(lps)) return json_null();
    size_t i;
    json_t *e;
    if (api == GW_API_CHAT) {
        json_t *content = json_array();
        json_array_foreach(lps, i, e)
        {
            json_t *top = json_array(), *t;
            size_t j;
            json_array_foreach(json_object_get(e, "top"), j, t) json_array_append_new(
                top, json_pack("{s:O, s:O}", "token", json_object_get(t, "token"), "logprob",
                               json_object_get(t, "logprob")));
            json_array_append_new(
                content, json_pack("{s:O, s:O, s:o}", "token", json_object_get(e, "token"),
                                   "logprob", json_object_get(e, "logprob"), "top_logprobs", top));
        }
        return json_pack("{s:o}", "content", content);
    }
    json_t *tokens = json_array(), *lp = json_array(), *tops = json_array();
    json_array_foreach(lps, i, e)
    {
        json_array_append(tokens, json_object_get(e, "token"));
        json_array_append(lp, json_object_get(e, "logprob"));
        json_t *top = json_object(), *t;
        size_t j;
        json_array_foreach(json_object_get(e, "top"), j, t)
        {
            const char *tok = json_string_value(json_object_get(t, "token"));
            if (tok) json_object_set(top, tok, json_object_get(t, "logprob"));
        }
        json_array_append_new(tops, top);
    }
    return json_pack("{s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lp, "top_logprobs",
                     tops);
}

static json_t *envelope(struct gw_call *c, const char *object)
{
    const char *prefix = c->api == GW_API_CHAT ? "chatcmpl-" : "cmpl-";
    char id[80];
    snprintf(id, sizeof(id), "%s%s", prefix, c->inv.request_id);
    return json_pack("{s:s, s:s, s:I, s:s}", "id", id, "object", object, "created",
                     (json_int_t)c->created, "model", c->inv.deployment);
}

static json_t *choice(struct gw_call *c, const char *text, json_t *finish, json_t *logprobs,
                      bool delta)
{
    json_t *ch = json_pack("{s:i}", "index", 0);
    if (c->api == GW_API_CHAT) {
        json_t *m = text ? json_pack("{s:s}", "content", text) : json_object();
        if (!delta) json_object_set_new(m, "role", json_string("assistant"));
        json_object_set_new(ch, delta ? "delta" : "message", m);
    } else {
        json_object_set_new(ch, "text", json_string(text ? text : ""));
    }
    json_object_set_new(ch, "logprobs", logprobs ? logprobs : json_null());
    json_object_set_new(ch, "finish_reason", finish ? finish : json_null());
    return ch;
}

static void send_event(struct gw_call *c, json_t *ev)
{
    char *s = json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(10));
    json_decref(ev);
    if (s) gw_sse_send(c, NULL, s);
    free(s);
}

static const char *chunk_object(const struct gw_call *c)
{
    return c->api == GW_API_CHAT ? "chat.completion.chunk" : "text_completion";
}

static void stream_begin(struct gw_call *c)
{
    if (c->stream_started) return;
    gw_sse_start(c);
    if (c->api != GW_API_CHAT) return;
    /* OpenAI's first chat chunk announces the role. */
    json_t *ev = envelope(c, chunk_object(c));
    json_t *ch = choice(c, "", NULL, NULL, true);
    json_object_set_new(json_object_get(ch, "delta"), "role", json_string("assistant"));
    json_object_set_new(ev, "choices", json_pack("[o]", ch));
    send_event(c, ev);
}

static void stream_piece(struct gw_call *c, const json_t *chunk)
{
    stream_begin(c);
    const char *text = json_string_value(json_object_get(chunk, "text"));
    json_t *lps = json_object_get(chunk, "logprobs");
    json_t *ev = envelope(c, chunk_object(c));
    json_object_set_new(ev, "choices",
                        json_pack("[o]", choice(c, text ? text : "", NULL,
                                                lps ? logprobs_object(c->api, lps) : NULL, true)));
    send_event(c, ev);
}

static void stream_end(struct gw_call *c, const json_t *output)
{
    stream_begin(c);
    json_t *ev = envelope(c, chunk_object(c));
    json_object_set_new(
        ev, "choices",
        json_pack("[o]",
                  choice(c, c->api == GW_API_CHAT ? NULL : "",
                         json_incref(json_object_get(output, "finish_reason")), NULL, true)));
    send_event(c, ev);
    if (c->include_usage) {
        ev = envelope(c, chunk_object(c));
        json_object_set_new(ev, "choices", json_array());
        json_object_set_new(ev, "usage", usage_object(output));
        send_event(c, ev);
    }
    gw_sse_send(c, NULL, "[DONE]");
    evhttp_send_reply_end(c->req);
}

static json_t *embedding_value(const json_t *vec, bool base64)
{
    if (!base64) return json_incref((json_t *)vec);
    size_t n = json_array_size(vec);
    float *f = calloc(n ? n : 1, sizeof(float));
    if (!f) return json_null();
    for (size_t i = 0; i < n; i++)
        f[i] = (float)json_number_value(json_array_get(vec, i));
    /* Little-endian float32, as OpenAI's base64 encoding is. */
    size_t b64n = sodium_base64_encoded_len(n * sizeof(float), sodium_base64_VARIANT_ORIGINAL);
    char *b64 = malloc(b64n);
    json_t *s =
        b64 ? json_string(sodium_bin2base64(b64, b64n, (const unsigned char *)f, n * sizeof(float),
                                            sodium_base64_VARIANT_ORIGINAL))
            : json_null();
    free(b64);
    free(f);
    return s;
}

static json_t *full_answer(struct gw_call *c, const json_t *output)
{
    if (c->api == GW_API_EMBED) {
        json_t *data = json_array(), *vec;
        size_t i;
        json_array_foreach(json_object_get(output, "data"), i, vec) json_array_append_new(
            data, json_pack("{s:s, s:I, s:o}", "object", "embedding", "index", (json_int_t)i,
                            "embedding", embedding_value(vec, c->base64)));
        json_int_t p =
            json_integer_value(json_object_get(json_object_get(output, "usage"), "prompt_tokens"));
        return json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model",
                         c->inv.deployment, "usage", "prompt_tokens", p, "total_tokens", p);
    }
    json_t *ev = envelope(c, c->api == GW_API_CHAT ? "chat.completion" : "text_completion");
    json_t *lps = json_object_get(output, "logprobs");
    json_object_set_new(
        ev, "choices",
        json_pack("[o]", choice(c, json_string_value(json_object_get(output, "text")),
                                json_incref(json_object_get(output, "finish_reason")),
                                lps ? logprobs_object(c->api, lps) : NULL, false)));
    json_object_set_new(ev, "usage", usage_object(output));
    return ev;
}

static void fail(struct gw_call *c, const struct gw_msg *m)
{
    if (c->stream_started) {
        /* Mid-stream the status line is gone: the error travels as an event. */
        json_t *e = json_pack("{s:{s:s, s:s}}", "error", "code", m->code, "message",
                              m->payload ? m->payload : "");
        send_event(c, e);
        evhttp_send_reply_end(c->req);
        gw_call_finish(c, m->status);
        return;
    }
    gw_call_headers(c);
    gw_call_fail(c, m->status, m->code, m->payload);
}

void gw_openai_deliver(struct gw_msg *m)
{
    struct gw_call *c = m->call;
    if (m->kind == INV_FAIL) {
        fail(c, m);
        return;
    }
    json_t *v = json_loads(m->payload ? m->payload : "", 0, NULL);
    if (!json_is_object(v)) {
        json_decref(v);
        if (m->kind == INV_CHUNK) return; /* a malformed piece: the final answer still comes */
        struct gw_msg f = {.call = c,
                           .kind = INV_FAIL,
                           .status = 502,
                           .code = "bad_output",
                           .payload = "the model's runtime answered something unreadable"};
        fail(c, &f);
        return;
    }
    if (m->kind == INV_CHUNK) {
        stream_piece(c, v);
    } else if (c->inv.stream) {
        stream_end(c, v);
        gw_call_finish(c, 200);
    } else {
        gw_call_headers(c);
        gw_reply_jsonv(c->req, 200, full_answer(c, v));
        gw_call_finish(c, 200);
    }
    json_decref(v);
}
