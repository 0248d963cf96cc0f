"""`python -m smartev` is the `smartev` command."""

from smartev.cli import main

main()
