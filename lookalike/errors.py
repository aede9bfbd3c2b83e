"""The one base class for the errors Lookalike raises on purpose.

A `LookalikeError` means the input was wrong (a missing folder, a bad bundle, an unknown loss
name, an index built with another encoder) and its message says what to fix: the command line
prints it as `error: <message>` and exits 2. Any other exception is a bug and keeps its
traceback. Subclasses also derive from the built-in exception that fits (ValueError,
FileNotFoundError...), so code that catches those, pydantic validators included, still does.
"""

from __future__ import annotations

from pydantic import ValidationError


class LookalikeError(Exception):
    """Base of every error the project raises for bad input; its message is for a person."""


class ConfigError(LookalikeError, ValueError):
    """Options (flags, YAML, environment variables) that do not validate."""

    @classmethod
    def from_validation(cls, err: ValidationError) -> ConfigError:
        """One line per invalid option, `option: what is wrong`, instead of pydantic's report; a
        validator's own message as it wrote it, without pydantic's "Value error, " prefix."""
        return cls("; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'config'}: {message(e)}" for e in err.errors()))


def message(error: dict) -> str:
    """What one pydantic error says: the raised exception's text for a validator's ValueError."""
    raised = error.get("ctx", {}).get("error")
    return str(raised) if error["type"] == "value_error" and raised is not None else error["msg"]
