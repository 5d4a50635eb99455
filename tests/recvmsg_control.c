/* recvmsg on a unix socket goes through loopfast (it takes out what a
 * hand-off adds, handoff.c), with a larger control buffer of its own: what
 * the program gets must be what the kernel gives for the program's buffer.
 * Compared with the raw system call: descriptors that fit and those left
 * out (not open after), MSG_CTRUNC, msg_controllen, credentials before
 * the descriptors, for buffers from too small for any to ample. */
#include "helpers.h"
#include <sys/syscall.h>

#define SENT 3

struct outcome {
    ssize_t r;
    int flags, fds, creds, open_after;
    size_t controllen;
};

static void send_three(int u)
{
    int p[2], fds[SENT];
    CHECK(pipe(p) == 0, "pipe");
    fds[0] = p[0], fds[1] = p[1], fds[2] = p[0];
    union { char b[CMSG_SPACE(sizeof fds)]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof control);
    char x = 'x';
    struct iovec iov = { &x, 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.b,
                        .msg_controllen = sizeof control.b };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    CHECK(sendmsg(u, &m, 0) == 1, "sendmsg: %s", strerror(errno));
    close(p[0]);
    close(p[1]);
}

static struct outcome receive(int u, size_t room, int raw)
{
    union { char b[512]; struct cmsghdr align; } control;
    memset(&control, 0, sizeof control);
    char x;
    struct iovec iov = { &x, 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.b,
                        .msg_controllen = room };
    int before = count_open_fds();
    struct outcome o = { 0 };
    o.r = raw ? syscall(SYS_recvmsg, u, &m, 0) : recvmsg(u, &m, 0);
    o.flags = m.msg_flags;
    o.controllen = m.msg_controllen;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_type == SCM_CREDENTIALS)
            o.creds++;
        if (c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            o.fds++;
            close(fd);
        }
    }
    o.open_after = count_open_fds() - before;   /* any not given, left open */
    return o;
}

int main(void)
{
    alarm(20);
    size_t rooms[] = { CMSG_LEN(sizeof(int)), CMSG_SPACE(sizeof(int)), CMSG_SPACE(2 * sizeof(int)),
                       CMSG_SPACE(3 * sizeof(int)), CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int)),
                       CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(3 * sizeof(int)), 512 };
    for (int creds = 0; creds < 2; creds++)
        for (size_t i = 0; i < sizeof rooms / sizeof rooms[0]; i++) {
            struct outcome o[2];
            for (int raw = 0; raw < 2; raw++) {
                int sv[2];
                CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
                if (creds)
                    CHECK(setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &(int){ 1 }, sizeof(int)) == 0,
                          "SO_PASSCRED");
                send_three(sv[0]);
                o[raw] = receive(sv[1], rooms[i], raw);
                close(sv[0]);
                close(sv[1]);
            }
            CHECK(o[0].r == o[1].r && o[0].flags == o[1].flags && o[0].fds == o[1].fds &&
                      o[0].creds == o[1].creds && o[0].controllen == o[1].controllen &&
                      o[0].open_after == o[1].open_after,
                  "room %zu, credentials %d: loopfast r %zd flags %#x fds %d creds %d len %zu "
                  "left open %d; kernel r %zd flags %#x fds %d creds %d len %zu left open %d",
                  rooms[i], creds, o[0].r, o[0].flags, o[0].fds, o[0].creds, o[0].controllen,
                  o[0].open_after, o[1].r, o[1].flags, o[1].fds, o[1].creds, o[1].controllen,
                  o[1].open_after);
        }
    return 0;
}
