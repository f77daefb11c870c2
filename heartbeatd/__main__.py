from heartbeatd.cli import cli

cli()
