/* The thaw binary: every subcommand, `thaw serve` included, starts in cli. */
#include "cli/cli.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
