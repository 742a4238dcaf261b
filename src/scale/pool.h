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

#endif
