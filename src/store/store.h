/* The store: where a node keeps what must survive a restart. One interface,
 * implemented by the embedded SQLite store (a single node) and, later, by
 * Redis (many nodes). Values are opaque strings to the store; the modules
 * that own them give them meaning. All calls are thread-safe. */
#ifndef THAW_STORE_H
#define THAW_STORE_H

#include "base/base.h"

struct store;

/* Opens (creating if needed) the SQLite store in file path, in WAL mode with
 * full synchronous commits. On error returns a code and fills err. */
int store_open_sqlite(const char *path, struct store **out, struct thaw_err *err);
/* Closes the store; NULL is a no-op. */
void store_close(struct store *s);

/* Deployments: name -> spec (canonical JSON). put inserts or replaces. */
int store_deployment_put(struct store *s, const char *name, const char *spec_json,
                         struct thaw_err *err);
/* *spec_json is the caller's to free(); THAW_ENOTFOUND when absent. */
int store_deployment_get(struct store *s, const char *name, char **spec_json,
                         struct thaw_err *err);
/* THAW_ENOTFOUND when absent. */
int store_deployment_delete(struct store *s, const char *name, struct thaw_err *err);
/* Calls cb for each deployment in name order; a non-zero return from cb stops
 * the walk and is returned. The strings are valid only during the call. */
typedef int (*store_deployment_cb)(void *ctx, const char *name, const char *spec_json);
int store_deployment_list(struct store *s, store_deployment_cb cb, void *ctx,
                          struct thaw_err *err);

#endif
