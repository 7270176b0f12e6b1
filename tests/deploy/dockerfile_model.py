"""deploy/Dockerfile read as Docker reads it: instructions, stages, the final image's settings.

No Docker engine runs here, so the tests check what the file says: continuation lines
joined, comments dropped, each instruction with its arguments.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    @property
    def env(self) -> dict[str, str]:
        """The ENV this stage sets (``$VAR`` left as written)."""
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            values.update(env_pairs(instruction.arguments))
        return values


def instructions(text: str) -> list[Instruction]:
    """Each instruction, continuation lines joined (``\\`` at the end), comments dropped."""
    found: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


def stages(text: str) -> list[Stage]:
    """The build stages in order; the last one is the image."""
    found: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(words[0], name))
        elif instruction.keyword != "ARG" or found:
            assert found, f"line {instruction.line}: {instruction.keyword} before any FROM"
            found[-1].instructions.append(instruction)
    return found


def env_pairs(arguments: str) -> dict[str, str]:
    """``ENV A=1 B="two words"`` or the old ``ENV A value``."""
    words = shlex.split(arguments)
    if words and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}
    return dict(word.split("=", 1) for word in words)


def exec_form(arguments: str) -> list[str]:
    """The JSON array of ENTRYPOINT or CMD; an assertion if it is the shell form."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        raise AssertionError(f"not the exec (JSON) form: {arguments}") from None
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return [str(v) for v in value]


def pinned(image: str) -> bool:
    """A tag that names a version (``python:3.11.14-slim``) or a digest; never ``latest``."""
    if "@sha256:" in image:
        return True
    reference = image.rsplit("/", 1)[-1]
    if ":" not in reference:
        return False
    tag = reference.split(":", 1)[1]
    return tag != "latest" and bool(re.match(r"\d+(\.\d+)+", tag))


def ignored(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore leaves ``path`` out of the build context (Docker's rules).

    The last pattern that matches the path or one of its parent directories decides;
    ``!`` re-includes; ``**`` matches any number of directories.
    """
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def ignore_patterns(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)
