/* Private to src/cli: a small HTTP client over libcurl for the commands that
 * talk to a node. */
#ifndef THAW_CLI_CLIENT_H
#define THAW_CLI_CLIENT_H

#include "base/base.h"

#include <stdbool.h>

struct cli_opts {
    const char *server; /* base URL, no trailing slash */
    bool json;          /* machine-readable output */
    const char *cacert; /* CA bundle to verify an https server with; NULL: the system's */
    const char *version; /* x-thaw-version to send (a pinned version); NULL: none */
    const char *sticky;  /* x-thaw-sticky to send; NULL: none */
};

struct cli_response {
    long status; /* 0 when the server could not be reached */
    struct buf body;
    char error[256]; /* transport error */
};

/* Called with each piece of a streamed body as it arrives. */
typedef void (*cli_stream_cb)(void *ctx, const char *data, size_t len);

/* Performs method on server+path with an optional body and content type.
 * With on_data, the body is passed through as it arrives instead of being
 * collected. Returns 0 when an HTTP answer came back (any status). */
int cli_http(const struct cli_opts *o, const char *method, const char *path, const char *body,
             size_t body_len, const char *content_type, const char *accept, cli_stream_cb on_data,
             void *ctx, struct cli_response *resp);
void cli_response_free(struct cli_response *r);

/* Parses common options (--server URL, --json) out of argv in place;
 * returns the new argc. */
int cli_common_opts(int argc, char **argv, struct cli_opts *o);
/* Maps a response to an exit code, printing the server's error message. */
int cli_exit_for(const struct cli_response *r);
/* Reads a whole file ("-" = stdin) into b. Returns 0 or -errno. */
int cli_read_file(const char *path, struct buf *b);

#endif
