#include "amosprep/cli.hpp"
#include "amosprep/pages.hpp"

int main(int argc, char** argv) {
  amosprep::apply_page_choice(argv);  // may re-execute the program with huge pages
  return amosprep::cli_main(argc, argv);
}
