/* Private to src/cli: the subcommand entry points. Each takes the argv that
 * follows the command name (argv[0] is the command itself) and returns an
 * exit code from enum cli_exit. */
#ifndef THAW_CLI_INT_H
#define THAW_CLI_INT_H

struct cli_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

#endif
