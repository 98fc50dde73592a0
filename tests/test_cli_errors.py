"""Every user-caused failure of the command line ends in one line on stderr and exit code 2, with
no traceback unless --debug: unwritable or full disks, an --output that is a file, and plugins
that exit, raise BaseException or print while they are imported."""

import errno
import json
import os
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import synthetic_recipe

from mmkeras.cli import main


def make_plugin(root: Path, dist: str, module: str, source: str, encoders: dict[str, str]) -> Path:
    """An installed distribution in ``root`` (a sys.path entry): ``module.py`` and a dist-info
    declaring ``encoders`` (name -> attribute of ``module``) as entry points."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    lines = ["[mmkeras.encoders]"] + [f"{name} = {module}:{attr}" for name, attr in encoders.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def hostile_plugins(tmp_path, monkeypatch, fresh_registry):
    """Three installed plugins: one exits on import, one raises a BaseException subclass, one
    prints (through print and straight to fd 1) and then loads."""
    root = tmp_path / "site"
    make_plugin(
        root, "exit-plugin", "mmk_exit_plugin", 'raise SystemExit("mmk_exit_plugin will not load")\n', {"exits": "X"}
    )
    make_plugin(
        root,
        "base-plugin",
        "mmk_base_plugin",
        """
        class Refusal(BaseException):
            pass

        raise Refusal("mmk_base_plugin refuses")
        """,
        {"refuses": "X"},
    )
    make_plugin(
        root,
        "chatty-plugin",
        "mmk_chatty_plugin",
        """
        import os

        print("hello from mmk_chatty_plugin")
        os.write(1, b"raw bytes from mmk_chatty_plugin\\n")


        class Chatty:
            pass
        """,
        {"chatty": "Chatty"},
    )
    monkeypatch.syspath_prepend(str(root))
    fresh_registry.discover(force=True)
    return fresh_registry


def write_recipe(tmp_path, **over) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(synthetic_recipe(**over)))
    return path


def one_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def test_plugins_json_stays_json_when_plugins_exit_raise_or_print(hostile_plugins, capfd):
    assert main(["plugins", "--json"]) == 0
    out, err = capfd.readouterr()
    rows = {r["name"]: r for r in json.loads(out)}  # nothing the plugins printed is in stdout
    assert rows["exits"]["status"] == "broken"
    assert rows["exits"]["error"] == "SystemExit: mmk_exit_plugin will not load"
    assert rows["refuses"]["status"] == "broken" and rows["refuses"]["error"] == "Refusal: mmk_base_plugin refuses"
    assert rows["chatty"]["status"] == "loaded" and rows["mlp"]["status"] == "loaded"
    assert "hello from mmk_chatty_plugin" in err and "raw bytes from mmk_chatty_plugin" in err  # shown, on stderr


def test_plugins_without_load_imports_nothing(hostile_plugins, capfd):
    assert main(["plugins"]) == 0
    out, err = capfd.readouterr()
    assert "hello from mmk_chatty_plugin" not in out + err
    assert hostile_plugins.entry("encoders", "exits").status == "not loaded"
    assert "  exits                  exit-plugin 0.1.0\n" in out
    assert main(["plugins", "--strict"]) == 1
    assert capfd.readouterr().err == "error: 2 broken or clashing plugin entries\n"


def test_recipe_naming_a_plugin_that_exits_is_one_line_and_debug_shows_the_plugins_traceback(
    hostile_plugins, tmp_path, capsys
):
    recipe = write_recipe(tmp_path, modalities__a__encoder={"name": "exits"})
    assert main(["validate", str(recipe)]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {recipe}:")
    assert "modalities.a.encoder.name" in err and "'exits' from distribution 'exit-plugin'" in err
    assert "SystemExit: mmk_exit_plugin will not load" in err

    assert main(["--debug", "validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "encoder 'exits' (exit-plugin) failed to import:\nTraceback" in err
    assert 'mmk_exit_plugin.py", line 1' in err  # the plugin's own frame
    assert err.rstrip().splitlines()[-1].startswith(f"error: {recipe}:")


def test_output_naming_a_file(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert main(["train", str(write_recipe(tmp_path)), "--output", str(target)]) == 2
    err = one_line(capsys.readouterr().err)
    assert err == f"error: {target} is a file, not a run directory; pass --output NEW_DIR\n"
    assert target.read_text() == "mine"


def test_output_under_a_read_only_directory(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("this user writes to a read-only directory anyway (root)")
        assert main(["train", str(write_recipe(tmp_path)), "--output", str(parent / "run")]) == 2
    finally:
        parent.chmod(0o755)
    assert one_line(capsys.readouterr().err) == f"error: {parent / 'run'}: Permission denied\n"


def test_read_only_file_system_and_debug(tmp_path, capsys, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    recipe = write_recipe(tmp_path)
    run = tmp_path / "run"
    monkeypatch.setattr(Path, "mkdir", read_only)  # as a read-only mount would, for root too
    assert main(["train", str(recipe), "--output", str(run)]) == 2
    assert one_line(capsys.readouterr().err) == f"error: {run}: Read-only file system\n"
    assert main(["--debug", "train", str(recipe), "--output", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith(f"error: {run}: Read-only file system\n")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_full_disk_names_the_file_being_written(tmp_path, capsys):
    run = tmp_path / "done"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"recipe": "r", "epochs": 1, "final": {"loss": 0.5}}))
    assert main(["compare", str(run), "--output", "/dev/full"]) == 2  # every write there fails with ENOSPC
    out, err = capsys.readouterr()
    assert "| final loss | 0.5000 |" in out
    assert one_line(err) == "error: No space left on device (while writing /dev/full)\n"
