"""Small handlers in their own registry, for engine tests (not the science catalogue).

A chain ``Seed -> Double -> Square`` over JSON numbers, a handler that fails on demand
(when the event holds ``fail.txt``), and one that contacts a service.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from llama.handler import FileHandler, HandlerRegistry, write_json

TOY = HandlerRegistry()


class Seed(FileHandler, registry=TOY):
    FILENAME = "seed.json"


class Double(FileHandler, registry=TOY):
    FILENAME = "double.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        delay = float(os.environ.get("TOY_DELAY_S", "0"))
        if delay:
            time.sleep(delay)
        write_json(out, {"value": 2 * self.read_json(Seed)["value"]})

    @classmethod
    def record(cls, event):
        return {"double": json.loads(event.path(cls.FILENAME).read_text())["value"]}


class Square(FileHandler, registry=TOY):
    FILENAME = "square.json"
    DEPENDENCIES = (Double,)

    def generate(self, out: Path) -> None:
        write_json(out, {"value": self.read_json(Double)["value"] ** 2})


class Fragile(FileHandler, registry=TOY):
    FILENAME = "fragile.json"
    DEPENDENCIES = (Seed,)

    def generate(self, out: Path) -> None:
        out.write_text("partial")  # a half-written output that must never land
        if self.event.path("fail.txt").exists():
            # the file's text joins the message: tests put secrets there to see them blanked
            raise RuntimeError(f"fragile failed as asked {self.event.path('fail.txt').read_text()}")
        write_json(out, {"ok": True})


class AfterFragile(FileHandler, registry=TOY):
    FILENAME = "after_fragile.json"
    DEPENDENCIES = (Fragile,)

    def generate(self, out: Path) -> None:
        write_json(out, self.read_json(Fragile))


class Online(FileHandler, registry=TOY):
    FILENAME = "online.json"
    DEPENDENCIES = (Seed,)
    CONTACTS_SERVICE = True

    def generate(self, out: Path) -> None:
        write_json(out, {"contacted": True})


TOY.check()
