"""The one user-facing error family. The CLI edge turns these into a line and an exit code.

    TunelabError                    exit 1 unless a subclass says otherwise
    ├── DataError                   exit 1: the user's data breaks a rule (line number and fix)
    ├── UsageError                  exit 2: bad flags, bad config, unreadable input
    │   ├── ConfigError             exit 2: a config that fails validation (every problem at once)
    │   ├── RegistryError           exit 2: registry.sqlite is damaged, read-only, newer or a folder
    │   └── EncodingError           exit 2: a text file that is not UTF-8, with the encoding it
    │                                       looks like (decode_utf8 raises it)
    ├── ProviderError               exit 1: a provider (OpenAI, Vertex, ...) refused or failed
    │   ├── TransientProviderError  exit 1: worth retrying (network down, 408/409/429, 5xx)
    │   └── AuthError               exit 2: a key or credential is missing or refused
    └── NotFoundError               exit 2: a job, model, file or checkpoint that does not exist

Code below the CLI raises these and never prints or exits. SDK errors (openai's, google's)
become these in one place, tunelab.providers.sdk_errors, which keeps only the provider's code
and first line of message and scrubs keys and tokens out of it. Retrying code catches
TransientProviderError; every other ProviderError is final.

A fix or a "Next:" line that names a command builds it with `command`, so that what came
from outside (a provider's model name or job id, a path) is pasted as one word of text.
"""

from __future__ import annotations

import shlex
from collections import Counter


class TunelabError(Exception):
    """Base of every error a user should see as one line, never as a traceback."""

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        """One line: what went wrong, then what to do about it."""
        return f"{self.message} — {self.fix}" if self.fix else self.message

    def __str__(self) -> str:
        return self.render()


def command(*words: object) -> str:
    """A command line to suggest, each word quoted for a POSIX shell where it needs to be:
    pasted, a model name holding `$(...)`, `;` or a space stays one word, never runs."""
    return shlex.join(str(word) for word in words)


class DataError(TunelabError):
    """The dataset breaks a rule; `path` and `line` say where."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 fix: str | None = None) -> None:
        where = f"{path}:{line}: " if path and line else (f"{path}: " if path else "")
        super().__init__(where + message, fix=fix)
        self.path, self.line = path, line


class UsageError(TunelabError):
    """Bad flags, a bad config, or input that cannot be read at all."""

    exit_code = 2


class ConfigError(UsageError):
    """A config that fails validation. `problems` lists every one, each naming its key."""

    def __init__(self, problems: list[str], *, source: str = "config") -> None:
        self.problems = problems
        super().__init__(f"invalid {source}: " + "; ".join(problems),
                         fix="fix the keys/flags named above (see `tunelab train --help`)")


class RegistryError(UsageError):
    """The registry (TUNELAB_HOME/registry.sqlite) cannot be used as it is; the fix says how
    to get going again (move it aside, restore a backup, make it writable, upgrade)."""


class ProviderError(TunelabError):
    """A provider refused or failed a request. Carries its code and message, never a key."""

    exit_code = 1

    def __init__(self, message: str, *, code: str | None = None, fix: str | None = None) -> None:
        super().__init__(f"[{code}] {message}" if code else message, fix=fix)
        self.code = code


class TransientProviderError(ProviderError):
    """A failure that may pass: the network, a busy provider (429) or its own fault (5xx).

    `retry_after` is the wait in seconds the provider asked for, when it named one.
    """

    def __init__(self, message: str, *, code: str | None = None, fix: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, code=code, fix=fix)
        self.retry_after = retry_after


class AuthError(ProviderError):
    """A key or credential is missing or was refused."""

    exit_code = 2


class NotFoundError(TunelabError):
    """A job, model, file or checkpoint that does not exist."""

    exit_code = 2


class EncodingError(UsageError):
    """A text file that is not UTF-8: the file, where its first non-UTF-8 byte is, and the
    encoding the bytes look like (a UTF-16 file read as UTF-8 is otherwise mojibake or a
    baffling "Expecting property name")."""

    def __init__(self, name: str, *, where: str = "", looks_like: str | None = None) -> None:
        guess = f"; it looks like {looks_like}" if looks_like else ""
        super().__init__(f"{name} is not UTF-8{where}{guess}",
                         fix=f"re-save it as UTF-8 (e.g. `iconv -f {_iconv_name(looks_like)} "
                             "-t UTF-8`)")


def _iconv_name(looks_like: str | None) -> str:
    """iconv's name for an encoding guess: plain UTF-16 reads a byte-order mark itself."""
    if not looks_like or not looks_like.startswith("UTF-"):
        return "LATIN1"
    name = looks_like.split(" ")[0]
    return name[:6] if "(byte-order mark)" in looks_like else name


_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
         (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE"))
EIGHT_BIT = "Latin-1 or another 8-bit code page (Windows-1251/1252)"
SNIFF_BYTES = 4096  # enough of a file's start to tell UTF-16/UTF-32 from UTF-8


def wide_encoding(head: bytes) -> str | None:
    """"UTF-16LE (byte-order mark)", "UTF-16BE (no byte-order mark)", ... when a file's first
    bytes are UTF-16 or UTF-32; None otherwise (UTF-8 or an 8-bit code page).

    Without a byte-order mark, UTF-16 shows as one control byte at every other position:
    the high byte of each character, 0x00 for ASCII, 0x04 for Cyrillic, 0x03 for Greek.
    UTF-8 never puts a byte below 0x20 (other than line breaks) at every other position."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return f"{name} (byte-order mark)"
    quads = len(head) // 4
    if quads >= 2:  # UTF-32: the top two bytes of every character are 0
        zero = [head[k:quads * 4:4].count(0) / quads for k in range(4)]
        if min(zero[2:]) > 0.9 and zero[0] < 0.5:
            return "UTF-32LE (no byte-order mark)"
        if min(zero[:2]) > 0.9 and zero[3] < 0.5:
            return "UTF-32BE (no byte-order mark)"
    pairs = len(head) // 2
    for parity, name in ((1, "UTF-16LE"), (0, "UTF-16BE")):
        mine, other = head[parity:pairs * 2:2], head[1 - parity:pairs * 2:2]
        if not mine:
            return None
        byte, count = Counter(mine).most_common(1)[0]
        if byte < 0x20 and byte not in b"\n\r" and count >= 0.3 * pairs \
                and other.count(byte) < 0.05 * pairs:
            return f"{name} (no byte-order mark)"
    return None


def decode_utf8(raw: bytes, name: str) -> str:
    """`raw` as text (a UTF-8 byte-order mark dropped), or EncodingError naming `name`, the
    first bad byte's offset and line, and the encoding the bytes look like."""
    wide = wide_encoding(raw[:SNIFF_BYTES])
    if wide:
        raise EncodingError(name, looks_like=wide)
    body = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        offset = error.start + len(raw) - len(body)
        line = raw.count(b"\n", 0, offset) + 1
        raise EncodingError(name, where=f" (byte 0x{raw[offset]:02X} at offset {offset:,}, "
                                        f"line {line})", looks_like=EIGHT_BIT) from None
