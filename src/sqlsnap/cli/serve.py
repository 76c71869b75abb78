"""sqlsnap serve: the admin web page and HTTP API."""

from __future__ import annotations

import click

from .errors import exit_codes_epilog, run
from .service_common import config_option, load, missing_extra


@click.command(name="serve", epilog=exit_codes_epilog())
@config_option
@click.option("--host", help="Address to listen on (default: [server] host, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: [server] port, else 8080).")
def serve_cmd(config_path: str, host: str | None, port: int | None) -> None:
    """Serve the admin web page and the HTTP API.

    Sources, destinations, the state database and the security settings come from the
    configuration file (docs/service.md); add accounts with `sqlsnap users add` and API
    tokens with `sqlsnap tokens create`. Listens on 127.0.0.1 by default: put a reverse
    proxy with TLS in front of it to reach it from elsewhere.

    \b
    Examples:
      sqlsnap serve --config sqlsnap-service.toml
      sqlsnap serve --config sqlsnap-service.toml --port 9000
    """
    config = load(config_path)
    try:
        import uvicorn

        from ..service.app import create_app
    except ImportError as exc:
        missing_extra(exc)
    app = run(lambda: create_app(config))
    click.echo(f"sqlsnap service on http://{host or config.host}:{port or config.port} "
               f"(state: {config.state_shown})", err=True)
    uvicorn.run(app, host=host or config.host, port=port or config.port, log_level="warning",
                proxy_headers=False, server_header=False)
