/*
 * needed.c - which sanitizer runtimes a program is linked against (its
 * DT_NEEDED entries), so that `loopfast run` can keep them first in
 * LD_PRELOAD: AddressSanitizer refuses to start when another library is
 * loaded before it, and the sanitizers' interceptors must see the program's
 * calls before libloopfast.so does.
 */
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run.h"

static int read_at(int fd, void *buf, size_t n, off_t off)
{
    return pread(fd, buf, n, off) == (ssize_t)n ? 0 : -1;
}

int is_sanitizer_runtime(const char *path)
{
    static const char *const names[] = { "libasan.so", "libtsan.so", "liblsan.so",
                                         "libhwasan.so", "libubsan.so", "libmsan.so" };
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strncmp(base, names[i], strlen(names[i])))
            return 1;
    return 0;
}

/* Appends NAME and a colon to out (size bytes, kept NUL-terminated). */
static void append(char *out, size_t size, const char *name)
{
    size_t used = strlen(out), n = strlen(name);
    if (used + n + 2 <= size) {
        memcpy(out + used, name, n);
        out[used + n] = ':';
        out[used + n + 1] = 0;
    }
}

/* The DT_NEEDED names of a 64-bit ELF file that are sanitizer runtimes. */
static void scan(int fd, char *out, size_t size)
{
    Elf64_Ehdr eh;
    if (read_at(fd, &eh, sizeof eh, 0) < 0 || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
        eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_shentsize != sizeof(Elf64_Shdr) ||
        eh.e_shnum == 0 || eh.e_shnum > 4096)
        return;
    Elf64_Shdr *sh = calloc(eh.e_shnum, sizeof *sh);
    if (!sh || read_at(fd, sh, eh.e_shnum * sizeof *sh, (off_t)eh.e_shoff) < 0) {
        free(sh);
        return;
    }
    for (unsigned i = 0; i < eh.e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNAMIC || sh[i].sh_link >= eh.e_shnum)
            continue;
        const Elf64_Shdr *str = &sh[sh[i].sh_link];
        size_t count = sh[i].sh_size / sizeof(Elf64_Dyn);
        for (size_t k = 0; k < count && k < 4096; k++) {
            Elf64_Dyn d;
            if (read_at(fd, &d, sizeof d, (off_t)(sh[i].sh_offset + k * sizeof d)) < 0 ||
                d.d_tag == DT_NULL)
                break;
            char name[256] = "";
            if (d.d_tag != DT_NEEDED || d.d_un.d_val >= str->sh_size ||
                pread(fd, name, sizeof name - 1, (off_t)(str->sh_offset + d.d_un.d_val)) <= 0)
                continue;
            name[sizeof name - 1] = 0;
            if (is_sanitizer_runtime(name) && !strchr(name, ':') && !strchr(name, ' '))
                append(out, size, name);
        }
    }
    free(sh);
}

/* The file execvp would run for PROG, into path (size bytes). */
static int resolve(const char *prog, char *path, size_t size)
{
    if (strchr(prog, '/')) {
        if (strlen(prog) >= size)
            return -1;
        strcpy(path, prog);
        return 0;
    }
    const char *dirs = getenv("PATH");
    if (!dirs || !*dirs)
        dirs = "/bin:/usr/bin";
    for (const char *p = dirs; *p;) {
        size_t n = strcspn(p, ":");
        if ((size_t)snprintf(path, size, "%.*s/%s", (int)n, n ? p : ".", prog) < size &&
            access(path, X_OK) == 0)
            return 0;
        p += n + (p[n] != 0);
    }
    return -1;
}

void sanitizer_runtimes(const char *prog, char *out, size_t size)
{
    char path[4096];
    out[0] = 0;
    if (resolve(prog, path, sizeof path) < 0)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    scan(fd, out, size);
    close(fd);
}
