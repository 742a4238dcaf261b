/* A fixed pool of worker threads for the forward pass. A run's parts are
 * dealt out in contiguous ranges, one per thread; a thread claims parts
 * from the front of its own range (a word no other thread writes while the
 * owner keeps up, so a claim costs no cache-line transfer) and, when its
 * range is empty, steals from the back of the others'. Each range word holds
 * the run's generation, so a claim is checked against its own run. A thread
 * the OS has not scheduled yet simply has its range taken: on a loaded
 * machine the caller finishes the run alone instead of waiting for a
 * sleeping worker. Which thread runs a part never changes what the part
 * computes. */
#include "engine/engine_int.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPIN_ROUNDS 20000

/* One thread's range of the current run, on its own cache line:
 * gen:24 | end:20 | next:20, parts [next, end) left. */
struct range {
    _Alignas(64) _Atomic uint64_t v;
};

struct tpool {
    int n;
    pthread_t *threads;
    struct range *ranges; /* n */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Alignas(64) _Atomic uint64_t ticket; /* gen:24 | n_parts:20 of the current run */
    _Alignas(64) atomic_int done;         /* parts finished, added once per thread and run */
    atomic_bool stop;
    atomic_int sleepers; /* workers waiting on cv */
    /* the current run, stable while any of its parts is unfinished */
    tpool_fn fn;
    void *arg;
    /* caller-side only: windows of runs alone or threaded, timed, so the
     * pool keeps to whichever is faster on this machine right now */
    uint64_t win_start, win_wait_ns;
    int win_runs, win_len, since_probe;
    bool win_solo, best_solo, probe_next, fixed; /* fixed: always threaded (tests) */
    double ns[2]; /* last window's time per run: [0] threaded, [1] alone */
};

/* Runs per timed window (a few tokens of a forward pass); every PROBE_EVERY-th
 * window tries the other way, for PROBE_RUNS runs (a probe alone costs a
 * slower stretch on a quiet machine, so it is kept short); threads that
 * waited for a late worker more than WAIT_SHARE of a window try alone at
 * once. */
#define WINDOW_RUNS 512
#define PROBE_RUNS  256
#define PROBE_EVERY 16
#define WAIT_SHARE  0.25

struct worker_arg {
    struct tpool *p;
    int ith;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ticket = gen:24 | n_parts:20 | next:20 */
#define PART_BITS 20
#define MAX_PARTS ((1 << PART_BITS) - 1)

static uint32_t gen_of(uint64_t v)
{
    return (uint32_t)(v >> (2 * PART_BITS));
}

static int parts_of(uint64_t v)
{
    return (int)((v >> PART_BITS) & MAX_PARTS);
}

static int next_of(uint64_t v)
{
    return (int)(v & MAX_PARTS);
}

static uint64_t make_ticket(uint32_t gen, int n_parts)
{
    return (uint64_t)(gen & 0xffffff) << (2 * PART_BITS) | (uint64_t)n_parts << PART_BITS;
}

static uint64_t make_range(uint32_t gen, int end, int next)
{
    return (uint64_t)(gen & 0xffffff) << (2 * PART_BITS) | (uint64_t)end << PART_BITS |
           (uint64_t)next;
}

/* Claims a part of generation gen from range r: the front when it is the
 * thread's own, the back when stealing. Returns the part, or -1 when the
 * range is empty or belongs to another run. */
static int claim(struct range *r, uint32_t gen, bool own)
{
    uint64_t v = atomic_load_explicit(&r->v, memory_order_acquire);
    for (;;) {
        int end = parts_of(v), next = next_of(v);
        if (gen_of(v) != gen || next >= end) return -1;
        uint64_t nv = own ? v + 1 : make_range(gen, end - 1, next);
        if (atomic_compare_exchange_weak_explicit(&r->v, &v, nv, memory_order_acq_rel,
                                                  memory_order_acquire))
            return own ? next : end - 1;
    }
}

/* Runs parts of generation gen, its own range first, then the others',
 * until none is left; then counts them done in one add. */
static void work(struct tpool *p, uint32_t gen, int ith)
{
    int n_done = 0, n_parts = parts_of(atomic_load_explicit(&p->ticket, memory_order_acquire));
    for (int k = 0; k < p->n; k++) {
        int part;
        while ((part = claim(&p->ranges[(ith + k) % p->n], gen, k == 0)) >= 0) {
            /* a part of gen is unfinished, so the caller has not moved fn/arg on */
            p->fn(p->arg, part, n_parts, ith);
            n_done++;
        }
    }
    if (n_done) atomic_fetch_add_explicit(&p->done, n_done, memory_order_release);
}

/* Waits until the generation differs from seen; returns the new one. */
static uint32_t wait_gen(struct tpool *p, uint32_t seen)
{
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        uint32_t g = gen_of(atomic_load_explicit(&p->ticket, memory_order_acquire));
        if (g != seen) return g;
        cpu_relax();
    }
    /* sleepers and ticket pair up with publish(): either it sees this
     * thread counted as a sleeper, or this thread sees its new ticket */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    uint32_t g;
    while ((g = gen_of(atomic_load(&p->ticket))) == seen)
        pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker(void *v)
{
    struct worker_arg *wa = v;
    struct tpool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    uint32_t seen = 0;
    for (;;) {
        seen = wait_gen(p, seen);
        if (atomic_load(&p->stop)) break;
        work(p, seen, ith);
    }
    return NULL;
}

int tpool_new(int n_threads, struct tpool **out)
{
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    /* cache-line aligned: the claim words must not share lines */
    struct tpool *p = aligned_alloc(64, (sizeof(*p) + 63) & ~(size_t)63);
    if (!p) return THAW_ENOMEM;
    memset(p, 0, sizeof(*p));
    p->n = n_threads;
    p->threads = calloc(n_threads, sizeof(pthread_t));
    p->ranges = aligned_alloc(64, sizeof(struct range) * (size_t)n_threads);
    if (!p->threads || !p->ranges) {
        free(p->threads);
        free(p->ranges);
        free(p);
        return THAW_ENOMEM;
    }
    for (int i = 0; i < n_threads; i++)
        atomic_init(&p->ranges[i].v, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof(*wa));
        if (wa) *wa = (struct worker_arg){p, i};
        int rc = wa ? pthread_create(&p->threads[i], NULL, worker, wa) : ENOMEM;
        if (rc) {
            free(wa);
            p->n = i; /* only workers 1..i-1 exist */
            tpool_free(p);
            return -rc;
        }
    }
    *out = p;
    return 0;
}

/* Workers spinning see the ticket change; only sleeping ones need the
 * condition variable (and its lock), so most runs skip both. */
static void publish(struct tpool *p, uint64_t v)
{
    atomic_store(&p->ticket, v);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

void tpool_free(struct tpool *p)
{
    if (!p) return;
    atomic_store(&p->stop, true);
    uint64_t v = atomic_load(&p->ticket);
    publish(p, make_ticket(gen_of(v) + 1, 0));
    for (int i = 1; i < p->n; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p->ranges);
    free(p);
}

void tpool_set_adaptive(struct tpool *p, bool on)
{
    p->fixed = !on;
}

int tpool_size(const struct tpool *p)
{
    return p->n;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* On a machine whose other cores are busy, a worker preempted in the middle
 * of a part makes every run wait for it, and threads can lose to one. Runs
 * go in windows of WINDOW_RUNS, threaded or alone. A threaded window in which
 * the caller spent more than WAIT_SHARE of the time waiting for others is
 * followed by a probe alone (so is every PROBE_EVERY-th window, since a
 * preempted caller does not show as waiting); if that was clearly faster,
 * the pool stays alone, trying threads again every PROBE_EVERY windows. On a
 * quiet machine that costs one slower half window in PROBE_EVERY. Windows
 * compare by time per run. A forward pass
 * repeats the same runs layer after layer, so neighbouring windows hold
 * comparable work.
 * Which thread runs a part never changes its result: this only moves time. */
static void window_begin(struct tpool *p)
{
    if (p->fixed) {
        p->win_solo = false;
        return;
    }
    if (p->win_runs) return;
    p->win_start = now_ns();
    p->win_wait_ns = 0;
    p->win_solo = p->probe_next ? !p->best_solo : p->best_solo;
    p->win_len = p->probe_next ? PROBE_RUNS : WINDOW_RUNS;
}

static void window_end(struct tpool *p)
{
    if (p->fixed || ++p->win_runs < p->win_len) return;
    double t = (double)(now_ns() - p->win_start);
    bool probe = p->probe_next;
    p->win_runs = 0;
    p->probe_next = false;
    p->ns[p->win_solo] = t / p->win_len;
    if (probe && p->win_solo)
        p->best_solo = p->ns[1] < 0.9 * p->ns[0];
    else if (probe)
        p->best_solo = !(p->ns[0] < p->ns[1]);
    else
        p->probe_next = ++p->since_probe % PROBE_EVERY == 0 ||
                        (!p->best_solo && p->win_wait_ns > WAIT_SHARE * t);
}

void tpool_run(struct tpool *p, tpool_fn fn, void *arg, int n_parts)
{
    if (n_parts < 1) return;
    if (p->n == 1 || n_parts == 1 || n_parts > MAX_PARTS) {
        for (int i = 0; i < n_parts; i++)
            fn(arg, i, n_parts, 0);
        return;
    }
    window_begin(p);
    if (p->win_solo) {
        for (int i = 0; i < n_parts; i++)
            fn(arg, i, n_parts, 0);
        window_end(p);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    uint32_t gen = (gen_of(atomic_load_explicit(&p->ticket, memory_order_relaxed)) + 1) & 0xffffff;
    for (int i = 0; i < p->n; i++)
        atomic_store_explicit(&p->ranges[i].v,
                              make_range(gen, (int)((int64_t)n_parts * (i + 1) / p->n),
                                         (int)((int64_t)n_parts * i / p->n)),
                              memory_order_relaxed);
    publish(p, make_ticket(gen, n_parts));
    work(p, gen, 0);
    uint64_t t_wait = now_ns();
    for (int spins = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n_parts; spins++) {
        if (spins < SPIN_ROUNDS)
            cpu_relax();
        else
            sched_yield();
    }
    p->win_wait_ns += now_ns() - t_wait;
    window_end(p);
}
