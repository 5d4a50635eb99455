/* Threads blocked each on its own connection are not woken by another
 * connection's messages (docs/design.md, 6: a blocked call sleeps on a
 * futex first).  A server process runs one thread per connection, each in a
 * blocking read (the first IDLE_AFTER in poll() of its one socket, then
 * read(), as MariaDB and libcurl wait, the others in read()).  The client
 * opens CONNS connections from one process (one region, one doorbell per
 * side), lets them idle, then makes ROUNDS round trips on connection 0
 * only, back to back, PACED more 60 ms apart (a pooled connection in
 * use now and then) and IDLE_ROUNDS more IDLE_GAP_MS apart (each finding its
 * reader past its futex phase): the idle threads' voluntary context switches
 * meanwhile must stay near the kernel's (none), where a shared doorbell
 * woke each of them at every message; and connection 0's own thread must
 * wake about once a message in the last part, as over TCP, not twice (its
 * futex phase's end, then the message).  With LOOPFAST_SPIN_US=0, so that
 * every message finds its reader asleep. */
#include <poll.h>
#include <sys/syscall.h>

#include "helpers.h"

#define CONNS 6
#define POLLERS 3      /* connections whose server thread waits in poll() */
#define ROUNDS 300
#define SLACK 30       /* context switches an idle thread may take meanwhile */
#define PACED 10
#define PACED_SLACK 6
#define IDLE_GAP_MS 300   /* past the futex phase: each finds its reader on its wake socket */
#define IDLE_ROUNDS 10
#define IDLE_SLACK 6
#define OWN_SLACK 3   /* connection 0's own thread: the first wait of the spell, and noise */
#define TRIM_IDLE_US 1500000

static void *serve_one(void *arg)
{
    int c = (int)(intptr_t)arg, id = -1;
    if (read_full(c, &id, sizeof id) != sizeof id)
        return NULL;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (write_full(c, &tid, sizeof tid) != sizeof tid)
        return NULL;
    char b[64];
    for (;;) {
        if (id < POLLERS) {
            struct pollfd p = { .fd = c, .events = POLLIN };
            if (poll(&p, 1, -1) != 1)
                break;
        }
        ssize_t n = read(c, b, sizeof b);
        if (n <= 0 || write_full(c, b, (size_t)n) != n)
            break;
    }
    close(c);
    return NULL;
}

static void serve(int l)
{
    for (int i = 0; i < CONNS; i++) {
        int c = accept(l, NULL, NULL);
        pthread_t t;
        if (c < 0 || pthread_create(&t, NULL, serve_one, (void *)(intptr_t)c) != 0)
            _exit(2);
    }
    pause();
    _exit(0);
}

struct wakes { long rounds, paced, idle, own; };

/* The most context switches an idle server thread took */
static long most_switches(pid_t srv, const pid_t *tids, const long *before)
{
    long most = 0;
    for (int i = 1; i < CONNS; i++) {
        long d = voluntary_switches(srv, tids[i]) - before[i];
        most = d > most ? d : most;
    }
    return most;
}

static void snapshot(pid_t srv, const pid_t *tids, long *before)
{
    for (int i = 1; i < CONNS; i++)
        CHECK((before[i] = voluntary_switches(srv, tids[i])) >= 0, "no status for thread %d", tids[i]);
}

/* The most context switches an idle server thread took while connection 0
 * made its round trips, back to back and paced. */
static struct wakes idle_wakes(int optin)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l, fds[CONNS];
    pid_t tids[CONNS], srv = fork_with_listener(optin, &addr, &len, &l);
    if (srv == 0) {
        alarm(60);
        serve(l);
    }
    for (int i = 0; i < CONNS; i++) {
        fds[i] = connect_to(&addr, len, optin);
        CHECK(write_full(fds[i], &i, sizeof i) == sizeof i &&
              read_full(fds[i], &tids[i], sizeof tids[i]) == sizeof tids[i], "connection %d", i);
        client_echo_rounds(fds[i], 2, "warm-up");
        CHECK(loopfast_fd_is_fast(fds[i]) == optin, "connection %d: fast %d", i,
              loopfast_fd_is_fast(fds[i]));
    }
    usleep(500000);   /* every server thread asleep, past any first phase */
    long before[CONNS];
    struct wakes w;
    snapshot(srv, tids, before);
    client_echo_rounds(fds[0], ROUNDS, "connection 0");
    w.rounds = most_switches(srv, tids, before);
    snapshot(srv, tids, before);
    for (int i = 0; i < PACED; i++) {
        usleep(60000);
        client_echo_rounds(fds[0], 1, "connection 0, paced");
    }
    w.paced = most_switches(srv, tids, before);
    /* Idle past a trim round, connection 0's rings are given back and no
     * longer watched: the rounds then cut no sleep short (trim.c), and the
     * few bytes below keep them unwatched. */
    usleep(TRIM_IDLE_US);
    snapshot(srv, tids, before);
    long own = voluntary_switches(srv, tids[0]);
    for (int i = 0; i < IDLE_ROUNDS; i++) {
        usleep(IDLE_GAP_MS * 1000);
        client_echo_rounds(fds[0], 1, "connection 0, after idling");
    }
    w.idle = most_switches(srv, tids, before);
    w.own = voluntary_switches(srv, tids[0]) - own;
    for (int i = 0; i < CONNS; i++)
        close(fds[i]);
    kill(srv, SIGKILL);
    waitpid(srv, NULL, 0);
    return w;
}

int main(int argc, char **argv)
{
    (void)argc;
    run_with_spin_us(argv, "0");
    alarm(90);
    struct wakes kernel = idle_wakes(0), fast = idle_wakes(1);
    printf("an idle thread's context switches while another connection made %d round trips: "
           "kernel %ld, loopfast %ld; %d more, 60 ms apart: kernel %ld, loopfast %ld; %d more, "
           "%d ms apart: kernel %ld, loopfast %ld (connection 0's own thread: kernel %ld, "
           "loopfast %ld)\n", ROUNDS, kernel.rounds, fast.rounds, PACED, kernel.paced, fast.paced,
           IDLE_ROUNDS, IDLE_GAP_MS, kernel.idle, fast.idle, kernel.own, fast.own);
    CHECK(fast.rounds <= kernel.rounds + SLACK,
          "idle threads woke at other connections' messages: %ld (kernel %ld)", fast.rounds,
          kernel.rounds);
    CHECK(fast.paced <= kernel.paced + PACED_SLACK,
          "idle threads woke at another connection's paced messages: %ld (kernel %ld)",
          fast.paced, kernel.paced);
    CHECK(fast.idle <= kernel.idle + IDLE_SLACK,
          "idle threads woke at messages to another connection idle %d ms: %ld (kernel %ld)",
          IDLE_GAP_MS, fast.idle, kernel.idle);
    CHECK(fast.own <= kernel.own + OWN_SLACK,
          "a thread whose connection is used every %d ms woke %ld times for %d messages "
          "(kernel %ld): its futex phase ran out before each", IDLE_GAP_MS, fast.own,
          IDLE_ROUNDS, kernel.own);
    return 0;
}
