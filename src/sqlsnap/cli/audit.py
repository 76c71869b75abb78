"""sqlsnap audit: check the service's audit trail."""

from __future__ import annotations

import click

from ..errors import VerifyError
from .errors import exit_codes_epilog, fail
from .service_common import config_option, open_state


@click.group(name="audit", epilog=exit_codes_epilog())
def audit_cmd() -> None:
    """Check the service's audit trail.

    \b
    Examples:
      sqlsnap audit verify -c sqlsnap-service.toml
    """


@audit_cmd.command(name="verify", epilog=exit_codes_epilog())
@config_option
def audit_verify(config_path: str) -> None:
    """Check the hash chain of the audit trail; name the first entry that breaks it (exit 7).

    Each entry carries the hash of the one before it: an entry changed, removed or reordered
    in the state database breaks the chain from there on.

    \b
    Examples:
      sqlsnap audit verify -c sqlsnap-service.toml
    """
    from ..service.audit import verify_chain

    state = open_state(config_path)
    result = verify_chain(state)
    if not result.ok:
        fail(VerifyError(f"the audit trail is broken at entry {result.broken_at}: {result.reason}",
                         entry=result.broken_at))
    click.echo(f"OK: the hash chain of all {result.entries:,} audit entries is intact")
