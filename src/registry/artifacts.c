/* Content-addressed artifact blobs on local disk: single-request puts,
 * resumable upload sessions that survive a restart, and garbage collection.
 * The layout and the crash-safety argument are in registry.h. */
#include "registry/registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SESSIONS 1024
#define PATH_SIZE    1400
#define HASH_BUF     (1 << 20)

/* One upload session known to this process. The table's lock guards refs,
 * dead and the list; the session's own mutex guards the rest. */
struct upload {
    struct upload *next;
    char id[ARTIFACT_UPLOAD_ID_SIZE];
    pthread_mutex_t mu;
    int refs;
    bool dead;   /* completed, aborted or expired: callers still holding it see 404 */
    bool loaded; /* offset and md reflect the partial file */
    int64_t offset, size;
    EVP_MD_CTX *md; /* hash of bytes [0, offset) */
};

struct artifact_store {
    char *root;
    int64_t chunk_max, ttl_ms;
    pthread_mutex_t ns_lock; /* blob namespace: link/touch vs. GC unlink */
    pthread_mutex_t tab_lock;
    struct upload *uploads;
    int n_uploads;
    _Atomic int64_t last_sweep_ms;
};

/* ---- helpers ---- */

static bool is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

bool artifact_digest_valid(const char *s)
{
    return s && strncmp(s, "sha256:", 7) == 0 && strlen(s) == 71 && is_hex(s + 7, 64);
}

static bool upload_id_valid(const char *id)
{
    return id && strlen(id) == 32 && is_hex(id, 32);
}

static void digest_format(const unsigned char md[32], char out[ARTIFACT_DIGEST_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 15];
    }
    out[71] = 0;
}

/* Finishes a copy of md so md itself can go on hashing. */
static int md_peek(const EVP_MD_CTX *md, char out[ARTIFACT_DIGEST_SIZE])
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_MD_CTX_copy_ex(c, md) && EVP_DigestFinal_ex(c, d, &n) && n == 32;
    EVP_MD_CTX_free(c);
    if (!ok) return THAW_ENOMEM;
    digest_format(d, out);
    return 0;
}

static EVP_MD_CTX *md_new(void)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md && !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        md = NULL;
    }
    return md;
}

static size_t iov_total(const struct iovec *iov, size_t n)
{
    size_t t = 0;
    for (size_t i = 0; i < n; i++)
        t += iov[i].iov_len;
    return t;
}

static int md_update_iov(EVP_MD_CTX *md, const struct iovec *iov, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (iov[i].iov_len && !EVP_DigestUpdate(md, iov[i].iov_base, iov[i].iov_len))
            return THAW_ENOMEM;
    return 0;
}

/* Writes all of iov at offset, however the kernel splits it. */
static int pwrite_all(int fd, const struct iovec *iov, size_t n, int64_t offset)
{
    struct iovec batch[64];
    size_t i = 0, skip = 0; /* bytes of iov[i] already written */
    while (i < n) {
        int nb = 0;
        for (size_t j = i; j < n && nb < (int)ARRAY_LEN(batch); j++) {
            size_t off = j == i ? skip : 0;
            if (iov[j].iov_len == off) continue;
            batch[nb].iov_base = (char *)iov[j].iov_base + off;
            batch[nb++].iov_len = iov[j].iov_len - off;
        }
        if (nb == 0) break;
        ssize_t w = pwritev(fd, batch, nb, (off_t)offset);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return w < 0 ? -errno : -EIO;
        offset += w;
        size_t left = (size_t)w;
        while (i < n && left >= iov[i].iov_len - skip) {
            left -= iov[i].iov_len - skip;
            skip = 0;
            i++;
        }
        skip += left;
    }
    return 0;
}

/* snprintf for paths; roots are at most 1000 bytes (checked at open), so a
 * path never fills PATH_SIZE. */
static void pathf(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void pathf(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = fsync(fd) ? -errno : 0;
    close(fd);
    return rc;
}

static int mkdir_p1(const char *path, struct thaw_err *err)
{
    if (mkdir(path, 0700) && errno != EEXIST)
        return thaw_errf(err, -errno, "cannot create %s: %s", path, strerror(errno));
    return 0;
}

static void blob_path(const struct artifact_store *as, const char *digest, char *out, size_t n)
{
    pathf(out, n, "%s/sha256/%.2s/%s", as->root, digest + 7, digest + 9);
}

int artifact_blob_path(const char *root, const char *digest, char *out, size_t n)
{
    if (!artifact_digest_valid(digest)) return THAW_EINVAL;
    int w = snprintf(out, n, "%s/sha256/%.2s/%s", root, digest + 7, digest + 9);
    return w > 0 && (size_t)w < n ? 0 : THAW_ERANGE;
}

static void upload_path(const struct artifact_store *as, const char *id, const char *file,
                        char *out, size_t n)
{
    pathf(out, n, "%s/uploads/%s%s%s", as->root, id, file ? "/" : "", file ? file : "");
}

/* Removes a session directory and what is in it. */
static void upload_remove_files(const struct artifact_store *as, const char *id)
{
    char p[PATH_SIZE];
    upload_path(as, id, "data", p, sizeof(p));
    unlink(p);
    upload_path(as, id, "size", p, sizeof(p));
    unlink(p);
    upload_path(as, id, NULL, p, sizeof(p));
    rmdir(p);
}

/* ---- open and free ---- */

static void clean_tmp(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[PATH_SIZE];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        pathf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

int artifact_store_open(const struct artifact_store_config *cfg, struct artifact_store **out,
                        struct thaw_err *err)
{
    *out = NULL;
    if (!cfg->root || !*cfg->root || strlen(cfg->root) > 1000)
        return thaw_errf(err, THAW_EINVAL, "artifact root must be a path of at most 1000 bytes");
    if (cfg->chunk_max < 1)
        return thaw_errf(err, THAW_EINVAL, "artifact chunk limit must be positive");
    struct artifact_store *as = calloc(1, sizeof(*as));
    if (!as || !(as->root = str_dup(cfg->root))) {
        free(as);
        return thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    as->chunk_max = cfg->chunk_max;
    as->ttl_ms = cfg->upload_ttl_ms > 0 ? cfg->upload_ttl_ms : 24LL * 3600 * 1000;
    pthread_mutex_init(&as->ns_lock, NULL);
    pthread_mutex_init(&as->tab_lock, NULL);
    char p[PATH_SIZE];
    int rc = mkdir_p1(as->root, err);
    static const char *const sub[] = {"sha256", "uploads", "tmp"};
    for (size_t i = 0; !rc && i < ARRAY_LEN(sub); i++) {
        pathf(p, sizeof(p), "%s/%s", as->root, sub[i]);
        rc = mkdir_p1(p, err);
    }
    if (rc) {
        artifact_store_free(as);
        return rc;
    }
    pathf(p, sizeof(p), "%s/tmp", as->root);
    clean_tmp(p);
    *out = as;
    return 0;
}

static void upload_free(struct upload *u)
{
    EVP_MD_CTX_free(u->md);
    pthread_mutex_destroy(&u->mu);
    free(u);
}

void artifact_store_free(struct artifact_store *as)
{
    if (!as) return;
    while (as->uploads) {
        struct upload *u = as->uploads;
        as->uploads = u->next;
        upload_free(u);
    }
    pthread_mutex_destroy(&as->ns_lock);
    pthread_mutex_destroy(&as->tab_lock);
    free(as->root);
    free(as);
}

int64_t artifact_store_chunk_max(const struct artifact_store *as)
{
    return as->chunk_max;
}

int64_t artifact_store_upload_ttl_ms(const struct artifact_store *as)
{
    return as->ttl_ms;
}

/* ---- blobs ---- */

int artifact_stat(struct artifact_store *as, const char *digest, int64_t *size,
                  struct thaw_err *err)
{
    if (!artifact_digest_valid(digest))
        return thaw_errf(err, THAW_ENOTFOUND, "not a digest: expected sha256:<64 hex>");
    char p[PATH_SIZE];
    blob_path(as, digest, p, sizeof(p));
    struct stat st;
    if (stat(p, &st)) {
        if (errno == ENOENT) return thaw_errf(err, THAW_ENOTFOUND, "artifact %s not found", digest);
        return thaw_errf(err, -errno, "cannot stat %s: %s", p, strerror(errno));
    }
    if (size) *size = (int64_t)st.st_size;
    return 0;
}

int artifact_open(struct artifact_store *as, const char *digest, int *fd, int64_t *size,
                  struct thaw_err *err)
{
    if (!artifact_digest_valid(digest))
        return thaw_errf(err, THAW_ENOTFOUND, "not a digest: expected sha256:<64 hex>");
    char p[PATH_SIZE];
    blob_path(as, digest, p, sizeof(p));
    int f = open(p, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (f < 0 || fstat(f, &st)) {
        int e = errno;
        if (f >= 0) close(f);
        if (e == ENOENT) return thaw_errf(err, THAW_ENOTFOUND, "artifact %s not found", digest);
        return thaw_errf(err, -e, "cannot open %s: %s", p, strerror(e));
    }
    *fd = f;
    *size = (int64_t)st.st_size;
    return 0;
}

/* Links the finished, fsync'd file tmp into place under digest; removes tmp
 * either way. out->created says whether this call stored it. */
static int commit_blob(struct artifact_store *as, const char *tmp, const char *digest,
                       struct artifact_info *out, struct thaw_err *err)
{
    char final[PATH_SIZE], dir[PATH_SIZE];
    blob_path(as, digest, final, sizeof(final));
    pathf(dir, sizeof(dir), "%s/sha256/%.2s", as->root, digest + 7);
    int rc = 0;
    pthread_mutex_lock(&as->ns_lock);
    if (mkdir(dir, 0700) == 0) {
        char top[PATH_SIZE];
        pathf(top, sizeof(top), "%s/sha256", as->root);
        fsync_dir(top);
    } else if (errno != EEXIST) {
        rc = thaw_errf(err, -errno, "cannot create %s: %s", dir, strerror(errno));
    }
    if (!rc && link(tmp, final) == 0) {
        out->created = true;
    } else if (!rc && errno == EEXIST) {
        out->created = false; /* another upload won: ours is discarded */
    } else if (!rc) {
        rc = thaw_errf(err, -errno, "cannot store %s: %s", final, strerror(errno));
    }
    /* The time GC measures min_age from: stored or re-confirmed now. */
    if (!rc) utimensat(AT_FDCWD, final, NULL, 0);
    pthread_mutex_unlock(&as->ns_lock);
    unlink(tmp);
    if (!rc && out->created && fsync_dir(dir))
        rc = thaw_errf(err, THAW_EIO, "cannot sync %s: %s", dir, strerror(errno));
    if (!rc) str_copy(out->digest, digest, sizeof(out->digest));
    return rc;
}

/* If the blob exists, marks it re-confirmed (see commit_blob) and fills out. */
static bool blob_confirm(struct artifact_store *as, const char *digest, struct artifact_info *out)
{
    char p[PATH_SIZE];
    blob_path(as, digest, p, sizeof(p));
    pthread_mutex_lock(&as->ns_lock);
    struct stat st;
    bool found = stat(p, &st) == 0;
    if (found) utimensat(AT_FDCWD, p, NULL, 0);
    pthread_mutex_unlock(&as->ns_lock);
    if (found) {
        str_copy(out->digest, digest, sizeof(out->digest));
        out->size = (int64_t)st.st_size;
        out->created = false;
    }
    return found;
}

int artifact_confirm(struct artifact_store *as, const char *digest, struct artifact_info *out)
{
    char d[ARTIFACT_DIGEST_SIZE] = "";
    if (artifact_digest_valid(digest)) str_copy(d, digest, sizeof(d)); /* may point into out */
    memset(out, 0, sizeof(*out));
    if (!d[0]) return THAW_ENOTFOUND;
    return blob_confirm(as, d, out) ? 0 : THAW_ENOTFOUND;
}

static int mismatch(struct thaw_err *err, const char *expect, const char *got)
{
    return thaw_errf(err, THAW_ECONFLICT, "digest mismatch: expected %s, the data is %s", expect,
                     got);
}

int artifact_put(struct artifact_store *as, const struct iovec *iov, size_t n_iov,
                 const char *expect, struct artifact_info *out, struct thaw_err *err)
{
    char want[ARTIFACT_DIGEST_SIZE];
    if (expect && artifact_digest_valid(expect)) expect = memcpy(want, expect, sizeof(want));
    memset(out, 0, sizeof(*out)); /* after the copy: expect may point into out */
    size_t len = iov_total(iov, n_iov);
    if ((int64_t)len > as->chunk_max)
        return thaw_errf(err, THAW_ERANGE,
                         "%zu bytes is more than the %lld-byte limit of one request; use an "
                         "upload session",
                         len, (long long)as->chunk_max);
    if (expect && !artifact_digest_valid(expect))
        return thaw_errf(err, THAW_EINVAL, "expected digest must be sha256:<64 lowercase hex>");
    /* Hash before touching the disk: a known or mismatched blob costs no I/O. */
    EVP_MD_CTX *md = md_new();
    char digest[ARTIFACT_DIGEST_SIZE];
    int rc = md ? md_update_iov(md, iov, n_iov) : THAW_ENOMEM;
    if (!rc) rc = md_peek(md, digest);
    EVP_MD_CTX_free(md);
    if (rc) return thaw_errf(err, rc, "cannot hash: out of memory");
    if (expect && strcmp(expect, digest) != 0) return mismatch(err, expect, digest);
    if (blob_confirm(as, digest, out)) return 0;

    char tmp[PATH_SIZE], id[33];
    random_hex_id(id);
    pathf(tmp, sizeof(tmp), "%s/tmp/%s", as->root, id);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0) return thaw_errf(err, -errno, "cannot create %s: %s", tmp, strerror(errno));
    rc = pwrite_all(fd, iov, n_iov, 0);
    if (!rc && fsync(fd)) rc = -errno;
    close(fd);
    if (rc) {
        unlink(tmp);
        return thaw_errf(err, rc, "cannot write artifact: %s", strerror(-rc));
    }
    out->size = (int64_t)len;
    return commit_blob(as, tmp, digest, out, err);
}

/* ---- upload sessions ---- */

/* Finds a session in the table, or adopts one left on disk by an earlier
 * run; takes a reference. NULL when unknown. Call with tab_lock held. */
static struct upload *upload_get_locked(struct artifact_store *as, const char *id)
{
    for (struct upload *u = as->uploads; u; u = u->next) {
        if (!u->dead && strcmp(u->id, id) == 0) {
            u->refs++;
            return u;
        }
    }
    char p[PATH_SIZE];
    upload_path(as, id, "data", p, sizeof(p));
    if (access(p, F_OK) != 0 || as->n_uploads >= MAX_SESSIONS) return NULL;
    struct upload *u = calloc(1, sizeof(*u));
    if (!u) return NULL;
    str_copy(u->id, id, sizeof(u->id));
    pthread_mutex_init(&u->mu, NULL);
    u->refs = 1;
    u->size = -1;
    u->next = as->uploads;
    as->uploads = u;
    as->n_uploads++;
    return u;
}

static void upload_unlink_locked(struct artifact_store *as, struct upload *u)
{
    for (struct upload **pp = &as->uploads; *pp; pp = &(*pp)->next) {
        if (*pp == u) {
            *pp = u->next;
            as->n_uploads--;
            return;
        }
    }
}

static void upload_put(struct artifact_store *as, struct upload *u)
{
    pthread_mutex_lock(&as->tab_lock);
    bool gone = --u->refs == 0 && u->dead;
    pthread_mutex_unlock(&as->tab_lock);
    if (gone) upload_free(u);
}

/* Rebuilds a session's state from its files (first use after a restart). */
static int upload_load(struct artifact_store *as, struct upload *u, struct thaw_err *err)
{
    char p[PATH_SIZE];
    upload_path(as, u->id, "size", p, sizeof(p));
    FILE *f = fopen(p, "r");
    if (f) {
        long long v;
        if (fscanf(f, "%lld", &v) == 1 && v >= 0) u->size = v;
        fclose(f);
    }
    upload_path(as, u->id, "data", p, sizeof(p));
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return thaw_errf(err, THAW_ENOTFOUND, "upload %s not found", u->id);
    u->md = md_new();
    char *buf = malloc(HASH_BUF);
    int rc = u->md && buf ? 0 : THAW_ENOMEM;
    int64_t off = 0;
    while (!rc) {
        ssize_t n = pread(fd, buf, HASH_BUF, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = -errno;
        if (n <= 0) break;
        if (!EVP_DigestUpdate(u->md, buf, (size_t)n)) rc = THAW_ENOMEM;
        off += n;
    }
    free(buf);
    close(fd);
    if (rc) {
        EVP_MD_CTX_free(u->md);
        u->md = NULL;
        return thaw_errf(err, rc, "cannot resume upload %s: %s", u->id, thaw_strerror(rc));
    }
    u->offset = off;
    u->loaded = true;
    return 0;
}

static int64_t idle_ms_of(const struct artifact_store *as, const char *id)
{
    char p[PATH_SIZE];
    upload_path(as, id, "data", p, sizeof(p));
    struct stat st;
    if (stat(p, &st)) {
        upload_path(as, id, NULL, p, sizeof(p));
        if (stat(p, &st)) return -1;
    }
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    int64_t idle = time_wall_ms() - mtime;
    return idle < 0 ? 0 : idle;
}

/* Takes a session and locks it, loading it if needed. On success the caller
 * must call release(). */
static int acquire(struct artifact_store *as, const char *id, struct upload **out,
                   struct thaw_err *err)
{
    if (!upload_id_valid(id)) return thaw_errf(err, THAW_ENOTFOUND, "not an upload id");
    pthread_mutex_lock(&as->tab_lock);
    struct upload *u = upload_get_locked(as, id);
    pthread_mutex_unlock(&as->tab_lock);
    if (!u) return thaw_errf(err, THAW_ENOTFOUND, "upload %s not found", id);
    pthread_mutex_lock(&u->mu);
    int rc = u->dead ? thaw_errf(err, THAW_ENOTFOUND, "upload %s not found", id) : 0;
    if (!rc && !u->loaded) rc = upload_load(as, u, err);
    if (rc) {
        pthread_mutex_unlock(&u->mu);
        upload_put(as, u);
        return rc;
    }
    *out = u;
    return 0;
}

static void release(struct artifact_store *as, struct upload *u)
{
    pthread_mutex_unlock(&u->mu);
    upload_put(as, u);
}

/* Ends a session: files gone, later callers get 404. Call with u->mu held. */
static void finish(struct artifact_store *as, struct upload *u)
{
    upload_remove_files(as, u->id);
    pthread_mutex_lock(&as->tab_lock);
    u->dead = true;
    upload_unlink_locked(as, u);
    pthread_mutex_unlock(&as->tab_lock);
}

static void fill_info(const struct artifact_store *as, const struct upload *u,
                      struct artifact_upload_info *out)
{
    if (!out) return;
    str_copy(out->id, u->id, sizeof(out->id));
    out->offset = u->offset;
    out->size = u->size;
    out->idle_ms = idle_ms_of(as, u->id);
}

static int write_size_file(const struct artifact_store *as, const char *id, int64_t size)
{
    char p[PATH_SIZE];
    upload_path(as, id, "size", p, sizeof(p));
    FILE *f = fopen(p, "w");
    if (!f) return -errno;
    int bad = fprintf(f, "%lld\n", (long long)size) < 0;
    bad |= fclose(f) != 0;
    return bad ? THAW_EIO : 0;
}

int artifact_upload_create(struct artifact_store *as, int64_t size,
                           struct artifact_upload_info *out, struct thaw_err *err)
{
    memset(out, 0, sizeof(*out));
    int64_t now = time_wall_ms(), last = atomic_load(&as->last_sweep_ms);
    /* Abandoned sessions go without a timer thread: swept now and then. */
    if (now - last > 60000 && atomic_compare_exchange_strong(&as->last_sweep_ms, &last, now))
        artifact_uploads_expire(as, NULL);
    struct upload *u = calloc(1, sizeof(*u));
    if (!u || !(u->md = md_new())) {
        free(u);
        return thaw_errf(err, THAW_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&u->mu, NULL);
    random_hex_id(u->id);
    u->size = size >= 0 ? size : -1;
    u->loaded = true;
    char p[PATH_SIZE];
    upload_path(as, u->id, NULL, p, sizeof(p));
    int rc =
        mkdir(p, 0700) ? thaw_errf(err, -errno, "cannot create %s: %s", p, strerror(errno)) : 0;
    if (!rc && size >= 0 && write_size_file(as, u->id, size))
        rc = thaw_errf(err, THAW_EIO, "cannot write upload metadata");
    upload_path(as, u->id, "data", p, sizeof(p));
    int fd = rc ? -1 : open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (!rc && fd < 0) rc = thaw_errf(err, -errno, "cannot create %s: %s", p, strerror(errno));
    if (fd >= 0) close(fd);
    pthread_mutex_lock(&as->tab_lock);
    if (!rc && as->n_uploads >= MAX_SESSIONS)
        rc = thaw_errf(err, THAW_EBUSY, "too many upload sessions open (%d)", MAX_SESSIONS);
    if (!rc) {
        u->next = as->uploads;
        as->uploads = u;
        as->n_uploads++;
    }
    pthread_mutex_unlock(&as->tab_lock);
    if (rc) {
        upload_remove_files(as, u->id);
        upload_free(u);
        return rc;
    }
    str_copy(out->id, u->id, sizeof(out->id));
    out->size = u->size;
    return 0;
}

int artifact_upload_stat(struct artifact_store *as, const char *id,
                         struct artifact_upload_info *out, struct thaw_err *err)
{
    struct upload *u;
    int rc = acquire(as, id, &u, err); /* before touching out: id may point into it */
    if (rc) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    fill_info(as, u, out);
    release(as, u);
    return 0;
}

static int append_locked(struct artifact_store *as, struct upload *u, int64_t offset,
                         const struct iovec *iov, size_t n_iov, struct thaw_err *err)
{
    int64_t len = (int64_t)iov_total(iov, n_iov);
    if (offset != u->offset)
        return thaw_errf(err, THAW_ECONFLICT, "offset %lld does not match the upload's %lld",
                         (long long)offset, (long long)u->offset);
    if (len > as->chunk_max)
        return thaw_errf(err, THAW_ERANGE, "chunk of %lld bytes is over the %lld-byte limit",
                         (long long)len, (long long)as->chunk_max);
    if (u->size >= 0 && u->offset + len > u->size)
        return thaw_errf(err, THAW_ERANGE, "chunk ends at %lld, past the declared size %lld",
                         (long long)(u->offset + len), (long long)u->size);
    char p[PATH_SIZE];
    upload_path(as, u->id, "data", p, sizeof(p));
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return thaw_errf(err, -errno, "cannot open %s: %s", p, strerror(errno));
    int rc = pwrite_all(fd, iov, n_iov, u->offset);
    if (rc) {
        /* Keep the file equal to what the offset says: nothing of this chunk. */
        if (ftruncate(fd, (off_t)u->offset)) rc = -errno;
        close(fd);
        return thaw_errf(err, rc, "cannot write upload: %s", strerror(-rc));
    }
    /* Start writeback now so the fsync at the end has little left to do. */
    if (len > 0) sync_file_range(fd, (off_t)u->offset, (off_t)len, SYNC_FILE_RANGE_WRITE);
    close(fd);
    if ((rc = md_update_iov(u->md, iov, n_iov))) return thaw_errf(err, rc, "cannot hash");
    u->offset += len;
    return 0;
}

int artifact_upload_append(struct artifact_store *as, const char *id, int64_t offset,
                           const struct iovec *iov, size_t n_iov, struct artifact_upload_info *out,
                           struct thaw_err *err)
{
    struct upload *u;
    int rc = acquire(as, id, &u, err);
    if (rc) {
        if (out) memset(out, 0, sizeof(*out));
        return rc;
    }
    rc = append_locked(as, u, offset, iov, n_iov, err);
    fill_info(as, u, out);
    release(as, u);
    return rc;
}

int artifact_upload_complete(struct artifact_store *as, const char *id, const char *expect,
                             struct artifact_info *out, struct thaw_err *err)
{
    if (expect && !artifact_digest_valid(expect))
        return thaw_errf(err, THAW_EINVAL, "expected digest must be sha256:<64 lowercase hex>");
    char want[ARTIFACT_DIGEST_SIZE], sid[ARTIFACT_UPLOAD_ID_SIZE];
    if (expect) str_copy(want, expect, sizeof(want));
    if (!upload_id_valid(id)) return thaw_errf(err, THAW_ENOTFOUND, "not an upload id");
    str_copy(sid, id, sizeof(sid)); /* either may point into out */
    expect = expect ? want : NULL;
    memset(out, 0, sizeof(*out));
    struct upload *u;
    int rc = acquire(as, sid, &u, err);
    if (rc) return rc;
    char digest[ARTIFACT_DIGEST_SIZE], p[PATH_SIZE];
    if (u->size >= 0 && u->offset != u->size) {
        rc = thaw_errf(err, THAW_ESTATE, "upload incomplete: %lld of %lld bytes received",
                       (long long)u->offset, (long long)u->size);
        goto out_release;
    }
    if ((rc = md_peek(u->md, digest))) {
        rc = thaw_errf(err, rc, "cannot hash: out of memory");
        goto out_release;
    }
    if (expect && strcmp(expect, digest) != 0) {
        rc = mismatch(err, expect, digest);
        finish(as, u);
        goto out_release;
    }
    out->size = u->offset;
    if (blob_confirm(as, digest, out)) {
        finish(as, u);
        goto out_release;
    }
    upload_path(as, u->id, "data", p, sizeof(p));
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fsync(fd)) {
        rc = thaw_errf(err, -errno, "cannot sync %s: %s", p, strerror(errno));
        if (fd >= 0) close(fd);
        goto out_release;
    }
    close(fd);
    chmod(p, 0444);
    rc = commit_blob(as, p, digest, out, err);
    out->size = u->offset;
    if (!rc) finish(as, u);
out_release:
    release(as, u);
    return rc;
}

int artifact_upload_abort(struct artifact_store *as, const char *id, struct thaw_err *err)
{
    struct upload *u;
    int rc = acquire(as, id, &u, err);
    if (rc) return rc;
    finish(as, u);
    release(as, u);
    return 0;
}

/* Whether a session on disk may expire now: idle past the TTL and not in
 * use. Call with tab_lock held. */
static bool may_expire_locked(struct artifact_store *as, const char *id)
{
    for (struct upload *u = as->uploads; u; u = u->next) {
        if (strcmp(u->id, id) != 0 || u->dead) continue;
        if (u->refs > 0) return false;
        int64_t idle = idle_ms_of(as, id);
        if (idle < 0 || idle < as->ttl_ms) return false;
        u->dead = true;
        upload_unlink_locked(as, u);
        upload_free(u);
        return true;
    }
    int64_t idle = idle_ms_of(as, id);
    return idle >= as->ttl_ms;
}

int artifact_uploads_expire(struct artifact_store *as, struct thaw_err *err)
{
    char p[PATH_SIZE];
    pathf(p, sizeof(p), "%s/uploads", as->root);
    DIR *d = opendir(p);
    if (!d) return thaw_errf(err, -errno, "cannot list %s: %s", p, strerror(errno));
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (!upload_id_valid(e->d_name)) continue;
        pthread_mutex_lock(&as->tab_lock);
        bool go = may_expire_locked(as, e->d_name);
        /* Removed under the lock so no caller can adopt it half-deleted. */
        if (go) upload_remove_files(as, e->d_name);
        pthread_mutex_unlock(&as->tab_lock);
        n += go;
    }
    closedir(d);
    return n;
}

/* ---- listing and garbage collection ---- */

typedef int (*blob_walk_fn)(void *ctx, const char *digest, const char *path);

static int walk_blobs(struct artifact_store *as, blob_walk_fn fn, void *ctx, struct thaw_err *err)
{
    char top[PATH_SIZE], sub[PATH_SIZE], path[PATH_SIZE];
    pathf(top, sizeof(top), "%s/sha256", as->root);
    DIR *d = opendir(top);
    if (!d) return thaw_errf(err, -errno, "cannot list %s: %s", top, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (strlen(e->d_name) != 2 || !is_hex(e->d_name, 2)) continue;
        pathf(sub, sizeof(sub), "%s/%s", top, e->d_name);
        DIR *s = opendir(sub);
        if (!s) continue;
        struct dirent *f;
        while (!rc && (f = readdir(s))) {
            if (strlen(f->d_name) != 62 || !is_hex(f->d_name, 62)) continue;
            char digest[ARTIFACT_DIGEST_SIZE];
            memcpy(digest, "sha256:", 7);
            memcpy(digest + 7, e->d_name, 2);
            memcpy(digest + 9, f->d_name, 63);
            pathf(path, sizeof(path), "%s/%s", sub, f->d_name);
            rc = fn(ctx, digest, path);
        }
        closedir(s);
    }
    closedir(d);
    return rc;
}

struct list_ctx {
    artifact_list_fn cb;
    void *ctx;
};

static int list_one(void *arg, const char *digest, const char *path)
{
    struct list_ctx *c = arg;
    struct stat st;
    if (stat(path, &st)) return 0; /* removed meanwhile */
    return c->cb(c->ctx, digest, (int64_t)st.st_size);
}

int artifact_list(struct artifact_store *as, artifact_list_fn cb, void *ctx, struct thaw_err *err)
{
    struct list_ctx c = {cb, ctx};
    return walk_blobs(as, list_one, &c, err);
}

struct gc_ctx {
    struct artifact_store *as;
    const struct artifact_gc_opts *o;
    struct artifact_gc_stats *st;
    int64_t now_ms;
};

static int gc_one(void *arg, const char *digest, const char *path)
{
    struct gc_ctx *c = arg;
    const struct artifact_gc_opts *o = c->o;
    pthread_mutex_lock(&c->as->ns_lock);
    struct stat st;
    int64_t size = -1;
    if (stat(path, &st) == 0) {
        int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
        if (o->is_referenced && o->is_referenced(o->ref_ctx, digest)) {
            c->st->kept_referenced++;
        } else if (c->now_ms - mtime < o->min_age_ms) {
            c->st->kept_young++;
        } else if (o->dry_run || unlink(path) == 0) {
            size = (int64_t)st.st_size;
        }
    }
    pthread_mutex_unlock(&c->as->ns_lock);
    if (size >= 0) {
        c->st->removed++;
        c->st->removed_bytes += size;
        if (o->removed) o->removed(o->removed_ctx, digest, size);
    }
    return 0;
}

int artifact_gc(struct artifact_store *as, const struct artifact_gc_opts *opts,
                struct artifact_gc_stats *stats, struct thaw_err *err)
{
    memset(stats, 0, sizeof(*stats));
    struct gc_ctx c = {as, opts, stats, time_wall_ms()};
    int rc = walk_blobs(as, gc_one, &c, err);
    if (rc) return rc;
    if (!opts->dry_run) {
        int n = artifact_uploads_expire(as, err);
        if (n < 0) return n;
        stats->expired_uploads = n;
    }
    return 0;
}

/* ---- reference sets ---- */

int artifact_refs_add(struct artifact_refs *r, const char *digest)
{
    if (!artifact_digest_valid(digest)) return 0;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        void *d = realloc(r->digests, cap * sizeof(*r->digests));
        if (!d) return THAW_ENOMEM;
        r->digests = d;
        r->cap = cap;
    }
    memcpy(r->digests[r->n++], digest, ARTIFACT_DIGEST_SIZE);
    r->sorted = false;
    return 0;
}

/* Adds each digest that appears inside s. */
static int scan_string(struct artifact_refs *r, const char *s)
{
    for (const char *p = strstr(s, "sha256:"); p; p = strstr(p + 7, "sha256:")) {
        if (strnlen(p, 71) < 71 || !is_hex(p + 7, 64)) continue;
        char d[ARTIFACT_DIGEST_SIZE];
        memcpy(d, p, 71);
        d[71] = 0;
        int rc = artifact_refs_add(r, d);
        if (rc) return rc;
    }
    return 0;
}

static int scan_json(struct artifact_refs *r, const json_t *v, int depth)
{
    if (depth > 64) return 0;
    int rc = 0;
    if (json_is_string(v)) return scan_string(r, json_string_value(v));
    if (json_is_array(v)) {
        for (size_t i = 0; !rc && i < json_array_size(v); i++)
            rc = scan_json(r, json_array_get(v, i), depth + 1);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            if (!rc) rc = scan_string(r, k);
            if (!rc) rc = scan_json(r, x, depth + 1);
        }
    }
    return rc;
}

int artifact_refs_scan_json(struct artifact_refs *r, const json_t *v)
{
    return scan_json(r, v, 0);
}

static int cmp_digest(const void *a, const void *b)
{
    return strcmp(a, b);
}

bool artifact_refs_has(struct artifact_refs *r, const char *digest)
{
    if (!r->n || !digest) return false;
    if (!r->sorted) {
        qsort(r->digests, r->n, sizeof(*r->digests), cmp_digest);
        r->sorted = true;
    }
    return bsearch(digest, r->digests, r->n, sizeof(*r->digests), cmp_digest) != NULL;
}

bool artifact_refs_contains_cb(void *ctx, const char *digest)
{
    return artifact_refs_has(ctx, digest);
}

void artifact_refs_free(struct artifact_refs *r)
{
    free(r->digests);
    memset(r, 0, sizeof(*r));
}
