"""``mlflow-green keys generate DIR``: a new Ed25519 key pair for signed measurements.

Example:
    $ mlflow-green keys generate /secure/green-keys
    Wrote the signing key (keep it secret) ... and the public key ...
"""

from __future__ import annotations

import sys

import click

from mlflow_green.errors import GreenError


@click.group()
def keys() -> None:
    """Keys that sign measurements (see docs/gates.md, "Signed measurements")."""


@keys.command()
@click.argument("directory", type=click.Path(file_okay=False))
def generate(directory: str) -> None:
    """Write a new Ed25519 key pair into DIRECTORY: green-signing.key (private, mode 0600) and
    green-signing.pub. Existing key files are never overwritten (exit 2)."""
    from mlflow_green.record.signing import ENV_SIGNING_KEY, ENV_TRUSTED_KEYS, SigningKey, generate_key_pair

    try:
        private_path, public_path = generate_key_pair(directory)
        key_id = SigningKey.from_file(private_path).key_id
    except GreenError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"Key id: {key_id}")
    click.echo(f"Signing key (secret; only on training hosts): {private_path}")
    click.echo(f"Public key (for the gate and mlflow-green verify): {public_path}")
    click.echo("")
    click.echo(f"On training hosts:        export {ENV_SIGNING_KEY}={private_path}")
    click.echo(f"On the server and in CI:  export {ENV_TRUSTED_KEYS}={public_path}")
