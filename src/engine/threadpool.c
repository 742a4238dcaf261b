/* A fixed pool of worker threads for the forward pass. A run is cut into
 * parts that threads claim one at a time from a shared ticket (generation,
 * part count and next part in one 64-bit word, so a claim is checked against
 * its own run's count), so a thread the OS has not
 * scheduled yet simply does less: on a loaded machine the caller finishes
 * the run alone instead of waiting for a sleeping worker. Which thread runs
 * a part never changes what the part computes. */
#include "engine/engine_int.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#define SPIN_ROUNDS 20000

struct tpool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t ticket;
    atomic_int done;
    atomic_bool stop;
    /* the current run, stable while any of its parts is unfinished */
    tpool_fn fn;
    void *arg;
    /* caller-side only: windows of runs alone or threaded, timed, so the
     * pool keeps to whichever is faster on this machine right now */
    uint64_t win_start, win_wait_ns;
    int win_runs, since_probe;
    bool win_solo, best_solo, probe_next, fixed; /* fixed: always threaded (tests) */
    double ns[2];                                /* last window time: [0] threaded, [1] alone */
};

/* Runs per timed window (a few tokens of a forward pass); every PROBE_EVERY-th
 * window tries the other way; threads that waited for a late worker more than
 * WAIT_SHARE of a window try a window alone at once. */
#define WINDOW_RUNS 512
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

/* Claims and runs parts of generation gen until none is left. */
static void work(struct tpool *p, uint32_t gen, int ith)
{
    for (;;) {
        uint64_t v = atomic_load_explicit(&p->ticket, memory_order_acquire);
        if (gen_of(v) != gen || next_of(v) >= parts_of(v)) return;
        if (!atomic_compare_exchange_weak_explicit(&p->ticket, &v, v + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        /* a part of gen is unfinished, so the caller has not moved fn/arg on */
        p->fn(p->arg, next_of(v), parts_of(v), ith);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

/* Waits until the generation differs from seen; returns the new one. */
static uint32_t wait_gen(struct tpool *p, uint32_t seen)
{
    for (int i = 0; i < SPIN_ROUNDS; i++) {
        uint32_t g = gen_of(atomic_load_explicit(&p->ticket, memory_order_acquire));
        if (g != seen) return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    uint32_t g;
    while ((g = gen_of(atomic_load_explicit(&p->ticket, memory_order_acquire))) == seen)
        pthread_cond_wait(&p->cv, &p->mu);
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
    struct tpool *p = calloc(1, sizeof(*p));
    if (!p) return THAW_ENOMEM;
    p->n = n_threads;
    p->threads = calloc(n_threads, sizeof(pthread_t));
    if (!p->threads) {
        free(p);
        return THAW_ENOMEM;
    }
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

static void publish(struct tpool *p, uint64_t v)
{
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->ticket, v, memory_order_release);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
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
 * followed by one window alone (so is every PROBE_EVERY-th window, since a
 * preempted caller does not show as waiting); if that was clearly faster,
 * the pool stays alone, trying threads again every PROBE_EVERY windows. On a
 * quiet machine that costs one slower window in PROBE_EVERY. A forward pass
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
}

static void window_end(struct tpool *p)
{
    if (p->fixed || ++p->win_runs < WINDOW_RUNS) return;
    double t = (double)(now_ns() - p->win_start);
    bool probe = p->probe_next;
    p->win_runs = 0;
    p->probe_next = false;
    p->ns[p->win_solo] = t;
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
