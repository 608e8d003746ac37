"""config: the effective configuration, and the settings that have no effect."""

from __future__ import annotations

import click

from newsletter.cli.common import App, emit_json, json_option, pass_app
from newsletter.config import effective_config, no_effect_warnings, secrets_status, to_toml


def register(cli: click.Group) -> None:
    @cli.command("config")
    @click.option(
        "--strict", is_flag=True, help="Exit 1 when a setting has no effect (for CI checks)."
    )
    @json_option
    @pass_app
    def config_cmd(app: App, strict: bool, as_json: bool) -> None:
        """Print the effective configuration: defaults, the file, the environment and
        the options merged, as the other commands see it.

        Secrets are never printed: each secret variable shows as set or not set, and a
        database URL's password as ***. Settings written in the file that have no
        effect (a [delivery.sendgrid] table with the smtp backend, [rates] providers
        when every pair sets its own …) are listed as warnings on stderr.
        """
        cfg = app.config
        data = effective_config(cfg)
        warnings = no_effect_warnings(cfg)
        if as_json:
            emit_json(
                {
                    "path": cfg.path,
                    "database_source": cfg.database_source,
                    "config": data,
                    "secrets": secrets_status(cfg),
                    "warnings": warnings,
                }
            )
        else:
            click.echo(f"# effective configuration of {cfg.path}")
            click.echo(f"# database from: {cfg.database_source}")
            for name, state in secrets_status(cfg).items():
                click.echo(f"# {name}: {state}")
            click.echo(to_toml(data), nl=False)
        for w in warnings:
            click.echo(f"warning: {cfg.path}: {w}", err=True)
        if strict and warnings:
            raise SystemExit(1)
