/* twist: the one clock for elapsed times (training progress, IST rounds, benchmarks, the
 * backends' timed kernel choices, tests). */
#ifndef TWIST_CLOCK_H
#define TWIST_CLOCK_H

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds on CLOCK_MONOTONIC from an arbitrary origin: differences are elapsed wall time,
 * unaffected by changes to the system date. */
double tw_now_seconds(void);

#ifdef __cplusplus
}
#endif

#endif
