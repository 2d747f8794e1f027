"""Can a secret be sent as an HTTP header value? Checked when a worker starts.

A token pasted from a word processor or chat carries typographic quotes (``“…”``) or a
non-breaking space. ``requests`` then fails only at the first request, inside
``http.client``, with a ``UnicodeEncodeError`` whose message quotes the whole header value:
the secret. So a worker refuses to start instead, naming the variable and never its value.

The rule (RFC 9110 section 5.5, "Field Values"; ``http.client`` encodes str header values as
ISO-8859-1; ``requests.utils.check_header_validity`` refuses leading whitespace and CR/LF):

- every character is ISO-8859-1 (code point < 256);
- no control character (below U+0020 other than HTAB, or U+007F): CR, LF and NUL are what
  header injection is made of;
- no leading or trailing whitespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from contact_lookup.model.errors import ConfigError


def header_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be an HTTP header value, without quoting it; None when it can."""
    for position, char in enumerate(value, start=1):
        code = ord(char)
        if code > 0xFF:
            return (
                f"character {position} is U+{code:04X}, outside ISO-8859-1 (a typographic "
                "quote or other text pasted from a document?)"
            )
        if (code < 0x20 and char != "\t") or code == 0x7F:
            return f"character {position} is the control character U+{code:04X}"
    if value != value.strip():
        return "it starts or ends with whitespace"
    return None


def check_sendable(names: Iterable[str], env: Mapping[str, str]) -> None:
    """ConfigError naming every variable in ``names`` whose value (when set) cannot be sent
    in an HTTP header, and why; the values themselves are never part of the message."""
    problems = []
    for name in sorted(set(names)):
        value = env.get(name)
        if value:
            problem = header_value_problem(value)
            if problem:
                problems.append(f"{name}: {problem}")
    if problems:
        raise ConfigError(
            "secrets that cannot be sent as an HTTP header value: "
            + "; ".join(problems)
            + ". Set them again as plain text."
        )
