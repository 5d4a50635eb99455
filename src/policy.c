/*
 * policy.c - which connections an administrator keeps on the kernel path.
 *
 * Packet filters and capture tools on `lo` see only the kernel's traffic, so
 * traffic that must stay visible to them is excluded here.  Rules come from
 * the file named by LOOPFAST_CONFIG (default /etc/loopfast.conf) and from
 * LOOPFAST_EXCLUDE; each rule is one of
 *     port N | port N-M | addr ADDRESS | prog NAME | uid N
 * separated by newlines, commas or semicolons; '#' starts a comment.  A port
 * or address matches either end of a connection; a program (by the name of
 * its executable) or uid that matches turns loopfast off for the process.
 * A process that uses io_uring keeps its new connections on the kernel's
 * path too (below).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define MAX_RULES 64

struct rule {
    enum { R_PORT, R_ADDR } kind;
    uint16_t lo, hi;
    struct in6_addr addr;   /* IPv4 as mapped */
};

static struct rule rules[MAX_RULES];
static int nrules;

static int parse_addr(const char *s, struct in6_addr *out)
{
    struct in_addr v4;
    if (inet_pton(AF_INET6, s, out) == 1)
        return 0;
    if (inet_pton(AF_INET, s, &v4) != 1)
        return -1;
    memset(out, 0, sizeof *out);
    out->s6_addr[10] = out->s6_addr[11] = 0xff;
    memcpy(&out->s6_addr[12], &v4, 4);
    return 0;
}

static const char *program_name(void)
{
    static char name[256];
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return "";
    exe[n] = 0;
    const char *slash = strrchr(exe, '/');
    const char *base = slash ? slash + 1 : exe;
    size_t len = strnlen(base, sizeof name - 1);
    memcpy(name, base, len);
    name[len] = 0;
    return name;
}

static void warn_rule(const char *rule)
{
    fprintf(stderr, "loopfast: ignoring policy rule \"%s\": use port N[-M], addr A, prog NAME or uid N\n",
            rule);
}

/* One rule; returns 1 when it turns the whole process off. */
static int add_rule(char *text)
{
    char key[16], value[256];
    if (sscanf(text, " %15s %255s", key, value) != 2) {
        if (strspn(text, " \t\r") != strlen(text))
            warn_rule(text);
        return 0;
    }
    struct rule r = { 0 };
    unsigned lo, hi;
    if (!strcmp(key, "prog"))
        return !strcmp(value, program_name());
    if (!strcmp(key, "uid"))
        return (uid_t)strtoul(value, NULL, 10) == getuid();
    if (!strcmp(key, "port") && sscanf(value, "%u-%u", &lo, &hi) == 2 && lo <= hi && hi < 65536) {
        r.kind = R_PORT, r.lo = (uint16_t)lo, r.hi = (uint16_t)hi;
    } else if (!strcmp(key, "port") && sscanf(value, "%u", &lo) == 1 && lo < 65536) {
        r.kind = R_PORT, r.lo = r.hi = (uint16_t)lo;
    } else if (!strcmp(key, "addr") && parse_addr(value, &r.addr) == 0) {
        r.kind = R_ADDR;
    } else {
        warn_rule(text);
        return 0;
    }
    if (nrules < MAX_RULES)
        rules[nrules++] = r;
    return 0;
}

static void add_rules(char *text)
{
    char *save;
    for (char *line = strtok_r(text, "\n,;", &save); line; line = strtok_r(NULL, "\n,;", &save)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        if (add_rule(line))
            lf_config.mode = LF_MODE_OFF;
    }
}

void policy_init(void)
{
    const char *path = getenv("LOOPFAST_CONFIG");
    FILE *f = fopen(path && *path ? path : "/etc/loopfast.conf", "re");
    if (f) {
        char buf[8192];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
        add_rules(buf);
    } else if (path && *path) {
        fprintf(stderr, "loopfast: cannot read LOOPFAST_CONFIG=%s: %s\n", path, strerror(errno));
    }
    const char *env = getenv("LOOPFAST_EXCLUDE");
    if (env && *env) {
        char *copy = strdup(env);
        if (copy)
            add_rules(copy);
        free(copy);
    }
}

static int endpoint(const struct sockaddr *sa, struct in6_addr *addr, uint16_t *port)
{
    if (!sa)
        return -1;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memset(addr, 0, sizeof *addr);
        addr->s6_addr[10] = addr->s6_addr[11] = 0xff;
        memcpy(&addr->s6_addr[12], &in->sin_addr, 4);
        *port = ntohs(in->sin_port);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        *addr = in6->sin6_addr;
        *port = ntohs(in6->sin6_port);
        return 0;
    }
    return -1;
}

static int matches(const struct sockaddr *sa)
{
    struct in6_addr addr;
    uint16_t port;
    if (endpoint(sa, &addr, &port) < 0)
        return 0;
    for (int i = 0; i < nrules; i++) {
        const struct rule *r = &rules[i];
        if (r->kind == R_PORT && port >= r->lo && port <= r->hi)
            return 1;
        if (r->kind == R_ADDR && !memcmp(&r->addr, &addr, sizeof addr))
            return 1;
    }
    return 0;
}

/* ---- processes that do their socket I/O through io_uring ----
 * io_uring's requests reach the kernel's socket without passing through
 * libc, so loopfast never sees them: such a process reading a connection
 * whose peer writes to a ring would wait forever.  An io_uring instance
 * shows in /proc/self/maps (its rings are mapped from it); while one
 * exists, new connections stay on the kernel's path.  Looked for at most
 * every 50 ms (longer where a look is dear), and once seen, for good.
 * Not seen: one made after a connection switched (design 10). */
#define URING_LOOK_NS 50000000ull

static int maps_show_uring(void)
{
    static const char mark[] = "[io_uring]";
    char buf[4096 + sizeof mark];
    size_t kept = 0;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), found = 0;
    ssize_t n;
    while (fd >= 0 && !found && (n = libc.read(fd, buf + kept, sizeof buf - 1 - kept)) > 0) {
        size_t len = kept + (size_t)n;
        buf[len] = 0;
        found = memmem(buf, len, mark, sizeof mark - 1) != NULL;
        kept = len < sizeof mark - 1 ? len : sizeof mark - 1;   /* a mark split between reads */
        memmove(buf, buf + len - kept, kept);
    }
    if (fd >= 0)
        libc.close_own(fd);
    return found;
}

/* The next look waits 50 ms, or a thousand times what the last one took
 * (a process with thousands of mappings): at most 0.1% of a core.  At
 * 10 ms, short connections cost 4% more (a look read ~300 mappings). */
static int uring_in_use(void)
{
    static int seen;
    static uint64_t next_look;
    if (__atomic_load_n(&seen, __ATOMIC_RELAXED) || lf_confined)
        return __atomic_load_n(&seen, __ATOMIC_RELAXED);
    uint64_t now = coarse_ns();
    uint64_t next = __atomic_load_n(&next_look, __ATOMIC_RELAXED);
    if (now < next || !__atomic_compare_exchange_n(&next_look, &next, now + URING_LOOK_NS, 0,
                                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return 0;   /* looked lately, or another thread looks now */
    uint64_t t0 = monotonic_ns();
    if (maps_show_uring())
        __atomic_store_n(&seen, 1, __ATOMIC_RELAXED);
    uint64_t took = monotonic_ns() - t0;
    if (1000 * took > URING_LOOK_NS)
        __atomic_store_n(&next_look, now + 1000 * took, __ATOMIC_RELAXED);
    return __atomic_load_n(&seen, __ATOMIC_RELAXED);
}

/* May a connection between these two ends (either may be NULL) be fast? */
int policy_allows(const struct sockaddr *a, const struct sockaddr *b)
{
    return lf_config.mode != LF_MODE_OFF && !matches(a) && !matches(b) && !uring_in_use();
}
