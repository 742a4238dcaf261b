/* See harness.h. */
#include "harness.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *thaw_path(void)
{
    const char *p = getenv("THAW_BIN");
    return p ? p : "./thaw";
}

const char *testfn_path(void)
{
    static char path[1024];
    const char *b = getenv("THAW_BUILD_DIR");
    snprintf(path, sizeof(path), "%s/thaw-testfn", b ? b : ".");
    return path;
}

static int find_port(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f) return 0;
    char line[4096];
    int port = 0;
    while (fgets(line, sizeof(line), f)) {
        char *p = strstr(line, "\"node_started\"");
        if (!p) continue;
        p = strstr(line, "\"listen\":\"");
        if (p) {
            char *colon = strchr(p + 10, '"');
            if (colon) {
                *colon = 0;
                char *c = strrchr(p + 10, ':');
                if (c) port = atoi(c + 1);
            }
        }
    }
    fclose(f);
    return port;
}

int node_start(struct node *n, const char *const *extra)
{
    if (!n->data[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(n->data, sizeof(n->data), "%s/thaw-it-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(n->data)) return -1;
    }
    snprintf(n->log, sizeof(n->log), "%s.log", n->data);
    unlink(n->log);
    n->pid = fork();
    if (n->pid < 0) return -1;
    if (n->pid == 0) {
        setenv("THAW_ADMIN_KEY", TEST_ADMIN_KEY, 1);
        setenv("THAW_KEK", TEST_KEK, 1);
        int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        /* THAW_TEST_THREADS=1 runs the suite with the gateway on the scale loop. */
        const char *threads = getenv("THAW_TEST_THREADS");
        char rel[sizeof(n->data) + 2];
        const char *data = n->data;
        char *slash = strrchr(n->data, '/');
        if (n->relative_data && slash) {
            snprintf(rel, sizeof(rel), ".%s", slash);
            *slash = 0;
            if (chdir(n->data)) _exit(126);
            *slash = '/';
            data = rel;
        }
        const char *argv[32] = {
            thaw_path(), "serve", "--listen",  "127.0.0.1:0",
            "--data",    data,    "--threads", threads && *threads ? threads : "2"};
        int a = 8;
        for (int i = 0; extra && extra[i] && a < 30; i++)
            argv[a++] = extra[i];
        argv[a] = NULL;
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        n->port = find_port(n->log);
        if (n->port) return 0;
        int st;
        if (waitpid(n->pid, &st, WNOHANG) == n->pid) {
            n->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    return -1;
}

int node_stop(struct node *n)
{
    if (n->pid <= 0) return -1;
    kill(n->pid, SIGTERM);
    int st = -1;
    for (int i = 0; i < 3000; i++) {
        if (waitpid(n->pid, &st, WNOHANG) == n->pid) {
            n->pid = 0;
            return st;
        }
        sleep_ms(10);
    }
    kill(n->pid, SIGKILL);
    waitpid(n->pid, &st, 0);
    n->pid = 0;
    return -1;
}

void node_cleanup(struct node *n)
{
    if (n->pid > 0) node_stop(n);
    if (n->data[0]) {
        char cmd[600];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", n->data);
        if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
        if (!getenv("KEEP_LOGS")) unlink(n->log);
    }
}

int node_log_count(const struct node *n, const char *needle)
{
    FILE *f = fopen(n->log, "r");
    if (!f) return 0;
    char *line = NULL;
    size_t cap = 0;
    int c = 0;
    while (getline(&line, &cap, f) > 0)
        c += strstr(line, needle) != NULL;
    free(line);
    fclose(f);
    return c;
}

struct sink {
    char *data;
    size_t len;
};

static size_t body_cb(char *d, size_t s, size_t n, void *arg)
{
    struct sink *k = arg;
    char *p = realloc(k->data, k->len + s * n + 1);
    if (!p) return 0;
    memcpy(p + k->len, d, s * n);
    k->len += s * n;
    p[k->len] = 0;
    k->data = p;
    return s * n;
}

static size_t header_cb(char *d, size_t s, size_t n, void *arg)
{
    struct resp *r = arg;
    size_t have = strlen(r->headers), add = s * n;
    if (have + add < sizeof(r->headers)) {
        memcpy(r->headers + have, d, add);
        r->headers[have + add] = 0;
    }
    return add;
}

int http(const struct node *n, const char *method, const char *path, const char *body,
         const char *const *headers, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    if (!c) return -1;
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", n->port, path);
    struct curl_slist *h = NULL;
    bool own_auth = false;
    for (int i = 0; headers && headers[i]; i++) {
        h = curl_slist_append(h, headers[i]);
        own_auth |= strncasecmp(headers[i], "Authorization:", 14) == 0;
    }
    if (!own_auth) h = curl_slist_append(h, "Authorization: Bearer " TEST_ADMIN_KEY);
    if (body) h = curl_slist_append(h, "Content-Type: application/json");
    struct sink k = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &k);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    CURLcode cc = curl_easy_perform(c);
    if (cc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    r->body = k.data ? k.data : calloc(1, 1);
    return cc == CURLE_OK ? 0 : -1;
}

void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

const char *resp_header(const struct resp *r, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    for (const char *p = r->headers; *p;) {
        const char *eol = strstr(p, "\r\n");
        if (!eol) break;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t len = (size_t)(eol - v);
            if (len >= n) len = n - 1;
            memcpy(out, v, len);
            out[len] = 0;
            return out;
        }
        p = eol + 2;
    }
    return NULL;
}

json_t *resp_json(const struct resp *r)
{
    return json_loads(r->body, JSON_DECODE_ANY, NULL);
}

long deploy(const struct node *n, const char *manifest)
{
    struct resp r;
    http(n, "POST", "/v1/deployments", manifest, NULL, &r);
    if (r.status >= 300) fprintf(stderr, "  deploy -> %ld %s\n", r.status, r.body);
    long st = r.status;
    resp_free(&r);
    return st;
}

int invoke(const struct node *n, const char *name, const char *input, struct resp *r)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s/invoke", name);
    return http(n, "POST", path, input, NULL, r);
}

json_t *status_of(const struct node *n, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "/v1/deployments/%s", name);
    struct resp r;
    if (http(n, "GET", path, NULL, NULL, &r) || r.status != 200) {
        resp_free(&r);
        return NULL;
    }
    json_t *j = resp_json(&r);
    resp_free(&r);
    json_t *st = json_incref(json_object_get(j, "status"));
    json_decref(j);
    return st;
}

int instances_in(const struct node *n, const char *name, const char *state)
{
    json_t *st = status_of(n, name);
    int v =
        st ? (int)json_integer_value(json_object_get(json_object_get(st, "instances"), state)) : -1;
    json_decref(st);
    return v;
}

int raw_exchange(const struct node *n, const char *data, size_t len, char *out, size_t cap,
                 int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)n->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
        close(fd);
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, data + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) break; /* the server may close early on bad input */
        off += (size_t)w;
    }
    size_t got = 0;
    long deadline = now_ms() + timeout_ms;
    while (got + 1 < cap) {
        long left = deadline - now_ms();
        if (left <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, (int)left) <= 0) break;
        ssize_t r = recv(fd, out + got, cap - 1 - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
    }
    out[got] = 0;
    close(fd);
    return (int)got;
}
