/*
 * Sanitizer builds only: a program that leaks on purpose, so ctest can check that LeakSanitizer
 * still reports leaks in twist's own executables (test `sanitizer_reports_leaks`): the
 * dlclose() kept as a no-op by tools/lib/keep_libraries_loaded.c must not hide them, and neither
 * may tools/lib/lsan.supp.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Not static and not inlined into main, so the leak's stack names this frame. */
char *twist_leak_probe_allocate(size_t bytes);

char *twist_leak_probe_allocate(size_t bytes) {
    char *block = malloc(bytes);
    if (block) memset(block, 0x5a, bytes);
    return block;
}

int main(void) {
    volatile char *lost = twist_leak_probe_allocate(4096);
    printf("leak_probe: dropped a 4096-byte block at %p\n", (void *)lost);
    lost = NULL;
    return 0;
}
