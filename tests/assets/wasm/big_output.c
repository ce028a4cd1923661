// big_output BYTES [stderr]: writes BYTES bytes of 'a' to stdout (or stderr);
// a negative BYTES writes forever.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    long total = argc > 1 ? atol(argv[1]) : 0;
    FILE *stream = (argc > 2 && strcmp(argv[2], "stderr") == 0) ? stderr : stdout;
    char buf[65536];
    memset(buf, 'a', sizeof buf);
    int forever = total < 0;
    while (forever || total > 0) {
        size_t n = forever || total >= (long)sizeof buf ? sizeof buf : (size_t)total;
        fwrite(buf, 1, n, stream);
        if (!forever) total -= n;
    }
    return 0;
}
