"""Tables for humans on a terminal, untruncated lines when piped."""

from __future__ import annotations

import sys


def print_table(columns: list[str], rows: list[list[str]], *, flexible: str | None = None) -> None:
    """Print a table on stdout. Only the `flexible` column is shortened to fit a terminal.

    Piped output is never cut: scripts (grep, awk) get whole values.
    """
    from rich.console import Console
    from rich.table import Table

    terminal = sys.stdout.isatty()
    table = Table(box=None, header_style="bold" if terminal else None, pad_edge=False)
    for name in columns:
        fits = name == flexible and terminal
        table.add_column(name, no_wrap=True, overflow="ellipsis" if fits else "ignore",
                         min_width=None if fits else max([len(name), *(len(row[columns.index(name)]) for row in rows)]))
    for row in rows:
        table.add_row(*row)
    console = Console(width=None if terminal else 100_000, highlight=False, soft_wrap=not terminal)
    console.print(table)
