"""`tunelab data ...`: check, cost, convert, split. (Being built: issue 2.)"""

import typer

app = typer.Typer(help="Check, price, convert and split a dataset.", no_args_is_help=True)
