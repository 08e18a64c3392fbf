/* --device-memory SPEC=BYTES: parsing the caps, and bytes as text (twist/memory.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twist/error.h"
#include "twist/memory.h"

static const char *const BACKENDS[] = {"cpu", "opencl", "vulkan", "cuda"};

bool tw_device_spec_normalise(const char *spec, char *out, size_t capacity) {
    if (!spec || !out || capacity == 0) return false;
    const char *colon = strchr(spec, ':');
    const size_t name_length = colon ? (size_t)(colon - spec) : strlen(spec);
    int backend = -1;
    for (int b = 0; b < 4; b++)
        if (strlen(BACKENDS[b]) == name_length && strncmp(spec, BACKENDS[b], name_length) == 0)
            backend = b;
    if (backend < 0) return false;
    long index = 0;
    if (colon) {
        char *end = NULL;
        errno = 0;
        index = strtol(colon + 1, &end, 10);
        if (!isdigit((unsigned char)colon[1]) || *end != '\0' || errno || index < 0 ||
            index > 1000000)
            return false;
    }
    /* The registry names the one cpu device "cpu" (cpu:0 is the same device). */
    if (backend == 0) {
        if (index != 0) return false;
        return (size_t)snprintf(out, capacity, "cpu") < capacity;
    }
    return (size_t)snprintf(out, capacity, "%s:%ld", BACKENDS[backend], index) < capacity;
}

/* A whole number with an optional K, M or G (KiB, MiB, GiB: powers of 1024): "64M", "1048576",
 * "2GiB"; not "1.5G", so that a cap is an exact number of bytes. */
static bool parse_bytes(const char *text, uint64_t *out) {
    if (!isdigit((unsigned char)*text)) return false;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno) return false;
    uint64_t unit = 1;
    if (*end) {
        const char suffix = (char)toupper((unsigned char)*end);
        if (suffix == 'K') unit = 1ull << 10;
        else if (suffix == 'M') unit = 1ull << 20;
        else if (suffix == 'G') unit = 1ull << 30;
        else return false;
        end++;
        if (strcmp(end, "") != 0 && strcmp(end, "iB") != 0 && strcmp(end, "B") != 0)
            return false;
    }
    if (value == 0 || value > UINT64_MAX / unit) return false;
    *out = (uint64_t)value * unit;
    return true;
}

tw_status tw_memory_caps_add(tw_memory_caps *caps, const char *text) {
    if (!caps || !text)
        return tw_error(TW_ERR_INVALID_ARGUMENT, "tw_memory_caps_add: NULL argument");
    tw_memory_caps result = *caps;
    const char *item = text;
    for (;;) {
        const char *comma = strchr(item, ',');
        const size_t length = comma ? (size_t)(comma - item) : strlen(item);
        char copy[128];
        if (length == 0 || length >= sizeof copy)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "--device-memory '%s': expected SPEC=BYTES[,SPEC=BYTES...], e.g. "
                            "cpu=64M or opencl:0=1G", text);
        memcpy(copy, item, length);
        copy[length] = '\0';
        char *equals = strchr(copy, '=');
        if (!equals)
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "--device-memory '%s': expected SPEC=BYTES, e.g. cpu=64M", copy);
        *equals = '\0';
        char spec[32];
        if (!tw_device_spec_normalise(copy, spec, sizeof spec))
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "--device-memory '%s=%s': unknown device '%s' (expected cpu, "
                            "opencl:N, vulkan:N or cuda:N)", copy, equals + 1, copy);
        uint64_t bytes = 0;
        if (!parse_bytes(equals + 1, &bytes))
            return tw_error(TW_ERR_INVALID_ARGUMENT,
                            "--device-memory '%s=%s': the size must be a whole number of bytes "
                            "above 0, with an optional suffix K, M or G (e.g. 64M)",
                            copy, equals + 1);
        int slot = -1;
        for (int i = 0; i < result.count; i++)
            if (strcmp(result.caps[i].spec, spec) == 0) slot = i;
        if (slot < 0) {
            if (result.count == TW_MEMORY_CAPS_MAX)
                return tw_error(TW_ERR_INVALID_ARGUMENT,
                                "--device-memory: at most %d devices can be capped",
                                TW_MEMORY_CAPS_MAX);
            slot = result.count++;
        }
        snprintf(result.caps[slot].spec, sizeof result.caps[slot].spec, "%s", spec);
        result.caps[slot].bytes = bytes;
        if (!comma) break;
        item = comma + 1;
    }
    *caps = result;
    return TW_OK;
}

uint64_t tw_memory_caps_find(const tw_memory_caps *caps, const char *spec) {
    char normal[32];
    if (!caps || !tw_device_spec_normalise(spec, normal, sizeof normal)) return 0;
    for (int i = 0; i < caps->count; i++)
        if (strcmp(caps->caps[i].spec, normal) == 0) return caps->caps[i].bytes;
    return 0;
}

const char *tw_format_bytes(uint64_t bytes, char *out, size_t capacity) {
    if (bytes >= (1ull << 30))
        snprintf(out, capacity, "%.2f GiB", (double)bytes / (double)(1ull << 30));
    else if (bytes >= (1ull << 20))
        snprintf(out, capacity, "%.1f MiB", (double)bytes / (double)(1ull << 20));
    else if (bytes >= (1ull << 10))
        snprintf(out, capacity, "%.1f KiB", (double)bytes / 1024.0);
    else
        snprintf(out, capacity, "%llu B", (unsigned long long)bytes);
    return out;
}
