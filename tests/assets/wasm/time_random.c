// Prints the wall clock, the monotonic clock and 16 random bytes: the
// sources of nondeterminism a node must pin down for reproducible results.
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
int main(void) {
    struct timespec real, mono;
    clock_gettime(CLOCK_REALTIME, &real);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    unsigned char bytes[16];
    if (getentropy(bytes, sizeof bytes) != 0) { fprintf(stderr, "getentropy failed\n"); return 1; }
    printf("realtime %lld.%09ld\n", (long long)real.tv_sec, real.tv_nsec);
    printf("monotonic %lld.%09ld\n", (long long)mono.tv_sec, mono.tv_nsec);
    printf("random ");
    for (size_t i = 0; i < sizeof bytes; i++) printf("%02x", bytes[i]);
    printf("\nrand %d\n", (int)(arc4random() & 0x7fffffff));
    return 0;
}
