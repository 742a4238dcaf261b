/* HTTP for the CLI: one libcurl easy handle per call, JSON error bodies
 * turned into messages, and exit codes scripts can rely on. */
#include "cli/client.h"
#include "cli/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sink {
    struct cli_response *resp;
    cli_stream_cb on_data;
    void *ctx;
};

static size_t write_cb(char *data, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = size * n;
    long status = 0;
    (void)status;
    if (s->on_data)
        s->on_data(s->ctx, data, len);
    else if (buf_append(&s->resp->body, data, len))
        return 0;
    return len;
}

int cli_http(const struct cli_opts *o, const char *method, const char *path, const char *body,
             size_t body_len, const char *content_type, const char *accept, cli_stream_cb on_data,
             void *ctx, struct cli_response *resp)
{
    memset(resp, 0, sizeof(*resp));
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(resp->error, sizeof(resp->error), "cannot initialise libcurl");
        return -1;
    }
    struct buf url = {0};
    buf_printf(&url, "%s%s", o->server, path);
    struct curl_slist *h = NULL;
    struct buf hdr = {0};
    if (content_type) {
        buf_printf(&hdr, "Content-Type: %s", content_type);
        h = curl_slist_append(h, hdr.data);
        buf_reset(&hdr);
    }
    if (accept) {
        buf_printf(&hdr, "Accept: %s", accept);
        h = curl_slist_append(h, hdr.data);
    }
    /* A pinned version or a sticky key, for the calls that invoke. */
    if (o->version) {
        buf_reset(&hdr);
        buf_printf(&hdr, "x-thaw-version: %s", o->version);
        h = curl_slist_append(h, hdr.data);
    }
    if (o->sticky) {
        buf_reset(&hdr);
        buf_printf(&hdr, "x-thaw-sticky: %s", o->sticky);
        h = curl_slist_append(h, hdr.data);
    }
    const char *key = getenv("THAW_KEY");
    if (key && *key) {
        buf_reset(&hdr);
        buf_printf(&hdr, "Authorization: Bearer %s", key);
        h = curl_slist_append(h, hdr.data);
    }
    struct sink s = {resp, on_data, ctx};
    curl_easy_setopt(c, CURLOPT_URL, url.data);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    /* https is always verified; --cacert names the CA for a private one. */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->cacert) curl_easy_setopt(c, CURLOPT_CAINFO, o->cacert);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    CURLcode cc = curl_easy_perform(c);
    int rc = 0;
    if (cc != CURLE_OK) {
        snprintf(resp->error, sizeof(resp->error), "cannot reach %s: %s", o->server,
                 curl_easy_strerror(cc));
        rc = -1;
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    buf_free(&url);
    buf_free(&hdr);
    return rc;
}

void cli_response_free(struct cli_response *r)
{
    buf_free(&r->body);
}

int cli_common_opts(int argc, char **argv, struct cli_opts *o)
{
    const char *env = getenv("THAW_SERVER");
    o->server = env && *env ? env : "http://127.0.0.1:8080";
    o->json = false;
    o->version = o->sticky = NULL;
    const char *ca = getenv("THAW_CACERT");
    o->cacert = ca && *ca ? ca : NULL;
    int out = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--server") && i + 1 < argc)
            o->server = argv[++i];
        else if (!strncmp(argv[i], "--server=", 9))
            o->server = argv[i] + 9;
        else if (!strcmp(argv[i], "--json"))
            o->json = true;
        else if (!strcmp(argv[i], "--cacert") && i + 1 < argc)
            o->cacert = argv[++i];
        else if (!strcmp(argv[i], "--key") && i + 1 < argc)
            setenv("THAW_KEY", argv[++i], 1);
        else
            argv[out++] = argv[i];
    }
    return out;
}

int cli_exit_for(const struct cli_response *r)
{
    if (r->status == 0) {
        fprintf(stderr, "thaw: %s\n", r->error[0] ? r->error : "no answer");
        return CLI_EXIT_UNREACHABLE;
    }
    if (r->status < 400) return CLI_EXIT_OK;
    json_t *j = r->body.data ? json_loads(r->body.data, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
    fprintf(stderr, "thaw: %s (HTTP %ld)\n", msg ? msg : "request failed", r->status);
    json_decref(j);
    return r->status == 404 ? CLI_EXIT_NOTFOUND : CLI_EXIT_ERROR;
}

int cli_read_file(const char *path, struct buf *b)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return -errno;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf_append(b, chunk, n)) {
            if (f != stdin) fclose(f);
            return -ENOMEM;
        }
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    if (!b->data) buf_reserve(b, 0);
    return bad ? -EIO : 0;
}
