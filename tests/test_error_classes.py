"""Every error Thaw raises on purpose carries its own HTTP status and code."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import thaw
from thaw.errors import ThawError


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def _import_everything() -> None:
    for module in pkgutil.walk_packages(thaw.__path__, "thaw."):
        importlib.import_module(module.name)


_import_everything()
CLASSES = _all_subclasses(ThawError)


def test_the_walk_finds_the_known_errors() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"SpecError", "SelectorError", "DatasetError", "CheckpointNotFound"} <= names
    assert len(CLASSES) >= 15


@pytest.mark.parametrize("cls", CLASSES, ids=lambda cls: cls.__name__)
def test_each_error_class_sets_its_status_and_code(cls: type[ThawError]) -> None:
    assert "status" in vars(cls), f"{cls.__name__} inherits its HTTP status; set it"
    assert "code" in vars(cls), f"{cls.__name__} inherits its code; set it"
    assert 400 <= cls.status < 600
    assert cls.code.replace("_", "").isalnum() and cls.code.islower()
