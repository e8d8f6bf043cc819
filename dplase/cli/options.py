"""Option callbacks shared by several subcommands."""

from __future__ import annotations

import click


def parse_key_values(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """Callback for a repeatable KEY=VALUE option: a dict, or a usage error naming the bad item."""
    options = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got '{item}'", ctx=ctx, param=param)
        options[key] = value
    return options


class InputFileError(click.ClickException):
    """An input file that cannot be used (missing, corrupted, foreign): exit code 2 like a usage error, but only
    the one-line message naming the file (the usage text would not help)."""

    exit_code = 2
