"""Keyword options of the Python API and the command-line flags they stand for.

Each tool accepts a fixed set of keywords; a keyword maps to one flag of the tool
(``fuse_bn=True`` -> ``--fuse-bn``, ``tolerance=1e-5`` -> ``--tolerance 1e-5``) or, for
the repeatable ones, to one flag per item (``kernel_size={"conv1": (3, 3)}`` ->
``--kernel-size conv1=3x3``, ``dim={"batch": 2}`` -> ``--dim batch=2``). Nothing here
interprets a value beyond spelling it: the tools check them and report bad ones.
"""
import os
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Tuple


class Option(NamedTuple):
    """One keyword: the flag it becomes and how its value is spelled."""

    flag: str
    kind: str  # "flag", "number", "int", "path", "globs", "kernel_sizes" or "dims"


def _flag(name: str) -> Option:
    return Option(name, "flag")


#: The keywords of :func:`doconv.fold` (``doconv-fold``).
FOLD_OPTIONS: Dict[str, Option] = {
    "tolerance": Option("--tolerance", "number"),
    "no_verify": _flag("--no-verify"),
    "fuse_bn": _flag("--fuse-bn"),
    "reparam": _flag("--reparam"),
    "fold_separable": _flag("--fold-separable"),
    "config": Option("--config", "path"),
    "kernel_size": Option("--kernel-size", "kernel_sizes"),
    "keep_names": _flag("--keep-names"),
    "params": Option("--params", "path"),
    "strict_pickle": _flag("--strict-pickle"),
    "exclude": Option("--exclude", "globs"),
    "only": Option("--only", "globs"),
}

#: The keywords of :func:`doconv.inspect` (``doconv-inspect``).
INSPECT_OPTIONS: Dict[str, Option] = {
    "config": Option("--config", "path"),
    "kernel_size": Option("--kernel-size", "kernel_sizes"),
    "params": Option("--params", "path"),
    "reparam": _flag("--reparam"),
    "svg": Option("--svg", "path"),
    "strict_pickle": _flag("--strict-pickle"),
    "exclude": Option("--exclude", "globs"),
    "only": Option("--only", "globs"),
}

#: The keywords of :func:`doconv.verify` (``verify-equivalence``).
VERIFY_OPTIONS: Dict[str, Option] = {
    "tolerance": Option("--tolerance", "number"),
    "inputs": Option("--inputs", "int"),
    "seed": Option("--seed", "int"),
    "dim": Option("--dim", "dims"),
    "config": Option("--config", "path"),
    "kernel_size": Option("--kernel-size", "kernel_sizes"),
    "params": Option("--params", "path"),
    "strict_pickle": _flag("--strict-pickle"),
    "exclude": Option("--exclude", "globs"),
    "only": Option("--only", "globs"),
}


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
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise TypeError(f"{keyword} must be a number, not {value!r}")
            args += [flag, str(value)]
        elif kind == "int":
            if not _is_int(value):
                raise TypeError(f"{keyword} must be an int, not {value!r}")
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
