// Exits with the code given as argv[1]; "trap" aborts (a wasm trap) instead.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "trap") == 0) {
        fprintf(stderr, "about to abort\n");
        abort();
    }
    fprintf(stderr, "exiting\n");
    return argc > 1 ? atoi(argv[1]) : 0;
}
