/* twist: a device's peak FP32 GFLOP/s and memory bandwidth, and where they come from.
 *
 * "spec": from the driver's properties (tw_device_info.peak_gflops_f32 / peak_gbps: CUDA's SM
 * count, clock, memory clock and bus width; OpenCL GPUs whose FP32 lanes per compute unit are
 * known). "measured": for devices whose driver does not tell (CPUs, PoCL, lavapipe, Vulkan),
 * a short GEMM and a buffer copy timed once, cached in <twist cache dir>/peaks.json keyed by
 * device name and driver. A measured GFLOP/s is what twist's own GEMM reaches there, not a
 * theoretical peak: "% of peak" against it says how far an op is from the best GEMM rate. */
#ifndef TWIST_PEAK_H
#define TWIST_PEAK_H

#include "twist/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tw_peak_source { TW_PEAK_UNKNOWN = 0, TW_PEAK_SPEC, TW_PEAK_MEASURED } tw_peak_source;

typedef struct tw_device_peak {
    double gflops; /* FP32 GFLOP/s; 0 when unknown */
    double gbps;   /* memory bandwidth, GB/s; 0 when unknown */
    tw_peak_source gflops_source, gbps_source;
} tw_device_peak;

/* "spec", "measured", "unknown". */
const char *tw_peak_source_name(tw_peak_source source);

/* The spec values of info, else values measured earlier and cached, else unknown (0). Reads
 * the cache only; never measures. */
void tw_device_peak_get(const tw_device_info *info, tw_device_peak *out);

/* Measures what the spec does not give, on an open device: the best of three 2048^3 GEMMs
 * (1024^3 on CPU-type devices) and of three copies of a 64 MiB buffer (GB/s counts the bytes
 * read and written), and caches the result. Takes well under a second on a GPU, a few on a
 * CPU-type device. */
tw_status tw_device_peak_measure(tw_device *device, tw_device_peak *out);

#ifdef __cplusplus
}
#endif

#endif
