/* TLS on the listener: the CLI verifies the server with --cacert, plain
 * HTTP and TLS 1.1 are refused, and SIGHUP swaps in a new certificate for
 * new connections. Certificates are made by the openssl command here. */
#include "harness.h"
#include "test.h"

#include <curl/curl.h>
#include <signal.h>
#include <sys/wait.h>

static struct node N;
static char dir[] = "/tmp/thaw-tls-XXXXXX";

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* A CA and a server certificate for 127.0.0.1 signed by it, named cn. */
static int make_cert(const char *cn)
{
    return sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
              "-keyout ca.key -out ca.pem -days 1 -subj /CN=thaw-test-ca 2>/dev/null && "
              "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key "
              "-out srv.csr -subj /CN=%s 2>/dev/null && "
              "printf 'subjectAltName=IP:127.0.0.1' > ext && "
              "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem "
              "-days 1 -extfile ext 2>/dev/null",
              dir, cn);
}

static long https_get(const char *path, const char *cacert, long tls_max, char *subject, size_t n)
{
    CURL *c = curl_easy_init();
    char url[256], auth[200];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d%s", N.port, path);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", TEST_ADMIN_KEY);
    struct curl_slist *h = curl_slist_append(NULL, auth);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_CAINFO, cacert);
    curl_easy_setopt(c, CURLOPT_CERTINFO, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fwrite);
    FILE *null = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, null);
    if (tls_max) curl_easy_setopt(c, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_0 | tls_max);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        struct curl_certinfo *ci = NULL;
        curl_easy_getinfo(c, CURLINFO_CERTINFO, &ci);
        if (subject && ci && ci->num_of_certs > 0)
            for (struct curl_slist *s = ci->certinfo[0]; s; s = s->next)
                if (!strncmp(s->data, "Subject:", 8)) snprintf(subject, n, "%s", s->data);
    }
    fclose(null);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static void test_https_verified(void)
{
    char ca[300], subject[256] = "";
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    ASSERT_EQ(https_get("/v1/deployments", ca, 0, subject, sizeof(subject)), 200);
    ASSERT_CONTAINS(subject, "first");
    ASSERT_EQ(https_get("/healthz", "/dev/null", 0, NULL, 0), 0); /* unverifiable: refused */
    /* TLS 1.1 and older are refused. */
    ASSERT_EQ(https_get("/healthz", ca, CURL_SSLVERSION_MAX_TLSv1_1, NULL, 0), 0);
    /* The CLI verifies with --cacert. */
    ASSERT_EQ(sh("THAW_KEY=%s %s ls --server https://127.0.0.1:%d --cacert %s >/dev/null 2>&1",
                 TEST_ADMIN_KEY, thaw_path(), N.port, ca),
              0);
    ASSERT_EQ(sh("THAW_KEY=%s %s ls --server https://127.0.0.1:%d >/dev/null 2>&1", TEST_ADMIN_KEY,
                 thaw_path(), N.port),
              4);
}

static void test_plain_http_refused(void)
{
    char out[512];
    const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    int n = raw_exchange(&N, req, strlen(req), out, sizeof(out), 2000);
    ASSERT(n <= 0 || strstr(out, "200 OK") == NULL);
}

static void test_sighup_reloads(void)
{
    ASSERT_EQ(make_cert("second"), 0);
    kill(N.pid, SIGHUP);
    sleep_ms(300);
    char ca[300], subject[256] = "";
    snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
    ASSERT_EQ(https_get("/v1/deployments", ca, 0, subject, sizeof(subject)), 200);
    ASSERT_CONTAINS(subject, "second");
    ASSERT_EQ(node_log_count(&N, "\"tls_reloaded\""), 1);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!mkdtemp(dir) || make_cert("first")) {
        fprintf(stderr, "cannot make test certificates (is openssl installed?)\n");
        return 1;
    }
    char cert[300], key[300];
    snprintf(cert, sizeof(cert), "%s/srv.pem", dir);
    snprintf(key, sizeof(key), "%s/srv.key", dir);
    if (node_start(&N, (const char *[]){"--tls-cert", cert, "--tls-key", key, NULL})) {
        fprintf(stderr, "cannot start node\n");
        return 1;
    }
    RUN(test_https_verified);
    RUN(test_plain_http_refused);
    RUN(test_sighup_reloads);
    node_cleanup(&N);
    sh("rm -rf %s", dir);
    curl_global_cleanup();
    return TEST_REPORT();
}
