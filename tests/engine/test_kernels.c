/* Tests of the engine's numeric kernels: the type table, f16/bf16
 * conversion, dequantisation against hand-built blocks, quantise/dequantise
 * error, and matmul against a double-precision reference on every path. */
#include "base/base.h"
#include "engine/kernels.h"
#include "test.h"

#include <math.h>
#include <stdint.h>

/* ---- helpers ----------------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ull;

static uint32_t rng_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Roughly normal values (sum of uniforms), scaled. */
static float rng_normal(float scale)
{
    float s = 0;
    for (int i = 0; i < 4; i++)
        s += (float)(rng_u32() & 0xffffff) / 16777216.0f - 0.5f;
    return s * 1.7f * scale;
}

static void fill_normal(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_normal(scale);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static const enum ggml_type all_types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q4_0, GGML_TYPE_Q4_1, GGML_TYPE_Q5_0,
    GGML_TYPE_Q5_1, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K, GGML_TYPE_Q8_K,
};

/* ---- type table -------------------------------------------------------- */

static void test_type_table(void)
{
    struct {
        enum ggml_type t;
        const char *name;
        int elems;
        size_t bytes;
    } want[] = {
        {GGML_TYPE_F32, "F32", 1, 4},       {GGML_TYPE_F16, "F16", 1, 2},
        {GGML_TYPE_BF16, "BF16", 1, 2},     {GGML_TYPE_Q4_0, "Q4_0", 32, 18},
        {GGML_TYPE_Q4_1, "Q4_1", 32, 20},   {GGML_TYPE_Q5_0, "Q5_0", 32, 22},
        {GGML_TYPE_Q5_1, "Q5_1", 32, 24},   {GGML_TYPE_Q8_0, "Q8_0", 32, 34},
        {GGML_TYPE_Q4_K, "Q4_K", 256, 144}, {GGML_TYPE_Q5_K, "Q5_K", 256, 176},
        {GGML_TYPE_Q6_K, "Q6_K", 256, 210}, {GGML_TYPE_Q8_K, "Q8_K", 256, 292},
    };
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        ASSERT(ggml_type_supported(want[i].t));
        ASSERT_STR_EQ(ggml_type_name(want[i].t), want[i].name);
        ASSERT_EQ(ggml_type_block_elems(want[i].t), want[i].elems);
        ASSERT_EQ(ggml_type_block_bytes(want[i].t), want[i].bytes);
        ASSERT_EQ(ggml_row_bytes(want[i].t, (uint64_t)want[i].elems * 7), want[i].bytes * 7);
    }
    /* known to GGUF but not computable here, and unknown ids */
    ASSERT(!ggml_type_supported(GGML_TYPE_Q2_K));
    ASSERT_STR_EQ(ggml_type_name(GGML_TYPE_Q3_K), "Q3_K");
    ASSERT(!ggml_type_supported(4));
    ASSERT(ggml_type_name(4) == NULL);
    ASSERT(ggml_type_name(31) == NULL);
    ASSERT(ggml_type_name(0xffffffffu) == NULL);
    ASSERT(!ggml_type_supported(1000));
    ASSERT_EQ(ggml_type_block_bytes((enum ggml_type)77), 0);
}

static void test_row_bytes_rejects_partial_blocks(void)
{
    ASSERT_EQ(ggml_row_bytes(GGML_TYPE_Q4_0, 33), 0);
    ASSERT_EQ(ggml_row_bytes(GGML_TYPE_Q8_0, 31), 0);
    ASSERT_EQ(ggml_row_bytes(GGML_TYPE_Q4_K, 255), 0);
    ASSERT_EQ(ggml_row_bytes(GGML_TYPE_Q6_K, 512 + 32), 0);
    ASSERT_EQ(ggml_row_bytes(GGML_TYPE_F16, 3), 6);
    ASSERT_EQ(ggml_row_bytes(GGML_TYPE_Q4_0, 0), 0);
    /* overflow is refused, not wrapped */
    ASSERT_EQ(ggml_row_bytes(GGML_TYPE_F32, UINT64_MAX / 2), 0);
    ASSERT_EQ(ggml_row_bytes(GGML_TYPE_Q8_K, (UINT64_MAX / 256) * 256), 0);
    ASSERT_EQ(ggml_row_bytes((enum ggml_type)5, 32), 0);
    ASSERT_EQ(kern_input_bytes(GGML_TYPE_Q4_K, 1, 100), 0);
    ASSERT_EQ(kern_input_bytes(GGML_TYPE_Q8_0, 1, 48), 0);
    ASSERT_CMP(kern_input_bytes(GGML_TYPE_Q8_0, 3, 64), >=, 3 * (64 + 2 * 8));
}

/* ---- f16 / bf16 -------------------------------------------------------- */

static void test_fp16_known_values(void)
{
    ASSERT_EQ(kern_fp32_to_fp16(1.0f), 0x3c00);
    ASSERT_EQ(kern_fp32_to_fp16(-2.0f), 0xc000);
    ASSERT_EQ(kern_fp32_to_fp16(0.5f), 0x3800);
    ASSERT_EQ(kern_fp32_to_fp16(65504.0f), 0x7bff);
    ASSERT_EQ(kern_fp32_to_fp16(65519.0f), 0x7bff);
    ASSERT_EQ(kern_fp32_to_fp16(65520.0f), 0x7c00);
    ASSERT_EQ(kern_fp32_to_fp16(1e9f), 0x7c00);
    ASSERT_EQ(kern_fp32_to_fp16(-INFINITY), 0xfc00);
    ASSERT_EQ(kern_fp32_to_fp16(0x1p-24f), 0x0001);
    ASSERT_EQ(kern_fp32_to_fp16(0x1p-25f), 0x0000);   /* tie to even: 0 */
    ASSERT_EQ(kern_fp32_to_fp16(0x1.8p-24f), 0x0002); /* 1.5 ulp: tie to even 2 */
    ASSERT_EQ(kern_fp32_to_fp16(0x1p-14f), 0x0400);   /* smallest normal */
    ASSERT_EQ(kern_fp32_to_fp16(0x1.ffcp-15f),
              0x0400); /* 1023.5 subnormal steps: to even, normal */
    ASSERT_EQ(kern_fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);   /* tie, even stays */
    ASSERT_EQ(kern_fp32_to_fp16(1.0f + 0x3p-11f), 0x3c02);   /* tie, odd rounds up */
    ASSERT_EQ(kern_fp32_to_fp16(1.0f + 0x1.1p-11f), 0x3c01); /* above tie */
    ASSERT_EQ(kern_fp32_to_fp16(-0.0f), 0x8000);
    uint16_t nan = kern_fp32_to_fp16(NAN);
    ASSERT_EQ(nan & 0x7c00, 0x7c00);
    ASSERT_NE(nan & 0x3ff, 0);
    ASSERT_NEAR(kern_fp16_to_fp32(0x3555), 0.333251953125, 0);
    ASSERT_NEAR(kern_fp16_to_fp32(0x0001), 0x1p-24, 0);
    ASSERT_NEAR(kern_fp16_to_fp32(0x83ff), -0x3ffp-24, 0);
    ASSERT_NEAR(kern_fp16_to_fp32(0x7bff), 65504.0, 0);
    ASSERT(isinf(kern_fp16_to_fp32(0x7c00)));
    ASSERT(isnan(kern_fp16_to_fp32(0x7e00)));
}

static void test_fp16_round_trip_all(void)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kern_fp16_to_fp32((uint16_t)h);
        if (isnan(f)) continue;
        ASSERT_EQ(kern_fp32_to_fp16(f), h);
    }
}

static void test_bf16(void)
{
    ASSERT_EQ(kern_fp32_to_bf16(1.0f), 0x3f80);
    ASSERT_EQ(kern_fp32_to_bf16(-3.0f), 0xc040);
    ASSERT_EQ(kern_fp32_to_bf16(1.0f + 0x1p-8f), 0x3f80); /* tie, even */
    ASSERT_EQ(kern_fp32_to_bf16(1.0f + 0x3p-8f), 0x3f82); /* tie, odd up */
    ASSERT_EQ(kern_fp32_to_bf16(1.0f + 0x1p-7f), 0x3f81); /* exact */
    ASSERT(isnan(kern_bf16_to_fp32(kern_fp32_to_bf16(NAN))));
    ASSERT_NEAR(kern_bf16_to_fp32(0x4049), 3.140625, 0);
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kern_bf16_to_fp32((uint16_t)h);
        if (isnan(f)) continue;
        ASSERT_EQ(kern_fp32_to_bf16(f), h);
    }
}

/* ---- dequantisation of hand-built blocks ------------------------------- */

static void test_dequant_f32_f16_bf16(void)
{
    uint8_t h[6];
    put16(h, 0x3c00);
    put16(h + 2, 0xc200); /* -3 */
    put16(h + 4, 0x3555);
    float y[3];
    kern_dequantize(GGML_TYPE_F16, h, y, 3);
    ASSERT_NEAR(y[0], 1.0, 0);
    ASSERT_NEAR(y[1], -3.0, 0);
    ASSERT_NEAR(y[2], 0.333251953125, 0);
    put16(h, 0x3f80);
    put16(h + 2, 0xc040);
    put16(h + 4, 0x4049);
    kern_dequantize(GGML_TYPE_BF16, h, y, 3);
    ASSERT_NEAR(y[0], 1.0, 0);
    ASSERT_NEAR(y[1], -3.0, 0);
    ASSERT_NEAR(y[2], 3.140625, 0);
    float src[3] = {1.5f, -2.25f, 1e-30f};
    kern_dequantize(GGML_TYPE_F32, src, y, 3);
    ASSERT(memcmp(src, y, sizeof src) == 0);
}

static void test_dequant_q4_0(void)
{
    uint8_t b[18 * 2];
    for (int k = 0; k < 2; k++) {
        put16(b + 18 * k, k ? 0xb800 : 0x3800); /* d = 0.5, then -0.5 */
        for (int j = 0; j < 16; j++)
            b[18 * k + 2 + j] = (uint8_t)(j | ((15 - j) << 4));
    }
    float y[64];
    kern_dequantize(GGML_TYPE_Q4_0, b, y, 64);
    ASSERT_NEAR(y[0], -4.0, 0);  /* (0-8)*0.5 */
    ASSERT_NEAR(y[15], 3.5, 0);  /* (15-8)*0.5 */
    ASSERT_NEAR(y[16], 3.5, 0);  /* high nibble of byte 0 is 15 */
    ASSERT_NEAR(y[31], -4.0, 0); /* high nibble of byte 15 is 0 */
    ASSERT_NEAR(y[32], 4.0, 0);  /* second block, d = -0.5 */
    for (int j = 0; j < 16; j++) {
        ASSERT_NEAR(y[j], (j - 8) * 0.5, 0);
        ASSERT_NEAR(y[16 + j], (7 - j) * 0.5, 0);
        ASSERT_NEAR(y[32 + j], (j - 8) * -0.5, 0);
    }
}

static void test_dequant_q4_1(void)
{
    uint8_t b[20];
    put16(b, 0x3400);     /* d = 0.25 */
    put16(b + 2, 0xbc00); /* m = -1 */
    for (int j = 0; j < 16; j++)
        b[4 + j] = (uint8_t)(j | ((15 - j) << 4));
    float y[32];
    kern_dequantize(GGML_TYPE_Q4_1, b, y, 32);
    ASSERT_NEAR(y[0], -1.0, 0);
    ASSERT_NEAR(y[15], 2.75, 0);
    ASSERT_NEAR(y[16], 2.75, 0);
    for (int j = 0; j < 16; j++) {
        ASSERT_NEAR(y[j], j * 0.25 - 1, 0);
        ASSERT_NEAR(y[16 + j], (15 - j) * 0.25 - 1, 0);
    }
}

static void test_dequant_q5_0_and_q5_1(void)
{
    uint8_t b[22];
    put16(b, 0x3c00); /* d = 1 */
    /* high bits: element j (<16) gets bit j, element 16+j gets bit 16+j */
    uint32_t qh = 0x8001F00Eu;
    memcpy(b + 2, &qh, 4);
    for (int j = 0; j < 16; j++)
        b[6 + j] = (uint8_t)(j | (3 << 4));
    float y[32];
    kern_dequantize(GGML_TYPE_Q5_0, b, y, 32);
    ASSERT_NEAR(y[0], -16.0, 0);  /* 0 | 0 - 16 */
    ASSERT_NEAR(y[1], 1.0, 0);    /* 1 | 16 - 16 */
    ASSERT_NEAR(y[3], 3.0, 0);    /* 3 | 16 - 16 */
    ASSERT_NEAR(y[4], -12.0, 0);  /* 4 - 16 */
    ASSERT_NEAR(y[15], 15.0, 0);  /* bit 15 set: 15+16-16 */
    ASSERT_NEAR(y[16], 3.0, 0);   /* bit 16 set: 3+16-16 */
    ASSERT_NEAR(y[17], -13.0, 0); /* bit 17 clear */
    ASSERT_NEAR(y[31], 3.0, 0);   /* bit 31 set */
    for (int j = 0; j < 32; j++) {
        int lo = j < 16 ? j : 3, bit = (int)((qh >> j) & 1);
        ASSERT_NEAR(y[j], lo + 16 * bit - 16, 0);
    }
    uint8_t c[24];
    put16(c, 0x3800);     /* d = 0.5 */
    put16(c + 2, 0x4000); /* m = 2 */
    memcpy(c + 4, &qh, 4);
    memcpy(c + 8, b + 6, 16);
    kern_dequantize(GGML_TYPE_Q5_1, c, y, 32);
    ASSERT_NEAR(y[0], 2.0, 0);
    ASSERT_NEAR(y[1], 2.0 + 17 * 0.5, 0);
    for (int j = 0; j < 32; j++) {
        int lo = j < 16 ? j : 3, bit = (int)((qh >> j) & 1);
        ASSERT_NEAR(y[j], (lo + 16 * bit) * 0.5 + 2, 0);
    }
}

static void test_dequant_q8_0(void)
{
    uint8_t b[34];
    put16(b, 0x3000); /* d = 0.125 */
    for (int j = 0; j < 32; j++)
        b[2 + j] = (uint8_t)(int8_t)(j * 8 - 128);
    float y[32];
    kern_dequantize(GGML_TYPE_Q8_0, b, y, 32);
    ASSERT_NEAR(y[0], -16.0, 0);
    ASSERT_NEAR(y[31], 15.0, 0);
    for (int j = 0; j < 32; j++)
        ASSERT_NEAR(y[j], j - 16, 0);
}

/* The 12-byte scale field of q4_K/q5_K, packed from the format's description:
 * bytes 0-3: low 6 bits scale[0..3], top 2 bits = scale[4..7] >> 4;
 * bytes 4-7: low 6 bits min[0..3], top 2 bits = min[4..7] >> 4;
 * bytes 8-11: low nibble scale[4..7] & 15, high nibble min[4..7] & 15. */
static void pack_k4_scales(uint8_t out[12], const int sc[8], const int mn[8])
{
    for (int j = 0; j < 4; j++) {
        out[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        out[j + 4] = (uint8_t)(mn[j] | ((mn[j + 4] >> 4) << 6));
        out[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
}

static const int k_sc[8] = {1, 2, 3, 63, 17, 33, 50, 5};
static const int k_mn[8] = {0, 5, 63, 10, 16, 31, 48, 7};

static void test_dequant_q4_K(void)
{
    uint8_t b[144];
    put16(b, 0x3c00);     /* d = 1 */
    put16(b + 2, 0x3800); /* dmin = 0.5 */
    pack_k4_scales(b + 4, k_sc, k_mn);
    for (int i = 0; i < 128; i++)
        b[16 + i] = (uint8_t)(i * 7 + 3);
    float y[256];
    kern_dequantize(GGML_TYPE_Q4_K, b, y, 256);
    /* element 0: low nibble of qs[0]=3, sub-block 0: 1*3 - 0.5*0 */
    ASSERT_NEAR(y[0], 3.0, 0);
    /* element 32: high nibble of qs[0]=0, sub-block 1: 2*0 - 0.5*5 */
    ASSERT_NEAR(y[32], -2.5, 0);
    /* element 64: low nibble of qs[32] = (227 & 15) = 3, sub-block 2: 3*3 - 0.5*63 */
    ASSERT_NEAR(y[64], 9 - 31.5, 0);
    /* element 255: high nibble of qs[127] = (892 & 255) >> 4 = 7, sub-block 7: 5*7 - 3.5 */
    ASSERT_NEAR(y[255], 35 - 3.5, 0);
    for (int e = 0; e < 256; e++) {
        int chunk = e / 64, l = e % 32, high = (e % 64) >= 32, sb = e / 32;
        int byte = (int)(uint8_t)((32 * chunk + l) * 7 + 3);
        int q = high ? byte >> 4 : byte & 15;
        ASSERT_NEAR(y[e], 1.0 * k_sc[sb] * q - 0.5 * k_mn[sb], 0);
    }
}

static void test_dequant_q5_K(void)
{
    uint8_t b[176];
    put16(b, 0x3800);     /* d = 0.5 */
    put16(b + 2, 0x3c00); /* dmin = 1 */
    pack_k4_scales(b + 4, k_sc, k_mn);
    for (int i = 0; i < 32; i++)
        b[16 + i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < 128; i++)
        b[48 + i] = (uint8_t)(i * 7 + 3);
    float y[256];
    kern_dequantize(GGML_TYPE_Q5_K, b, y, 256);
    /* element 0: qs[0]&15 = 3, qh[0]=11 bit 0 set: 19; 0.5*1*19 - 0 */
    ASSERT_NEAR(y[0], 9.5, 0);
    for (int e = 0; e < 256; e++) {
        int chunk = e / 64, l = e % 32, high = (e % 64) >= 32, sb = e / 32;
        int byte = (int)(uint8_t)((32 * chunk + l) * 7 + 3);
        int hbyte = (int)(uint8_t)(l * 37 + 11);
        int q = (high ? byte >> 4 : byte & 15) + 16 * ((hbyte >> sb) & 1);
        ASSERT_NEAR(y[e], 0.5 * k_sc[sb] * q - 1.0 * k_mn[sb], 0);
    }
}

static void test_dequant_q6_K(void)
{
    uint8_t b[210];
    for (int i = 0; i < 128; i++)
        b[i] = (uint8_t)(i * 3 + 1);
    for (int i = 0; i < 64; i++)
        b[128 + i] = (uint8_t)(i * 5 + 2);
    for (int g = 0; g < 16; g++)
        b[192 + g] = (uint8_t)(int8_t)(g * 9 - 70);
    put16(b + 208, 0x3800); /* d = 0.5 */
    float y[256];
    kern_dequantize(GGML_TYPE_Q6_K, b, y, 256);
    /* element 0: ql[0]=1 low nibble 1, qh[0]=2 bits 0-1 = 2: q = 33-32 = 1; scale -70 */
    ASSERT_NEAR(y[0], 0.5 * -70 * 1, 0);
    /* element 64: ql[0] high nibble 0, qh[0] bits 4-5 = 0: q = -32; scale[4] = -34 */
    ASSERT_NEAR(y[64], 0.5 * -34 * -32, 0);
    for (int e = 0; e < 256; e++) {
        int half = e / 128, i = e % 128, quarter = i / 32, l = i % 32;
        int qlb = (int)(uint8_t)((64 * half + (quarter & 1) * 32 + l) * 3 + 1);
        int low = quarter >= 2 ? qlb >> 4 : qlb & 15;
        int qhb = (int)(uint8_t)((32 * half + l) * 5 + 2);
        int q = (low | (((qhb >> (2 * quarter)) & 3) << 4)) - 32;
        ASSERT_NEAR(y[e], 0.5 * (e / 16 * 9 - 70) * q, 0);
    }
}

static void test_dequant_q8_K(void)
{
    uint8_t b[292];
    float d = 0.25f;
    memcpy(b, &d, 4);
    for (int j = 0; j < 256; j++)
        b[4 + j] = (uint8_t)(int8_t)(j - 128);
    memset(b + 260, 0, 32);
    float y[256];
    kern_dequantize(GGML_TYPE_Q8_K, b, y, 256);
    for (int j = 0; j < 256; j++)
        ASSERT_NEAR(y[j], (j - 128) * 0.25, 0);
}

/* ---- quantise -> dequantise ------------------------------------------- */

/* Values that a type represents exactly come back unchanged. */
static void test_quant_exact_values(void)
{
    float x[32], y[32];
    uint8_t b[64];
    for (int j = 0; j < 32; j++)
        x[j] = (float)((j * 11) % 255 - 127) * 0.0625f;
    x[5] = -127 * 0.0625f;
    kern_quantize(GGML_TYPE_Q8_0, x, b, 32);
    kern_dequantize(GGML_TYPE_Q8_0, b, y, 32);
    for (int j = 0; j < 32; j++)
        ASSERT_NEAR(y[j], x[j], 0);
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j % 16 - 8) * 0.25f; /* -8 sets the scale */
    kern_quantize(GGML_TYPE_Q4_0, x, b, 32);
    kern_dequantize(GGML_TYPE_Q4_0, b, y, 32);
    for (int j = 0; j < 32; j++)
        ASSERT_NEAR(y[j], x[j], 0);
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j - 16) * 0.5f;
    kern_quantize(GGML_TYPE_Q5_0, x, b, 32);
    kern_dequantize(GGML_TYPE_Q5_0, b, y, 32);
    for (int j = 0; j < 32; j++)
        ASSERT_NEAR(y[j], x[j], 0);
    for (int j = 0; j < 32; j++)
        x[j] = (float)(j % 16) * 0.5f + 1.0f;
    kern_quantize(GGML_TYPE_Q4_1, x, b, 32);
    kern_dequantize(GGML_TYPE_Q4_1, b, y, 32);
    for (int j = 0; j < 32; j++)
        ASSERT_NEAR(y[j], x[j], 0);
    for (int j = 0; j < 32; j++)
        x[j] = (float)j * 0.25f - 2.0f;
    kern_quantize(GGML_TYPE_Q5_1, x, b, 32);
    kern_dequantize(GGML_TYPE_Q5_1, b, y, 32);
    for (int j = 0; j < 32; j++)
        ASSERT_NEAR(y[j], x[j], 0);
}

static void test_quant_zeros(void)
{
    float x[256] = {0}, y[256];
    uint8_t b[1024];
    for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
        memset(b, 0xAB, sizeof b);
        kern_quantize(all_types[i], x, b, 256);
        for (int j = 0; j < 256; j++)
            y[j] = 1.0f;
        kern_dequantize(all_types[i], b, y, 256);
        for (int j = 0; j < 256; j++)
            ASSERT_NEAR(y[j], 0.0, 0);
    }
}

/* Relative RMS error of dequant(quant(x)) on normal data, with per-type
 * ceilings (about 1.3x what these algorithms reach; ggml's reference
 * quantisers land at the same figures), plus rigorous per-element bounds
 * for the simple types. */
static void test_quant_error(void)
{
    enum { N = 256 * 64 };
    static float x[N], y[N];
    static uint8_t q[N * 4 + 64];
    struct {
        enum ggml_type t;
        double max_rel_rmse;
    } lim[] = {
        {GGML_TYPE_F32, 0},       {GGML_TYPE_F16, 0.0003}, {GGML_TYPE_BF16, 0.0022},
        {GGML_TYPE_Q8_0, 0.0066}, {GGML_TYPE_Q5_0, 0.053}, {GGML_TYPE_Q5_1, 0.048},
        {GGML_TYPE_Q4_0, 0.107},  {GGML_TYPE_Q4_1, 0.099}, {GGML_TYPE_Q4_K, 0.090},
        {GGML_TYPE_Q5_K, 0.046},  {GGML_TYPE_Q6_K, 0.022}, {GGML_TYPE_Q8_K, 0.0080},
    };
    fill_normal(x, N, 0.02f);
    for (size_t i = 0; i < ARRAY_LEN(lim); i++) {
        kern_quantize(lim[i].t, x, q, N);
        kern_dequantize(lim[i].t, q, y, N);
        double se = 0, sx = 0;
        for (int j = 0; j < N; j++) {
            se += ((double)y[j] - x[j]) * ((double)y[j] - x[j]);
            sx += (double)x[j] * x[j];
        }
        double rel = sqrt(se / sx);
        fprintf(stderr, "    %-5s rel rmse %.5f\n", ggml_type_name(lim[i].t), rel);
        ASSERT_CMP(rel * 1e6, <=, lim[i].max_rel_rmse * 1e6);
    }
    /* per element: q8_0 within half a step (plus the f16 rounding of d) */
    kern_quantize(GGML_TYPE_Q8_0, x, q, N);
    kern_dequantize(GGML_TYPE_Q8_0, q, y, N);
    for (int b = 0; b < N / 32; b++) {
        double amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmax(amax, fabs(x[32 * b + j]));
        for (int j = 0; j < 32; j++)
            ASSERT_CMP(fabs(y[32 * b + j] - x[32 * b + j]), <=, amax / 254 * 1.01 + amax * 0x1p-11);
    }
    /* q4_0: within one step (clamping at +7 costs up to a step) */
    kern_quantize(GGML_TYPE_Q4_0, x, q, N);
    kern_dequantize(GGML_TYPE_Q4_0, q, y, N);
    for (int b = 0; b < N / 32; b++) {
        double amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmax(amax, fabs(x[32 * b + j]));
        for (int j = 0; j < 32; j++)
            ASSERT_CMP(fabs(y[32 * b + j] - x[32 * b + j]) * 1e9, <=, (amax / 8 * 1.01) * 1e9);
    }
}

/* ---- matmul ------------------------------------------------------------ */

struct mm_case {
    enum ggml_type t;
    int n_rows, n_cols;
    uint8_t *W; /* quantised weights */
    float *Wd;  /* their dequantised values */
    size_t row_bytes;
};

static int mm_case_init(struct mm_case *c, enum ggml_type t, int n_rows, int n_cols)
{
    c->t = t;
    c->n_rows = n_rows;
    c->n_cols = n_cols;
    c->row_bytes = ggml_row_bytes(t, (uint64_t)n_cols);
    float *w = malloc(sizeof(float) * (size_t)n_rows * (size_t)n_cols);
    c->W = malloc(c->row_bytes * (size_t)n_rows);
    c->Wd = malloc(sizeof(float) * (size_t)n_rows * (size_t)n_cols);
    if (!w || !c->W || !c->Wd) return -1;
    fill_normal(w, (int64_t)n_rows * n_cols, 0.05f);
    for (int r = 0; r < n_rows; r++) {
        kern_quantize(t, w + (size_t)r * n_cols, c->W + (size_t)r * c->row_bytes, n_cols);
        kern_dequantize(t, c->W + (size_t)r * c->row_bytes, c->Wd + (size_t)r * n_cols, n_cols);
    }
    free(w);
    return 0;
}

static void mm_case_free(struct mm_case *c)
{
    free(c->W);
    free(c->Wd);
}

/* Activation block size the prepared input quantises over (0: kept f32). */
static int act_block(enum ggml_type t)
{
    if (t == GGML_TYPE_F32 || t == GGML_TYPE_F16 || t == GGML_TYPE_BF16) return 0;
    return ggml_type_block_elems(t);
}

/* Bound on |kernel - exact| for one output: the activations are rounded to
 * within half a step (amax/127/2 per block of act_block elements), each
 * such error multiplied by |w|; plus f32 rounding in the sums. */
static double mm_bound(const struct mm_case *c, const float *w, const float *x)
{
    int ab = act_block(c->t);
    double bound = 0, mag = 0;
    for (int i = 0; i < c->n_cols; i++)
        mag += fabs((double)w[i] * x[i]);
    if (ab) {
        for (int b = 0; b < c->n_cols / ab; b++) {
            double amax = 0, sw = 0;
            for (int j = 0; j < ab; j++) {
                amax = fmax(amax, fabs(x[b * ab + j]));
                sw += fabs(w[b * ab + j]);
            }
            bound += sw * amax / 254 * 1.0001;
        }
    }
    return bound + mag * 2e-6 * sqrt((double)c->n_cols) + 1e-30;
}

static void run_mm(const struct mm_case *c, const float *x, int n_tok, float *y, int r0, int r1)
{
    size_t pb = kern_input_bytes(c->t, n_tok, c->n_cols);
    void *prep = aligned_alloc(64, (pb + 63) / 64 * 64);
    kern_input_prepare(c->t, x, n_tok, c->n_cols, prep);
    kern_matmul(c->t, c->W, c->n_cols, prep, n_tok, y, c->n_rows + 3, r0, r1);
    free(prep);
}

static void run_mm_packed(const struct mm_case *c, const void *packed, const float *x, int n_tok,
                          float *y, int r0, int r1)
{
    size_t pb = kern_input_bytes(c->t, n_tok, c->n_cols);
    void *prep = aligned_alloc(64, (pb + 63) / 64 * 64);
    kern_input_prepare(c->t, x, n_tok, c->n_cols, prep);
    kern_matmul_packed(c->t, c->W, packed, c->n_cols, prep, n_tok, y, c->n_rows + 3, r0, r1);
    free(prep);
}

static void check_mm_type(enum ggml_type t, int n_cols)
{
    const int n_rows = 37, y_stride = n_rows + 3;
    static const int toks[] = {1, 3, 17};
    struct mm_case c;
    ASSERT_EQ(mm_case_init(&c, t, n_rows, n_cols), 0);
    float *x = malloc(sizeof(float) * 17 * (size_t)n_cols);
    float *y = malloc(sizeof(float) * 17 * (size_t)y_stride);
    ASSERT(x && y);
    fill_normal(x, 17 * (int64_t)n_cols, 1.0f);
    x[5] = 40.0f; /* an outlier, as real activations have */
    double worst = 0;
    for (size_t k = 0; k < ARRAY_LEN(toks); k++) {
        int n_tok = toks[k], r0 = k == 0 ? 0 : 1, r1 = k == 0 ? n_rows : n_rows - 2;
        for (int i = 0; i < n_tok * y_stride; i++)
            y[i] = -12345.0f;
        run_mm(&c, x, n_tok, y, r0, r1);
        for (int tok = 0; tok < n_tok; tok++) {
            const float *xt = x + (size_t)tok * n_cols;
            for (int r = 0; r < y_stride; r++) {
                float got = y[tok * y_stride + r];
                if (r < r0 || r >= r1) {
                    if (got != -12345.0f) {
                        free(x), free(y), mm_case_free(&c);
                        TEST_FAIL_("%s row %d outside [%d,%d) was written", ggml_type_name(t), r,
                                   r0, r1);
                    }
                    continue;
                }
                const float *w = c.Wd + (size_t)r * n_cols;
                double ref = 0;
                for (int i = 0; i < n_cols; i++)
                    ref += (double)w[i] * xt[i];
                double err = fabs(got - ref), bound = mm_bound(&c, w, xt);
                worst = fmax(worst, err / bound);
                if (!(err <= bound)) {
                    free(x), free(y), mm_case_free(&c);
                    TEST_FAIL_("%s n_cols %d n_tok %d tok %d row %d: %.9g vs %.9g (bound %.3g)",
                               ggml_type_name(t), n_cols, n_tok, tok, r, got, ref, bound);
                }
            }
        }
    }
    fprintf(stderr, "    %-5s n_cols %4d [%s] worst err/bound %.3f\n", ggml_type_name(t), n_cols,
            kern_simd_level(), worst);
    free(x);
    free(y);
    mm_case_free(&c);
}

static void test_matmul_vs_reference(void)
{
    for (size_t i = 0; i < ARRAY_LEN(all_types); i++) {
        int be = ggml_type_block_elems(all_types[i]);
        check_mm_type(all_types[i], be == 256 ? 768 : 96 + (be == 1 ? 3 : 0));
        if (test_cur_failed_) return;
        check_mm_type(all_types[i], 512);
        if (test_cur_failed_) return;
    }
}

static void test_matmul_portable_vs_reference(void)
{
    kern_force_portable(true);
    test_matmul_vs_reference();
    kern_force_portable(false);
}

/* The SIMD paths and the portable path compute the same per-block integers,
 * so they differ only in the order of f32 sums: compare tightly. The NEON
 * levels also keep the portable order of f32 operations, so with `exact`
 * (and OpenBLAS off) they must give the same bits. */
static void check_level_matches_portable(const char *level, int n_cols, bool exact, int max_tok)
{
    const int n_rows = 29, ys = n_rows + 3;
    /* 16+ and 128+ tokens take the OpenBLAS path for F32 and F16/BF16 */
    static const int toks[] = {1, 2, 3, 4, 5, 8, 9, 17, 33, 130};
    float *x = malloc(sizeof(float) * 130 * n_cols);
    float *ysimd = malloc(sizeof(float) * 130 * ys);
    float *yp = malloc(sizeof(float) * 130 * ys);
    ASSERT(x && ysimd && yp);
    fill_normal(x, 130 * n_cols, 1.0f);
    x[77] = -30.0f;
    int bad = 0;
    if (exact) kern_use_blas(false);
    for (size_t i = 0; i < ARRAY_LEN(all_types) && !bad; i++) {
        if (n_cols % ggml_type_block_elems(all_types[i])) continue;
        struct mm_case c;
        if (mm_case_init(&c, all_types[i], n_rows, n_cols) != 0) bad = 1;
        for (size_t k = 0; k < ARRAY_LEN(toks) && toks[k] <= max_tok && !bad; k++) {
            int nt = toks[k], r0 = (int)k % 3, r1 = n_rows - (int)k % 2;
            kern_force_portable(true);
            run_mm(&c, x, nt, yp, r0, r1);
            kern_force_level(level);
            run_mm(&c, x, nt, ysimd, r0, r1);
            kern_force_level(NULL);
            for (int tok = 0; tok < nt && !bad; tok++)
                for (int r = r0; r < r1 && !bad; r++) {
                    float a = ysimd[tok * ys + r], b = yp[tok * ys + r];
                    double mag = 0;
                    for (int j = 0; j < n_cols && !exact; j++)
                        mag += fabs((double)c.Wd[(size_t)r * n_cols + j] * x[tok * n_cols + j]);
                    if (exact ? memcmp(&a, &b, sizeof a) != 0 : !(fabs(a - b) <= mag * 2e-6)) {
                        fprintf(stderr, "  %s %s n_tok %d tok %d row %d: %.9g vs portable %.9g\n",
                                level, ggml_type_name(all_types[i]), nt, tok, r, a, b);
                        bad = 1;
                    }
                }
        }
        mm_case_free(&c);
    }
    kern_use_blas(true);
    free(x);
    free(ysimd);
    free(yp);
    ASSERT(!bad);
}

static void test_simd_matches_portable(void)
{
    static const char *levels[] = {"avx2", "avx512", "neon", "neon-dotprod"};
    int n = 0;
    fprintf(stderr, "    best level: %s\n", kern_simd_level());
    for (size_t i = 0; i < ARRAY_LEN(levels); i++) {
        if (kern_force_level(levels[i]) != 0) continue;
        kern_force_level(NULL);
        bool exact = strncmp(levels[i], "neon", 4) == 0;
        fprintf(stderr, "    checking %s%s\n", levels[i], exact ? " (bit-identical)" : "");
        check_level_matches_portable(levels[i], 1024, exact, 130);
        if (test_cur_failed_) return;
        /* wide rows: the AVX-512 kernels switch to a layout with less input per row visit */
        check_level_matches_portable(levels[i], 4096, exact, 130);
        if (test_cur_failed_) return;
        /* rows ending in a partial group: 35 blocks of 32 (NEON takes 4 at a
         * time; the 256-element types skip this width), and 1123 floats (not a
         * multiple of 8 or 16; float types only) */
        check_level_matches_portable(levels[i], 1120, exact, 9);
        if (test_cur_failed_) return;
        check_level_matches_portable(levels[i], 1123, exact, 9);
        if (test_cur_failed_) return;
        n++;
    }
    if (!n) fprintf(stderr, "    no SIMD level on this CPU; portable only\n");
    ASSERT_EQ(kern_force_level("no-such-level"), -1);
    ASSERT_EQ(kern_force_level("portable"), 0);
    ASSERT_STR_EQ(kern_simd_level(), "portable");
    kern_force_level(NULL);
}

/* Every level prepares inputs into the same bytes as the portable C (levels
 * may vectorise it): ordinary values, a block of zeros, ties of the rounding
 * (x * 127 / amax exactly k + 0.5), signed zeros, subnormals, infinities and
 * NaNs, which fmaxf skips and lrintf turns into -127. */
static void test_prep_levels_identical(void)
{
    static const char *levels[] = {"avx2", "avx512", "neon", "neon-dotprod"};
    static const enum ggml_type types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q4_K,
                                           GGML_TYPE_Q6_K, GGML_TYPE_F32};
    enum { N = 2048, NT = 3 };
    static float x[NT * N];
    fill_normal(x, NT * N, 1.0f);
    for (int i = 256; i < 512; i++) /* block 1: zeros, one -0 */
        x[i] = 0.0f;
    x[300] = -0.0f;
    for (int i = 512; i < 768; i++) /* block 2: amax 127, every k + 0.5 */
        x[i] = (float)((i % 253) - 126) + ((i & 1) ? 0.5f : -0.5f);
    x[512] = 127.0f;
    for (int i = 768; i < 1024; i++) /* block 3: subnormals */
        x[i] = (float)(i - 900) * 1e-40f;
    x[1100] = INFINITY; /* block 4: an infinity among finite values */
    x[1400] = NAN;      /* block 5: a NaN */
    x[1550] = -NAN;
    for (int i = 1792; i < 2048; i++) /* block 7: all NaN */
        x[i] = NAN;
    x[N + 5] = -INFINITY;
    for (size_t ti = 0; ti < ARRAY_LEN(types); ti++) {
        enum ggml_type t = types[ti];
        size_t pb = kern_input_bytes(t, NT, N);
        uint8_t *a = aligned_alloc(64, (pb + 63) / 64 * 64);
        uint8_t *b = aligned_alloc(64, (pb + 63) / 64 * 64);
        ASSERT(a && b);
        memset(a, 0xaa, pb);
        kern_force_portable(true);
        kern_input_prepare(t, x, NT, N, a);
        for (size_t li = 0; li < ARRAY_LEN(levels); li++) {
            if (kern_force_level(levels[li]) != 0) continue;
            memset(b, 0xaa, pb);
            kern_input_prepare(t, x, NT, N, b);
            size_t i = 0;
            while (i < pb && a[i] == b[i])
                i++;
            if (i < pb) {
                kern_force_level(NULL);
                free(a), free(b);
                TEST_FAIL_("%s %s: prepared input differs from portable at byte %zu of %zu",
                           levels[li], ggml_type_name(t), i, pb);
            }
        }
        kern_force_level(NULL);
        free(a), free(b);
    }
}

/* Types the AVX-512 level computes with its row-group kernels, bit for bit
 * the portable path's. */
static bool avx512_row_group(enum ggml_type t)
{
    return t == GGML_TYPE_Q8_0 || t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q6_K ||
           t == GGML_TYPE_Q5_0 || t == GGML_TYPE_Q4_0;
}

/* Blocks at the edges of the integer ranges, which quantised weights never
 * reach but a file may hold: every byte of a row set to one pattern (q8_0
 * weights all -128 with 0x80, nibbles all 15 with 0xff, q6_K scales -128...),
 * the f16 scales then set to 1, against inputs of one magnitude (quantised to
 * +-127). The largest intermediate sums (e.g. int16 pair sums of 2*128*127)
 * must not overflow on any level. */
static void test_simd_extreme_blocks(void)
{
    static const enum ggml_type types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_0, GGML_TYPE_Q5_0,
                                           GGML_TYPE_Q4_K, GGML_TYPE_Q5_K, GGML_TYPE_Q6_K};
    static const uint8_t patterns[] = {0x00, 0x80, 0xff, 0x7f, 0x55};
    static const char *levels[] = {"avx2", "avx512", "neon", "neon-dotprod"};
    enum { N = 512, NT = 5 };
    static float x[NT * N], wd[N], yp[NT], ys[NT];
    static uint8_t row[N * 2];
    for (int sign = 0; sign < 3; sign++) {
        for (int i = 0; i < NT * N; i++)
            x[i] = sign == 0 ? 1.0f : sign == 1 ? -1.0f : (i & 1) ? 1.0f : -1.0f;
        for (size_t ti = 0; ti < ARRAY_LEN(types); ti++) {
            enum ggml_type t = types[ti];
            size_t bb = ggml_type_block_bytes(t), rb = ggml_row_bytes(t, N);
            for (size_t pi = 0; pi < ARRAY_LEN(patterns); pi++) {
                memset(row, patterns[pi], rb);
                for (size_t b = 0; b < rb / bb; b++) {
                    uint8_t *blk = row + b * bb;
                    if (t == GGML_TYPE_Q6_K) {
                        put16(blk + 208, 0x3c00);
                    } else {
                        put16(blk, 0x3c00);
                        if (t == GGML_TYPE_Q4_K || t == GGML_TYPE_Q5_K) put16(blk + 2, 0x3c00);
                    }
                }
                kern_dequantize(t, row, wd, N);
                size_t pb = kern_input_bytes(t, NT, N);
                void *prep = aligned_alloc(64, (pb + 63) / 64 * 64);
                ASSERT(prep);
                kern_input_prepare(t, x, NT, N, prep);
                kern_force_portable(true);
                kern_matmul(t, row, N, prep, NT, yp, 1, 0, 1);
                for (size_t li = 0; li < ARRAY_LEN(levels); li++) {
                    if (kern_force_level(levels[li]) != 0) continue;
                    kern_matmul(t, row, N, prep, NT, ys, 1, 0, 1);
                    /* the AVX-512 row-group kernels too (below) */
                    bool exact = strncmp(levels[li], "neon", 4) == 0 ||
                                 (!strcmp(levels[li], "avx512") && avx512_row_group(t));
                    for (int tok = 0; tok < NT; tok++) {
                        double mag = 0;
                        for (int j = 0; j < N; j++)
                            mag += fabs((double)wd[j] * x[tok * N + j]);
                        bool ok = exact ? memcmp(&ys[tok], &yp[tok], sizeof ys[tok]) == 0
                                        : fabs(ys[tok] - yp[tok]) <= mag * 2e-6;
                        if (!ok) {
                            kern_force_level(NULL);
                            free(prep);
                            TEST_FAIL_("%s %s pattern 0x%02x inputs %d tok %d: %.9g vs portable "
                                       "%.9g",
                                       levels[li], ggml_type_name(t), patterns[pi], sign, tok,
                                       ys[tok], yp[tok]);
                        }
                    }
                }
                kern_force_level(NULL);
                free(prep);
            }
        }
    }
}

/* The AVX-512 Q8_0, Q4_K, Q6_K, Q5_0 and Q4_0 kernels compute each row's exact per-block integer
 * sums 16 rows at a time and then the portable path's float operations in the same order, so it
 * must equal the portable path bit for bit, for any number of tokens, any row range (groups of 16
 * cut anywhere, tails of 1-15 rows) and rows with an odd number of blocks (a lone last block); so
 * must the kernels over the packed layout (kern_pack), whose last group is padded. */
static void test_row_group_kernels_bit_identical(void)
{
    if (kern_force_level("avx512") != 0) {
        fprintf(stderr, "    no avx512 here; skipped\n");
        return;
    }
    kern_force_level(NULL);
    /* the AVX-512 level has the packed layout for both */
    ASSERT_CMP(kern_pack_bytes(GGML_TYPE_Q8_0, 17, 96), ==, (size_t)2 * 2 * 17 * 64);
    ASSERT_CMP(kern_pack_bytes(GGML_TYPE_Q4_K, 16, 512), ==, (size_t)2 * 36 * 64);
    ASSERT_CMP(kern_pack_bytes(GGML_TYPE_Q6_K, 16, 512), ==, (size_t)2 * 53 * 64);
    ASSERT_EQ(kern_pack_bytes(GGML_TYPE_Q8_0, 16, 100), 0);
    ASSERT_CMP(kern_pack_bytes(GGML_TYPE_Q5_0, 17, 96), ==, (size_t)2 * 2 * 11 * 64);
    ASSERT_CMP(kern_pack_bytes(GGML_TYPE_Q4_0, 16, 64), ==, (size_t)9 * 64);
    ASSERT_EQ(kern_pack_bytes(GGML_TYPE_Q5_K, 16, 512), 0);
    ASSERT_EQ(kern_pack_bytes(GGML_TYPE_Q4_1, 16, 512), 0);
    static const enum ggml_type types[] = {GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K,
                                           GGML_TYPE_Q5_0, GGML_TYPE_Q4_0};
    static const int cols[] = {32, 64, 96, 256, 768, 1056, 2048};
    static const int rows[] = {1, 7, 16, 17, 40};
    static const int toks[] = {1, 2, 3, 5, 8, 9, 16, 19};
    const int max_tok = 19;
    int bad = 0;
    for (size_t ti = 0; ti < ARRAY_LEN(types) && !bad; ti++)
        for (size_t ci = 0; ci < ARRAY_LEN(cols) && !bad; ci++)
            for (size_t ri = 0; ri < ARRAY_LEN(rows) && !bad; ri++) {
                int nc = cols[ci], nr = rows[ri], ys = nr + 3; /* run_mm's stride */
                if (nc % ggml_type_block_elems(types[ti])) continue;
                struct mm_case c;
                float *x = malloc(sizeof(float) * (size_t)max_tok * (size_t)nc);
                float *ya = malloc(sizeof(float) * (size_t)max_tok * (size_t)ys);
                float *yb = malloc(sizeof(float) * (size_t)max_tok * (size_t)ys);
                if (!x || !ya || !yb || mm_case_init(&c, types[ti], nr, nc) != 0) {
                    free(x), free(ya), free(yb);
                    ASSERT(!"out of memory");
                }
                size_t pb = kern_pack_bytes(types[ti], nr, nc);
                void *packed = pb ? aligned_alloc(64, (pb + 63) / 64 * 64) : NULL;
                if (packed) kern_pack(types[ti], c.W, nr, nc, packed);
                fill_normal(x, (int64_t)max_tok * nc, 1.0f);
                x[nc - 1] = 25.0f; /* outliers at block edges */
                x[0] = -31.0f;
                for (size_t k = 0; k < ARRAY_LEN(toks) && !bad; k++) {
                    int nt = toks[k];
                    /* whole range, then a range cut inside the first 16-row group */
                    for (int cut = 0; cut < 2 && !bad; cut++) {
                        int r0 = cut ? (nr > 3 ? 3 : 0) : 0, r1 = cut ? nr - (nr > 20 ? 2 : 0) : nr;
                        for (int i = 0; i < nt * ys; i++)
                            ya[i] = yb[i] = -777.0f;
                        kern_force_portable(true);
                        run_mm(&c, x, nt, ya, r0, r1);
                        /* unpacked, then packed (where this CPU has the layout) */
                        for (int pk = 0; pk < 2 && !bad; pk++) {
                            if (pk && !packed) break;
                            for (int i = 0; i < nt * ys; i++)
                                yb[i] = -777.0f;
                            kern_force_level("avx512");
                            if (pk)
                                run_mm_packed(&c, packed, x, nt, yb, r0, r1);
                            else
                                run_mm(&c, x, nt, yb, r0, r1);
                            kern_force_level(NULL);
                            for (int i = 0; i < nt && !bad; i++)
                                for (int r = 0; r < ys && !bad; r++) {
                                    float a = ya[i * ys + r], b = yb[i * ys + r];
                                    if (memcmp(&a, &b, sizeof a) != 0) {
                                        fprintf(
                                            stderr,
                                            "  %s%s cols %d rows %d [%d,%d) n_tok %d tok %d row "
                                            "%d: avx512 %.9g vs portable %.9g\n",
                                            ggml_type_name(types[ti]), pk ? " packed" : "", nc, nr,
                                            r0, r1, nt, i, r, b, a);
                                        bad = 1;
                                    }
                                }
                        }
                    }
                }
                mm_case_free(&c);
                free(packed);
                free(x), free(ya), free(yb);
            }
    ASSERT(!bad);
}

/* Each SIMD level against the double-precision reference too. */
static void test_matmul_levels_vs_reference(void)
{
    static const char *levels[] = {"avx2", "neon", "neon-dotprod"};
    for (size_t i = 0; i < ARRAY_LEN(levels); i++) {
        if (kern_force_level(levels[i]) != 0) continue;
        test_matmul_vs_reference();
        kern_force_level(NULL);
        if (test_cur_failed_) return;
    }
}

int main(int argc, char **argv)
{
    /* `test_kernels --level` prints the level this CPU gets (tests/cross checks
     * the run-time choice under emulated CPUs with it) */
    if (argc > 1 && strcmp(argv[1], "--level") == 0) {
        puts(kern_simd_level());
        return 0;
    }
    RUN(test_type_table);
    RUN(test_row_bytes_rejects_partial_blocks);
    RUN(test_fp16_known_values);
    RUN(test_fp16_round_trip_all);
    RUN(test_bf16);
    RUN(test_dequant_f32_f16_bf16);
    RUN(test_dequant_q4_0);
    RUN(test_dequant_q4_1);
    RUN(test_dequant_q5_0_and_q5_1);
    RUN(test_dequant_q8_0);
    RUN(test_dequant_q4_K);
    RUN(test_dequant_q5_K);
    RUN(test_dequant_q6_K);
    RUN(test_dequant_q8_K);
    RUN(test_quant_exact_values);
    RUN(test_quant_zeros);
    RUN(test_quant_error);
    RUN(test_matmul_vs_reference);
    RUN(test_matmul_portable_vs_reference);
    RUN(test_matmul_levels_vs_reference);
    RUN(test_prep_levels_identical);
    RUN(test_simd_matches_portable);
    RUN(test_simd_extreme_blocks);
    RUN(test_row_group_kernels_bit_identical);
    return TEST_REPORT();
}
