"""Save and load one adapter set on its own: safetensors weights + a JSON config.

A directory per adapter::

    adapter_config.json     "library": "madx", kind, name, dims, layers left out (if any), architecture, base model,
                            format version
    adapter.safetensors     the adapter set's tensors (``layers.{i}.down.weight``, ``invertible.F.up.bias``, ...)
    head.safetensors        task adapters only, when saved with their prediction head

The file names are AdapterHub's and PEFT's; ``"library": "madx"`` says whose the directory is (format
2; a format-1 file, without it, still loads), and a PEFT or AdapterHub directory given to ``load_adapter``
is refused with the call that reads it. ``load_adapter`` also takes a Hugging Face Hub repo id
(``"org/name"``, with ``revision=`` and ``subfolder=``) when no local path of that name exists: the
files are fetched with ``huggingface_hub.snapshot_download`` (its cache and ``HF_HUB_OFFLINE`` apply).

Nothing is ever unpickled. Loading reads and checks everything before it touches the model —
the config field by field, every tensor against the name, shape and dtype the config and the
model imply — then installs the adapter in one step, so a failed load leaves the model as it was
(not even attached). Every error names the file, and the field or tensor, in one line.

``leave_out`` (MAD-X 2.0) lists the layers without an adapter, as indices ``0..num_layers-1``; it is
written only when it lists one, so the files of adapters in every layer are unchanged, and a file
without it (any earlier madx) loads as ``leave_out=[]``. The weights then lack those layers' tensors.

Dtypes: any floating dtype is accepted (a bf16 run saves bf16 adapters) and cast to the model's
dtype, as ``load_state_dict`` does. Refused: integer, bool and complex tensors, NaN and inf, and
values the cast would overflow (an fp32 weight beyond 65504 loaded into an fp16 model).
"""

from __future__ import annotations

import difflib
import json
import logging
import reprlib
import stat
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from madx.adapters.config import resolve_layers
from madx.adapters.sets import ADAPTER_KINDS, AdapterSet
from madx.atomic import atomic_write, atomic_write_json
from madx.compose.stack import Stack
from madx.inject.model import add_adapter, adapter_names, delete_adapter, detach, get_store, head_state, is_attached, task_heads

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: the "library" field
LIBRARY = "madx"
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter.safetensors"
HEAD_NAME = "head.safetensors"
MAX_DETAIL = 280  # characters of an error message after its path


def is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _adapter_name(value) -> bool:
    try:
        Stack(value)  # the one place that says what an adapter name may be
    except ValueError:
        return False
    return True


def _head_names(value) -> bool:
    return value is None or (
        isinstance(value, list) and bool(value) and all(isinstance(h, str) and h for h in value) and len(set(value)) == len(value)
    )


def _spec(check, expected: str):
    return field(metadata={"check": check, "expected": expected})


def _layer_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in value) \
        and len(set(value)) == len(value)


@dataclass(frozen=True)
class AdapterFileConfig:
    name: str = _spec(_adapter_name, "an adapter name (letters, digits, '_' or '-')")
    kind: str = _spec(lambda v: isinstance(v, str) and v in ADAPTER_KINDS, f"one of {', '.join(map(repr, ADAPTER_KINDS))}")
    architecture: str = _spec(lambda v: isinstance(v, str) and bool(v), "a model_type, e.g. 'xlm-roberta'")  # of the model it was trained with
    base_model: str = _spec(lambda v: isinstance(v, str), "a string (name or path of the base model)")
    hidden_size: int = _spec(is_positive_int, "a positive integer")
    num_layers: int = _spec(is_positive_int, "a positive integer")
    bottleneck_size: int = _spec(is_positive_int, "a positive integer")
    invertible_bottleneck_size: int | None = _spec(lambda v: v is None or is_positive_int(v), "a positive integer or null")
    head: list[str] | None = _spec(_head_names, "null or a list of distinct task head names, e.g. ['classifier']")
    format_version: int = field(default=FORMAT_VERSION, metadata={"check": is_positive_int, "expected": "a positive integer"})
    leave_out: list[int] = field(default_factory=list, metadata={
        "check": _layer_list, "expected": "a list of distinct layer indices (0 = the first layer), e.g. [11]"})
    library: str = field(default=LIBRARY, metadata={"check": lambda v: v == LIBRARY, "expected": repr(LIBRARY)})

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not f.metadata["check"](value):
                raise ValueError(f"field {f.name!r} must be {f.metadata['expected']}, got {describe(value)}")
        if self.invertible_bottleneck_size is not None and self.kind != "language":
            raise ValueError(f"field 'invertible_bottleneck_size' must be null for a {self.kind} adapter (only language adapters carry one)")
        if self.invertible_bottleneck_size is not None and self.hidden_size % 2:
            raise ValueError(f"field 'hidden_size' must be even for an invertible adapter, got {self.hidden_size}")
        if self.head is not None and self.kind != "task":
            raise ValueError(f"field 'head' must be null for a {self.kind} adapter (only task adapters are saved with a head)")
        if any(i >= self.num_layers for i in self.leave_out) or len(self.leave_out) >= self.num_layers:
            raise ValueError(f"field 'leave_out' must be some of layers 0..{self.num_layers - 1}, not all (num_layers is "
                             f"{self.num_layers}), got {describe(self.leave_out)}")

    @classmethod
    def read(cls, path: Path) -> "AdapterFileConfig":
        data = read_json_object(path, "adapter config", missing="no adapter config here; is this a madx adapter directory?")
        version = data.get("format_version", FORMAT_VERSION)  # first: a newer format may have other fields
        if not is_positive_int(version):
            raise file_error(path, f"field 'format_version' must be a positive integer, got {describe(version)}")
        if version > FORMAT_VERSION:
            raise file_error(path, f"format_version {version} is newer than this madx reads ({FORMAT_VERSION}): written by a newer madx; upgrade madx-bench")
        if "peft_type" in data:
            raise file_error(path, f"this is a PEFT adapter config (peft_type {describe(data['peft_type'])}), not a madx one; "
                             "load it with peft (PeftModel.from_pretrained)")
        if data.get("library", LIBRARY) != LIBRARY:
            raise file_error(path, f"this adapter was written by {describe(data['library'])}, not madx")
        if "config" in data and "kind" not in data:
            raise file_error(path, "this is an AdapterHub adapter config, not a madx one; import it with madx.import_adapterhub(model, directory, "
                             "kind='language' or 'task') and stack it with Stack(..., mode='adapterhub') to compute what AdapterHub computes")
        known = [f.name for f in fields(cls)]
        unknown = [key for key in data if key not in known]
        if unknown:
            hints = [(key, difflib.get_close_matches(key, known, n=1)) for key in unknown]
            listed = ", ".join(reprlib.repr(key) + (f" (did you mean {near[0]!r}?)" if near else "") for key, near in hints[:3])
            rest = "" if all(near for _, near in hints) else f"; known fields: {', '.join(known)}"
            raise file_error(path, f"unknown field(s) {listed}{rest}")
        optional = [f.name for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING]
        missing = [n for n in known if n not in data and n not in optional]
        if missing:
            raise file_error(path, f"missing field(s) {', '.join(missing)}")
        try:
            return cls(**data)
        except ValueError as error:
            raise file_error(path, str(error)) from None


def save_adapter(model: nn.Module, name: str, directory: str | Path, with_head: bool | None = None) -> Path:
    """Write adapter ``name`` (and, for a task adapter, the task head unless ``with_head=False``)."""
    directory = Path(directory)
    adapter_set = get_store(model).get(name)
    heads = task_heads(model, name) if adapter_set.kind == "task" and with_head is not False else {}
    if with_head and not heads:
        raise ValueError(f"task adapter {name!r} on {type(model).__name__} has no task head to save with it")
    config = AdapterFileConfig(
        name=name,
        kind=adapter_set.kind,
        architecture=model.config.model_type,
        base_model=str(getattr(model.config, "_name_or_path", "") or ""),
        hidden_size=adapter_set.hidden_size,
        num_layers=adapter_set.num_layers,
        bottleneck_size=adapter_set.bottleneck_size,
        invertible_bottleneck_size=adapter_set.invertible_bottleneck_size,
        head=sorted(heads) or None,
        leave_out=list(adapter_set.leave_out),
    )
    metadata = {"format": "pt", "madx_format_version": str(FORMAT_VERSION)}
    _save_tensors(adapter_set.state_dict(), directory / WEIGHTS_NAME, metadata)
    if heads:
        head_tensors = {f"{head}.{key}": t for head, module in heads.items() for key, t in head_state(module).items()}
        _save_tensors(head_tensors, directory / HEAD_NAME, metadata)
    written = {"library": LIBRARY, **asdict(config)}
    if not config.leave_out:
        del written["leave_out"]  # files of adapters in every layer stay as earlier madx wrote (and reads) them
    atomic_write_json(directory / CONFIG_NAME, written)  # written last: its presence means complete
    return directory


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, tmp, metadata=metadata))


def load_adapter(
    model: nn.Module, directory: str | Path, name: str | None = None, load_head: bool = True, leave_out: Sequence[int] | None = None,
    revision: str | None = None, subfolder: str | None = None,
) -> str:
    """Load a saved adapter into ``model`` under ``name`` (default: its saved name). Returns the name.

    ``directory``: a local adapter directory, or a Hugging Face Hub repo id (``revision``, ``subfolder``) when no local
    path of that name exists. A task adapter's head goes into the adapter's own head, never into another's.

    ``leave_out``: the layers the caller expects the adapter to leave out (negative indices count from the
    end; MAD-X 2.0: ``(-1,)``), checked against the file; ``None`` takes what the file says.
    Everything is read and checked first; on any error the model is left exactly as it was."""
    directory = resolve_adapter_directory(directory, revision, subfolder)
    config = AdapterFileConfig.read(directory / CONFIG_NAME)
    name = name or config.name
    if name in adapter_names(model):
        raise file_error(directory, f"an adapter named {name!r} is already loaded on this model; delete it first or pass another name")
    check_compatible(model, config, directory)
    if leave_out is not None:
        check_leave_out(model, config, leave_out, directory / CONFIG_NAME)
    what = f"{config.kind} adapter {config.name!r}"
    weights_path = directory / WEIGHTS_NAME
    tensors = read_tensors(weights_path, f"the weights of {what}")
    expected = expected_adapter_state(model, config.kind, config.bottleneck_size, config.invertible_bottleneck_size, config.leave_out)
    check_tensors(tensors, expected, weights_path, what)

    heads: list[tuple[str, dict[str, torch.Tensor]]] = []
    if config.head and load_head:
        modules = task_heads(model)
        missing = [h for h in config.head if h not in modules]
        if missing:
            raise file_error(directory, f"task adapter {config.name!r} was saved with head(s) {missing}, which {type(model).__name__} lacks")
        head_path, head_what = directory / HEAD_NAME, f"the head of {config.name!r}"
        head_tensors = read_tensors(head_path, head_what)
        expected_heads = {f"{h}.{key}": t for h in config.head for key, t in head_state(modules[h]).items()}
        check_tensors(head_tensors, expected_heads, head_path, head_what)
        heads = [(h, {key[len(h) + 1:]: t for key, t in head_tensors.items() if key.startswith(h + ".")}) for h in config.head]
    install_adapter(model, name, config.kind, config.bottleneck_size, config.invertible_bottleneck_size, tensors, heads,
                    leave_out=config.leave_out)
    return name


def check_compatible(model: nn.Module, config: AdapterFileConfig, directory: Path) -> None:
    what = f"{config.kind} adapter {config.name!r} ({directory})"
    model_config = model.config
    if config.hidden_size != model_config.hidden_size:
        raise ValueError(f"{what} was trained for hidden size {config.hidden_size}, this model has {model_config.hidden_size}")
    if config.num_layers != model_config.num_hidden_layers:
        raise ValueError(f"{what} has {config.num_layers} layers, this model has {model_config.num_hidden_layers}")
    if config.architecture != model_config.model_type:
        raise ValueError(f"{what} was trained with architecture {config.architecture!r}, this model is {model_config.model_type!r}")
    base = str(getattr(model_config, "_name_or_path", "") or "")
    if config.base_model and base and not same_base_model(config.base_model, base):
        logger.warning("%s was trained on base model %r, loading into %r", what, config.base_model, base)


def same_base_model(saved: str, current: str) -> bool:
    """Do two base-model references name the same model? Local paths compare resolved (``models/tiny`` and
    ``/work/models/tiny`` from ``/work`` are one model), hub names as written."""
    if saved == current:
        return True
    paths = [Path(name).expanduser() for name in (saved, current)]
    if all(path.exists() for path in paths):
        return paths[0].resolve() == paths[1].resolve()
    return False


def resolve_adapter_directory(directory: str | Path, revision: str | None = None, subfolder: str | None = None) -> Path:
    """A local adapter directory, checked; or the local snapshot of a Hub repo when ``directory`` is a repo id that
    names no local path. A directory without a config whose subfolder has one is named in the error."""
    path = Path(directory).expanduser()
    local = path / subfolder if subfolder else path
    if path.exists() or not _looks_like_repo_id(str(directory)):
        check_directory(local)
        if not (local / CONFIG_NAME).exists():
            inner = sorted(p.parent for p in local.glob(f"*/{CONFIG_NAME}"))
            if inner:
                raise file_error(local, f"no {CONFIG_NAME} here, but {inner[0]} has one (madx train-lang --out DIR writes "
                                 f"the adapter to DIR/adapter); pass {inner[0]}", FileNotFoundError)
        return local
    from huggingface_hub import snapshot_download

    patterns = [CONFIG_NAME, WEIGHTS_NAME, HEAD_NAME]
    try:
        snapshot = Path(snapshot_download(str(directory), revision=revision,
                                          allow_patterns=[f"{subfolder}/{p}" for p in patterns] if subfolder else patterns))
    except Exception as error:  # offline, unknown repo, no access: say what was tried
        reason = " ".join(str(error).split())[:200]
        raise file_error(Path(str(directory)), f"no local directory of that name, and the Hugging Face Hub repo {str(directory)!r} could "
                         f"not be fetched: {type(error).__name__}: {reason}", FileNotFoundError) from None
    target = snapshot / subfolder if subfolder else snapshot
    check_directory(target)
    return target


def _looks_like_repo_id(text: str) -> bool:
    """``org/name``: one slash, no path syntax (``./``, ``~``, absolute) and a first part that is no local folder."""
    parts = text.split("/")
    return (len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text
            and not Path(parts[0]).exists())


def check_leave_out(model: nn.Module, config: AdapterFileConfig, expected: Sequence[int], path: Path) -> None:
    """The file's ``leave_out`` must be the layers ``expected`` names (resolved against the model's layers)."""
    try:
        wanted = list(resolve_layers(expected, model.config.num_hidden_layers))
    except ValueError as error:
        raise ValueError(f"the expected {error}") from None
    if sorted(config.leave_out) != wanted:
        def layers(value):
            return f"no adapter in layer(s) {', '.join(map(str, value))}" if value else "adapters in every layer"
        raise file_error(path, f"field 'leave_out' is {config.leave_out}: {config.kind} adapter {config.name!r} has {layers(config.leave_out)}, "
                               f"but leave_out={list(expected)} ({layers(wanted)}) was expected")


# ---- reading and checking adapter files (shared with madx.adapterhub) ----


def check_directory(directory: Path, looks_for: str = "a madx adapter directory") -> None:
    try:
        mode = directory.stat().st_mode
    except FileNotFoundError:
        raise file_error(directory, f"no adapter config here: the directory does not exist (expected {looks_for})", FileNotFoundError) from None
    except OSError as error:  # a symlink loop, no permission, ...
        raise file_error(directory, f"cannot open {looks_for}: {error.strerror or error}", type(error)) from None
    if not stat.S_ISDIR(mode):
        raise file_error(directory, f"is a file, not {looks_for}; pass the directory that holds {CONFIG_NAME}", NotADirectoryError)


def read_json_object(path: Path, what: str, missing: str) -> dict:
    """The JSON object in ``path``; any problem is raised naming the path (and line and column)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise file_error(path, missing, FileNotFoundError) from None
    except UnicodeDecodeError as error:
        raise file_error(path, f"the {what} is not UTF-8 text (byte {error.start} is {error.object[error.start]:#04x}); expected JSON") from None
    except OSError as error:
        raise _os_error(path, f"the {what}", error) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise file_error(path, f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    except RecursionError:
        raise file_error(path, "not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise file_error(path, f"the {what} must be a JSON object {{...}}, got {describe(data)}")
    return data


def read_tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing, unreadable or pickled file is raised naming the path."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(8)
    except FileNotFoundError:
        raise file_error(path, f"no such file ({what})", FileNotFoundError) from None
    except OSError as error:
        raise _os_error(path, what, error) from None
    try:
        return load_file(str(path))
    except Exception as error:  # SafetensorError, or a dtype this torch lacks
        pickled = _pickle_kind(magic)
        if pickled:
            raise file_error(
                path, f"this looks like a PyTorch pickle ({pickled}), not safetensors; madx never unpickles: convert it where "
                "you trust it with safetensors.torch.save_file(torch.load(f, weights_only=True), 'adapter.safetensors')",
            ) from None
        reason = str(error).removeprefix("Error while deserializing header: ")
        raise file_error(path, f"not a readable safetensors file ({path.stat().st_size} bytes; {what}): {reason}") from None


def _pickle_kind(magic: bytes) -> str | None:
    if magic.startswith(b"PK\x03\x04"):
        return "a torch.save zip archive"
    if magic[:1] == b"\x80" and magic[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a pickle stream"
    return None


def check_tensors(
    tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], path: Path, what: str, shown: dict[str, str] | None = None
) -> None:
    """``tensors`` must have exactly ``expected``'s names and shapes, a floating dtype where it has one, finite values
    that stay finite in its dtype. ``shown`` maps a key to the name the file uses for it, for messages."""
    shown = shown or {}
    missing = [k for k in expected if k not in tensors]
    unexpected = sorted(k for k in tensors if k not in expected)
    if missing or unexpected:
        parts = [f"{label} {_some([shown.get(k, k) for k in keys])}" for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
        raise file_error(path, f"tensors of {what} do not match this model: {', '.join(parts)}")
    for key, target in expected.items():
        tensor, label = tensors[key], f"tensor {shown.get(key, key)!r} of {what}"
        if tensor.is_floating_point() != target.is_floating_point() or (not target.is_floating_point() and tensor.dtype != target.dtype):
            want = "a floating dtype (float32, bfloat16, float16)" if target.is_floating_point() else str(target.dtype)
            raise file_error(path, f"{label} has dtype {tensor.dtype}, expected {want}")
        if tensor.shape != target.shape:
            raise file_error(path, f"{label} has shape {tuple(tensor.shape)}, expected {tuple(target.shape)}")
        if not tensor.is_floating_point():
            continue
        values = tensor if tensor.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64) else tensor.float()
        finite = torch.isfinite(values)
        if not bool(finite.all()):
            nan = int(torch.isnan(values).sum())
            raise file_error(path, f"{label} has {nan} NaN and {int((~finite).sum()) - nan} infinite value(s) among {values.numel()}; refusing to load it")
        if tensor.dtype != target.dtype and not bool(torch.isfinite(values.to(target.dtype)).all()):
            largest = float(values.abs().max())
            raise file_error(path, f"{label} overflows this model's {target.dtype} (max |x| = {largest:.3g}); load it into a float32 or bfloat16 model")


def expected_adapter_state(
    model: nn.Module, kind: str, bottleneck_size: int, invertible_bottleneck_size: int | None, leave_out: Sequence[int] = ()
) -> dict[str, torch.Tensor]:
    """Names, shapes and dtype of an adapter set for ``model``, on the meta device: nothing is allocated, so a config
    asking for a huge adapter costs nothing until its tensor file says the same."""
    dtype = next(model.parameters()).dtype
    with torch.device("meta"):
        adapter_set = AdapterSet(kind, model.config.num_hidden_layers, model.config.hidden_size, bottleneck_size,
                                 invertible_bottleneck_size, leave_out)
    return adapter_set.to(dtype=dtype).state_dict()


def install_adapter(
    model: nn.Module,
    name: str,
    kind: str,
    bottleneck_size: int,
    invertible_bottleneck_size: int | None,
    tensors: dict[str, torch.Tensor],
    heads: Sequence[tuple[str, dict[str, torch.Tensor]]] = (),
    leave_out: Sequence[int] = (),
) -> None:
    """Add adapter set ``name`` holding the checked ``tensors`` and load the checked head states (by head name, e.g.
    ``classifier``) into the task adapter's own heads, all or nothing: on any failure the model is put back as it was
    (detached again if it was not attached). No other adapter's head, and not the model's own, is touched."""
    was_attached = is_attached(model)
    adapter_set = None
    try:
        adapter_set = add_adapter(model, name, kind, bottleneck_size, invertible_bottleneck_size, leave_out)
        adapter_set.load_state_dict(tensors)
        own = task_heads(model, name)
        for head, state in heads:
            own[head].load_state_dict(state)
    except BaseException:
        if adapter_set is not None:
            delete_adapter(model, name)
        if not was_attached and is_attached(model):
            detach(model)
        raise


def file_error(path: Path, detail: str, kind: type[Exception] = ValueError) -> Exception:
    """``kind("<path>: <detail>")`` on one line, the detail cut to ``MAX_DETAIL`` characters."""
    detail = " ".join(str(detail).split())  # one line
    if len(detail) > MAX_DETAIL:
        detail = detail[: MAX_DETAIL - 1] + "…"
    return kind(f"{path}: {detail}")


def _os_error(path: Path, what: str, error: OSError) -> Exception:
    if isinstance(error, IsADirectoryError):
        return file_error(path, f"is a directory, expected a file ({what})", IsADirectoryError)
    return file_error(path, f"cannot read {what}: {error.strerror or error}", type(error))  # e.g. a symlink loop


_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object", type(None): "null"}


def describe(value) -> str:
    """A value as a message shows it: short repr and JSON type, e.g. ``'32' (a string)``."""
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    return kind if value is None else f"{reprlib.repr(value)} ({kind})"


def _some(keys: list[str]) -> str:
    return f"{keys[:3]}" + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
