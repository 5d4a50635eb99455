/*
 * replay.c - runs a fuzz target over every file of its corpus, without
 * libFuzzer: this is how `make check` replays what `make fuzz` found.
 * Exits 0 when every input ran (a crash or abort fails the test).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(void)
{
    DIR *d = opendir(CORPUS_DIR);
    if (!d) {
        fprintf(stderr, "no corpus at %s\n", CORPUS_DIR);
        return 77;
    }
    static uint8_t buf[1 << 20];
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", CORPUS_DIR, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        n++;
    }
    closedir(d);
    printf("replayed %d inputs from %s\n", n, CORPUS_DIR);
    return n ? 0 : 77;
}
