/* Private to src/scale: pools, instances and the scale object. Everything
 * here is touched only on the scale thread with s->lock held, except the
 * inbox (its own lock). */
#ifndef THAW_SCALE_INT_H
#define THAW_SCALE_INT_H

#include "instance/instance.h"
#include "obs/obs.h"
#include "scale/scale.h"
#include "security/security.h"

#include <event2/bufferevent.h>
#include <stdatomic.h>
#include <event2/event.h>
#include <pthread.h>

enum inst_state {
    INST_STARTING, /* spawned, waiting for {"ready":true} */
    INST_READY,    /* serving */
    INST_PARKED,   /* standby: initialised, stopped with SIGSTOP, no CPU */
    INST_DRAINING, /* finishing in-flight requests, then stops */
    INST_STOPPING, /* SIGTERM sent, waiting for exit */
    INST_N_STATES
};

struct slot {
    uint64_t id; /* 0 = free */
    struct invocation *inv;
    uint64_t deadline_ms;
    bool abandoned;    /* answered 504 already; waiting for the late answer */
    bool cancel_sent;  /* llm/embed: told to stop for a client that left; its answer still counts */
    struct buf chunks; /* chunks of a non-streaming request, as a JSON array body */
};

struct inst {
    struct inst *next;
    struct pool *pool;
    struct instance_proc proc;
    enum inst_state state;
    int generation;
    bool park_when_ready;
    struct bufferevent *bev;     /* stdin/stdout */
    struct bufferevent *err_bev; /* stderr */
    uint64_t spawned_ms, state_since_ms, stop_deadline_ms;
    int inflight;
    int n_slots;
    struct slot *slots;
    uint64_t next_id;
    bool reaped; /* the SIGCHLD path collected the exit status below */
    int exit_status;
    bool awaiting_template; /* llm/embed: to be forked once the template is ready */
    bool bound;             /* has served a tenant: serves no other (unless shared) */
    char tenant[64];
    uint64_t last_used_ms; /* last request sent to it */
};

/* llm/embed: the process that loaded a generation's model and forks its
 * instances (template.c). */
struct tmpl {
    struct instance_proc proc;
    int generation;
    bool ready;
    uint64_t started_ms, idle_since_ms;
    struct event *ctl_ev;        /* control socket: the ready line, then EOF */
    struct bufferevent *err_bev; /* stderr, to the log */
    struct buf ctl_in;
    char last_stderr[256]; /* why a template that failed to load failed */
    bool reaped;
    int exit_status;
};

#define SAMPLE_RING  4096
#define OUTCOME_RING 2048

/* Answers of one version in one role (primary traffic or shadow copies),
 * newest last, for canary analysis and the versions view. */
struct outcome {
    uint64_t t_ms;
    float ms;
    bool error; /* 5xx */
    bool warm;  /* served without a cold start: only these count for latency */
};
struct outcomes {
    struct outcome *ring; /* OUTCOME_RING, allocated on the first answer */
    uint64_t n;
};

struct pool {
    struct pool *next;
    struct scale *scale;
    struct deploy_spec *spec;
    int version;     /* the deployment version this pool runs */
    char vlabel[16]; /* "v3", the metrics label */
    bool active;     /* has traffic or shadow copies: keeps min_instances and a standby */
    int generation;
    bool removed;
    struct inst *insts;
    struct tmpl *tmpl; /* llm/embed only; NULL when cold */
    struct invocation *held_head, *held_tail;
    int n_held;
    int inflight; /* requests on instances, all generations */

    /* autoscaler */
    double area; /* integral of concurrency over the current tick */
    uint64_t area_since_ms;
    double samples[SAMPLE_RING];
    uint64_t n_samples;
    struct autoscale_memory mem;
    int desired;
    uint64_t last_request_ms;
    bool prewarmed; /* the standby for this generation was started once */

    /* start failures: back off instead of crash-looping */
    int start_failures;
    uint64_t next_start_ms;
    char last_start_error[256];

    struct metric_series *m_instances[INST_N_STATES];
    struct metric_series *m_held, *m_cold, *m_standby, *m_up, *m_down;

    struct outcomes stats[2];           /* [0] primary, [1] shadow */
    struct metric_series *m_vreq[2][2]; /* [role][error] */
    struct metric_series *m_vdur[2];
};

/* A deployment's traffic as the scale thread routes it. */
struct route {
    struct route *next;
    char name[DEPLOY_NAME_MAX + 1];
    struct registry_traffic t;
    int64_t rev;
    bool pending;           /* a canary decision is being persisted */
    uint64_t step_since_ms; /* when the canary's current step began */
    uint64_t checked_ms;    /* last canary analysis */
    bool removed;
};

struct inbox_msg {
    struct inbox_msg *next;
    enum { MSG_SUBMIT, MSG_APPLY, MSG_REMOVE, MSG_SHUTDOWN, MSG_TRAFFIC, MSG_CANCEL } type;
    struct invocation *inv; /* MSG_CANCEL: only compared, never followed, until found live */
    uint64_t serial;
    enum scale_cancel_reason why; /* MSG_CANCEL */
    struct deploy_spec *spec;
    int version;
    struct registry_traffic traffic;
    int64_t rev;
    char name[DEPLOY_NAME_MAX + 1];
    void (*done)(void *);
    void *done_arg;
};

/* A deployment's traffic as callers last set it, for scale_route on other
 * threads: set before the scale thread applies it (and under the same lock
 * as the message that makes it apply it), so a request routed after a
 * traffic change returns sees the change, as one submitted would. */
struct route_pub {
    struct route_pub *next;
    char name[DEPLOY_NAME_MAX + 1];
    struct registry_traffic t;
};

struct scale {
    struct event_base *base;
    struct scale_config cfg; /* cfg.tmp_root (artifact_root) point to the copies below */
    char *tmp_root, *artifact_root;
    pthread_mutex_t lock;
    struct pool *pools;
    struct route *routes;
    pthread_mutex_t pub_lock; /* guards pubs; order: lock, pub_lock, inbox_lock */
    struct route_pub *pubs;
    uint64_t rng; /* xorshift state for weighted picks and shadow sampling */
    struct event *tick_ev, *inbox_ev, *sigchld_ev;
    struct buf line; /* scratch for encoding request lines */

    pthread_mutex_t inbox_lock;
    struct inbox_msg *inbox_head, *inbox_tail;
    _Atomic uint64_t next_serial; /* invocations submitted, for scale_cancel */

    bool shutting_down;
    void (*shutdown_done)(void *);
    void *shutdown_arg;

    struct metric_family *f_instances, *f_held, *f_cold, *f_decisions;
    struct metric_family *f_vreq, *f_vdur, *f_canary;
    struct metric_family *f_cancels; /* thaw_calls_cancelled_total{deployment,reason} */
    struct metric_series *m_redactions[SECURITY_REDACT_N_KINDS];
};

#endif
