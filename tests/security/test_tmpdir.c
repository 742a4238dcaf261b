/* Tests for instance scratch directories in src/security: creation, and
 * removal that survives what a hostile instance leaves behind. */
#include "security/security.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static void touch(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0) close(fd);
}

static void test_create_remove(void)
{
    char dir[256], p[512];
    struct thaw_err err = {0};
    ASSERT_EQ(security_tmpdir_create("/tmp", "thaw-inst", dir, sizeof(dir), &err), 0);
    struct stat st;
    ASSERT_EQ(stat(dir, &st), 0);
    ASSERT(S_ISDIR(st.st_mode));
    ASSERT_EQ(st.st_mode & 0777, 0700);
    snprintf(p, sizeof(p), "%s/a", dir);
    ASSERT_EQ(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/a/file", dir);
    touch(p);
    ASSERT_EQ(security_tmpdir_remove(dir, &err), 0);
    ASSERT_EQ(access(dir, F_OK), -1);
    /* Removing what is gone is fine. */
    ASSERT_EQ(security_tmpdir_remove(dir, &err), 0);
    char small[8];
    ASSERT_EQ(security_tmpdir_create("/tmp", "thaw-inst", small, sizeof(small), &err), THAW_ERANGE);
    ASSERT_EQ(security_tmpdir_create("/tmp", "a/b", dir, sizeof(dir), &err), THAW_EINVAL);
    ASSERT_EQ(security_tmpdir_create("/nonexistent-thaw", "x", dir, sizeof(dir), &err), -ENOENT);
}

static void test_hostile_leftovers(void)
{
    char dir[256], p[512], victim_dir[] = "/tmp/thaw-victim-XXXXXX", victim[300];
    struct thaw_err err = {0};
    ASSERT(mkdtemp(victim_dir) != NULL);
    snprintf(victim, sizeof(victim), "%s/keep", victim_dir);
    touch(victim);
    ASSERT_EQ(security_tmpdir_create("/tmp", "thaw-inst", dir, sizeof(dir), &err), 0);
    /* Symlinks to a file and a directory outside. */
    snprintf(p, sizeof(p), "%s/link-file", dir);
    ASSERT_EQ(symlink(victim, p), 0);
    snprintf(p, sizeof(p), "%s/link-dir", dir);
    ASSERT_EQ(symlink(victim_dir, p), 0);
    /* A directory it locked itself out of. */
    snprintf(p, sizeof(p), "%s/locked", dir);
    ASSERT_EQ(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/locked/x", dir);
    touch(p);
    snprintf(p, sizeof(p), "%s/locked", dir);
    ASSERT_EQ(chmod(p, 0), 0);
    /* A tree far deeper than the descriptor budget. */
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    ASSERT(fd >= 0);
    for (int i = 0; i < 300; i++) {
        ASSERT_EQ(mkdirat(fd, "d", 0700), 0);
        int sub = openat(fd, "d", O_RDONLY | O_DIRECTORY);
        ASSERT(sub >= 0);
        close(fd);
        fd = sub;
    }
    int f = openat(fd, "deepfile", O_CREAT | O_WRONLY, 0600);
    ASSERT(f >= 0);
    close(f);
    close(fd);
    ASSERT_EQ(security_tmpdir_remove(dir, &err), 0);
    ASSERT_EQ(access(dir, F_OK), -1);
    /* The symlink targets are untouched. */
    ASSERT_EQ(access(victim, F_OK), 0);
    unlink(victim);
    rmdir(victim_dir);
    /* A symlink given as the directory itself is refused, not followed. */
    char link[] = "/tmp/thaw-link-XXXXXX";
    int lf = mkstemp(link);
    close(lf);
    unlink(link);
    ASSERT_EQ(symlink("/tmp", link), 0);
    ASSERT(security_tmpdir_remove(link, &err) != 0);
    ASSERT_EQ(access("/tmp", F_OK), 0);
    unlink(link);
}

int main(void)
{
    RUN(test_create_remove);
    RUN(test_hostile_leftovers);
    return TEST_REPORT();
}
