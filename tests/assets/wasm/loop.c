// Spins forever: only an interruption (timeout, cancel) ends it.
#include <stdio.h>
int main(void) {
    printf("looping\n");
    fflush(stdout);
    volatile unsigned long counter = 0;
    for (;;) counter++;
}
