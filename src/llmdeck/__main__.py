"""`python -m llmdeck` is the `llmdeck` command."""

from llmdeck.cli.entry import main

main()
