"""The README's tour, run as written: every marked block's commands, in order, on a clean machine.

The marker convention (the README's own section "About the tour" repeats it for users):

    <!-- tour -->              the next ```console block's `$ ` lines are run; each must exit 0
    <!-- tour exit=2 -->       ... each must exit with exactly 2 (a block shows one exit code)
    <!-- tour check -->        ... and its output lines are compared (`...` matches any lines)
    <!-- tour-skip: REASON --> the block is not run (Ctrl-C, a server, files one must fetch)

Lines after a command are its output (stdout and stderr, interleaved as a terminal shows them);
they are not compared unless the block says `check`
(timings and numbers move with the load). A command ending in ` \\` goes on on the next line.
Every fenced block with a `$ ` or `tunectl ` line must carry one of the markers, so no block is
left out unnoticed.

The commands run with bash (`-o pipefail`) in one temporary folder that holds a copy of the
repository's files (as a fresh clone: examples/, searchspaces/, an empty studies/), with a fresh
HOME, no TUNECTL_* variables, COLUMNS=100, the `tunectl` of this Python first on PATH and this
repository's package on PYTHONPATH, and nothing next to the folder (no ../shared). A study one
block makes is there for the next. About a minute on 2 idle cores; under CI it runs like any test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARK = re.compile(r"^<!--\s*tour(?:-skip:\s*(?P<reason>.*?)|(?P<flags>(?:\s+[\w=]+)*))\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
COMMAND_TIMEOUT = 300  # seconds; no tour command comes near it (small --trials and --epochs)


@dataclass
class Command:
    line: int  # 1-based line in the README
    text: str
    output: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int  # the fence's line
    exit: int = 0
    check: bool = False
    skip: str | None = None
    commands: list[Command] = field(default_factory=list)


class TourError(ValueError):
    """A marker the extractor cannot read: the README is wrong, not the command."""


def parse(text: str) -> tuple[list[Block], list[int]]:
    """The README's marked blocks, and the lines of fenced blocks with commands but no marker."""
    lines = text.splitlines()
    blocks, unmarked, i = [], [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        body = lines[i + 1:j]
        before = lines[start - 1].strip() if start else ""
        mark = MARK.match(before)
        if mark is None and re.match(r"<!--\s*tour", before):
            raise TourError(f"README.md:{start}: unreadable tour marker {before!r} (see tests/test_readme_tour.py)")
        if mark:
            blocks.append(_block(mark, start + 1, body))
        elif any(b.lstrip().startswith(("$ ", "tunectl ")) for b in body):
            unmarked.append(start + 1)
        i = j + 1
    return blocks, unmarked


def _block(mark: re.Match, line: int, body: list[str]) -> Block:
    block = Block(line=line)
    if mark.group("reason") is not None:
        if not mark.group("reason"):
            raise TourError(f"README.md:{line - 1}: tour-skip needs a reason (<!-- tour-skip: why -->)")
        block.skip = mark.group("reason")  # its commands are read too: `main --blocks` can run it by hand
    for flag in (mark.group("flags") or "").split():
        if flag == "check":
            block.check = True
        elif re.fullmatch(r"exit=\d+", flag):
            block.exit = int(flag.split("=")[1])
        else:
            raise TourError(f"README.md:{line - 1}: unknown tour flag {flag!r} (exit=N, check)")
    k = 0
    while k < len(body):
        if body[k].startswith("$ "):
            cmd = Command(line=line + 1 + k, text=body[k][2:])
            while cmd.text.endswith("\\") and k + 1 < len(body):
                k += 1
                cmd.text = cmd.text[:-1] + " " + body[k].strip()
            block.commands.append(cmd)
        elif block.commands:
            block.commands[-1].output.append(body[k].rstrip())
        elif body[k].strip() and block.skip is None:
            raise TourError(f"README.md:{line + 1 + k}: output before the block's first `$ ` command")
        k += 1
    if not block.commands and block.skip is None:
        raise TourError(f"README.md:{line}: a tour block without a `$ ` command")
    return block


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """Line by line, trailing spaces ignored; an expected `...` line matches any number of lines."""
    expected = [e.rstrip() for e in expected]
    actual = [a.rstrip() for a in actual]
    while expected and not expected[-1]:
        expected.pop()
    while actual and not actual[-1]:
        actual.pop()

    def match(e: int, a: int) -> bool:
        if e == len(expected):
            return a == len(actual)
        if expected[e].strip() == "...":
            return any(match(e + 1, k) for k in range(a, len(actual) + 1))
        return a < len(actual) and expected[e] == actual[a] and match(e + 1, a + 1)

    return match(0, 0)


# ----------------------------------------------------------------------------- the extractor itself


SAMPLE = """\
# x
<!-- tour -->
```console
$ tunectl train --dataset digits \\
    --epochs 2
epoch 1
...
$ echo done
done
```
<!-- tour exit=2 check -->
```console
$ tunectl train --set lrr=1
error: unknown hyperparameter 'lrr' (did you mean 'lr'?)
```
<!-- tour-skip: needs Ctrl-C -->
```console
$ tunectl tune --trials 200
```
```
$ tunectl studies
```
```bash
make tune
```
"""


def test_the_extractor_reads_commands_outputs_exit_codes_and_skips():
    blocks, unmarked = parse(SAMPLE)
    assert [(b.line, b.exit, b.check, b.skip) for b in blocks] == [
        (3, 0, False, None), (12, 2, True, None), (17, 0, False, "needs Ctrl-C")]
    first = blocks[0].commands
    assert [(c.line, c.text) for c in first] == [
        (4, "tunectl train --dataset digits  --epochs 2"), (8, "echo done")]
    assert first[0].output == ["epoch 1", "..."] and first[1].output == ["done"]
    assert blocks[1].commands[0].output == ["error: unknown hyperparameter 'lrr' (did you mean 'lr'?)"]
    assert [(c.line, c.text) for c in blocks[2].commands] == [(18, "tunectl tune --trials 200")]  # read, not run
    assert unmarked == [20]  # the plain block with a command; the `make tune` one has none


@pytest.mark.parametrize("marker", ["<!-- tour exit=two -->", "<!-- tour-skip: -->", "<!-- tour loud -->",
                                    "<!-- tourist -->"])
def test_the_extractor_refuses_a_marker_it_cannot_read(marker):
    with pytest.raises(TourError):
        parse(f"{marker}\n```console\n$ tunectl studies\n```\n")


def test_a_tour_block_needs_a_command_before_its_output():
    with pytest.raises(TourError):
        parse("<!-- tour -->\n```console\nsome output\n$ tunectl studies\n```\n")


def test_output_matching_with_ellipsis():
    assert output_matches(["a", "...", "d"], ["a", "b", "c", "d  "])
    assert output_matches(["a", "...", "d"], ["a", "d"])
    assert output_matches(["a", ""], ["a"])
    assert not output_matches(["a", "...", "d"], ["a", "b", "c"])
    assert not output_matches(["a", "b"], ["a", "c"])
    assert not output_matches(["a"], ["a", "b"])


# ----------------------------------------------------------------------------- the README's tour


BLOCKS, UNMARKED = parse(README.read_text(encoding="utf-8"))
RUN = [b for b in BLOCKS if b.skip is None]


def test_every_block_with_commands_is_marked():
    assert not UNMARKED, (f"README.md lines {UNMARKED}: a block with commands and no marker; put "
                          "<!-- tour --> (or <!-- tour-skip: REASON -->) on the line before its fence")


def test_the_tour_covers_the_first_hour():
    """What a newcomer does first is in the run tour, not only in skipped blocks."""
    words = {c.text.split()[1] for b in RUN for c in b.commands if c.text.startswith("tunectl ")}
    for command in ("datasets", "spaces", "train", "tune", "show", "studies", "diagnose", "evaluate",
                    "export", "report"):
        assert command in words, f"the README's run tour never runs `tunectl {command}`"


def _repository_files() -> list[Path]:
    """The files a fresh clone has: git's tracked and not-ignored files (or, without git, all but
    the usual build and study folders)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO, capture_output=True, check=True).stdout
        return [Path(p) for p in out.decode().split("\0") if p and (REPO / p).is_file()]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "studies", "data", "mutants", "__pycache__", ".pytest_cache", ".hypothesis"}
        return [p.relative_to(REPO) for p in REPO.rglob("*")
                if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def _clean_clone(base: Path) -> tuple[Path, dict[str, str]]:
    """A fresh clone's folder under `base` and a clean environment to run the tour in."""
    folder, home = base / "tunectl", base / "home"
    home.mkdir(parents=True)
    for rel in _repository_files():
        if rel.parts[0] == "studies" and rel.name != ".gitkeep":
            continue
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, folder / rel)
    (folder / "studies").mkdir(exist_ok=True)
    assert not (folder.parent / "shared").exists()  # nothing next to the clone
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "tunectl").exists():  # no console script (e.g. a bare interpreter): a stand-in
        bin_dir = base / "bin"
        bin_dir.mkdir()
        (bin_dir / "tunectl").write_text(f'#!/bin/sh\nexec "{sys.executable}" -c '
                                         f'"from tunectl.cli import main; main()" "$@"\n')
        (bin_dir / "tunectl").chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k in ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "CI", "TMPDIR", "SYSTEMROOT")}
    env.update(HOME=str(home), PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
               PYTHONPATH=str(REPO), COLUMNS="100", TERM="dumb", PYTHONDONTWRITEBYTECODE="1",
               # tiny models on a shared 2-core machine: one thread is as fast on idle cores and far
               # faster on busy ones (conftest.py does the same for the in-process tests)
               OMP_NUM_THREADS="1")
    return folder, env


def _run(cmd: Command, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["bash", "-o", "pipefail", "-c", cmd.text], cwd=folder, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"README.md:{cmd.line}: `{cmd.text}` ran past {COMMAND_TIMEOUT} s", pytrace=False)


@pytest.fixture(scope="module")
def tour(tmp_path_factory):
    return _clean_clone(tmp_path_factory.mktemp("readme-tour"))


def problems(block: Block, folder: Path, env: dict[str, str]) -> list[str]:
    """Run the block's commands in order; what went wrong (empty: all as the README shows)."""
    for cmd in block.commands:
        done = _run(cmd, folder, env)
        said = done.stdout.splitlines()  # stdout and stderr as a terminal shows them, interleaved
        tail = "\n".join(said[-15:])
        if done.returncode != block.exit:
            return [f"README.md:{cmd.line}: `{cmd.text}` exited {done.returncode}, the README shows {block.exit}:\n{tail}"]
        if "Traceback (most recent call last)" in done.stdout:
            return [f"README.md:{cmd.line}: a traceback:\n{tail}"]
        if block.check and not output_matches(cmd.output, said):
            return [f"README.md:{cmd.line}: `{cmd.text}` printed\n" + "\n".join(said)
                    + "\nand the README shows\n" + "\n".join(cmd.output)]
    return []


def test_the_runner_fails_on_an_exit_code_or_an_output_the_readme_does_not_show(tmp_path):
    folder, env = _clean_clone(tmp_path)
    ok, = parse("<!-- tour -->\n```console\n$ echo hi > made.txt\n$ cat made.txt\nhi\n```\n")[0]
    assert problems(ok, folder, env) == [] and (folder / "made.txt").read_text() == "hi\n"  # one folder, in order
    failing, = parse("<!-- tour -->\n```console\n$ true\n$ exit 3\n$ touch never\n```\n")[0]
    assert "`exit 3` exited 3, the README shows 0" in problems(failing, folder, env)[0]
    assert not (folder / "never").exists()  # stops at the first wrong exit
    two, = parse("<!-- tour exit=2 check -->\n```console\n$ tunectl train --set lrr=1\n"
                 "error: unknown hyperparameter 'lrr' (did you mean 'lr'?)\n```\n")[0]
    assert problems(two, folder, env) == []  # the real tunectl, found on PATH, one line, exit 2
    wrong, = parse("<!-- tour exit=2 check -->\n```console\n$ tunectl train --set lrr=1\nerror: something else\n```\n")[0]
    assert "and the README shows" in problems(wrong, folder, env)[0]
    env_seen, = parse("<!-- tour -->\n```console\n$ env > env.txt; test ! -e ../shared\n```\n")[0]
    assert problems(env_seen, folder, env) == []
    seen = (folder / "env.txt").read_text()
    assert "TUNECTL_" not in seen and f"HOME={tmp_path / 'home'}" in seen  # a clean environment


def test_the_writer_puts_each_commands_real_output_in_place_keeping_the_readmes_cuts():
    text = "a\n<!-- tour -->\n```console\n$ echo 1 \\\n  2\nold\n...\nend\n$ x\nold2\n```\nz\n"
    block, = parse(text)[0]
    assert [c.line for c in block.commands] == [4, 9]
    new = _with_outputs(text, {4: ["1", "2", "3", "4", "5"], 9: ["new"]})
    assert new == "a\n<!-- tour -->\n```console\n$ echo 1 \\\n  2\n1\n...\n5\n$ x\nnew\n```\nz\n"
    assert _cut_as(["a", "..."], ["1", "2", "3"]) == ["1", "...", ] and _cut_as(["a"], ["1", "2"]) == ["1", "2"]
    assert parse(new)[0][0].commands[1].output == ["new"]  # what it wrote reads back as that command's output


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN, ids=[f"README.md:{b.line}" for b in RUN])
def test_the_readme_tour_runs_as_written(block: Block, tour):
    folder, env = tour
    found = problems(block, folder, env)
    assert not found, found[0]


def main() -> int:
    """`python tests/test_readme_tour.py [--write] [--blocks LINE,...] [FOLDER]`: run the tour as the test does
    and print what each command printed, to paste into the README (FOLDER: where to run it; default a new
    temporary one). --blocks: only the blocks whose marker (or fence) is on those README lines, skipped
    ones too, in the order given (a block the tour test leaves out still shows real output).
    --write puts each command's real output into README.md itself, in place of what it shows: a block's
    `...` cut is kept (as many lines before and after it as the README shows), `check` blocks are left
    as written (the test compares them)."""
    import tempfile

    args = sys.argv[1:]
    write = "--write" in args
    args = [a for a in args if a != "--write"]
    run = RUN
    if "--blocks" in args:  # these blocks only (skipped ones too), in README order, in a fresh folder
        i = args.index("--blocks")
        order = [int(n) for n in args[i + 1].split(",")]
        wanted = set(order)
        del args[i:i + 2]
        run = sorted((b for b in BLOCKS if b.line in wanted or b.line - 1 in wanted),  # the fence's or marker's line
                     key=lambda b: min(order.index(n) for n in (b.line, b.line - 1) if n in order))  # in the order given
    base = Path(args[0]) if args else Path(tempfile.mkdtemp(prefix="readme-tour-"))
    folder, env = _clean_clone(base)
    print(f"# in {folder}", flush=True)
    outputs: dict[int, list[str]] = {}  # a command's README line -> what it printed
    for block in run:
        for cmd in block.commands:
            done = _run(cmd, folder, env)
            print(f"# README.md:{cmd.line} exit {done.returncode} (README: {block.exit})\n$ {cmd.text}", flush=True)
            print(done.stdout.rstrip(), flush=True)
            if not block.check:
                outputs[cmd.line] = [line.rstrip() for line in done.stdout.rstrip().splitlines()]
    if write:
        README.write_text(_with_outputs(README.read_text(), outputs))
        print(f"# wrote {len(outputs)} commands' output into {README}", flush=True)
    return 0


def _cut_as(shown: list[str], actual: list[str]) -> list[str]:
    """`actual`, cut where the README cut what it shows: its first and last lines around a `...`."""
    if "..." not in shown:
        return actual
    head = shown.index("...")
    tail = len(shown) - 1 - max(i for i, line in enumerate(shown) if line == "...")
    if len(actual) <= head + tail + 1:
        return actual
    return actual[:head] + ["..."] + (actual[len(actual) - tail:] if tail else [])


def _with_outputs(text: str, outputs: dict[int, list[str]]) -> str:
    """README text with the output lines after each command at line N replaced by outputs[N]."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        if i + 1 not in outputs:
            out.append(lines[i])
            i += 1
            continue
        start = i
        while lines[i].rstrip().endswith("\\"):  # the command's continuation lines
            i += 1
        out.extend(lines[start:i + 1])
        i += 1
        shown = []
        while i < len(lines) and not lines[i].startswith("$ ") and lines[i].strip() != "```":
            shown.append(lines[i])
            i += 1
        out.extend(_cut_as(shown, outputs[start + 1]))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
