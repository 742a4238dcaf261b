/* GGUF reader and writer: round trips of every value and tensor type, and
 * hostile files (truncated at every offset, corrupted bytes, huge counts,
 * bad types, misplaced tensors) that must be refused with a clear message. */
#include "engine/gguf.h"
#include "test.h"

#include <unistd.h>

static const enum ggml_type all_types[] = {
    GGML_TYPE_F32,  GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_Q8_0, GGML_TYPE_Q4_0,
    GGML_TYPE_Q4_1, GGML_TYPE_Q5_0, GGML_TYPE_Q5_1, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K,
};

static uint64_t rng_state = 0x1234567;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

static char tmp_path[256];
static const char *tmpfile_path(const char *tag)
{
    snprintf(tmp_path, sizeof tmp_path, "/tmp/thaw_test_gguf_%d_%s.gguf", (int)getpid(), tag);
    return tmp_path;
}

/* Reads a whole file into a malloc'd buffer. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(n > 0 ? n : 1);
    if (p && fread(p, 1, n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

/* Opens len bytes copied into an exactly-sized heap block, so ASan sees any
 * read past the end. */
static int open_copy(const uint8_t *data, size_t len, struct thaw_err *err)
{
    uint8_t *copy = malloc(len ? len : 1);
    memcpy(copy, data, len);
    struct gguf *g = NULL;
    int rc = gguf_open_memory(copy, len, &g, err);
    if (!rc) {
        /* touch everything the reader exposes */
        for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
            const struct gguf_tensor *t = gguf_tensor_at(g, i);
            volatile uint8_t s = 0;
            for (uint64_t b = 0; b < t->nbytes; b += 7)
                s ^= ((const uint8_t *)t->data)[b];
            (void)s;
        }
        struct buf b = {0};
        for (int64_t i = 0; i < gguf_n_kv(g); i++)
            gguf_format_value(g, i, 1000, &b);
        buf_free(&b);
    }
    gguf_close(g);
    free(copy);
    return rc;
}

static void test_roundtrip_values(void)
{
    struct gguf_writer *w = gguf_writer_new();
    ASSERT(w);
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int64_t i64 = -5000000000LL;
    double f64 = 3.25;
    ASSERT_EQ(gguf_writer_set_scalar(w, "v.u8", GGUF_VTYPE_UINT8, &u8), 0);
    ASSERT_EQ(gguf_writer_set_scalar(w, "v.i8", GGUF_VTYPE_INT8, &i8), 0);
    ASSERT_EQ(gguf_writer_set_scalar(w, "v.u16", GGUF_VTYPE_UINT16, &u16), 0);
    ASSERT_EQ(gguf_writer_set_scalar(w, "v.i16", GGUF_VTYPE_INT16, &i16), 0);
    ASSERT_EQ(gguf_writer_set_u32(w, "v.u32", 4000000000u), 0);
    ASSERT_EQ(gguf_writer_set_i32(w, "v.i32", -7), 0);
    ASSERT_EQ(gguf_writer_set_u64(w, "v.u64", 1ULL << 40), 0);
    ASSERT_EQ(gguf_writer_set_scalar(w, "v.i64", GGUF_VTYPE_INT64, &i64), 0);
    ASSERT_EQ(gguf_writer_set_f32(w, "v.f32", 1.5f), 0);
    ASSERT_EQ(gguf_writer_set_scalar(w, "v.f64", GGUF_VTYPE_FLOAT64, &f64), 0);
    ASSERT_EQ(gguf_writer_set_bool(w, "v.bool", true), 0);
    ASSERT_EQ(gguf_writer_set_str(w, "v.str", "héllo"), 0);
    ASSERT_EQ(gguf_writer_set_str(w, "v.empty", ""), 0);
    const char *strs[] = {"a", "", "ccc"};
    float fs[] = {0.5f, -2.0f};
    int32_t is[] = {1, -2, 3};
    uint16_t u16s[] = {1, 65535};
    ASSERT_EQ(gguf_writer_set_arr_str(w, "a.str", strs, 3), 0);
    ASSERT_EQ(gguf_writer_set_arr_f32(w, "a.f32", fs, 2), 0);
    ASSERT_EQ(gguf_writer_set_arr_i32(w, "a.i32", is, 3), 0);
    ASSERT_EQ(gguf_writer_set_arr(w, "a.u16", GGUF_VTYPE_UINT16, u16s, 2), 0);
    ASSERT_EQ(gguf_writer_set_arr_i32(w, "a.none", NULL, 0), 0);
    ASSERT_EQ(gguf_writer_set_u32(w, "v.u32", 1), THAW_EEXIST);
    const char *path = tmpfile_path("values");
    struct thaw_err err = {0};
    ASSERT_EQ(gguf_writer_write(w, path, &err), 0);
    gguf_writer_free(w);

    struct gguf *g;
    ASSERT_EQ(gguf_open(path, &g, &err), 0);
    unlink(path);
    ASSERT_EQ(gguf_version(g), 3);
    ASSERT_EQ(gguf_n_kv(g), 18);
    ASSERT_EQ(gguf_n_tensors(g), 0);
    uint32_t u;
    int64_t s;
    float f;
    bool b;
    ASSERT_EQ(gguf_get_u32(g, "v.u8", &u), 0);
    ASSERT_EQ(u, 200);
    ASSERT_EQ(gguf_get_i64(g, "v.i8", &s), 0);
    ASSERT_EQ(s, -100);
    ASSERT_EQ(gguf_get_u32(g, "v.i8", &u), THAW_ERANGE);
    ASSERT_EQ(gguf_get_u32(g, "v.u16", &u), 0);
    ASSERT_EQ(u, 60000);
    ASSERT_EQ(gguf_get_i64(g, "v.i16", &s), 0);
    ASSERT_EQ(s, -30000);
    ASSERT_EQ(gguf_get_u32(g, "v.u32", &u), 0);
    ASSERT_EQ(u, 4000000000u);
    ASSERT_EQ(gguf_get_i64(g, "v.i32", &s), 0);
    ASSERT_EQ(s, -7);
    ASSERT_EQ(gguf_get_u32(g, "v.u64", &u), THAW_ERANGE);
    ASSERT_EQ(gguf_get_i64(g, "v.u64", &s), 0);
    ASSERT_EQ(s, 1LL << 40);
    ASSERT_EQ(gguf_get_i64(g, "v.i64", &s), 0);
    ASSERT_EQ(s, -5000000000LL);
    ASSERT_EQ(gguf_get_f32(g, "v.f32", &f), 0);
    ASSERT_EQ(f, 1.5f);
    ASSERT_EQ(gguf_get_f32(g, "v.f64", &f), 0);
    ASSERT_EQ(f, 3.25f);
    ASSERT_EQ(gguf_get_f32(g, "v.u32", &f), THAW_EFORMAT);
    ASSERT_EQ(gguf_get_bool(g, "v.bool", &b), 0);
    ASSERT(b);
    ASSERT_EQ(gguf_get_bool(g, "v.u8", &b), THAW_EFORMAT);
    const char *str;
    size_t len;
    ASSERT_EQ(gguf_get_str(g, "v.str", &str, &len), 0);
    ASSERT_EQ(len, strlen("héllo"));
    ASSERT(!memcmp(str, "héllo", len));
    ASSERT_EQ(gguf_get_str(g, "v.empty", &str, &len), 0);
    ASSERT_EQ(len, 0);
    ASSERT_EQ(gguf_get_str(g, "v.u32", &str, &len), THAW_EFORMAT);
    ASSERT_EQ(gguf_get_str(g, "nope", &str, &len), THAW_ENOTFOUND);
    ASSERT_EQ(gguf_find_key(g, "nope"), -1);
    ASSERT_EQ(gguf_find_key(g, "v.u8"), 0);
    ASSERT_EQ(gguf_key_type(g, gguf_find_key(g, "a.str")), GGUF_VTYPE_ARRAY);
    const char *kn = gguf_key_name(g, 1, &len);
    ASSERT(kn && len == 4 && !memcmp(kn, "v.i8", 4));

    enum gguf_vtype et;
    uint64_t n;
    ASSERT_EQ(gguf_get_arr(g, "a.str", &et, &n), 0);
    ASSERT_EQ(et, GGUF_VTYPE_STRING);
    ASSERT_EQ(n, 3);
    for (uint64_t i = 0; i < 3; i++) {
        ASSERT_EQ(gguf_arr_str(g, "a.str", i, &str, &len), 0);
        ASSERT_EQ(len, strlen(strs[i]));
        ASSERT(!memcmp(str, strs[i], len));
    }
    ASSERT_EQ(gguf_arr_str(g, "a.str", 3, &str, &len), THAW_ERANGE);
    ASSERT_EQ(gguf_arr_i32(g, "a.str", 0, &is[0]), THAW_EFORMAT);
    ASSERT_EQ(gguf_arr_f32(g, "a.f32", 1, &f), 0);
    ASSERT_EQ(f, -2.0f);
    int32_t iv;
    ASSERT_EQ(gguf_arr_i32(g, "a.i32", 1, &iv), 0);
    ASSERT_EQ(iv, -2);
    ASSERT_EQ(gguf_arr_i32(g, "a.u16", 1, &iv), 0);
    ASSERT_EQ(iv, 65535);
    ASSERT_EQ(gguf_get_arr(g, "a.none", &et, &n), 0);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(gguf_arr_i32(g, "a.none", 0, &iv), THAW_ERANGE);
    ASSERT_EQ(gguf_get_arr(g, "v.u8", &et, &n), THAW_EFORMAT);
    struct buf out = {0};
    ASSERT_EQ(gguf_format_value(g, gguf_find_key(g, "a.str"), 10, &out), 0);
    ASSERT_STR_EQ(out.data, "[\"a\", \"\", \"ccc\"]");
    buf_free(&out);
    gguf_close(g);
}

/* Writes one tensor of every supported type (random bytes: every bit
 * pattern is a valid block) plus a 3-D tensor, reads them back. */
static void test_roundtrip_tensors(void)
{
    struct gguf_writer *w = gguf_writer_new();
    void *datas[ARRAY_LEN(all_types)];
    size_t sizes[ARRAY_LEN(all_types)];
    for (size_t k = 0; k < ARRAY_LEN(all_types); k++) {
        enum ggml_type t = all_types[k];
        ASSERT(ggml_type_supported(t));
        uint64_t ne[2] = {(uint64_t)ggml_type_block_elems(t) * 2, 3};
        sizes[k] = ggml_row_bytes(t, ne[0]) * ne[1];
        ASSERT(sizes[k] > 0);
        datas[k] = malloc(sizes[k]);
        for (size_t i = 0; i < sizes[k]; i++)
            ((uint8_t *)datas[k])[i] = (uint8_t)rnd();
        char name[64];
        snprintf(name, sizeof name, "t.%s", ggml_type_name(t));
        ASSERT_EQ(gguf_writer_add_tensor(w, name, t, 2, ne, datas[k]), 0);
    }
    float v3[2 * 3 * 4];
    for (int i = 0; i < 24; i++)
        v3[i] = (float)i;
    uint64_t ne3[3] = {2, 3, 4};
    ASSERT_EQ(gguf_writer_add_tensor(w, "t.3d", GGML_TYPE_F32, 3, ne3, v3), 0);
    ASSERT_EQ(gguf_writer_add_tensor(w, "t.3d", GGML_TYPE_F32, 3, ne3, v3), THAW_EEXIST);
    uint64_t bad[1] = {33};
    ASSERT_EQ(gguf_writer_add_tensor(w, "t.bad", GGML_TYPE_Q8_0, 1, bad, v3), THAW_EINVAL);
    ASSERT_EQ(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    const char *path = tmpfile_path("tensors");
    struct thaw_err err = {0};
    ASSERT_EQ(gguf_writer_write(w, path, &err), 0);
    gguf_writer_free(w);
    struct gguf *g;
    ASSERT_EQ(gguf_open(path, &g, &err), 0);
    unlink(path);
    ASSERT_EQ(gguf_n_tensors(g), (int64_t)ARRAY_LEN(all_types) + 1);
    ASSERT_EQ(gguf_alignment(g), 32);
    for (size_t k = 0; k < ARRAY_LEN(all_types); k++) {
        char name[64];
        snprintf(name, sizeof name, "t.%s", ggml_type_name(all_types[k]));
        const struct gguf_tensor *t = gguf_find_tensor(g, name);
        ASSERT(t);
        ASSERT_STR_EQ(t->name, name);
        ASSERT_EQ(t->type, all_types[k]);
        ASSERT_EQ(t->n_dims, 2);
        ASSERT_EQ(t->ne[1], 3);
        ASSERT_EQ(t->ne[2], 1);
        ASSERT_EQ(t->nbytes, sizes[k]);
        ASSERT(!memcmp(t->data, datas[k], sizes[k]));
        ASSERT_EQ(((uintptr_t)t->data) % 32, 0);
        free(datas[k]);
    }
    const struct gguf_tensor *t = gguf_find_tensor(g, "t.3d");
    ASSERT(t && t->n_dims == 3 && t->ne[2] == 4 && t->nbytes == sizeof v3);
    ASSERT(!memcmp(t->data, v3, sizeof v3));
    ASSERT(gguf_tensor_at(g, 0) && gguf_tensor_at(g, 99) == NULL);
    ASSERT(gguf_find_tensor(g, "t.none") == NULL);
    gguf_close(g);
}

/* A small valid file with strings, arrays and two tensors. */
static uint8_t *small_file(size_t *len)
{
    struct gguf_writer *w = gguf_writer_new();
    const char *strs[] = {"<unk>", "a", "bc"};
    float sc[] = {0, -1, -2};
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.block_count", 1);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", strs, 3);
    gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", sc, 3);
    gguf_writer_set_bool(w, "x.flag", false);
    float d[64];
    for (int i = 0; i < 64; i++)
        d[i] = (float)i;
    uint64_t ne[2] = {32, 2};
    gguf_writer_add_tensor(w, "a.weight", GGML_TYPE_F32, 2, ne, d);
    uint8_t q[34 * 2];
    memset(q, 1, sizeof q);
    gguf_writer_add_tensor(w, "b.weight", GGML_TYPE_Q8_0, 2, ne, q);
    const char *path = tmpfile_path("small");
    gguf_writer_write(w, path, NULL);
    gguf_writer_free(w);
    uint8_t *p = slurp(path, len);
    unlink(path);
    return p;
}

static void test_truncated_every_offset(void)
{
    size_t len;
    uint8_t *f = small_file(&len);
    ASSERT(f && len > 100);
    struct thaw_err err = {0};
    ASSERT_EQ(open_copy(f, len, &err), 0);
    for (size_t n = 0; n < len; n++) {
        err.msg[0] = 0;
        int rc = open_copy(f, n, &err);
        if (rc == 0) {
            free(f);
            TEST_FAIL_("truncated at %zu of %zu opened", n, len);
        }
        if (!err.msg[0]) {
            free(f);
            TEST_FAIL_("no message at %zu", n);
        }
    }
    /* the file-backed path too, on a few lengths */
    const char *path = tmpfile_path("trunc");
    for (size_t n = 0; n < len; n += len / 7) {
        FILE *o = fopen(path, "wb");
        fwrite(f, 1, n, o);
        fclose(o);
        struct gguf *g = NULL;
        ASSERT_CMP(gguf_open(path, &g, &err), <, 0);
        ASSERT(g == NULL);
    }
    unlink(path);
    free(f);
}

/* Flips each byte of the small file in turn: every result must either open
 * (some bytes are data) or fail with a message; never crash. */
static void test_corrupt_every_byte(void)
{
    size_t len;
    uint8_t *f = small_file(&len);
    ASSERT(f);
    int opened = 0, failed = 0;
    for (size_t i = 0; i < len; i++) {
        for (int v = 0; v < 3; v++) {
            uint8_t save = f[i];
            f[i] = v == 0 ? (uint8_t)~save : v == 1 ? 0xff : 0x7f;
            struct thaw_err err = {0};
            if (open_copy(f, len, &err) == 0)
                opened++;
            else
                failed++;
            f[i] = save;
        }
    }
    free(f);
    ASSERT(failed > 0);
    ASSERT(opened > 0);
}

/* ---- hand-built hostile files --------------------------------------- */

static void put32(struct buf *b, uint32_t v)
{
    buf_append(b, &v, 4);
}
static void put64(struct buf *b, uint64_t v)
{
    buf_append(b, &v, 8);
}
static void putstr(struct buf *b, const char *s)
{
    put64(b, strlen(s));
    buf_append(b, s, strlen(s));
}
static void header(struct buf *b, uint32_t version, uint64_t n_t, uint64_t n_kv)
{
    buf_reset(b);
    buf_append(b, "GGUF", 4);
    put32(b, version);
    put64(b, n_t);
    put64(b, n_kv);
}
static void tinfo(struct buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                  uint32_t type, uint64_t off)
{
    putstr(b, name);
    put32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        put64(b, ne[i]);
    put32(b, type);
    put64(b, off);
}
static void pad_data(struct buf *b, size_t data_bytes)
{
    while (b->len % 32)
        buf_append(b, "", 1);
    for (size_t i = 0; i < data_bytes; i++)
        buf_append(b, "\x01", 1);
}

/* Expects b to be refused with a message containing want. */
#define EXPECT_REJECT(b, want)                                                                     \
    do {                                                                                           \
        struct thaw_err e_ = {0};                                                                  \
        int rc_ = open_copy((const uint8_t *)(b)->data, (b)->len, &e_);                            \
        ASSERT_CMP(rc_, <, 0);                                                                     \
        ASSERT_CONTAINS(e_.msg, want);                                                             \
    } while (0)

static void test_hostile_header(void)
{
    struct buf b = {0};
    header(&b, 3, 0, 0);
    struct thaw_err e = {0};
    ASSERT_EQ(open_copy((uint8_t *)b.data, b.len, &e), 0); /* empty but valid */
    memcpy(b.data, "GGUX", 4);
    EXPECT_REJECT(&b, "magic");
    header(&b, 1, 0, 0);
    EXPECT_REJECT(&b, "version 1");
    header(&b, 0x03000000, 0, 0);
    EXPECT_REJECT(&b, "version");
    header(&b, 3, 0, UINT64_MAX);
    EXPECT_REJECT(&b, "key count");
    header(&b, 3, 1ULL << 60, 0);
    EXPECT_REJECT(&b, "tensor count");
    /* huge string length for a key */
    header(&b, 3, 0, 1);
    put64(&b, UINT64_MAX - 3);
    put32(&b, 0);
    put32(&b, 0);
    EXPECT_REJECT(&b, "key");
    /* bad value type */
    header(&b, 3, 0, 1);
    putstr(&b, "k.bad");
    put32(&b, 13);
    put64(&b, 0);
    EXPECT_REJECT(&b, "k.bad");
    /* string value longer than the file */
    header(&b, 3, 0, 1);
    putstr(&b, "k.s");
    put32(&b, GGUF_VTYPE_STRING);
    put64(&b, 1ULL << 62);
    EXPECT_REJECT(&b, "string value");
    /* array of 2^61 u32 */
    header(&b, 3, 0, 1);
    putstr(&b, "k.arr");
    put32(&b, GGUF_VTYPE_ARRAY);
    put32(&b, GGUF_VTYPE_UINT32);
    put64(&b, 1ULL << 61);
    EXPECT_REJECT(&b, "k.arr");
    /* string array with a count beyond the file */
    header(&b, 3, 0, 1);
    putstr(&b, "k.sarr");
    put32(&b, GGUF_VTYPE_ARRAY);
    put32(&b, GGUF_VTYPE_STRING);
    put64(&b, 1ULL << 40);
    put64(&b, 0);
    EXPECT_REJECT(&b, "k.sarr");
    /* nested array */
    header(&b, 3, 0, 1);
    putstr(&b, "k.nest");
    put32(&b, GGUF_VTYPE_ARRAY);
    put32(&b, GGUF_VTYPE_ARRAY);
    put64(&b, 1);
    put32(&b, GGUF_VTYPE_UINT8);
    put64(&b, 0);
    EXPECT_REJECT(&b, "nested");
    /* bad array element type */
    header(&b, 3, 0, 1);
    putstr(&b, "k.et");
    put32(&b, GGUF_VTYPE_ARRAY);
    put32(&b, 77);
    put64(&b, 0);
    EXPECT_REJECT(&b, "k.et");
    /* bool that is not 0/1 */
    header(&b, 3, 0, 1);
    putstr(&b, "k.b");
    put32(&b, GGUF_VTYPE_BOOL);
    buf_append(&b, "\x05", 1);
    EXPECT_REJECT(&b, "k.b");
    /* duplicate key */
    header(&b, 3, 0, 2);
    for (int i = 0; i < 2; i++) {
        putstr(&b, "k.dup");
        put32(&b, GGUF_VTYPE_UINT8);
        buf_append(&b, "\x01", 1);
    }
    EXPECT_REJECT(&b, "duplicate key 'k.dup'");
    /* empty key */
    header(&b, 3, 0, 1);
    putstr(&b, "");
    put32(&b, GGUF_VTYPE_UINT8);
    buf_append(&b, "\x01", 1);
    EXPECT_REJECT(&b, "key");
    /* alignment not a power of two, or of the wrong type */
    header(&b, 3, 0, 1);
    putstr(&b, "general.alignment");
    put32(&b, GGUF_VTYPE_UINT32);
    put32(&b, 48);
    EXPECT_REJECT(&b, "general.alignment");
    header(&b, 3, 0, 1);
    putstr(&b, "general.alignment");
    put32(&b, GGUF_VTYPE_FLOAT32);
    put32(&b, 0);
    EXPECT_REJECT(&b, "general.alignment");
    buf_free(&b);
}

static void test_hostile_tensors(void)
{
    struct buf b = {0};
    uint64_t ne[4] = {32, 2, 1, 1};
    /* a valid single tensor as control */
    header(&b, 2, 1, 0);
    tinfo(&b, "ok", 2, ne, GGML_TYPE_F32, 0);
    pad_data(&b, 256);
    struct thaw_err e = {0};
    ASSERT_EQ(open_copy((uint8_t *)b.data, b.len, &e), 0);
    /* data one byte short */
    b.len--;
    EXPECT_REJECT(&b, "'ok'");
    /* out of file offset */
    header(&b, 3, 1, 0);
    tinfo(&b, "far", 2, ne, GGML_TYPE_F32, 1ULL << 40);
    pad_data(&b, 256);
    EXPECT_REJECT(&b, "'far'");
    header(&b, 3, 1, 0);
    tinfo(&b, "wrap", 2, ne, GGML_TYPE_F32, UINT64_MAX - 31);
    pad_data(&b, 256);
    EXPECT_REJECT(&b, "'wrap'");
    /* misaligned offset */
    header(&b, 3, 1, 0);
    tinfo(&b, "mis", 2, ne, GGML_TYPE_F32, 4);
    pad_data(&b, 512);
    EXPECT_REJECT(&b, "'mis'");
    /* overlapping tensors */
    header(&b, 3, 2, 0);
    tinfo(&b, "first", 2, ne, GGML_TYPE_F32, 0);
    tinfo(&b, "second", 2, ne, GGML_TYPE_F32, 128);
    pad_data(&b, 1024);
    EXPECT_REJECT(&b, "overlap");
    /* duplicate names */
    header(&b, 3, 2, 0);
    tinfo(&b, "same", 2, ne, GGML_TYPE_F32, 0);
    tinfo(&b, "same", 2, ne, GGML_TYPE_F32, 256);
    pad_data(&b, 1024);
    EXPECT_REJECT(&b, "duplicate tensor name 'same'");
    /* n_dims out of range */
    header(&b, 3, 1, 0);
    tinfo(&b, "nd0", 0, ne, GGML_TYPE_F32, 0);
    pad_data(&b, 256);
    EXPECT_REJECT(&b, "'nd0'");
    header(&b, 3, 1, 0);
    uint64_t ne5[5] = {32, 1, 1, 1, 1};
    tinfo(&b, "nd5", 5, ne5, GGML_TYPE_F32, 0);
    pad_data(&b, 256);
    EXPECT_REJECT(&b, "'nd5'");
    /* zero and overflowing dims */
    uint64_t z[2] = {32, 0};
    header(&b, 3, 1, 0);
    tinfo(&b, "zero", 2, z, GGML_TYPE_F32, 0);
    pad_data(&b, 256);
    EXPECT_REJECT(&b, "'zero'");
    uint64_t big[4] = {1ULL << 32, 1ULL << 32, 1ULL << 32, 1};
    header(&b, 3, 1, 0);
    tinfo(&b, "huge", 4, big, GGML_TYPE_F32, 0);
    pad_data(&b, 256);
    EXPECT_REJECT(&b, "'huge'");
    /* unsupported and unknown types */
    header(&b, 3, 1, 0);
    tinfo(&b, "q8k", 2, ne, GGML_TYPE_Q8_K, 0);
    pad_data(&b, 256);
    EXPECT_REJECT(&b, "'q8k'");
    header(&b, 3, 1, 0);
    tinfo(&b, "t99", 2, ne, 99, 0);
    pad_data(&b, 256);
    EXPECT_REJECT(&b, "'t99'");
    /* row length not a multiple of the block */
    uint64_t odd[2] = {48, 2};
    header(&b, 3, 1, 0);
    tinfo(&b, "rowk", 2, odd, GGML_TYPE_Q4_K, 0);
    pad_data(&b, 4096);
    EXPECT_REJECT(&b, "'rowk'");
    /* name with a NUL, and an over-long name */
    header(&b, 3, 1, 0);
    put64(&b, 3);
    buf_append(&b, "a\0b", 3);
    put32(&b, 1);
    put64(&b, 32);
    put32(&b, 0);
    put64(&b, 0);
    pad_data(&b, 256);
    EXPECT_REJECT(&b, "tensor name");
    buf_free(&b);
}

/* A declared general.alignment is honoured by the writer and the reader. */
static void test_alignment_64(void)
{
    struct gguf_writer *w = gguf_writer_new();
    ASSERT_EQ(gguf_writer_set_u32(w, "general.alignment", 64), 0);
    float d[48] = {0};
    uint64_t ne1[1] = {8}, ne2[1] = {40};
    ASSERT_EQ(gguf_writer_add_tensor(w, "a", GGML_TYPE_F32, 1, ne1, d), 0);
    ASSERT_EQ(gguf_writer_add_tensor(w, "b", GGML_TYPE_F32, 1, ne2, d), 0);
    const char *path = tmpfile_path("align");
    struct thaw_err err = {0};
    ASSERT_EQ(gguf_writer_write(w, path, &err), 0);
    gguf_writer_free(w);
    struct gguf *g;
    ASSERT_EQ(gguf_open(path, &g, &err), 0);
    unlink(path);
    ASSERT_EQ(gguf_alignment(g), 64);
    const uint8_t *base = gguf_base(g, NULL);
    ASSERT_EQ(((const uint8_t *)gguf_find_tensor(g, "b")->data - base) % 64, 0);
    gguf_close(g);
    w = gguf_writer_new();
    ASSERT_EQ(gguf_writer_set_u32(w, "general.alignment", 48), 0);
    ASSERT_EQ(gguf_writer_write(w, path, &err), THAW_EINVAL);
    gguf_writer_free(w);
}

static void test_writer_errors(void)
{
    struct gguf_writer *w = gguf_writer_new();
    ASSERT_EQ(gguf_writer_set_u32(w, "", 1), THAW_EINVAL);
    ASSERT_EQ(gguf_writer_set_str(w, "k", NULL), THAW_EINVAL);
    struct thaw_err err = {0};
    ASSERT_CMP(gguf_writer_write(w, "/nonexistent-dir/x.gguf", &err), <, 0);
    ASSERT_CONTAINS(err.msg, "/nonexistent-dir/x.gguf");
    gguf_writer_free(w);
    gguf_writer_free(NULL);
    gguf_close(NULL);
    struct gguf *g;
    ASSERT_CMP(gguf_open("/nonexistent-file.gguf", &g, &err), <, 0);
    ASSERT_CONTAINS(err.msg, "nonexistent-file");
}

int main(void)
{
    RUN(test_roundtrip_values);
    RUN(test_roundtrip_tensors);
    RUN(test_truncated_every_offset);
    RUN(test_corrupt_every_byte);
    RUN(test_hostile_header);
    RUN(test_hostile_tensors);
    RUN(test_alignment_64);
    RUN(test_writer_errors);
    return TEST_REPORT();
}
