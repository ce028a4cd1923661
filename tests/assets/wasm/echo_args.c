// Prints each argv entry (including argv[0]) on its own line as [i]=value.
#include <stdio.h>
int main(int argc, char **argv) {
    for (int i = 0; i < argc; i++) printf("[%d]=%s\n", i, argv[i]);
    return 0;
}
