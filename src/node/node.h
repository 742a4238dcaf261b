/* A node: `thaw serve`. Reads its configuration (flags over environment over
 * file), opens the store, starts the scale thread and the gateway, restores
 * deployments, and shuts down gracefully on SIGTERM. */
#ifndef THAW_NODE_H
#define THAW_NODE_H

#include "base/base.h"

#include <stddef.h>
#include <stdint.h>

struct node_config {
    char host[256];
    int port;
    char data_dir[1024];
    char log_level[16];
    int threads;
    int64_t drain_timeout_ms;
    int64_t stop_grace_ms;
    int64_t max_body_bytes;
    int64_t max_header_bytes;
    int read_timeout_s;
    int access_log;                 /* one log line per request */
    int64_t artifact_chunk_max;     /* largest artifact chunk in one request */
    int64_t artifact_upload_ttl_ms; /* idle upload sessions expire after this */
    char kek_file[1024];            /* key-encryption key; else THAW_KEK or a generated file */
    char admin_key_file[1024];      /* bootstrap admin key; else THAW_ADMIN_KEY */
    char tls_cert[1024];            /* with tls_key: HTTPS only; reloaded on SIGHUP */
    char tls_key[1024];
    /* security: off (benchmarks and local development only): no keys, no
     * limits, no redaction of function output. Refused unless the node
     * listens on a loopback address; logged loudly at start. */
    int security_off;
};

/* Defaults: 127.0.0.1:8080, ./thaw-data, info, threads = CPUs, drain 30 s. */
void node_config_defaults(struct node_config *cfg);
/* Applies a YAML config file, then THAW_* environment variables, then the
 * command line (argv after "serve"). Returns 0, or THAW_EINVAL with err
 * naming the bad flag, variable or key. */
int node_config_load(struct node_config *cfg, int argc, char **argv, struct thaw_err *err);
/* Runs the node until SIGTERM/SIGINT; returns the process exit code. */
int node_run(const struct node_config *cfg);

#endif
