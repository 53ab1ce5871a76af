"""One module per thermos subcommand."""
