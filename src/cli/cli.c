/* Subcommand dispatch for the thaw binary: one table, one line a command. */
#include "cli/cli.h"
#include "cli/cli_cmds.h"
#include "cli/cli_int.h"
#include "runtime/runtime.h"

#include <stdio.h>
#include <string.h>

static int cmd_version(int argc, char **argv)
{
    puts("thaw 0.1.0");
    return CLI_EXIT_OK;
}

static const struct cli_command commands[] = {
    {"serve", cli_cmd_serve, "run a node (the gateway, autoscaler and instances)"},
    {"deploy", cli_cmd_deploy, "create or update a deployment from a manifest (-f FILE)"},
    {"ls", cli_cmd_ls, "list deployments and their instances"},
    {"status", cli_cmd_status, "show one deployment's instances, in-flight and held requests"},
    {"invoke", cli_cmd_invoke, "call a deployment (-d JSON or stdin; --stream for SSE)"},
    {"rm", cli_cmd_rm, "delete a deployment (drains, then stops its instances)"},
    {"versions", cli_cmd_versions, "a deployment's versions, traffic history and live stats"},
    {"traffic", cli_cmd_traffic, "show or set traffic weights (traffic NAME v3=90 v4=10)"},
    {"promote", cli_cmd_promote, "send all traffic to one version (promote NAME v4)"},
    {"rollback", cli_cmd_rollback, "back to the last version that had all the traffic"},
    {"canary", cli_cmd_canary, "step a version up with automatic analysis (canary NAME v4)"},
    {"model", cli_cmd_model, "inspect a GGUF file, tokenize text, generate test models"},
    {"generate", cli_cmd_generate, "run a GGUF model locally, streaming tokens (-m FILE -p TEXT)"},
    {"tenants", cli_cmd_tenants, "list, create or delete tenants"},
    {"keys", cli_cmd_keys, "create, list, revoke or rotate API keys"},
    {"audit", cli_cmd_audit, "show the audit trail, or verify its hash chain (verify)"},
    {"push", cli_cmd_push, "upload a file as an artifact (resumable) and print its digest"},
    {"jobs", cli_cmd_jobs, "submit, get, list or cancel async jobs (jobs submit NAME -d JSON)"},
    {"dlq", cli_cmd_dlq,
     "the dead-letter queue: list, show, replay or purge dead jobs and webhooks"},
    {"version", cmd_version, "print the version"},
};

static void usage(FILE *out)
{
    fputs("usage: thaw <command> [options]\n\ncommands:\n", out);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int cli_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    if (!strcmp(cmd, "--version")) cmd = "version";
    /* Hidden: the llm/embed template the node starts (not a user command). */
    if (!strcmp(cmd, RUNTIME_MODEL_COMMAND)) return runtime_model_main(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(commands[i].name, cmd)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "thaw: unknown command '%s'\n", cmd);
    usage(stderr);
    return CLI_EXIT_USAGE;
}
