// big_output BYTES [stderr]: writes BYTES bytes of 'a' to stdout (or stderr).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    long total = argc > 1 ? atol(argv[1]) : 0;
    FILE *stream = (argc > 2 && strcmp(argv[2], "stderr") == 0) ? stderr : stdout;
    char buf[65536];
    memset(buf, 'a', sizeof buf);
    while (total > 0) {
        size_t n = total < (long)sizeof buf ? (size_t)total : sizeof buf;
        fwrite(buf, 1, n, stream);
        total -= n;
    }
    return 0;
}
