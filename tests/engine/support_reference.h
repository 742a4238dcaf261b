/* A naive reference forward pass for llama-family GGUF models: plain loops in
 * double precision over dequantised weights, recomputing everything from
 * position 0 on each call. Only for tests; slow on purpose. */
#ifndef THAW_TEST_SUPPORT_REFERENCE_H
#define THAW_TEST_SUPPORT_REFERENCE_H

#include <stdint.h>

struct ref_model;

/* Reads the model at path (its own reading of the metadata, independent of
 * the engine's loader). Returns NULL on any failure, printing why. */
struct ref_model *ref_load(const char *path);
void ref_free(struct ref_model *m);
int ref_n_vocab(const struct ref_model *m);
int ref_n_embd(const struct ref_model *m);

/* Runs tokens[0..n) from position 0. logits: n x n_vocab (may be NULL);
 * hidden: n x n_embd final normalised hidden states (may be NULL). */
void ref_forward(const struct ref_model *m, const int32_t *tokens, int n, double *logits,
                 double *hidden);

#endif
