#include "amosprep/cli.hpp"

#include <iostream>

#include "amosprep/error.hpp"

namespace amosprep {

int cli_main(int argc, char** argv) {
  (void)argv;
  if (argc < 2) {
    std::cerr << "usage: amos-prep <synth|convert|verify|plan_and_preprocess|run|qa> [options]\n";
    return kExitUsage;
  }
  return kExitUsage;
}

}  // namespace amosprep
