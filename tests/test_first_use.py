"""What a new user trips on first: the recipe's strategy from Python, and a fast `mmkeras plugins`."""

import subprocess
import sys

from conftest import synthetic_recipe

import mmkeras


def test_build_model_from_python_uses_the_recipes_strategy():
    import tensorflow as tf

    doc = synthetic_recipe(distribute={"strategy": "mirrored"})
    model = mmkeras.build_model(mmkeras.recipe_from_dict(doc), {"a": [16], "b": [8, 8, 1]}, compile=False)
    assert isinstance(model.distribute_strategy, tf.distribute.MirroredStrategy)
    kinds = {type(w.value).__name__ for w in model.weights}
    assert kinds == {"MirroredVariable"}  # made under the strategy's scope, so fit trains under it too

    doc = synthetic_recipe(distribute={"strategy": "one_device"})
    plain = mmkeras.build_model(mmkeras.recipe_from_dict(doc), {"a": [16], "b": [8, 8, 1]}, compile=False)
    assert not isinstance(plain.weights[0].value, tf.distribute.DistributedValues)


def test_plugins_lists_from_metadata_without_importing_components():
    code = (
        "import sys\nfrom mmkeras.cli import main\nrc = main(['plugins'])\n"
        "print(rc, [m for m in ('tensorflow', 'keras', 'mmkeras.encoders.mlp') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[-1] == "0 []"  # listing reads entry points only
    assert "  mlp                    mmkeras 0.1.0" in lines
    assert lines[-2].startswith("(read from package metadata; `mmkeras plugins --load`")
