/* Private to src/node. */
#ifndef THAW_NODE_INT_H
#define THAW_NODE_INT_H

#include "node/node.h"

/* The 32-byte key-encryption key, from where the configuration says. */
int node_load_kek(const struct node_config *cfg, unsigned char out[32], struct thaw_err *err);
/* The bootstrap admin key string if one is configured; "" otherwise. */
int node_load_admin_key(const struct node_config *cfg, char *out, size_t n, struct thaw_err *err);

/* Takes the data dir's lock (data_dir/thaw.lock, flock) for this process:
 * THAW_EBUSY "in use by a running thaw node" when another holds it. *fd
 * keeps it; closing it releases. */
int node_lock_data_dir(const char *data_dir, int *fd, struct thaw_err *err);

#endif
