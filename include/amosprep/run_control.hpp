#pragma once
// Cooperative stop: SIGTERM / SIGINT / SIGUSR1 set a flag; the pipeline stops taking new cases, finishes the
// in-flight write atomically and exits with kExitInterrupted so that a rerun resumes.

namespace amosprep {

/// Installs the handlers (idempotent).
void install_stop_handlers();
/// True once a stop signal arrived (async-signal-safe flag).
bool stop_requested();
/// The signal number that requested the stop (0 if none).
int stop_signal();
/// For tests: request or clear a stop without a signal.
void set_stop_requested(bool on);

}  // namespace amosprep
