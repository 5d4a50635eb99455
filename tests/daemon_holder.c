/* A process that holds fast connections and calls daemon(): the original
 * exits inside daemon(), the daemon goes on with the connections, uses them
 * and closes them; then they are gone from `loopfast stat`, as from the
 * kernel's table.  glibc's daemon() forks inside libc, past our fork(), so
 * the daemon is not counted as a holder: the original's part of the slot
 * is given back by the next holder that lets go, because its pid is listed
 * and no longer exists (conn.c, holders_reap).  Also checks daemon()'s own
 * job: a new session, "/" as the directory, /dev/null as stdin. */
#include <sys/stat.h>
#include <sys/wait.h>

#include "helpers.h"

static char cli[4200];

/* The daemon's report: its pid, session leader, cwd "/", stdin a char device. */
struct report {
    pid_t pid;
    int leader, in_root, null_stdin, echoed, fast;
};

static void daemon_side(int report_fd)
{
    int c, s;
    fast_pair(AF_INET, 1, &c, &s);
    if (daemon(0, 0) != 0)
        _exit(2);
    struct report r = { getpid(), getsid(0) == getpid(), 0, 0, 0, loopfast_fd_is_fast(c) };
    char cwd[64];
    struct stat st;
    r.in_root = getcwd(cwd, sizeof cwd) && !strcmp(cwd, "/");
    r.null_stdin = fstat(0, &st) == 0 && S_ISCHR(st.st_mode);
    char b = 'd';
    r.echoed = write_full(c, &b, 1) == 1 && read_full(s, &b, 1) == 1 && b == 'd';
    close(c);
    close(s);
    _exit(write(report_fd, &r, sizeof r) == sizeof r ? 0 : 3);
}

int main(int argc, char **argv)
{
    (void)argc;
    alarm(20);
    cli_next_to(argv[0], cli, sizeof cli);
    int rep[2];
    CHECK(pipe(rep) == 0, "pipe");
    pid_t first = fork();
    CHECK(first >= 0, "fork");
    if (first == 0) {
        close(rep[0]);
        daemon_side(rep[1]);
    }
    close(rep[1]);
    CHECK(child_status(first) == 0, "the original did not exit 0 inside daemon()");
    struct report r;
    CHECK(read_full(rep[0], &r, sizeof r) == sizeof r, "the daemon's report");
    CHECK(r.pid != first, "daemon() did not fork");
    CHECK(r.leader && r.in_root && r.null_stdin, "daemon(): session leader %d, in / %d, "
          "/dev/null on stdin %d", r.leader, r.in_root, r.null_stdin);
    CHECK(r.fast == 1 && r.echoed, "the daemon's connection: fast %d, echoed %d", r.fast, r.echoed);
    /* the daemon has exited once its report is read to the end */
    char b;
    CHECK(read(rep[0], &b, 1) == 0, "report pipe");
    for (int i = 0; i < 50 && (stat_ends_of(cli, first) || stat_ends_of(cli, r.pid)); i++)
        usleep(20000);   /* its exit is not ours to wait for */
    int left = stat_ends_of(cli, first) + stat_ends_of(cli, r.pid);
    CHECK(left == 0, "%d ends still listed after the daemon closed them", left);
    return 0;
}
