/* Integration test harness: starts the real thaw binary on a free loopback
 * port with its own data dir, and talks to it over real sockets (libcurl for
 * well-formed HTTP, raw sockets for malformed and slow clients). */
#ifndef THAW_TEST_HARNESS_H
#define THAW_TEST_HARNESS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct node {
    pid_t pid;
    int port;
    char data[256];
    char log[300];
    bool relative_data; /* started from the data dir's parent with --data ./NAME */
};

/* Starts `thaw serve` with extra flags (NULL-terminated list, may be NULL);
 * reuses n->data if already set (restart). Waits for it to listen. */
int node_start(struct node *n, const char *const *extra);
/* SIGTERM and wait; returns the exit status (as from waitpid) or -1. */
int node_stop(struct node *n);
/* Stops (if running) and removes the data dir. */
void node_cleanup(struct node *n);
/* Counts lines of the node's log containing needle. */
int node_log_count(const struct node *n, const char *needle);

struct resp {
    long status;
    char *body; /* NUL-terminated */
    char headers[4096];
};

/* One request; headers is a NULL-terminated list of "Name: value" or NULL. */
int http(const struct node *n, const char *method, const char *path, const char *body,
         const char *const *headers, struct resp *r);
void resp_free(struct resp *r);
/* Value of a response header (case-insensitive) copied into out, or NULL. */
const char *resp_header(const struct resp *r, const char *name, char *out, size_t n);
json_t *resp_json(const struct resp *r);

/* Deploys a JSON manifest; returns the HTTP status. */
long deploy(const struct node *n, const char *manifest_json);
/* POST /v1/deployments/NAME/invoke. */
int invoke(const struct node *n, const char *name, const char *input, struct resp *r);
/* GET /v1/deployments/NAME -> its "status" object (caller decref), or NULL. */
json_t *status_of(const struct node *n, const char *name);
int instances_in(const struct node *n, const char *name, const char *state);

/* Sends raw bytes and reads until the peer closes or timeout_ms passes;
 * returns bytes read into out (NUL-terminated), or -1. */
int raw_exchange(const struct node *n, const char *data, size_t len, char *out, size_t cap,
                 int timeout_ms);

/* The node's bootstrap admin key (root tenant, every scope) and its KEK, as
 * node_start passes them; http() sends the admin key unless the headers
 * name an Authorization of their own ("Authorization:" alone sends none). */
#define TEST_ADMIN_KEY "thaw_0123456789abcdef_adminadminadminadminadminadminadminadmin123"
#define TEST_KEK       "8f2c3a9d4e5b6a7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e"

/* Paths of the test function and the binary. */
const char *testfn_path(void);
const char *thaw_path(void);
void sleep_ms(long ms);
long now_ms(void);

#endif
