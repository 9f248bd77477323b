"""The layer contract (.importlinter, docs/ARCHITECTURE.md) sorts modules as documented and can fail; the test
command runs `lint-imports` over the whole tree itself."""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import grimp
import pytest

from scripts.layers_contract import CrossPackageLayersContract

ROOT = Path(__file__).resolve().parent.parent
# Modules outside the HTTP layer that may still import the web framework, each with its reason.
FRAMEWORK_EXCEPTIONS = {
    "app.kit.templating": "renders Jinja templates into Starlette responses for every page; it holds no routes",
}


def contract() -> CrossPackageLayersContract:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    options = dict(config["importlinter:contract:layers"])
    options["layers"] = [line for line in options["layers"].splitlines() if line.strip()]
    options.pop("type")
    return CrossPackageLayersContract(options.pop("name"), {}, options)


def modules() -> dict[str, ast.Module]:
    found = {}
    for package in ("app", "bot", "tasks"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = ast.parse(path.read_text(), str(path))
    return found


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("app.main", "entry points"),
        ("app.broadcasts.cli", "entry points"),
        ("tasks.outbox", "entry points"),
        ("app.connect.pages", "http"),
        ("app.payments.webhook_api", "http"),
        ("app.admin.users.queries", "http"),
        ("app.connect.service", "domain"),
        ("app.payments.orders", "domain"),
        ("app.panels.marzban", "adapters"),
        ("app.payments.providers.yookassa", "adapters"),
        ("app.models.users", "models"),
        ("app.kit.formatting", "foundation"),
    ],
)
def test_each_kind_of_module_lands_in_its_layer(module: str, layer: str) -> None:
    assert contract().layer_of(module) == layer


def test_an_import_from_a_lower_layer_breaks_the_contract() -> None:
    graph = grimp.ImportGraph()
    for name in ("app", "app.payments", "app.payments.handlers", "app.payments.demo_pages", "app.kit"):
        graph.add_module(name)
    graph.add_import(
        importer="app.payments.demo_pages", imported="app.payments.handlers", line_number=3, line_contents=""
    )
    graph.add_import(importer="app.payments.handlers", imported="app.kit", line_number=4, line_contents="")
    assert contract().check(graph, verbose=False).kept

    # The shape that issue 17 removed: a domain module taking a constant from a page module.
    graph.add_import(
        importer="app.payments.handlers", imported="app.payments.demo_pages", line_number=10, line_contents=""
    )
    check = contract().check(graph, verbose=False)
    assert not check.kept
    assert [(up[0], up[2]) for up in check.metadata["upward"]] == [("app.payments.handlers", "app.payments.demo_pages")]


def test_only_http_modules_and_entry_points_use_the_web_framework() -> None:
    rules = contract()
    offenders = []
    for name, tree in modules().items():
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        web = any(m.split(".")[0] in {"fastapi", "starlette"} for m in imported)
        if web and rules.layer_of(name) not in {"entry points", "http"} and name not in FRAMEWORK_EXCEPTIONS:
            offenders.append(name)
    assert offenders == []


def test_every_router_lives_in_a_module_named_pages_or_api() -> None:
    """One convention for modules that serve HTTP: `pages` (HTML for people) or `api` (JSON and machine
    endpoints), with a prefix when a package has several (`demo_pages`, `webhook_api`)."""
    misnamed = []
    for name, tree in modules().items():
        routers = any(
            isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "APIRouter"
            for node in ast.walk(tree)
        )
        last = name.rsplit(".", 1)[-1]
        named = last in {"pages", "api"} or last.endswith(("_pages", "_api")) or name.startswith("app.admin")
        if routers and not named:
            misnamed.append(name)
    assert misnamed == []
