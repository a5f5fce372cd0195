"""The `twotower` command. Each command is a thin wrapper: imports happen inside the command so
`twotower status` does not pay for torch, and `cluster/` never imports model code at load time."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


# --------------------------------------------------------------------------- local stack
@app.command()
def up(
    services_only: bool = typer.Option(
        False, "--services-only", help="Start PostgreSQL, S3 and Ray, nothing else."
    ),
) -> None:
    """Start the local stack (idempotent): services, a trained model, serving, the website."""
    from cluster.stack import up as stack_up

    stack_up(services_only=services_only)


@app.command()
def down() -> None:
    """Stop exactly what `up` started. Data stays in the state folder."""
    from cluster.stack import down as stack_down

    stack_down()


@app.command()
def status() -> None:
    """Show each service, its address and its health."""
    from cluster.stack import status as stack_status

    raise typer.Exit(stack_status())


if __name__ == "__main__":  # pragma: no cover
    app()
