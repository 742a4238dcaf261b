/* The node's secrets, which never live in the data dir: the key-encryption
 * key (from --kek-file, THAW_KEK, or a file generated once under the user's
 * config dir) and the bootstrap admin key (--admin-key-file or
 * THAW_ADMIN_KEY). */
#include "node/node_int.h"
#include "obs/obs.h"
#include "security/security.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads a small secret file, trimmed of surrounding white space. */
static int read_secret(const char *path, char *out, size_t n, struct thaw_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return thaw_errf(err, -errno, "cannot read %s: %s", path, strerror(errno));
    ssize_t len = read(fd, out, n - 1);
    close(fd);
    if (len < 0) return thaw_errf(err, -errno, "cannot read %s: %s", path, strerror(errno));
    out[len] = 0;
    while (len > 0 && (out[len - 1] == '\n' || out[len - 1] == '\r' || out[len - 1] == ' '))
        out[--len] = 0;
    size_t skip = strspn(out, " \t\r\n");
    memmove(out, out + skip, strlen(out + skip) + 1);
    return 0;
}

static int mkdir_p(const char *path)
{
    char tmp[1024];
    str_copy(tmp, path, sizeof(tmp));
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0700) && errno != EEXIST) return -errno;
        *p = '/';
    }
    return mkdir(tmp, 0700) && errno != EEXIST ? -errno : 0;
}

/* A KEK for a first run on a developer's machine: generated once, kept
 * outside the data dir, mode 0600. Production sets --kek-file or THAW_KEK. */
static int default_kek(char *text, size_t n, struct thaw_err *err)
{
    const char *home = getenv("HOME");
    char dir[900], path[1000];
    const char *xdg = getenv("XDG_CONFIG_HOME");
    snprintf(dir, sizeof(dir), "%s/thaw", xdg && *xdg ? xdg : home ? home : "/tmp");
    if (!xdg || !*xdg) snprintf(dir, sizeof(dir), "%s/.config/thaw", home ? home : "/tmp");
    snprintf(path, sizeof(path), "%s/kek", dir);
    if (access(path, R_OK) == 0) return read_secret(path, text, n, err);
    unsigned char raw[32];
    char hex[65];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2hex(hex, sizeof(hex), raw, sizeof(raw));
    sodium_memzero(raw, sizeof(raw));
    int fd = -1;
    if (mkdir_p(dir) || (fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0)
        return thaw_errf(
            err, -errno,
            "cannot create a key-encryption key at %s: %s (set --kek-file or THAW_KEK)", path,
            strerror(errno));
    bool ok = write(fd, hex, 64) == 64 && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    if (!ok) return thaw_errf(err, THAW_EIO, "cannot write %s", path);
    OBS_LOG(LOG_WARN, "kek_generated", LOG_S("path", path),
            LOG_S("advice", "back this file up: data sealed under it is unreadable without it"));
    str_copy(text, hex, n);
    sodium_memzero(hex, sizeof(hex));
    return 0;
}

int node_load_kek(const struct node_config *cfg, unsigned char out[32], struct thaw_err *err)
{
    char text[256] = "";
    int rc;
    const char *env = getenv("THAW_KEK");
    if (cfg->kek_file[0])
        rc = read_secret(cfg->kek_file, text, sizeof(text), err);
    else if (env && *env)
        rc = (str_copy(text, env, sizeof(text)), 0);
    else
        rc = default_kek(text, sizeof(text), err);
    if (!rc) rc = security_secret32_parse(text, strlen(text), out, err);
    sodium_memzero(text, sizeof(text));
    return rc;
}

int node_load_admin_key(const struct node_config *cfg, char *out, size_t n, struct thaw_err *err)
{
    out[0] = 0;
    const char *env = getenv("THAW_ADMIN_KEY");
    if (cfg->admin_key_file[0]) return read_secret(cfg->admin_key_file, out, n, err);
    if (env && *env) str_copy(out, env, n);
    return 0;
}
