"""The plugin API (`mmkeras.plugin`) is the only part of mmkeras that plugins and the scaffold import.

The rule, checked on every Python file under plugins/ and every Python template of `mmkeras new-plugin`:
- a plugin's package code (and its scripts) imports from mmkeras only `mmkeras.plugin`;
- its tests may also use the top-level user API: `import mmkeras` and the names in `mmkeras.__all__`
  (`mmkeras.load_model`, `mmkeras.build_model`, `mmkeras.Recipe`, `mmkeras.registry`, ...).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import mmkeras
import mmkeras.plugin as plugin
from mmkeras.registry import PLUGIN_API_VERSION

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


def _sources() -> list[Path]:
    plugin_files = [p for p in (ROOT / "plugins").rglob("*.py") if ".egg-info" not in str(p) and "build" not in p.parts]
    return sorted(plugin_files) + sorted((ROOT / "mmkeras" / "templates").rglob("*.py.tmpl"))


def _is_test(path: Path) -> bool:
    return path.name.startswith("test_") or "tests" in path.parts


def violations(path: Path, text: str) -> list[str]:
    """``file:line: what`` for each mmkeras import (or attribute) outside what ``path`` may use."""
    tree = ast.parse(PLACEHOLDER.sub(r"X_\1", text), filename=str(path))  # templates: placeholders as names
    user_api = set(mmkeras.__all__) | {"plugin", "__version__"} if _is_test(path) else {"plugin"}
    where = path.relative_to(ROOT)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "mmkeras" and _is_test(path):
                    continue
                if alias.name.split(".")[0] == "mmkeras" and alias.name != "mmkeras.plugin":
                    out.append(f"{where}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mmkeras":
            if node.module == "mmkeras.plugin":
                continue
            bad = [a.name for a in node.names if node.module != "mmkeras" or a.name not in user_api]
            if bad:
                out.append(f"{where}:{node.lineno}: from {node.module} import {', '.join(bad)}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "mmkeras":
            if node.attr not in user_api:  # `import mmkeras` then `mmkeras.data.files....`
                out.append(f"{where}:{node.lineno}: mmkeras.{node.attr}")
    return out


def test_plugins_and_templates_import_only_the_plugin_api():
    sources = _sources()
    assert len(sources) > 20, [str(p) for p in sources]  # the walk found the plugins and the templates
    found = [v for path in sources for v in violations(path, path.read_text())]
    assert not found, "imports outside mmkeras.plugin (see tests/test_plugin_api.py for the rule):\n" + "\n".join(found)


@pytest.mark.parametrize(
    "path, code, expected",
    [
        ("plugins/p/pkg/a.py", "from mmkeras.data.base import Dataset\n", ["from mmkeras.data.base import Dataset"]),
        ("plugins/p/pkg/a.py", "x = 1\nimport mmkeras.model\n", ["2: import mmkeras.model"]),
        ("plugins/p/pkg/a.py", "import mmkeras\n", ["import mmkeras"]),
        ("plugins/p/pkg/a.py", "from mmkeras.plugin import Objective\nimport mmkeras.plugin\n", []),
        (
            "plugins/p/tests/test_a.py",
            "import mmkeras\nmmkeras.load_model('m')\nmmkeras.data.files\n",
            ["mmkeras.data"],
        ),
        ("plugins/p/tests/test_a.py", "from mmkeras import build_model, testing\n", ["import testing"]),
        ("mmkeras/templates/plugin/x.py.tmpl", "from mmkeras.testing import check_${kind}\n", ["mmkeras.testing"]),
    ],
)
def test_the_rule_names_file_line_and_import(path, code, expected):
    found = violations(ROOT / path, code)
    assert len(found) == len(expected), found
    for line, part in zip(found, expected, strict=True):
        assert line.startswith(path + ":") and part in line, line


def test_every_exported_name_exists():
    assert plugin.API_VERSION == PLUGIN_API_VERSION
    assert len(set(plugin.__all__)) == len(plugin.__all__)
    missing = []
    for name in plugin.__all__:
        try:
            getattr(plugin, name)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{name}: {type(exc).__name__}: {exc}")
    assert not missing, missing
    assert plugin.layers.__name__ == "mmkeras.layers" and plugin.losses.__name__ == "mmkeras.losses"
    from mmkeras.objectives.base import Objective

    assert plugin.Objective is Objective


def test_a_name_outside_the_api_says_so():
    with pytest.raises(AttributeError, match=r"mmkeras.plugin has no 'MultimodalModel': it is not part of plugin API"):
        plugin.MultimodalModel  # noqa: B018
