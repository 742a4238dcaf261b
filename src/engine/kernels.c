/* Weight types, float conversions, dequantisation, input preparation and the
 * run-time choice of SIMD level for the matmul kernels. The quantisers live
 * in kernels_quant.c, the kernels themselves in kernels_<level>.c. */
#include "engine/kernels_int.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20) /* older libc headers lack it; the kernel ABI bit */
#endif
#endif

/* ---- type table ------------------------------------------------------- */

struct type_info {
    const char *name;
    int block_elems;
    size_t block_bytes;
    bool supported;
};

static const struct type_info type_table[KERN_N_TYPES] = {
    [GGML_TYPE_F32] = {"F32", 1, 4, true},
    [GGML_TYPE_F16] = {"F16", 1, 2, true},
    [GGML_TYPE_Q4_0] = {"Q4_0", KQ, KB_Q4_0, true},
    [GGML_TYPE_Q4_1] = {"Q4_1", KQ, KB_Q4_1, true},
    [GGML_TYPE_Q5_0] = {"Q5_0", KQ, KB_Q5_0, true},
    [GGML_TYPE_Q5_1] = {"Q5_1", KQ, KB_Q5_1, true},
    [GGML_TYPE_Q8_0] = {"Q8_0", KQ, KB_Q8_0, true},
    [GGML_TYPE_Q8_1] = {"Q8_1", KQ, KB_Q8_1, false},
    [GGML_TYPE_Q2_K] = {"Q2_K", KQ_K, KB_Q2_K, false},
    [GGML_TYPE_Q3_K] = {"Q3_K", KQ_K, KB_Q3_K, false},
    [GGML_TYPE_Q4_K] = {"Q4_K", KQ_K, KB_Q4_K, true},
    [GGML_TYPE_Q5_K] = {"Q5_K", KQ_K, KB_Q5_K, true},
    [GGML_TYPE_Q6_K] = {"Q6_K", KQ_K, KB_Q6_K, true},
    [GGML_TYPE_Q8_K] = {"Q8_K", KQ_K, KB_Q8_K, true},
    [GGML_TYPE_BF16] = {"BF16", 1, 2, true},
};

static const struct type_info *type_get(uint32_t t)
{
    if (t >= KERN_N_TYPES || !type_table[t].name) return NULL;
    return &type_table[t];
}

bool ggml_type_supported(uint32_t type)
{
    const struct type_info *ti = type_get(type);
    return ti && ti->supported;
}

const char *ggml_type_name(uint32_t type)
{
    const struct type_info *ti = type_get(type);
    return ti ? ti->name : NULL;
}

int ggml_type_block_elems(enum ggml_type t)
{
    const struct type_info *ti = type_get(t);
    return ti ? ti->block_elems : 0;
}

size_t ggml_type_block_bytes(enum ggml_type t)
{
    const struct type_info *ti = type_get(t);
    return ti ? ti->block_bytes : 0;
}

size_t ggml_row_bytes(enum ggml_type t, uint64_t n)
{
    const struct type_info *ti = type_get(t);
    if (!ti || n % (uint64_t)ti->block_elems) return 0;
    uint64_t blocks = n / (uint64_t)ti->block_elems;
    if (blocks > SIZE_MAX / ti->block_bytes) return 0;
    return (size_t)(blocks * ti->block_bytes);
}

/* ---- f16 / bf16 ------------------------------------------------------- */

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

float kern_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = (float)man * 0x1p-24f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t kern_fp32_to_fp16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf, or NaN kept quiet with its top payload bits */
        return sign | 0x7c00 | (ax > 0x7f800000u ? (0x200 | ((ax >> 13) & 0x3ff)) : 0);
    if (ax >= 0x477ff000u) return sign | 0x7c00; /* >= 65520 rounds to inf */
    if (ax < 0x38800000u) {
        /* below 2^-14: a subnormal half; scaling by 2^24 is exact and lrintf
         * rounds to nearest even (1024 is the smallest normal, encoded right) */
        return sign | (uint16_t)lrintf(f32_from_bits(ax) * 0x1p24f);
    }
    uint32_t h = ((ax >> 23) - 112) << 10 | ((ax >> 13) & 0x3ff);
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* a carry into the exponent is right */
    return sign | (uint16_t)h;
}

float kern_bf16_to_fp32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

uint16_t kern_fp32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 64); /* quiet NaN */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* The portable kernels convert many halves; a table is faster than the bit
 * twiddling above. Built once, on first use. */
static float f16_table[65536];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;

static void f16_table_init(void)
{
    for (uint32_t i = 0; i < 65536; i++)
        f16_table[i] = kern_fp16_to_fp32((uint16_t)i);
}

float kern_f16_table_(uint16_t h)
{
    return f16_table[h];
}

/* ---- dequantisation --------------------------------------------------- */

static float ldh(const uint8_t *p)
{
    return kern_fp16_to_fp32(kern_ld16(p));
}

static void deq_q4_0(const uint8_t *b, float *y)
{
    float d = ldh(b);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((b[2 + j] & 15) - 8) * d;
        y[j + 16] = (float)((b[2 + j] >> 4) - 8) * d;
    }
}

static void deq_q4_1(const uint8_t *b, float *y)
{
    float d = ldh(b), m = ldh(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = (float)(b[4 + j] & 15) * d + m;
        y[j + 16] = (float)(b[4 + j] >> 4) * d + m;
    }
}

static void deq_q5_0(const uint8_t *b, float *y)
{
    float d = ldh(b);
    uint32_t qh = kern_ld32(b + 2);
    for (int j = 0; j < 16; j++) {
        int lo = (b[6 + j] & 15) | (int)(((qh >> j) & 1) << 4);
        int hi = (b[6 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = (float)(lo - 16) * d;
        y[j + 16] = (float)(hi - 16) * d;
    }
}

static void deq_q5_1(const uint8_t *b, float *y)
{
    float d = ldh(b), m = ldh(b + 2);
    uint32_t qh = kern_ld32(b + 4);
    for (int j = 0; j < 16; j++) {
        int lo = (b[8 + j] & 15) | (int)(((qh >> j) & 1) << 4);
        int hi = (b[8 + j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
        y[j] = (float)lo * d + m;
        y[j + 16] = (float)hi * d + m;
    }
}

static void deq_q8_0(const uint8_t *b, float *y)
{
    float d = ldh(b);
    for (int j = 0; j < 32; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

static void deq_q4_K(const uint8_t *b, float *y)
{
    float d = ldh(b), dmin = ldh(b + 2);
    const uint8_t *scales = b + 4, *q = b + 16;
    for (int j = 0; j < 4; j++, q += 32, y += 64) {
        uint8_t sc, m;
        kern_scale_min_k4(2 * j, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        kern_scale_min_k4(2 * j + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) {
            y[l] = d1 * (float)(q[l] & 15) - m1;
            y[l + 32] = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static void deq_q5_K(const uint8_t *b, float *y)
{
    float d = ldh(b), dmin = ldh(b + 2);
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
    for (int j = 0; j < 4; j++, ql += 32, y += 64) {
        uint8_t sc, m;
        kern_scale_min_k4(2 * j, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        kern_scale_min_k4(2 * j + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) {
            int lo = (ql[l] & 15) | (((qh[l] >> (2 * j)) & 1) << 4);
            int hi = (ql[l] >> 4) | (((qh[l] >> (2 * j + 1)) & 1) << 4);
            y[l] = d1 * (float)lo - m1;
            y[l + 32] = d2 * (float)hi - m2;
        }
    }
}

static void deq_q6_K(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = ldh(b + 208);
    for (int n = 0; n < 2; n++, ql += 64, qh += 32, sc += 8, y += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * (float)sc[is] * (float)q1;
            y[l + 32] = d * (float)sc[is + 2] * (float)q2;
            y[l + 64] = d * (float)sc[is + 4] * (float)q3;
            y[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

static void deq_q8_K(const uint8_t *b, float *y)
{
    float d;
    memcpy(&d, b, 4);
    for (int j = 0; j < KQ_K; j++)
        y[j] = d * (float)(int8_t)b[4 + j];
}

void kern_dequantize(enum ggml_type t, const void *src, float *dst, int64_t n)
{
    const uint8_t *s = src;
    void (*blk)(const uint8_t *, float *) = NULL;
    switch (t) {
    case GGML_TYPE_F32:
        memcpy(dst, src, (size_t)n * 4);
        return;
    case GGML_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = kern_fp16_to_fp32(kern_ld16(s + 2 * i));
        return;
    case GGML_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = kern_bf16_to_fp32(kern_ld16(s + 2 * i));
        return;
    case GGML_TYPE_Q4_0:
        blk = deq_q4_0;
        break;
    case GGML_TYPE_Q4_1:
        blk = deq_q4_1;
        break;
    case GGML_TYPE_Q5_0:
        blk = deq_q5_0;
        break;
    case GGML_TYPE_Q5_1:
        blk = deq_q5_1;
        break;
    case GGML_TYPE_Q8_0:
        blk = deq_q8_0;
        break;
    case GGML_TYPE_Q4_K:
        blk = deq_q4_K;
        break;
    case GGML_TYPE_Q5_K:
        blk = deq_q5_K;
        break;
    case GGML_TYPE_Q6_K:
        blk = deq_q6_K;
        break;
    case GGML_TYPE_Q8_K:
        blk = deq_q8_K;
        break;
    default:
        assert(!"kern_dequantize: unsupported type");
        return;
    }
    int be = ggml_type_block_elems(t);
    size_t bb = ggml_type_block_bytes(t);
    assert(n % be == 0);
    for (int64_t i = 0; i < n / be; i++)
        blk(s + (size_t)i * bb, dst + i * be);
}

/* ---- input preparation ------------------------------------------------ */

enum kern_prep kern_prep_kind(enum ggml_type t)
{
    switch (t) {
    case GGML_TYPE_F32:
    case GGML_TYPE_F16:
    case GGML_TYPE_BF16:
        return KPREP_F32;
    case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1:
    case GGML_TYPE_Q5_0:
    case GGML_TYPE_Q5_1:
    case GGML_TYPE_Q8_0:
        return KPREP_Q8;
    case GGML_TYPE_Q4_K:
    case GGML_TYPE_Q5_K:
    case GGML_TYPE_Q6_K:
    case GGML_TYPE_Q8_K:
        return KPREP_Q8K;
    default:
        return KPREP_NONE;
    }
}

size_t kern_prep_row_bytes(enum ggml_type t, int n_cols)
{
    size_t n = n_cols > 0 ? (size_t)n_cols : 0, bytes = 0;
    switch (kern_prep_kind(t)) {
    case KPREP_F32:
        bytes = n * 4;
        break;
    case KPREP_Q8:
        if (n % KQ) return 0;
        bytes = n + (n / KQ) * 12;
        break;
    case KPREP_Q8K:
        if (n % KQ_K) return 0;
        bytes = n + (n / KQ_K) * 4 + (n / 16) * 2 + (n / 32) * 2;
        break;
    default:
        return 0;
    }
    return (bytes + 63) & ~(size_t)63;
}

size_t kern_input_bytes(enum ggml_type t, int n_tok, int n_cols)
{
    if (n_tok <= 0) return 0;
    return (size_t)n_tok * kern_prep_row_bytes(t, n_cols);
}

static float absmax(const float *x, int n)
{
    float m = 0.0f;
    for (int i = 0; i < n; i++)
        m = fmaxf(m, fabsf(x[i]));
    return m;
}

/* Rounds x * id to the nearest integer (ties to even) within +-127. */
static int8_t q8(float x, float id)
{
    long v = lrintf(x * id);
    return (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
}

void kern_prep_q8_tail(int n, int z, uint8_t *out)
{
    float *d = (float *)(out + n);
    int32_t *sum = (int32_t *)(d + n / KQ);
    int32_t *zsum = sum + n / KQ;
    for (int b = 0; b < n / KQ; b++)
        zsum[b] = -z * sum[b];
}

static void prep_q8(const float *x, int n, int z, uint8_t *out)
{
    int8_t *qs = (int8_t *)out;
    float *d = (float *)(out + n);
    int32_t *sum = (int32_t *)(d + n / KQ);
    for (int b = 0; b < n / KQ; b++) {
        const float *xb = x + b * KQ;
        float amax = absmax(xb, KQ);
        float db = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
        int32_t s = 0;
        for (int j = 0; j < KQ; j++) {
            qs[b * KQ + j] = q8(xb[j], id);
            s += qs[b * KQ + j];
        }
        d[b] = db;
        sum[b] = s;
    }
    kern_prep_q8_tail(n, z, out);
}

static void prep_q8k(const float *x, int n, uint8_t *out)
{
    int8_t *qs = (int8_t *)out;
    float *d = (float *)(out + n);
    int16_t *bsum = (int16_t *)(d + n / KQ_K);
    for (int b = 0; b < n / KQ_K; b++) {
        const float *xb = x + b * KQ_K;
        float amax = absmax(xb, KQ_K);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        for (int j = 0; j < KQ_K; j++)
            qs[b * KQ_K + j] = q8(xb[j], id);
        d[b] = amax / 127.0f;
    }
    for (int g = 0; g < n / 16; g++) {
        int s = 0;
        for (int j = 0; j < 16; j++)
            s += qs[g * 16 + j];
        bsum[g] = (int16_t)s;
    }
    int16_t *bsum32 = bsum + n / 16;
    for (int g = 0; g < n / 32; g++)
        bsum32[g] = (int16_t)(bsum[2 * g] + bsum[2 * g + 1]);
}

static const struct kern_ops *ops_get(void);

void kern_input_prepare(enum ggml_type t, const float *x, int n_tok, int n_cols, void *prepared)
{
    size_t stride = kern_prep_row_bytes(t, n_cols);
    assert(stride > 0 && ((uintptr_t)prepared & 3) == 0);
    enum kern_prep kind = kern_prep_kind(t);
    const struct kern_ops *ops = ops_get();
    void (*q8k)(const float *, int, uint8_t *) = ops->prep_q8k;
    void (*q8)(const float *, int, int, uint8_t *) = ops->prep_q8;
    for (int tok = 0; tok < n_tok; tok++) {
        uint8_t *out = (uint8_t *)prepared + (size_t)tok * stride;
        const float *xt = x + (size_t)tok * (size_t)n_cols;
        if (kind == KPREP_F32)
            memcpy(out, xt, (size_t)n_cols * 4);
        else if (kind == KPREP_Q8)
            (q8 ? q8 : prep_q8)(xt, n_cols, kern_zero_point(t), out);
        else
            (q8k ? q8k : prep_q8k)(xt, n_cols, out);
    }
}

/* ---- dispatch --------------------------------------------------------- */

static struct kern_ops ops_portable, ops_avx2, ops_avx512, ops_neon, ops_neon_dot;
static const struct kern_ops *ops_best = &ops_portable;
static pthread_once_t ops_once = PTHREAD_ONCE_INIT;
static _Atomic(const struct kern_ops *) ops_forced;
static atomic_bool blas_off;

/* Each level starts from the one below, so a type a level lacks falls back. */
static void ops_init(void)
{
    pthread_once(&f16_once, f16_table_init);
    kern_ops_portable(&ops_portable);
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        ops_avx2 = ops_portable;
        kern_ops_avx2(&ops_avx2);
        ops_best = &ops_avx2;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")) {
            ops_avx512 = ops_avx2;
            kern_ops_avx512(&ops_avx512);
            ops_best = &ops_avx512;
        }
    }
#elif defined(__aarch64__)
    /* Advanced SIMD is part of ARMv8-A; the dot product (optional before
     * ARMv8.4) is what the kernel reports in the auxiliary vector. */
    ops_neon = ops_portable;
    kern_ops_neon(&ops_neon);
    ops_best = &ops_neon;
    struct kern_ops dot = ops_neon;
    if ((getauxval(AT_HWCAP) & HWCAP_ASIMDDP) && kern_ops_neon_dot(&dot)) {
        ops_neon_dot = dot;
        ops_best = &ops_neon_dot;
    }
#endif
}

static const struct kern_ops *ops_get(void)
{
    pthread_once(&ops_once, ops_init);
    const struct kern_ops *f = atomic_load_explicit(&ops_forced, memory_order_relaxed);
    return f ? f : ops_best;
}

void kern_matmul(enum ggml_type t, const void *W, int n_cols, const void *prepared, int n_tok,
                 float *y, int y_stride, int r0, int r1)
{
    const struct kern_ops *ops = ops_get();
    assert((unsigned)t < KERN_N_TYPES && ops->mm[t]);
    if (r1 <= r0 || n_tok <= 0) return;
    size_t rb = ggml_row_bytes(t, (uint64_t)n_cols), ps = kern_prep_row_bytes(t, n_cols);
    /* the portable path stays free of OpenBLAS so every other path is tested against it */
    if (ops != &ops_portable && !atomic_load_explicit(&blas_off, memory_order_relaxed) &&
        kern_blas_matmul(t, W, rb, n_cols, prepared, ps, n_tok, y, y_stride, r0, r1))
        return;
    ops->mm[t](W, rb, n_cols, prepared, ps, n_tok, y, y_stride, r0, r1);
}

/* The packed layout is the best level's: a level forced later for tests
 * either has the same layout (it is the best level) or none. */
size_t kern_pack_bytes(enum ggml_type t, int n_rows, int n_cols)
{
    pthread_once(&ops_once, ops_init);
    if ((unsigned)t >= KERN_N_TYPES || !ops_best->pmm[t] || !ops_best->pack_bytes) return 0;
    return ops_best->pack_bytes(t, n_rows, n_cols);
}

void kern_pack(enum ggml_type t, const void *W, int n_rows, int n_cols, void *packed)
{
    assert(kern_pack_bytes(t, n_rows, n_cols) > 0 && ((uintptr_t)packed & 63) == 0);
    ops_best->pack(t, W, n_rows, n_cols, packed);
}

void kern_matmul_packed(enum ggml_type t, const void *W, const void *packed, int n_cols,
                        const void *prepared, int n_tok, float *y, int y_stride, int r0, int r1)
{
    const struct kern_ops *ops = ops_get();
    if (!packed || ops != ops_best || !ops->pmm[t]) {
        kern_matmul(t, W, n_cols, prepared, n_tok, y, y_stride, r0, r1);
        return;
    }
    if (r1 <= r0 || n_tok <= 0) return;
    ops->pmm[t](packed, n_cols, prepared, kern_prep_row_bytes(t, n_cols), n_tok, y, y_stride, r0,
                r1);
}

const char *kern_simd_level(void)
{
    return ops_get()->name;
}

void kern_force_portable(bool on)
{
    pthread_once(&ops_once, ops_init);
    atomic_store(&ops_forced, on ? &ops_portable : NULL);
}

void kern_use_blas(bool on)
{
    atomic_store(&blas_off, !on);
}

int kern_force_level(const char *name)
{
    pthread_once(&ops_once, ops_init);
    const struct kern_ops *levels[] = {&ops_portable, &ops_avx2, &ops_avx512, &ops_neon,
                                       &ops_neon_dot};
    if (!name) {
        atomic_store(&ops_forced, NULL);
        return 0;
    }
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if (levels[i]->name && strcmp(levels[i]->name, name) == 0) {
            atomic_store(&ops_forced, levels[i]);
            return 0;
        }
    }
    return -1;
}
