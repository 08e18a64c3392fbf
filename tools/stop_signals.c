/* Stop requests by signal (see stop_signals.h). Only async-signal-safe calls in the handler: the
 * note is formatted when the handlers are installed. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "stop_signals.h"

static volatile sig_atomic_t g_stop_signal = 0;
static char g_note[256];
static size_t g_note_length;

static void on_stop_signal(int sig) {
    if (g_stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    g_stop_signal = sig;
    ssize_t ignored = write(STDERR_FILENO, g_note, g_note_length);
    (void)ignored;
}

volatile sig_atomic_t *stop_signals_catch(const char *prog, const char *unit) {
    int length = snprintf(g_note, sizeof g_note,
                          "\n%s: signal received: stopping after the current %s and saving a "
                          "checkpoint (send it again to abort at once)\n", prog, unit);
    g_note_length = length < 0 ? 0 : (size_t)length < sizeof g_note ? (size_t)length
                                                                     : sizeof g_note - 1;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    return &g_stop_signal;
}

int stop_signals_received(void) { return g_stop_signal; }

const char *stop_signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP"
                                                                                  : "a signal";
}
