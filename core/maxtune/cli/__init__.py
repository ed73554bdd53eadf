"""The `maxtune` command: one entry point, one module per subcommand."""
