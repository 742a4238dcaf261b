/* Private to src/cli: entry points of the subcommands (argv[0] is the
 * command name), each returning an exit code from enum cli_exit. */
#ifndef THAW_CLI_CMDS_H
#define THAW_CLI_CMDS_H

int cli_cmd_serve(int argc, char **argv);
int cli_cmd_deploy(int argc, char **argv);
int cli_cmd_ls(int argc, char **argv);
int cli_cmd_status(int argc, char **argv);
int cli_cmd_invoke(int argc, char **argv);
int cli_cmd_rm(int argc, char **argv);
int cli_cmd_tenants(int argc, char **argv);
int cli_cmd_keys(int argc, char **argv);
int cli_cmd_audit(int argc, char **argv);
int cli_cmd_push(int argc, char **argv); /* cmd_push.c (artifacts) */
int cli_cmd_jobs(int argc, char **argv);     /* cmd_jobs.c (jobs) */
int cli_cmd_dlq(int argc, char **argv);      /* cmd_jobs.c (jobs) */
int cli_cmd_model(int argc, char **argv);    /* cmd_model.c (engine) */
int cli_cmd_generate(int argc, char **argv); /* cmd_generate.c (engine) */
int cli_cmd_versions(int argc, char **argv); /* cmd_versions.c (versions, traffic) */
int cli_cmd_traffic(int argc, char **argv);
int cli_cmd_promote(int argc, char **argv);
int cli_cmd_rollback(int argc, char **argv);
int cli_cmd_canary(int argc, char **argv);

#endif
