"""sqlsnap decrypt: undo --encrypt-to (age), leaving any compression in place."""

from __future__ import annotations

import click

from .errors import exit_codes_epilog, run
from .options import quiet_option, s3_endpoint_option
from .output import echo_err


@click.command(name="decrypt", epilog=exit_codes_epilog())
@click.argument("source", metavar="PATH_OR_URL")
@click.option("-i", "--identity", "identities", multiple=True, required=True, metavar="FILE",
              help="age identity file (from age-keygen) or OpenSSH private key; repeatable.")
@click.option("-o", "--output", "output", metavar="PATH",
              help="Where to write ('-' for stdout). Default: the name without .age, in the current folder.")
@s3_endpoint_option()
@quiet_option("No summary on stderr.")
def decrypt_cmd(source: str, identities: tuple[str, ...], output: str | None, s3_endpoint: str | None,
                quiet: bool) -> None:
    """Decrypt an age-encrypted snapshot (the same as age -d -i key.txt).

    The result is still compressed if the snapshot was (.json.zst): decryption undoes only
    the encryption. It appears under its name only when complete and authenticated.

    \b
    Examples:
      sqlsnap decrypt app.json.zst.age -i key.txt
      sqlsnap decrypt s3://backups/app.json.zst.age -i key.txt -o - | zstd -d | jq .metadata
    """
    from ..crypto import decrypt

    written = run(lambda: decrypt(source, output, identities, s3_endpoint=s3_endpoint))
    if not quiet and written != "-":
        echo_err(f"decrypted {source} to {written}")
