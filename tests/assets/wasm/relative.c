// relative NAME: reads NAME relative to the working directory and prints it.
#include <stdio.h>
#include <string.h>
#include <errno.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    FILE *in = fopen(argv[1], "r");
    if (!in) { fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno)); return 1; }
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, stdout);
    return 0;
}
