"""The documentation says what the code does: settings, defaults, links, make targets, layering.

Each test reads the code (its source, its dataclasses, the CRD, the argument parser, the
Makefile) and the Markdown, and fails naming the file to fix when they disagree.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import itertools
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from oncallm.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "operator" / "oncallm"
DOCS = REPO / "docs"
CONFIGURATION = DOCS / "configuration.md"
ARCHITECTURE = DOCS / "architecture.md"
README = REPO / "README.md"
MARKDOWN = [README, *sorted(DOCS.glob("*.md"))]

#: A full variable name: ends in a letter or digit and is not followed by more of a name or by
#: an f-string field, so prefixes such as ``f"ONCALLM_RULES_{name.upper()}"`` are not names.
ENV_NAME = re.compile(r"\bONCALLM_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_{])")
#: Variables OnCallM reads that are not its own: the first one a field's docstring names.
DOCSTRING_VAR = re.compile(r"\b(?:ONCALLM_[A-Z0-9_]*[A-Z0-9]|KUBECONFIG|OPENAI_API_KEY)\b")
UPPER_NAME = re.compile(r"[A-Z][A-Z0-9_]*[A-Z0-9]")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


# -- reading the code ------------------------------------------------------------------------


def python_files() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*.py") if "__pycache__" not in p.parts)


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _field_names(cls: ast.ClassDef) -> list[str]:
    return [
        node.target.id
        for node in cls.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    ]


def _prefixed_names(cls: ast.ClassDef) -> set[str]:
    """Names a class builds as ``f"ONCALLM_X_{field.upper()}"``: the prefix and each field."""
    names: set[str] = set()
    for node in ast.walk(cls):
        if not isinstance(node, ast.JoinedStr) or not node.values:
            continue
        head = node.values[0]
        if (
            isinstance(head, ast.Constant)
            and isinstance(head.value, str)
            and re.fullmatch(r"ONCALLM_[A-Z0-9_]*_", head.value)
            and len(node.values) == 2
            and isinstance(node.values[1], ast.FormattedValue)
        ):
            names |= {head.value + field.upper() for field in _field_names(cls)}
    return names


def _is_environ(node: ast.expr) -> bool:
    """``os.environ``, ``environ`` or ``env``: what OnCallM's code calls the environment."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ"
    return isinstance(node, ast.Name) and node.id in {"environ", "env"}


def _environment_reads(tree: ast.Module) -> set[str]:
    """Upper-case names read with ``os.environ.get``, ``env.get``, ``os.getenv``, ``[...]``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        key: ast.expr | None = None
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
            func = node.func
            if func.attr in {"get", "pop", "setdefault"} and _is_environ(func.value):
                key = node.args[0]
            elif func.attr == "getenv":
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if _is_environ(node.value):
                key = node.slice
        if (
            isinstance(key, ast.Constant)
            and isinstance(key.value, str)
            and UPPER_NAME.fullmatch(key.value)
        ):
            names.add(key.value)
    return names


@cache
def variables_in_code() -> dict[str, str]:
    """Every environment variable OnCallM's code reads, with the first file naming it."""
    found: dict[str, str] = {}
    for path in python_files():
        tree = parsed(path)
        names = set(ENV_NAME.findall(path.read_text())) | _environment_reads(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                names |= _prefixed_names(node)
        for name in names:
            found.setdefault(name, str(path.relative_to(REPO)))
    return found


def settings_classes() -> Iterator[tuple[type[Any], ast.ClassDef, Path]]:
    """Every dataclass with a ``from_env`` classmethod: the settings groups."""
    for path in python_files():
        for node in parsed(path).body:
            if not isinstance(node, ast.ClassDef):
                continue
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if "from_env" not in methods:
                continue
            cls = getattr(importlib.import_module(module_name(path)), node.name)
            if isinstance(cls, type) and dataclasses.is_dataclass(cls):
                yield cls, node, path


def field_variables(node: ast.ClassDef) -> dict[str, str]:
    """Field name -> the variable its docstring names first (the one it is read from)."""
    out: dict[str, str] = {}
    body = node.body
    for field, doc in itertools.pairwise(body):
        if not (isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name)):
            continue
        if not (isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant)):
            continue
        match = DOCSTRING_VAR.search(str(doc.value.value))
        if match:
            out[field.target.id] = match.group(0)
    return out


def from_env_calls() -> dict[str, list[str]]:
    """Class name -> where ``ClassName.from_env(...)`` is called in OnCallM's code."""
    calls: dict[str, list[str]] = {}
    for path in python_files():
        for node in ast.walk(parsed(path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "from_env"
                and isinstance(node.func.value, ast.Name)
            ):
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                calls.setdefault(node.func.value.id, []).append(where)
    return calls


# -- reading the Markdown --------------------------------------------------------------------


def without_code(text: str) -> str:
    return INLINE_CODE.sub("", FENCE.sub("", text))


def code_snippets(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where commands are quoted."""
    return [m.group(0) for m in FENCE.finditer(text)] + INLINE_CODE.findall(FENCE.sub("", text))


def github_anchor(heading: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = github_anchor(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(out)


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    """Rows of every Markdown table whose first cell is exactly ``first_cell``."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if cells and cells[0] == first_cell:
            rows.append(cells)
    return rows


def section(text: str, heading: str) -> str:
    """The text under ``## heading`` up to the next heading of the same or a higher level."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"the section '## {heading}' is missing"
    return match.group(1)


def shows_default(cell: str, default: Any) -> bool:
    """Whether a table's default cell states ``default``: the first number, a `value`, …"""
    lowered = cell.lower()
    if default is None or default in ("", (), {}, []):
        return "unset" in lowered or "empty" in lowered
    if isinstance(default, bool):
        return f"`{str(default).lower()}`" in lowered
    if isinstance(default, int | float):
        number = NUMBER.search(cell)
        return number is not None and float(number.group(0).replace(",", "")) == float(default)
    return f"`{default}`" in cell


# -- (a) every setting is documented, with its default -------------------------------------


def test_every_variable_the_code_reads_is_documented() -> None:
    documented = CONFIGURATION.read_text()
    names = variables_in_code()
    assert "ONCALLM_NAMESPACE" in names and "OPENAI_API_KEY" in names  # the scan itself works
    assert not any(n.endswith("_") for n in names), "a bare prefix was taken for a name"
    missing = [
        f"{name} (read in {where})"
        for name, where in sorted(names.items())
        if not table_rows(documented, f"`{name}`")
    ]
    assert not missing, (
        "docs/configuration.md has no table row for these variables; add one with the default "
        "and the reason (the field's docstring has it): " + ", ".join(missing)
    )


def test_every_documented_variable_exists() -> None:
    """A renamed or removed variable must leave the docs too."""
    code = set(variables_in_code())
    tests = "\n".join(
        p.read_text() for p in (REPO / "tests").rglob("*.py") if p != Path(__file__).resolve()
    )
    stale = sorted(
        name
        for name in set(ENV_NAME.findall(CONFIGURATION.read_text()))
        if name not in code and name not in tests
    )
    assert not stale, f"docs/configuration.md names variables nothing reads: {stale}"


def test_prefixed_names_are_expanded_from_the_fields() -> None:
    """Names built as prefix + field are found, though the source never spells them out."""
    names = variables_in_code()
    assert "ONCALLM_RULES_ALERT_HINT_BONUS" in names
    assert "ONCALLM_EVIDENCE_MAX_EXCERPT_CHARS" in names


def test_documented_defaults_match_the_dataclasses() -> None:
    text = CONFIGURATION.read_text()
    checked = 0
    wrong = []
    for cls, node, path in settings_classes():
        defaults = {f.name: f for f in dataclasses.fields(cls)}
        for field_name, variable in field_variables(node).items():
            field = defaults[field_name]
            if field.default is not dataclasses.MISSING:
                default: Any = field.default
            elif field.default_factory is not dataclasses.MISSING:
                default = field.default_factory()
            else:
                continue
            rows = table_rows(text, f"`{variable}`")
            assert rows, f"no table row for `{variable}` ({cls.__name__}.{field_name})"
            for row in rows:
                checked += 1
                if not shows_default(row[1], default):
                    wrong.append(
                        f"`{variable}` says {row[1]!r}, but {cls.__name__}.{field_name} "
                        f"defaults to {default!r} ({path.relative_to(REPO)})"
                    )
    assert checked >= 40, f"only {checked} defaults checked: the scan of the settings broke"
    assert not wrong, "fix the defaults in docs/configuration.md:\n" + "\n".join(wrong)


def test_settings_read_but_not_applied_are_listed_exactly() -> None:
    """The docs' list of settings whose from_env() nothing calls stays true both ways."""
    gaps = section(CONFIGURATION.read_text(), "Read but not yet applied")
    listed = set(re.findall(r"^- `(\w+)`", gaps, re.M))
    calls = from_env_calls()
    classes = {cls.__name__ for cls, _, _ in settings_classes()}
    assert listed <= classes, f"not settings classes with from_env(): {sorted(listed - classes)}"
    now_applied = {name: calls[name] for name in sorted(listed) if name in calls}
    assert not now_applied, (
        f"{now_applied} now call from_env(): move them out of 'Read but not yet applied' in "
        "docs/configuration.md and drop the notes that point there"
    )
    unlisted = sorted(classes - listed - set(calls))
    assert not unlisted, (
        f"{unlisted} have from_env() but nothing calls it: list them under 'Read but not yet "
        "applied' in docs/configuration.md, or call from_env() where the settings are built"
    )


def _policy_fields(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if prop.get("type") == "object" and "properties" in prop and name != "selector":
            yield from _policy_fields(prop, path + ".")
        else:
            yield path, prop.get("default", dataclasses.MISSING)


def test_every_policy_field_is_documented_with_its_default() -> None:
    crd = yaml.safe_load((REPO / "crds" / "analysispolicies.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    text = section(CONFIGURATION.read_text(), "AnalysisPolicy fields")
    fields = list(_policy_fields(schema))
    assert len(fields) >= 12
    for path, default in fields:
        rows = table_rows(text, f"`{path}`")
        assert rows, f"docs/configuration.md has no row for the AnalysisPolicy field `{path}`"
        if default is not dataclasses.MISSING:
            assert shows_default(rows[0][1], default), (
                f"`{path}` says {rows[0][1]!r}; the CRD's default is {default!r}"
            )


def test_every_command_and_option_is_documented() -> None:
    text = section(CONFIGURATION.read_text(), "The `oncallm` command")
    parser = build_parser()
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    for action in parser._actions:
        for name, sub in (getattr(action, "choices", None) or {}).items():
            assert f"`oncallm {name}" in text, f"`oncallm {name}` is not documented"
            for sub_action in sub._actions:
                options += [o for o in sub_action.option_strings if o.startswith("--")]
                if not sub_action.option_strings and sub_action.choices:
                    options += list(sub_action.choices)
    missing = sorted({o for o in options if o != "--help" and o not in text})
    assert not missing, f"the `oncallm` section of docs/configuration.md lacks {missing}"


# -- (b) links point at files that exist -----------------------------------------------------


def _links(path: Path) -> list[str]:
    text = without_code(path.read_text())
    return LINK.findall(text) + REFERENCE_LINK.findall(text)


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_point_at_files_that_exist(path: Path) -> None:
    broken = []
    for target in _links(path):
        if SCHEME.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{target} (no {resolved.relative_to(REPO.resolve())})")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{path.relative_to(REPO)} links to what does not exist: {broken}"


def test_the_link_check_sees_links() -> None:
    readme = _links(README)
    assert "docs/configuration.md" in readme and "docs/controlplane.md" in readme
    assert github_anchor("The `oncallm` command") == "the-oncallm-command"


# -- (c) make targets ------------------------------------------------------------------------


def makefile_targets() -> set[str]:
    targets = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", line)
        if match:
            targets.add(match.group(1))
    return targets


def make_targets_named(path: Path) -> set[str]:
    found = set()
    for snippet in code_snippets(path.read_text()):
        found |= set(re.findall(r"(?:^|[\s`;(&|])make\s+([a-z][a-z0-9-]*)", snippet, re.M))
    return found


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(REPO)))
def test_make_targets_named_exist(path: Path) -> None:
    targets = makefile_targets()
    assert {"help", "demo", "test"} <= targets
    unknown = sorted(make_targets_named(path) - targets)
    assert not unknown, f"{path.relative_to(REPO)} names make targets the Makefile lacks: {unknown}"


def test_readme_starts_with_make_demo_and_make_test() -> None:
    first = FENCE.search(README.read_text())
    assert first is not None
    commands = [ln.split("#")[0].strip() for ln in first.group(0).splitlines()[1:-1]]
    assert commands[:2] == ["make demo", "make test"]
    named = make_targets_named(README)
    assert {"demo", "test", "eval", "bench", "run", "lint", "test-unit"} <= named


# -- the layering in docs/architecture.md ----------------------------------------------------


def documented_layering() -> dict[str, set[str]]:
    rows = {}
    for line in section(ARCHITECTURE.read_text(), "Package layering").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`\w+`", cells[0]):
            rows[cells[0].strip("`")] = set(re.findall(r"`(\w+)`", cells[2]))
    return rows


def actual_imports() -> dict[str, dict[str, str]]:
    """Package -> {imported package: where}, over every import in OnCallM's code."""
    out: dict[str, dict[str, str]] = {}
    for path in python_files():
        parts = path.relative_to(SOURCE).parts
        if parts == ("__init__.py",):
            continue
        package = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        out.setdefault(package, {})
        for node in ast.walk(parsed(path)):
            modules: list[str] = []
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            for module in modules:
                head, _, rest = module.partition(".")
                other = rest.split(".")[0]
                if head == "oncallm" and other and other != package:
                    out[package].setdefault(other, f"{path.relative_to(REPO)}:{node.lineno}")
    return out


def test_imports_follow_the_documented_layering() -> None:
    allowed = documented_layering()
    actual = actual_imports()
    assert set(allowed) == set(actual), (
        "docs/architecture.md's layering table and operator/oncallm/ list different packages: "
        f"only in the docs {sorted(set(allowed) - set(actual))}, "
        f"only in the code {sorted(set(actual) - set(allowed))}"
    )
    breaches = [
        f"{package} imports {other} ({where})"
        for package, imports in sorted(actual.items())
        for other, where in sorted(imports.items())
        if other not in allowed[package]
    ]
    assert not breaches, (
        "imports the layering in docs/architecture.md does not allow; remove them, or add "
        "the dependency to the table if it belongs there: " + "; ".join(breaches)
    )


# -- the context sources: registered, documented, granted ------------------------------------

RBAC = REPO / "manifests" / "base" / "rbac"
RULES_DOC = DOCS / "rules.md"


def test_analysis_imports_only_the_sources_of_gathering() -> None:
    """analysis stays pure: it may use each source's evidence function, never a reader."""
    wrong = []
    for path in sorted((SOURCE / "analysis").rglob("*.py")):
        for node in ast.walk(parsed(path)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "oncallm.gathering"
            ):
                module = node.module or ""
                if not (
                    module == "oncallm.gathering.sources"
                    or module.startswith("oncallm.gathering.sources.")
                ):
                    wrong.append(f"{path.relative_to(REPO)}:{node.lineno} imports {module}")
    assert not wrong, wrong


def test_every_source_module_is_registered() -> None:
    from oncallm.gathering.sources import SOURCES

    folder = SOURCE / "gathering" / "sources"
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "base"}
    registered = {s.read.__module__.rsplit(".", 1)[1] for s in SOURCES if s.read} | {
        s.evidence.__module__.rsplit(".", 1)[1] for s in SOURCES if s.evidence
    }
    assert modules <= registered, f"modules without a line in SOURCES: {modules - registered}"
    names = [s.name for s in SOURCES]
    assert len(names) == len(set(names)), names


def test_every_source_is_in_the_id_table() -> None:
    """docs/rules.md's id table names the source of each id: every source is there."""
    from oncallm.gathering.sources import SOURCES

    text = section(RULES_DOC.read_text(), "Evidence first")
    documented = set()
    for line in text.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if line.startswith("|") and len(cells) == 3:
            documented |= set(re.findall(r"`(\w+)`", cells[2]))
    missing = [s.name for s in SOURCES if s.evidence is not None and s.name not in documented]
    assert not missing, f"docs/rules.md's id table names no ids of the sources {missing}"


def _granted() -> set[str]:
    """``resource.group`` names the operator's ClusterRoles grant ``get`` on."""
    granted: set[str] = set()
    for path in sorted(RBAC.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "ClusterRole":
                continue
            if doc["metadata"]["name"] not in ("oncallm-reader", "oncallm-configmap-checker"):
                continue
            for rule in doc["rules"]:
                if "get" not in rule["verbs"]:
                    continue
                for group in rule.get("apiGroups", []):
                    for res in rule.get("resources", []):
                        granted.add(f"{res}.{group}" if group else res)
    return granted


def test_every_kind_a_source_reads_is_granted() -> None:
    from oncallm.gathering.sources import SOURCES

    granted = _granted()
    assert "pods" in granted and "deployments.apps" in granted  # the scan itself works
    missing = sorted(f"{r} ({s.name})" for s in SOURCES for r in s.resources if r not in granted)
    assert not missing, (
        "grant get/list on these in manifests/base/rbac/reader.yaml (read-only): "
        + ", ".join(missing)
    )
