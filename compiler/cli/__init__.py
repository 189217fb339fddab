"""The `ftc` command line: one module per subcommand, all thin.

`main` (compile, validate, schema, init) formats diagnostics and sets exit codes; `estimate_cmd` and
`run_cmd` are the `ftc estimate` and `ftc run` subcommands; `run` and `preflight` are what `ftc run`
does (compile when needed, check this machine, launch); `starter` writes the spec of `ftc init`.
"""
