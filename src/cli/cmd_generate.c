/* `thaw generate`: runs the engine locally on a GGUF file, streaming the
 * generated text to stdout and timing figures to stderr. */
#include "cli/cli.h"
#include "cli/cli_cmds.h"
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char gen_usage_text[] =
    "usage: thaw generate -m FILE.gguf -p TEXT [-n N] [--temp T] [--seed S] [--threads N]\n"
    "                     [--top-k K] [--top-p P] [--min-p P] [--ctx N] [--special]\n"
    "  -n: tokens to generate (default 128); --temp 0 is greedy (default 0.8)\n"
    "  --special: control tokens spelled in TEXT (\"<|im_start|>\") become those tokens;\n"
    "             by default TEXT is plain text, as an llm deployment reads a prompt\n";

struct gen_opts {
    const char *model, *prompt;
    int32_t n_predict, threads, n_ctx;
    bool special;
    struct engine_sampling_params sp;
};

static int parse_opts(int argc, char **argv, struct gen_opts *o)
{
    *o = (struct gen_opts){.n_predict = 128, .threads = 1};
    sampler_params_default(&o->sp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--special")) {
            o->special = true;
            continue;
        }
        if (!v) return -1;
        char *end = NULL;
        i++;
        if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            o->model = v;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt"))
            o->prompt = v;
        else if (!strcmp(a, "-n"))
            o->n_predict = (int32_t)strtol(v, &end, 10);
        else if (!strcmp(a, "--threads") || !strcmp(a, "-t"))
            o->threads = (int32_t)strtol(v, &end, 10);
        else if (!strcmp(a, "--ctx"))
            o->n_ctx = (int32_t)strtol(v, &end, 10);
        else if (!strcmp(a, "--temp"))
            o->sp.temperature = strtof(v, &end);
        else if (!strcmp(a, "--top-k"))
            o->sp.top_k = (int32_t)strtol(v, &end, 10);
        else if (!strcmp(a, "--top-p"))
            o->sp.top_p = strtof(v, &end);
        else if (!strcmp(a, "--min-p"))
            o->sp.min_p = strtof(v, &end);
        else if (!strcmp(a, "--seed"))
            o->sp.seed = strtoull(v, &end, 10);
        else
            return -1;
        if (end && *end) return -1;
    }
    if (!o->model || !o->prompt || o->n_predict < 0 || o->threads < 1 || o->threads > 256 ||
        o->n_ctx < 0)
        return -1;
    return 0;
}

struct gen_run {
    struct engine_model *m;
    struct engine_tokenizer *tok;
    struct engine_ctx *c;
    struct engine_sampler *s;
    struct engine_detok *dt;
};

static void gen_run_free(struct gen_run *r)
{
    tokenizer_detok_free(r->dt);
    sampler_free(r->s);
    engine_ctx_free(r->c);
    tokenizer_free(r->tok);
    engine_model_free(r->m);
}

/* Samples, prints and feeds tokens until n_predict, an end token or the
 * context's end. Returns tokens generated or a negative status. */
static int decode_loop(struct gen_run *r, const struct gen_opts *o, int32_t n_vocab,
                       struct thaw_err *err)
{
    struct buf out = {0};
    int n = 0, rc = 0;
    for (; n < o->n_predict; n++) {
        int32_t t;
        if ((rc = sampler_sample(r->s, engine_logits(r->c, 0), n_vocab, &t, NULL))) break;
        sampler_accept(r->s, t);
        if (tokenizer_is_eog(r->tok, t)) break;
        buf_reset(&out);
        if ((rc = tokenizer_detok_push(r->dt, t, &out, err))) break;
        fwrite(out.data ? out.data : "", 1, out.len, stdout);
        fflush(stdout);
        if (engine_seq_len(r->c, 0) >= engine_ctx_n_ctx(r->c)) {
            n++;
            break;
        }
        if ((rc = engine_feed(r->c, 0, &t, 1, err))) break;
    }
    buf_reset(&out);
    tokenizer_detok_flush(r->dt, &out);
    fwrite(out.data ? out.data : "", 1, out.len, stdout);
    putchar('\n');
    buf_free(&out);
    return rc ? rc : n;
}

int cli_cmd_generate(int argc, char **argv)
{
    struct gen_opts o;
    if (parse_opts(argc, argv, &o)) {
        fputs(gen_usage_text, stderr);
        return CLI_EXIT_USAGE;
    }
    struct gen_run r = {0};
    struct thaw_err err = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    uint64_t t0 = time_now_ns();
    int rc = engine_model_load(o.model, &r.m, &err);
    if (!rc) rc = tokenizer_from_gguf(engine_model_gguf(r.m), &r.tok, &err);
    if (!rc)
        rc = tokenizer_encode(r.tok, o.prompt, strlen(o.prompt), tokenizer_wants_bos(r.tok),
                              o.special, &ids, &n_ids, &err);
    if (!rc && n_ids == 0) rc = thaw_errf(&err, THAW_EINVAL, "the prompt is empty");
    const struct engine_model_info *hp = r.m ? engine_model_info(r.m) : NULL;
    struct engine_ctx_params cp = {
        .n_ctx = o.n_ctx ? o.n_ctx : (hp ? MIN(hp->n_ctx_train, (int32_t)n_ids + o.n_predict) : 0),
        .n_threads = o.threads};
    if (!rc) rc = engine_ctx_new(r.m, &cp, &r.c, &err);
    if (!rc) rc = sampler_new(&o.sp, &r.s, &err);
    if (!rc) rc = tokenizer_detok_new(r.tok, 0, &r.dt);
    uint64_t t1 = time_now_ns();
    if (!rc) rc = engine_feed(r.c, 0, ids, (int32_t)n_ids, &err);
    uint64_t t2 = time_now_ns();
    for (size_t i = 0; !rc && i < n_ids; i++)
        sampler_accept(r.s, ids[i]);
    int n_gen = rc ? 0 : decode_loop(&r, &o, hp->n_vocab, &err);
    if (n_gen < 0) rc = n_gen;
    uint64_t t3 = time_now_ns();
    if (rc) {
        fprintf(stderr, "thaw generate: %s\n", err.msg[0] ? err.msg : thaw_strerror(rc));
    } else {
        fprintf(stderr,
                "\n[load %.0f ms | prompt %zu tokens, %.1f tokens/s | generated %d tokens, %.1f "
                "tokens/s | %d threads, %s kernels]\n",
                (t1 - t0) / 1e6, n_ids, n_ids / ((t2 - t1) / 1e9), n_gen, n_gen / ((t3 - t2) / 1e9),
                o.threads, kern_simd_level());
    }
    free(ids);
    gen_run_free(&r);
    return rc ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}
