"""The subcommands of ``tripsage-sync`` (:mod:`api.cli` parses the command line)."""

__all__: list[str] = []
