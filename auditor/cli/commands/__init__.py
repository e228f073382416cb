"""One module per `python -m auditor` command, each with `register(subparsers)`."""
