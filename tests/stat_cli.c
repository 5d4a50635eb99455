/* `loopfast stat --json` lists this process's fast connection, both ends,
 * with the right addresses, pid, byte counts and memory held; a plain connection is not
 * listed; an end handed to a forked child (the parent's copy closed) is
 * listed under the child; one that made a single exchange, as OFFERED
 * (the client has not taken the rings); once closed, the connection is
 * not, nor a server's spare answer. */
#include <fcntl.h>

#include "helpers.h"

/* Does the end listed with `local` (a JSON member) say `what`? */
static int end_says(const char *cli, const char *local, const char *what)
{
    char *out = stat_json(cli), *row = strstr(out, local);
    if (!row)
        return 0;
    while (row > out && *row != '{')
        row--;
    char *end = strchr(row, '}');
    return end && memmem(row, (size_t)(end - row), what, strlen(what));
}

int main(int argc, char **argv)
{
    (void)argc;
    alarm(20);
    int c, s, pc, ps;
    fast_pair(AF_INET, 1, &c, &s);
    fast_pair(AF_INET, 0, &pc, &ps);
    char buf[1000];
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < 10; i++) {
        CHECK(write_full(c, buf, sizeof buf) == sizeof buf && read_full(s, buf, sizeof buf) == sizeof buf,
              "exchange");
    }
    struct sockaddr_in local;
    socklen_t len = sizeof local;
    getsockname(c, (struct sockaddr *)&local, &len);
    char cli[4200];
    cli_next_to(argv[0], cli, sizeof cli);
    char *out = stat_json(cli);
    char want[128];
    snprintf(want, sizeof want, "\"local\": \"127.0.0.1:%d\"", ntohs(local.sin_port));
    char *row = strstr(out, want);
    CHECK(row, "our client end (%s) is not listed:\n%s", want, out);
    char pid[64];
    snprintf(pid, sizeof pid, "\"pid\": %d,", (int)getpid());
    char *end = strchr(row, '}');
    CHECK(end && memmem(row, (size_t)(end - row), pid, strlen(pid)), "wrong pid in %.*s", (int)(end - row), row);
    CHECK(strstr(row, "\"side\": \"client\"") || memmem(out, (size_t)(row - out), "\"side\": \"client\"", 16),
          "side");
    long long tx = -1;
    char *t = strstr(row, "\"tx_bytes\": ");
    CHECK(t && t < end && sscanf(t, "\"tx_bytes\": %lld", &tx) == 1, "tx_bytes missing");
    CHECK(tx == 10000 || tx == 10001, "tx_bytes %lld for 10000 bytes written (+1 if fast_pair's byte took the ring)", tx);
    /* its memory: the header page and the ring pages 10 000 bytes touched
     * (3 of the client's ring, maybe 1 of the server's), not the 2 MiB
     * mapped */
    long long mem = -1;
    t = strstr(row, "\"mem_bytes\": ");
    CHECK(t && t < end && sscanf(t, "\"mem_bytes\": %lld", &mem) == 1, "mem_bytes missing");
    CHECK(mem >= 16384 && mem <= 24576, "mem_bytes %lld for a header and 3 or 4 ring pages", mem);
    getsockname(pc, (struct sockaddr *)&local, &len);
    snprintf(want, sizeof want, "\"local\": \"127.0.0.1:%d\"", ntohs(local.sin_port));
    CHECK(!strstr(out, want), "a plain connection is listed");

    /* A server end handed to a forked child, the parent's copy closed (a
     * server that forks per connection): listed under the child's pid. */
    int hold[2];
    CHECK(pipe(hold) == 0, "pipe");
    pid_t child = fork();
    CHECK(child >= 0, "fork");
    if (child == 0) {
        close(c);
        close(hold[1]);
        char b;
        int told = read(hold[0], &b, 1) == 0;   /* holds s until told */
        close(s);
        _exit(told ? 0 : 1);
    }
    close(hold[0]);
    close(s);
    int in_child = stat_ends_of(cli, child), in_parent = stat_ends_of(cli, getpid());
    close(hold[1]);
    CHECK(child_status(child) == 0, "child");
    CHECK(in_child == 1 && in_parent == 1,
          "a forked child's server end: %d ends listed under the child, %d under the parent "
          "(1 and 1: the server end and the client end)", in_child, in_parent);
    s = -1;

    /* A request read, not answered yet (a keep-alive connection idle after
     * its first request): the server answered the offer, the client has
     * not taken the rings: OFFERED, its client end with no process yet;
     * ESTAB once the client read the reply. */
    int one_c, one_s;
    close(accepted_pair(AF_INET, 1, &one_c, &one_s));
    char q = 'q';
    CHECK(write(one_c, &q, 1) == 1 && read(one_s, &q, 1) == 1, "request");
    getsockname(one_c, (struct sockaddr *)&local, &len);
    snprintf(want, sizeof want, "\"local\": \"127.0.0.1:%d\"", ntohs(local.sin_port));
    CHECK(end_says(cli, want, "\"state\": \"OFFERED\"") &&
              end_says(cli, want, "\"pid\": 0, \"process\": \"-\""),
          "an offered connection's client end:\n%s", stat_json(cli));
    CHECK(write(one_s, &q, 1) == 1 && read(one_c, &q, 1) == 1, "reply");
    CHECK(write(one_c, &q, 1) == 1 && read(one_s, &q, 1) == 1, "second request");
    CHECK(end_says(cli, want, "\"state\": \"ESTAB\""), "the client end after its exchange:\n%s",
          stat_json(cli));
    close(one_c);
    close(one_s);

    /* Closed (its memory not yet released: this process has not blocked
     * since), and a spare made by accept() on an empty listener. */
    close(c);
    struct sockaddr_storage addr;
    int l = listen_on(AF_INET, 1, &addr, &len);
    CHECK(fcntl(l, F_SETFL, O_NONBLOCK) == 0 && accept(l, NULL, NULL) < 0 && errno == EAGAIN,
          "accept on an empty listener");
    out = stat_json(cli);
    CHECK(!strstr(out, pid), "a closed connection or a spare is listed:\n%s", out);
    return 0;
}
