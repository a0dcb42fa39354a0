"""Settings reach code one way: the entry points read the environment, everything below
takes the settings it is given (the API validates specs against its own app's limits)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.app import create_app
from thaw.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("thaw", "service", "worker")
# Where a process (or a library caller) starts and the environment is read: each module,
# with the functions allowed to read it there ("*": anywhere in the module).
ENTRY_POINTS = {
    "thaw/settings.py": {"*"},
    "thaw/__init__.py": {"load_model"},
    "thaw/cli.py": {"*"},
    "thaw/webhooks/dispatcher.py": {"main"},
    "service/api/app.py": {"create_app"},
    "service/launch/server.py": {"*"},
    "service/launch/stack.py": {"*"},
    "service/launch/commands.py": {"*"},
    "worker/celery_app.py": {"*"},
    "worker/commands.py": {"*"},
    "worker/healthcheck.py": {"*"},
    "worker/node.py": {"main"},
    "worker/supervisor.py": {"*"},
}
SPEC = {
    "base_model": {"source": "torchvision", "name": "resnet18"},
    "dataset": {"id": "ds_0123456789abcdef01234567"},
    "freeze": {
        "default": "frozen",
        "rules": [{"match": "fc", "trainable": True}, {"match": "layer4", "trainable": True}],
    },
}


@pytest.fixture
def roomy_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment allows far more than the app under test is given."""
    monkeypatch.setenv("THAW_MAX_SELECTORS", "1000")
    monkeypatch.setenv("THAW_SELECTOR_REGEX_MAX_CHARS", "256")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _client(redis_url: str, tmp_path: Path, **limits: int) -> TestClient:
    settings = Settings(
        redis_url=redis_url,
        data_dir=tmp_path / "data",
        models_dir=tmp_path / "models",
        datasets_dir=tmp_path / "datasets",
        api_keys="",
        **limits,
    )
    return TestClient(create_app(settings))


def test_app_validates_specs_against_its_own_selector_limit(
    redis_url: str, tmp_path: Path, roomy_environment: None
) -> None:
    assert get_settings().max_selectors == 1000
    with _client(redis_url, tmp_path, max_selectors=1) as client:
        for path in ("/v1/plans", "/v1/jobs"):
            answer = client.post(path, json=SPEC)
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            [error] = answer.json()["errors"]
            assert error["loc"] == ""  # the spec as a whole holds too many
            assert "the spec holds 2 selectors; at most 1 (THAW_MAX_SELECTORS)" in error["message"]


def test_app_validates_pattern_length_against_its_own_limit(
    redis_url: str, tmp_path: Path, roomy_environment: None
) -> None:
    spec = {**SPEC, "freeze": {"rules": [{"match": "re:layer4.*", "trainable": True}]}}
    with _client(redis_url, tmp_path, selector_regex_max_chars=4) as client:
        answer = client.post("/v1/plans", json=spec)
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["errors"]
    assert error["loc"] == "freeze.rules[0].match"
    assert "the re: pattern is 8 characters; at most 4" in error["message"]


def test_request_schema_of_a_spec_is_still_the_job_spec(redis_url: str, tmp_path: Path) -> None:
    with _client(redis_url, tmp_path) as client:
        document = client.get("/openapi.json").json()
    for path in ("/v1/plans", "/v1/jobs"):
        body = document["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        content = body["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/JobSpec"}
        assert content["examples"]


def _settings_calls(path: Path) -> list[tuple[str, int]]:
    """Each get_settings() call in the module: the function it is in, and its line."""
    calls: list[tuple[str, int]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = (
                child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else None
            )
            if isinstance(child, ast.Call):
                func = child.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name == "get_settings":
                    calls.append((function, child.lineno))
            visit(child, inner or function)

    visit(ast.parse(path.read_text(), str(path)), "<module>")
    return calls


def test_no_global_settings_below_the_entry_points() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            allowed = ENTRY_POINTS.get(name, set())
            found += [
                f"{name}:{line} in {function}"
                for function, line in _settings_calls(path)
                if "*" not in allowed and function not in allowed
            ]
    assert found == [], "get_settings() below the entry points; pass settings down instead"
