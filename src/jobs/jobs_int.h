/* Private to src/jobs: the jobs object shared by the committer (submit.c),
 * the runner (runner.c), the webhook sender (webhook.c) and the API
 * (jobs.c). One mutex guards the in-memory state; the store has its own. */
#ifndef THAW_JOBS_INT_H
#define THAW_JOBS_INT_H

#include "jobs/jobs.h"
#include "obs/obs.h"
#include "scale/scale.h"
#include "store/store.h"

#include <pthread.h>
#include <stdatomic.h>

/* What the runner needs of a deployment, refreshed from the store. */
struct jdep {
    struct jdep *next;
    char name[DEPLOY_NAME_MAX + 1];
    bool exists;
    struct deploy_jobs cfg; /* webhook points into webhook_buf */
    char webhook_buf[2049];
    int capacity;        /* jobs in flight at once */
    uint64_t fetched_ms; /* monotonic; the spec is re-read after a second */
    int active;          /* queued + running, for the queue limit */
    int inflight;        /* handed to scale by this runner */
    bool kick;           /* new work may be due: lease now */
    int64_t next_due_ms; /* wall: earliest retry this runner scheduled */
    int64_t next_poll_ms;
};

/* One leased job handed to scale. */
struct jrun {
    struct invocation inv; /* first: scale's callbacks get &run->inv */
    struct jobs *jobs;
    struct jrun *next, *prev; /* the in-flight list */
    struct jrun *next_done;   /* the completion list */
    char id[STORE_JOB_ID_MAX + 1];
    int attempt, max_attempts;
    int64_t started_ms, leased_until_ms, renew_at_ms, vis_ms;
    char *webhook;
    bool released; /* returned to the queue: ignore the answer */
    /* Under the lock: scale_submit has returned (inv->serial is set), so
     * jobs_cancel may stop the attempt; a cancel that comes earlier leaves
     * cancel_wanted for the runner to act on once it has submitted. */
    bool submitted, cancel_wanted;
    char key_id[32]; /* the submitting key's: charged for the attempt */
    bool refused;    /* may_run said no: the job fails, not retried */
    /* The answer, set on the scale thread. */
    int status;
    int version; /* the deployment version that answered */
    const char *code;
    char *payload;
};

struct jwaiter {
    struct jwaiter *next;
    char id[STORE_JOB_ID_MAX + 1];
    int64_t deadline_ms; /* wall */
    void (*cb)(void *ctx);
    void *ctx;
};

struct jobs {
    struct jobs_config cfg;
    char *secret, *allow;
    pthread_mutex_t lock;
    pthread_cond_t runner_cv, commit_cv, hook_cv;
    bool stopping, draining;
    _Atomic bool draining_flag; /* draining, readable without the lock */
    bool started;
    pthread_t runner, committer, hooker;

    struct jdep *deps;
    struct jrun *running; /* in flight */
    /* Running jobs cancelled while not in the in-flight list: leased just
     * before the cancel, listed just after it. start_run stops them once
     * submitted. A small ring suffices: the window is the runner's step
     * from lease to list. */
    struct {
        char id[STORE_JOB_ID_MAX + 1];
    } unlisted_cancels[16];
    unsigned n_unlisted_cancels;
    struct jrun *done_head, *done_tail;
    _Atomic int n_running;
    pthread_mutex_t wait_lock; /* guards waiters only; never held with lock */
    struct jwaiter *waiters;
    int64_t next_expire_ms; /* at most one expiry pass a second */
    int64_t expire_due_ms;  /* earliest result expiry known (0: look at start) */
    bool hook_kick;         /* a delivery was queued: the webhook thread looks now */

    /* Submissions waiting for the committer. */
    struct jobs_request **pending;
    size_t n_pending, cap_pending;
    size_t pending_items;

    uint64_t rng; /* xorshift state for jitter, under lock */

    /* Metrics: queue depth and in-flight per deployment, attempts by
     * outcome, webhook deliveries by outcome. */
    struct metric_family *f_unfinished, *f_running, *f_attempts, *f_webhooks;
    struct metric_family *f_cancelled; /* jobs cancelled, by the state they were in */
};

/* jobs.c */
int64_t jobs_wall_ms(void);
uint64_t jobs_random(struct jobs *j);
/* Finds (creating) the deployment entry, refreshing its spec if stale.
 * Call with the lock held. NULL only without memory. */
struct jdep *jobs_dep(struct jobs *j, const char *name);
/* Fires the waiters of job id (when id is NULL: those past now_ms, or all
 * when now_ms is 0). Takes wait_lock; call without lock. */
void jobs_fire_waiters(struct jobs *j, const char *id, int64_t now_ms);
/* Processes answers that arrived (the runner does this in its loop; free
 * calls it once the threads are gone). Call without lock. */
void jobs_runner_flush(struct jobs *j);

/* The one place user content (inputs, results, function error messages)
 * passes on its way into and out of the store: sealed under the submitting
 * tenant's key (see struct jobs_codec for tenant ""). Return 0 and a
 * malloc'd copy, or THAW_ENOMEM. */
int jobs_seal(struct jobs *j, const char *tenant, const char *deployment, const char *in,
              size_t len, char **out, size_t *out_len);
int jobs_open(struct jobs *j, const char *deployment, const char *in, size_t len, char **out,
              size_t *out_len);

/* Threads. */
void *jobs_committer_main(void *arg);
void *jobs_runner_main(void *arg);
void *jobs_webhook_main(void *arg);

#endif
