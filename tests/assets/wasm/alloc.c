// alloc MIB: allocates and touches MIB MiB, one MiB at a time. Exits 3 and
// says so on stderr when an allocation fails (the memory limit).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    int wanted = argc > 1 ? atoi(argv[1]) : 64;
    for (int i = 0; i < wanted; i++) {
        char *block = malloc(1 << 20);
        if (!block) {
            fprintf(stderr, "allocation failed after %d MiB\n", i);
            return 3;
        }
        memset(block, 1, 1 << 20);
    }
    printf("allocated %d MiB\n", wanted);
    return 0;
}
