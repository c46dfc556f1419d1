"""Keyword options of the Python API and the command-line flags they stand for.

Each tool accepts a fixed set of keywords; a keyword maps to one flag of the tool
(``fuse_bn=True`` -> ``--fuse-bn``, ``tolerance=1e-5`` -> ``--tolerance 1e-5``) or, for
the repeatable ones, to one flag per item (``kernel_size={"conv1": (3, 3)}`` ->
``--kernel-size conv1=3x3``, ``dim={"batch": 2}`` -> ``--dim batch=2``). Nothing here
interprets a value beyond spelling it: the tools check them and report bad ones.

The keywords are not listed here: they are read from each tool's own declarations
(``TOOL --experimental-dump-help``, swift-argument-parser's description of its options),
so a format option added to the tools is a keyword here with no edit. Every option a tool
shows in its help is a keyword, named by its long name with ``_`` for ``-``, except the
few the API sets itself (:data:`RESERVED`).
"""
import functools
import json
import os
import subprocess
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Tuple

from ._binaries import binary_path


class Option(NamedTuple):
    """One keyword: the flag it becomes and how its value is spelled."""

    flag: str
    kind: str  # "flag", "value", "path", "globs", "kernel_sizes" or "dims"


#: Options the API passes itself (``--json``, ``-o`` for a list of inputs) or that only
#: change the text output it does not read.
RESERVED = frozenset({"help", "version", "json", "output-dir", "quiet", "maps"})

#: How a value is spelled, by the value name the tool declares for it.
_KINDS = {"file": "path", "glob": "globs", "layer=MxN": "kernel_sizes", "name=value": "dims"}


def _option(argument: Mapping[str, Any]) -> Tuple[str, Option]:
    """The keyword and option of one argument of a tool's dump-help."""
    long = next(n["name"] for n in argument["names"] if n["kind"] == "long")
    if argument["kind"] == "flag":
        return long.replace("-", "_"), Option("--" + long, "flag")
    return long.replace("-", "_"), Option("--" + long, _KINDS.get(argument.get("valueName", ""), "value"))


def table_from_help(document: Mapping[str, Any]) -> Dict[str, Option]:
    """The keyword table of a tool, from its ``--experimental-dump-help`` document."""
    table: Dict[str, Option] = {}
    for argument in document["command"].get("arguments", []):
        names = argument.get("names") or []
        if argument["kind"] == "positional" or not argument.get("shouldDisplay", True):
            continue
        if not any(n["kind"] == "long" for n in names) or any(n["name"] in RESERVED for n in names if n["kind"] == "long"):
            continue
        keyword, option = _option(argument)
        table[keyword] = option
    return table


@functools.lru_cache(maxsize=None)
def table(tool: str) -> Dict[str, Option]:
    """The keywords of ``tool`` (``doconv-fold``, ``doconv-inspect`` or
    ``verify-equivalence``), read once per process from the tool itself."""
    result = subprocess.run([binary_path(tool), "--experimental-dump-help"], capture_output=True, text=True, check=True)
    return table_from_help(json.loads(result.stdout))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kernel_size(keyword: str, layer: str, size: Any) -> str:
    """``layer=MxN`` from a (M, N) pair, a single int (N x N) or an "MxN" string."""
    if isinstance(size, str):
        text = size
    elif _is_int(size):
        text = f"{size}x{size}"
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(d) for d in size):
        text = f"{size[0]}x{size[1]}"
    else:
        raise TypeError(f"{keyword}: the size of layer {layer!r} must be (M, N), an int or 'MxN', not {size!r}")
    return f"{layer}={text}"


def _dim(keyword: str, name: str, value: Any) -> str:
    """``name=value`` for a symbolic input dim."""
    if not (_is_int(value) or isinstance(value, str)):
        raise TypeError(f"{keyword}: the size of dim {name!r} must be an int, not {value!r}")
    return f"{name}={value}"


def _pairs(keyword: str, value: Any) -> Iterable[Tuple[str, Any]]:
    """The (name, value) items of a mapping, or of a list of pairs or 'name=value' strings."""
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, str):
        value = [value]
    items: List[Tuple[str, Any]] = []
    try:
        iterator = iter(value)
    except TypeError:
        raise TypeError(f"{keyword} must be a mapping or a list, not {value!r}") from None
    for item in iterator:
        if isinstance(item, str):
            items.append(("", item))  # already 'name=value'
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
            items.append((item[0], item[1]))
        else:
            raise TypeError(f"{keyword}: each item must be 'name=value' or a (name, value) pair, not {item!r}")
    return items


def arguments(function: str, table: Mapping[str, Option], options: Mapping[str, Any]) -> List[str]:
    """The command-line arguments for ``options``, in the order given.

    ``function`` names the API function in error messages. Raises TypeError for a keyword
    the tool does not take (listing those it takes) or a value of the wrong type. ``None``
    and ``False`` leave an option out.
    """
    unknown = [k for k in options if k not in table]
    if unknown:
        raise TypeError(
            f"{function}() got an unexpected keyword argument {unknown[0]!r}; "
            f"accepted: {', '.join(sorted(table))}"
        )
    args: List[str] = []
    for keyword, value in options.items():
        if value is None:
            continue
        flag, kind = table[keyword]
        if kind == "flag":
            if not isinstance(value, bool):
                raise TypeError(f"{keyword} must be True or False, not {value!r}")
            if value:
                args.append(flag)
        elif kind == "value":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise TypeError(f"{keyword} must be a number or a string, not {value!r}")
            args += [flag, str(value)]
        elif kind == "path":
            if not isinstance(value, (str, os.PathLike)):
                raise TypeError(f"{keyword} must be a path, not {value!r}")
            args += [flag, os.fspath(value)]
        elif kind == "globs":
            patterns = [value] if isinstance(value, str) else value
            if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
                raise TypeError(f"{keyword} must be a glob or a list of globs, not {value!r}")
            for pattern in patterns:
                args += [flag, pattern]
        elif kind in ("kernel_sizes", "dims"):
            spell = _kernel_size if kind == "kernel_sizes" else _dim
            for name, item in _pairs(keyword, value):
                args += [flag, item if name == "" else spell(keyword, name, item)]
        else:  # pragma: no cover - the tables above use only the kinds handled here
            raise AssertionError(kind)
    return args
