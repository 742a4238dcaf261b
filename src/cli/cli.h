/* The thaw command line: dispatches `thaw <command>` to the node, the
 * HTTP client commands and the local engine tools. */
#ifndef THAW_CLI_H
#define THAW_CLI_H

/* Exit codes scripts can rely on. */
enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_ERROR = 1,     /* the request failed or the server said no */
    CLI_EXIT_USAGE = 2,     /* bad command line */
    CLI_EXIT_NOTFOUND = 3,  /* the named deployment or object does not exist */
    CLI_EXIT_UNREACHABLE = 4, /* could not reach the server */
};

/* Runs the command named by argv[1]; returns the process exit code. */
int cli_main(int argc, char **argv);

#endif
