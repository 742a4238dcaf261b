/* The engine's thread pool: every part of every run executes exactly once,
 * with the run's own function and part count, across many back-to-back runs
 * of different sizes (the pattern of a forward pass), on 1 to 4 threads. */
#include "engine/engine_int.h"
#include "test.h"

#include <stdatomic.h>

#define MAX_P 300

struct job {
    int id;                 /* which run this is */
    int n_parts;            /* what the caller asked for */
    atomic_int hits[MAX_P]; /* times each part ran */
    atomic_int wrong;       /* calls that saw another run's part count */
    atomic_int bad_thread;  /* thread ids out of range */
    int n_threads;
};

static void part_fn(void *arg, int part, int n_parts, int thread)
{
    struct job *j = arg;
    if (n_parts != j->n_parts || part < 0 || part >= n_parts)
        atomic_fetch_add(&j->wrong, 1);
    else
        atomic_fetch_add(&j->hits[part], 1);
    if (thread < 0 || thread >= j->n_threads) atomic_fetch_add(&j->bad_thread, 1);
}

static void test_parts_once(void)
{
    static struct job jobs[2];
    for (int k = 0; k < 8; k++) {
        int threads = 1 + k / 2;
        struct tpool *p;
        ASSERT_EQ(tpool_new(threads, &p), 0);
        tpool_set_adaptive(p, k % 2); /* odd: adaptive, even: always threaded */
        ASSERT_EQ(tpool_size(p), threads);
        int errors = 0;
        for (int run = 0; run < 20000 && !errors; run++) {
            /* alternate two job objects so a stale call to the previous
             * run's function would land in the other one and be seen */
            struct job *j = &jobs[run & 1];
            memset(j, 0, sizeof *j);
            j->id = run;
            j->n_threads = threads;
            j->n_parts = 1 + (run * 7919) % (run % 3 ? 8 : MAX_P);
            tpool_run(p, part_fn, j, j->n_parts);
            for (int i = 0; i < j->n_parts; i++)
                errors += atomic_load(&j->hits[i]) != 1;
            errors += atomic_load(&j->wrong) + atomic_load(&j->bad_thread);
            struct job *other = &jobs[(run & 1) ^ 1];
            if (run > 0) {
                int stray = atomic_load(&other->wrong);
                for (int i = 0; i < MAX_P; i++)
                    stray += atomic_load(&other->hits[i]);
                errors += stray != other->n_parts; /* the previous run got nothing more */
            }
        }
        tpool_free(p);
        ASSERT_EQ(errors, 0);
    }
    tpool_free(NULL);
}

int main(void)
{
    RUN(test_parts_once);
    return TEST_REPORT();
}
