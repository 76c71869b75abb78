"""sqlsnap users: accounts of the service."""

from __future__ import annotations

import secrets
import sys

import click

from .errors import exit_codes_epilog, run
from .service_common import config_option, open_state


@click.group(name="users", epilog=exit_codes_epilog())
def users_cmd() -> None:
    """Add, list and remove the service's accounts (roles: admin, viewer).

    \b
    Examples:
      sqlsnap users add ana@example.com --role admin -c sqlsnap-service.toml
      printf '%s' "$PASSWORD" | sqlsnap users add bo@example.com --role viewer --password-stdin -c ...
    """


@users_cmd.command(name="add", epilog=exit_codes_epilog())
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "viewer"]), required=True,
              help="admin: export, download, delete; viewer: history and audit only.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (at least 12 characters). Without it, a random "
                   "one-time password is printed once.")
@config_option
def users_add(email: str, role: str, password_stdin: bool, config_path: str) -> None:
    """Add an account. Its password is never shown again: only its argon2 hash is stored.

    \b
    Examples:
      sqlsnap users add ana@example.com --role admin -c sqlsnap-service.toml
    """
    from ..service import audit, auth

    state = open_state(config_path)
    generated = not password_stdin
    password = secrets.token_urlsafe(18) if generated else sys.stdin.readline().rstrip("\r\n")
    run(lambda: auth.add_user(state, email, role, password))
    audit.record(state, actor="cli", action="user.add", target=email, detail={"role": role})
    click.echo(f"added {email} ({role})", err=True)
    if generated:
        click.echo("one-time password (shown once; store it now):", err=True)
        click.echo(password)


@users_cmd.command(name="list", epilog=exit_codes_epilog())
@config_option
def users_list(config_path: str) -> None:
    """List the accounts and their roles."""
    from ..service import auth

    for user in auth.list_users(open_state(config_path)):
        click.echo(f"{user['email']}\t{user['role']}" + ("\tlocked" if user["locked"] else ""))


@users_cmd.command(name="remove", epilog=exit_codes_epilog())
@click.argument("email")
@config_option
def users_remove(email: str, config_path: str) -> None:
    """Remove an account, its sessions and its API tokens."""
    from ..service import audit, auth

    state = open_state(config_path)
    run(lambda: auth.remove_user(state, email))
    audit.record(state, actor="cli", action="user.remove", target=email)
    click.echo(f"removed {email}", err=True)
