/* A peer that answers our shutdown(SHUT_RDWR) with bytes, as soon as it
 * reads our end of stream: Linux resets the connection for them (our
 * socket no longer reads), so our read says ECONNRESET (or EOF, if it came
 * before them), never the bytes, and the peer's next write fails.  Found
 * by a helper's sweep: the bytes went on the ring, because our end of
 * stream was there before our refusal, and were read as data; once the
 * peer had closed, our read said EOF where the kernel's says ECONNRESET.
 *  (a) one thread: shutdown, the peer answers and closes, then we read;
 *      the transcript must be the kernel's;
 *  (b) a reader thread blocked in read() while another thread shuts the
 *      socket down, 20 rounds: it returns 0 or ECONNRESET, never bytes. */
#include <time.h>

#include "helpers.h"
#include "transcript.h"

/* The server process: after one exchange (both directions switch), it
 * reads our end of stream, then at once writes 10 bytes; after 20 ms its
 * next write's result is its exit status (0: EPIPE, as the kernel's reset
 * makes it), and it closes. */
static void answering_server(int listener)
{
    char x[16];
    int c = accept(listener, NULL, NULL);
    if (c < 0 || read(c, x, 1) != 1 || write(c, "b", 1) != 1)
        _exit(1);
    if (read(c, x, sizeof x) != 0)
        _exit(2);   /* not our end of stream */
    if (send(c, "0123456789", 10, MSG_NOSIGNAL) != 10)
        _exit(3);
    sleep_ms(20);
    _exit(send(c, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE ? 0 : 4);
}

/* Our end of a connection to answering_server, switched (when optin). */
static int pair_with_answering_peer(int optin, pid_t *peer)
{
    char x;
    int a = connect_to_forked(optin, answering_server, peer);
    CHECK(write(a, "a", 1) == 1 && read(a, &x, 1) == 1, "first exchange");
    if (optin)
        CHECK(loopfast_fd_is_fast(a) == 1, "not fast");
    return a;
}

static void shape_sequential(int optin, char *out, size_t size)
{
    char x[16];
    pid_t peer;
    transcript[0] = 0;
    int a = pair_with_answering_peer(optin, &peer);
    CHECK(shutdown(a, SHUT_RDWR) == 0, "shutdown: %s", strerror(errno));
    note(" peer:%d", child_status(peer));   /* it has closed */
    note_result("read", read(a, x, sizeof x));
    note_result("read", read(a, x, sizeof x));
    close(a);
    snprintf(out, size, "%s", transcript);
}

static void *blocked_read(void *arg)
{
    char x[16];
    ssize_t n = read(*(int *)arg, x, sizeof x);
    return (void *)(n < 0 ? -(long)errno : (long)n);
}

static void shape_threaded(int optin)
{
    int saw_data = 0;
    for (int round = 0; round < 20; round++) {
        pid_t peer;
        int a = pair_with_answering_peer(optin, &peer);
        pthread_t th;
        CHECK(pthread_create(&th, NULL, blocked_read, &a) == 0, "pthread_create");
        sleep_ms(20);
        CHECK(shutdown(a, SHUT_RDWR) == 0, "shutdown: %s", strerror(errno));
        void *r;
        pthread_join(th, &r);
        long got = (long)r;
        CHECK(got == 0 || got == -ECONNRESET || got > 0, "(b) %s: the blocked read failed with %s",
              optin ? "loopfast" : "kernel TCP", strerror((int)-got));
        saw_data += got > 0;
        CHECK(child_status(peer) == 0, "(b) %s: the peer's write after the reset did not fail "
              "with EPIPE", optin ? "loopfast" : "kernel TCP");
        close(a);
    }
    CHECK(saw_data == 0, "(b) %s: %d of 20 blocked reads returned the bytes the peer sent after "
          "our shutdown", optin ? "loopfast" : "kernel TCP", saw_data);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int differ = transcripts_of("(a) shutdown(SHUT_RDWR), the peer answers", shape_sequential);
    shape_threaded(0);
    shape_threaded(1);
    return differ;
}
