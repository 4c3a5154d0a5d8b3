"""The ``sdd`` command line: one module per subcommand (``main.COMMAND_MODULES``), shared checks in ``options``."""
