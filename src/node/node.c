/* The node's life: start-up in dependency order, restoring deployments from
 * the store, and a graceful drain on SIGTERM (stop accepting, finish what is
 * in flight within the drain timeout, stop instances, exit 0). */
#include "node/node_int.h"
#include "access/access.h"
#include "gateway/gateway.h"
#include "jobs/jobs.h"
#include "obs/obs.h"
#include "registry/registry.h"
#include "scale/scale.h"
#include "store/store.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct node {
    const struct node_config *cfg;
    struct event_base *base;
    struct store *store;
    struct access *access;
    struct scale *scale;
    struct gateway *gw;
    struct jobs *jobs;
    struct jobs_codec jobs_codec;
    struct registry_sealer sealer; /* deployment env values, under access's data keys */
    struct artifact_store *artifacts;
    struct event *sigterm_ev, *sigint_ev, *sighup_ev, *drain_ev;
    uint64_t drain_deadline_ms;
    bool draining;
    bool scale_stopping;
    int lock_fd; /* holds the data dir (see node_lock_data_dir) */
};

/* Instances inherit 0-2 through dup2 of their own pipes, and the node must
 * never hand out a socket as fd 0-2 by accident: make sure they are open. */
static void ensure_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) < 0) {
            int n = open("/dev/null", O_RDWR);
            if (n >= 0 && n != fd) {
                dup2(n, fd);
                close(n);
            }
        }
    }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    if (ftw->level > 0) remove(path);
    return 0;
}

int node_lock_data_dir(const char *data_dir, int *fd_out, struct thaw_err *err)
{
    char path[1100];
    snprintf(path, sizeof(path), "%s/thaw.lock", data_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return thaw_errf(err, -errno, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            return thaw_errf(err, THAW_EBUSY,
                             "data dir %s is in use by a running thaw node (stop it first)",
                             data_dir);
        return thaw_errf(err, -e, "cannot lock %s: %s", path, strerror(e));
    }
    *fd_out = fd;
    return 0;
}

static int make_dirs(const struct node_config *cfg, int *lock_fd, char *tmp, size_t n,
                     struct thaw_err *err)
{
    if (mkdir(cfg->data_dir, 0700) && errno != EEXIST)
        return thaw_errf(err, -errno, "cannot create data dir %s: %s", cfg->data_dir,
                         strerror(errno));
    /* One node per data dir: a second would wipe the first's instance temp
     * dirs below, and offline tools (KEK rewrap) must not race a node. */
    int rc = node_lock_data_dir(cfg->data_dir, lock_fd, err);
    if (rc) return rc;
    /* Absolute: instances start in their own directory, and the sandbox
     * resolves its paths there (`--data ./thaw-data` broke every start). */
    char abs[PATH_MAX];
    if (!realpath(cfg->data_dir, abs))
        return thaw_errf(err, -errno, "cannot resolve data dir %s: %s", cfg->data_dir,
                         strerror(errno));
    if ((size_t)snprintf(tmp, n, "%s/tmp", abs) >= n)
        return thaw_errf(err, THAW_EINVAL, "data dir path too long: %s", abs);
    if (mkdir(tmp, 0700) && errno != EEXIST)
        return thaw_errf(err, -errno, "cannot create %s: %s", tmp, strerror(errno));
    /* Temp dirs of instances from a previous run that did not exit cleanly. */
    nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

struct restore_ctx {
    struct node *node;
    int n;
    json_t *list; /* [[name, spec, owner], ...]: collected first, since the
                     store is locked during its walk */
};

static int restore_cb(void *arg, const char *name, const char *spec_json, const char *owner)
{
    struct restore_ctx *c = arg;
    json_array_append_new(c->list, json_pack("[s, s, s]", name, spec_json, owner ? owner : ""));
    return 0;
}

/* Each stored version: its rules to the gateway (requests routed to it are
 * checked against them), then the spec to scale. */
static void apply_version_cb(void *ctx, int version, struct deploy_spec *spec)
{
    struct node *n = ctx;
    gw_version_known(n->gw, spec, version);
    scale_apply_version(n->scale, spec, version);
}

/* Brings one deployment back: its versions to scale, its traffic, and the
 * gateway's table. A deployment from before versions existed becomes v1
 * with all the traffic. */
static void restore_one(struct node *n, const char *name, const char *spec_json, const char *owner)
{
    struct deploy_spec *spec = NULL;
    struct thaw_err err = {0};
    json_t *j = json_loads(spec_json, 0, NULL);
    /* Instances get the plain env values; the store has them sealed. */
    int rc = j ? registry_env_open(&n->sealer, j, true, &err)
               : thaw_errf(&err, THAW_EFORMAT, "stored spec is not JSON");
    if (!rc) rc = registry_spec_from_json(j, &spec, &err);
    json_decref(j);
    struct registry_traffic t;
    int64_t rev = 0;
    if (!rc) rc = registry_traffic_load(n->store, name, &t, &rev, &err);
    if (!rc && t.n == 0) {
        struct registry_deploy_result dr;
        rc = registry_deploy(n->store, &n->sealer, spec, owner, "node", 100, &dr, &err);
        if (!rc) {
            t = dr.traffic;
            rev = dr.rev;
            OBS_LOG(LOG_INFO, "deployment_versioned", LOG_S("deployment", name),
                    LOG_I("version", dr.version));
        }
    }
    int bad = 0;
    /* Known to the gateway first, so it can take each version's rules. */
    if (!rc) gw_deployment_known(n->gw, spec, owner);
    if (!rc)
        rc = registry_versions_load(n->store, &n->sealer, name, apply_version_cb, n, &bad, &err);
    if (rc) {
        OBS_LOG(LOG_ERROR, "deployment_restore_failed", LOG_S("deployment", name),
                LOG_S("error", err.msg));
        if (spec) gw_deployment_forget(n->gw, name);
        registry_spec_free(spec);
        return;
    }
    if (bad)
        OBS_LOG(LOG_ERROR, "version_restore_failed", LOG_S("deployment", name),
                LOG_I("versions", bad));
    scale_set_traffic(n->scale, name, &t, rev);
    registry_spec_free(spec);
}

/* Canary analysis decided (on the scale thread): persist it if the traffic
 * is still what it was based on, audit it either way, and let scale route
 * by whatever the store now holds. */
static void on_canary(void *ctx, const char *name, const struct registry_traffic *t,
                      int64_t base_rev, const char *decision, const char *details)
{
    struct node *n = ctx;
    struct thaw_err err = {0};
    char *doc = registry_traffic_dump(t);
    char action[48], reason[48];
    snprintf(action, sizeof(action), "traffic.canary_%s", decision);
    snprintf(reason, sizeof(reason), "canary %s", decision);
    int64_t rev = 0;
    int rc = doc ? store_traffic_put(n->store, name, doc, base_rev, "canary", reason, &rev, &err)
                 : thaw_errf(&err, THAW_ENOMEM, "out of memory");
    free(doc);
    access_audit(n->access, NULL, action, name, rc ? "conflict" : "ok", details);
    if (!rc) {
        scale_set_traffic(n->scale, name, t, rev);
        return;
    }
    OBS_LOG(LOG_WARN, "canary_decision_not_saved", LOG_S("deployment", name),
            LOG_S("error", err.msg));
    struct registry_traffic cur;
    if (registry_traffic_load(n->store, name, &cur, &rev, &err) == 0)
        scale_set_traffic(n->scale, name, &cur, rev);
}

static void scale_stopped(void *arg)
{
    struct node *n = arg;
    event_base_loopexit(n->base, NULL);
}

static void drain_check(evutil_socket_t fd, short what, void *arg)
{
    struct node *n = arg;
    int inflight = gw_inflight(n->gw) + (n->jobs ? jobs_running(n->jobs) : 0); /* jobs */
    uint64_t now = time_now_ns() / 1000000;
    if (inflight > 0 && now < n->drain_deadline_ms) return;
    if (n->scale_stopping) return;
    if (inflight > 0)
        OBS_LOG(LOG_WARN, "drain_timeout", LOG_I("unanswered", inflight));
    n->scale_stopping = true;
    if (n->jobs) jobs_release_all(n->jobs); /* jobs: unfinished ones back to the queue */
    scale_shutdown(n->scale, scale_stopped, n);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    struct node *n = arg;
    if (n->draining) {
        OBS_LOG(LOG_WARN, "node_forced_stop", LOG_I("signal", (int)sig));
        event_base_loopexit(n->base, NULL);
        return;
    }
    n->draining = true;
    OBS_LOG(LOG_INFO, "node_draining", LOG_I("signal", (int)sig),
            LOG_I("in_flight", gw_inflight(n->gw)),
            LOG_I("drain_timeout_ms", n->cfg->drain_timeout_ms));
    gw_stop_accepting(n->gw);
    if (n->jobs) jobs_drain(n->jobs); /* jobs: stop leasing */
    n->drain_deadline_ms = time_now_ns() / 1000000 + (uint64_t)n->cfg->drain_timeout_ms;
    struct timeval tv = {0, 20000};
    n->drain_ev = event_new(n->base, -1, EV_PERSIST, drain_check, n);
    if (n->drain_ev) event_add(n->drain_ev, &tv);
}

/* Tenants and keys, under subkeys of the KEK; makes sure an admin key
 * exists, printing a generated one exactly once (never into the log). */
static int open_access(struct node *n, struct thaw_err *err)
{
    unsigned char kek[32];
    char admin[256], generated[SECURITY_KEY_STR_SIZE] = "";
    bool was_generated = false;
    int rc = node_load_kek(n->cfg, kek, err);
    if (!rc) rc = access_open(n->store, kek, &n->access, err);
    if (!rc) n->sealer = (struct registry_sealer){n->access, access_seal_hook, access_unseal_hook};
    sodium_memzero(kek, sizeof(kek));
    if (!rc) rc = node_load_admin_key(n->cfg, admin, sizeof(admin), err);
    if (!rc) rc = access_bootstrap(n->access, admin[0] ? admin : NULL, generated, &was_generated, err);
    sodium_memzero(admin, sizeof(admin));
    if (!rc && was_generated) {
        fprintf(stderr, "\nthaw: no admin key was configured, so one was generated. It is shown "
                        "only now:\n\n    %s\n\nexport THAW_KEY=%s to use the CLI.\n\n",
                generated, generated);
        sodium_memzero(generated, sizeof(generated));
    }
    return rc;
}

/* jobs: the webhook signing secret: THAW_WEBHOOK_SECRET, else a random one
 * kept in <data>/webhook.secret (created 0600 on first start). */
static int webhook_secret(const struct node_config *cfg, char *out, size_t n, struct thaw_err *err)
{
    const char *env = getenv("THAW_WEBHOOK_SECRET");
    if (env && *env) {
        str_copy(out, env, n);
        return 0;
    }
    char path[1100];
    snprintf(path, sizeof(path), "%s/webhook.secret", cfg->data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        bool ok = fgets(out, (int)n, f) != NULL;
        fclose(f);
        out[strcspn(out, "\r\n")] = 0;
        if (ok && out[0]) return 0;
    }
    unsigned char raw[32];
    if (random_bytes(raw, sizeof(raw))) return thaw_errf(err, THAW_EIO, "cannot draw a secret");
    for (size_t i = 0; i < sizeof(raw) && 2 * i + 2 < n; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, out, strlen(out)) != (ssize_t)strlen(out) || fsync(fd)) {
        int e = errno;
        if (fd >= 0) close(fd);
        return thaw_errf(err, -e, "cannot write %s: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

/* Job content is sealed under the data key of the tenant that submitted
 * the job: it is that tenant's, whoever owns the deployment it ran on. Jobs
 * kept before tenants were (tenant "") stay under the owner's key, as they
 * always were. The blob names its tenant, so opening needs nothing else. */
static int jobs_seal_cb(void *ctx, const char *tenant, const char *deployment, const char *in,
                        size_t len, char **out, size_t *out_len)
{
    struct node *n = ctx;
    char owner[ACCESS_NAME_MAX + 1];
    if (tenant && tenant[0])
        str_copy(owner, tenant, sizeof(owner));
    else if (!deployment || !gw_deployment_owner(n->gw, deployment, owner, sizeof(owner)))
        str_copy(owner, ACCESS_ROOT_TENANT, sizeof(owner));
    struct buf b = {0};
    struct thaw_err err = {0};
    int rc = access_seal(n->access, owner, "jobs", in, len, &b, &err);
    if (rc) {
        buf_free(&b);
        OBS_LOG(LOG_ERROR, "seal_failed", LOG_S("deployment", deployment), LOG_S("tenant", owner),
                LOG_S("error", err.msg));
        return rc;
    }
    *out_len = b.len;
    *out = buf_steal(&b);
    return *out ? 0 : THAW_ENOMEM;
}

static int jobs_open_cb(void *ctx, const char *in, size_t len, char **out, size_t *out_len)
{
    struct node *n = ctx;
    struct buf b = {0};
    struct thaw_err err = {0};
    int rc = access_unseal(n->access, "jobs", in, len, &b, &err);
    if (rc) {
        buf_free(&b);
        OBS_LOG(LOG_ERROR, "unseal_failed", LOG_S("error", err.msg));
        return rc;
    }
    *out_len = b.len;
    *out = buf_steal(&b);
    return *out ? 0 : THAW_ENOMEM;
}

/* A job attempt's usage goes to the submitting tenant (the deployment's
 * owner for jobs kept before tenants were, as their sealing does), like a
 * synchronous call's: requests, failures and tokens per day, and the
 * tokens counter on /metrics. */
static void jobs_usage_cb(void *ctx, const char *tenant, const char *key_id, const char *deployment,
                          bool failed, uint64_t prompt_tokens, uint64_t completion_tokens)
{
    struct node *n = ctx;
    char owner[ACCESS_NAME_MAX + 1];
    if (tenant && tenant[0])
        str_copy(owner, tenant, sizeof(owner));
    else if (!gw_deployment_owner(n->gw, deployment, owner, sizeof(owner)))
        str_copy(owner, ACCESS_ROOT_TENANT, sizeof(owner));
    /* The tokens also spend the submitting key's and tenant's daily_tokens,
     * as a synchronous call's do (llm and embed only, as there); jobs kept
     * before keys were recorded spend their tenant's alone. Charged before
     * usage shows them, so a client that sees its usage sees its quota. */
    if (tenant && tenant[0] && prompt_tokens + completion_tokens &&
        gw_deployment_metered(n->gw, deployment)) {
        struct access_principal who = {0};
        str_copy(who.tenant, tenant, sizeof(who.tenant));
        str_copy(who.key_id, key_id ? key_id : "", sizeof(who.key_id));
        access_charge_tokens(n->access, &who, prompt_tokens + completion_tokens);
    }
    access_usage_record(n->access, owner, deployment, failed, prompt_tokens, completion_tokens);
    /* The gateway created this family; the lookup finds it by name. */
    struct metric_family *f = obs_metric_family(
        "thaw_tokens_total", "Tokens processed by llm and embed deployments.", METRIC_COUNTER,
        (const char *[]){"deployment", "tenant", "kind", NULL}, NULL, 0);
    const char *kinds[2] = {"prompt", "completion"};
    uint64_t counts[2] = {prompt_tokens, completion_tokens};
    for (int i = 0; i < 2; i++) {
        struct metric_series *m =
            counts[i] ? obs_metric_series(f, (const char *[]){deployment, owner, kinds[i]}) : NULL;
        if (m) obs_metric_add(m, (double)counts[i]);
    }
}

/* Before each attempt of a job: the key that submitted it must still be
 * valid and, for llm and embed, it and its tenant must have daily tokens
 * left. Otherwise the job fails with the reason (a 401 as a request with a
 * revoked key gets; a 429 rate_limited as a request out of tokens gets):
 * waiting for the next UTC day would hold the queue with work nobody may
 * be paying for, and the error says what to do. Jobs kept before tenants
 * were recorded run as they did. */
static int jobs_may_run_cb(void *ctx, const char *tenant, const char *key_id,
                           const char *deployment, int *status, const char **code, char *msg,
                           size_t msg_n)
{
    struct node *n = ctx;
    if (!tenant || !tenant[0] || n->cfg->security_off) return 0;
    struct thaw_err err = {0};
    int rc = access_job_runnable(n->access, tenant, key_id,
                                 gw_deployment_metered(n->gw, deployment), NULL, &err);
    if (!rc) return 0;
    *status = rc == THAW_EBUSY ? 429 : 401;
    *code = rc == THAW_EBUSY ? "rate_limited" : "unauthorized";
    str_copy(msg, err.msg, msg_n);
    return rc;
}

/* jobs: the runner and its API; knobs for webhooks come from the environment. */
static int start_jobs(struct node *n, struct thaw_err *err)
{
    char secret[256];
    int rc = webhook_secret(n->cfg, secret, sizeof(secret), err);
    if (rc) return rc;
    int64_t base = 0, ttl = 0;
    const char *v;
    if ((v = getenv("THAW_WEBHOOK_BACKOFF")) && parse_duration_ms(v, &base))
        return thaw_errf(err, THAW_EINVAL, "THAW_WEBHOOK_BACKOFF: not a duration: %s", v);
    if ((v = getenv("THAW_IDEMPOTENCY_TTL")) && parse_duration_ms(v, &ttl))
        return thaw_errf(err, THAW_EINVAL, "THAW_IDEMPOTENCY_TTL: not a duration: %s", v);
    v = getenv("THAW_WEBHOOK_MAX_ATTEMPTS");
    n->jobs_codec = (struct jobs_codec){jobs_seal_cb, jobs_open_cb, n};
    struct jobs_config jc = {
        .codec = &n->jobs_codec,
        .store = n->store,
        .scale = n->scale,
        .idempotency_ttl_ms = ttl,
        .webhook_secret = secret,
        .webhook_allow = getenv("THAW_WEBHOOK_ALLOW"),
        .webhook_max_attempts = v ? atoi(v) : 0,
        .webhook_backoff_base_ms = base,
        .webhook_backoff_cap_ms = base ? base * 32 : 0,
        .self_port = gw_port(n->gw),
        .on_usage = jobs_usage_cb,
        .may_run = jobs_may_run_cb,
        .usage_ctx = n,
    };
    n->jobs = jobs_new(&jc, err);
    sodium_memzero(secret, sizeof(secret));
    if (!n->jobs) return err->code ? err->code : THAW_ENOMEM;
    gw_set_jobs(n->gw, n->jobs);
    return jobs_start(n->jobs, err);
}

/* <data>/artifacts. One request never carries more than the gateway's body
 * limit, so neither may a chunk. */
static int open_artifacts(struct node *n, struct thaw_err *err)
{
    char root[1100];
    snprintf(root, sizeof(root), "%s/artifacts", n->cfg->data_dir);
    struct artifact_store_config ac = {
        .root = root,
        .chunk_max = MIN(n->cfg->artifact_chunk_max, n->cfg->max_body_bytes),
        .upload_ttl_ms = n->cfg->artifact_upload_ttl_ms,
    };
    return artifact_store_open(&ac, &n->artifacts, err);
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
    struct node *n = arg;
    struct thaw_err err = {0};
    if (!n->cfg->tls_cert[0]) return;
    if (gw_tls_reload(n->gw, &err))
        OBS_LOG(LOG_ERROR, "tls_reload_failed", LOG_S("error", err.msg));
    else
        OBS_LOG(LOG_INFO, "tls_reloaded", LOG_S("cert", n->cfg->tls_cert));
}

static int start(struct node *n, struct thaw_err *err)
{
    const struct node_config *cfg = n->cfg;
    char tmp[1100], db[1100];
    int rc = make_dirs(cfg, &n->lock_fd, tmp, sizeof(tmp), err);
    if (rc) return rc;
    snprintf(db, sizeof(db), "%s/thaw.db", cfg->data_dir);
    if ((rc = store_open_sqlite(db, &n->store, err))) return rc;
    if ((rc = open_access(n, err))) return rc;
    n->base = event_base_new();
    if (!n->base) return thaw_errf(err, THAW_ENOMEM, "cannot create event loop");
    char artifacts[1100];
    snprintf(artifacts, sizeof(artifacts), "%s/artifacts", cfg->data_dir);
    struct scale_config sc = {.tmp_root = tmp,
                              .stop_grace_ms = cfg->stop_grace_ms,
                              .artifact_root = artifacts,
                              .on_canary = on_canary,
                              .canary_ctx = n,
                              .no_redact = cfg->security_off};
    n->scale = scale_new(n->base, &sc, err);
    if (!n->scale) return err->code ? err->code : THAW_ENOMEM;
    if ((rc = open_artifacts(n, err))) return rc;
    struct gateway_config gc = {
        .artifacts = n->artifacts,
        .host = cfg->host,
        .port = cfg->port,
        .threads = cfg->threads,
        .max_header_bytes = (size_t)cfg->max_header_bytes,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .read_timeout_s = cfg->read_timeout_s,
        .access_log = cfg->access_log,
        .shared_base = cfg->threads == 1 ? n->base : NULL,
        .tls_cert = cfg->tls_cert,
        .tls_key = cfg->tls_key,
        .no_auth = cfg->security_off,
    };
    n->gw = gw_new(&gc, n->store, n->scale, n->access, err);
    if (!n->gw) return err->code ? err->code : THAW_EIO;
    struct restore_ctx rctx = {n, 0, json_array()};
    if (!rctx.list) return thaw_errf(err, THAW_ENOMEM, "out of memory");
    rc = store_deployment_list(n->store, restore_cb, &rctx, err);
    size_t i;
    json_t *e;
    json_array_foreach(rctx.list, i, e)
    {
        if (rc) break;
        restore_one(n, json_string_value(json_array_get(e, 0)),
                    json_string_value(json_array_get(e, 1)),
                    json_string_value(json_array_get(e, 2)));
        rctx.n++;
    }
    json_decref(rctx.list);
    if (rc) return rc;
    if ((rc = start_jobs(n, err))) return rc; /* jobs */
    n->sigterm_ev = evsignal_new(n->base, SIGTERM, on_stop_signal, n);
    n->sigint_ev = evsignal_new(n->base, SIGINT, on_stop_signal, n);
    n->sighup_ev = evsignal_new(n->base, SIGHUP, on_reload_signal, n);
    if (!n->sigterm_ev || !n->sigint_ev || !n->sighup_ev || event_add(n->sigterm_ev, NULL) ||
        event_add(n->sigint_ev, NULL) || event_add(n->sighup_ev, NULL))
        return thaw_errf(err, THAW_EIO, "cannot install signal handlers");
    if ((rc = gw_start(n->gw, err))) return rc;
    gw_set_ready(n->gw, 1);
    if (cfg->security_off) {
        OBS_LOG(LOG_WARN, "security_off",
                LOG_S("warning", "SECURITY IS OFF: no API keys, no rate limits, no redaction; "
                                 "for benchmarks on this machine only"),
                LOG_S("listen", cfg->host));
        fprintf(stderr, "\nthaw: WARNING: security is off (--security off): every request on "
                        "%s is served as the root admin, without limits or redaction.\n\n",
                cfg->host);
    }
    char listen[300];
    snprintf(listen, sizeof(listen), "%s:%d", cfg->host, gw_port(n->gw));
    OBS_LOG(LOG_INFO, "node_started", LOG_S("listen", listen), LOG_S("data", cfg->data_dir),
            LOG_S("scheme", cfg->tls_cert[0] ? "https" : "http"),
            LOG_I("deployments", rctx.n), LOG_I("pid", getpid()));
    return 0;
}

int node_run(const struct node_config *cfg)
{
    enum log_level level = LOG_INFO;
    obs_log_parse_level(cfg->log_level, &level);
    obs_log_set_level(level);
    ensure_std_fds();
    /* Not dumpable: /proc/<node>/ (environ, mem, fds) is closed to instances,
     * even those running as the same user. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    /* llm/embed instances are forked by a template whose intermediate child
     * exits at once: as a subreaper the node inherits them and reaps them
     * like the instances it spawns itself (and reaps other orphans). */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    signal(SIGPIPE, SIG_IGN);
    evthread_use_pthreads();

    struct node n = {.cfg = cfg, .lock_fd = -1};
    struct thaw_err err = {0};
    int code = 0;
    if (start(&n, &err)) {
        OBS_LOG(LOG_ERROR, "node_start_failed", LOG_S("error", err.msg));
        fprintf(stderr, "thaw: %s\n", err.msg);
        code = 1;
    } else {
        event_base_dispatch(n.base);
        OBS_LOG(LOG_INFO, "node_stopped");
    }
    if (n.gw) gw_stop_accepting(n.gw);
    gw_join(n.gw);                    /* the workers stop before the scale goes away */
    scale_free(n.scale);              /* fails what a forced stop left in flight */
    gw_free(n.gw);                    /* drops those answers */
    jobs_free(n.jobs);                /* jobs: after the scale has answered everything */
    artifact_store_free(n.artifacts); /* after the gateway's workers are gone */
    if (n.sigterm_ev) event_free(n.sigterm_ev);
    if (n.sigint_ev) event_free(n.sigint_ev);
    if (n.sighup_ev) event_free(n.sighup_ev);
    if (n.drain_ev) event_free(n.drain_ev);
    if (n.base) event_base_free(n.base);
    access_free(n.access);
    store_close(n.store);
    if (n.lock_fd >= 0) close(n.lock_fd);
    obs_metrics_reset();
    libevent_global_shutdown();
    return code;
}
