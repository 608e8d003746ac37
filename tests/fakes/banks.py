"""The central banks (NBK, NBT, NBKR, CBU) on one loopback server, replaying real samples."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from newsletter.config import RatesConfig
from tests.fakes.http import LoopbackServer, Reply, Request

RATES = Path(__file__).parent.parent / "data" / "rates"

NBK = {
    date(2026, 4, 1): "nbk_get_rates_2026-04-01.xml",
    date(2026, 4, 2): "nbk_get_rates_2026-04-02.xml",
}
CBU = {
    date(2026, 4, 1): "cbu_json_all_2026-04-01.json",
    date(2026, 4, 2): "cbu_json_all_2026-04-02.json",
}
NBT = "nbt_export_xml_2026-05-18.xml"
NBKR_DAILY = "nbkr_daily_2026-05-23.xml"
NBKR_WEEKLY = "nbkr_weekly_2026-05-23.xml"


def sample(name: str) -> bytes:
    return (RATES / name).read_bytes()


def redate_nbt(body: bytes, day: date) -> bytes:
    return body.replace(b'Date="2026-05-18"', f'Date="{day:%Y-%m-%d}"'.encode())


def redate_nbkr(body: bytes, day: date) -> bytes:
    return re.sub(rb'Date="\d\d\.\d\d\.\d{4}"', f'Date="{day:%d.%m.%Y}"'.encode(), body)


class Banks:
    """The central banks on one loopback server, answering with the real samples.

    NBK and CBU answer from their recorded day; NBT and NBKR (one recorded day
    each) replay their sample re-dated to ``nbt_day`` / ``nbkr_day`` (by default
    the asked day, for NBT). ``fail[name]`` replaces a bank's answer; ``edit``
    rewrites a body (name, day) -> bytes.
    """

    def __init__(self) -> None:
        self.server = LoopbackServer(self.handle)
        self.reset()

    def reset(self) -> None:
        self.fail: dict[str, Reply] = {}
        self.edit: dict[str, object] = {}
        self.nbkr_day: date | None = None
        self.nbkr_weekly_day: date | None = None
        self.answer = self.recorded  # type: ignore[method-assign]
        self.server.requests.clear()

    def __enter__(self) -> Banks:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def asked(self, name: str) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(f"/{name}/")]

    def urls(self) -> dict[str, str]:
        base = self.server.base
        return {
            "nbk": f"{base}/nbk/rss/get_rates.cfm",
            "nbt": f"{base}/nbt/en/kurs/export_xml.php",
            "nbkr": f"{base}/nbkr/XML",
            "cbu": f"{base}/cbu/en/arkhiv-kursov-valyut/json",
        }

    def config(self, **kw: object) -> RatesConfig:
        kw.setdefault("timeout", 2.0)
        return RatesConfig(urls=self.urls(), **kw)  # type: ignore[arg-type]

    def handle(self, req: Request) -> Reply:
        name = req.path.split("/")[1]
        if name in self.fail:
            return self.fail[name]
        body, ctype, day = self.answer(name, req)
        edit = self.edit.get(name)
        if edit is not None:
            body = edit(body, day)  # type: ignore[operator]
        if body is None:
            return Reply(404, b"<html>Not found</html>", {"Content-Type": "text/html"})
        return Reply(200, body, {"Content-Type": ctype})

    def recorded(self, name: str, req: Request) -> tuple[bytes | None, str, date | None]:
        if name == "nbk":
            day = _parse(req.query["fdate"][0], "%d.%m.%Y")
            file = NBK.get(day)
            return (sample(file) if file else None), "application/xml", day
        if name == "nbt":
            assert req.query["export"] == ["xmlout"]
            day = date.fromisoformat(req.query["date"][0])
            return redate_nbt(sample(NBT), day), "text/xml", day
        if name == "cbu":
            m = re.fullmatch(r"/cbu/en/arkhiv-kursov-valyut/json/all/(\d{4}-\d\d-\d\d)/", req.path)
            assert m, req.path
            day = date.fromisoformat(m.group(1))
            file = CBU.get(day)
            return (sample(file) if file else None), "application/json", day
        if name == "nbkr":
            xml = "text/xml; charset=windows-1251"
            if req.path == "/nbkr/XML/daily.xml":
                body = sample(NBKR_DAILY)
                return (redate_nbkr(body, self.nbkr_day) if self.nbkr_day else body), xml, None
            if req.path == "/nbkr/XML/weekly.xml":
                body = sample(NBKR_WEEKLY)
                day = self.nbkr_weekly_day
                return (redate_nbkr(body, day) if day else body), xml, None
        return None, "", None


def _parse(text: str, fmt: str) -> date:
    from datetime import datetime

    return datetime.strptime(text, fmt).date()
