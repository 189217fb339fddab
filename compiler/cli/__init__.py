"""The `ftc` command line: one module per subcommand, all thin.

`main` (compile, validate, schema, init) formats diagnostics and sets exit codes; `estimate_cmd` and
`run_cmd` are the `ftc estimate` and `ftc run` subcommands; `run` and `preflight` are what `ftc run`
does (compile when needed, check this machine, launch); `starter` writes the spec of `ftc init`.
"""

# Exit codes of the `ftc` command itself (those of train.py are in `ftc.runtime.exitcodes`).
EXIT_SPEC = 1  # problems in the spec or the output directory, or an out-of-date output under --check
EXIT_USAGE = 2  # a usage error: click exits with 2 for these
