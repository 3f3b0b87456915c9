"""Translations of the Home Assistant integration.

Custom integrations read ``translations/<lang>.json`` at runtime, never ``strings.json``,
so every translation must carry the same keys and placeholders as ``strings.json``, and
every key the code or ``services.yaml`` refers to must exist.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

COMPONENT = Path(__file__).parents[2] / "custom_components" / "p2p_energy"
STRINGS_FILE = COMPONENT / "strings.json"
TRANSLATIONS = sorted((COMPONENT / "translations").glob("*.json"))

PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

# translation_key=<name> whose value is not a constant, with the keys it can take.
DYNAMIC_KEYS = {
    # coordinator._replace_issues(...) creates every membership issue from an _Issue
    # whose translation key is one of these constants.
    ("coordinator.py", "key"): {
        "issues": (
            "ISSUE_OVER_CAP",
            "ISSUE_PAYMENT_FAILED",
            "ISSUE_ASSET_WAITING",
            "ISSUE_ASSET_REFUSED",
            "ISSUE_FLAGGED_OVER_RATING",
            "ISSUE_FLAGGED_CLEAR_SKY",
            "ISSUE_FLAGGED_BATTERY",
            "ISSUE_FLAGGED_NOT_APPROVED",
            "ISSUE_FLAGGED_OTHER",
            "ISSUE_REFUSED_OVER_CAPACITY",
            "ISSUE_REFUSED_WINDOW_CLOSED",
            "ISSUE_REFUSED_UNKNOWN_ASSET",
            "ISSUE_REFUSED_CONFLICT",
            "ISSUE_REFUSED_INVALID",
            "ISSUE_REFUSED_OTHER",
        )
    },
}


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": "x"}}`` -> ``{"a.b": "x"}``; non-dict leaves are kept as they are."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


STRINGS = load(STRINGS_FILE)
FLAT_STRINGS = flatten(STRINGS)


def test_strings_are_non_empty_text() -> None:
    assert FLAT_STRINGS
    bad = {k: v for k, v in FLAT_STRINGS.items() if not isinstance(v, str) or not v.strip()}
    assert not bad, f"strings.json has empty or non-text entries: {bad}"


def test_languages_present() -> None:
    assert {p.stem for p in TRANSLATIONS} >= {"en", "de", "ja"}


def test_en_is_strings() -> None:
    assert load(COMPONENT / "translations" / "en.json") == STRINGS


@pytest.mark.parametrize("path", TRANSLATIONS, ids=lambda p: p.name)
def test_translation_matches_strings(path: Path) -> None:
    flat = flatten(load(path))
    missing = sorted(FLAT_STRINGS.keys() - flat.keys())
    extra = sorted(flat.keys() - FLAT_STRINGS.keys())
    assert not missing, f"{path.name} lacks {missing}"
    assert not extra, f"{path.name} has keys strings.json does not: {extra}"
    problems = []
    for key, english in FLAT_STRINGS.items():
        text = flat[key]
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{key}: empty or not text")
        elif placeholders(text) != placeholders(english):
            problems.append(
                f"{key}: {sorted(placeholders(text))} != {sorted(placeholders(english))}"
            )
        elif text.count("{") != text.count("}"):
            problems.append(f"{key}: unbalanced braces")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


# -- keys the code refers to --------------------------------------------------------------------


def module_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level ``NAME = "text"`` and ``NAME: Final = "text"``."""
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            if isinstance(value.value, str):
                found[target.id] = value.value
    return found


CONSTANTS = module_constants(ast.parse((COMPONENT / "const.py").read_text(encoding="utf-8")))


def call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def referenced_keys() -> list[tuple[str, str, str]]:
    """(where, section in strings.json, key) for every translation key in the code."""
    refs: list[tuple[str, str, str]] = []
    for path in sorted(COMPONENT.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {**CONSTANTS, **module_constants(tree)}
        platform = f"entity.{path.stem}"

        def add(where: str, section: str, value: ast.expr) -> None:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                refs.append((where, section, value.value))
            elif isinstance(value, ast.Name) and value.id in names:
                refs.append((where, section, names[value.id]))
            elif isinstance(value, ast.Name) and (path.name, value.id) in DYNAMIC_KEYS:
                for dyn_section, consts in DYNAMIC_KEYS[(path.name, value.id)].items():
                    refs.extend((where, dyn_section, CONSTANTS[c]) for c in consts)
            else:
                pytest.fail(f"{where}: cannot resolve translation_key {ast.unparse(value)}")

        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    name = target.attr if isinstance(target, ast.Attribute) else None
                    name = target.id if isinstance(target, ast.Name) else name
                    if name == "_attr_translation_key" and node.value is not None:
                        add(f"{path.name}:{node.lineno}", platform, node.value)
            if not isinstance(node, ast.Call):
                continue
            kwargs = {kw.arg: kw.value for kw in node.keywords if kw.arg}
            if "translation_key" not in kwargs:
                continue
            where, name = f"{path.name}:{node.lineno}", call_name(node)
            if name == "async_create_issue":
                section = "issues"
            elif "translation_domain" in kwargs:
                section = "exceptions"
            elif name.endswith("SelectorConfig"):
                section = "selector"
            elif name.endswith("Description"):
                section = platform
            else:
                pytest.fail(f"{where}: don't know which section {name}(translation_key=) uses")
            add(where, section, kwargs["translation_key"])
    return refs


REFERENCED = referenced_keys()


def test_code_references_found() -> None:
    """Guard the scan itself: it must see keys of every kind."""
    sections = {section.split(".")[0] for _, section, _ in REFERENCED}
    assert sections >= {"entity", "exceptions", "issues", "selector"}, sections


@pytest.mark.parametrize(
    ("where", "section", "key"), REFERENCED, ids=[f"{w}-{k}" for w, _, k in REFERENCED]
)
def test_code_translation_key_exists(where: str, section: str, key: str) -> None:
    node: Any = STRINGS
    for part in section.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    assert isinstance(node, dict), section
    assert key in node, f"{where}: translation_key {key!r} is not in strings.json {section}"


def test_every_issue_constant_has_strings() -> None:
    issues = {v for k, v in CONSTANTS.items() if k.startswith("ISSUE_")}
    assert issues
    assert issues <= STRINGS["issues"].keys()


def test_no_url_in_strings() -> None:
    """Hassfest refuses URLs in translations: examples come as description placeholders."""
    strings = flatten(load(COMPONENT / "strings.json"))
    assert [key for key, text in strings.items() if re.search(r"https?://", str(text))] == []


def test_services_have_strings() -> None:
    services = yaml.safe_load((COMPONENT / "services.yaml").read_text(encoding="utf-8"))
    translated = STRINGS["services"]
    assert services.keys() == translated.keys()
    for service, spec in services.items():
        strings = translated[service]
        assert strings.get("name") and strings.get("description"), service
        fields = (spec or {}).get("fields") or {}
        assert fields.keys() == strings.get("fields", {}).keys(), service
        for field, field_spec in fields.items():
            entry = strings["fields"][field]
            assert entry.get("name") and entry.get("description"), f"{service}.{field}"
            select = ((field_spec or {}).get("selector") or {}).get("select") or {}
            if key := select.get("translation_key"):
                options = STRINGS["selector"][key]["options"]
                wanted = {o if isinstance(o, str) else o["value"] for o in select["options"]}
                assert wanted <= options.keys(), f"{service}.{field}: {wanted - options.keys()}"


def _flow_steps() -> list[tuple[str, str, dict[str, Any]]]:
    """Every step of the config flow, the options flow and the subentries' flows."""
    strings = load(STRINGS_FILE)
    flows = [("config", strings["config"]), ("options", strings["options"])]
    flows += [
        (f"config_subentries.{name}", flow)
        for name, flow in strings.get("config_subentries", {}).items()
    ]
    return [(where, name, step) for where, flow in flows for name, step in flow["step"].items()]


@pytest.mark.parametrize(
    ("where", "name", "step"), _flow_steps(), ids=[f"{w}.{n}" for w, n, _ in _flow_steps()]
)
def test_every_flow_field_is_described(where: str, name: str, step: dict[str, Any]) -> None:
    """Each field a form shows says what it is for (the config-flow rule of the quality scale)."""
    described = step.get("data_description", {})
    assert [field for field in step.get("data", {}) if field not in described] == [], (
        f"{where}.step.{name}"
    )
