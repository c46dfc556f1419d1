"""Keyword options of the Python API and the command-line flags they stand for.

Each API function takes its tool's options as keyword-only parameters, named by the
option's long name with ``_`` for ``-``; the tables here say how each is spelled on the
command line. A value becomes ``--flag=value`` (one argument, so a value that begins with
``-``, like a file named ``-x.json``, is never read as an option); a repeatable option
becomes one flag per item (``kernel_size={"conv1": (3, 3)}`` ->
``--kernel-size=conv1=3x3``). Nothing here judges a value beyond its Python type: the
tool checks it and reports a bad one.

The tables must list exactly the options each tool declares (its
``--experimental-dump-help``, but for the few the API sets itself: ``--json``, ``-o`` and
those that only change the text output); a wheel test compares them with the executable.
"""
import os
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

#: A file path: a ``str`` or a ``pathlib.Path`` (or any ``os.PathLike[str]``).
PathLike = Union[str, "os.PathLike[str]"]

#: One layer's kernel size: ``(M, N)``, ``N`` for N x N, or ``"MxN"``.
KernelSize = Union[Tuple[int, int], int, str]

#: Kernel sizes by layer (``{"conv1": (1, 3)}``), or a list of ``"layer=MxN"`` strings and
#: ``(layer, size)`` pairs.
KernelSizes = Union[Mapping[str, KernelSize], Iterable[Union[str, Tuple[str, KernelSize]]]]

#: Integers by name (``dim``'s input dims: ``{"batch": 2}``; ``groups`` by layer glob:
#: ``{"dw*": 8}``), or a list of ``"name=value"`` strings and ``(name, value)`` pairs.
NamedInts = Union[Mapping[str, int], Iterable[Union[str, Tuple[str, int]]]]

#: A layer-name glob, or a list of them.
Globs = Union[str, Sequence[str]]

# How a keyword's value is spelled.
FLAG = "flag"  # True -> --flag; False leaves it out
VALUE = "value"  # a number or a string -> --flag=value
PATH = "path"  # a path -> --flag=path
GLOBS = "globs"  # a glob or a list -> --flag=glob, repeated
KERNEL_SIZES = "kernel_sizes"  # -> --flag=layer=MxN, repeated
NAMED_INTS = "named_ints"  # -> --flag=name=value, repeated

#: ``doconv fold``'s keywords.
FOLD: Mapping[str, str] = {
    "tolerance": VALUE,
    "no_verify": FLAG,
    "config": PATH,
    "kernel_size": KERNEL_SIZES,
    "params": PATH,
    "fuse_bn": FLAG,
    "fold_separable": FLAG,
    "reparam": FLAG,
    "keep_names": FLAG,
    "strict_pickle": FLAG,
    "allow_partial": FLAG,
    "keep_grouped": FLAG,
    "exclude": GLOBS,
    "only": GLOBS,
}

#: ``doconv inspect``'s keywords.
INSPECT: Mapping[str, str] = {
    "svg": PATH,
    "config": PATH,
    "kernel_size": KERNEL_SIZES,
    "params": PATH,
    "reparam": FLAG,
    "strict_pickle": FLAG,
    "exclude": GLOBS,
    "only": GLOBS,
}

#: ``doconv verify``'s keywords.
VERIFY: Mapping[str, str] = {
    "tolerance": VALUE,
    "inputs": VALUE,
    "seed": VALUE,
    "dim": NAMED_INTS,
    "config": PATH,
    "kernel_size": KERNEL_SIZES,
    "params": PATH,
    "strict_pickle": FLAG,
    "exclude": GLOBS,
    "only": GLOBS,
}


#: ``doconv expand``'s keywords.
EXPAND: Mapping[str, str] = {
    "dmul": VALUE,
    "groups": NAMED_INTS,
    "like": PATH,
    "config": PATH,
    "seed": VALUE,
    "tolerance": VALUE,
    "no_verify": FLAG,
    "exclude": GLOBS,
    "only": GLOBS,
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def path(value: Any, what: str) -> str:
    """``value`` as a path string; TypeError naming ``what`` for anything but a path."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path, not {value!r}")
    return os.fspath(value)


def _kernel_size(keyword: str, layer: str, size: Any) -> str:
    """``MxN`` from a (M, N) pair, a single int (N x N) or an "MxN" string."""
    if isinstance(size, str):
        return size
    if _is_int(size):
        return f"{size}x{size}"
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(d) for d in size):
        return f"{size[0]}x{size[1]}"
    raise TypeError(f"{keyword}: the size of layer {layer!r} must be (M, N), an int or 'MxN', not {size!r}")


def _named_int(keyword: str, name: str, value: Any) -> str:
    if not (_is_int(value) or isinstance(value, str)):
        raise TypeError(f"{keyword}: the value of {name!r} must be an int, not {value!r}")
    return str(value)


def _pairs(keyword: str, value: Any) -> List[Tuple[Optional[str], Any]]:
    """The (name, value) items of a mapping, or of a list of pairs and 'name=value' strings
    (those as (None, string): already spelled)."""
    if isinstance(value, Mapping):
        return [(str(k), v) for k, v in value.items()]
    if isinstance(value, str):
        value = [value]
    try:
        items = list(value)
    except TypeError:
        raise TypeError(f"{keyword} must be a mapping or a list, not {value!r}") from None
    pairs: List[Tuple[Optional[str], Any]] = []
    for item in items:
        if isinstance(item, str):
            pairs.append((None, item))
        elif isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
            pairs.append((item[0], item[1]))
        else:
            raise TypeError(f"{keyword}: each item must be 'name=value' or a (name, value) pair, not {item!r}")
    return pairs


def arguments(table: Mapping[str, str], values: Mapping[str, Any]) -> List[str]:
    """The command-line arguments for the keywords of ``table`` in ``values`` (a function's
    parameters by name), in the table's order.

    ``None`` and ``False`` leave an option out. Raises TypeError for a value of the wrong
    type.
    """
    args: List[str] = []
    for keyword, kind in table.items():
        value = values[keyword]
        if value is None:
            continue
        flag = "--" + keyword.replace("_", "-")
        if kind == FLAG:
            if not isinstance(value, bool):
                raise TypeError(f"{keyword} must be True or False, not {value!r}")
            if value:
                args.append(flag)
        elif kind == VALUE:
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise TypeError(f"{keyword} must be a number or a string, not {value!r}")
            args.append(f"{flag}={value}")
        elif kind == PATH:
            args.append(f"{flag}={path(value, keyword)}")
        elif kind == GLOBS:
            patterns = [value] if isinstance(value, str) else value
            if not isinstance(patterns, (list, tuple)) or not all(isinstance(p, str) for p in patterns):
                raise TypeError(f"{keyword} must be a glob or a list of globs, not {value!r}")
            args += [f"{flag}={pattern}" for pattern in patterns]
        else:
            spell = _kernel_size if kind == KERNEL_SIZES else _named_int
            for name, item in _pairs(keyword, value):
                args.append(f"{flag}={item}" if name is None else f"{flag}={name}={spell(keyword, name, item)}")
    return args
