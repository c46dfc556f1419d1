"""Runs a tool (``doconv SUBCOMMAND --json ...``) and returns the document it prints.

The tools print one JSON document on standard output and, on failure, one error line on
standard error. Their exit statuses: fold and expand 0 ok, 1 verification failed (a
document is still printed, nothing written), 2 bad input; verify 0 equivalent, 1 not
equivalent (a document with ``equivalent`` false), 2 bad input; inspect 0, or 2.
"""
import json
import os
import signal
import subprocess
from typing import Any, Collection, Dict, List, Optional, Sequence

from ._binaries import TOOLS, binary_path


class DOConvError(Exception):
    """A doconv tool failed: bad input or usage (exit status 2), a crash, or no document.

    Attributes:
        message: the tool's one-line error (``"doconv-fold: error: x.onnx: ..."``).
        exit_status: the tool's exit status (negative: killed by that signal).
        tool: the tool's name (``doconv-fold``, ``doconv-inspect``, ``verify-equivalence``,
            ``doconv-expand``).
        stderr: everything the tool wrote to standard error.
        document: the JSON document it printed anyway, if any (e.g. per-file results of a
            batch fold that stopped on a bad input), else None.
    """

    def __init__(
        self,
        message: str,
        exit_status: int,
        tool: str,
        stderr: str = "",
        document: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_status = exit_status
        self.tool = tool
        self.stderr = stderr
        self.document = document

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> Any:
        return (type(self), (self.message, self.exit_status, self.tool, self.stderr, self.document))


def _document(stdout: str) -> Optional[Dict[str, Any]]:
    """The JSON object on standard output, or None when there is none."""
    try:
        value = json.loads(stdout)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _error_line(tool: str, status: int, stderr: str) -> str:
    """The tool's one error line (the first non-empty line it wrote), or a description."""
    for line in stderr.splitlines():
        if line.strip():
            return line.strip()
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"{tool}: killed by {name}"
    return f"{tool}: exited with status {status} and no error message"


def _kill_group(process: "subprocess.Popen[str]") -> None:
    """Kills the tool's process group (the tool and its workers)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_json(
    tool: str,
    arguments: Sequence[str],
    documented_statuses: Collection[int] = (0,),
    timeout: Optional[float] = None,
) -> Dict[str, Any]:
    """Runs ``tool`` (a name in TOOLS) with ``--json`` and ``arguments``; returns its JSON document.

    ``documented_statuses`` are the exit statuses whose document is a result, not an error
    (0, and 1 for doconv-fold and verify-equivalence). Any other status raises
    :class:`DOConvError` with the tool's error line; so does a documented status without a
    JSON object on standard output. ``timeout`` (seconds) raises subprocess.TimeoutExpired,
    after killing the tool's whole process group.
    """
    # "--json" goes before the arguments, which end with "--" and the paths (a path that
    # begins with '-' is still a path).
    command: List[str] = [binary_path(), TOOLS[tool], "--json", *arguments]
    # Its own process group: a timeout ends the tool and every worker it started (a Keras
    # file is read by a child process), not the tool alone.
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        raise
    except BaseException:  # KeyboardInterrupt too: leave nothing running
        _kill_group(process)
        process.communicate()
        raise
    completed = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    status = completed.returncode
    document = _document(completed.stdout)
    if status in documented_statuses:
        if document is None:
            raise DOConvError(
                f"{tool}: exit status {status} without a JSON document on standard output",
                status,
                tool,
                completed.stderr,
            )
        return document
    raise DOConvError(_error_line(tool, status, completed.stderr), status, tool, completed.stderr, document)
