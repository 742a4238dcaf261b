/* Private to src/scale: the pool operations scale.c drives. All run on the
 * scale thread with the scale lock held. */
#ifndef THAW_SCALE_POOL_H
#define THAW_SCALE_POOL_H

#include "scale/scale_int.h"

uint64_t pool_now_ms(void);
const char *pool_state_name(enum inst_state st);
int pool_count(const struct pool *p, enum inst_state st, bool current_only);
void pool_account(struct pool *p, uint64_t now);

/* Routes inv to an instance, resumes a standby one, or holds it. */
void pool_submit(struct pool *p, struct invocation *inv);
void pool_dispatch_held(struct pool *p);
/* scale_cancel on the scale thread: finds inv (the same submission: serial)
 * held or on an instance and stops it. False when it is not in this pool. */
bool pool_cancel(struct pool *p, const struct invocation *inv, uint64_t serial,
                 enum scale_cancel_reason why);
struct invocation *pool_unhold(struct pool *p);

/* Spawns an instance; park_when_ready makes it a standby once initialised.
 * Returns NULL on failure (recorded as a start failure). */
struct inst *pool_spawn(struct pool *p, bool park_when_ready);
void pool_start_failed(struct pool *p, const char *why);
void pool_inst_park(struct inst *in, const char *reason);
/* Drains (if busy) then stops with SIGTERM; SIGKILL after the grace period. */
void pool_inst_stop(struct inst *in, const char *reason);
/* Kills, reaps and frees the instance, failing its in-flight requests. */
void pool_inst_died(struct inst *in, const char *why);

void pool_check_timeouts(struct pool *p, uint64_t now);
void pool_reap(struct pool *p);
/* Tenants whose bound instances took a request since since_ms or that have
 * requests held; 0 for a shared deployment. The autoscaler keeps at least one
 * instance for each. */
int pool_active_tenants(const struct pool *p, uint64_t since_ms);

/* Gives a spawned (or forked) instance its bufferevents. Returns 0, or -1
 * after failing it (pool_inst_died). */
int pool_inst_attach(struct inst *in);

/* Forgets an instance that never got a process (its template failed or it
 * was stopped while waiting for one); counts no start failure. */
void pool_inst_discard(struct inst *in);

/* llm/embed templates (template.c). */
/* Starts in (already listed, STARTING) from the generation's template,
 * starting the template first if there is none. Returns 0, or -1 after
 * failing the instance. */
int pool_tmpl_spawn(struct pool *p, struct inst *in);
/* Kills and forgets the template (its instances live on). */
void pool_tmpl_stop(struct pool *p, const char *reason);
/* True when the current generation's template is loaded: a request pays a fork. */
bool pool_tmpl_ready(const struct pool *p);
/* Reaps an exited template; stops one idle past standby_timeout. */
void pool_tmpl_tick(struct pool *p, uint64_t now);
/* Status object of the template, or NULL when there is none. */
json_t *pool_tmpl_status(const struct pool *p);
/* Reaps children the node inherited as a subreaper (orphans of instances)
 * without touching known instances or templates, whose pools reap them. */
void pool_reap_orphans(struct scale *s);

#endif
