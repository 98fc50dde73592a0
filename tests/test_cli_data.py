import pytest
from conftest import run_cli

from mmkeras.registry import registry


@pytest.mark.skipif("mhd" not in registry.names("datasets"), reason="the mmkeras-mhd plugin is not installed")
def test_data_build_then_cache_hit(tmp_path):
    args = ("data", "build", "mhd", "--size", "tiny", "--param", f"data_dir={tmp_path}", "--param", "workers=1")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "mhd train: 200 rows; image (28, 28, 1), sound (32, 128), trajectory (200,), label (10,)" in first.stdout
    assert "mhd test: 100 rows" in first.stdout
    files = sorted(p.name for p in (tmp_path / "mhd").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in sorted((tmp_path / "mhd").iterdir())]
    second = run_cli(*args)
    assert second.returncode == 0 and second.stdout == first.stdout
    assert sorted(p.name for p in (tmp_path / "mhd").iterdir()) == files
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "mhd").iterdir())] == mtimes  # a cache hit


def test_data_build_bad_size_is_a_clear_error(tmp_path):
    out = run_cli("data", "build", "mhd", "--size", "huge", "--param", f"data_dir={tmp_path}")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "size" in out.stderr and "huge" in out.stderr
