/* Neighbours attack while connections run: one process of another uid
 * (nobody) and one of our own uid, forked before any connection exists, so
 * that neither holds a socket of ours.  Each squats offer names it predicts
 * and keeps them: the answer a server sends to such a name (a client that
 * made no offer) is mapped, its client line set ready and switched, a fake
 * proof sent back.  Each answers every offer it sees in /proc/net/unix with
 * rings of its own, in both protocol versions, the newer one with an epoll
 * of its own as proof.  Every connection must deliver every byte, the
 * attackers' rings must never see the data, and with the attackers gone,
 * connections become fast again.  Runs as root (to have a second uid). */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <fcntl.h>

#include "helpers.h"

#define MARK "TOP-SECRET-PAYLOAD"
#define RING 4096
#define MAGIC 0x6c6f6f70u
#define CLIENT_LINE 64   /* struct lf_shared: the client's struct lf_side (ready, tx_state) */

struct seen { unsigned char *map; size_t len; };
static struct seen maps[4096];
static int nmaps, fakes, stolen, squats;
static int squat_fd[4096];
static unsigned long squatted[4096];   /* our own names: not worth attacking */

static socklen_t offer_addr(struct sockaddr_un *un, const char *name)
{
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    strncpy(un->sun_path + 1, name, sizeof un->sun_path - 2);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
}

static void remember(unsigned char *map, size_t len)
{
    if (nmaps < 4096)
        maps[nmaps++] = (struct seen){ map, len };
    else
        munmap(map, len);
}

static void send_with_fds(int u, const void *msg, size_t len, const int *fds, int n)
{
    char ctl[CMSG_SPACE(8 * sizeof(int))];
    struct iovec iov = { (void *)msg, len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl,
                        .msg_controllen = CMSG_SPACE(n * sizeof(int)) };
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    sendmsg(u, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Binds the offer names of the next socket inodes, before their owners. */
static void squat_ahead(void)
{
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct stat st;
    fstat(probe, &st);
    close(probe);
    for (unsigned long i = 1; i <= 40 && squats < 400; i++) {
        char name[64];
        struct sockaddr_un un;
        snprintf(name, sizeof name, "loopfast-offer-%lu", (unsigned long)st.st_ino + i);
        int u = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (squats < 4096 && bind(u, (struct sockaddr *)&un, offer_addr(&un, name)) == 0 &&
            listen(u, 4) == 0) {
            squat_fd[squats] = u;   /* kept open: the name stays taken */
            squatted[squats++] = (unsigned long)st.st_ino + i;
        } else {
            close(u);
        }
    }
}

/* A server answered one of our names: map its rings, claim to read them and
 * to write there, and prove it with a socket of our own. */
static void steal_answer(int u)
{
    struct { uint32_t magic, version; uint64_t ring_size; } a;
    char ctl[CMSG_SPACE(8 * sizeof(int))];
    struct iovec iov = { &a, sizeof a };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl };
    usleep(1000);
    if (recvmsg(u, &m, MSG_DONTWAIT) != sizeof a || !CMSG_FIRSTHDR(&m))
        return;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int)), fds[8];
    memcpy(fds, CMSG_DATA(c), n * sizeof(int));
    struct stat st;
    unsigned char *map = MAP_FAILED;
    if (n > 0 && fstat(fds[0], &st) == 0 && st.st_size > 0)
        map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    char path[64], target[64] = "";
    snprintf(path, sizeof path, "/proc/self/fd/%d", n > 0 ? fds[0] : -1);
    if (readlink(path, target, sizeof target - 1) > 0 && strstr(target, "memfd:loopfast"))
        stolen++;   /* a server's answer, not the other attacker's */
    if (map != MAP_FAILED) {
        uint32_t one = 1;
        memcpy(map + CLIENT_LINE + 4, &one, 4);   /* tx_state: TX_RING */
        __atomic_store_n((uint32_t *)(map + CLIENT_LINE), 1, __ATOMIC_RELEASE);   /* ready */
        remember(map, (size_t)st.st_size);
    }
    int mine = socket(AF_INET, SOCK_STREAM, 0);
    uint32_t proof[2] = { MAGIC, a.version };
    send_with_fds(u, proof, sizeof proof, &mine, 1);
    close(mine);
    for (int i = 1; i < n && i < 8; i++)   /* ring every doorbell: wake the server */
        write(fds[i], &(uint64_t){ 1 }, 8);
}

static void fake_answer(const char *name, uint32_t version, int nfds);

/* A race won, as told by the victim: squat the name of a client that makes
 * no offer (so that its server answers us), or answer an offer before its
 * server does. */
static void act_as_told(int tell, int ack)
{
    unsigned long told[2];   /* inode, answer (1) or squat (0) */
    if (read(tell, told, sizeof told) != sizeof told || squats >= 4096)
        return;
    unsigned long ino = told[0];
    char name[64];
    struct sockaddr_un un;
    snprintf(name, sizeof name, "loopfast-offer-%lu", ino);
    if (told[1]) {
        fake_answer(name, 1, 5);
        fake_answer(name, 2, 6);
        write(ack, "k", 1);
        return;
    }
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (bind(u, (struct sockaddr *)&un, offer_addr(&un, name)) == 0 && listen(u, 4) == 0) {
        squat_fd[squats] = u;
        squatted[squats++] = ino;
    } else {
        close(u);
    }
    write(ack, "k", 1);
}

static void serve_squats(void)
{
    for (int i = 0; i < squats; i++) {
        int u = accept4(squat_fd[i], NULL, NULL, SOCK_NONBLOCK);
        if (u >= 0) {
            steal_answer(u);
            close(u);
        }
    }
}

/* One fake answer in a protocol version: our own rings, made to look valid. */
static void fake_answer(const char *name, uint32_t version, int nfds)
{
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
    struct { uint32_t magic, version; uint64_t ring_size; } a = { MAGIC, version, RING };
    memcpy(map, &a, sizeof a);
    int ep = epoll_create1(0), own = socket(AF_INET, SOCK_STREAM, 0);
    epoll_ctl(ep, EPOLL_CTL_ADD, own, &(struct epoll_event){ .events = EPOLLIN });
    int fds[6] = { m, eventfd(0, 0), eventfd(0, 0), eventfd(0, 0), eventfd(0, 0), ep };
    send_with_fds(u, &a, sizeof a, fds, nfds);
    for (int i = 1; i < 6; i++)
        close(fds[i]);
    close(own);
    close(u);
    close(m);
    fakes++;
    remember(map, 4096 + 2 * RING);
}

static void attack_offers(void)
{
    FILE *f = fopen("/proc/net/unix", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *at = strstr(line, "@loopfast-offer-");
        if (!at)
            continue;
        at[strcspn(at, "\n")] = 0;
        unsigned long ino = strtoul(at + strlen("@loopfast-offer-"), NULL, 10);
        int ours = 0;
        for (int i = 0; i < squats; i++)
            ours |= squatted[i] == ino;
        if (!ours && nmaps < 4000) {
            fake_answer(at + 1, 1, 5);   /* the first protocol: no proofs */
            fake_answer(at + 1, 2, 6);   /* the second: a proof of our own */
        }
    }
    if (f)
        fclose(f);
}

static int leaked(void)
{
    for (int i = 0; i < nmaps; i++)
        if (memmem(maps[i].map, maps[i].len, MARK, strlen(MARK)))
            return 1;
    return 0;
}

static void attacker(int as_nobody, int report, int tell, int ack, volatile int *stop)
{
    if (as_nobody && (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534)))
        _exit(2);
    prctl(PR_SET_PDEATHSIG, SIGKILL);   /* after the uid change, which clears it */
    if (getppid() == 1)
        _exit(2);
    fcntl(tell, F_SETFL, O_NONBLOCK);
    while (!*stop) {
        act_as_told(tell, ack);
        squat_ahead();
        attack_offers();
        serve_squats();
        usleep(500);
    }
    int out[4] = { fakes, squats, stolen, leaked() };
    write(report, out, sizeof out);
    _exit(0);
}

/* One echo connection, the client opted in or not (the server always is):
 * every byte must come back.  Returns the client's loopfast_fd_is_fast,
 * and the server's in *server_fast. */
static int one_connection(int client_optin, int i, int *server_fast, const int *attacker)
{
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len), gate[2];
    CHECK(pipe(gate) == 0, "pipe");
    pid_t srv = fork();   /* before the client socket exists: it must not hold a copy */
    CHECK(srv >= 0, "fork");
    if (srv == 0) {
        char go;
        alarm(60);
        close(gate[1]);
        if (read(gate[0], &go, 1) != 1)
            _exit(5);
        echo_server(l);
    }
    close(l);
    close(gate[0]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0 && (!client_optin || opt_in(fd) == 0), "socket");
    struct stat sst;
    char ack;
    unsigned long told[2] = { 0, (unsigned long)client_optin };
    CHECK(fstat(fd, &sst) == 0, "fstat");
    told[0] = sst.st_ino;
    /* The attacker wins the race: it squats a plain client's name before
     * the connection exists, or answers an opted-in client's offer before
     * the server accepts. */
    if (attacker && !client_optin)
        CHECK(write(attacker[0], told, sizeof told) == sizeof told && read(attacker[1], &ack, 1) == 1,
              "squatter");
    CHECK(connect(fd, (struct sockaddr *)&addr, len) == 0, "connect: %s", strerror(errno));
    if (attacker && client_optin)
        CHECK(write(attacker[0], told, sizeof told) == sizeof told && read(attacker[1], &ack, 1) == 1,
              "impostor");
    CHECK(write(gate[1], "g", 1) == 1, "gate");   /* now the server accepts */
    close(gate[1]);
    struct timeval tv = { 5, 0 };   /* a hijacked connection fails, not hangs */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char msg[4000], back[4000];
    for (size_t k = 0; k < sizeof msg; k += strlen(MARK))
        memcpy(msg + k, MARK, sizeof msg - k < strlen(MARK) ? sizeof msg - k : strlen(MARK));
    for (int round = 0; round < 3; round++) {
        CHECK(write_full(fd, msg, sizeof msg) == sizeof msg, "write %d", i);
        CHECK(read_full(fd, back, sizeof back) == sizeof back && !memcmp(msg, back, sizeof msg),
              "connection %d (client %s) corrupted or stalled under attack", i,
              client_optin ? "opted in" : "plain");
    }
    int fast = loopfast_fd_is_fast(fd) == 1;
    close(fd);
    int st = child_status(srv);
    CHECK(st == 10 || st == 11, "echo server %d failed: %d", i, st);
    *server_fast = st == 11;
    return fast;
}

int main(void)
{
    if (getuid() != 0)
        SKIP("needs root to run one attacker as nobody");
    alarm(120);
    volatile int *stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int rep[2][2], tell[2][2], ack[2][2], squatter[2][2];
    pid_t att[2];
    for (int a = 0; a < 2; a++) {
        CHECK(pipe(rep[a]) == 0 && pipe(tell[a]) == 0 && pipe(ack[a]) == 0, "pipe");
        att[a] = fork();
        if (att[a] == 0)
            attacker(a == 0, rep[a][1], tell[a][0], ack[a][1], stop);
        close(rep[a][1]);
        squatter[a][0] = tell[a][1];
        squatter[a][1] = ack[a][0];
    }
    usleep(100000);
    /* Opted-in clients an attacker answers first, and plain ones whose name
     * an attacker squats; the attackers roam meanwhile. */
    int fast = 0, sfast, plain_client_fast = 0;
    for (int i = 0; i < 80; i++) {
        int optin = i % 2 == 0;
        int got = one_connection(optin, i, &sfast, squatter[(i / 2) % 2]);
        fast += optin && got;
        plain_client_fast += !optin && sfast;
    }
    *stop = 1;
    for (int a = 0; a < 2; a++) {
        int res[4] = { 0, 0, 0, 1 };
        ssize_t got = read(rep[a][0], res, sizeof res);
        int st = child_status(att[a]);
        CHECK(got == sizeof res, "no report from attacker %d (exit status %d)", a, st);
        printf("attacker %s: %d fake answers, %d names squatted, %d server answers received\n",
               a == 0 ? "of uid nobody" : "of our own uid", res[0], res[1], res[2]);
        CHECK(res[0] > 0, "attacker %d never reached an offer: the test proves nothing", a);
        CHECK(!res[3], "attacker %d's rings received the victims' data", a);
        CHECK(res[2] > 0, "no server ever answered squatter %d: the test proves nothing", a);
    }
    printf("under attack: %d of 40 opted-in connections fast\n", fast);
    CHECK(!plain_client_fast, "%d servers believed a squatter and called a plain client fast",
          plain_client_fast);
    /* With the neighbours gone, the proofs cost nothing in fast connections. */
    int both = 0;
    for (int i = 0; i < 20; i++)
        both += one_connection(1, i, &sfast, NULL) && sfast;
    printf("without attackers: %d of 20 connections fast at both ends\n", both);
    CHECK(both == 20, "only %d of 20 connections fast at both ends", both);
    return 0;
}
