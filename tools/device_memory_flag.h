/* --device-memory SPEC=BYTES, shared by `twist train`, `twist ist` and `twist dp`: caps on what
 * twist may allocate on a device, to emulate a smaller one (twist/memory.h). */
#ifndef TWIST_TOOLS_DEVICE_MEMORY_FLAG_H
#define TWIST_TOOLS_DEVICE_MEMORY_FLAG_H

#include "args.h"
#include "twist/memory.h"

/* The option's table entry; values are collected in *list (the flag may be repeated). */
arg_spec device_memory_spec(arg_string_list *list);

/* Parses every value into caps and checks that each capped device is one of `devices` ("auto"
 * stands for the device it resolves to). Prints a usage error naming --device-memory and
 * returns CLI_EXIT_USAGE when not; CLI_EXIT_OK otherwise. */
int device_memory_caps(const char *prog, const arg_string_list *list,
                       const char *const *devices, int device_count, tw_memory_caps *caps);

#endif
