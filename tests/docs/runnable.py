"""The documentation's runnable examples: extract them and run them with bash, in order.

A runnable example is a fenced block whose info string is `sh runnable` (docs/contributing.md,
"Runnable examples"), or `sh runnable sqlite` for a block that runs only against a server on SQLite. The blocks of one Markdown file run in order, each in a fresh `bash` with
`set -euo pipefail`, sharing the shell variables and functions the earlier blocks of the same file set
(saved with `declare -p` / `declare -f` after each block and sourced before the next). A line
`#=> text` in a block says the block prints a line that is exactly `text`; several such lines must
appear in that order. Every block must exit 0.

Blocks run in their own session, so whatever they leave running in the background (the example
webhook receiver, say) can be stopped by its process group when the file is done.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
EXPECT = re.compile(r"^\s*#=> (?P<text>.*)$")
BLOCK_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str
    database: str | None = None  # "sqlite": the block runs only against a server on SQLite

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def expected(self) -> list[str]:
        return [m["text"].rstrip() for line in self.code.splitlines() if (m := EXPECT.match(line))]


@dataclass
class Outcome:
    block: Block
    returncode: int
    stdout: str
    stderr: str

    def report(self) -> str:
        return (f"{self.block.where} exited {self.returncode}\n--- block ---\n{self.block.code}"
                f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}")


def blocks(path: Path) -> list[Block]:
    """The runnable blocks of one Markdown file, in document order."""
    found: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i].rstrip("\n"))
        if not m:
            i += 1
            continue
        fence, start = m["fence"], i
        end = i + 1
        while end < len(lines) and not lines[end].rstrip("\n").startswith(fence):
            end += 1
        info = m["info"].split()
        if info[:2] == ["sh", "runnable"]:
            if len(info) > 3 or info[2:] not in ([], ["sqlite"]):
                raise ValueError(f"{path}:{start + 1}: unknown runnable block options {info[2:]}")
            found.append(Block(path, start + 1, "".join(lines[start + 1:end]), info[2] if len(info) == 3 else None))
        i = end + 1
    return found


def documents() -> list[Path]:
    """README.md, then every Markdown file under docs/, that holds at least one runnable block."""
    candidates = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in candidates if blocks(p)]


def missing_lines(expected: list[str], stdout: str) -> list[str]:
    """The expected lines not found, in order, among the output's lines."""
    out = [line.rstrip() for line in stdout.splitlines()]
    pos = 0
    missing: list[str] = []
    for text in expected:
        try:
            pos = out.index(text, pos) + 1
        except ValueError:
            missing.append(text)
    return missing


@dataclass
class Session:
    """The shell state of one document's blocks, and the process groups they started."""

    workdir: Path
    env: dict[str, str]
    groups: list[int] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.workdir / ".walkthrough-state.sh"

    def baseline(self) -> Path:
        path = self.workdir / ".walkthrough-baseline"
        if not path.exists():
            names = subprocess.run(["bash", "-c", "compgen -v"], env=self.env, capture_output=True, text=True,
                                   check=True, timeout=30).stdout
            path.write_text(names)
        return path

    def run(self, block: Block) -> Outcome:
        script = self.workdir / ".walkthrough-block.sh"
        script.write_text(
            "set -euo pipefail\n"
            f'if [ -f "{self.state}" ]; then source "{self.state}"; fi\n'
            f"{block.code}\n"
            f'{{ for __name in $(compgen -v | grep -vxF -f "{self.baseline()}"); do\n'
            '    case $__name in __*) ;; *) declare -p "$__name" ;; esac\n'
            f'  done; declare -f; }} > "{self.state}"\n',
            encoding="utf-8",
        )
        out, err = self.workdir / ".walkthrough-stdout", self.workdir / ".walkthrough-stderr"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            proc = subprocess.Popen(["bash", str(script)], cwd=self.workdir, env=self.env, stdout=stdout,
                                    stderr=stderr, stdin=subprocess.DEVNULL, start_new_session=True)
            self.groups.append(proc.pid)
            try:
                code = proc.wait(timeout=BLOCK_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.stop()
                code = proc.wait()
        return Outcome(block, code, out.read_text(errors="replace"), err.read_text(errors="replace"))

    def stop(self) -> None:
        """End what the blocks left running: each block's own process group, by its id."""
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
        self.groups.clear()
