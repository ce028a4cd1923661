// alloc MIB: allocates and touches MIB MiB, one MiB at a time. Exits 3 and
// says so on stderr when an allocation fails (the memory limit).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
// Kept reachable and read back below, so the compiler cannot drop the
// allocations (LLVM removes a malloc whose memory is never used).
static char *blocks[4096];
int main(int argc, char **argv) {
    int wanted = argc > 1 ? atoi(argv[1]) : 64;
    if (wanted > 4096) wanted = 4096;
    long sum = 0;
    for (int i = 0; i < wanted; i++) {
        blocks[i] = malloc(1 << 20);
        if (!blocks[i]) {
            fprintf(stderr, "allocation failed after %d MiB\n", i);
            return 3;
        }
        memset(blocks[i], i & 0x7f, 1 << 20);
        sum += blocks[i][i];
    }
    printf("allocated %d MiB\n", wanted);
    return sum < 0 ? 1 : 0;
}
