#pragma once
// The amos-prep command line: subcommands synth, convert, verify, plan_and_preprocess, run, qa.

namespace amosprep {

/// Parses argv, runs the subcommand and returns the process exit code (see error.hpp).
int cli_main(int argc, char** argv);

}  // namespace amosprep
