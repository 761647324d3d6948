"""One module per `aim-engine` subcommand: `add_arguments(parser)` and `run(args) -> int`."""
