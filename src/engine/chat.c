/* Built-in chat prompt formats (thaw runs no Jinja) and the matcher that
 * picks one from a model's tokenizer.chat_template by its distinctive
 * markers. Each formatter writes what the family's own template writes for
 * plain system/user/assistant turns, minus the leading BOS. */
#include "engine/text.h"

#include <stdlib.h>
#include <string.h>

/* DeepSeek's markers: fullwidth bars (U+FF5C) and U+2581 for spaces. */
#define DS_USER      "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define DS_ASSISTANT "<\xef\xbd\x9c\x41ssistant\xef\xbd\x9c>"
#define DS_EOS       "<\xef\xbd\x9c\x65nd\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"

static const char *const family_names[] = {
    [CHAT_NONE] = "none",
    [CHAT_CHATML] = "chatml",
    [CHAT_LLAMA2] = "llama2",
    [CHAT_LLAMA3] = "llama3",
    [CHAT_MISTRAL] = "mistral",
    [CHAT_MISTRAL_V3] = "mistral-v3-tekken",
    [CHAT_ZEPHYR] = "zephyr",
    [CHAT_PHI3] = "phi3",
    [CHAT_GEMMA] = "gemma",
    [CHAT_DEEPSEEK3] = "deepseek3",
    [CHAT_DEEPSEEK_R1] = "deepseek-r1",
    [CHAT_COMMAND_R] = "command-r",
};

const char *chat_family_name(enum chat_family f)
{
    if ((unsigned)f >= ARRAY_LEN(family_names) || !family_names[f]) return "none";
    return family_names[f];
}

int chat_family_from_name(const char *name, enum chat_family *out, struct thaw_err *err)
{
    for (size_t i = 1; name && i < ARRAY_LEN(family_names); i++) {
        if (strcmp(name, family_names[i]) == 0) {
            *out = (enum chat_family)i;
            return 0;
        }
    }
    return thaw_errf(err, THAW_ENOTFOUND,
                     "unknown chat template \"%s\" (known: chatml, llama2, llama3, mistral, "
                     "mistral-v3-tekken, zephyr, phi3, gemma, deepseek3, deepseek-r1, command-r)",
                     name ? name : "");
}

/* ---------------------------------------------------------------- detect */

static bool has(const char *t, size_t n, const char *needle)
{
    return memmem(t, n, needle, strlen(needle)) != NULL;
}

static int no_fit(struct thaw_err *err, const char *why)
{
    return thaw_errf(err, THAW_ENOTFOUND,
                     "no built-in chat template fits this model's template (%s); name one "
                     "explicitly (chatml, llama3, ...)",
                     why);
}

/* Markers, most distinctive first: several families share "[INST]" or
 * "<|assistant|>", so those come last and look at further details. */
int chat_family_detect(const char *t, size_t n, enum chat_family *out, struct thaw_err *err)
{
    *out = CHAT_NONE;
    if (!t || n == 0) return no_fit(err, "the model has no chat template");
    if (has(t, n, "<|START_OF_TURN_TOKEN|>")) {
        /* Command R7B wraps replies in response/thinking blocks we do not model */
        if (has(t, n, "<|START_RESPONSE|>")) return no_fit(err, "Command R7B response blocks");
        *out = CHAT_COMMAND_R;
    } else if (has(t, n, ">>>all") || has(t, n, "version=v3.llama3")) {
        return no_fit(err, "functionary v3.2 '>>>recipient' turns");
    } else if (has(t, n, "<|im_start|>")) {
        *out = CHAT_CHATML;
    } else if (has(t, n, "<|start_header_id|>")) {
        *out = CHAT_LLAMA3;
    } else if (has(t, n, DS_USER) || has(t, n, DS_ASSISTANT)) {
        *out = has(t, n, "<think>") ? CHAT_DEEPSEEK_R1 : CHAT_DEEPSEEK3;
    } else if (has(t, n, "<start_of_turn>")) {
        *out = CHAT_GEMMA;
    } else if (has(t, n, "<|assistant|>") || has(t, n, "<|user|>")) {
        *out = has(t, n, "<|end|>") ? CHAT_PHI3 : CHAT_ZEPHYR;
    } else if (has(t, n, "[INST]")) {
        if (has(t, n, "[SYSTEM_PROMPT]")) return no_fit(err, "Mistral v7 system prompts");
        if (has(t, n, "<<SYS>>"))
            *out = CHAT_LLAMA2;
        else if (has(t, n, "\"[INST]\""))
            *out = CHAT_MISTRAL_V3;
        else if (has(t, n, " [INST]"))
            *out = CHAT_MISTRAL;
        else if (has(t, n, "[AVAILABLE_TOOLS]"))
            return no_fit(err, "Mistral v3 without tekken");
        else
            *out = CHAT_LLAMA2;
    } else {
        return no_fit(err, "no known turn markers");
    }
    return 0;
}

/* ---------------------------------------------------------------- format */

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

static int role_of(const char *r, enum role *out)
{
    if (!r) return THAW_EINVAL;
    if (strcmp(r, "system") == 0)
        *out = ROLE_SYSTEM;
    else if (strcmp(r, "user") == 0)
        *out = ROLE_USER;
    else if (strcmp(r, "assistant") == 0)
        *out = ROLE_ASSISTANT;
    else
        return THAW_EINVAL;
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The prompt being written, and the ranges of it that are users' text. */
struct fmt {
    struct buf b;
    struct text_span *spans;
    size_t n, cap;
};

/* Appends the template's own markup. */
static int lit(struct fmt *f, const char *s)
{
    return buf_append_str(&f->b, s);
}

/* Appends a message's content, trimmed of surrounding whitespace when trim
 * (as the templates that use Jinja's |trim do), and records where it went so
 * it is encoded as plain text. */
static int put(struct fmt *f, const char *s, bool trim)
{
    size_t n = strlen(s), i = 0;
    if (trim) {
        while (i < n && is_space(s[i]))
            i++;
        while (n > i && is_space(s[n - 1]))
            n--;
    }
    if (n == i) return 0;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 8;
        struct text_span *sp = realloc(f->spans, cap * sizeof(*sp));
        if (!sp) return THAW_ENOMEM;
        f->spans = sp;
        f->cap = cap;
    }
    f->spans[f->n++] = (struct text_span){f->b.len, n - i};
    return buf_append(&f->b, s + i, n - i);
}

/* Formats with a per-role prefix and suffix around the content. */
struct turns {
    const char *pre[3], *post[3];
    const char *gen; /* the assistant header for add_generation_prompt */
    bool trim;
};

static const struct turns turn_tables[] = {
    [CHAT_CHATML] = {{"<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n"},
                     {"<|im_end|>\n", "<|im_end|>\n", "<|im_end|>\n"},
                     "<|im_start|>assistant\n",
                     false},
    [CHAT_LLAMA3] = {{"<|start_header_id|>system<|end_header_id|>\n\n",
                      "<|start_header_id|>user<|end_header_id|>\n\n",
                      "<|start_header_id|>assistant<|end_header_id|>\n\n"},
                     {"<|eot_id|>", "<|eot_id|>", "<|eot_id|>"},
                     "<|start_header_id|>assistant<|end_header_id|>\n\n",
                     true},
    [CHAT_ZEPHYR] = {{"<|system|>\n", "<|user|>\n", "<|assistant|>\n"},
                     {"</s>\n", "</s>\n", "</s>\n"},
                     "<|assistant|>\n",
                     false},
    [CHAT_PHI3] = {{"<|system|>\n", "<|user|>\n", "<|assistant|>\n"},
                   {"<|end|>\n", "<|end|>\n", "<|end|>\n"},
                   "<|assistant|>\n",
                   false},
    [CHAT_DEEPSEEK3] = {{"", DS_USER, DS_ASSISTANT}, {"", "", DS_EOS}, DS_ASSISTANT, false},
    [CHAT_DEEPSEEK_R1] = {{"", DS_USER, DS_ASSISTANT},
                          {"", "", DS_EOS},
                          DS_ASSISTANT "<think>\n",
                          false},
    [CHAT_COMMAND_R] = {{"<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>",
                         "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>",
                         "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"},
                        {"<|END_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>"},
                        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
                        true},
};

static int format_turns(const struct turns *t, const struct chat_message *m, const enum role *roles,
                        size_t n, bool gen, struct fmt *b)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = lit(b, t->pre[roles[i]]);
        if (rc == 0) rc = put(b, m[i].content, t->trim);
        if (rc == 0) rc = lit(b, t->post[roles[i]]);
    }
    if (rc == 0 && gen) rc = lit(b, t->gen);
    return rc;
}

/* DeepSeek's templates put the system prompt first, whatever its position. */
static int format_deepseek(const struct turns *t, const struct chat_message *m, const enum role *r,
                           size_t n, bool gen, struct fmt *b)
{
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (r[i] == ROLE_SYSTEM) rc = put(b, m[i].content, false);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (r[i] == ROLE_SYSTEM) continue;
        rc = lit(b, t->pre[r[i]]);
        if (rc == 0) rc = put(b, m[i].content, false);
        if (rc == 0) rc = lit(b, t->post[r[i]]);
    }
    if (rc == 0 && gen) rc = lit(b, t->gen);
    return rc;
}

/* Llama 2: [INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST] A </s><s>[INST] U2 [/INST] */
static int format_llama2(const struct chat_message *m, const enum role *r, size_t n, struct fmt *b)
{
    int rc = 0;
    bool open = false; /* inside an [INST] */
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (r[i] != ROLE_ASSISTANT && !open) {
            rc = lit(b, b->b.len == 0 ? "[INST] " : "<s>[INST] ");
            open = true;
        }
        if (rc) break;
        if (r[i] == ROLE_SYSTEM) {
            rc = lit(b, "<<SYS>>\n");
            if (rc == 0) rc = put(b, m[i].content, false);
            if (rc == 0) rc = lit(b, "\n<</SYS>>\n\n");
        } else if (r[i] == ROLE_USER) {
            rc = put(b, m[i].content, true);
            if (rc == 0) rc = lit(b, " [/INST]");
            open = false;
        } else {
            rc = lit(b, " ");
            if (rc == 0) rc = put(b, m[i].content, true);
            if (rc == 0) rc = lit(b, " </s>");
        }
    }
    return rc;
}

/* Mistral v1: " [INST] S\n\nU [/INST] A</s>", the system prompt joining the
 * first user turn; v3-tekken: "[INST]U[/INST]A</s>", the system prompt
 * joining the last user turn. */
static int format_mistral(bool tekken, const struct chat_message *m, const enum role *r, size_t n,
                          struct fmt *b)
{
    const char *sys = NULL;
    size_t first_user = n, last_user = n;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i] == ROLE_SYSTEM && !sys) sys = m[i].content;
        if (r[i] == ROLE_USER) last_user = i, first_user = first_user == n ? i : first_user;
    }
    size_t sys_at = tekken ? last_user : first_user;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (r[i] == ROLE_SYSTEM) continue;
        if (r[i] == ROLE_USER) {
            rc = lit(b, tekken ? "[INST]" : " [INST] ");
            if (rc == 0 && sys && i == sys_at) rc = put(b, sys, false);
            if (rc == 0 && sys && i == sys_at) rc = lit(b, "\n\n");
            if (rc == 0) rc = put(b, m[i].content, false);
            if (rc == 0) rc = lit(b, tekken ? "[/INST]" : " [/INST]");
        } else {
            rc = lit(b, tekken ? "" : " ");
            if (rc == 0) rc = put(b, m[i].content, false);
            if (rc == 0) rc = lit(b, "</s>");
        }
    }
    return rc;
}

/* Gemma: no system role; the system prompt opens the first user turn. */
static int format_gemma(const struct chat_message *m, const enum role *r, size_t n, bool gen,
                        struct fmt *b)
{
    const char *sys = NULL;
    bool sys_done = false;
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i] == ROLE_SYSTEM && !sys) sys = m[i].content;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (r[i] == ROLE_SYSTEM) continue;
        rc = lit(b, r[i] == ROLE_USER ? "<start_of_turn>user\n" : "<start_of_turn>model\n");
        if (rc == 0 && r[i] == ROLE_USER && sys && !sys_done) {
            rc = put(b, sys, true);
            if (rc == 0) rc = lit(b, "\n\n");
            sys_done = true;
        }
        if (rc == 0) rc = put(b, m[i].content, true);
        if (rc == 0) rc = lit(b, "<end_of_turn>\n");
    }
    if (rc == 0 && gen) rc = lit(b, "<start_of_turn>model\n");
    return rc;
}

int chat_format_spans(enum chat_family f, const struct chat_message *msgs, size_t n,
                      bool add_generation_prompt, struct buf *out, struct text_span **spans,
                      size_t *n_spans, struct thaw_err *err)
{
    enum role stack_roles[64], *roles = n <= 64 ? stack_roles : malloc(n * sizeof(*roles));
    struct fmt b = {0};
    int rc = 0;
    if (spans) *spans = NULL;
    if (n_spans) *n_spans = 0;
    if (!roles) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (role_of(msgs[i].role, &roles[i]) != 0 || !msgs[i].content) {
            rc = thaw_errf(err, THAW_EINVAL,
                           "message %zu: role must be system, user or assistant, with content", i);
            goto out_free;
        }
    }
    switch (f) {
    case CHAT_LLAMA2:
        rc = format_llama2(msgs, roles, n, &b);
        break;
    case CHAT_MISTRAL:
    case CHAT_MISTRAL_V3:
        rc = format_mistral(f == CHAT_MISTRAL_V3, msgs, roles, n, &b);
        break;
    case CHAT_GEMMA:
        rc = format_gemma(msgs, roles, n, add_generation_prompt, &b);
        break;
    case CHAT_DEEPSEEK3:
    case CHAT_DEEPSEEK_R1:
        rc = format_deepseek(&turn_tables[f], msgs, roles, n, add_generation_prompt, &b);
        break;
    case CHAT_CHATML:
    case CHAT_LLAMA3:
    case CHAT_ZEPHYR:
    case CHAT_PHI3:
    case CHAT_COMMAND_R:
        rc = format_turns(&turn_tables[f], msgs, roles, n, add_generation_prompt, &b);
        break;
    default:
        rc = thaw_errf(err, THAW_EINVAL, "no chat template chosen");
        goto out_free;
    }
    size_t base = out->len;
    if (rc == 0) rc = buf_append(out, b.b.data ? b.b.data : "", b.b.len);
    if (rc) thaw_errf(err, rc, "out of memory formatting the chat");
    if (rc == 0 && spans) {
        for (size_t i = 0; i < b.n; i++)
            b.spans[i].off += base;
        *spans = b.spans;
        *n_spans = b.n;
        b.spans = NULL;
    }
out_free:
    buf_free(&b.b);
    free(b.spans);
    if (roles != stack_roles) free(roles);
    return rc;
}

int chat_format(enum chat_family f, const struct chat_message *msgs, size_t n,
                bool add_generation_prompt, struct buf *out, struct thaw_err *err)
{
    return chat_format_spans(f, msgs, n, add_generation_prompt, out, NULL, NULL, err);
}
