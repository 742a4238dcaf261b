/* GGUF reader and writer (layout in gguf.h). The reader walks the whole
 * header once at open, checking every count against the bytes that remain
 * before allocating from it, and builds indexes so later lookups are O(log n)
 * and cannot read outside the mapping. */
#include "engine/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC             0x46554747u /* "GGUF" read little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_KEY_LEN       65535u
#define GGUF_MAX_NAME_LEN      255u

struct gguf_kv {
    const char *key; /* into the mapping, not terminated */
    size_t key_len;
    enum gguf_vtype type;
    enum gguf_vtype elem; /* arrays only */
    uint64_t n;           /* arrays: element count; strings: byte length */
    const uint8_t *val;   /* scalar value, string bytes, or first array element */
    uint64_t *str_off;    /* string arrays: offset of element i's length from val */
};

struct gguf {
    const uint8_t *base;
    size_t len;
    bool mapped; /* base is our mmap and must be unmapped */
    uint32_t version;
    uint32_t alignment;
    int64_t n_kv;
    struct gguf_kv *kv;
    int64_t *kv_sorted; /* kv indexes sorted by key */
    int64_t n_tensors;
    struct gguf_tensor *tensors;
    int64_t *t_sorted; /* tensor indexes sorted by name */
    uint64_t data_start;
};

/* ---- reading primitives: a cursor that never passes the end ---------- */

struct cur {
    const uint8_t *p;
    size_t len, pos;
    struct thaw_err *err;
};

static size_t cur_left(const struct cur *c)
{
    return c->len - c->pos;
}

static int cur_need(struct cur *c, uint64_t n, const char *what)
{
    if (n > cur_left(c))
        return thaw_errf(c->err, THAW_EFORMAT,
                         "gguf: truncated reading %s at offset %zu (need %" PRIu64
                         " bytes, %zu left)",
                         what, c->pos, n, cur_left(c));
    return 0;
}

static int cur_u32(struct cur *c, uint32_t *v, const char *what)
{
    int rc = cur_need(c, 4, what);
    if (rc) return rc;
    memcpy(v, c->p + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int cur_u64(struct cur *c, uint64_t *v, const char *what)
{
    int rc = cur_need(c, 8, what);
    if (rc) return rc;
    memcpy(v, c->p + c->pos, 8);
    c->pos += 8;
    return 0;
}

/* Reads a string header and checks its bytes are present. */
static int cur_str(struct cur *c, const char **s, uint64_t *n, const char *what)
{
    int rc = cur_u64(c, n, what);
    if (rc) return rc;
    if (*n > cur_left(c))
        return thaw_errf(c->err, THAW_EFORMAT,
                         "gguf: %s at offset %zu has length %" PRIu64 " but only %zu bytes remain",
                         what, c->pos - 8, *n, cur_left(c));
    *s = (const char *)c->p + c->pos;
    c->pos += *n;
    return 0;
}

static size_t vtype_size(uint32_t t)
{
    switch (t) {
    case GGUF_VTYPE_UINT8:
    case GGUF_VTYPE_INT8:
    case GGUF_VTYPE_BOOL:
        return 1;
    case GGUF_VTYPE_UINT16:
    case GGUF_VTYPE_INT16:
        return 2;
    case GGUF_VTYPE_UINT32:
    case GGUF_VTYPE_INT32:
    case GGUF_VTYPE_FLOAT32:
        return 4;
    case GGUF_VTYPE_UINT64:
    case GGUF_VTYPE_INT64:
    case GGUF_VTYPE_FLOAT64:
        return 8;
    default:
        return 0; /* string, array or unknown */
    }
}

static bool vtype_valid(uint32_t t)
{
    return t <= GGUF_VTYPE_FLOAT64;
}

/* ---- header parsing ------------------------------------------------- */

static int parse_scalar(struct cur *c, struct gguf_kv *kv, uint32_t t)
{
    size_t sz = vtype_size(t);
    int rc = cur_need(c, sz, "value");
    if (rc) return rc;
    kv->val = c->p + c->pos;
    if (t == GGUF_VTYPE_BOOL && kv->val[0] > 1)
        return thaw_errf(c->err, THAW_EFORMAT, "gguf: key '%.*s': bool value %u is not 0 or 1",
                         (int)kv->key_len, kv->key, kv->val[0]);
    c->pos += sz;
    return 0;
}

static int parse_array(struct cur *c, struct gguf_kv *kv)
{
    uint32_t elem;
    uint64_t n;
    int rc = cur_u32(c, &elem, "array element type");
    if (!rc) rc = cur_u64(c, &n, "array length");
    if (rc) return rc;
    if (!vtype_valid(elem))
        return thaw_errf(c->err, THAW_EFORMAT, "gguf: key '%.*s': unknown array element type %u",
                         (int)kv->key_len, kv->key, elem);
    if (elem == GGUF_VTYPE_ARRAY)
        return thaw_errf(c->err, THAW_EUNSUPPORTED,
                         "gguf: key '%.*s': nested arrays are not supported", (int)kv->key_len,
                         kv->key);
    kv->elem = elem;
    kv->n = n;
    kv->val = c->p + c->pos;
    if (elem != GGUF_VTYPE_STRING) {
        size_t sz = vtype_size(elem);
        if (n > cur_left(c) / sz)
            return thaw_errf(c->err, THAW_EFORMAT,
                             "gguf: key '%.*s': array of %" PRIu64 " elements overruns the file",
                             (int)kv->key_len, kv->key, n);
        if (elem == GGUF_VTYPE_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (kv->val[i] > 1)
                    return thaw_errf(c->err, THAW_EFORMAT,
                                     "gguf: key '%.*s': bool element %" PRIu64 " is not 0 or 1",
                                     (int)kv->key_len, kv->key, i);
        c->pos += n * sz;
        return 0;
    }
    /* Every string takes at least its 8-byte length, which bounds n. */
    if (n > cur_left(c) / 8)
        return thaw_errf(c->err, THAW_EFORMAT,
                         "gguf: key '%.*s': string array of %" PRIu64 " elements overruns the file",
                         (int)kv->key_len, kv->key, n);
    kv->str_off = malloc((n ? n : 1) * sizeof(uint64_t));
    if (!kv->str_off) return thaw_errf(c->err, THAW_ENOMEM, "gguf: out of memory");
    size_t start = c->pos;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        uint64_t sl;
        kv->str_off[i] = c->pos - start;
        rc = cur_str(c, &s, &sl, "array string");
        if (rc) return rc;
    }
    return 0;
}

static int parse_kv(struct cur *c, struct gguf_kv *kv)
{
    uint64_t klen;
    uint32_t t;
    int rc = cur_str(c, &kv->key, &klen, "key");
    if (rc) return rc;
    if (klen == 0 || klen > GGUF_MAX_KEY_LEN || memchr(kv->key, 0, klen))
        return thaw_errf(c->err, THAW_EFORMAT,
                         "gguf: key at offset %zu is empty, too long or contains NUL",
                         c->pos - klen - 8);
    kv->key_len = klen;
    rc = cur_u32(c, &t, "value type");
    if (rc) return rc;
    if (!vtype_valid(t))
        return thaw_errf(c->err, THAW_EFORMAT, "gguf: key '%.*s': unknown value type %u", (int)klen,
                         kv->key, t);
    kv->type = t;
    if (t == GGUF_VTYPE_STRING) {
        const char *s;
        rc = cur_str(c, &s, &kv->n, "string value");
        kv->val = (const uint8_t *)s;
        return rc;
    }
    if (t == GGUF_VTYPE_ARRAY) return parse_array(c, kv);
    return parse_scalar(c, kv, t);
}

static int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int r = memcmp(a, b, al < bl ? al : bl);
    if (r) return r;
    return al < bl ? -1 : al > bl;
}

/* The sorts work on arrays of pointers so the comparators need no context. */
static int cmp_kv_ptr(const void *a, const void *b)
{
    const struct gguf_kv *x = *(const struct gguf_kv *const *)a;
    const struct gguf_kv *y = *(const struct gguf_kv *const *)b;
    return key_cmp(x->key, x->key_len, y->key, y->key_len);
}

static int cmp_t_name(const void *a, const void *b)
{
    return strcmp((*(const struct gguf_tensor *const *)a)->name,
                  (*(const struct gguf_tensor *const *)b)->name);
}

static int cmp_t_off(const void *a, const void *b)
{
    const uint8_t *x = (*(const struct gguf_tensor *const *)a)->data;
    const uint8_t *y = (*(const struct gguf_tensor *const *)b)->data;
    return x < y ? -1 : x > y;
}

/* Returns a malloc'd array of pointers to the n elements of size sz at base,
 * sorted by cmp, or NULL when out of memory. */
static const void **sorted_ptrs(const void *base, int64_t n, size_t sz,
                                int (*cmp)(const void *, const void *))
{
    const void **p = malloc((n ? n : 1) * sizeof(*p));
    if (!p) return NULL;
    for (int64_t i = 0; i < n; i++)
        p[i] = (const char *)base + i * sz;
    qsort(p, n, sizeof(*p), cmp);
    return p;
}

static int index_kv(struct gguf *g, struct thaw_err *err)
{
    const struct gguf_kv **p =
        (const struct gguf_kv **)sorted_ptrs(g->kv, g->n_kv, sizeof(*g->kv), cmp_kv_ptr);
    g->kv_sorted = malloc((g->n_kv ? g->n_kv : 1) * sizeof(int64_t));
    if (!p || !g->kv_sorted) {
        free(p);
        return thaw_errf(err, THAW_ENOMEM, "gguf: out of memory");
    }
    int rc = 0;
    for (int64_t i = 0; i < g->n_kv; i++) {
        g->kv_sorted[i] = p[i] - g->kv;
        if (i && !rc && !cmp_kv_ptr(&p[i - 1], &p[i]))
            rc = thaw_errf(err, THAW_EFORMAT, "gguf: duplicate key '%.*s'", (int)p[i]->key_len,
                           p[i]->key);
    }
    free(p);
    return rc;
}

static int parse_alignment(struct gguf *g, struct thaw_err *err)
{
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (gguf_find_key(g, "general.alignment") < 0) return 0;
    uint32_t a;
    int rc = gguf_get_u32(g, "general.alignment", &a);
    if (rc) return thaw_errf(err, THAW_EFORMAT, "gguf: general.alignment is not a u32 value");
    if (a == 0 || (a & (a - 1)) || a > (1u << 20))
        return thaw_errf(err, THAW_EFORMAT,
                         "gguf: general.alignment %u is not a power of two up to 1 MiB", a);
    g->alignment = a;
    return 0;
}

/* Checks dims and type of one tensor and computes its size. */
static int check_tensor_shape(struct gguf_tensor *t, uint32_t type, struct thaw_err *err)
{
    if (!ggml_type_supported(type)) {
        const char *tn = ggml_type_name(type);
        return thaw_errf(err, THAW_EUNSUPPORTED, "gguf: tensor '%s': type %u (%s) is not supported",
                         t->name, type, tn ? tn : "unknown");
    }
    t->type = (enum ggml_type)type;
    uint64_t nel = 1;
    for (int d = 0; d < 4; d++) {
        if (t->ne[d] == 0 || t->ne[d] > (UINT64_C(1) << 40))
            return thaw_errf(err, THAW_EFORMAT, "gguf: tensor '%s': dimension %d is %" PRIu64,
                             t->name, d, t->ne[d]);
        if (nel > (UINT64_C(1) << 48) / t->ne[d])
            return thaw_errf(err, THAW_ERANGE, "gguf: tensor '%s': element count overflows",
                             t->name);
        nel *= t->ne[d];
    }
    uint64_t be = (uint64_t)ggml_type_block_elems(t->type);
    if (be == 0 || t->ne[0] % be)
        return thaw_errf(err, THAW_EFORMAT,
                         "gguf: tensor '%s': row length %" PRIu64
                         " is not a multiple of the %s block size %" PRIu64,
                         t->name, t->ne[0], ggml_type_name(type), be);
    uint64_t rb = ggml_row_bytes(t->type, t->ne[0]);
    uint64_t rows = nel / t->ne[0];
    if (rb == 0 || rows > UINT64_MAX / rb)
        return thaw_errf(err, THAW_ERANGE, "gguf: tensor '%s': size overflows", t->name);
    t->nbytes = rb * rows;
    return 0;
}

static int parse_tensor_info(struct cur *c, struct gguf_tensor *t, uint64_t *off)
{
    const char *name;
    uint64_t nlen;
    uint32_t n_dims, type;
    int rc = cur_str(c, &name, &nlen, "tensor name");
    if (rc) return rc;
    if (nlen == 0 || nlen > GGUF_MAX_NAME_LEN || memchr(name, 0, nlen))
        return thaw_errf(c->err, THAW_EFORMAT,
                         "gguf: tensor name at offset %zu is empty, too long or contains NUL",
                         c->pos - nlen - 8);
    char *copy = malloc(nlen + 1);
    if (!copy) return thaw_errf(c->err, THAW_ENOMEM, "gguf: out of memory");
    memcpy(copy, name, nlen);
    copy[nlen] = 0;
    t->name = copy;
    rc = cur_u32(c, &n_dims, "tensor n_dims");
    if (rc) return rc;
    if (n_dims < 1 || n_dims > 4)
        return thaw_errf(c->err, THAW_EFORMAT, "gguf: tensor '%s': n_dims %u is not in 1..4",
                         t->name, n_dims);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < 4; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++)
        if ((rc = cur_u64(c, &t->ne[d], "tensor dims"))) return rc;
    if ((rc = cur_u32(c, &type, "tensor type")) || (rc = cur_u64(c, off, "tensor offset")))
        return rc;
    return check_tensor_shape(t, type, c->err);
}

/* Places tensor data and checks alignment, bounds and overlap. */
static int place_tensors(struct gguf *g, const uint64_t *offs, struct thaw_err *err)
{
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct gguf_tensor *t = &g->tensors[i];
        if (offs[i] % g->alignment)
            return thaw_errf(err, THAW_EFORMAT,
                             "gguf: tensor '%s': offset %" PRIu64 " is not a multiple of %u",
                             t->name, offs[i], g->alignment);
        uint64_t avail = g->len - g->data_start;
        if (offs[i] > avail || t->nbytes > avail - offs[i])
            return thaw_errf(err, THAW_ERANGE,
                             "gguf: tensor '%s': data [%" PRIu64 ", +%" PRIu64
                             ") lies outside the file (%" PRIu64 " data bytes)",
                             t->name, offs[i], t->nbytes, avail);
        t->data = g->base + g->data_start + offs[i];
    }
    const struct gguf_tensor **p = (const struct gguf_tensor **)sorted_ptrs(
        g->tensors, g->n_tensors, sizeof(*g->tensors), cmp_t_off);
    if (!p) return thaw_errf(err, THAW_ENOMEM, "gguf: out of memory");
    int rc = 0;
    for (int64_t i = 1; i < g->n_tensors && !rc; i++)
        if ((const uint8_t *)p[i - 1]->data + p[i - 1]->nbytes > (const uint8_t *)p[i]->data)
            rc = thaw_errf(err, THAW_EFORMAT, "gguf: tensors '%s' and '%s' overlap", p[i - 1]->name,
                           p[i]->name);
    free(p);
    return rc;
}

static int index_tensors(struct gguf *g, struct thaw_err *err)
{
    const struct gguf_tensor **p = (const struct gguf_tensor **)sorted_ptrs(
        g->tensors, g->n_tensors, sizeof(*g->tensors), cmp_t_name);
    g->t_sorted = malloc((g->n_tensors ? g->n_tensors : 1) * sizeof(int64_t));
    if (!p || !g->t_sorted) {
        free(p);
        return thaw_errf(err, THAW_ENOMEM, "gguf: out of memory");
    }
    int rc = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        g->t_sorted[i] = p[i] - g->tensors;
        if (i && !rc && !strcmp(p[i - 1]->name, p[i]->name))
            rc = thaw_errf(err, THAW_EFORMAT, "gguf: duplicate tensor name '%s'", p[i]->name);
    }
    free(p);
    return rc;
}

static int parse_header(struct cur *c, struct gguf *g, uint64_t *n_tensors, uint64_t *n_kv)
{
    uint32_t magic;
    int rc = cur_u32(c, &magic, "magic");
    if (rc) return rc;
    if (magic != GGUF_MAGIC)
        return thaw_errf(c->err, THAW_EFORMAT, "gguf: bad magic (not a GGUF file)");
    if ((rc = cur_u32(c, &g->version, "version"))) return rc;
    if (g->version != 2 && g->version != 3) {
        if (g->version == 1)
            return thaw_errf(c->err, THAW_EUNSUPPORTED, "gguf: version 1 files are not supported");
        return thaw_errf(c->err, THAW_EUNSUPPORTED,
                         "gguf: version %u is not supported (2 and 3 are; a big-endian file?)",
                         g->version);
    }
    if ((rc = cur_u64(c, n_tensors, "tensor count")) || (rc = cur_u64(c, n_kv, "key count")))
        return rc;
    /* Smallest kv: 8-byte key length + 1 key byte + 4-byte type + 1 byte.
     * Smallest tensor info: 8 + 1 + 4 + 8 + 4 + 8. */
    if (*n_kv > cur_left(c) / 14)
        return thaw_errf(c->err, THAW_EFORMAT, "gguf: key count %" PRIu64 " exceeds the file size",
                         *n_kv);
    if (*n_tensors > cur_left(c) / 33)
        return thaw_errf(c->err, THAW_EFORMAT,
                         "gguf: tensor count %" PRIu64 " exceeds the file size", *n_tensors);
    return 0;
}

static int parse(struct gguf *g, struct thaw_err *err)
{
    struct cur c = {.p = g->base, .len = g->len, .pos = 0, .err = err};
    uint64_t n_tensors = 0, n_kv = 0; /* set by parse_header; gcc -O3 cannot see it */
    int rc = parse_header(&c, g, &n_tensors, &n_kv);
    if (rc) return rc;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof(*g->kv));
    if (!g->kv) return thaw_errf(err, THAW_ENOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1; /* so close() frees what was parsed */
        if ((rc = parse_kv(&c, &g->kv[i]))) return rc;
    }
    if ((rc = index_kv(g, err)) || (rc = parse_alignment(g, err))) return rc;
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof(*g->tensors));
    uint64_t *offs = malloc((n_tensors ? n_tensors : 1) * sizeof(uint64_t));
    if (!g->tensors || !offs) {
        free(offs);
        return thaw_errf(err, THAW_ENOMEM, "gguf: out of memory");
    }
    for (uint64_t i = 0; i < n_tensors && !rc; i++) {
        g->n_tensors = (int64_t)i + 1;
        rc = parse_tensor_info(&c, &g->tensors[i], &offs[i]);
    }
    if (!rc) {
        uint64_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
        g->data_start = c.pos + pad;
        if (n_tensors && g->data_start > g->len)
            rc = thaw_errf(err, THAW_EFORMAT, "gguf: truncated before the tensor data");
    }
    if (!rc) rc = place_tensors(g, offs, err);
    free(offs);
    if (!rc) rc = index_tensors(g, err);
    return rc;
}

/* ---- open / close --------------------------------------------------- */

static int open_common(struct gguf *g, struct gguf **out, struct thaw_err *err)
{
    int rc = parse(g, err);
    if (rc) {
        gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

int gguf_open_memory(const void *data, size_t len, struct gguf **out, struct thaw_err *err)
{
    *out = NULL;
    if (!data && len) return thaw_errf(err, THAW_EINVAL, "gguf: NULL buffer");
    struct gguf *g = calloc(1, sizeof(*g));
    if (!g) return thaw_errf(err, THAW_ENOMEM, "gguf: out of memory");
    g->base = data;
    g->len = len;
    return open_common(g, out, err);
}

int gguf_open(const char *path, struct gguf **out, struct thaw_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return thaw_errf(err, -errno, "gguf: cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return thaw_errf(err, -e, "gguf: cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode) || st.st_size < 24) {
        close(fd);
        return thaw_errf(err, THAW_EFORMAT, "gguf: %s is not a regular file of at least 24 bytes",
                         path);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return thaw_errf(err, -e, "gguf: cannot map %s: %s", path, strerror(e));
    struct gguf *g = calloc(1, sizeof(*g));
    if (!g) {
        munmap(m, (size_t)st.st_size);
        return thaw_errf(err, THAW_ENOMEM, "gguf: out of memory");
    }
    g->base = m;
    g->len = (size_t)st.st_size;
    g->mapped = true;
    return open_common(g, out, err);
}

void gguf_close(struct gguf *g)
{
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++)
        free(g->kv[i].str_off);
    free(g->kv);
    free(g->kv_sorted);
    for (int64_t i = 0; i < g->n_tensors; i++)
        free((char *)g->tensors[i].name);
    free(g->tensors);
    free(g->t_sorted);
    if (g->mapped) munmap((void *)g->base, g->len);
    free(g);
}

int gguf_prefault(const struct gguf *g)
{
    if (!g->mapped) return 0;
#ifdef MADV_POPULATE_READ
    if (madvise((void *)g->base, g->len, MADV_POPULATE_READ) == 0) return 0;
#endif
    return madvise((void *)g->base, g->len, MADV_WILLNEED) ? -errno : 0;
}

uint32_t gguf_version(const struct gguf *g)
{
    return g->version;
}

uint32_t gguf_alignment(const struct gguf *g)
{
    return g->alignment;
}

uint64_t gguf_data_offset(const struct gguf *g)
{
    return g->data_start;
}

const void *gguf_base(const struct gguf *g, size_t *len)
{
    if (len) *len = g->len;
    return g->base;
}

/* ---- metadata ------------------------------------------------------- */

int64_t gguf_n_kv(const struct gguf *g)
{
    return g->n_kv;
}

int64_t gguf_find_key(const struct gguf *g, const char *key)
{
    size_t kl = strlen(key);
    int64_t lo = 0, hi = g->kv_sorted ? g->n_kv : 0;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const struct gguf_kv *kv = &g->kv[g->kv_sorted[mid]];
        int r = key_cmp(kv->key, kv->key_len, key, kl);
        if (!r) return g->kv_sorted[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

const char *gguf_key_name(const struct gguf *g, int64_t i, size_t *len)
{
    if (i < 0 || i >= g->n_kv) return NULL;
    if (len) *len = g->kv[i].key_len;
    return g->kv[i].key;
}

enum gguf_vtype gguf_key_type(const struct gguf *g, int64_t i)
{
    if (i < 0 || i >= g->n_kv) return (enum gguf_vtype) - 1;
    return g->kv[i].type;
}

static int lookup(const struct gguf *g, const char *key, const struct gguf_kv **kv)
{
    int64_t i = gguf_find_key(g, key);
    if (i < 0) return THAW_ENOTFOUND;
    *kv = &g->kv[i];
    return 0;
}

/* Reads an integer of any GGUF integer type at p. Sets *neg when the value is
 * below zero (then *v holds it as int64), else *v holds it as uint64. */
static bool read_int(enum gguf_vtype t, const uint8_t *p, bool *neg, uint64_t *u, int64_t *s)
{
    *neg = false;
    switch (t) {
    case GGUF_VTYPE_UINT8:
        *u = p[0];
        break;
    case GGUF_VTYPE_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        *u = v;
        break;
    }
    case GGUF_VTYPE_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        *u = v;
        break;
    }
    case GGUF_VTYPE_UINT64:
        memcpy(u, p, 8);
        break;
    case GGUF_VTYPE_INT8:
        *s = (int8_t)p[0];
        goto sgn;
    case GGUF_VTYPE_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        *s = v;
        goto sgn;
    }
    case GGUF_VTYPE_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        *s = v;
        goto sgn;
    }
    case GGUF_VTYPE_INT64:
        memcpy(s, p, 8);
        goto sgn;
    default:
        return false;
    }
    *s = *u > INT64_MAX ? INT64_MAX : (int64_t)*u;
    return true;
sgn:
    *neg = *s < 0;
    *u = *neg ? 0 : (uint64_t)*s;
    return true;
}

static int get_int(enum gguf_vtype t, const uint8_t *p, int64_t lo, uint64_t hi, int64_t *out)
{
    bool neg;
    uint64_t u;
    int64_t s;
    if (!read_int(t, p, &neg, &u, &s)) return THAW_EFORMAT;
    if (neg ? s < lo : u > hi) return THAW_ERANGE;
    *out = neg ? s : (int64_t)u;
    return 0;
}

int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out)
{
    const struct gguf_kv *kv;
    int64_t v;
    int rc = lookup(g, key, &kv);
    if (!rc) rc = get_int(kv->type, kv->val, 0, UINT32_MAX, &v);
    if (!rc) *out = (uint32_t)v;
    return rc;
}

int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out)
{
    const struct gguf_kv *kv;
    int rc = lookup(g, key, &kv);
    if (!rc) rc = get_int(kv->type, kv->val, INT64_MIN, INT64_MAX, out);
    return rc;
}

static int get_float(enum gguf_vtype t, const uint8_t *p, float *out)
{
    if (t == GGUF_VTYPE_FLOAT32) {
        memcpy(out, p, 4);
        return 0;
    }
    if (t == GGUF_VTYPE_FLOAT64) {
        double d;
        memcpy(&d, p, 8);
        *out = (float)d;
        return 0;
    }
    return THAW_EFORMAT;
}

int gguf_get_f32(const struct gguf *g, const char *key, float *out)
{
    const struct gguf_kv *kv;
    int rc = lookup(g, key, &kv);
    return rc ? rc : get_float(kv->type, kv->val, out);
}

int gguf_get_bool(const struct gguf *g, const char *key, bool *out)
{
    const struct gguf_kv *kv;
    int rc = lookup(g, key, &kv);
    if (rc) return rc;
    if (kv->type != GGUF_VTYPE_BOOL) return THAW_EFORMAT;
    *out = kv->val[0] != 0;
    return 0;
}

int gguf_get_str(const struct gguf *g, const char *key, const char **s, size_t *len)
{
    const struct gguf_kv *kv;
    int rc = lookup(g, key, &kv);
    if (rc) return rc;
    if (kv->type != GGUF_VTYPE_STRING) return THAW_EFORMAT;
    *s = (const char *)kv->val;
    *len = kv->n;
    return 0;
}

int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_vtype *elem, uint64_t *n)
{
    const struct gguf_kv *kv;
    int rc = lookup(g, key, &kv);
    if (rc) return rc;
    if (kv->type != GGUF_VTYPE_ARRAY) return THAW_EFORMAT;
    if (elem) *elem = kv->elem;
    if (n) *n = kv->n;
    return 0;
}

static int arr_elem(const struct gguf *g, const char *key, uint64_t i, const struct gguf_kv **kv)
{
    int rc = lookup(g, key, kv);
    if (rc) return rc;
    if ((*kv)->type != GGUF_VTYPE_ARRAY) return THAW_EFORMAT;
    if (i >= (*kv)->n) return THAW_ERANGE;
    return 0;
}

int gguf_arr_str(const struct gguf *g, const char *key, uint64_t i, const char **s, size_t *len)
{
    const struct gguf_kv *kv;
    int rc = arr_elem(g, key, i, &kv);
    if (rc) return rc;
    if (kv->elem != GGUF_VTYPE_STRING) return THAW_EFORMAT;
    const uint8_t *p = kv->val + kv->str_off[i];
    uint64_t n;
    memcpy(&n, p, 8);
    *s = (const char *)p + 8;
    *len = n;
    return 0;
}

int gguf_arr_i32(const struct gguf *g, const char *key, uint64_t i, int32_t *out)
{
    const struct gguf_kv *kv;
    int64_t v;
    int rc = arr_elem(g, key, i, &kv);
    if (rc) return rc;
    if (kv->elem == GGUF_VTYPE_STRING) return THAW_EFORMAT;
    rc = get_int(kv->elem, kv->val + i * vtype_size(kv->elem), INT32_MIN, INT32_MAX, &v);
    if (!rc) *out = (int32_t)v;
    return rc;
}

int gguf_arr_f32(const struct gguf *g, const char *key, uint64_t i, float *out)
{
    const struct gguf_kv *kv;
    int rc = arr_elem(g, key, i, &kv);
    if (rc) return rc;
    if (kv->elem == GGUF_VTYPE_STRING) return THAW_EFORMAT;
    return get_float(kv->elem, kv->val + i * vtype_size(kv->elem), out);
}

/* Renders scalar value p of type t as text. */
static int format_scalar(enum gguf_vtype t, const uint8_t *p, struct buf *out)
{
    bool neg;
    uint64_t u;
    int64_t s;
    float f;
    if (t == GGUF_VTYPE_BOOL) return buf_append_str(out, p[0] ? "true" : "false");
    if (t == GGUF_VTYPE_FLOAT64) {
        double d;
        memcpy(&d, p, 8);
        return buf_printf(out, "%.9g", d);
    }
    if (!get_float(t, p, &f)) return buf_printf(out, "%.9g", (double)f);
    if (read_int(t, p, &neg, &u, &s))
        return neg ? buf_printf(out, "%" PRId64, s) : buf_printf(out, "%" PRIu64, u);
    return THAW_EFORMAT;
}

int gguf_format_value(const struct gguf *g, int64_t i, size_t max_elems, struct buf *out)
{
    if (i < 0 || i >= g->n_kv) return THAW_ERANGE;
    const struct gguf_kv *kv = &g->kv[i];
    if (kv->type == GGUF_VTYPE_STRING)
        return buf_append_json_string(out, (const char *)kv->val, kv->n);
    if (kv->type != GGUF_VTYPE_ARRAY) return format_scalar(kv->type, kv->val, out);
    int rc = buf_append_str(out, "[");
    for (uint64_t j = 0; j < kv->n && j < max_elems && !rc; j++) {
        if (j) rc = buf_append_str(out, ", ");
        if (rc) break;
        if (kv->elem == GGUF_VTYPE_STRING) {
            const uint8_t *p = kv->val + kv->str_off[j];
            uint64_t n;
            memcpy(&n, p, 8);
            rc = buf_append_json_string(out, (const char *)p + 8, n);
        } else {
            rc = format_scalar(kv->elem, kv->val + j * vtype_size(kv->elem), out);
        }
    }
    if (!rc && kv->n > max_elems) rc = buf_printf(out, ", ... (%" PRIu64 " elements)", kv->n);
    return rc ? rc : buf_append_str(out, "]");
}

/* ---- tensors -------------------------------------------------------- */

int64_t gguf_n_tensors(const struct gguf *g)
{
    return g->n_tensors;
}

const struct gguf_tensor *gguf_tensor_at(const struct gguf *g, int64_t i)
{
    if (i < 0 || i >= g->n_tensors) return NULL;
    return &g->tensors[i];
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name)
{
    int64_t lo = 0, hi = g->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        const struct gguf_tensor *t = &g->tensors[g->t_sorted[mid]];
        int r = strcmp(t->name, name);
        if (!r) return t;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---- writer --------------------------------------------------------- */

struct wkv {
    char *key;
    enum gguf_vtype type;
    struct buf val; /* encoded value bytes, exactly as in the file after the type */
};

struct wtensor {
    char *name;
    enum ggml_type type;
    int n_dims;
    uint64_t ne[4];
    void *data;
    size_t nbytes;
};

struct gguf_writer {
    struct wkv *kv;
    size_t n_kv, cap_kv;
    struct wtensor *t;
    size_t n_t, cap_t;
};

struct gguf_writer *gguf_writer_new(void)
{
    return calloc(1, sizeof(struct gguf_writer));
}

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        buf_free(&w->kv[i].val);
    }
    free(w->kv);
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w);
}

/* Adds an entry for key; THAW_EEXIST if the key is already set. */
static int wkv_add(struct gguf_writer *w, const char *key, enum gguf_vtype type, struct wkv **out)
{
    if (!w || !key || !*key) return THAW_EINVAL;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return THAW_EEXIST;
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        struct wkv *n = realloc(w->kv, cap * sizeof(*n));
        if (!n) return THAW_ENOMEM;
        w->kv = n;
        w->cap_kv = cap;
    }
    struct wkv *kv = &w->kv[w->n_kv];
    memset(kv, 0, sizeof(*kv));
    kv->key = str_dup(key);
    if (!kv->key) return THAW_ENOMEM;
    kv->type = type;
    w->n_kv++;
    *out = kv;
    return 0;
}

static int put_str(struct buf *b, const char *s, uint64_t n)
{
    int rc = buf_append(b, &n, 8);
    return rc ? rc : buf_append(b, s, n);
}

int gguf_writer_set_scalar(struct gguf_writer *w, const char *key, enum gguf_vtype t, const void *v)
{
    size_t sz = vtype_size(t);
    struct wkv *kv;
    if (!sz || !v) return THAW_EINVAL;
    int rc = wkv_add(w, key, t, &kv);
    return rc ? rc : buf_append(&kv->val, v, sz);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
    return gguf_writer_set_scalar(w, key, GGUF_VTYPE_UINT32, &v);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v)
{
    return gguf_writer_set_scalar(w, key, GGUF_VTYPE_INT32, &v);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v)
{
    return gguf_writer_set_scalar(w, key, GGUF_VTYPE_UINT64, &v);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v)
{
    return gguf_writer_set_scalar(w, key, GGUF_VTYPE_FLOAT32, &v);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return gguf_writer_set_scalar(w, key, GGUF_VTYPE_BOOL, &b);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v)
{
    struct wkv *kv;
    if (!v) return THAW_EINVAL;
    int rc = wkv_add(w, key, GGUF_VTYPE_STRING, &kv);
    return rc ? rc : put_str(&kv->val, v, strlen(v));
}

static int arr_header(struct gguf_writer *w, const char *key, enum gguf_vtype elem, uint64_t n,
                      struct wkv **kv)
{
    int rc = wkv_add(w, key, GGUF_VTYPE_ARRAY, kv);
    uint32_t e = elem;
    if (!rc) rc = buf_append(&(*kv)->val, &e, 4);
    if (!rc) rc = buf_append(&(*kv)->val, &n, 8);
    return rc;
}

int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_vtype elem, const void *v,
                        uint64_t n)
{
    size_t sz = vtype_size(elem);
    struct wkv *kv;
    if (!sz || (n && !v) || n > SIZE_MAX / sz) return THAW_EINVAL;
    int rc = arr_header(w, key, elem, n, &kv);
    return rc ? rc : buf_append(&kv->val, v, n * sz);
}

int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *v,
                            uint64_t n)
{
    struct wkv *kv;
    if (n && !v) return THAW_EINVAL;
    int rc = arr_header(w, key, GGUF_VTYPE_STRING, n, &kv);
    for (uint64_t i = 0; i < n && !rc; i++)
        rc = v[i] ? put_str(&kv->val, v[i], strlen(v[i])) : THAW_EINVAL;
    return rc;
}

int gguf_writer_set_arr_f32(struct gguf_writer *w, const char *key, const float *v, uint64_t n)
{
    return gguf_writer_set_arr(w, key, GGUF_VTYPE_FLOAT32, v, n);
}

int gguf_writer_set_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, uint64_t n)
{
    return gguf_writer_set_arr(w, key, GGUF_VTYPE_INT32, v, n);
}

static int tensor_bytes(enum ggml_type type, int n_dims, const uint64_t *ne, size_t *out)
{
    if (!ggml_type_supported(type) || n_dims < 1 || n_dims > 4) return THAW_EINVAL;
    uint64_t rows = 1;
    for (int d = 1; d < n_dims; d++) {
        if (!ne[d] || rows > SIZE_MAX / ne[d]) return THAW_EINVAL;
        rows *= ne[d];
    }
    size_t rb = ggml_row_bytes(type, ne[0]);
    if (!rb || rows > SIZE_MAX / rb) return THAW_EINVAL;
    *out = rb * rows;
    return 0;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type, int n_dims,
                           const uint64_t *ne, const void *data)
{
    size_t nbytes;
    if (!w || !name || !*name || strlen(name) > GGUF_MAX_NAME_LEN || !ne || !data)
        return THAW_EINVAL;
    int rc = tensor_bytes(type, n_dims, ne, &nbytes);
    if (rc) return rc;
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return THAW_EEXIST;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        struct wtensor *n = realloc(w->t, cap * sizeof(*n));
        if (!n) return THAW_ENOMEM;
        w->t = n;
        w->cap_t = cap;
    }
    struct wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof(*t));
    t->name = str_dup(name);
    t->data = malloc(nbytes);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return THAW_ENOMEM;
    }
    memcpy(t->data, data, nbytes);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++)
        t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = nbytes;
    w->n_t++;
    return 0;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

/* Serialises header, metadata and tensor infos into b. */
static int write_header(const struct gguf_writer *w, uint32_t align, struct buf *b)
{
    uint32_t u32[2] = {GGUF_MAGIC, 3};
    uint64_t counts[2] = {w->n_t, w->n_kv};
    int rc = buf_append(b, u32, 8);
    if (!rc) rc = buf_append(b, counts, 16);
    for (size_t i = 0; i < w->n_kv && !rc; i++) {
        uint32_t t = w->kv[i].type;
        rc = put_str(b, w->kv[i].key, strlen(w->kv[i].key));
        if (!rc) rc = buf_append(b, &t, 4);
        if (!rc) rc = buf_append(b, w->kv[i].val.data, w->kv[i].val.len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t && !rc; i++) {
        const struct wtensor *t = &w->t[i];
        uint32_t nd = t->n_dims, ty = t->type;
        rc = put_str(b, t->name, strlen(t->name));
        if (!rc) rc = buf_append(b, &nd, 4);
        if (!rc) rc = buf_append(b, t->ne, 8 * nd);
        if (!rc) rc = buf_append(b, &ty, 4);
        if (!rc) rc = buf_append(b, &off, 8);
        off = align_up(off + t->nbytes, align);
    }
    while (!rc && b->len % align)
        rc = buf_append(b, "", 1);
    return rc;
}

static int write_all(FILE *f, const struct gguf_writer *w, uint32_t align, const struct buf *hdr)
{
    static const char zeros[4096];
    if (fwrite(hdr->data, 1, hdr->len, f) != hdr->len) return -1;
    for (size_t i = 0; i < w->n_t; i++) {
        size_t n = w->t[i].nbytes, pad = align_up(n, align) - n;
        if (fwrite(w->t[i].data, 1, n, f) != n) return -1;
        for (size_t k; i + 1 < w->n_t && pad; pad -= k) {
            k = MIN(pad, sizeof zeros);
            if (fwrite(zeros, 1, k, f) != k) return -1;
        }
    }
    return 0;
}

/* The alignment the file declares in general.alignment (u32), else 32. */
static int writer_alignment(const struct gguf_writer *w, uint32_t *out)
{
    *out = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment")) continue;
        if (w->kv[i].type != GGUF_VTYPE_UINT32) return THAW_EINVAL;
        memcpy(out, w->kv[i].val.data, 4);
        if (!*out || (*out & (*out - 1)) || *out > (1u << 20)) return THAW_EINVAL;
    }
    return 0;
}

int gguf_writer_write(struct gguf_writer *w, const char *path, struct thaw_err *err)
{
    struct buf hdr = {0};
    struct buf tmp = {0};
    uint32_t align;
    if (writer_alignment(w, &align))
        return thaw_errf(err, THAW_EINVAL,
                         "gguf: general.alignment must be a u32 power of two up to 1 MiB");
    int rc = write_header(w, align, &hdr);
    if (!rc) rc = buf_printf(&tmp, "%s.tmp.XXXXXX", path);
    if (rc) {
        buf_free(&hdr);
        buf_free(&tmp);
        return thaw_errf(err, THAW_ENOMEM, "gguf: out of memory writing %s", path);
    }
    int fd = mkstemp(tmp.data);
    if (fd < 0) {
        rc = thaw_errf(err, -errno, "gguf: cannot create %s: %s", tmp.data, strerror(errno));
        goto out_free;
    }
    fchmod(fd, 0644); /* mkstemp's 0600 would hide models from other users */
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        rc = thaw_errf(err, -errno, "gguf: fdopen: %s", strerror(errno));
        close(fd);
        goto out_unlink;
    }
    int bad = write_all(f, w, align, &hdr);
    int e = errno;
    if (!bad && fflush(f)) bad = 1, e = errno;
    if (!bad && fsync(fileno(f))) bad = 1, e = errno;
    if (fclose(f) && !bad) bad = 1, e = errno;
    if (bad) {
        rc = thaw_errf(err, e ? -e : THAW_EIO, "gguf: writing %s failed: %s", path, strerror(e));
        goto out_unlink;
    }
    if (rename(tmp.data, path)) {
        rc = thaw_errf(err, -errno, "gguf: cannot rename to %s: %s", path, strerror(errno));
        goto out_unlink;
    }
    goto out_free;
out_unlink:
    unlink(tmp.data);
out_free:
    buf_free(&tmp);
    buf_free(&hdr);
    return rc;
}
