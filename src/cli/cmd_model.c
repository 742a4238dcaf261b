/* `thaw model info|tokenize|gen`: look inside a GGUF file, tokenize text as
 * the engine would feed it, and write generated test models. */
#include "cli/cli.h"
#include "cli/cli_cmds.h"
#include "engine/engine.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char model_usage[] =
    "usage: thaw model info FILE.gguf\n"
    "       thaw model tokenize FILE.gguf TEXT [--bos] [--special]\n"
    "       thaw model gen [--preset NAME] [--type T] [--seed N] -o FILE.gguf\n"
    "                      [--arch llama|mistral|qwen2] [--vocab N] [--dim N] [--layers N]\n"
    "                      [--heads N] [--kv-heads N] [--ffn N] [--ctx N] [--tied|--untied]\n"
    "                      [--output-type T] [--pooling mean|cls|last]\n"
    "presets: smollm2-135m, tinyllama-1.1b, tiny, tiny-gqa, tiny-qwen2 (default tiny)\n"
    "tokenize: TEXT is plain text, as the engine feeds a prompt; --special parses control\n"
    "       tokens in it (\"<|im_start|>\"), as a chat template's markup is\n"
    "types: F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q6_K, and Q4_K_M (llama.cpp's mixture:\n"
    "       Q4_K, Q6_K output and some attn_v/ffn_down, Q5_0/Q8_0 where rows do not fit 256)\n";

static void format_shape(const struct gguf_tensor *t, char *out, size_t n)
{
    size_t o = (size_t)snprintf(out, n, "[");
    for (int d = 0; d < t->n_dims && o < n; d++)
        o += (size_t)snprintf(out + o, n - o, d ? ", %" PRIu64 : "%" PRIu64, t->ne[d]);
    if (o < n) snprintf(out + o, n - o, "]");
}

static int model_info(const char *path)
{
    struct gguf *g;
    struct thaw_err err = {0};
    if (gguf_open(path, &g, &err)) {
        fprintf(stderr, "thaw model info: %s\n", err.msg);
        return CLI_EXIT_ERROR;
    }
    printf("file: %s\ngguf version: %u, alignment: %u, %" PRId64 " keys, %" PRId64 " tensors\n\n",
           path, gguf_version(g), gguf_alignment(g), gguf_n_kv(g), gguf_n_tensors(g));
    struct buf b = {0};
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        size_t kl;
        const char *k = gguf_key_name(g, i, &kl);
        buf_reset(&b);
        gguf_format_value(g, i, 8, &b);
        if (b.len > 300) b.len = 300, b.data[300] = 0; /* long templates */
        printf("%-48.*s = %s%s\n", (int)kl, k, b.data ? b.data : "", b.len == 300 ? "..." : "");
    }
    buf_free(&b);
    printf("\n%-40s %-6s %-22s %12s %12s\n", "tensor", "type", "shape", "offset", "bytes");
    uint64_t base = gguf_data_offset(g);
    size_t len;
    const uint8_t *map = gguf_base(g, &len);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const struct gguf_tensor *t = gguf_tensor_at(g, i);
        char shape[96];
        format_shape(t, shape, sizeof shape);
        printf("%-40s %-6s %-22s %12" PRIu64 " %12" PRIu64 "\n", t->name, ggml_type_name(t->type),
               shape, (uint64_t)((const uint8_t *)t->data - map) - base, t->nbytes);
    }
    struct engine_model *m;
    if (engine_model_from_gguf(g, &m, &err)) {
        printf("\nengine: cannot run this file: %s\n", err.msg);
        return CLI_EXIT_OK;
    }
    const struct engine_model_info *hp = engine_model_info(m);
    printf("\nmodel: %s '%s', %.1fM parameters, %.1f MiB of weights (mostly %s)\n", hp->arch,
           hp->name, hp->n_params / 1e6, hp->weight_bytes / 1048576.0, ggml_type_name(hp->ftype));
    printf("  vocab %d, dim %d, layers %d, heads %d (kv %d, size %d), ffn %d, context %d\n",
           hp->n_vocab, hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
           hp->n_ctx_train);
    printf("  rope %s, base %g, dims %d, freq scale %g%s; rms eps %g; output %s%s\n",
           hp->rope == ENGINE_ROPE_NEOX ? "neox" : "normal", (double)hp->rope_base, hp->n_rot,
           (double)hp->rope_freq_scale, hp->rope_freq_factors ? ", freq factors" : "",
           (double)hp->rms_eps, hp->tied_output ? "tied" : "separate",
           hp->qkv_bias ? "; q/k/v biases" : "");
    engine_model_free(m);
    return CLI_EXIT_OK;
}

static int model_tokenize(int argc, char **argv)
{
    const char *path = NULL, *text = NULL;
    bool bos = false, special = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--bos"))
            bos = true;
        else if (!strcmp(argv[i], "--special"))
            special = true;
        else if (!path)
            path = argv[i];
        else if (!text)
            text = argv[i];
        else
            path = NULL, i = argc;
    }
    if (!path || !text) {
        fputs(model_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    struct gguf *g;
    struct engine_tokenizer *tok = NULL;
    struct thaw_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = gguf_open(path, &g, &err);
    if (!rc) rc = tokenizer_from_gguf(g, &tok, &err);
    if (!rc) rc = tokenizer_encode(tok, text, strlen(text), bos, special, &ids, &n, &err);
    if (rc) fprintf(stderr, "thaw model tokenize: %s\n", err.msg);
    for (size_t i = 0; i < n; i++)
        printf(i ? " %d" : "%d", ids[i]);
    if (!rc) putchar('\n');
    free(ids);
    tokenizer_free(tok);
    gguf_close(g);
    return rc ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}

/* Parses a type name (case-insensitive); Q4_K_M (where mix is given) asks
 * for llama.cpp's mixture. */
static int parse_type(const char *s, enum ggml_type *t, bool *mix)
{
    if (mix && !strcasecmp(s, "Q4_K_M")) {
        *t = GGML_TYPE_Q4_K;
        *mix = true;
        return 0;
    }
    for (uint32_t i = 0; i < 64; i++) {
        const char *n = ggml_type_name(i);
        if (n && ggml_type_supported(i) && !strcasecmp(n, s)) {
            *t = (enum ggml_type)i;
            return 0;
        }
    }
    return -1;
}

static int parse_int(const char *s, int32_t *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 0 || v > 1 << 24) return -1;
    *out = (int32_t)v;
    return 0;
}

static int gen_usage(const char *why)
{
    fprintf(stderr, "thaw model gen: %s\n%s", why, model_usage);
    return CLI_EXIT_USAGE;
}

static int model_gen(int argc, char **argv)
{
    struct engine_gen_params p;
    struct thaw_err err = {0};
    const char *preset = "tiny", *out = NULL;
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--preset")) preset = argv[i + 1];
    if (engine_gen_preset(preset, &p, &err)) return gen_usage(err.msg);
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int32_t n = 0;
        bool takes = strcmp(a, "--tied") && strcmp(a, "--untied");
        if (takes && !v) return gen_usage("missing value");
        if (takes) i++;
        if (!strcmp(a, "--preset")) continue;
        if (!strcmp(a, "--tied") || !strcmp(a, "--untied"))
            p.tied_output = a[2] == 't';
        else if (!strcmp(a, "-o") || !strcmp(a, "--output"))
            out = v;
        else if (!strcmp(a, "--arch"))
            p.arch = v;
        else if (!strcmp(a, "--type")) {
            if (parse_type(v, &p.type, &p.q4_k_m)) return gen_usage("unknown type");
        } else if (!strcmp(a, "--output-type")) {
            if (parse_type(v, &p.output_type, NULL)) return gen_usage("unknown output type");
        } else if (!strcmp(a, "--seed")) {
            char *end;
            p.seed = strtoull(v, &end, 10);
            if (*end) return gen_usage("bad seed");
        } else if (!strcmp(a, "--pooling")) {
            if (!strcmp(v, "mean"))
                p.pooling = ENGINE_POOL_MEAN;
            else if (!strcmp(v, "cls"))
                p.pooling = ENGINE_POOL_CLS;
            else if (!strcmp(v, "last"))
                p.pooling = ENGINE_POOL_LAST;
            else
                return gen_usage("pooling is mean, cls or last");
        } else if (parse_int(v, &n)) {
            return gen_usage("bad number");
        } else if (!strcmp(a, "--vocab"))
            p.n_vocab = n;
        else if (!strcmp(a, "--dim"))
            p.n_embd = n;
        else if (!strcmp(a, "--layers"))
            p.n_layer = n;
        else if (!strcmp(a, "--heads"))
            p.n_head = n;
        else if (!strcmp(a, "--kv-heads"))
            p.n_head_kv = n;
        else if (!strcmp(a, "--ffn"))
            p.n_ff = n;
        else if (!strcmp(a, "--ctx"))
            p.n_ctx = n;
        else
            return gen_usage("unknown option");
    }
    if (!out) return gen_usage("-o FILE is required");
    int n_fallback = 0;
    if (engine_gen_write(&p, out, &n_fallback, &err)) {
        fprintf(stderr, "thaw model gen: %s\n", err.msg);
        return CLI_EXIT_ERROR;
    }
    fprintf(stderr, "wrote %s (%s, %s", out, preset, p.q4_k_m ? "Q4_K_M" : ggml_type_name(p.type));
    if (n_fallback)
        fprintf(stderr, "; %d tensors whose rows do not fit %s blocks fell back to Q5_0/Q8_0/F16",
                n_fallback, ggml_type_name(p.type));
    fprintf(stderr, ")\n");
    return CLI_EXIT_OK;
}

int cli_cmd_model(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        fputs(model_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_EXIT_USAGE : CLI_EXIT_OK;
    }
    if (!strcmp(argv[1], "info") && argc == 3) return model_info(argv[2]);
    if (!strcmp(argv[1], "tokenize")) return model_tokenize(argc, argv);
    if (!strcmp(argv[1], "gen")) return model_gen(argc, argv);
    fputs(model_usage, stderr);
    return CLI_EXIT_USAGE;
}
