// Prints the value of each variable named in argv (NAME=value, or NAME unset).
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *value = getenv(argv[i]);
        if (value) printf("%s=%s\n", argv[i], value);
        else printf("%s unset\n", argv[i]);
    }
    return 0;
}
