"""The errors copybot's edges raise, in one tree (as ``httpx`` keeps its exceptions in one module).

Libraries raise these with a message that says what went wrong and what to do; the command line maps them to
an exit code and prints ``copybot <command>: <message>`` in one place (:mod:`streams.cli.main`), so no
library prints or exits. Each class keeps the builtin base its callers already catch (``ValueError``,
``RuntimeError``).

::

    CopybotError
    ├── UsageError          a command-line value copybot cannot use             (exit 2)
    ├── SettingsError       a COPYBOT_* environment variable it cannot use      (exit 2)
    ├── DecodeError         an input message that is not a valid event          (dead letter; never exits)
    ├── InvalidEvent        an event given to the client to publish is invalid (exit 1)
    ├── AssignmentError     a ``section.key=value`` config edit it cannot parse (exit 2)
    ├── InputUnreadable     a tape or file that cannot be read                  (exit 1)
    ├── KafkaUnavailable    Kafka cannot be reached or refused a request        (exit 1)
    ├── TopicError          a topic has the wrong shape or cannot be created    (exit 1)
    └── NoWorker            ``publish --ordered``: no worker copied an event    (exit 1)
"""

from __future__ import annotations


class CopybotError(Exception):
    """The root of every error copybot's edges raise on purpose; the message is for a person."""


class UsageError(CopybotError, ValueError):
    """A command-line argument copybot cannot use (e.g. ``--rate 0``)."""


class SettingsError(CopybotError, ValueError):
    """An environment variable holds a value copybot cannot use."""


class DecodeError(CopybotError, ValueError):
    """An input message that is not a valid event: it goes to the dead letters, with this reason."""


class InvalidEvent(CopybotError, ValueError):
    """The input is not a valid copybot event (the worker would dead-letter it); the message says why."""


class AssignmentError(CopybotError, ValueError):
    """A ``section.key=value`` argument that cannot be understood; the message says why."""


class InputUnreadable(CopybotError):
    """A tape or other input file that cannot be opened or read."""


class KafkaUnavailable(CopybotError, RuntimeError):
    """Kafka could not be reached (or refused a request); the message names the bootstrap servers."""


class TopicError(CopybotError, RuntimeError):
    """A topic exists with a shape copybot cannot use, or could not be created; the message says which."""


class NoWorker(CopybotError, RuntimeError):
    """``--ordered``: the worker did not copy a snapshot or config change into leader-trades in time."""
