/* A process of another uid (nobody) attacks while opted-in connections run:
 * it squats offer names it predicts, answers every offer it can see with its
 * own rings, and watches its rings for the victim's data.  Every connection
 * must stay correct, and the attacker must learn nothing.  Runs as root. */
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <fcntl.h>

#include "helpers.h"

#define MARK "TOP-SECRET-PAYLOAD"
#define RING 4096

struct fake { int memfd; unsigned char *map; };
static struct fake fakes[2048];
static int nfakes, squats;
static unsigned long squatted[4096];   /* our own names: not worth attacking */

static socklen_t offer_addr(struct sockaddr_un *un, const char *name)
{
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    strncpy(un->sun_path + 1, name, sizeof un->sun_path - 2);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
}

/* Binds the offer names of the next socket inodes, before the victim does. */
static void squat_ahead(void)
{
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct stat st;
    fstat(probe, &st);
    close(probe);
    for (unsigned long i = 1; i <= 40; i++) {
        char name[64];
        struct sockaddr_un un;
        snprintf(name, sizeof name, "loopfast-offer-%lu", (unsigned long)st.st_ino + i);
        int u = socket(AF_UNIX, SOCK_STREAM, 0);
        if (squats < 4096 && bind(u, (struct sockaddr *)&un, offer_addr(&un, name)) == 0 &&
            listen(u, 4) == 0)
            squatted[squats++] = (unsigned long)st.st_ino + i;   /* kept open: the name stays taken */
        else
            close(u);
    }
}

/* Sends our own rings, made to look valid, to an offer we found. */
static void fake_answer(const char *name)
{
    unsigned long ino = strtoul(name + strlen("loopfast-offer-"), NULL, 10);
    for (int i = 0; i < squats; i++)
        if (squatted[i] == ino)
            return;
    if (nfakes >= 2048)
        return;
    struct sockaddr_un un;
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (connect(u, (struct sockaddr *)&un, offer_addr(&un, name)) < 0) {
        close(u);
        return;
    }
    int m = memfd_create("fake", MFD_ALLOW_SEALING);
    unsigned char *map = MAP_FAILED;
    if (m >= 0 && ftruncate(m, 4096 + 2 * RING) == 0)
        map = mmap(NULL, 4096 + 2 * RING, PROT_READ | PROT_WRITE, MAP_SHARED, m, 0);
    if (map == MAP_FAILED) {
        close(u);
        if (m >= 0)
            close(m);
        return;
    }
    fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    uint32_t hdr32[2] = { 0x6c6f6f70u, 1 };
    uint64_t size = RING;
    memcpy(map, hdr32, 8);
    memcpy(map + 8, &size, 8);
    struct { uint32_t magic, version; uint64_t ring_size; } a = { 0x6c6f6f70u, 1, RING };
    int fds[5] = { m, eventfd(0, 0), eventfd(0, 0), eventfd(0, 0), eventfd(0, 0) };
    char ctl[CMSG_SPACE(sizeof fds)];
    struct iovec iov = { &a, sizeof a };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(c), fds, sizeof fds);
    sendmsg(u, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    for (int i = 1; i < 5; i++)
        close(fds[i]);
    close(u);
    fakes[nfakes].memfd = m;
    fakes[nfakes++].map = map;
}

static void attack_offers(void)
{
    FILE *f = fopen("/proc/net/unix", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *at = strstr(line, "@loopfast-offer-");
        if (at) {
            at[strcspn(at, "\n")] = 0;
            fake_answer(at + 1);
        }
    }
    if (f)
        fclose(f);
}

static int leaked(void)
{
    for (int i = 0; i < nfakes; i++)
        if (memmem(fakes[i].map, 4096 + 2 * RING, MARK, strlen(MARK)))
            return 1;
    return 0;
}

static void attacker(int report, volatile int *stop)
{
    if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
        _exit(2);
    while (!*stop) {
        squat_ahead();
        attack_offers();
        usleep(1000);
    }
    int out[3] = { nfakes, squats, leaked() };
    write(report, out, sizeof out);
    _exit(0);
}

int main(void)
{
    if (getuid() != 0)
        SKIP("needs root to run the attacker as nobody");
    alarm(60);
    volatile int *stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int rep[2];
    CHECK(pipe(rep) == 0, "pipe");
    pid_t att = fork();
    if (att == 0)
        attacker(rep[1], stop);
    close(rep[1]);
    usleep(100000);
    int fast = 0;
    for (int i = 0; i < 60; i++) {
        pid_t srv;
        int fd = echo_connection(1, &srv);
        char msg[4000], back[4000];
        for (size_t k = 0; k < sizeof msg; k += strlen(MARK))
            memcpy(msg + k, MARK, sizeof msg - k < strlen(MARK) ? sizeof msg - k : strlen(MARK));
        CHECK(write_full(fd, msg, sizeof msg) == sizeof msg, "write %d", i);
        CHECK(read_full(fd, back, sizeof back) == sizeof back && !memcmp(msg, back, sizeof msg),
              "connection %d corrupted under attack", i);
        fast += loopfast_fd_is_fast(fd) == 1;
        close(fd);
        child_status(srv);
    }
    *stop = 1;
    int res[3] = { 0, 0, 1 };
    ssize_t got = read(rep[0], res, sizeof res);
    int st = child_status(att);
    CHECK(got == sizeof res, "no report from the attacker (exit status %d)", st);
    printf("attacker sent %d fake answers, squatted %d names; %d of 60 connections fast\n", res[0],
           res[1], fast);
    CHECK(res[0] > 0, "the attacker never reached an offer: the test proves nothing");
    CHECK(!res[2], "the attacker's rings received the victim's data");
    return 0;
}
