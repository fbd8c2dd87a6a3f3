"""The CLI's edge with the terminal: one-line errors, warnings and notes, exit codes, JSON out, rich consoles.

Every way a command can end is mapped here, once: bad input (a TunectlError, a click usage
error) is one `error:` line and exit 2; a runtime failure (a RunError, the disk, the OS, a
storage gone mid-run) one line and exit 1; an interrupt exit 130. Never a traceback.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import typer
from typer.core import TyperCommand, TyperGroup

EXIT_RUNTIME, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130
MAX_LINE = 400  # an error line quotes user input; a huge input must not become a huge line


def one_line(message: str) -> str:
    # a message quoting the user's input (a YAML key, a file name) may hold a line break: show it escaped
    message = str(message).replace("\r", "\\r").replace("\n", "\\n")
    return message if len(message) <= MAX_LINE else message[: MAX_LINE - 3] + "..."


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    """One line on stderr and a non-zero exit: never a traceback."""
    typer.secho(f"error: {one_line(message)}", fg="red", err=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    """A one-line note on stderr, shown with --json too (stdout stays machine-readable)."""
    typer.secho(f"note: {one_line(message)}", fg="yellow", err=True)


def usage_error(e: Exception) -> str:
    """A click usage error (bad option value, unknown option, missing argument) as one line."""
    ctx, param = getattr(e, "ctx", None), getattr(e, "param", None)
    where = f"; see `{ctx.command_path} --help`" if ctx is not None else ""
    name = ""
    if param is not None:
        name = (getattr(param, "opts", None) or [param.name])[0]
        cause = getattr(e.__cause__, "errors", None)  # typer validates values with pydantic
        first = cause()[0] if callable(cause) else {}
        kind = {"int_parsing": "is not a whole number", "int_from_float": "is not a whole number",
                "float_parsing": "is not a number", "bool_parsing": "is not true or false"}.get(first.get("type"))
        if kind and "input" in first:
            return f"{name}: {first['input']!r} {kind}{where}"
        error = (first.get("ctx") or {}).get("error") if first.get("type") == "value_error" else None
        if error is not None:  # a choice: "--sampler 'tp' is not one of 'tpe', 'random', ..."
            return f"{name} {' '.join(str(error).split()).rstrip('.')}{where}"
    text = " ".join(e.format_message().split()).rstrip(".")
    if name and name not in text:
        text = f"{name}: {text}"
    return f"{text}{where}"


@contextmanager
def one_line_warnings() -> Iterator[None]:
    """Python's and torch's warnings (a file, a line number, the source line) become one
    `warning:` line each, printed once, through the same path as every other message."""
    import warnings

    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = one_line(" ".join(str(message).split()))
        if text not in seen:
            seen.add(text)
            typer.secho(f"warning: {text}", fg="yellow", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def plain_flags(params: list[Any]) -> list[Any]:
    """A flag takes no value: `--json`, not `--json <bool>`, in --help."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class FlagCommand(TyperCommand):
    """Typer's command, its flags shown in --help without a value placeholder."""

    def get_params(self, ctx: Any) -> list[Any]:
        return plain_flags(super().get_params(ctx))


class OneLineGroup(TyperGroup):
    """Typer's group, with click's usage errors (a six-line box) printed as one line, exit 2."""

    def get_params(self, ctx: Any) -> list[Any]:
        return plain_flags(super().get_params(ctx))

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            with one_line_warnings():
                rv = super().main(*args, standalone_mode=False, **kwargs)
        except typer.Abort:
            typer.secho("error: interrupted", fg="red", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as e:  # noqa: BLE001 - click's exceptions are Typer-private: known by their shape
            if not hasattr(e, "format_message") or not hasattr(e, "exit_code"):
                raise
            typer.secho(f"error: {one_line(usage_error(e))}", fg="red", err=True)
            sys.exit(e.exit_code if e.exit_code else EXIT_BAD_INPUT)
        sys.exit(rv if isinstance(rv, int) else 0)


@contextmanager
def handled() -> Iterator[None]:
    """Every command body runs in this: each way it can fail becomes one line and its exit code."""
    from tunectl.errors import RunError, TunectlError

    try:
        yield
    except TunectlError as e:
        fail(str(e), EXIT_BAD_INPUT)
    except RunError as e:
        fail(str(e), EXIT_RUNTIME)
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
    except MemoryError:
        fail("out of memory; use a smaller batch_size or model", EXIT_RUNTIME)
    except OSError as e:
        fail(f"{e.strerror or e} ({e.filename or ''}); check the path, its permissions and free disk space", EXIT_RUNTIME)
    except Exception as e:  # noqa: BLE001 - a storage server lost mid-run: one masked line, not a traceback
        from tunectl.storage import mask_passwords, storage_cause, storage_error

        cause = storage_cause(e)
        if cause is None:
            raise
        fail(f"the study storage failed: {mask_passwords(storage_error(cause))[:300]}; check that the database "
             f"server is up, then resume", EXIT_RUNTIME)


def consoles(json_out: bool, quiet: bool = False):
    """stdout for results, stderr for progress (silent with --json or -q/--quiet); rich only at this edge."""
    from rich.console import Console

    return Console(), Console(stderr=True, quiet=json_out or quiet)


def print_json(obj: Any) -> None:
    """Full-precision numbers; NaN and infinity (which JSON lacks) as null."""
    from tunectl.numbers import clean

    sys.stdout.write(json.dumps(clean(obj), indent=2, default=str) + "\n")
