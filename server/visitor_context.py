"""Where the widget's visitor is (issue 18): the page the chat started on and the current
one, the referrer, browser and OS, and the visitor's time zone. The chat window reports
them with each message; the conversation keeps them as one JSON object of bounded size, for
the inbox's side panel."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import orjson

from server.errors import Invalid
from server.text import has_control_characters

URL_MAX_CHARS = 2000
TITLE_MAX_CHARS = 300
TIME_ZONE_MAX_CHARS = 64
# Only the browser and OS named below are kept, so a longer header is cut, never refused:
# the header is the browser's, not something the visitor typed.
USER_AGENT_MAX_CHARS = 512
# The distinct browsers one process hears from at a time; each visitor message is read
# again inside the conversation's write, and a chat repeats its browser's header every time.
KNOWN_USER_AGENTS = 1024

# Bounded by the limits above: a stored context is a few kilobytes at most.
KEYS = ("start_url", "start_title", "url", "title", "referrer", "browser", "os", "time_zone")


@dataclass(frozen=True, slots=True)
class VisitorContext:
    """What one request reports; empty strings are "not reported"."""

    url: str = ""
    title: str = ""
    referrer: str = ""
    time_zone: str = ""
    user_agent: str = ""


# An IANA name's shape ("Europe/Paris", "America/Argentina/Buenos_Aires", "UTC"). Its shape
# only: a zone newer than this server's tz database is still the visitor's, and the inbox
# shows the local time only for zones its browser knows.
_TIME_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+){0,2}")
# A link the operator may click: only web pages, never javascript: or data:, and no spaces
# or control characters (browsers report their URLs percent-encoded).
_URL = re.compile(r"https?://[!-~\u00a0-\U0010ffff]+", re.IGNORECASE)


def _check_length(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise Invalid("invalid_context", f"{name} is longer than {limit} characters")


def _check_url(name: str, value: str) -> None:
    _check_length(name, value, URL_MAX_CHARS)
    if value and not _URL.fullmatch(value):
        raise Invalid("invalid_context", f"{name} must be an http or https URL")


def check_context(context: VisitorContext) -> None:
    """Refuses what no browser reports. A page title is the site's own text, shown as text:
    control characters (NUL among them) are refused, bidi marks that right-to-left sites
    use in their titles are kept."""
    _check_url("pageURL", context.url)
    _check_length("pageTitle", context.title, TITLE_MAX_CHARS)
    if has_control_characters(context.title):
        raise Invalid("invalid_context", "pageTitle contains control characters")
    _check_url("referrer", context.referrer)
    _check_length("timeZone", context.time_zone, TIME_ZONE_MAX_CHARS)
    if context.time_zone and not _TIME_ZONE.fullmatch(context.time_zone):
        raise Invalid("invalid_context", "timeZone is not an IANA time zone name")


# First match wins: Edge and Opera also say Chrome, Chrome also says Safari.
_BROWSERS = (
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/(\d+)")),
    ("Opera", re.compile(r"OPR/(\d+)")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/(\d+)")),
    ("Firefox", re.compile(r"(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome", re.compile(r"(?:Chrome|CriOS)/(\d+)")),
    ("Safari", re.compile(r"Version/(\d+)[^ ]* (?:Mobile/\S+ )?Safari/")),
)
# Android and iOS before Linux and macOS, whose names their user agents also carry.
_SYSTEMS = (
    ("Windows", re.compile(r"Windows")),
    ("Android", re.compile(r"Android")),
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("Linux", re.compile(r"Linux")),
)


def browser_and_os(user_agent: str) -> tuple[str, str]:
    """A deliberately small reading of the User-Agent header: the common browsers with their
    major version, and the OS family; anything else is "" (shown as unknown), since a full
    parser's database would outweigh what an operator needs to know."""
    return _read_agent(user_agent[:USER_AGENT_MAX_CHARS])


# Keyed by the cut header, so the cache holds at most KNOWN_USER_AGENTS x 512 characters.
@functools.lru_cache(maxsize=KNOWN_USER_AGENTS)
def _read_agent(agent: str) -> tuple[str, str]:
    browser = next(
        (f"{name} {m.group(1)}" for name, rx in _BROWSERS if (m := rx.search(agent))), ""
    )
    system = next((name for name, rx in _SYSTEMS if rx.search(agent)), "")
    return browser, system


def merged(stored: str, context: VisitorContext) -> str:
    """The conversation's context after ``context``: the first page reported stays the start,
    the newest is the current one, the first referrer stays; what a request leaves out keeps its
    last value."""
    known: dict[str, str] = orjson.loads(stored)
    browser, system = browser_and_os(context.user_agent)
    given = {
        "url": context.url,
        "title": context.title if context.url else "",
        "browser": browser,
        "os": system,
        "time_zone": context.time_zone,
    }
    result = {key: known.get(key, "") for key in KEYS}
    result.update({key: value for key, value in given.items() if value})
    # The referrer that brought the visitor to the site, not the site's own pages after it.
    result["referrer"] = result["referrer"] or context.referrer
    if not result["start_url"] and context.url:
        result["start_url"], result["start_title"] = given["url"], given["title"]
    return orjson.dumps(result).decode()
