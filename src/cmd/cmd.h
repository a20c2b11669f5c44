// cmd.h: one entry point per subcommand, each in src/cmd/<name>.c.
// Each returns the process exit code (0 ok, 1 failure, 2 usage error) and
// handles its own --help.
#pragma once
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_verify_config(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_make_synthetic(int argc, char **argv);
int cmd_dataset(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_explain(int argc, char **argv);
int cmd_convert(int argc, char **argv);
