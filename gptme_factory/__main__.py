"""`python -m gptme_factory` runs the CLI."""

from gptme_factory.cli import main

main(prog_name="gptme-factory")
