/* Private to src/runtime: what a template has loaded and hands to each
 * instance it forks (llm.c serves it; template.c loads it and forks). */
#ifndef THAW_RUNTIME_INT_H
#define THAW_RUNTIME_INT_H

#include "engine/engine.h"
#include "registry/registry.h"

#include <stdbool.h>

struct rt_model {
    struct deploy_spec *spec; /* the deployment, model path resolved by the node */
    struct engine_model *model;
    struct engine_tokenizer *tok;
    bool embed;              /* runtime embed (else llm) */
    enum chat_family family; /* CHAT_NONE: chat requests are refused with family_why */
    char family_why[640];
    bool sandboxed; /* running under a seccomp filter */
};

/* An instance's life after the fork: creates its engine context, prints
 * {"ready":true}, serves request lines from stdin until EOF. Returns the
 * process exit code. */
int rt_serve(struct rt_model *m);

/* Appends s[0..len) as a JSON string, bytes that are not valid UTF-8 (and
 * NUL, which the node's parser refuses) replaced by U+FFFD: token pieces
 * can split a character, and models can emit any byte. */
int rt_json_utf8(struct buf *b, const char *s, size_t len);

#endif
