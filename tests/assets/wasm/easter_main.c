// Prints what easter() returns. easter() is not in this module: it is imported
// from the module named "easter", which the job lists in its imports
// (Bacalhau's wasm_dynamic_link scenario; the library is easter.wat, which
// returns 17).
#include <stdio.h>

__attribute__((import_module("easter"), import_name("easter"))) int easter(void);

int main(void) {
    printf("%d\n", easter());
    return 0;
}
