/* A blocked call spins only while spinning pays (docs/design.md, 6).  An
 * echo server in blocking reads, then one in epoll_wait, gets PACED requests 3 ms apart, with
 * LOOPFAST_SPIN_US=1000: every spin would run out, so spinning before each
 * sleep would burn PACED ms of its CPU for nothing.  Its CPU meanwhile must
 * stay within half of that above the kernel's.  Then ROUNDS round trips back
 * to back: its spins pay again and must come back, so that it sleeps (a
 * voluntary context switch) in at most half of them, where without a spin
 * it sleeps in each (a machine crowded for a moment stops spinning too:
 * about a tenth was seen).  The kernel's figures are printed beside. */
#include "helpers.h"

#define SPIN_US 1000
#define PACED 100
#define GAP_US 3000
#define ROUNDS 2000

struct cost { long long cpu_ns; long switches; };

static long switches_of(pid_t pid)
{
    long n = voluntary_switches(pid, 0);
    CHECK(n >= 0, "no switches for process %d", (int)pid);
    return n;
}

/* The server's CPU over the paced requests; its sleeps over the round
 * trips that follow. */
static struct cost serve_paced_then_busy(int optin, void (*server)(int listener))
{
    pid_t srv;
    int fd = connect_to_forked(optin, server, &srv);
    client_echo_rounds(fd, 3, "warm-up");
    CHECK(loopfast_fd_is_fast(fd) == optin, "fast %d", loopfast_fd_is_fast(fd));
    struct cost c;
    long long cpu = cpu_ns_of(srv);
    for (int i = 0; i < PACED; i++) {
        usleep(GAP_US);
        client_echo_rounds(fd, 1, "paced");
    }
    c.cpu_ns = cpu_ns_of(srv) - cpu;
    long sw = switches_of(srv);
    client_echo_rounds(fd, ROUNDS, "back to back");
    c.switches = switches_of(srv) - sw;
    close(fd);
    int st;
    CHECK(waitpid(srv, &st, 0) == srv && WIFEXITED(st) && WEXITSTATUS(st) == 10 + optin,
          "server ended with status %#x", st);
    return c;
}

static void compare(const char *how, void (*server)(int listener))
{
    struct cost kernel = serve_paced_then_busy(0, server), fast = serve_paced_then_busy(1, server);
    long long budget_ns = (long long)PACED * SPIN_US * 1000;
    printf("server in %s: CPU over %d requests %d us apart: kernel %.1f ms, loopfast %.1f ms "
           "(spinning %d us before each sleep: %.0f ms more); its sleeps in %d round trips "
           "back to back: kernel %ld, loopfast %ld\n",
           how, PACED, GAP_US, kernel.cpu_ns / 1e6, fast.cpu_ns / 1e6, SPIN_US, budget_ns / 1e6,
           ROUNDS, kernel.switches, fast.switches);
    CHECK(fast.cpu_ns <= kernel.cpu_ns + budget_ns / 2,
          "%s: the server spun through paced requests: %.1f ms of CPU (kernel %.1f ms)", how,
          fast.cpu_ns / 1e6, kernel.cpu_ns / 1e6);
    CHECK(fast.switches * 2 <= ROUNDS,
          "%s: the server's spin did not come back once requests came back to back: %ld "
          "sleeps in %d round trips (kernel %ld)", how, fast.switches, ROUNDS, kernel.switches);
}

int main(int argc, char **argv)
{
    (void)argc;
    run_with_spin_us(argv, "1000");
    alarm(60);
    compare("read()", echo_server);
    compare("epoll_wait()", epoll_echo_server);
    return 0;
}
