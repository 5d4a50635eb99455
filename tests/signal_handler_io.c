/* A signal handler that writes and reads the connection the code it
 * interrupted is writing or reading.  POSIX lets a handler call read() and
 * write() (they are async-signal-safe), and over kernel TCP each call is
 * whole: the handler's byte lands between two of the program's writes.
 * The writer sends 'A's in 64 KiB writes while a CPU-time timer (SIGPROF)
 * every 50 us has its
 * handler send one 'B' (MSG_DONTWAIT); the reader reads in 64 KiB reads
 * while its own timer's handler takes one byte (MSG_DONTWAIT).  Every byte
 * must arrive once: the A's and B's counted by the reader's main code and
 * its handler together equal what was sent.  Bug fixed: the handler waited
 * forever on the direction lock its interrupted thread held, or (a
 * single-threaded process takes no lock) wrote into the ring under the
 * interrupted write's feet.  Run over kernel TCP and over loopfast, with a
 * helper thread (the locks are taken) and without. */
#include <pthread.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "helpers.h"

#define TOTAL (192ull << 20)
#define CHUNK (64u << 10)

static int sock = -1;
static volatile sig_atomic_t handler_sent, handler_got_a, handler_got_b;

static void on_alarm_write(int sig)
{
    (void)sig;
    int e = errno;
    if (send(sock, "B", 1, MSG_DONTWAIT) == 1)
        handler_sent++;
    errno = e;
}

static void on_alarm_read(int sig)
{
    (void)sig;
    int e = errno;
    char b;
    if (recv(sock, &b, 1, MSG_DONTWAIT) == 1) {
        if (b == 'A')
            handler_got_a++;
        else if (b == 'B')
            handler_got_b++;
        else
            handler_got_a = -1000000;   /* a byte nobody sent */
    }
    errno = e;
}

static void start_timer(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = SA_RESTART;
    CHECK(sigaction(SIGPROF, &sa, NULL) == 0, "sigaction");
    struct itimerval it = { { 0, 50 }, { 0, 50 } };
    CHECK(setitimer(ITIMER_PROF, &it, NULL) == 0, "setitimer");
}

static void stop_timer(void)
{
    struct itimerval it = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_PROF, &it, NULL);
}

static void *idle_thread(void *arg)
{
    (void)arg;
    pause();
    return NULL;
}

static void make_threaded(int threaded)
{
    pthread_t t;
    if (threaded) {
        /* the process is multi-threaded from now on: loopfast takes its locks */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);   /* the timer's signals stay ours */
        CHECK(pthread_create(&t, NULL, idle_thread, NULL) == 0, "pthread_create");
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
}

/* The reader: its counts go back on `report` as three numbers. */
static void reader(int l, int threaded, int report)
{
    sock = accept(l, NULL, NULL);
    if (sock < 0)
        _exit(2);
    server_switch(sock);
    make_threaded(threaded);
    start_timer(on_alarm_read);
    static char buf[CHUNK];
    unsigned long long a = 0, b = 0;
    ssize_t n;
    while ((n = read(sock, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            _exit(3);
        for (ssize_t i = 0; i < n; i++)
            a += buf[i] == 'A', b += buf[i] == 'B';
    }
    stop_timer();
    unsigned long long out[3] = { a + (unsigned long long)handler_got_a,
                                  b + (unsigned long long)handler_got_b,
                                  (unsigned long long)loopfast_fd_is_fast(sock) };
    _exit(write(report, out, sizeof out) == sizeof out ? 0 : 4);
}

static void run(int optin, int threaded)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l, report[2];
    CHECK(pipe(report) == 0, "pipe");
    pid_t pid = fork_with_listener(optin, &addr, &len, &l);
    if (pid == 0) {
        alarm(60);
        close(report[0]);
        reader(l, threaded, report[1]);
    }
    close(report[1]);
    sock = connect_to(&addr, len, optin);
    client_switch(sock);
    make_threaded(threaded);
    handler_sent = 0;
    start_timer(on_alarm_write);
    static char buf[CHUNK];
    memset(buf, 'A', sizeof buf);
    for (unsigned long long sent = 0; sent < TOTAL;) {
        /* never past TOTAL: a signal cuts a blocking write short (a partial
         * count), so the last one may be less than a chunk */
        size_t want = TOTAL - sent < sizeof buf ? (size_t)(TOTAL - sent) : sizeof buf;
        ssize_t n = write(sock, buf, want);
        CHECK(n > 0 || errno == EINTR, "write: %s", strerror(errno));
        if (n > 0)
            sent += (unsigned long long)n;
    }
    stop_timer();
    CHECK(shutdown(sock, SHUT_WR) == 0, "shutdown");
    unsigned long long got[3];
    CHECK(read_full(report[0], got, sizeof got) == sizeof got, "the reader's report");
    CHECK(child_status(pid) == 0, "reader exit");
    const char *how = optin ? "loopfast" : "kernel";
    printf("%s%s: %llu A, %llu B (%d sent by the handler), fast %llu\n", how,
           threaded ? " threaded" : "", got[0], got[1], (int)handler_sent, got[2]);
    CHECK(got[0] == TOTAL, "%s: %llu A arrived, %llu sent", how, got[0], TOTAL);
    CHECK(got[1] == (unsigned long long)handler_sent, "%s: %llu B arrived, %d sent", how,
          got[1], (int)handler_sent);
    CHECK(got[2] == (unsigned long long)optin && loopfast_fd_is_fast(sock) == optin,
          "%s: fast %llu", how, got[2]);
    close(sock);
    close(report[0]);
}

int main(void)
{
#ifdef UNDER_TSAN
    /* it runs handlers at points of its own choosing, with a copy of the
     * context: over kernel TCP too the counts did not add up */
    SKIP("ThreadSanitizer defers signal handlers itself");
#endif
    alarm(100);
    /* each run in a process of its own, so that no fork follows a thread's start */
    for (int threaded = 0; threaded < 2; threaded++)
        for (int optin = 0; optin < 2; optin++) {
            fflush(stdout);
            pid_t pid = fork();
            CHECK(pid >= 0, "fork");
            if (pid == 0) {
                run(optin, threaded);
                fflush(stdout);
                _exit(0);
            }
            CHECK(child_status(pid) == 0, "run %d %d", optin, threaded);
        }
    return 0;
}
