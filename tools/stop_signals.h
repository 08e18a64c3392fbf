/* SIGINT, SIGTERM and SIGHUP for the commands that run training (train, ist, dp): the first
 * signal asks the run to stop at the next safe point (after the current step or round) and save
 * a checkpoint; the library polls the flag. A second signal of any of the three ends the process
 * at once by the signal's default action. */
#ifndef TWIST_TOOLS_STOP_SIGNALS_H
#define TWIST_TOOLS_STOP_SIGNALS_H

#include <signal.h>

/* Installs the handlers. prog ("twist train") and unit ("step", "round") make the note the
 * handler writes to stderr. Returns the flag to hand to the library: 0, or the signal number. */
volatile sig_atomic_t *stop_signals_catch(const char *prog, const char *unit);

/* The signal that asked to stop, 0 when none did. */
int stop_signals_received(void);

/* "SIGINT", "SIGTERM", "SIGHUP". */
const char *stop_signal_name(int sig);

#endif
