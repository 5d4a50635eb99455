/* The administrator's policy keeps chosen traffic on the kernel path: a port
 * (either end), an address, the program, the uid; everything else stays fast.
 * Each case runs in a child started with its LOOPFAST_EXCLUDE, since the
 * library reads its policy at start-up. */
#include "helpers.h"

static int pair_is_fast(void)
{
    int c, s;
    struct sockaddr_storage addr;
    socklen_t len;
    int l = listen_on(AF_INET, 1, &addr, &len);
    c = connect_to(&addr, len, 1);
    s = accept(l, NULL, NULL);
    char b;
    CHECK(write_full(c, "a", 1) == 1 && read_full(s, &b, 1) == 1, "exchange");
    CHECK(write_full(s, "b", 1) == 1 && read_full(c, &b, 1) == 1, "exchange back");
    int fast = loopfast_fd_is_fast(c) == 1 && loopfast_fd_is_fast(s) == 1;
    int port = ntohs(((struct sockaddr_in *)&addr)->sin_port);
    close(c);
    close(s);
    close(l);
    return fast ? port : -port;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "child"))
        return printf("%d\n", pair_is_fast()), 0;
    alarm(20);
    char cmd[512];
    const char *cases[][2] = {
        { "", "fast" },
        { "port 1-65535", "plain" },
        { "addr 127.0.0.1", "plain" },
        { "prog policy", "plain" },
        { "uid 0,uid 65534", "plain" },
        { "port 1-2; addr 127.9.9.9 # unrelated rules", "fast" },
        { "nonsense rule", "fast" },
    };
    if (getuid() != 0)
        cases[4][1] = "fast";   /* uid 0 does not match a non-root run */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cmd, sizeof cmd, "LOOPFAST_CONFIG=/dev/null LOOPFAST_EXCLUDE='%s' %s child 2>/dev/null",
                 cases[i][0], argv[0]);
        FILE *p = popen(cmd, "r");
        int port = 0;
        CHECK(p && fscanf(p, "%d", &port) == 1, "child for \"%s\"", cases[i][0]);
        pclose(p);
        const char *got = port > 0 ? "fast" : "plain";
        CHECK(!strcmp(got, cases[i][1]), "policy \"%s\": %s, expected %s", cases[i][0], got, cases[i][1]);
    }
    return 0;
}
