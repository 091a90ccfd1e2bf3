"""Everything about the terminal, in one place: width, colour, unicode marks, escaping, notices.

Every string that came from outside (server replies, DNS records, payload fields, API answers)
passes through :func:`escape` before it reaches a text form, so a server cannot move the cursor,
retitle the terminal or clear the screen; JSON keeps the exact text. Given a ``width``, prose wraps
at word boundaries with its indent kept, and a DNS record stays whole on a line of its own, so that it
can be copied as it is.

Each command prints its result through one small protocol, :class:`Output`: a text form for people
(given the :class:`Terminal` it goes to) and a JSON form for programs. Data goes to stdout, notices
to stderr.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import textwrap
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, TextIO, TypeVar

import click

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "ErrorGroup",
    "Output",
    "Terminal",
    "colour_wanted",
    "debug_enabled",
    "emit",
    "escape",
    "escape_lines",
    "fail",
    "notice",
    "unicode_ok",
    "width_of",
    "wrap",
]

# Below this, indents would leave no room for words.
MIN_WIDTH: Final = 40

# C0 and C1 controls and DEL (ESC sequences, CR, backspace, BEL); every Unicode format character
# (category Cf: zero-width spaces and joiners, bidirectional marks, overrides and isolates, the BOM,
# tag characters) and the line and paragraph separators, which hide or reorder text on a terminal;
# and lone surrogates, which are bytes that were not UTF-8 (written as the byte, \xfc).
_UNSAFE: Final = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b"}


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): shown as that byte
        return f"\\x{code - 0xDC00:02x}"
    if code > 0xFFFF:
        return f"\\U{code:08x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str) -> str:
    """``text`` safe for a terminal: every control or invisible reordering character shown as a
    visible escape (``\\x1b``, ``\\r``, ``\\u202e``), everything else unchanged."""
    return _UNSAFE.sub(_escaped, text)


def escape_lines(text: str) -> str:
    """:func:`escape` for a message whose line breaks are the tool's own: each line escaped apart."""
    return "\n".join(escape(line) for line in text.split("\n"))


def wrap(
    text: str,
    *,
    width: int | None,
    indent: str = "",
    hang: str | None = None,
    records: Iterable[str] = (),
    keep: Iterable[str] = (),
) -> list[str]:
    """``text`` (already escaped) as lines of at most ``width`` columns, broken only between words.

    The first line starts with ``indent``, the others with ``hang`` (default: ``indent``). Each of
    ``records`` found in the text goes on a line of its own after ``hang``, never broken, however long
    it is: a DNS record is copied from the terminal as it stands. Each of ``keep`` stays unbroken
    where it is (a record quoted inside other evidence). ``width=None`` wraps nothing.
    """
    hang = indent if hang is None else hang
    kept = [k for k in keep if " " in k.strip() and k in text]
    if kept and width is not None:
        # Escaped text holds no NUL: it stands for the spaces that must not break while wrapping.
        for item in sorted(kept, key=len, reverse=True):
            text = text.replace(item, item.replace(" ", "\x00"))
        return [line.replace("\x00", " ") for line in wrap(text, width=width, indent=indent, hang=hang)]
    lines: list[str] = []
    for is_record, piece in _pieces(text, records):
        first = indent if not lines else hang
        if is_record:
            lines.append(first + piece)
            continue
        if lines:
            piece = piece.lstrip(" ;")
            if not piece:
                continue
        if width is None:
            lines.append(first + piece)
            continue
        lines.extend(
            textwrap.wrap(
                piece,
                width=width,
                initial_indent=first,
                subsequent_indent=hang,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or [first.rstrip()]
        )
    return lines or [indent.rstrip()]


def _pieces(text: str, records: Iterable[str]) -> list[tuple[bool, str]]:
    """``text`` cut into prose and the records it contains (only records with a space could break)."""
    wanted = sorted({r for r in records if " " in r.strip() and r in text}, key=len, reverse=True)
    if not wanted:
        return [(False, text)]
    pattern = re.compile("|".join(re.escape(r) for r in wanted))
    pieces: list[tuple[bool, str]] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            pieces.append((False, text[position : match.start()].rstrip()))
        pieces.append((True, match.group()))
        position = match.end()
    if position < len(text):
        pieces.append((False, text[position:]))
    return [(is_record, piece) for is_record, piece in pieces if piece.strip()]


def debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return bool(root and root.obj and root.obj.get("debug")) or bool(os.environ.get("INBOXCHECK_DEBUG"))


def notice(message: str) -> None:
    # Notices quote paths, payload fields and server answers: escaped like every text output.
    click.echo(f"inboxcheck: {escape_lines(message)}", err=True)


def fail(message: str, code: int) -> NoReturn:
    notice(f"error: {message}")
    sys.exit(code)


def width_of(stream: TextIO) -> int | None:
    """The width to wrap text to: COLUMNS when set, else the terminal's; unwrapped into a pipe."""
    import shutil

    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return max(int(columns), MIN_WIDTH)
    isatty = getattr(stream, "isatty", None)
    if isatty and isatty():
        return max(shutil.get_terminal_size().columns, MIN_WIDTH)
    return None


def colour_wanted(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def unicode_ok(stream: TextIO) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        "✔✘–·".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


@dataclass(frozen=True)
class Terminal:
    """Where text goes and what it can show: colour, unicode marks, a width to wrap to (or none)."""

    colour: bool = False
    unicode: bool = True
    width: int | None = None

    @classmethod
    def of(cls, stream: TextIO) -> Terminal:
        return cls(colour=colour_wanted(stream), unicode=unicode_ok(stream), width=width_of(stream))


_Result = TypeVar("_Result", contravariant=True)


class Output(Protocol[_Result]):
    """How a command prints its result: text for people, JSON for programs (each ends its own line)."""

    def text(self, result: _Result, terminal: Terminal, *, verbose: bool, quiet: bool) -> str: ...

    def json(self, result: _Result) -> str: ...


def emit(
    output: Output[_Result], result: _Result, *, fmt: str, verbose: bool = False, quiet: bool = False
) -> None:
    """``result`` on stdout in the format asked for."""
    if fmt == "json":
        click.echo(output.json(result), nl=False)
    else:
        terminal = Terminal.of(sys.stdout)
        click.echo(output.text(result, terminal, verbose=verbose, quiet=quiet), nl=False)


class ErrorGroup(click.Group):
    """Turns an InboxcheckError into one message on stderr and the error's exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        from inboxcheck._errors import InboxcheckError

        try:
            return super().invoke(ctx)
        except InboxcheckError as exc:
            notice(f"error: {exc}")
            ctx.exit(exc.exit_code)


class Progress:
    """A batch's progress: done of total, percentage, rate and time left."""

    def __init__(self, total: int | None, *, clock: Callable[[], float]) -> None:
        self.total = total
        self.clock = clock
        self.started = clock()
        self.done = 0

    def start(self, resumed: int) -> None:
        """Accounts already in the output when resuming are not this run's work."""
        if self.total is not None:
            self.total = max(self.total - resumed, 0)
        self.started = self.clock()

    def describe(self, *, final: bool = False) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        rate = self.done / elapsed
        # The count is of lines and may miss a CSV record spanning several: never show more than 100%.
        total = max(self.total, self.done) if self.total is not None else None
        parts = [f"{self.done}/{total} checked" if total is not None else f"{self.done} checked"]
        if total:
            parts.append(f"{100 * self.done // total}%")
        parts.append(f"{rate:.1f}/s")
        if final:
            parts.append(f"in {_duration(elapsed)}")
        elif total is not None and rate > 0:
            parts.append(f"ETA {_duration((total - self.done) / rate)}")
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


_T = TypeVar("_T")

#: Seconds a command has to tidy up after Ctrl-C (the runner gives a test message's deletion 5 s,
#: ``_check.LEFTOVER_BOUND``) before the cancellation is repeated.
INTERRUPT_GRACE: Final = 8.0


def run_async(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run`` for a command, where Ctrl-C (and SIGTERM, which ``main()`` turns into one)
    always ends it as interrupted: :class:`KeyboardInterrupt`, whatever the command returned.

    The first Ctrl-C cancels the command so that it tidies up, as ``asyncio.run`` does. A library on
    the way can lose that cancellation (a timeout and a cancel that meet, under load) and let the
    command run on to its own end, reporting what it saw as if nobody had asked it to stop: so the
    cancellation is repeated each second once the grace is over, and the end is an interruption
    either way. A second Ctrl-C stops at once.
    """
    import asyncio
    import signal
    import threading

    async def supervised() -> _T:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(main)
        interrupted = False

        def again() -> None:
            if not task.done():
                task.cancel()
                loop.call_later(1.0, again)

        def on_sigint() -> None:
            nonlocal interrupted
            if interrupted:
                raise KeyboardInterrupt
            interrupted = True
            task.cancel()
            loop.call_later(INTERRUPT_GRACE, again)

        watching = threading.current_thread() is threading.main_thread()
        if watching:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        try:
            result = await task
        except asyncio.CancelledError:
            if interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            if watching:
                loop.remove_signal_handler(signal.SIGINT)
        if interrupted:
            raise KeyboardInterrupt
        return result

    return asyncio.run(supervised())


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """For a command that runs until asked (``fleet watch``, ``fleet worker``), inside
    :func:`run_async`: SIGTERM and Ctrl-C set ``stop``, and the command ends cleanly (exit 0); a
    second one ends it at once, as interrupted. Afterwards SIGTERM is as before; Ctrl-C keeps this
    handler until ``run_async`` takes it back."""
    import asyncio
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    before = signal.getsignal(signal.SIGTERM)

    def on_signal() -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        if before is not None:
            signal.signal(signal.SIGTERM, before)
