/* Urgent data (send(MSG_OOB)) on a connection already on its rings: the
 * sender's writes go to TCP for good after the ring's bytes, the urgent
 * byte with them, and the receiver sees what kernel TCP shows: SIGURG to
 * the socket's owner, POLLPRI, SIOCATMARK false until the bytes before the
 * mark are read, the byte by recv(MSG_OOB), reads that stop at the mark,
 * then the rest.  It was refused (EOPNOTSUPP): telnet's Ctrl-C ended the
 * session (a helper's sweep; telnetd sends output flushes so).  Both ways,
 * transcripts compared; then the other direction still echoes. */
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>

#include "helpers.h"
#include "transcript.h"

static volatile sig_atomic_t urgent_signals;

static void on_urg(int sig)
{
    (void)sig;
    urgent_signals++;
}

static void note_mark(int fd)
{
    int at = -1;
    note(" atmark:%d", ioctl(fd, SIOCATMARK, &at) == 0 ? at : -1);
}

static void note_read(const char *what, int fd, int flags)
{
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof buf, flags | MSG_DONTWAIT);
    if (n < 0)
        note(" %s:%s", what, strerror(errno));
    else
        note(" %s:%.*s", what, (int)n, buf);
}

static void urgent(int optin, char *out, size_t size)
{
    transcript[0] = 0;
    urgent_signals = 0;
    int c, s;
    fast_pair(AF_INET, optin, &c, &s);
    CHECK(fcntl(s, F_SETOWN, getpid()) == 0, "F_SETOWN");
    note_result("c-write", write(c, "abc", 3));
    note_result("c-urgent", send(c, "!", 1, MSG_OOB));
    note_result("c-write", write(c, "def", 3));
    sleep_ms(50);
    struct pollfd p = { .fd = s, .events = POLLIN | POLLPRI };
    note_result("s-poll", poll(&p, 1, 1000));
    note(" revents:%s%s", p.revents & POLLIN ? "I" : "", p.revents & POLLPRI ? "P" : "");
    note(" sigurg:%d", urgent_signals > 0);
    note_mark(s);
    note_read("s-oob", s, MSG_OOB);
    note_read("s-read", s, 0);
    note_mark(s);
    note_read("s-read", s, 0);
    note_result("c-write", write(c, "ghi", 3));
    sleep_ms(20);
    note_read("s-read", s, 0);
    note_result("s-write", write(s, "back", 4));
    note_read("c-read", c, 0);
    case_end(c, s, out, size);
}

int main(void)
{
    alarm(30);
    signal(SIGURG, on_urg);
    return transcripts_of("urgent data after the switch", urgent) ? 1 : 0;
}
