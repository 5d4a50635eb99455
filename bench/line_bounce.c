/*
 * line_bounce.c - what one cache line costs to cross between two processes
 * right now: they bounce a counter through shared memory (each waits for
 * the other's value, then stores the next), and the mean round trip of each
 * slice is printed.  Every fast path between two cores pays this at least
 * once a message; on a virtual machine it moves with where the host puts
 * the vCPUs (docs/performance.md: 180 or 700 ns here, flipping within a
 * second), which is why `loopfast bench` alternates loopfast and the ring.
 * Run: build/bench_line_bounce [SLICES [MS]]   (default 20 slices of 100 ms)
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_common.h"

struct lines {
    _Alignas(64) _Atomic uint64_t ping;
    _Alignas(64) _Atomic uint64_t pong;
    _Alignas(64) _Atomic int stop;
};

int main(int argc, char **argv)
{
    int slices = argc > 1 ? atoi(argv[1]) : 20, ms = argc > 2 ? atoi(argv[2]) : 100;
    if (slices < 1 || slices > 10000 || ms < 1 || ms > 10000) {
        fprintf(stderr, "usage: bench_line_bounce [SLICES [MS]] (1-10000 each)\n");
        return 2;
    }
    struct lines *l = mmap(NULL, sizeof *l, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                           -1, 0);
    if (l == MAP_FAILED) {
        perror("bench_line_bounce: mmap");
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror("bench_line_bounce: fork");
        return 1;
    }
    if (pid == 0) {   /* echo each new value back, until told or orphaned */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        uint64_t seen = 0;
        while (!atomic_load(&l->stop)) {
            uint64_t v = atomic_load(&l->ping);
            if (v != seen)
                atomic_store(&l->pong, seen = v);
        }
        _exit(0);
    }
    printf("cache-line round trip between two processes, ns, %d slices of %d ms:\n", slices, ms);
    for (int s = 0; s < slices; s++) {
        uint64_t start = now_ns(), n = 0, v = atomic_load(&l->ping);
        while (now_ns() - start < (uint64_t)ms * 1000000u) {
            atomic_store(&l->ping, ++v);
            while (atomic_load(&l->pong) != v)
                ;
            n++;
        }
        printf("%s%.0f", s ? " " : "", (double)(now_ns() - start) / (double)n);
        fflush(stdout);
    }
    printf("\n");
    atomic_store(&l->stop, 1);
    waitpid(pid, NULL, 0);
    return 0;
}
