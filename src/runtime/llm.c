/* An llm or embed instance: the JSON-line protocol of runtime.h over the
 * engine. llm requests become sequences of one engine context decoded
 * together (continuous batching: new requests join between decode steps,
 * finished ones leave); embed requests are answered one at a time. */
#include "runtime/runtime_int.h"

#include "security/security.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RT_MAX_LINE         (64u << 20) /* longer request lines are refused (the node caps bodies) */
#define RT_MAX_STOPS        16
#define RT_MAX_STOP_LEN     256
#define RT_MAX_EMBED_INPUTS 2048

/* One request. Queued until a sequence is free, then prefilled in chunks
 * and decoded token by token. */
struct req {
    struct req *next;
    uint64_t id;
    bool stream;
    int seq; /* -1 while queued */
    int32_t *prompt;
    size_t n_prompt, fed;
    int32_t next_tok; /* sampled, to be fed at the next step */
    bool decoding;    /* prompt fed, sampling */
    int32_t n_gen, max_tokens;
    int n_logprobs; /* -1: not asked */
    struct engine_sampler *smp;
    struct engine_detok *dt;
    struct sampler_stop *stop;
    struct buf text;    /* everything shown so far */
    struct buf chunk;   /* shown since the last streamed chunk */
    struct buf lp_all;  /* logprob entries, comma-separated (not streamed) */
    struct buf lp_next; /* logprob entries for the next streamed chunk */
};

struct srv {
    struct rt_model *m;
    struct engine_ctx *c;
    int32_t n_ctx, n_vocab, n_batch;
    int n_seq;
    struct req **seqs; /* n_seq slots */
    struct req *queue_head, *queue_tail;
    struct buf in;   /* bytes read from stdin, not yet a whole line */
    bool discarding; /* dropping the rest of an over-long line */
    bool eof;
    struct buf out; /* scratch for lines written */
    struct engine_batch_entry *batch;
    int *batch_owner; /* per logits entry: the sequence */
    float *embedding;
};

/* ---- output ---- */

static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(1, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(0); /* the node is gone: nothing left to answer */
        p += w;
        n -= (size_t)w;
    }
}

static void send_line(struct buf *b)
{
    buf_append(b, "\n", 1);
    write_all(b->data, b->len);
    buf_reset(b);
}

static void send_error(struct srv *s, uint64_t id, int status, const char *code, const char *msg)
{
    struct buf *b = &s->out;
    buf_reset(b);
    buf_printf(b, "{\"id\":%llu,\"status\":%d,\"code\":\"%s\",\"error\":", (unsigned long long)id,
               status, code);
    rt_json_utf8(b, msg, strlen(msg));
    buf_append(b, "}", 1);
    send_line(b);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. NUL
 * counts as invalid: the node's JSON parser refuses "\u0000". */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] == 0) return 0;
    if (s[0] < 0x80) return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || len > n || s[0] > 0xf4) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (len == 3 && s[0] == 0xe0 && s[1] < 0xa0) return 0;  /* overlong */
    if (len == 3 && s[0] == 0xed && s[1] >= 0xa0) return 0; /* surrogate */
    if (len == 4 && s[0] == 0xf0 && s[1] < 0x90) return 0;
    if (len == 4 && s[0] == 0xf4 && s[1] >= 0x90) return 0;
    return len;
}

int rt_json_utf8(struct buf *b, const char *s, size_t len)
{
    struct buf clean = {0};
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, start = 0;
    bool bad = false;
    while (i < len) {
        size_t l = utf8_len(u + i, len - i);
        if (l) {
            i += l;
            continue;
        }
        bad = true;
        buf_append(&clean, s + start, i - start);
        buf_append(&clean, "\xef\xbf\xbd", 3);
        start = ++i;
    }
    int rc;
    if (!bad) {
        rc = buf_append_json_string(b, s, len);
    } else {
        buf_append(&clean, s + start, len - start);
        rc = buf_append_json_string(b, clean.data ? clean.data : "", clean.len);
    }
    buf_free(&clean);
    return rc;
}

/* ---- requests ---- */

static void req_free(struct req *r)
{
    if (!r) return;
    free(r->prompt);
    sampler_free(r->smp);
    tokenizer_detok_free(r->dt);
    sampler_stop_free(r->stop);
    buf_free(&r->text);
    buf_free(&r->chunk);
    buf_free(&r->lp_all);
    buf_free(&r->lp_next);
    free(r);
}

/* A request's fault: status and code for the error line, message in why. */
struct bad {
    int status;
    const char *code;
    char why[600];
};

static int bad_req(struct bad *b, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad_req(struct bad *b, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->why, sizeof(b->why), fmt, ap);
    va_end(ap);
    b->status = status;
    b->code = code;
    return -1;
}

/* A number field of the input: absent or null keeps *out. */
static int num_field(const json_t *in, const char *key, double lo, double hi, double *out,
                     struct bad *b)
{
    json_t *v = json_object_get(in, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi))
        return bad_req(b, 400, "invalid_request", "\"%s\" must be a number from %g to %g", key, lo,
                       hi);
    *out = json_number_value(v);
    return 0;
}

static int int_field(const json_t *in, const char *key, long long lo, long long hi, long long *out,
                     struct bad *b)
{
    json_t *v = json_object_get(in, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return bad_req(b, 400, "invalid_request", "\"%s\" must be an integer from %lld to %lld",
                       key, lo, hi);
    *out = json_integer_value(v);
    return 0;
}

/* The sampler's settings: the manifest's defaults under the request's own. */
static int sampling_of(const struct deploy_model *dm, const json_t *in,
                       struct engine_sampling_params *sp, long long *max_tokens, struct bad *b)
{
    const struct deploy_sampling *d = &dm->sampling;
    double temp = d->temperature, top_p = d->top_p, min_p = d->min_p;
    double rep = d->repetition_penalty, freq = d->frequency_penalty, pres = d->presence_penalty;
    long long top_k = d->top_k, seed = d->seed, lp = -1;
    *max_tokens = MIN(d->max_tokens, dm->max_output_tokens);
    if (num_field(in, "temperature", 0, 100, &temp, b) || num_field(in, "top_p", 0, 1, &top_p, b) ||
        num_field(in, "min_p", 0, 1, &min_p, b) ||
        num_field(in, "repetition_penalty", 1e-3, 100, &rep, b) ||
        num_field(in, "frequency_penalty", -2, 2, &freq, b) ||
        num_field(in, "presence_penalty", -2, 2, &pres, b) ||
        int_field(in, "top_k", 0, 1 << 30, &top_k, b) ||
        int_field(in, "seed", 0, INT64_MAX, &seed, b) ||
        int_field(in, "logprobs", 0, SAMPLER_MAX_LOGPROBS, &lp, b) ||
        int_field(in, "max_tokens", 1, 1 << 30, max_tokens, b))
        return -1;
    if (top_p <= 0) return bad_req(b, 400, "invalid_request", "\"top_p\" must be above 0");
    json_t *mt = json_object_get(in, "max_tokens");
    if (mt && !json_is_null(mt) && *max_tokens > dm->max_output_tokens)
        return bad_req(b, 400, "max_tokens_too_large",
                       "\"max_tokens\" is %lld but this deployment allows at most %d", *max_tokens,
                       dm->max_output_tokens);
    sampler_params_default(sp);
    sp->temperature = (float)temp;
    sp->top_p = (float)top_p;
    sp->top_k = (int32_t)top_k;
    sp->min_p = (float)min_p;
    sp->repeat_penalty = (float)rep;
    sp->frequency_penalty = (float)freq;
    sp->presence_penalty = (float)pres;
    sp->seed = seed >= 0 ? (uint64_t)seed : SAMPLER_SEED_RANDOM;
    sp->n_logprobs = lp > 0 ? (int32_t)lp : 0;
    return (int)lp; /* -1: no logprobs */
}

static int stops_of(const json_t *in, const char **stops, size_t *n, struct bad *b)
{
    json_t *v = json_object_get(in, "stop");
    *n = 0;
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) {
        stops[(*n)++] = json_string_value(v);
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) > RT_MAX_STOPS)
        return bad_req(b, 400, "invalid_request",
                       "\"stop\" must be a string or a list of at most %d strings", RT_MAX_STOPS);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_string(e) || json_string_length(e) > RT_MAX_STOP_LEN)
            return bad_req(b, 400, "invalid_request",
                           "\"stop\" entries must be strings of at most %d bytes", RT_MAX_STOP_LEN);
        stops[(*n)++] = json_string_value(e);
    }
    return 0;
}

/* Masks PII when the manifest asks; text stays valid as given otherwise.
 * Returns text or the redacted copy in *owned. */
static const char *maybe_redact(const struct rt_model *m, const char *text, size_t *len,
                                char **owned)
{
    *owned = NULL;
    if (!m->spec->model.redact) return text;
    struct buf out = {0};
    if (security_redact(text, *len, SECURITY_REDACT_ALL, &out, NULL) < 0) {
        buf_free(&out);
        return text;
    }
    *len = out.len;
    *owned = buf_steal(&out);
    return *owned ? *owned : "";
}

/* The prompt's text for op complete or chat, and the spans of it that are
 * the caller's own text: those are encoded as plain characters, so a prompt
 * or message cannot spell the template's control tokens (a "<|im_start|>"
 * in a message must not open a turn of its own). */
static int prompt_of(const struct rt_model *m, const char *op, const json_t *in, struct buf *text,
                     struct text_span **spans, size_t *n_spans, struct bad *b)
{
    struct thaw_err err = {0};
    if (strcmp(op, "complete") == 0) {
        json_t *p = json_object_get(in, "prompt");
        if (!json_is_string(p))
            return bad_req(b, 400, "invalid_request", "op complete needs \"prompt\", a string");
        size_t len = json_string_length(p);
        char *owned;
        const char *s = maybe_redact(m, json_string_value(p), &len, &owned);
        int rc = buf_append(text, s, len);
        free(owned);
        *spans = rc ? NULL : malloc(sizeof(**spans));
        if (!*spans) return bad_req(b, 500, "internal_error", "out of memory");
        **spans = (struct text_span){0, len};
        *n_spans = 1;
        return 0;
    }
    json_t *msgs = json_object_get(in, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0 || json_array_size(msgs) > 10000)
        return bad_req(b, 400, "invalid_request",
                       "op chat needs \"messages\", a non-empty list of {\"role\",\"content\"}");
    if (m->family == CHAT_NONE) return bad_req(b, 400, "invalid_request", "%s", m->family_why);
    size_t n = json_array_size(msgs);
    struct chat_message *cm = calloc(n, sizeof(*cm));
    char **owned = calloc(n, sizeof(char *));
    int rc = cm && owned ? 0 : bad_req(b, 500, "internal_error", "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        json_t *e = json_array_get(msgs, i);
        json_t *role = json_object_get(e, "role"), *content = json_object_get(e, "content");
        if (!json_is_string(role) || !json_is_string(content)) {
            rc = bad_req(b, 400, "invalid_request",
                         "messages[%zu] must have \"role\" and \"content\" strings", i);
            break;
        }
        size_t len = json_string_length(content);
        const char *s = maybe_redact(m, json_string_value(content), &len, &owned[i]);
        cm[i] = (struct chat_message){json_string_value(role), s};
    }
    if (!rc && chat_format_spans(m->family, cm, n, true, text, spans, n_spans, &err))
        rc = bad_req(b, 400, "invalid_request", "%s", err.msg);
    for (size_t i = 0; owned && i < n; i++)
        free(owned[i]);
    free(owned);
    free(cm);
    return rc;
}

/* Builds a request from an llm input, or says what is wrong with it. */
static struct req *req_new(struct srv *s, uint64_t id, bool stream, const json_t *in, struct bad *b)
{
    const struct rt_model *m = s->m;
    const char *op = json_string_value(json_object_get(in, "op"));
    if (!json_is_object(in) || !op) {
        bad_req(b, 400, "invalid_request",
                "the input must be an object with \"op\": \"complete\" or \"chat\"");
        return NULL;
    }
    if (strcmp(op, "complete") != 0 && strcmp(op, "chat") != 0) {
        bad_req(b, 400, "invalid_request",
                "unknown op '%.64s': an llm deployment serves \"complete\" and \"chat\"", op);
        return NULL;
    }
    struct engine_sampling_params sp;
    long long max_tokens;
    const char *stops[RT_MAX_STOPS];
    size_t n_stops;
    int lp = sampling_of(&m->spec->model, in, &sp, &max_tokens, b);
    if (lp < -1 || (lp == -1 && b->status) || stops_of(in, stops, &n_stops, b)) return NULL;
    struct buf text = {0};
    struct text_span *spans = NULL;
    size_t n_spans = 0;
    if (prompt_of(m, op, in, &text, &spans, &n_spans, b)) {
        buf_free(&text);
        free(spans);
        return NULL;
    }
    struct req *r = calloc(1, sizeof(*r));
    struct thaw_err err = {0};
    int rc = r ? 0 : THAW_ENOMEM;
    if (!rc)
        rc = tokenizer_encode_spans(m->tok, text.data ? text.data : "", text.len, spans, n_spans,
                                    tokenizer_wants_bos(m->tok), &r->prompt, &r->n_prompt, &err);
    buf_free(&text);
    free(spans);
    if (!rc) rc = sampler_new(&sp, &r->smp, &err);
    if (!rc) rc = tokenizer_detok_new(m->tok, 0, &r->dt);
    if (!rc) rc = sampler_stop_new(stops, n_stops, &r->stop);
    if (rc) {
        bad_req(b, rc == THAW_EINVAL ? 400 : 500,
                rc == THAW_EINVAL ? "invalid_request" : "internal_error", "%s",
                err.msg[0] ? err.msg : thaw_strerror(rc));
        req_free(r);
        return NULL;
    }
    if (r->n_prompt == 0) {
        bad_req(b, 400, "invalid_request", "the prompt is empty");
    } else if ((int64_t)r->n_prompt >= s->n_ctx) {
        bad_req(b, 400, "context_length_exceeded",
                "the prompt is %zu tokens; this deployment's context holds %d, with room for at "
                "least one generated token",
                r->n_prompt, (int)s->n_ctx);
    } else {
        for (size_t i = 0; i < r->n_prompt; i++)
            sampler_accept(r->smp, r->prompt[i]);
        r->id = id;
        r->stream = stream;
        r->seq = -1;
        r->max_tokens = (int32_t)max_tokens;
        r->n_logprobs = lp;
        return r;
    }
    req_free(r);
    return NULL;
}

/* ---- embeddings ---- */

static void serve_embed(struct srv *s, uint64_t id, const json_t *in)
{
    const struct rt_model *m = s->m;
    const char *op = json_string_value(json_object_get(in, "op"));
    if (!op || strcmp(op, "embed") != 0) {
        send_error(s, id, 400, "invalid_request",
                   "an embed deployment serves {\"op\":\"embed\",\"input\":[\"text\",...]}");
        return;
    }
    json_t *inputs = json_object_get(in, "input");
    json_t *one = NULL;
    if (json_is_string(inputs)) inputs = one = json_pack("[O]", inputs);
    if (!json_is_array(inputs) || json_array_size(inputs) == 0 ||
        json_array_size(inputs) > RT_MAX_EMBED_INPUTS) {
        json_decref(one);
        send_error(s, id, 400, "invalid_request",
                   "\"input\" must be a string or a list of 1 to 2048 strings");
        return;
    }
    int32_t d = engine_model_info(m->model)->n_embd;
    struct buf *o = &s->out;
    buf_reset(o);
    buf_printf(o, "{\"id\":%llu,\"output\":{\"data\":[", (unsigned long long)id);
    size_t i, total = 0;
    json_t *e;
    json_array_foreach(inputs, i, e)
    {
        struct thaw_err err = {0};
        if (!json_is_string(e)) {
            json_decref(one);
            send_error(s, id, 400, "invalid_request", "\"input\" entries must be strings");
            return;
        }
        size_t len = json_string_length(e);
        char *owned;
        const char *text = maybe_redact(m, json_string_value(e), &len, &owned);
        int32_t *ids = NULL;
        size_t n = 0;
        int rc =
            tokenizer_encode(m->tok, text, len, tokenizer_wants_bos(m->tok), false, &ids, &n, &err);
        free(owned);
        char why[600] = "";
        int status = 500;
        const char *code = "model_error";
        if (!rc && n == 0) {
            snprintf(why, sizeof(why), "input[%zu] is empty", i);
            status = 400;
            code = "invalid_request";
        } else if (!rc && (int64_t)n > s->n_ctx) {
            snprintf(why, sizeof(why),
                     "input[%zu] is %zu tokens; this deployment's context holds %d", i, n,
                     (int)s->n_ctx);
            status = 400;
            code = "context_length_exceeded";
        } else if (!rc && engine_embed(s->c, 0, ids, (int32_t)n, s->embedding, &err)) {
            snprintf(why, sizeof(why), "%s", err.msg);
        } else if (rc) {
            snprintf(why, sizeof(why), "%s", err.msg);
        }
        free(ids);
        if (why[0]) {
            json_decref(one);
            send_error(s, id, status, code, why);
            return;
        }
        total += n;
        buf_append_str(o, i ? ",[" : "[");
        for (int32_t j = 0; j < d; j++)
            buf_printf(o, j ? ",%.8g" : "%.8g", (double)s->embedding[j]);
        buf_append(o, "]", 1);
    }
    json_decref(one);
    buf_printf(o, "],\"usage\":{\"prompt_tokens\":%zu}}}", total);
    send_line(o);
}

/* ---- input ---- */

static void enqueue(struct srv *s, struct req *r)
{
    if (s->queue_tail)
        s->queue_tail->next = r;
    else
        s->queue_head = r;
    s->queue_tail = r;
}

/* The node gave up on a request (its timeout, or its client went away):
 * stop it and answer at once, which frees its sequence. A request still
 * queued gets a 499 error; a running one its final answer as far as it got
 * (finish_reason "cancelled", with usage: the node meters the tokens spent
 * on it even though nobody reads them). An id already answered (or an embed
 * request, answered synchronously) is ignored. */
static void finish(struct srv *s, struct req *r, const char *reason, bool stopped);

static void cancel(struct srv *s, uint64_t id)
{
    for (struct req **pp = &s->queue_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
        if ((*pp)->id != id) continue;
        struct req *r = *pp;
        *pp = r->next;
        if (s->queue_tail == r) s->queue_tail = prev;
        req_free(r);
        send_error(s, id, 499, "cancelled", "cancelled by the node before it started");
        return;
    }
    for (int i = 0; i < s->n_seq; i++) {
        struct req *r = s->seqs[i];
        if (!r || r->id != id) continue;
        fprintf(stderr, "thaw runtime: request %llu cancelled after %d generated tokens\n",
                (unsigned long long)id, (int)r->n_gen);
        finish(s, r, "cancelled", true);
        return;
    }
}

static void handle_line(struct srv *s, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *o = json_loadb(line, len, 0, &jerr);
    json_t *idv = json_object_get(o, "id");
    if (!json_is_object(o) || !json_is_integer(idv) || json_integer_value(idv) < 0) {
        /* Without an id there is no one to answer: the node never sends this. */
        fprintf(stderr, "thaw runtime: ignored a request line that is not {\"id\":N,...}\n");
        json_decref(o);
        return;
    }
    uint64_t id = (uint64_t)json_integer_value(idv);
    if (json_is_true(json_object_get(o, "cancel"))) {
        cancel(s, id);
        json_decref(o);
        return;
    }
    json_t *in = json_object_get(o, "input");
    bool stream = json_is_true(json_object_get(o, "stream"));
    if (s->m->embed) {
        serve_embed(s, id, in);
    } else {
        struct bad b = {0};
        struct req *r = req_new(s, id, stream, in, &b);
        if (r)
            enqueue(s, r);
        else
            send_error(s, id, b.status ? b.status : 400, b.code ? b.code : "invalid_request",
                       b.why);
    }
    json_decref(o);
}

/* Reads what stdin has (waiting up to timeout_ms) and handles whole lines. */
static void read_input(struct srv *s, int timeout_ms)
{
    struct pollfd pfd = {0, POLLIN, 0};
    int n = poll(&pfd, 1, timeout_ms);
    if (n <= 0) return;
    char chunk[65536];
    ssize_t got = read(0, chunk, sizeof(chunk));
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (got <= 0) {
        s->eof = true;
        return;
    }
    buf_append(&s->in, chunk, (size_t)got);
    for (;;) {
        char *nl = s->in.len ? memchr(s->in.data, '\n', s->in.len) : NULL;
        if (!nl) break;
        size_t len = (size_t)(nl - s->in.data);
        if (!s->discarding) handle_line(s, s->in.data, len);
        s->discarding = false;
        buf_consume(&s->in, len + 1);
    }
    if (s->in.len > RT_MAX_LINE && !s->discarding) {
        /* The node writes the id first: answer it rather than leave it waiting. */
        unsigned long long id;
        if (sscanf(s->in.data, "{\"id\":%llu", &id) == 1)
            send_error(s, id, 413, "input_too_large", "the request line is too long");
        s->discarding = true;
    }
    if (s->discarding) buf_reset(&s->in);
}

/* ---- generation ---- */

static void emit_chunk(struct srv *s, struct req *r)
{
    if (!r->chunk.len && !r->lp_next.len) return;
    struct buf *o = &s->out;
    buf_reset(o);
    buf_printf(o, "{\"id\":%llu,\"chunk\":{\"text\":", (unsigned long long)r->id);
    rt_json_utf8(o, r->chunk.data ? r->chunk.data : "", r->chunk.len);
    if (r->lp_next.len) {
        buf_append_str(o, ",\"logprobs\":[");
        buf_append(o, r->lp_next.data, r->lp_next.len);
        buf_append(o, "]", 1);
    }
    buf_append_str(o, "}}");
    send_line(o);
    buf_reset(&r->chunk);
    buf_reset(&r->lp_next);
}

/* Shows text: into the whole text, and the next chunk when streaming. */
static void show(struct req *r, const char *p, size_t n)
{
    buf_append(&r->text, p, n);
    if (r->stream) buf_append(&r->chunk, p, n);
}

static void finish(struct srv *s, struct req *r, const char *reason, bool stopped)
{
    struct buf tail = {0}, shown = {0};
    tokenizer_detok_flush(r->dt, &tail);
    if (!stopped && tail.len && sampler_stop_push(r->stop, tail.data, tail.len, &shown) == 1)
        reason = "stop";
    else if (!stopped)
        sampler_stop_flush(r->stop, &shown);
    show(r, shown.data ? shown.data : "", shown.len);
    buf_free(&tail);
    buf_free(&shown);
    if (r->stream) emit_chunk(s, r);
    struct buf *o = &s->out;
    buf_reset(o);
    buf_printf(o, "{\"id\":%llu,\"output\":{\"text\":", (unsigned long long)r->id);
    rt_json_utf8(o, r->text.data ? r->text.data : "", r->text.len);
    buf_printf(o,
               ",\"finish_reason\":\"%s\",\"usage\":{\"prompt_tokens\":%zu,"
               "\"completion_tokens\":%d}",
               reason, r->n_prompt, (int)r->n_gen);
    if (r->n_logprobs >= 0 && !r->stream) {
        buf_append_str(o, ",\"logprobs\":[");
        buf_append(o, r->lp_all.data ? r->lp_all.data : "", r->lp_all.len);
        buf_append(o, "]", 1);
    }
    buf_append_str(o, "}}");
    send_line(o);
    engine_seq_clear(s->c, r->seq);
    s->seqs[r->seq] = NULL;
    req_free(r);
}

static void fail_seq(struct srv *s, struct req *r, const char *why)
{
    send_error(s, r->id, 500, "model_error", why);
    engine_seq_clear(s->c, r->seq);
    s->seqs[r->seq] = NULL;
    req_free(r);
}

static void append_piece(struct srv *s, struct buf *b, int32_t tok)
{
    struct buf piece = {0};
    tokenizer_token_to_piece(s->m->tok, tok, 0, &piece, NULL);
    rt_json_utf8(b, piece.data ? piece.data : "", piece.len);
    buf_free(&piece);
}

static void record_logprobs(struct srv *s, struct req *r, int32_t tok,
                            const struct sampler_logprobs *lp)
{
    struct buf *b = r->stream ? &r->lp_next : &r->lp_all;
    if (b->len) buf_append(b, ",", 1);
    buf_append_str(b, "{\"token\":");
    append_piece(s, b, tok);
    buf_printf(b, ",\"logprob\":%.6g,\"top\":[",
               isfinite(lp->token_logprob) ? lp->token_logprob : -1e30);
    for (int i = 0; i < lp->n_top && i < r->n_logprobs; i++) {
        buf_append_str(b, i ? ",{\"token\":" : "{\"token\":");
        append_piece(s, b, lp->top[i].token);
        buf_printf(b, ",\"logprob\":%.6g}",
                   isfinite(lp->top[i].logprob) ? lp->top[i].logprob : -1e30);
    }
    buf_append_str(b, "]}");
}

/* Samples the next token of r from logits and shows what it completes. */
static void advance(struct srv *s, struct req *r, const float *logits)
{
    int32_t tok;
    struct sampler_logprobs lp;
    if (sampler_sample(r->smp, logits, s->n_vocab, &tok, r->n_logprobs >= 0 ? &lp : NULL)) {
        fail_seq(s, r, "sampling failed: the logits hold no finite value");
        return;
    }
    sampler_accept(r->smp, tok);
    if (tokenizer_is_eog(s->m->tok, tok)) {
        finish(s, r, "stop", false);
        return;
    }
    r->n_gen++;
    if (r->n_logprobs >= 0) record_logprobs(s, r, tok, &lp);
    struct buf piece = {0}, shown = {0};
    tokenizer_detok_push(r->dt, tok, &piece, NULL);
    int hit = piece.len ? sampler_stop_push(r->stop, piece.data, piece.len, &shown) : 0;
    show(r, shown.data ? shown.data : "", shown.len);
    buf_free(&piece);
    buf_free(&shown);
    if (hit == 1) {
        finish(s, r, "stop", true);
        return;
    }
    if (r->n_gen >= r->max_tokens || engine_seq_len(s->c, r->seq) >= s->n_ctx) {
        finish(s, r, "length", false);
        return;
    }
    if (r->stream) emit_chunk(s, r);
    r->next_tok = tok;
}

/* Gives queued requests the free sequences. */
static void admit(struct srv *s)
{
    for (int i = 0; i < s->n_seq && s->queue_head; i++) {
        if (s->seqs[i]) continue;
        struct req *r = s->queue_head;
        s->queue_head = r->next;
        if (!s->queue_head) s->queue_tail = NULL;
        r->next = NULL;
        r->seq = i;
        engine_seq_clear(s->c, i);
        s->seqs[i] = r;
    }
}

/* One forward pass: a token for every decoding sequence first (their
 * latency is what users see), then prompt chunks in what is left of the
 * batch. */
static void step(struct srv *s)
{
    int n = 0, n_out = 0;
    for (int i = 0; i < s->n_seq; i++) {
        struct req *r = s->seqs[i];
        if (!r || !r->decoding) continue;
        s->batch[n++] = (struct engine_batch_entry){i, r->next_tok, engine_seq_len(s->c, i), true};
        s->batch_owner[n_out++] = i;
    }
    for (int i = 0; i < s->n_seq && n < s->n_batch; i++) {
        struct req *r = s->seqs[i];
        if (!r || r->decoding) continue;
        size_t k = MIN(r->n_prompt - r->fed, (size_t)(s->n_batch - n));
        for (size_t j = 0; j < k; j++) {
            bool last = r->fed + j + 1 == r->n_prompt;
            s->batch[n++] =
                (struct engine_batch_entry){i, r->prompt[r->fed + j], (int32_t)(r->fed + j), last};
            if (last) s->batch_owner[n_out++] = i;
        }
        r->fed += k;
    }
    if (n == 0) return;
    struct thaw_err err = {0};
    if (engine_forward(s->c, s->batch, n, &err)) {
        for (int i = 0; i < n; i++) {
            struct req *r = s->seqs[s->batch[i].seq];
            if (r) fail_seq(s, r, err.msg);
        }
        return;
    }
    for (int j = 0; j < n_out; j++) {
        struct req *r = s->seqs[s->batch_owner[j]];
        if (!r) continue;
        r->decoding = true;
        advance(s, r, engine_logits(s->c, j));
    }
}

static bool busy(const struct srv *s)
{
    if (s->queue_head) return true;
    for (int i = 0; i < s->n_seq; i++)
        if (s->seqs[i]) return true;
    return false;
}

int rt_serve(struct rt_model *m)
{
    const struct deploy_spec *spec = m->spec;
    struct srv s = {.m = m};
    s.n_seq = m->embed ? 1 : spec->concurrency;
    struct engine_ctx_params cp = {
        .n_ctx = spec->model.context,
        .n_seq_max = s.n_seq,
        .n_batch = MAX(128, s.n_seq),
        .n_outputs = s.n_seq,
        .n_threads = spec->model.threads,
        .embeddings = m->embed,
    };
    struct thaw_err err = {0};
    if (engine_ctx_new(m->model, &cp, &s.c, &err)) {
        fprintf(stderr, "thaw runtime: cannot create the engine context: %s\n", err.msg);
        return 1;
    }
    s.n_ctx = engine_ctx_n_ctx(s.c);
    s.n_vocab = engine_model_info(m->model)->n_vocab;
    s.n_batch = cp.n_batch;
    s.seqs = calloc((size_t)s.n_seq, sizeof(*s.seqs));
    s.batch = calloc((size_t)s.n_batch, sizeof(*s.batch));
    s.batch_owner = calloc((size_t)s.n_seq, sizeof(int));
    s.embedding = calloc((size_t)engine_model_info(m->model)->n_embd, sizeof(float));
    if (!s.seqs || !s.batch || !s.batch_owner || !s.embedding) {
        fprintf(stderr, "thaw runtime: out of memory\n");
        return 1;
    }
    struct buf ready = {0};
    size_t kv = 0, ctx_bytes = engine_ctx_bytes(s.c, &kv);
    buf_printf(&ready,
               "{\"ready\":true,\"n_ctx\":%d,\"parallel\":%d,\"ctx_bytes\":%zu,\"kv_bytes\":%zu}",
               (int)s.n_ctx, s.n_seq, ctx_bytes, kv);
    send_line(&ready);
    buf_free(&ready);
    for (;;) {
        bool b = busy(&s);
        if (s.eof && !b) break;
        if (!s.eof) read_input(&s, b ? 0 : -1);
        admit(&s);
        step(&s);
    }
    /* EOF: the node closed the socket; everything asked has been answered. */
    free(s.seqs);
    free(s.batch);
    free(s.batch_owner);
    free(s.embedding);
    buf_free(&s.in);
    buf_free(&s.out);
    engine_ctx_free(s.c);
    return 0;
}
