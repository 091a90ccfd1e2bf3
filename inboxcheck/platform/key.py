"""The platform API key: where it comes from (environment or a private file), its format, and a
repr that never shows it."""

from __future__ import annotations

import os
import re
import stat
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from inboxcheck._errors import ApiKeyError, InsecureKeyFileWarning

DEFAULT_BASE_URL: Final = "https://api.coldsend.io"
DEFAULT_PATH: Final = "/api/public/v1/sender-accounts"
DEFAULT_BULK_PATH: Final = "/api/public/v1/sender-accounts/smtp/bulk"
API_KEY_ENV: Final = "COLDSEND_API_KEY"
BULK_MAX_ITEMS: Final = 100

# --------------------------------------------------------------------------------------------------
# The API key
# --------------------------------------------------------------------------------------------------

_KEY_PREFIXES: Final = ("cs_live_", "cs_test_")
# The contract only shows "cs_live_xxx". A real secret token is random and long; 16 characters is
# the least that is still a credential rather than a placeholder (the documentation's own "xxx" is
# refused), 256 the most that fits in a header without looking like a pasted file. The charset is
# the URL-safe base64 alphabet, which every token generator in common use stays within.
KEY_TOKEN_MIN: Final = 16
KEY_TOKEN_MAX: Final = 256
_KEY_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
KEY_PATTERN: Final = re.compile(
    r"^cs_(?:live|test)_[A-Za-z0-9_-]{%d,%d}$" % (KEY_TOKEN_MIN, KEY_TOKEN_MAX)  # noqa: UP031
)
# Showing the last four characters helps a person tell which of their keys was used. It only costs
# 24 bits of a token that has at least 96 more, so it is shown only when that many stay hidden.
_MASK_SHOW_TAIL: Final = 4
_MASK_MIN_HIDDEN: Final = 16


class ApiKey:
    """A platform API key. Its ``repr`` and ``str`` never show it; only :meth:`reveal` does.

    >>> key = ApiKey.parse("cs_test_" + "a" * 20 + "wxyz")
    >>> key
    ApiKey('cs_test_…wxyz')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        _validate_key(value, source="the API key")
        self._value = value

    @classmethod
    def parse(cls, text: str, *, source: str = "the API key") -> ApiKey:
        """A key from text, exactly as given. :class:`ApiKeyError` names what is wrong, never the
        key."""
        _validate_key(text, source=source)
        return cls(text)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, name: str = API_KEY_ENV) -> ApiKey:
        """The key in the environment variable ``name`` (``COLDSEND_API_KEY``)."""
        env = os.environ if environ is None else environ
        value = env.get(name)
        if not value:
            raise ApiKeyError(
                f"No platform API key: the environment variable {name} is "
                f"{'empty' if value == '' else 'not set'}. Set it to your ColdSend key "
                f"(cs_live_... or cs_test_...), or pass --api-key-file with a file that holds it."
            )
        return cls.parse(value, source=f"the API key in ${name}")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ApiKey:
        """The key in a file: its whole content, less one trailing newline.

        A regular file that other users can read is accepted with an :class:`InsecureKeyFileWarning`
        (refusing would break Kubernetes and Docker secrets, which are mounted 0644/0444 by
        default). Pipes such as ``--api-key-file <(pass show coldsend)`` are read as they are."""
        file = Path(path)
        source = f"the API key file {file}"
        try:
            with file.open("rb") as handle:
                info = os.fstat(handle.fileno())
                if stat.S_ISDIR(info.st_mode):
                    raise ApiKeyError(f"{source} is a directory; pass the file that holds the key.")
                raw = handle.read(KEY_TOKEN_MAX + 64)
        except IsADirectoryError:
            raise ApiKeyError(f"{source} is a directory; pass the file that holds the key.") from None
        except FileNotFoundError:
            raise ApiKeyError(f"{source} does not exist; check the path given to --api-key-file.") from None
        except PermissionError:
            raise ApiKeyError(
                f"{source} cannot be read by this user; fix its permissions (chmod 600 is enough)."
            ) from None
        except OSError as exc:
            raise ApiKeyError(f"{source} cannot be read: {exc.strerror or type(exc).__name__}.") from None
        if stat.S_ISREG(info.st_mode) and info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            who = "everyone on this machine" if info.st_mode & stat.S_IROTH else "its group"
            warnings.warn(
                InsecureKeyFileWarning(
                    f"{source} can be read by {who} (mode {stat.S_IMODE(info.st_mode):04o}); "
                    f"restrict it with: chmod 600 {file}"
                ),
                stacklevel=2,
            )
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise ApiKeyError(
                f"{source} holds bytes that are not ASCII; an API key is plain text "
                f"(cs_live_... or cs_test_...). Check the file's encoding and content."
            ) from None
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if not text:
            raise ApiKeyError(
                f"{source} is empty; write your ColdSend key (cs_live_... or cs_test_...) into it."
            )
        return cls.parse(text, source=source)

    @property
    def kind(self) -> str:
        """``live`` or ``test``."""
        return self._value[3:7]

    @property
    def is_test(self) -> bool:
        return self.kind == "test"

    def reveal(self) -> str:
        """The key itself, for the request header. Never log or print it."""
        return self._value

    @property
    def prefix(self) -> str:
        """``cs_live_`` or ``cs_test_``: the part of the key that is public (shown in the mask)."""
        return self._value[:8]

    def masked(self) -> str:
        """``cs_live_…abcd``: the prefix, and the last four characters when enough stay hidden."""
        prefix, token = self._value[:8], self._value[8:]
        if len(token) - _MASK_SHOW_TAIL >= _MASK_MIN_HIDDEN:
            return f"{prefix}…{token[-_MASK_SHOW_TAIL:]}"
        return f"{prefix}…"

    def __repr__(self) -> str:
        return f"ApiKey({self.masked()!r})"

    def __str__(self) -> str:
        return self.masked()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApiKey):
            return NotImplemented
        import hmac

        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self) -> Any:
        # Pickling would write the key in clear to wherever the pickle goes.
        raise TypeError("an ApiKey cannot be pickled; pass the key through the environment or a file")


def _validate_key(text: str, *, source: str) -> None:
    if not isinstance(text, str):
        raise ApiKeyError(f"{source} must be text, not {type(text).__name__}.")
    if not text:
        raise ApiKeyError(f"{source} is empty; it should look like cs_live_... or cs_test_....")
    for index, char in enumerate(text):
        if char in "\r\n":
            raise ApiKeyError(
                f"{source} contains a line break (at character {index + 1}); a key is a single "
                "line. Remove the extra lines, or pass a file with only the key in it."
            )
        if char.isspace():
            raise ApiKeyError(
                f"{source} contains whitespace (at character {index + 1}); remove the spaces "
                "around or inside the key, as copied from the platform."
            )
    if not text.startswith(_KEY_PREFIXES):
        hint = ""
        if text.lower().startswith(_KEY_PREFIXES):
            hint = " (the prefix must be lower case)"
        elif text.startswith("cs_"):
            hint = " (only live and test keys exist)"
        raise ApiKeyError(
            f"{source} does not start with cs_live_ or cs_test_{hint}; copy the key from the "
            f"platform's API settings page."
        )
    token = text[8:]
    if len(token) < KEY_TOKEN_MIN:
        raise ApiKeyError(
            f"{source} is too short: {len(token)} characters follow the prefix, a real key has at "
            f"least {KEY_TOKEN_MIN}. Copy the whole key, not a placeholder."
        )
    if len(token) > KEY_TOKEN_MAX:
        raise ApiKeyError(
            f"{source} is too long: more than {KEY_TOKEN_MAX} characters follow the prefix. Check "
            "that only the key was copied."
        )
    if not _KEY_TOKEN.fullmatch(token):
        position = next(i for i, c in enumerate(token) if not _KEY_TOKEN.fullmatch(c)) + 9
        raise ApiKeyError(
            f"{source} has a character that is not a letter, digit, '_' or '-' (at character "
            f"{position}); copy the key again from the platform."
        )


def load_api_key(
    *, key_file: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> ApiKey:
    """The key for a run: from ``key_file`` when given (``--api-key-file``), else
    ``$COLDSEND_API_KEY``."""
    if key_file is not None:
        return ApiKey.from_file(key_file)
    return ApiKey.from_env(environ)
