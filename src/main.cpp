#include "amosprep/cli.hpp"

int main(int argc, char** argv) { return amosprep::cli_main(argc, argv); }
