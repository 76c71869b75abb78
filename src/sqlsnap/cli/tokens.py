"""sqlsnap tokens: API tokens of the service."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from .errors import exit_codes_epilog, run
from .service_common import config_option, load, open_state


@click.group(name="tokens", epilog=exit_codes_epilog())
def tokens_cmd() -> None:
    """Create, list and revoke the service's API tokens.

    \b
    Examples:
      sqlsnap tokens create --user ana@example.com --name ci -c sqlsnap-service.toml
      sqlsnap tokens revoke --user ana@example.com --name ci -c sqlsnap-service.toml
    """


@tokens_cmd.command(name="create", epilog=exit_codes_epilog())
@click.option("--user", "email", required=True, help="The account the token acts as (its role applies).")
@click.option("--name", required=True, help="A name for the token, unique for the user (e.g. ci).")
@click.option("--days", type=int, help="Days until it expires (default: [security] token_days, else 90).")
@config_option
def tokens_create(email: str, name: str, days: int | None, config_path: str) -> None:
    """Create a token and print it once on stdout; only its hash is stored.

    \b
    Examples:
      TOKEN=$(sqlsnap tokens create --user ana@example.com --name ci -c sqlsnap-service.toml)
    """
    from ..service import audit, auth

    config = load(config_path)
    state = open_state(config_path)
    token = run(lambda: auth.create_token(state, email, name, days or config.security.token_days))
    audit.record(state, actor="cli", action="token.create", target=f"{email}/{name}",
                 detail={"days": days or config.security.token_days})
    click.echo(f"token {name} for {email} (shown once; store it now):", err=True)
    click.echo(token)


@tokens_cmd.command(name="revoke", epilog=exit_codes_epilog())
@click.option("--user", "email", required=True, help="The token's account.")
@click.option("--name", required=True, help="The token's name.")
@config_option
def tokens_revoke(email: str, name: str, config_path: str) -> None:
    """Revoke a token at once."""
    from ..service import audit, auth

    state = open_state(config_path)
    run(lambda: auth.revoke_token(state, email, name))
    audit.record(state, actor="cli", action="token.revoke", target=f"{email}/{name}")
    click.echo(f"revoked token {name} of {email}", err=True)


@tokens_cmd.command(name="list", epilog=exit_codes_epilog())
@config_option
def tokens_list(config_path: str) -> None:
    """List tokens (names and dates; never the tokens)."""
    from ..service import auth

    def day(t: float | None) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d") if t else "-"

    for t in auth.list_tokens(open_state(config_path)):
        state = "revoked " + day(t["revoked"]) if t["revoked"] else "expires " + day(t["expires"])
        click.echo(f"{t['user']}\t{t['name']}\tcreated {day(t['created'])}\t{state}")
