/* A server that reads and writes its connections through io_uring (its
 * requests reach the kernel's socket without passing through libc, so
 * loopfast never sees them) while accepting through libc: the connection
 * must stay on the kernel's path, or the client's bytes go to a ring the
 * server never reads and the echo hangs.  Run both ways; the io_uring part
 * is raw system calls (no liburing needed); skipped where the kernel
 * refuses io_uring. */
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "helpers.h"

struct uring {
    int fd;
    unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
};

static int uring_setup(struct uring *u)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    u->fd = (int)syscall(SYS_io_uring_setup, 4, &p);
    if (u->fd < 0)
        return -1;
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    unsigned char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                             IORING_OFF_SQ_RING);
    unsigned char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, u->fd,
                             IORING_OFF_CQ_RING);
    u->sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, u->fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || u->sqes == MAP_FAILED)
        return -1;
    u->sq_tail = (unsigned *)(sq + p.sq_off.tail);
    u->sq_mask = (unsigned *)(sq + p.sq_off.ring_mask);
    u->sq_array = (unsigned *)(sq + p.sq_off.array);
    u->cq_head = (unsigned *)(cq + p.cq_off.head);
    u->cq_tail = (unsigned *)(cq + p.cq_off.tail);
    u->cq_mask = (unsigned *)(cq + p.cq_off.ring_mask);
    u->cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    return 0;
}

/* One recv or send through the ring, waited for: its result. */
static int uring_io(struct uring *u, int op, int fd, void *buf, size_t len)
{
    unsigned tail = *u->sq_tail, i = tail & *u->sq_mask;
    struct io_uring_sqe *e = &u->sqes[i];
    memset(e, 0, sizeof *e);
    e->opcode = (unsigned char)op;
    e->fd = fd;
    e->addr = (uint64_t)(uintptr_t)buf;
    e->len = (unsigned)len;
    u->sq_array[i] = i;
    __atomic_store_n(u->sq_tail, tail + 1, __ATOMIC_RELEASE);
    if (syscall(SYS_io_uring_enter, u->fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        return -errno;
    unsigned head = *u->cq_head;
    while (head == __atomic_load_n(u->cq_tail, __ATOMIC_ACQUIRE))
        ;
    int res = u->cqes[head & *u->cq_mask].res;
    __atomic_store_n(u->cq_head, head + 1, __ATOMIC_RELEASE);
    return res;
}

/* Echoes through io_uring until end of stream: 10 + is_fast. */
static void server(int l, struct uring *u)
{
    int c = accept(l, NULL, NULL);
    char buf[256];
    int n;
    while ((n = uring_io(u, IORING_OP_RECV, c, buf, sizeof buf)) > 0)
        for (int done = 0; done < n;) {
            int w = uring_io(u, IORING_OP_SEND, c, buf + done, (size_t)(n - done));
            if (w <= 0)
                _exit(3);
            done += w;
        }
    _exit(n == 0 ? 10 + loopfast_fd_is_fast(c) : 4);
}

static void run(int optin)
{
    struct uring u;
    if (uring_setup(&u) < 0)
        SKIP("io_uring is not available here: %s", strerror(errno));
    struct sockaddr_storage addr;
    socklen_t len;
    int l;
    pid_t pid = fork_with_listener(optin, &addr, &len, &l);
    if (pid == 0)
        server(l, &u);
    close(u.fd);
    int fd = connect_to(&addr, len, optin);
    client_echo_rounds(fd, 20, optin ? "loopfast" : "kernel");
    int fast = loopfast_fd_is_fast(fd);
    close(fd);
    int st = child_status(pid);
    CHECK(st == 10 && fast == 0, "%s: server %d, client fast %d (both plain expected)",
          optin ? "loopfast" : "kernel", st, fast);
}

int main(void)
{
    alarm(20);
    run(0);
    run(1);
    return 0;
}
