// The demo's WASI program: counts the lines and words of each file named in argv.
#include <stdio.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        FILE *in = fopen(argv[i], "r");
        if (!in) { perror(argv[i]); return 1; }
        int c, lines = 0, words = 0, inword = 0;
        while ((c = fgetc(in)) != EOF) {
            if (c == '\n') lines++;
            if (c == ' ' || c == '\n' || c == '\t') inword = 0;
            else if (!inword) { inword = 1; words++; }
        }
        fclose(in);
        printf("%s: %d lines, %d words (counted in wasm)\n", argv[i], lines, words);
    }
    return 0;
}
