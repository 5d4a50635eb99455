/*
 * wait.c - how a blocked call waits: spin on shared memory for
 * LOOPFAST_SPIN_US, then arm and sleep on the doorbell eventfd and the TCP
 * socket together (docs/design.md, 6).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <sys/time.h>

#include "internal.h"

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint32_t load32(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Is there something for a waiting reader (writer) to look at? */
static int has_news(struct lf_conn *c, int for_write)
{
    const struct lf_side *me = &c->sh->side[c->me], *peer = conn_peer(c);
    if (load32(&peer->closed))
        return 1;
    if (for_write)
        return ring_writable(&c->tx) != 0;
    if (!load32(&me->rx_on_ring))
        return load32(&peer->tx_switched) &&
               __atomic_load_n(&me->rx_tcp_bytes, __ATOMIC_ACQUIRE) ==
                   __atomic_load_n(&peer->tx_tcp_bytes, __ATOMIC_ACQUIRE);
    return ring_readable(&c->rx) != 0 || load32(&peer->shut_wr);
}

/* Spinning pays only while the peer has a core of its own.  With more
 * runnable tasks than cores (8 pgbench clients and their backends on 2
 * cores), a spinner holds the core its peer needs: then we do not spin.
 * The kernel's count of runnable tasks (/proc/loadavg) is read at most every
 * 10 ms per thread; where it cannot be read, we spin as configured. */
#define CROWD_CHECK_NS 10000000ull

static int cores(void)
{
    static int n;   /* threads may race to fill it in: they agree */
    int k = __atomic_load_n(&n, __ATOMIC_RELAXED);
    if (!k) {
        cpu_set_t set;
        k = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
        __atomic_store_n(&n, k, __ATOMIC_RELAXED);
    }
    return k;
}

static int machine_crowded(uint64_t now)
{
    static __thread uint64_t checked;
    static __thread int crowded;
    if (checked && now - checked < CROWD_CHECK_NS)
        return crowded;
    checked = now;
    char buf[128];
    int running = 0;
    crowded = read_small_file("/proc/loadavg", buf, sizeof buf) > 0 &&
              sscanf(buf, "%*s %*s %*s %d/", &running) == 1 && running > cores();
    return crowded;
}

/* When a spin that starts now must end; 0: do not spin. */
uint64_t spin_deadline(void)
{
    if (!lf_config.spin_us)
        return 0;
    uint64_t now = monotonic_ns();
    return machine_crowded(now) ? 0 : now + (uint64_t)lf_config.spin_us * 1000;
}

static int spin(struct lf_conn *c, int for_write)
{
    uint64_t end = spin_deadline();
    if (!end)
        return 0;
    for (unsigned i = 0;; i++) {
        if (has_news(c, for_write))
            return 1;
        cpu_relax();
        if ((i & 15) == 15 && monotonic_ns() >= end)
            return 0;
    }
}

/* One read takes every token.  Tokens are left over whenever a waiter armed,
 * then found news and did not sleep: the peer's next write still rings.  Taken
 * one at a time (a semaphore eventfd) they piled up faster than they were
 * read, every later poll() returned at once, and LOOPFAST_SPIN_US=0 became a
 * busy loop of system calls.  Taken all at once, a leak costs one spurious
 * wake-up.  poll() wakes every waiter on the eventfd, so waiters that share it
 * (threads, forked holders) each look again whoever reads the count. */
void bell_drain(struct lf_conn *c, int which)
{
    uint64_t token;
    (void)!libc.read(c->bell_mine[which], &token, sizeof token);
}

int wait_spin(struct lf_conn *c, int for_write)
{
    int on_ring = for_write || load32(&c->sh->side[c->me].rx_on_ring);
    if (!on_ring || !spin(c, for_write))
        return 0;
    my_stats(c)->spin_hits++;
    return 1;
}

int wait_for(struct lf_conn *c, int fd, int for_write, int timeout_ms, short *tcp_events)
{
    *tcp_events = 0;
    ring_arm(for_write ? &c->tx.ctl->writer_armed : &c->rx.ctl->reader_armed);
    if (has_news(c, for_write))
        return 0;
    /* A writer must not wake on unread TCP data from before the switch. */
    struct pollfd p[2] = {
        { .fd = c->bell_mine[for_write ? BELL_ROOM : BELL_DATA], .events = POLLIN },
        { .fd = fd, .events = for_write ? (c->fin_unclear ? 0 : POLLRDHUP) : (POLLIN | POLLRDHUP) },
    };
    int r;
    reap_now();
    do {
        signal_wait_begin();
        r = libc.poll(p, 2, timeout_ms);
    } while (r < 0 && errno == EINTR && signal_restarts());
    if (r < 0)
        return -errno;
    if (r == 0)
        return -EAGAIN;
    if (p[0].revents)
        bell_drain(c, for_write ? BELL_ROOM : BELL_DATA);
    my_stats(c)->wakeups++;
    *tcp_events = p[1].revents;
    return 0;
}

int fd_nonblocking(int fd)
{
    int fl = libc.fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK);
}

/* SO_RCVTIMEO / SO_SNDTIMEO as a poll() timeout: -1 when unset. */
int sock_timeout_ms(int fd, int optname)
{
    struct timeval tv;
    socklen_t len = sizeof tv;
    if (getsockopt(fd, SOL_SOCKET, optname, &tv, &len) < 0 || (tv.tv_sec == 0 && tv.tv_usec == 0))
        return -1;
    long ms = tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}
