/* libFuzzer target for the redactor: never crashes or reads out of bounds,
 * output never longer than security_redact_bound, valid UTF-8 in gives valid
 * UTF-8 out, and the finding count matches the per-kind counts. */
#include "security/security.h"

#include <stdlib.h>
#include <string.h>

/* Strict UTF-8 check (no overlongs, surrogates or values past U+10FFFF). */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            k = 2;
        else if (c >= 0xe0 && c <= 0xef) {
            k = 3;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 4;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else
            return 0;
        if (i + k > n || s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t j = 2; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    unsigned kinds = SECURITY_REDACT_ALL;
    if (size > 0 && data[0] == 0xff) {
        kinds = size > 1 ? data[1] & SECURITY_REDACT_ALL : 0;
        data += size > 1 ? 2 : 1;
        size -= size > 1 ? 2 : 1;
    }
    char *in = malloc(size ? size : 1); /* exact size so ASan sees overreads */
    if (!in) return 0;
    memcpy(in, data, size);
    struct buf out = {0};
    struct security_redact_counts c = {0};
    int n = security_redact(in, size, kinds, &out, &c);
    if (n < 0) abort();
    if (out.len > security_redact_bound(size)) abort();
    uint64_t total = 0;
    for (int k = 0; k < SECURITY_REDACT_N_KINDS; k++) {
        total += c.n[k];
        if (c.n[k] && !(kinds & (1u << k))) abort();
    }
    if (total != (uint64_t)n) abort();
    if (n == 0 && (out.len != size || memcmp(out.data, in, size) != 0)) abort();
    if (utf8_valid((const unsigned char *)in, size) &&
        !utf8_valid((const unsigned char *)out.data, out.len))
        abort();
    buf_free(&out);
    free(in);
    return 0;
}
