// write_file PATH TEXT: writes TEXT to PATH; exits 1 with the error if it cannot.
#include <stdio.h>
#include <string.h>
#include <errno.h>
int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: write_file PATH TEXT\n"); return 2; }
    FILE *out = fopen(argv[1], "w");
    if (!out) { fprintf(stderr, "cannot write %s: %s\n", argv[1], strerror(errno)); return 1; }
    fputs(argv[2], out);
    if (fclose(out) != 0) { fprintf(stderr, "cannot write %s: %s\n", argv[1], strerror(errno)); return 1; }
    printf("wrote %s\n", argv[1]);
    return 0;
}
