"""`newsletter preview --screenshot`: PNGs at 375 and 600 px from headless Chromium."""

import struct

from click.testing import CliRunner

from newsletter.cli import cli
from tests.helpers import require_chromium

AT = "2026-11-30T07:05:00+05:00"


def png_size(path):
    with open(path, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_preview_screenshots_at_375_and_600(project):
    require_chromium()
    runner = CliRunner()
    runner.invoke(cli, ["ingest"])
    result = runner.invoke(
        cli, ["preview", "--at", AT, "--screenshot", "shots", "--placeholder-images"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["shots/preview-375.png", "shots/preview-600.png"]
    (w1, h1), (w2, h2) = (png_size(project / "shots" / f"preview-{w}.png") for w in (375, 600))
    assert (w1, w2) == (375, 600)
    assert h1 > h2 > 2000  # the whole page; the phone layout is the taller


def test_a_missing_chromium_is_one_clear_line(project):
    cfg = project / "newsletter.toml"
    cfg.write_text(cfg.read_text() + '\n[render]\nchromium = "/nonexistent/chromium"\n')
    CliRunner().invoke(cli, ["ingest"])
    result = CliRunner().invoke(cli, ["preview", "--at", AT, "--screenshot", "shots"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: /nonexistent/chromium: headless Chromium not found "
        "(apt-get install chromium, or set [render] chromium to its path)"
    )


def first_pixel(path):
    """The top-left pixel (R, G, B) of a PNG: row 0's first pixel is stored raw
    whatever its filter, so inflating the image data is all it takes."""
    import zlib

    data = open(path, "rb").read()
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompressobj().decompress(idat, 8)
    return tuple(raw[1:4])


def test_dark_screenshots_are_dark(project):
    """What `make screenshots` runs for docs/screenshots: light and dark."""
    require_chromium()
    runner = CliRunner()
    runner.invoke(cli, ["ingest"])
    for extra in ([], ["--dark"]):
        result = runner.invoke(
            cli,
            ["preview", "--at", AT, "--screenshot", "shots", "--placeholder-images", *extra],
        )
        assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (project / "shots").iterdir()) == [
        "preview-375-dark.png",
        "preview-375.png",
        "preview-600-dark.png",
        "preview-600.png",
    ]
    for w in (375, 600):
        assert sum(first_pixel(project / "shots" / f"preview-{w}.png")) > 600  # #ffffff-ish
        assert sum(first_pixel(project / "shots" / f"preview-{w}-dark.png")) < 150  # #161b22


def test_make_screenshots_writes_every_picture_of_docs(tmp_path):
    """`make screenshots` itself (its recipe, not the install steps it depends
    on), into a temporary folder: every picture docs/screenshots holds, at its
    width, the dark ones dark. (It once stopped at its first command: only
    `init` creates a database.)"""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    require_chromium()
    if shutil.which("make") is None:
        raise AssertionError("make not found")
    repo = Path(__file__).parents[1]
    nl = Path(sys.executable).parent / "newsletter"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    result = subprocess.run(
        [
            "make",
            "-s",
            "-o",
            "install-test",
            "screenshots",
            f"NL={nl}",
            f"SHOTS_DIR={tmp_path / 'shots'}",
            f"SHOTS_DB={tmp_path / 'shots.db'}",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    docs = repo / "docs" / "screenshots"
    expected = sorted(str(p.relative_to(docs)) for p in docs.rglob("*.png"))
    got = sorted(
        str(p.relative_to(tmp_path / "shots")) for p in (tmp_path / "shots").rglob("*.png")
    )
    assert got == expected and len(got) == 8
    for name in got:
        path = tmp_path / "shots" / name
        assert png_size(path)[0] == int(name.split("-")[1].removesuffix(".png"))
        dark = sum(first_pixel(path)) < 150
        assert dark == name.endswith("-dark.png"), name
    assert not (tmp_path / "shots.db").exists()
