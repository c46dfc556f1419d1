"""The contract every hostile-input test holds all three tools to, in one place: on a bad
file, doconv-fold, doconv-inspect and verify-equivalence (the file against itself) each
exit 2 with exactly one stderr line that names the file and contains the case's key
phrase, write none of the outputs, add, remove or change no file in the watched folders,
leave TMPDIR empty, and stay under the memory bound."""
import pathlib
import re

from test_hostile_inputs import MEMORY_LIMIT_KB, fold, inspect, snapshot, verify


def check_all_tools(src, phrase, tmpdir, folders, outputs, named=None, extra=()):
    """Runs the three tools on `src`; `outputs[0]` is where doconv-fold is told to write,
    and no path in `outputs` may exist afterwards; the error line must name `named`
    (default: `src`)."""
    src = pathlib.Path(src)
    named = pathlib.Path(named or src)
    env = {"TMPDIR": str(tmpdir)}
    runs = [("doconv-fold", lambda: fold(src, outputs[0], *extra, env=env)),
            ("doconv-inspect", lambda: inspect(src, "--json", *extra, env=env)),
            ("verify-equivalence", lambda: verify(src, src, *extra, env=env))]
    for tool, launch in runs:
        before = snapshot(*folders, tmpdir)
        result = launch()
        where = f"{tool} on {src.name}: {result!r}"
        assert result.status == 2, where
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and result.stderr.endswith("\n"), where
        assert str(named) in lines[0], f"{tool}: {named} not named: {lines[0]}"
        assert re.search(re.escape(phrase), lines[0], re.IGNORECASE), f"{tool}: '{phrase}' not in: {lines[0]}"
        for written in outputs:
            assert not pathlib.Path(written).exists(), f"{tool} wrote {written}"
        assert snapshot(*folders, tmpdir) == before, f"{tool}: files were added, removed or changed"
        assert list(pathlib.Path(tmpdir).iterdir()) == [], f"{tool} left files in TMPDIR"
        assert result.maxrss_kb < MEMORY_LIMIT_KB, f"{tool}: peak RSS {result.maxrss_kb} KB"
