"""A trained encoder exported for serving: a SavedModel with one signature per modality subset,
or one ONNX file per subset. Neither needs mmkeras (nor its plugins) to be loaded and run.

Each subset ``(m1, m2, ...)`` is served under the name ``serve_<m1>_<m2>`` (modalities sorted),
taking ``{modality: [B, *input_shape]}`` and returning ``{"embedding": [B, d] float32}``: the
vectors :meth:`MultimodalEncoder.encode(x, modalities=subset, output=...)
<mmkeras.encoder.MultimodalEncoder.encode>` returns, the ``subset_encoding="mean"`` rule
included.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
from keras import ops

from mmkeras.encoder import OUTPUTS, MultimodalEncoder
from mmkeras.errors import MMKerasError

FORMATS = ("saved_model", "onnx")
#: the name of the one output of every endpoint
OUTPUT_NAME = "embedding"
#: what the ONNX export needs, as a user installs it
ONNX_EXTRA = "pip install 'mmkeras[onnx]' (tf2onnx and onnxruntime)"


class SubsetEncoding(keras.Model):
    """The serving function of one modality subset: ``{m: x_m for m in modalities}`` to
    ``{"embedding": [B, d] float32}``, as :meth:`MultimodalEncoder.encode` computes it. A Model,
    as Keras's ONNX exporter takes.

    Args:
        encoder: a built :class:`~mmkeras.encoder.MultimodalEncoder`.
        modalities: the subset served, each a modality of ``encoder``.
        output: ``"latent"`` (after the head) or ``"feature"`` (before it).
    """

    def __init__(self, encoder: MultimodalEncoder, modalities: Sequence[str], output: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.modalities = sorted(modalities)
        self.output_kind = output
        # nothing of its own to build: the encoder it serves is built
        self.built = True

    def call(self, inputs: dict[str, Any]) -> dict[str, Any]:
        record = self.encoder({m: inputs[m] for m in self.modalities}, training=False)
        per_modality, joint = (
            (record.latents, record.joint) if self.output_kind == "latent" else (record.features, record.joint_feature)
        )
        if self.encoder.subset_encoding == "mean" and self.modalities != self.encoder.modalities:
            # every modality given is present in every row: the masked mean of encode is a plain mean
            total = sum(ops.cast(per_modality[m], "float32") for m in self.modalities)
            return {OUTPUT_NAME: total / float(len(self.modalities))}
        return {OUTPUT_NAME: ops.cast(joint, "float32")}


def endpoint_name(modalities: Sequence[str]) -> str:
    """``serve_<m1>_<m2>...``, the modalities sorted."""
    return "serve_" + "_".join(sorted(modalities))


def export_serving(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    fmt: str = "saved_model",
    subsets: Sequence[Sequence[str] | str] | None = None,
    output: str | None = None,
    *,
    dtypes: dict[str, str] | None = None,
) -> list[str]:
    """Export the trained encoder of ``run_dir`` (a run directory or anything
    :func:`mmkeras.load_encoder` accepts) for serving, to ``out``; returns lines to print.

    ``fmt``: ``"saved_model"`` (a directory for ``tf.saved_model.load``, one signature per subset
    plus ``serving_default``, the first subset) or ``"onnx"`` (a directory of ``serve_*.onnx``
    files, one per subset). ``subsets``: lists of modality names (or ``"a,b"`` strings); default:
    every modality of the encoder together, then each alone. ``output``: ``"latent"`` or
    ``"feature"`` (default: the encoder's ``encode_output``). ``dtypes``: ``{modality: dtype}`` of
    the inputs; by default the run's dataset declares them (``int32`` token ids, say), else float32.

    The export is written to a temporary sibling of ``out`` and renamed into place; an existing
    ``out`` is never overwritten.
    """
    from mmkeras import load_encoder

    if fmt not in FORMATS:
        raise MMKerasError(f"export: unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists():
        raise MMKerasError(f"{out} already exists; refusing to overwrite it (remove it or choose another --out)")
    if fmt == "onnx":
        _check_onnx_converter()
    if output is not None and output not in OUTPUTS:
        raise MMKerasError(f"export: output must be 'latent' or 'feature', got {output!r}")
    encoder = load_encoder(run_dir)
    output = output or encoder.encode_output
    chosen = _subsets(encoder, subsets)
    dtypes, dtype_source = _input_dtypes(encoder, Path(run_dir), dtypes)
    specs = {
        m: _tensor_spec(m, [None, *encoder.input_shapes[m]], dtypes[m])
        for m in sorted({m for subset in chosen for m in subset})
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if fmt == "saved_model":
            dims = _write_saved_model(encoder, chosen, output, specs, staging)
        else:
            dims = _write_onnx(encoder, chosen, output, specs, staging)
        if out.exists():
            raise MMKerasError(f"{out} appeared while exporting; refusing to overwrite it")
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    inputs = ", ".join(f"{m} {specs[m].dtype.name}{_shape(specs[m].shape)}" for m in specs)
    lines = [f"wrote {'a SavedModel' if fmt == 'saved_model' else 'ONNX files'} of {run_dir} to {out}"]
    for i, subset in enumerate(chosen):
        name = endpoint_name(subset)
        where = f"{name}.onnx" if fmt == "onnx" else name + (" (serving_default)" if i == 0 else "")
        lines.append(f"  {where}: {', '.join(subset)} -> {OUTPUT_NAME} float32[None, {dims[name]}] ({output})")
    lines.append(f"  inputs: {inputs} (dtypes {dtype_source})")
    if fmt == "saved_model":
        arguments = ", ".join(f"{m}=..." for m in chosen[0])
        lines.append(
            f'  load: tf.saved_model.load("{out}").signatures["{endpoint_name(chosen[0])}"]'
            f'({arguments})["{OUTPUT_NAME}"]'
        )
    return lines


def _subsets(encoder: MultimodalEncoder, subsets: Sequence[Sequence[str] | str] | None) -> list[list[str]]:
    """The subsets to serve, each sorted, checked and without repeats; the default one first."""
    if subsets is None:
        subsets = [encoder.modalities] + [[m] for m in encoder.modalities]
    chosen: list[list[str]] = []
    names: dict[str, list[str]] = {}
    for subset in subsets:
        given = subset.split(",") if isinstance(subset, str) else list(subset)
        modalities = sorted({m.strip() for m in given if m.strip()})
        if not modalities:
            raise MMKerasError(
                f"export: an empty subset; name modalities of the encoder ({', '.join(encoder.modalities)})"
            )
        unknown = [m for m in modalities if m not in encoder.modalities]
        if unknown:
            raise MMKerasError(
                f"export: subset {','.join(modalities)}: unknown modality {unknown[0]!r}; "
                f"the encoder has {', '.join(encoder.modalities)}"
            )
        name = endpoint_name(modalities)
        if name in names and names[name] != modalities:
            raise MMKerasError(
                f"export: subsets {','.join(names[name])} and {','.join(modalities)} would both be served as {name}"
            )
        if name not in names:
            names[name] = modalities
            chosen.append(modalities)
    return chosen


def _input_dtypes(encoder: MultimodalEncoder, source: Path, given: dict[str, str] | None) -> tuple[dict[str, str], str]:
    """Each modality's input dtype, and where they came from (for the printed summary)."""
    if given is not None:
        unknown = sorted(set(given) - set(encoder.modalities))
        if unknown:
            raise MMKerasError(
                f"export: dtypes for unknown modality {unknown[0]!r}; the encoder has {encoder.modalities}"
            )
        return {m: given.get(m, "float32") for m in encoder.modalities}, "as given"
    declared = _declared_dtypes(source)
    if declared is not None:
        return {m: declared.get(m, "float32") for m in encoder.modalities}, "as the run's dataset declares them"
    return {m: "float32" for m in encoder.modalities}, "float32: no run recipe declares them"


def _declared_dtypes(source: Path) -> dict[str, str] | None:
    """The dtypes the dataset of the run's recipe declares; None when there is no run recipe or
    its dataset declares none."""
    recipe_file = source / "recipe.yaml"
    if not recipe_file.is_file():
        return None
    from mmkeras.builder import make_dataset
    from mmkeras.recipe import load_recipe

    try:
        info = make_dataset(load_recipe(str(recipe_file))).info()
    except (MMKerasError, OSError, ValueError):
        # the encoder is loaded already: a dataset whose files are gone only costs the dtypes
        return None
    return {m: i.dtype for m, i in info.items()} if info else None


def _tensor_spec(name: str, shape: list[int | None], dtype: str) -> Any:
    import tensorflow as tf

    try:
        return tf.TensorSpec(shape, tf.string if dtype == "string" else tf.as_dtype(dtype), name=name)
    except TypeError:
        raise MMKerasError(
            f"export: modality {name}: unknown dtype {dtype!r} (float32, int32, int64, string ...)"
        ) from None


def _shape(shape: Any) -> str:
    return "[" + ", ".join("None" if d is None else str(d) for d in shape) + "]"


def _write_saved_model(
    encoder: MultimodalEncoder, subsets: list[list[str]], output: str, specs: dict[str, Any], path: Path
) -> dict[str, int]:
    """One endpoint per subset; the first becomes ``serving_default``. Returns each endpoint's output size."""
    archive = keras.export.ExportArchive()
    archive.track(encoder)
    dims = {}
    for subset in subsets:
        name = endpoint_name(subset)
        serve = SubsetEncoding(encoder, subset, output, name=name)
        fn = archive.add_endpoint(name, serve.call, input_signature=[{m: specs[m] for m in subset}])
        dims[name] = int(fn.get_concrete_function().structured_outputs[OUTPUT_NAME].shape[-1])
    archive.write_out(str(path), verbose=False)
    return dims


def _check_onnx_converter() -> None:
    """A one-line error when the converter Keras's ONNX exporter uses is missing or does not import."""
    if keras.backend.backend() not in ("tensorflow", "jax"):
        return
    for module in ("tf2onnx", "onnx"):
        if importlib.util.find_spec(module) is None:
            raise MMKerasError(f"export --format onnx needs {module}, which is not installed: {ONNX_EXTRA}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(module)
        except Exception as exc:  # an incompatible build fails in many ways; its first line says which
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MMKerasError(
                f"export --format onnx: {module} is installed but does not import with this TensorFlow/Keras ({first})"
            ) from None


def _write_onnx(
    encoder: MultimodalEncoder, subsets: list[list[str]], output: str, specs: dict[str, Any], path: Path
) -> dict[str, int]:
    """One ``serve_*.onnx`` per subset, converted by Keras's exporter. Returns each file's output size."""
    dims = {}
    for subset in subsets:
        name = endpoint_name(subset)
        serve = SubsetEncoding(encoder, subset, output, name=name)
        signature = [{m: specs[m] for m in subset}]
        converter_log = logging.getLogger("tf2onnx")
        level = converter_log.level
        # the converter logs each op it cannot translate; the checker below says it in one line
        converter_log.setLevel(logging.CRITICAL)
        try:
            with warnings.catch_warnings():
                # tf2onnx's numpy-2 shim and its converter warn about nothing a user can act on
                warnings.simplefilter("ignore")
                serve.export(str(path / f"{name}.onnx"), format="onnx", verbose=False, input_signature=signature)
        except Exception as exc:  # an op the converter does not know fails in many ways; say which subset
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MMKerasError(
                f"export --format onnx: subset {','.join(subset)} could not be converted: {first}"
            ) from None
        finally:
            converter_log.setLevel(level)
        dims[name] = _checked_onnx(path / f"{name}.onnx", subset)
    return dims


def _checked_onnx(path: Path, subset: list[str]) -> int:
    """The output size of a converted file, after ONNX's checker: the converter writes a graph
    with the TensorFlow ops it cannot translate left in, and only logs them."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise MMKerasError(
            f"export --format onnx: subset {','.join(subset)}: the converter cannot translate this model ({first}); "
            "export --format saved_model serves it"
        ) from None
    dim = onnx.load(str(path), load_external_data=False).graph.output[0].type.tensor_type.shape.dim[-1]
    return int(dim.dim_value)
