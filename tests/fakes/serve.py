"""`newsletter serve` as a real process on 127.0.0.1, ready when /readyz says ok."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fakes.mail import free_port

ROOT = Path(__file__).parent.parent.parent


class ServeProcess:
    def __init__(
        self,
        config: Path,
        db_url: str,
        secret: str,
        *,
        port: int | None = None,
        args: tuple[str, ...] = (),
    ):
        self.port = port or free_port()
        self.args = args
        self.env = {
            **os.environ,
            "NEWSLETTER_CONFIG": str(config),
            "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_SECRET_KEY": secret,
        }
        self.proc: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> ServeProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "serve", "--port", str(self.port), *self.args],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.proc.stderr.read()}")
            try:
                if httpx.get(self.url("/readyz"), timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not become ready")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
