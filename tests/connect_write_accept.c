/* One thread connects, writes, and only then accepts: no deadlock, the bytes
 * arrive, and the connection is on the fast path after the exchange. */
#include "helpers.h"

int main(void)
{
    struct sockaddr_storage addr;
    socklen_t len;
    alarm(20);
    int l = listen_on(AF_INET, 1, &addr, &len);
    int c = connect_to(&addr, len, 1);
    CHECK(write_full(c, "hello", 5) == 5, "write before accept");
    int a = accept(l, NULL, NULL);
    CHECK(a >= 0, "accept");
    char buf[16] = { 0 };
    CHECK(read_full(a, buf, 5) == 5 && !memcmp(buf, "hello", 5), "server read");
    CHECK(write_full(a, "world!", 6) == 6, "server write");
    CHECK(read_full(c, buf, 6) == 6 && !memcmp(buf, "world!", 6), "client read");
    CHECK(write_full(c, "again", 5) == 5 && read_full(a, buf, 5) == 5 && !memcmp(buf, "again", 5),
          "second exchange");
    CHECK(loopfast_fd_is_fast(c) == 1, "client not fast");
    CHECK(loopfast_fd_is_fast(a) == 1, "server not fast");
    close(c);
    CHECK(read(a, buf, 1) == 0, "EOF after close");
    CHECK(loopfast_fd_is_fast(a) == 1, "is_fast stays 1 after EOF");
    return 0;
}
