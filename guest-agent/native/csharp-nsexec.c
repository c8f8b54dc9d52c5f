/*
 * csharp-nsexec: the guest agent's container-creation helper.
 *
 * The C# agent decides everything (namespaces, mounts, user, capabilities, ...) and sends this helper a
 * versioned, length-prefixed instruction stream; the helper only carries it out, because unshare(CLONE_NEWNS)
 * and setns(CLONE_NEWNS) are refused to a multi-threaded process such as the .NET runtime.
 *
 * File descriptors on entry:
 *   0, 1, 2  the container process's stdio (pipes, a pty slave, or /dev/null)
 *   3        instruction stream (read until OP_END)
 *   4        sync pipe, helper -> agent: text lines "pid <n>", "ready", "error <message>"
 *   5        start pipe, agent -> helper: one byte lets the process exec; EOF makes it exit quietly
 *
 * Instruction stream (all integers little-endian):
 *   header  "CSNX" u32 version (= 1)
 *   record  u16 op, u16 reserved (0), u32 length, payload[length]      ... until OP_END
 *   str     u32 length, bytes (no NUL)
 *
 * Flow: the helper (A) joins/creates namespaces and forks; A reports the child's pid and exits, so the child
 * (B, PID 1 of a new PID namespace) is reparented to the agent, which is a subreaper. B sets up the rootfs,
 * pivots into it, drops privileges, reports "ready", blocks on the start pipe, and execs. The sync pipe is
 * close-on-exec: the agent reads EOF after a successful exec, or "error ..." when exec failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#define FD_INSTR 3
#define FD_SYNC 4
#define FD_START 5

#define STREAM_MAGIC "CSNX"
#define STREAM_VERSION 1u

enum op {
    OP_END = 0,
    OP_MODE = 1,             /* u32: 1 create, 2 exec */
    OP_UNSHARE = 2,          /* u32 clone flags */
    OP_SETNS = 3,            /* u32 nstype, path (rest of payload) */
    OP_ROOTFS = 4,           /* path */
    OP_ROOT_PROPAGATION = 5, /* u32 mount flags applied to "/" before anything else */
    OP_MOUNT = 6,            /* u64 flags, u32 propagation, u32 kind, str source, str target, str fstype, str data */
    OP_SYMLINK = 7,          /* str target, str linkpath (in the container) */
    OP_MASK = 8,             /* path */
    OP_READONLY = 9,         /* path */
    OP_ROOT_READONLY = 10,   /* - */
    OP_HOSTNAME = 11,        /* name */
    OP_DOMAINNAME = 12,      /* name */
    OP_RLIMIT = 13,          /* u32 resource, u64 soft, u64 hard */
    OP_USER = 14,            /* u32 uid, u32 gid, u32 n, u32 gids[n] */
    OP_CAPS = 15,            /* u64 bounding, effective, permitted, inheritable, ambient */
    OP_NO_NEW_PRIVS = 16,    /* - */
    OP_CWD = 17,             /* path */
    OP_ARG = 18,             /* string (repeated) */
    OP_ENV = 19,             /* string (repeated) */
    OP_TERMINAL = 20,        /* - : setsid + TIOCSCTTY on fd 0 */
    OP_SETSID = 21,          /* - */
    OP_MKDIR = 22,           /* u32 mode, path (in the container, created before pivot) */
    OP_SYSCTL = 23,          /* str key, str value */
    OP_OOM_SCORE_ADJ = 24,   /* i32 (best effort) */
    OP_UMASK = 25,           /* u32 */
    OP_NO_PIVOT = 26,        /* - : MS_MOVE + chroot instead of pivot_root */
    OP_SECCOMP = 27,         /* u32 SECCOMP_FILTER_FLAG_*, struct sock_filter[] (8 bytes each) */
};

enum mount_kind { KIND_AUTO = 0, KIND_DIR = 1, KIND_FILE = 2 };

#define MODE_CREATE 1
#define MODE_EXEC 2

#define MAX_LIST 1024
#define MAX_MOUNTS 256
#define MAX_NS 8
#define MAX_RLIMITS 32
#define MAX_GROUPS 256

struct mount_op {
    unsigned long flags;
    unsigned long propagation;
    uint32_t kind;
    char *source, *target, *fstype, *data;
    int tree_fd; /* a detached clone of the source taken before the rootfs was set up, or -1 */
};

struct symlink_op {
    char *target, *linkpath;
};

struct sysctl_op {
    char *key, *value;
};

struct rlimit_op {
    uint32_t resource;
    struct rlimit limit;
};

struct mkdir_op {
    uint32_t mode;
    char *path;
};

struct setns_op {
    uint32_t nstype;
    char *path;
    int fd;
};

/* Every instruction, as read. */
static struct {
    uint32_t mode;
    uint32_t unshare_flags;
    struct setns_op setns[MAX_NS];
    int n_setns;
    char *rootfs;
    unsigned long root_propagation;
    struct mount_op mounts[MAX_MOUNTS];
    int n_mounts;
    struct symlink_op symlinks[MAX_LIST];
    int n_symlinks;
    char *masks[MAX_LIST];
    int n_masks;
    char *readonly[MAX_LIST];
    int n_readonly;
    int root_readonly;
    char *hostname, *domainname;
    struct rlimit_op rlimits[MAX_RLIMITS];
    int n_rlimits;
    int have_user;
    uint32_t uid, gid;
    gid_t groups[MAX_GROUPS];
    int n_groups;
    int have_caps;
    uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
    int no_new_privs;
    char *cwd;
    char *argv[MAX_LIST + 1];
    int argc;
    char *envp[MAX_LIST + 1];
    int envc;
    int terminal, setsid;
    struct mkdir_op mkdirs[MAX_LIST];
    int n_mkdirs;
    struct sysctl_op sysctls[MAX_LIST];
    int n_sysctls;
    int have_oom;
    int32_t oom_score_adj;
    int have_umask;
    uint32_t umask_value;
    int no_pivot;
    int have_seccomp;
    uint32_t seccomp_flags;
    struct sock_fprog seccomp;
} in;

/* ---- reporting ---------------------------------------------------------------------------------------- */

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

static void report(const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    for (int i = 0; i < n; i++)
        if (buf[i] == '\n')
            buf[i] = ' ';
    buf[n++] = '\n';
    write_all(FD_SYNC, buf, (size_t)n);
}

/* Reports "error <message>" and exits; message in printf form, no trailing newline. */
__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    char msg[3800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    report("error %s", msg);
    _exit(1);
}

#define FAIL_ERRNO(fmt, ...) fail(fmt ": %s", ##__VA_ARGS__, strerror(errno))

/* ---- instruction stream ------------------------------------------------------------------------------- */

static void read_exact(void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(FD_INSTR, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            FAIL_ERRNO("read instructions");
        }
        if (n == 0)
            fail("instruction stream ended early");
        p += n;
        len -= (size_t)n;
    }
}

struct cursor {
    const unsigned char *p;
    size_t left;
    uint16_t op;
};

static void need(struct cursor *c, size_t n)
{
    if (c->left < n)
        fail("instruction %u: payload too short", c->op);
}

static uint32_t get_u32(struct cursor *c)
{
    need(c, 4);
    uint32_t v = (uint32_t)c->p[0] | (uint32_t)c->p[1] << 8 | (uint32_t)c->p[2] << 16 | (uint32_t)c->p[3] << 24;
    c->p += 4;
    c->left -= 4;
    return v;
}

static uint64_t get_u64(struct cursor *c)
{
    uint64_t lo = get_u32(c);
    uint64_t hi = get_u32(c);
    return lo | hi << 32;
}

static char *dup_bytes(struct cursor *c, size_t n)
{
    need(c, n);
    if (memchr(c->p, 0, n) != NULL)
        fail("instruction %u: string contains NUL", c->op);
    char *s = malloc(n + 1);
    if (s == NULL)
        fail("out of memory");
    memcpy(s, c->p, n);
    s[n] = 0;
    c->p += n;
    c->left -= n;
    return s;
}

static char *get_str(struct cursor *c)
{
    uint32_t n = get_u32(c);
    return dup_bytes(c, n);
}

static char *get_rest(struct cursor *c)
{
    return dup_bytes(c, c->left);
}

#define PUSH(arr, count, max, what)                                                                             \
    do {                                                                                                        \
        if ((count) >= (max))                                                                                   \
            fail("too many %s instructions", what);                                                             \
    } while (0)

static void read_instructions(void)
{
    unsigned char header[8];
    read_exact(header, sizeof(header));
    if (memcmp(header, STREAM_MAGIC, 4) != 0)
        fail("not an instruction stream (bad magic)");
    uint32_t version = (uint32_t)header[4] | (uint32_t)header[5] << 8 | (uint32_t)header[6] << 16 |
                       (uint32_t)header[7] << 24;
    if (version != STREAM_VERSION)
        fail("unsupported instruction stream version %u (helper speaks %u)", version, STREAM_VERSION);

    in.root_propagation = MS_SLAVE | MS_REC;
    for (;;) {
        unsigned char rec[8];
        read_exact(rec, sizeof(rec));
        uint16_t op = (uint16_t)(rec[0] | rec[1] << 8);
        uint32_t len = (uint32_t)rec[4] | (uint32_t)rec[5] << 8 | (uint32_t)rec[6] << 16 | (uint32_t)rec[7] << 24;
        if (len > (16u << 20))
            fail("instruction %u: payload of %u bytes is too large", op, len);
        unsigned char *payload = malloc(len ? len : 1);
        if (payload == NULL)
            fail("out of memory");
        read_exact(payload, len);
        struct cursor c = { payload, len, op };
        switch (op) {
        case OP_END:
            free(payload);
            return;
        case OP_MODE:
            in.mode = get_u32(&c);
            break;
        case OP_UNSHARE:
            in.unshare_flags = get_u32(&c);
            break;
        case OP_SETNS:
            PUSH(in.setns, in.n_setns, MAX_NS, "setns");
            in.setns[in.n_setns].nstype = get_u32(&c);
            in.setns[in.n_setns].path = get_rest(&c);
            in.setns[in.n_setns].fd = -1;
            in.n_setns++;
            break;
        case OP_ROOTFS:
            in.rootfs = get_rest(&c);
            break;
        case OP_ROOT_PROPAGATION:
            in.root_propagation = get_u32(&c);
            break;
        case OP_MOUNT: {
            PUSH(in.mounts, in.n_mounts, MAX_MOUNTS, "mount");
            struct mount_op *m = &in.mounts[in.n_mounts++];
            m->flags = (unsigned long)get_u64(&c);
            m->propagation = get_u32(&c);
            m->kind = get_u32(&c);
            m->source = get_str(&c);
            m->target = get_str(&c);
            m->fstype = get_str(&c);
            m->data = get_str(&c);
            m->tree_fd = -1;
            break;
        }
        case OP_SYMLINK:
            PUSH(in.symlinks, in.n_symlinks, MAX_LIST, "symlink");
            in.symlinks[in.n_symlinks].target = get_str(&c);
            in.symlinks[in.n_symlinks].linkpath = get_str(&c);
            in.n_symlinks++;
            break;
        case OP_MASK:
            PUSH(in.masks, in.n_masks, MAX_LIST, "mask");
            in.masks[in.n_masks++] = get_rest(&c);
            break;
        case OP_READONLY:
            PUSH(in.readonly, in.n_readonly, MAX_LIST, "readonly");
            in.readonly[in.n_readonly++] = get_rest(&c);
            break;
        case OP_ROOT_READONLY:
            in.root_readonly = 1;
            break;
        case OP_HOSTNAME:
            in.hostname = get_rest(&c);
            break;
        case OP_DOMAINNAME:
            in.domainname = get_rest(&c);
            break;
        case OP_RLIMIT:
            PUSH(in.rlimits, in.n_rlimits, MAX_RLIMITS, "rlimit");
            in.rlimits[in.n_rlimits].resource = get_u32(&c);
            in.rlimits[in.n_rlimits].limit.rlim_cur = get_u64(&c);
            in.rlimits[in.n_rlimits].limit.rlim_max = get_u64(&c);
            in.n_rlimits++;
            break;
        case OP_USER: {
            in.have_user = 1;
            in.uid = get_u32(&c);
            in.gid = get_u32(&c);
            uint32_t n = get_u32(&c);
            if (n > MAX_GROUPS)
                fail("too many additional groups (%u)", n);
            for (uint32_t i = 0; i < n; i++)
                in.groups[i] = get_u32(&c);
            in.n_groups = (int)n;
            break;
        }
        case OP_CAPS:
            in.have_caps = 1;
            in.cap_bounding = get_u64(&c);
            in.cap_effective = get_u64(&c);
            in.cap_permitted = get_u64(&c);
            in.cap_inheritable = get_u64(&c);
            in.cap_ambient = get_u64(&c);
            break;
        case OP_NO_NEW_PRIVS:
            in.no_new_privs = 1;
            break;
        case OP_CWD:
            in.cwd = get_rest(&c);
            break;
        case OP_ARG:
            PUSH(in.argv, in.argc, MAX_LIST, "arg");
            in.argv[in.argc++] = get_rest(&c);
            break;
        case OP_ENV:
            PUSH(in.envp, in.envc, MAX_LIST, "env");
            in.envp[in.envc++] = get_rest(&c);
            break;
        case OP_TERMINAL:
            in.terminal = 1;
            break;
        case OP_SETSID:
            in.setsid = 1;
            break;
        case OP_MKDIR:
            PUSH(in.mkdirs, in.n_mkdirs, MAX_LIST, "mkdir");
            in.mkdirs[in.n_mkdirs].mode = get_u32(&c);
            in.mkdirs[in.n_mkdirs].path = get_rest(&c);
            in.n_mkdirs++;
            break;
        case OP_SYSCTL:
            PUSH(in.sysctls, in.n_sysctls, MAX_LIST, "sysctl");
            in.sysctls[in.n_sysctls].key = get_str(&c);
            in.sysctls[in.n_sysctls].value = get_str(&c);
            in.n_sysctls++;
            break;
        case OP_OOM_SCORE_ADJ:
            in.have_oom = 1;
            in.oom_score_adj = (int32_t)get_u32(&c);
            break;
        case OP_UMASK:
            in.have_umask = 1;
            in.umask_value = get_u32(&c);
            break;
        case OP_NO_PIVOT:
            in.no_pivot = 1;
            break;
        case OP_SECCOMP: {
            in.have_seccomp = 1;
            in.seccomp_flags = get_u32(&c);
            if (c.left == 0 || c.left % sizeof(struct sock_filter) != 0 || c.left / sizeof(struct sock_filter) > BPF_MAXINSNS)
                fail("instruction %u: a seccomp filter of %zu bytes is not 1-%d instructions", op, c.left, BPF_MAXINSNS);
            size_t n = c.left / sizeof(struct sock_filter);
            struct sock_filter *filter = malloc(c.left);
            if (filter == NULL)
                fail("out of memory");
            for (size_t i = 0; i < n; i++) {
                const unsigned char *b = c.p + i * 8;
                filter[i].code = (uint16_t)(b[0] | b[1] << 8);
                filter[i].jt = b[2];
                filter[i].jf = b[3];
                filter[i].k = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 | (uint32_t)b[7] << 24;
            }
            in.seccomp.len = (unsigned short)n;
            in.seccomp.filter = filter;
            c.p += c.left;
            c.left = 0;
            break;
        }
        default:
            fail("unknown instruction %u (agent and helper versions differ?)", op);
        }
        if (c.left != 0)
            fail("instruction %u: %zu trailing payload bytes", op, c.left);
        free(payload);
    }
}

/* ---- paths -------------------------------------------------------------------------------------------- */

/*
 * Resolves `unsafe` inside `root` as if root were "/", following symlinks without ever leaving root
 * (like filepath-securejoin). Components that do not exist are appended as they are.
 * Writes root + resolved path to out.
 */
static void secure_join(const char *root, const char *unsafe, char *out, size_t outlen)
{
    char resolved[PATH_MAX] = "";   /* always "" or "/a/b" */
    char rest[PATH_MAX];
    char full[PATH_MAX];
    int links = 0;

    if (strlen(unsafe) >= sizeof(rest))
        fail("path too long: %s", unsafe);
    strcpy(rest, unsafe);

    char *p = rest;
    while (*p) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        char *end = strchr(p, '/');
        size_t clen = end ? (size_t)(end - p) : strlen(p);
        char comp[NAME_MAX + 1];
        if (clen > NAME_MAX)
            fail("path component too long in %s", unsafe);
        memcpy(comp, p, clen);
        comp[clen] = 0;
        p += clen;

        if (strcmp(comp, ".") == 0)
            continue;
        if (strcmp(comp, "..") == 0) {
            char *slash = strrchr(resolved, '/');
            if (slash)
                *slash = 0;
            continue;
        }
        size_t rlen = strlen(resolved);
        if (rlen + 1 + clen >= sizeof(resolved))
            fail("path too long: %s", unsafe);
        char candidate[PATH_MAX];
        if ((size_t)snprintf(candidate, sizeof(candidate), "%s/%s", resolved, comp) >= sizeof(candidate))
            fail("path too long: %s", unsafe);
        if ((size_t)snprintf(full, sizeof(full), "%s%s", root, candidate) >= sizeof(full))
            fail("path too long: %s", unsafe);

        struct stat st;
        if (lstat(full, &st) == 0 && S_ISLNK(st.st_mode)) {
            if (++links > 255)
                fail("too many levels of symbolic links in %s", unsafe);
            char target[PATH_MAX];
            ssize_t n = readlink(full, target, sizeof(target) - 1);
            if (n < 0)
                FAIL_ERRNO("readlink %s", full);
            target[n] = 0;
            char next[PATH_MAX];
            if ((size_t)snprintf(next, sizeof(next), "%s/%s", target, p) >= sizeof(next))
                fail("path too long: %s", unsafe);
            strcpy(rest, next);
            p = rest;
            if (target[0] == '/')
                resolved[0] = 0;
            continue;
        }
        strcpy(resolved, candidate);
    }
    if ((size_t)snprintf(out, outlen, "%s%s", root, resolved[0] ? resolved : "/") >= outlen)
        fail("path too long: %s", unsafe);
}

static void mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof(buf))
        fail("path too long: %s", path);
    strcpy(buf, path);
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(buf, 0755) < 0 && errno != EEXIST)
            FAIL_ERRNO("mkdir %s", buf);
        *s = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        FAIL_ERRNO("mkdir %s", buf);
}

static void ensure_file(const char *path)
{
    char parent[PATH_MAX];
    strcpy(parent, path);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        mkdir_p(parent, 0755);
    }
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        struct stat st;
        if (errno == EISDIR || (stat(path, &st) == 0))
            return;
        FAIL_ERRNO("create %s", path);
    }
    close(fd);
}

/* ---- rootfs ------------------------------------------------------------------------------------------- */

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

/*
 * A bind mount with shared or slave propagation must stay a peer (or slave) of its source, the guest's shared
 * mount of the pod's share, so that mounts made under it reach the pod's other containers. Setting up the rootfs
 * makes the share private in this namespace (see make_parent_mount_private), which would cut that link for binds
 * made afterwards: so those sources are cloned (open_tree) first, and attached with move_mount in do_mount.
 */
static void clone_propagating_binds(void)
{
    for (int i = 0; i < in.n_mounts; i++) {
        struct mount_op *m = &in.mounts[i];
        if (!(m->flags & MS_BIND) || !(m->propagation & (MS_SHARED | MS_SLAVE)))
            continue;
        unsigned int flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | ((m->flags & MS_REC) ? AT_RECURSIVE : 0);
        m->tree_fd = (int)syscall(SYS_open_tree, AT_FDCWD, m->source, flags);
        if (m->tree_fd < 0)
            FAIL_ERRNO("clone mount %s", m->source);
    }
}

static void do_mount(const struct mount_op *m)
{
    char target[PATH_MAX];
    secure_join(in.rootfs, m->target, target, sizeof(target));

    uint32_t kind = m->kind;
    if (kind == KIND_AUTO) {
        struct stat st;
        kind = KIND_DIR;
        if ((m->flags & MS_BIND) && stat(m->source, &st) == 0 && !S_ISDIR(st.st_mode))
            kind = KIND_FILE;
    }
    if (kind == KIND_FILE)
        ensure_file(target);
    else
        mkdir_p(target, 0755);

    const char *source = m->source[0] ? m->source : NULL;
    const char *fstype = m->fstype[0] ? m->fstype : NULL;
    const char *data = m->data[0] ? m->data : NULL;
    if (m->tree_fd >= 0) {
        if (syscall(SYS_move_mount, m->tree_fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
            FAIL_ERRNO("attach the clone of %s on %s", m->source, m->target);
        close(m->tree_fd);
    } else if (mount(source ? source : "none", target, fstype, m->flags & ~(unsigned long)MS_REMOUNT, data) < 0) {
        FAIL_ERRNO("mount %s (%s) on %s", m->source, m->fstype[0] ? m->fstype : "bind", m->target);
    }

    /* A bind mount ignores most flags: apply them with a remount. */
    unsigned long extra = m->flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT | MS_SILENT);
    if ((m->flags & MS_BIND) && extra != 0) {
        if (mount(NULL, target, NULL, m->flags | MS_BIND | MS_REMOUNT, NULL) < 0)
            FAIL_ERRNO("remount %s", m->target);
    }
    if (m->propagation != 0) {
        if (mount(NULL, target, NULL, m->propagation, NULL) < 0)
            FAIL_ERRNO("set propagation of %s", m->target);
    }
}

static void do_symlink(const struct symlink_op *s)
{
    char linkpath[PATH_MAX];
    secure_join(in.rootfs, s->linkpath, linkpath, sizeof(linkpath));
    char parent[PATH_MAX];
    strcpy(parent, linkpath);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        mkdir_p(parent, 0755);
    }
    if (symlink(s->target, linkpath) < 0 && errno != EEXIST)
        FAIL_ERRNO("symlink %s -> %s", s->linkpath, s->target);
}

static void do_mask(const char *path)
{
    char target[PATH_MAX];
    secure_join(in.rootfs, path, target, sizeof(target));
    struct stat st;
    if (stat(target, &st) < 0) {
        if (errno == ENOENT)
            return;
        FAIL_ERRNO("stat masked path %s", path);
    }
    if (S_ISDIR(st.st_mode)) {
        if (mount("tmpfs", target, "tmpfs", MS_RDONLY, NULL) < 0)
            FAIL_ERRNO("mask %s", path);
    } else if (mount("/dev/null", target, NULL, MS_BIND, NULL) < 0) {
        FAIL_ERRNO("mask %s", path);
    }
}

static void do_readonly(const char *path)
{
    char target[PATH_MAX];
    secure_join(in.rootfs, path, target, sizeof(target));
    if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0) {
        if (errno == ENOENT)
            return;
        FAIL_ERRNO("bind %s read-only", path);
    }
    if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL) < 0) {
        /* Keep flags a locked mount carries (nosuid, nodev, noexec). */
        if (mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
            FAIL_ERRNO("remount %s read-only", path);
    }
}

static void do_sysctl(const struct sysctl_op *s)
{
    char path[PATH_MAX] = "/proc/sys/";
    size_t n = strlen(path);
    for (const char *k = s->key; *k && n < sizeof(path) - 1; k++)
        path[n++] = *k == '.' ? '/' : *k;
    path[n] = 0;
    if (strstr(s->key, "..") != NULL)
        fail("invalid sysctl %s", s->key);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        FAIL_ERRNO("sysctl %s", s->key);
    if (write(fd, s->value, strlen(s->value)) < 0)
        FAIL_ERRNO("sysctl %s=%s", s->key, s->value);
    close(fd);
}

/* Undoes mountinfo's octal escapes (\040 for a space, ...) in place. */
static void unescape_mountinfo(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
            *w++ = (char)((r[1] - '0') << 6 | (r[2] - '0') << 3 | (r[3] - '0'));
            r += 3;
        } else {
            *w++ = *r;
        }
    }
    *w = 0;
}

static int path_within(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    if (strcmp(dir, "/") == 0)
        return 1;
    return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

/*
 * The mount that holds `path` (the longest mount point containing it) is made private when it is shared, as runc
 * does: pivot_root refuses a new root whose parent mount is shared, and the bind of the rootfs onto itself must
 * not propagate out of the container's mount namespace.
 */
static void make_parent_mount_private(const char *path)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        FAIL_ERRNO("open /proc/self/mountinfo");
    char line[8192], best[PATH_MAX] = "/";
    int best_shared = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        /* id parent major:minor root mountpoint options optional... - fstype source superoptions */
        char *fields[6] = { 0 };
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        for (int i = 0; tok != NULL && i < 6; i++) {
            fields[i] = tok;
            tok = i < 5 ? strtok_r(NULL, " ", &save) : NULL;
        }
        if (fields[4] == NULL || fields[5] == NULL)
            continue;
        char *optional = save; /* the rest of the line, starting with the optional fields */
        unescape_mountinfo(fields[4]);
        /* Later lines are mounted later: on an equal mount point, the last one is on top. */
        if (!path_within(path, fields[4]) || strlen(fields[4]) < strlen(best) || strlen(fields[4]) >= sizeof(best))
            continue;
        strcpy(best, fields[4]);
        char *dash = optional ? strstr(optional, " - ") : NULL;
        if (optional && strncmp(optional, "- ", 2) == 0)
            dash = optional;
        if (dash)
            *dash = 0;
        best_shared = optional != NULL && strstr(optional, "shared:") != NULL;
    }
    fclose(f);
    if (best_shared && mount(NULL, best, NULL, MS_PRIVATE, NULL) < 0)
        FAIL_ERRNO("make %s (the mount holding the rootfs) private", best);
}

/* Whether "/" is the kernel's initramfs (rootfs: ramfs or tmpfs with no mount below it), which pivot_root cannot
 * leave. */
static int statfs_is_initramfs_root(void)
{
    struct statfs st;
    if (statfs("/", &st) < 0)
        return 0;
    if (st.f_type != 0x858458f6 /* RAMFS_MAGIC */ && st.f_type != 0x01021994 /* TMPFS_MAGIC */)
        return 0;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (f == NULL)
        return 1;
    char line[8192];
    int initramfs = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        /* The initramfs root mount is its own parent's child only as the namespace's first mount: " / / " with
         * source "rootfs". */
        if (strstr(line, " / / ") != NULL && strstr(line, " - rootfs rootfs ") != NULL)
            initramfs = 1;
    }
    fclose(f);
    return initramfs;
}

static void move_and_chroot(void)
{
    if (chdir(in.rootfs) < 0)
        FAIL_ERRNO("chdir rootfs %s", in.rootfs);
    if (mount(in.rootfs, "/", NULL, MS_MOVE, NULL) < 0)
        FAIL_ERRNO("move rootfs %s to /", in.rootfs);
    if (chroot(".") < 0)
        FAIL_ERRNO("chroot");
    if (chdir("/") < 0)
        FAIL_ERRNO("chdir /");
}

static void enter_rootfs(void)
{
    if (in.no_pivot) {
        move_and_chroot();
        return;
    }

    int oldroot = open("/", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (oldroot < 0)
        FAIL_ERRNO("open /");
    int newroot = open(in.rootfs, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (newroot < 0)
        FAIL_ERRNO("open rootfs %s", in.rootfs);
    if (fchdir(newroot) < 0)
        FAIL_ERRNO("chdir rootfs");
    if (syscall(SYS_pivot_root, ".", ".") < 0) {
        /* The guest's /init leaves the initramfs for a tmpfs at boot; an image that did not (an old or a stand-in
         * /init) still runs containers, chrooted. */
        if (errno == EINVAL && statfs_is_initramfs_root()) {
            close(oldroot);
            close(newroot);
            move_and_chroot();
            return;
        }
        FAIL_ERRNO("pivot_root %s", in.rootfs);
    }
    /* The old root is now stacked under the new one at ".": detach it, without the unmount reaching the guest. */
    if (fchdir(oldroot) < 0)
        FAIL_ERRNO("chdir old root");
    if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
        FAIL_ERRNO("make old root rslave");
    if (umount2(".", MNT_DETACH) < 0)
        FAIL_ERRNO("unmount old root");
    if (chdir("/") < 0)
        FAIL_ERRNO("chdir /");
    close(oldroot);
    close(newroot);
}

static void setup_rootfs(void)
{
    if (in.rootfs == NULL)
        fail("no rootfs given");
    if (mount(NULL, "/", NULL, in.root_propagation, NULL) < 0)
        FAIL_ERRNO("set propagation of /");
    clone_propagating_binds();
    if (!in.no_pivot)
        make_parent_mount_private(in.rootfs);
    if (mount(in.rootfs, in.rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        FAIL_ERRNO("bind rootfs %s", in.rootfs);
    /* pivot_root also refuses a shared new root; rootfsPropagation is applied to it once it is "/". */
    if (mount(NULL, in.rootfs, NULL, MS_PRIVATE, NULL) < 0)
        FAIL_ERRNO("make rootfs private");

    for (int i = 0; i < in.n_mounts; i++)
        do_mount(&in.mounts[i]);
    for (int i = 0; i < in.n_symlinks; i++)
        do_symlink(&in.symlinks[i]);
    for (int i = 0; i < in.n_mkdirs; i++) {
        char path[PATH_MAX];
        secure_join(in.rootfs, in.mkdirs[i].path, path, sizeof(path));
        mkdir_p(path, in.mkdirs[i].mode);
    }
    for (int i = 0; i < in.n_sysctls; i++)
        do_sysctl(&in.sysctls[i]);
    for (int i = 0; i < in.n_masks; i++)
        do_mask(in.masks[i]);
    for (int i = 0; i < in.n_readonly; i++)
        do_readonly(in.readonly[i]);

    enter_rootfs();

    /* As runc: rootfsPropagation applies to the container's own root, once it is "/" (rshared makes the rootfs
     * and every mount under it shared within the container's mount namespace). */
    if (mount(NULL, "/", NULL, in.root_propagation, NULL) < 0)
        FAIL_ERRNO("set propagation of the container's /");
    if (in.root_readonly && mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)
        FAIL_ERRNO("remount / read-only");
}

/* ---- process ------------------------------------------------------------------------------------------ */

static const char *env_value(const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < in.envc; i++)
        if (strncmp(in.envp[i], name, n) == 0 && in.envp[i][n] == '=')
            return in.envp[i] + n + 1;
    return NULL;
}

/* Finds argv[0] as execvp would, with the container's PATH; writes the path to exec into out. */
static void look_path(char *out, size_t outlen)
{
    const char *file = in.argv[0];
    struct stat st;
    if (strchr(file, '/') != NULL) {
        if (stat(file, &st) < 0)
            fail("exec: \"%s\": %s", file, strerror(errno));
        if (S_ISDIR(st.st_mode))
            fail("exec: \"%s\": is a directory", file);
        if (access(file, X_OK) < 0)
            fail("exec: \"%s\": %s", file, strerror(errno));
        snprintf(out, outlen, "%s", file);
        return;
    }
    const char *path = env_value("PATH");
    if (path == NULL)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    int denied = 0;
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char candidate[PATH_MAX];
        if (len == 0)
            snprintf(candidate, sizeof(candidate), "./%s", file);
        else
            snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)len, p, file);
        if (stat(candidate, &st) == 0 && !S_ISDIR(st.st_mode)) {
            if (access(candidate, X_OK) == 0) {
                snprintf(out, outlen, "%s", candidate);
                return;
            }
            denied = 1;
        }
        if (!end)
            break;
        p = end + 1;
    }
    if (denied)
        fail("exec: \"%s\": permission denied", file);
    fail("exec: \"%s\": executable file not found in $PATH", file);
}

static void set_caps(void)
{
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    data[0].effective = (uint32_t)in.cap_effective;
    data[1].effective = (uint32_t)(in.cap_effective >> 32);
    data[0].permitted = (uint32_t)in.cap_permitted;
    data[1].permitted = (uint32_t)(in.cap_permitted >> 32);
    data[0].inheritable = (uint32_t)in.cap_inheritable;
    data[1].inheritable = (uint32_t)(in.cap_inheritable >> 32);
    if (syscall(SYS_capset, &header, data) < 0)
        FAIL_ERRNO("capset");
    for (int cap = 0; cap < 64; cap++) {
        if (!(in.cap_ambient & (1ull << cap)))
            continue;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0 && errno != EINVAL)
            FAIL_ERRNO("raise ambient capability %d", cap);
    }
}

static void drop_bounding(void)
{
    for (int cap = 0; cap < 64; cap++) {
        if (in.cap_bounding & (1ull << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL)
                break; /* past the kernel's last capability */
            FAIL_ERRNO("drop capability %d from the bounding set", cap);
        }
    }
}

static void become_user(void)
{
    if (in.have_caps && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        FAIL_ERRNO("keep capabilities");
    if (setgroups((size_t)in.n_groups, in.groups) < 0)
        FAIL_ERRNO("setgroups");
    if (setresgid(in.gid, in.gid, in.gid) < 0)
        FAIL_ERRNO("setgid %u", in.gid);
    if (setresuid(in.uid, in.uid, in.uid) < 0)
        FAIL_ERRNO("setuid %u", in.uid);
    if (in.have_caps && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        FAIL_ERRNO("clear keep capabilities");
}

/* Loading a filter without no_new_privs needs CAP_SYS_ADMIN: runc's order, before privileges drop, is kept. */
static int load_seccomp(void)
{
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, in.seccomp_flags, &in.seccomp);
}

static void reset_signals(void)
{
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int sig = 1; sig < NSIG; sig++)
        signal(sig, SIG_DFL);
}

static void die_on_signal(int sig)
{
    _exit(128 + sig);
}

/* The container process (B): everything after the fork. */
__attribute__((noreturn)) static void child(void)
{
    if (in.mode == MODE_CREATE)
        setup_rootfs();

    if (in.hostname && sethostname(in.hostname, strlen(in.hostname)) < 0)
        FAIL_ERRNO("sethostname %s", in.hostname);
    if (in.domainname && setdomainname(in.domainname, strlen(in.domainname)) < 0)
        FAIL_ERRNO("setdomainname %s", in.domainname);

    for (int i = 0; i < in.n_rlimits; i++)
        if (setrlimit((int)in.rlimits[i].resource, &in.rlimits[i].limit) < 0)
            FAIL_ERRNO("setrlimit %u", in.rlimits[i].resource);

    if (in.have_oom) {
        int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            char buf[16];
            int n = snprintf(buf, sizeof(buf), "%d", in.oom_score_adj);
            /* Best effort: lowering it needs CAP_SYS_RESOURCE. */
            ssize_t ignored = write(fd, buf, (size_t)n);
            (void)ignored;
            close(fd);
        }
    }

    if (in.terminal || in.setsid) {
        if (setsid() < 0)
            FAIL_ERRNO("setsid");
    }
    if (in.terminal && ioctl(0, TIOCSCTTY, 0) < 0)
        FAIL_ERRNO("set controlling terminal");

    if (in.cwd) {
        if (chdir(in.cwd) < 0)
            FAIL_ERRNO("chdir to cwd (\"%s\") set in config.json", in.cwd);
    }

    if (in.argc == 0)
        fail("no process args");
    in.argv[in.argc] = NULL;
    in.envp[in.envc] = NULL;
    char exe[PATH_MAX];
    look_path(exe, sizeof(exe));

    if (in.have_umask)
        umask((mode_t)in.umask_value);
    if (in.have_seccomp && !in.no_new_privs && load_seccomp() < 0)
        FAIL_ERRNO("load the seccomp filter");
    if (in.have_caps)
        drop_bounding();
    if (in.have_user)
        become_user();
    if (in.have_caps)
        set_caps();
    if (in.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        FAIL_ERRNO("set no_new_privs");

    /* Until it execs, the process is only this helper: a terminating signal ends it as it would end the
     * program (as PID 1 of a PID namespace, default dispositions would make it ignore them). */
    static const int terminating[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM };
    for (size_t i = 0; i < sizeof(terminating) / sizeof(terminating[0]); i++)
        signal(terminating[i], die_on_signal);

    report("ready");

    char go;
    ssize_t n;
    do {
        n = read(FD_START, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n <= 0)
        _exit(0); /* the agent gave up on this process */
    close(FD_START);

    reset_signals();
    /* With no_new_privs the filter comes last, so it only ever sees the program's own calls (and execve). */
    if (in.have_seccomp && in.no_new_privs && load_seccomp() < 0) {
        report("error load the seccomp filter: %s", strerror(errno));
        _exit(127);
    }
    execve(exe, in.argv, in.envp);
    report("error exec: \"%s\": %s", in.argv[0], strerror(errno));
    _exit(127);
}

int main(void)
{
    /* Only 0-5 are ours; anything else leaked from the agent is closed. */
    if (syscall(SYS_close_range, 6, ~0u, 0) < 0) {
        for (int fd = 6; fd < 1024; fd++)
            close(fd);
    }
    if (fcntl(FD_SYNC, F_SETFD, FD_CLOEXEC) < 0 || fcntl(FD_START, F_SETFD, FD_CLOEXEC) < 0)
        FAIL_ERRNO("csharp-nsexec: fds 4 and 5 must be the sync and start pipes");

    read_instructions();
    close(FD_INSTR);
    if (in.mode != MODE_CREATE && in.mode != MODE_EXEC)
        fail("no or unknown mode %u", in.mode);

    /* Open every namespace first: after joining a mount namespace the paths mean something else. */
    for (int i = 0; i < in.n_setns; i++) {
        in.setns[i].fd = open(in.setns[i].path, O_RDONLY | O_CLOEXEC);
        if (in.setns[i].fd < 0)
            FAIL_ERRNO("open namespace %s", in.setns[i].path);
    }
    for (int i = 0; i < in.n_setns; i++) {
        if (setns(in.setns[i].fd, (int)in.setns[i].nstype) < 0)
            FAIL_ERRNO("join namespace %s", in.setns[i].path);
        close(in.setns[i].fd);
    }
    if (in.unshare_flags && unshare((int)in.unshare_flags) < 0)
        FAIL_ERRNO("unshare namespaces (flags 0x%x)", in.unshare_flags);

    pid_t pid = fork();
    if (pid < 0)
        FAIL_ERRNO("fork");
    if (pid == 0)
        child();

    report("pid %d", (int)pid);
    _exit(0);
}
