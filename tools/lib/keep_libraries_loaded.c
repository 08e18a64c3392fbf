/*
 * Linked into every executable of a sanitizer build (TWIST_SANITIZE with address or leak), never
 * into libtwist or a Release build: a dlclose() that keeps the library mapped.
 *
 * Why: the Vulkan and OpenCL loaders dlopen() their drivers (lavapipe, PoCL, radeon, ...) and
 * dlclose() them when the instance or the last context goes away, long before exit, when
 * LeakSanitizer looks for leaks. Memory a driver allocated once and keeps in its own globals (a
 * pthread_once initialiser in lavapipe that runs on some CPUs only, for example) is then reported
 * as a direct leak, because the globals that pointed to it are no longer mapped, and the frames of
 * its allocation stack have no module name, so no suppression by library can match it. Keeping
 * every dynamically loaded library mapped until exit is what the Vulkan loader's own
 * VK_LOADER_DISABLE_DYNAMIC_LIBRARY_UNLOADING does (loaders newer than Debian 12's), and Open MPI's
 * mca_base_component_disable_dlclose: LeakSanitizer then scans the drivers' globals like those of
 * any linked library, so what a driver still holds is not a leak, and a real leak inside a driver
 * is reported with its library's name. Leaks in twist's own code are reported as before.
 *
 * How: the executable's definition comes first in the dynamic linker's lookup order, ahead of
 * libasan's interceptor and libc, for every library's call to dlclose (the executable exports it
 * with -Wl,--export-dynamic-symbol=dlclose). Libraries' destructors then run at exit, as for the
 * libraries an executable links directly.
 */
int dlclose(void *handle);

int dlclose(void *handle) {
    (void)handle;
    return 0;
}
