/* GGUF files: a validating reader over a read-only mmap and a writer.
 *
 * Byte layout (little-endian, GGUF v2/v3):
 *   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x { string key | u32 value_type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to general.alignment (default 32)
 *   tensor data; each tensor at data_start + offset, offset a multiple of alignment
 * string = u64 len | bytes (no NUL); array = u32 elem_type | u64 n | n x elem
 *
 * The reader validates every count, length, type, offset, size and alignment
 * at open time, so nothing after a successful open can read out of bounds.
 * Strings returned point into the mapping and are NOT NUL-terminated. */
#ifndef THAW_ENGINE_GGUF_H
#define THAW_ENGINE_GGUF_H

#include "base/base.h"
#include "engine/kernels.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gguf_vtype {
    GGUF_VTYPE_UINT8 = 0,
    GGUF_VTYPE_INT8 = 1,
    GGUF_VTYPE_UINT16 = 2,
    GGUF_VTYPE_INT16 = 3,
    GGUF_VTYPE_UINT32 = 4,
    GGUF_VTYPE_INT32 = 5,
    GGUF_VTYPE_FLOAT32 = 6,
    GGUF_VTYPE_BOOL = 7,
    GGUF_VTYPE_STRING = 8,
    GGUF_VTYPE_ARRAY = 9,
    GGUF_VTYPE_UINT64 = 10,
    GGUF_VTYPE_INT64 = 11,
    GGUF_VTYPE_FLOAT64 = 12,
};

struct gguf_tensor {
    const char *name; /* NUL-terminated copy owned by the gguf */
    enum ggml_type type;
    int n_dims;
    uint64_t ne[4];   /* ne[0] is the row length (innermost); unused dims are 1 */
    const void *data; /* points into the mapping */
    uint64_t nbytes;
};

struct gguf;

/* Maps path read-only and validates it. On success *out owns the mapping;
 * free it with gguf_close. On error returns THAW_EFORMAT/THAW_ERANGE/-errno
 * and err names what is wrong (key, tensor, offset). */
int gguf_open(const char *path, struct gguf **out, struct thaw_err *err);
/* Same over a caller's buffer, which must outlive the gguf (not copied). */
int gguf_open_memory(const void *data, size_t len, struct gguf **out, struct thaw_err *err);
void gguf_close(struct gguf *g);

uint32_t gguf_version(const struct gguf *g);
uint32_t gguf_alignment(const struct gguf *g);

/* Metadata. Key lookups return THAW_ENOTFOUND when absent and THAW_EFORMAT
 * when the value has another type. Integer getters accept any integer type
 * whose value fits the requested one. */
int64_t gguf_n_kv(const struct gguf *g);
int64_t gguf_find_key(const struct gguf *g, const char *key); /* index or -1 */
const char *gguf_key_name(const struct gguf *g, int64_t i, size_t *len);
enum gguf_vtype gguf_key_type(const struct gguf *g, int64_t i);
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out);
int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out);
int gguf_get_f32(const struct gguf *g, const char *key, float *out); /* accepts f32 or f64 */
int gguf_get_bool(const struct gguf *g, const char *key, bool *out);
int gguf_get_str(const struct gguf *g, const char *key, const char **s, size_t *len);

/* Arrays: element type and count, then O(1) element access (string arrays are
 * indexed at open time). Out-of-range i returns THAW_ERANGE. */
int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_vtype *elem, uint64_t *n);
int gguf_arr_str(const struct gguf *g, const char *key, uint64_t i, const char **s, size_t *len);
int gguf_arr_i32(const struct gguf *g, const char *key, uint64_t i,
                 int32_t *out); /* any int type that fits */
int gguf_arr_f32(const struct gguf *g, const char *key, uint64_t i, float *out);

/* Renders value i as text into out (strings as JSON literals, arrays as
 * [a, b, ...] showing at most max_elems elements). Returns 0 or a status. */
int gguf_format_value(const struct gguf *g, int64_t i, size_t max_elems, struct buf *out);
/* Reads the whole file in and maps it now (MADV_POPULATE_READ, else a
 * readahead hint) so the first pass over the weights takes no page faults.
 * No-op for gguf_open_memory. Returns 0 or -errno. */
int gguf_prefault(const struct gguf *g);
/* File offset where tensor data starts, and the whole mapping. */
uint64_t gguf_data_offset(const struct gguf *g);
const void *gguf_base(const struct gguf *g, size_t *len);

/* Tensors. */
int64_t gguf_n_tensors(const struct gguf *g);
const struct gguf_tensor *gguf_tensor_at(const struct gguf *g, int64_t i);
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g,
                                           const char *name); /* NULL if absent */

/* Writer: collects metadata and tensors in memory (tensor data is copied), then
 * writes a GGUF v3 file atomically (temporary file + rename). */
struct gguf_writer;
struct gguf_writer *gguf_writer_new(void);
void gguf_writer_free(struct gguf_writer *w);
int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *v);
int gguf_writer_set_arr_str(struct gguf_writer *w, const char *key, const char *const *v,
                            uint64_t n);
int gguf_writer_set_arr_f32(struct gguf_writer *w, const char *key, const float *v, uint64_t n);
int gguf_writer_set_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
/* Any scalar type (not string/array), and arrays of any scalar type; v holds
 * the value(s) in native little-endian layout. */
int gguf_writer_set_scalar(struct gguf_writer *w, const char *key, enum gguf_vtype t,
                           const void *v);
int gguf_writer_set_arr(struct gguf_writer *w, const char *key, enum gguf_vtype elem, const void *v,
                        uint64_t n);
/* Setters return 0, THAW_EINVAL, THAW_EEXIST (key already set) or THAW_ENOMEM.
 * data holds nbytes = ggml_row_bytes(type, ne[0]) * ne[1] * ne[2] * ne[3]. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum ggml_type type, int n_dims,
                           const uint64_t *ne, const void *data);
int gguf_writer_write(struct gguf_writer *w, const char *path, struct thaw_err *err);

#endif
