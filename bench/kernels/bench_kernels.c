/* Benchmark of the engine's numeric kernels. Measures, in one run, the
 * machine's memory bandwidth (STREAM-like triad, copy and read over arrays far
 * larger than the caches), then for each weight type the matvec rate in GB/s
 * of weights read at TinyLlama's shapes with 1 and 2 threads (as a fraction
 * of the bandwidth), and matmul throughput per token count against n_tok=1,
 * with OpenBLAS sgemm as the F32 reference.
 *
 * With --packed the matrices are packed first (kern_pack, as engine_model_load
 * does) where the level has a packed layout for the type.
 *
 * Usage: bench_kernels [--quick] [--packed] [--level avx512|avx2|neon-dotprod|neon|portable]
 * [--types Q8_0,Q4_K,...] */
#include "engine/kernels.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef HAVE_OPENBLAS
#include <cblas.h>
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread. The machine this runs on is shared, so
 * each thread times its own share of a job in CPU time (preemption by other
 * jobs does not count) and a job takes as long as its slowest thread. */
static double thread_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double job_time[8];

static double job_time_max(int nth)
{
    double m = 0;
    for (int i = 0; i < nth; i++)
        m = fmax(m, job_time[i]);
    return m;
}

static void *xalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* ---- a tiny spinning pool: the caller is thread 0 ----------------------- */

#if defined(__x86_64__)
#define CPU_RELAX() __builtin_ia32_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

typedef void (*job_fn)(void *arg, int tid, int nth);

static struct {
    int nth;
    job_fn fn;
    void *arg;
    atomic_int gen, done;
    pthread_t th[8];
} pool;

static void *pool_worker(void *p)
{
    int tid = (int)(intptr_t)p, seen = 0;
    for (;;) {
        int g;
        for (long spins = 0; (g = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen;
             spins++) {
            CPU_RELAX();
            if (spins > 20000) sched_yield(); /* idle between runs: let others have the core */
        }
        seen = g;
        if (g < 0) return NULL;
        if (tid < pool.nth) pool.fn(pool.arg, tid, pool.nth);
        atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    }
}

static int pool_max;

static void pool_start(int max_threads)
{
    pool_max = max_threads;
    for (int i = 1; i < max_threads; i++)
        pthread_create(&pool.th[i], NULL, pool_worker, (void *)(intptr_t)i);
}

/* Runs fn on nth threads (nth <= pool_max) and waits for all. */
static void pool_run(job_fn fn, void *arg, int nth)
{
    pool.fn = fn;
    pool.arg = arg;
    pool.nth = nth;
    atomic_store(&pool.done, 0);
    atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release);
    fn(arg, 0, nth);
    while (atomic_load_explicit(&pool.done, memory_order_acquire) < pool_max - 1)
        CPU_RELAX();
}

static void pool_stop(void)
{
    atomic_store(&pool.gen, -1);
    for (int i = 1; i < pool_max; i++)
        pthread_join(pool.th[i], NULL);
}

static void split(long n, int tid, int nth, long *a, long *b)
{
    *a = n * tid / nth;
    *b = n * (tid + 1) / nth;
}

/* ---- memory bandwidth --------------------------------------------------- */

#define BW_N (48L * 1024 * 1024) /* floats per array: 192 MiB each */

struct bw {
    float *a, *b, *c;
    int kind; /* 0 init, 1 triad, 2 copy, 3 read */
    double sink[8];
};

static void bw_job(void *p, int tid, int nth)
{
    struct bw *w = p;
    long lo, hi;
    double t0 = thread_s();
    split(BW_N, tid, nth, &lo, &hi);
    float *a = w->a, *b = w->b, *c = w->c;
    switch (w->kind) {
    case 0:
        for (long i = lo; i < hi; i++)
            a[i] = 1.0f, b[i] = 2.0f, c[i] = 0.5f;
        break;
    case 1:
        for (long i = lo; i < hi; i++)
            a[i] = b[i] + 3.0f * c[i];
        break;
    case 2:
        for (long i = lo; i < hi; i++)
            a[i] = b[i];
        break;
    default: {
        /* 64-bit integer xors: two loads per cycle, no add latency chain */
        const uint64_t *u = (const uint64_t *)b;
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (long i = lo / 2; i + 4 <= hi / 2; i += 4) {
            s0 ^= u[i], s1 ^= u[i + 1], s2 ^= u[i + 2], s3 ^= u[i + 3];
        }
        w->sink[tid] = (double)(s0 ^ s1 ^ s2 ^ s3);
    }
    }
    job_time[tid] = thread_s() - t0;
}

/* Best GB/s of a few passes; bytes counted as STREAM does (no write-allocate). */
static double bw_measure(struct bw *w, int kind, int nth, double bytes_per_elem)
{
    double best = 0;
    w->kind = kind;
    for (int rep = 0; rep < 5; rep++) {
        pool_run(bw_job, w, nth);
        double dt = job_time_max(nth);
        best = fmax(best, bytes_per_elem * BW_N / dt / 1e9);
    }
    return best;
}

/* ---- matmul timing ------------------------------------------------------ */

struct mm {
    enum ggml_type t;
    int rows, cols, n_tok;
    const uint8_t *W;  /* current copy */
    const uint8_t *pk; /* its packed layout, or NULL */
    size_t mat_bytes;
    const void *prep;
    float *y;
};

static void mm_job(void *p, int tid, int nth)
{
    struct mm *m = p;
    long lo, hi;
    /* split on multiples of 4 rows so threads do not share cache lines of y
     * (packed: of the 16-row groups) */
    int g = m->pk ? 16 : 4;
    split(m->rows / g, tid, nth, &lo, &hi);
    int r1 = tid == nth - 1 ? m->rows : (int)hi * g;
    double t0 = thread_s();
    kern_matmul_packed(m->t, m->W, m->pk, m->cols, m->prep, m->n_tok, m->y, m->rows, (int)lo * g,
                       r1);
    job_time[tid] = thread_s() - t0;
}

/* Weights: `copies` copies of one random matrix, read in turn so the caches
 * never hold the matrix being multiplied (as in a real decode step). */
struct weights {
    uint8_t *buf;
    size_t mat_bytes;
    int copies;
    uint8_t *pk; /* packed copies, pk_bytes apart (--packed) */
    size_t pk_bytes;
};

static int packed_opt;

static void weights_make(struct weights *w, enum ggml_type t, int rows, int cols, size_t min_total)
{
    size_t rb = ggml_row_bytes(t, (uint64_t)cols);
    w->mat_bytes = rb * (size_t)rows;
    w->copies = (int)((min_total + w->mat_bytes - 1) / w->mat_bytes);
    if (w->copies < 2) w->copies = 2;
    w->buf = xalloc(w->mat_bytes * (size_t)w->copies);
    enum { POOL = 32 };
    float *x = xalloc(sizeof(float) * (size_t)cols);
    uint8_t *rowsq = xalloc(rb * POOL);
    unsigned s = 12345;
    for (int r = 0; r < POOL; r++) {
        for (int i = 0; i < cols; i++) {
            s = s * 1103515245u + 12345u;
            x[i] = ((float)((s >> 8) & 0xffff) / 65536.0f - 0.5f) * 0.1f;
        }
        kern_quantize(t, x, rowsq + rb * (size_t)r, cols);
    }
    for (size_t off = 0; off < w->mat_bytes * (size_t)w->copies; off += rb)
        memcpy(w->buf + off, rowsq + rb * ((off / rb) % POOL), rb);
    free(x);
    free(rowsq);
    w->pk = NULL;
    w->pk_bytes = packed_opt ? kern_pack_bytes(t, rows, cols) : 0;
    if (w->pk_bytes) {
        w->pk_bytes = (w->pk_bytes + 63) & ~(size_t)63;
        w->pk = aligned_alloc(64, w->pk_bytes * (size_t)w->copies);
        if (!w->pk) abort();
        for (int c = 0; c < w->copies; c++)
            kern_pack(t, w->buf + w->mat_bytes * (size_t)c, rows, cols,
                      w->pk + w->pk_bytes * (size_t)c);
    }
}

/* Seconds per matmul call (input preparation included): the fastest call of
 * those made in min_time seconds, rotating through the copies. The fastest,
 * not the mean, because this machine is shared and other jobs preempt us. */
static double time_matmul(struct weights *w, enum ggml_type t, int rows, int cols, int n_tok,
                          int nth, double min_time)
{
    float *x = xalloc(sizeof(float) * (size_t)n_tok * (size_t)cols);
    for (long i = 0; i < (long)n_tok * cols; i++)
        x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    void *prep = xalloc(kern_input_bytes(t, n_tok, cols));
    struct mm m = {.t = t,
                   .rows = rows,
                   .cols = cols,
                   .n_tok = n_tok,
                   .prep = prep,
                   .y = xalloc(sizeof(float) * (size_t)n_tok * (size_t)rows)};
    double start = now_s(), best = 1e30;
    for (int it = 0; it < 3 || now_s() - start < min_time; it++) {
        m.W = w->buf + w->mat_bytes * (size_t)(it % w->copies);
        m.pk = w->pk ? w->pk + w->pk_bytes * (size_t)(it % w->copies) : NULL;
        double t0 = thread_s();
        kern_input_prepare(t, x, n_tok, cols, prep);
        double tprep = thread_s() - t0;
        pool_run(mm_job, &m, nth);
        if (it > 0) best = fmin(best, tprep + job_time_max(nth)); /* the first call warms up */
    }
    free(x);
    free(prep);
    free(m.y);
    return best;
}

#ifdef HAVE_OPENBLAS
struct sg {
    const float *W, *x;
    float *y;
    int rows, cols, n_tok;
};

/* As the engine calls it: each thread one sgemm on its rows, OpenBLAS itself
 * single-threaded, timed in thread CPU time like our kernels. */
static void sgemm_job(void *p, int tid, int nth)
{
    struct sg *g = p;
    long lo, hi;
    split(g->rows, tid, nth, &lo, &hi);
    double t0 = thread_s();
    /* y[n_tok x rows] = x[n_tok x cols] * W^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g->n_tok, (int)(hi - lo), g->cols, 1.0f,
                g->x, g->cols, g->W + (size_t)lo * (size_t)g->cols, g->cols, 0.0f, g->y + lo,
                g->rows);
    job_time[tid] = thread_s() - t0;
}

static double time_sgemm(const float *W, int rows, int cols, int n_tok, int nth, double min_time)
{
    float *x = xalloc(sizeof(float) * (size_t)n_tok * (size_t)cols);
    float *y = xalloc(sizeof(float) * (size_t)n_tok * (size_t)rows);
    for (long i = 0; i < (long)n_tok * cols; i++)
        x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    struct sg g = {W, x, y, rows, cols, n_tok};
    openblas_set_num_threads(1);
    double start = now_s(), best = 1e30;
    for (int it = 0; it < 3 || now_s() - start < min_time; it++) {
        pool_run(sgemm_job, &g, nth);
        if (it > 0) best = fmin(best, job_time_max(nth));
    }
    free(x);
    free(y);
    return best;
}
#endif

/* ---- main ---------------------------------------------------------------- */

static const enum ggml_type all_types[] = {
    GGML_TYPE_Q8_0, GGML_TYPE_Q4_K, GGML_TYPE_Q6_K, GGML_TYPE_Q4_0,
    GGML_TYPE_Q5_0, GGML_TYPE_F16,  GGML_TYPE_BF16, GGML_TYPE_F32,
};

static int type_selected(const char *list, enum ggml_type t)
{
    if (!list) return 1;
    const char *name = ggml_type_name(t), *p = list;
    size_t n = strlen(name);
    while ((p = strstr(p, name))) {
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
        p += n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int quick = 0;
    const char *types = NULL, *level = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--packed"))
            packed_opt = 1;
        else if (!strcmp(argv[i], "--level") && i + 1 < argc)
            level = argv[++i];
        else if (!strcmp(argv[i], "--types") && i + 1 < argc)
            types = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--packed] [--level L] [--types T1,T2]\n",
                    argv[0]);
            return 2;
        }
    }
    if (level && kern_force_level(level) != 0) {
        fprintf(stderr, "level %s not available on this CPU\n", level);
        return 2;
    }
    double tmin = quick ? 0.08 : 0.25;
    pool_start(2);
    double load[3] = {0};
    getloadavg(load, 3);
    printf("kernels: %s%s; load average %.2f (times are per-thread CPU time, best call)\n",
           kern_simd_level(), packed_opt ? ", packed where the level has a layout" : "", load[0]);

    struct bw bw = {xalloc(BW_N * 4), xalloc(BW_N * 4), xalloc(BW_N * 4), 0, {0}};
    bw.kind = 0;
    pool_run(bw_job, &bw, 2);
    double triad[3], copy[3], rd[3];
    for (int nth = 1; nth <= 2; nth++) {
        triad[nth] = bw_measure(&bw, 1, nth, 12);
        copy[nth] = bw_measure(&bw, 2, nth, 8);
        rd[nth] = bw_measure(&bw, 3, nth, 4);
        printf("memory bandwidth, %d thread%s: triad %.1f GB/s, copy %.1f GB/s, read %.1f GB/s\n",
               nth, nth > 1 ? "s" : "", triad[nth], copy[nth], rd[nth]);
    }
    free(bw.a), free(bw.b), free(bw.c);

    static const int shapes[][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}};
    printf("\nmatvec (n_tok=1), weights read per second; fraction of triad / read bandwidth at the "
           "same thread count\n");
    printf("%-5s %-10s %8s %10s %7s %7s %10s %7s %7s\n", "type", "rows x cols", "MiB", "GB/s 1t",
           "triad", "read", "GB/s 2t", "triad", "read");
    for (size_t k = 0; k < sizeof all_types / sizeof all_types[0]; k++) {
        enum ggml_type t = all_types[k];
        if (!type_selected(types, t)) continue;
        for (int s = 0; s < 3; s++) {
            int rows = shapes[s][0], cols = shapes[s][1];
            struct weights w;
            weights_make(&w, t, rows, cols, (size_t)384 << 20);
            double gbs[3];
            for (int nth = 1; nth <= 2; nth++)
                gbs[nth] = (double)w.mat_bytes / time_matmul(&w, t, rows, cols, 1, nth, tmin) / 1e9;
            printf("%-5s %4dx%-5d %8.1f %10.1f %6.0f%% %6.0f%% %10.1f %6.0f%% %6.0f%%\n",
                   ggml_type_name(t), rows, cols, (double)w.mat_bytes / 1048576.0, gbs[1],
                   100 * gbs[1] / triad[1], 100 * gbs[1] / rd[1], gbs[2], 100 * gbs[2] / triad[2],
                   100 * gbs[2] / rd[2]);
            free(w.buf);
            free(w.pk);
        }
    }

    static const int toks[] = {1, 4, 8, 32, 512};
    const int rows = 5632, cols = 2048;
    printf("\nmatmul %dx%d: tokens/s by n_tok, and per-token throughput relative to n_tok=1 "
           "(same threads)\n",
           rows, cols);
    for (size_t k = 0; k < sizeof all_types / sizeof all_types[0]; k++) {
        enum ggml_type t = all_types[k];
        if (!type_selected(types, t)) continue;
        struct weights w;
        weights_make(&w, t, rows, cols, (size_t)192 << 20);
        for (int nth = 1; nth <= 2; nth++) {
            double base = 0;
            printf("%-5s %dt:", ggml_type_name(t), nth);
            for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
                if (quick && toks[i] == 512 && (t == GGML_TYPE_F32 || t == GGML_TYPE_BF16))
                    continue;
                double sec = time_matmul(&w, t, rows, cols, toks[i], nth, tmin);
                double tps = toks[i] / sec;
                if (i == 0) base = tps;
                printf("  n=%d %.0f tok/s (%.2fx)", toks[i], tps, tps / base);
            }
            printf("\n");
        }
        free(w.buf);
        free(w.pk);
    }

#ifdef HAVE_OPENBLAS
    if (type_selected(types, GGML_TYPE_F32) || type_selected(types, GGML_TYPE_F16)) {
        printf("\nF32/F16 matmul %dx%d vs OpenBLAS sgemm on f32 weights, ms per call "
               "(own/sgemm; >1: sgemm faster); kern_matmul dispatches to sgemm from %d (F32) "
               "and %d (F16) tokens\n",
               rows, cols, 16, 128);
        struct weights w32, w16;
        weights_make(&w32, GGML_TYPE_F32, rows, cols, 0);
        weights_make(&w16, GGML_TYPE_F16, rows, cols, 0);
        for (int nth = 1; nth <= 2; nth++) {
            for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
                int n = toks[i];
                double tb = time_sgemm((const float *)w32.buf, rows, cols, n, nth, tmin);
                kern_use_blas(false);
                double t32 = time_matmul(&w32, GGML_TYPE_F32, rows, cols, n, nth, tmin);
                double t16 = time_matmul(&w16, GGML_TYPE_F16, rows, cols, n, nth, tmin);
                kern_use_blas(true);
                double b32 = time_matmul(&w32, GGML_TYPE_F32, rows, cols, n, nth, tmin);
                double b16 = time_matmul(&w16, GGML_TYPE_F16, rows, cols, n, nth, tmin);
                printf("%dt n=%-4d sgemm %8.3f | own kernels: F32 %8.3f (%.2f) F16 %8.3f (%.2f) | "
                       "as dispatched: F32 %8.3f F16 %8.3f\n",
                       nth, n, tb * 1e3, t32 * 1e3, t32 / tb, t16 * 1e3, t16 / tb, b32 * 1e3,
                       b16 * 1e3);
            }
        }
        free(w32.buf);
        free(w16.buf);
    }
#endif
    pool_stop();
    return 0;
}
