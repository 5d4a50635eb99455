/* A process holding a fast connection confines itself as OpenSSH's
 * pre-authentication child does (RLIMIT_NOFILE 1, SIGPIPE ignored, a
 * seccomp filter that allows read, write, poll, select, close and little
 * else, and kills the process at any other call), then polls and reads data
 * its peer sends later, writes a reply 400 ms later to its peer blocked in
 * read() meanwhile (past the peer's futex phase, on its wake socket: the
 * sandboxed writer must not call sendto, the filter would kill it; it rings
 * the doorbell instead, wait.c), reads with a blocking read(), and sees EOF
 * when the peer exits without close().  Over kernel TCP and loopfast alike it must
 * live to report all three; loopfast used to die of SIGSYS at its fcntl. */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "helpers.h"

#if defined(__x86_64__)
#define ARCH AUDIT_ARCH_X86_64
#endif

#define ALLOW(nr) BPF_JUMP(BPF_JMP + BPF_JEQ + BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_ALLOW)
#define DENY(nr, e) BPF_JUMP(BPF_JMP + BPF_JEQ + BPF_K, (nr), 0, 1), \
                    BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_ERRNO | (e))

static void confine(void)
{
#ifdef ARCH
    /* OpenSSH 9.2's pre-auth allow-list (sandbox-seccomp-filter.c), as
     * used on x86_64 */
    struct sock_filter insns[] = {
        BPF_STMT(BPF_LD + BPF_W + BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP + BPF_JEQ + BPF_K, ARCH, 1, 0),
        BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_KILL),
        BPF_STMT(BPF_LD + BPF_W + BPF_ABS, offsetof(struct seccomp_data, nr)),
        DENY(__NR_fstat, EACCES), DENY(__NR_openat, EACCES), DENY(__NR_newfstatat, EACCES),
        DENY(__NR_open, EACCES), DENY(__NR_stat, EACCES), DENY(__NR_lstat, EACCES),
        ALLOW(__NR_brk), ALLOW(__NR_clock_gettime), ALLOW(__NR_close), ALLOW(__NR_exit),
        ALLOW(__NR_exit_group), ALLOW(__NR_futex), ALLOW(__NR_geteuid), ALLOW(__NR_getpgid),
        ALLOW(__NR_getpid), ALLOW(__NR_getrandom), ALLOW(__NR_gettimeofday), ALLOW(__NR_getuid),
        ALLOW(__NR_madvise), ALLOW(__NR_mmap), ALLOW(__NR_mprotect), ALLOW(__NR_mremap),
        ALLOW(__NR_munmap), ALLOW(__NR_nanosleep), ALLOW(__NR_clock_nanosleep),
        ALLOW(__NR_poll), ALLOW(__NR_pselect6), ALLOW(__NR_read), ALLOW(__NR_rt_sigprocmask),
        ALLOW(__NR_select), ALLOW(__NR_shutdown), ALLOW(__NR_time), ALLOW(__NR_write),
        ALLOW(__NR_rt_sigreturn), ALLOW(__NR_restart_syscall),
        BPF_STMT(BPF_RET + BPF_K, SECCOMP_RET_KILL),
    };
    struct sock_fprog prog = { .len = sizeof insns / sizeof insns[0], .filter = insns };
    struct rlimit one = { 1, 1 };
    signal(SIGPIPE, SIG_IGN);
    if (setrlimit(RLIMIT_NOFILE, &one) != 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        _exit(70);
#endif
}

/* The sandboxed reader: 0 when it saw "hello", "later" and EOF. */
static int sandboxed(int s, int go)
{
    confine();
    char buf[32];
    struct pollfd p = { .fd = s, .events = POLLIN };
    if (poll(&p, 1, 10000) != 1 || read(s, buf, sizeof buf) != 5 || memcmp(buf, "hello", 5))
        return 2;
    if (write(go, "g", 1) != 1)
        return 3;
    if (poll(&p, 1, 10000) != 1 || read(s, buf, sizeof buf) != 5 || memcmp(buf, "later", 5))
        return 4;
    if (write(go, "g", 1) != 1)
        return 5;
    struct timespec later = { 0, 400000000 };
    if (nanosleep(&later, NULL) != 0 || write(s, "reply", 5) != 5)
        return 7;
    ssize_t n = read(s, buf, sizeof buf);   /* blocking: the peer exits */
    return n == 0 ? 0 : 6;
}

static int run(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, optin, &addr, &len);
    int go[2];
    CHECK(pipe(go) == 0, "pipe");
    pid_t peer = fork();
    CHECK(peer >= 0, "fork");
    if (peer == 0) {
        close(go[1]);
        int c = connect_to(&addr, len, optin);
        char b, reply[5];
        client_switch(c);   /* both directions on the ring before the sandbox */
        if (write_full(c, "hello", 5) != 5 || read(go[0], &b, 1) != 1 ||
            write_full(c, "later", 5) != 5 || read(go[0], &b, 1) != 1)
            _exit(2);
        if (read_full(c, reply, 5) != 5 || memcmp(reply, "reply", 5))
            _exit(3);   /* blocked 400 ms: woken by the sandboxed writer */
        _exit(0);   /* without close(): only the kernel's FIN tells */
    }
    close(go[0]);
    int s = accept(l, NULL, NULL);
    CHECK(s >= 0, "accept");
    close(l);
    char b;
    for (int i = 0; i < 3; i++)
        CHECK(read_full(s, &b, 1) == 1 && write_full(s, &b, 1) == 1, "switching echo %d", i);
    pid_t reader = fork();
    CHECK(reader >= 0, "fork");
    if (reader == 0)
        _exit(sandboxed(s, go[1]));
    close(s);
    close(go[1]);
    int st = child_status(reader), peer_st = child_status(peer);
    return st ? st : peer_st ? 100 + peer_st : 0;
}

int main(void)
{
#ifndef ARCH
    SKIP("the filter is written for x86_64");
#endif
    alarm(25);
    int kernel = run(0);
    if (kernel == 128 + SIGSYS)
        SKIP("even over kernel TCP the process broke the filter: a sanitizer's runtime?");
    CHECK(kernel == 0, "over kernel TCP the sandboxed reader ended with %d", kernel);
    int fast = run(1);
    CHECK(fast == 0, "with loopfast the sandboxed reader ended with %d%s", fast,
          fast == 128 + SIGSYS ? " (SIGSYS: a system call outside the filter)" : "");
    return 0;
}
