/* Private scratch directories for instances, and their removal without
 * trusting what the instance left inside (symlinks, odd permissions, deep
 * trees, mount points). */
#include "security/security.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 64 /* open descriptors held at once while descending */

int security_tmpdir_create(const char *base, const char *prefix, char *out, size_t n,
                           struct thaw_err *err)
{
    if (!base || !*base || !prefix || strchr(prefix, '/'))
        return thaw_errf(err, THAW_EINVAL, "tmpdir: bad base or prefix");
    int len = snprintf(out, n, "%s/%s.XXXXXX", base, prefix);
    if (len < 0 || (size_t)len >= n)
        return thaw_errf(err, THAW_ERANGE, "tmpdir: path under %s too long", base);
    if (!mkdtemp(out)) {
        int e = errno;
        return thaw_errf(err, -e, "tmpdir: cannot create under %s: %s", base, strerror(e));
    }
    return 0;
}

struct rm_ctx {
    int rootfd;
    dev_t dev;
    unsigned hoisted;
    int rc;
    char where[256];
};

static void rm_fail(struct rm_ctx *c, int rc, const char *name)
{
    if (c->rc) return;
    c->rc = rc;
    snprintf(c->where, sizeof(c->where), "%s", name);
}

/* Empties the directory open as dirfd (closed on return). Returns how many
 * entries it removed or moved. */
static unsigned rm_contents(struct rm_ctx *c, int dirfd, int depth)
{
    DIR *d = fdopendir(dirfd);
    if (!d) {
        rm_fail(c, -errno, "(directory)");
        close(dirfd);
        return 0;
    }
    unsigned done = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue; /* raced away */
        if (!S_ISDIR(st.st_mode)) {
            if (unlinkat(dirfd, name, 0) == 0)
                done++;
            else
                rm_fail(c, -errno, name);
            continue;
        }
        if (st.st_dev != c->dev) {
            rm_fail(c, -EXDEV, name);
            continue;
        }
        if (depth >= MAX_DEPTH) {
            char to[32];
            snprintf(to, sizeof(to), ".hoist.%u", c->hoisted++);
            if (renameat(dirfd, name, c->rootfd, to) == 0)
                done++;
            else
                rm_fail(c, -errno, name);
            continue;
        }
        fchmodat(dirfd, name, 0700, 0); /* an instance may have locked itself out */
        int sub = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            rm_fail(c, -errno, name);
            continue;
        }
        rm_contents(c, sub, depth + 1);
        if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0)
            done++;
        else if (errno != ENOTEMPTY)
            rm_fail(c, -errno, name);
    }
    closedir(d);
    return done;
}

int security_tmpdir_remove(const char *dir, struct thaw_err *err)
{
    if (!dir || !*dir) return thaw_errf(err, THAW_EINVAL, "tmpdir: no directory given");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) return 0;
    if (fd < 0) return thaw_errf(err, -errno, "tmpdir: %s: %s", dir, strerror(errno));
    struct stat st;
    fstat(fd, &st);
    struct rm_ctx c = {.rootfd = fd, .dev = st.st_dev};
    /* Hoisted subtrees land at the top, so repeat until a pass finds
     * nothing left to do. */
    for (;;) {
        int pass = dup(fd);
        if (pass < 0) {
            rm_fail(&c, -errno, dir);
            break;
        }
        lseek(pass, 0, SEEK_SET);
        if (rm_contents(&c, pass, 0) == 0 || c.rc) break;
    }
    close(fd);
    if (c.rc)
        return thaw_errf(err, c.rc, "tmpdir: cannot remove %s (at %s): %s", dir, c.where,
                         thaw_strerror(c.rc));
    if (rmdir(dir) != 0 && errno != ENOENT)
        return thaw_errf(err, -errno, "tmpdir: rmdir %s: %s", dir, strerror(errno));
    return 0;
}
