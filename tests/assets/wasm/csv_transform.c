// csv_transform IN OUT: IN has the header "name,a,b" and integer columns a, b;
// OUT gets "name,a,b,sum" with sum = a + b. Prints the number of rows.
#include <stdio.h>
#include <string.h>
#include <errno.h>
int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: csv_transform IN OUT\n"); return 2; }
    FILE *in = fopen(argv[1], "r");
    if (!in) { fprintf(stderr, "open %s: %s\n", argv[1], strerror(errno)); return 1; }
    FILE *out = fopen(argv[2], "w");
    if (!out) { fprintf(stderr, "open %s: %s\n", argv[2], strerror(errno)); return 1; }
    char line[1024];
    if (!fgets(line, sizeof line, in)) { fprintf(stderr, "empty input\n"); return 1; }
    fputs("name,a,b,sum\n", out);
    int rows = 0;
    while (fgets(line, sizeof line, in)) {
        char name[512];
        long a, b;
        if (sscanf(line, "%511[^,],%ld,%ld", name, &a, &b) != 3) {
            fprintf(stderr, "bad row: %s", line);
            return 1;
        }
        fprintf(out, "%s,%ld,%ld,%ld\n", name, a, b, a + b);
        rows++;
    }
    fclose(in);
    fclose(out);
    printf("%d rows\n", rows);
    return 0;
}
