"""One module per command; each defines a click command that calls library code."""

from fercli.commands.plugins_cmd import plugins_command

ALL = [plugins_command]
