"""What goes into the session's state machine (events, facts) and what comes out (actions).

The machine (`machine.py`) is pure: it is handed one event and the facts of the moment and
returns the actions to run, in order. The owner thread (`owner.py`) runs them; an action
that does I/O with an outcome the machine must judge (`Launch`, `ReadPage`, `Probe`,
`RestoreNext`, `LogOutPage`, `CheckReachable`) is always the last of its list, and its
outcome comes back as the next event.
"""
from __future__ import annotations

import dataclasses
import enum
from datetime import datetime

from ..failures import Failure
from ..states import Account
from ..web.page import PageState


class Command(str, enum.Enum):
    """What people (HTTP) and the process (a signal) ask of the session."""

    INITIALIZE = "initialize"
    DISCONNECT = "disconnect"
    CLEAR = "clear-session"
    SHUTDOWN = "shutdown"
    SCREENSHOT = "screenshot"


# -- facts: what the machine may know of the world at each event ------------------------

@dataclasses.dataclass(frozen=True)
class Facts:
    now: float                      # monotonic seconds
    wall: datetime                  # the same moment in UTC, for status fields
    expects_login: bool = False     # the record says this client id is linked
    qr_wanted: bool = False         # someone fetched the QR recently
    backup_in: float = float("inf")  # seconds until a backup is due (<= 0: due now)
    restore_unresolved: bool = False  # no login here and the database could not be asked yet
    outbox_waiting: bool = False    # messages queued, or sending from before
    receiving: bool = False         # WHATSAPP_RECEIVE: read incoming messages while ready
    cleared_elsewhere: bool = False  # another server or process cleared the login running here


# -- events --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Due:
    """The clock reached the machine's `due` time."""


@dataclasses.dataclass(frozen=True)
class Asked:
    command: Command


@dataclasses.dataclass(frozen=True)
class Launched:
    seconds: float
    has_session: bool


@dataclasses.dataclass(frozen=True)
class PageRead:
    page: PageState


@dataclasses.dataclass(frozen=True)
class Probed:
    """A ready page read; `reachable` is None unless the page showed the chat list."""
    page: PageState
    reachable: bool | None = None


@dataclasses.dataclass(frozen=True)
class Broke:
    failure: Failure


@dataclasses.dataclass(frozen=True)
class Restored:
    tried: frozenset[str]           # every backup tried, the restored one included
    name: str | None                # None: nothing left that restores
    browser_closed: bool = False    # the browser was closed for it (then it must relaunch)


@dataclasses.dataclass(frozen=True)
class PageLoggedOut:
    told_phone: bool


@dataclasses.dataclass(frozen=True)
class Reachability:
    reachable: bool


@dataclasses.dataclass(frozen=True)
class OutboxChanged:
    """A message was accepted (or cancelled): the outbox may have work."""


@dataclasses.dataclass(frozen=True)
class PageChanged:
    """The page told of a change under its chat list or open chat (web/watch.py)."""


@dataclasses.dataclass(frozen=True)
class Sent:
    """One send step done; `more`: there may be more to send, in `wait_s` at the earliest
    (messages left on the clock are looked at again later)."""
    more: bool
    wait_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class Received:
    """One read of incoming messages done; `unread`: chats with unread messages remain."""
    unread: bool


Event = (Due | Asked | Launched | PageRead | Probed | Broke | Restored | PageLoggedOut | Reachability
         | OutboxChanged | PageChanged | Sent | Received)


# -- actions -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Launch:
    """Lock, sweep, restore a missing login, start Chromium, open WhatsApp Web -> Launched/Broke."""


@dataclasses.dataclass(frozen=True)
class ReadPage:
    """One read of the page -> PageRead/Broke; `check_owner` also re-checks database ownership;
    `wait_s`: a starting or loading page is given that long to move on (answered at once when
    it does)."""
    check_owner: bool = False
    wait_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class Probe:
    """Health of a ready page: read it, and when it shows the chats, ask WhatsApp's server and
    re-check ownership -> Probed/Broke."""


@dataclasses.dataclass(frozen=True)
class SendNext:
    """Send (or settle) one message of the outbox -> Sent/Broke."""


@dataclasses.dataclass(frozen=True)
class ReadIncoming:
    """Read incoming messages and ticks; `open_unread` also opens one unread chat -> Received/Broke."""
    open_unread: bool = True


@dataclasses.dataclass(frozen=True)
class RestoreNext:
    """Restore the newest backup not in `tried` (closing the browser first) -> Restored."""
    tried: frozenset[str]


@dataclasses.dataclass(frozen=True)
class LogOutPage:
    """Log out from the page's menu, bounded -> PageLoggedOut."""


@dataclasses.dataclass(frozen=True)
class CheckReachable:
    """Is WhatsApp Web answering? -> Reachability."""


@dataclasses.dataclass(frozen=True)
class SaveEvidence:
    """The page is not one we know: keep a screenshot and an outline of it (no message text)."""


@dataclasses.dataclass(frozen=True)
class Screenshot:
    """A PNG of what the browser shows now, as the command's answer."""


@dataclasses.dataclass(frozen=True)
class ClickReload:
    """The QR codes ran out: "Click to reload QR code"."""


@dataclasses.dataclass(frozen=True)
class UseHere:
    """The conflict dialog: take the session back."""


@dataclasses.dataclass(frozen=True)
class Close:
    deadline: float


@dataclasses.dataclass(frozen=True)
class ReleaseLock:
    """Let another process drive this profile."""


@dataclasses.dataclass(frozen=True)
class MarkReady:
    account: Account
    linked_now: bool


@dataclasses.dataclass(frozen=True)
class Backup:
    account: Account


@dataclasses.dataclass(frozen=True)
class ForgetLogin:
    """The phone logged this device out: its backups go; the profile is WhatsApp's to clear."""


@dataclasses.dataclass(frozen=True)
class DeleteLogin:
    """disconnect / clear-session: the profile and every backup of the link go."""


@dataclasses.dataclass(frozen=True)
class CleanShutdown:
    account: Account
    ready_for: float


@dataclasses.dataclass(frozen=True)
class Update:
    """Replace fields of the status snapshot (`states.Snapshot` names)."""
    changes: dict


@dataclasses.dataclass(frozen=True)
class Publish:
    name: str
    data: dict


@dataclasses.dataclass(frozen=True)
class Log:
    """A line for the operator: `level` is a `logging` level name."""
    level: str
    message: str


@dataclasses.dataclass(frozen=True)
class Reply:
    """The answer to the command being handled."""
    message: str


Action = (Launch | ReadPage | Probe | SendNext | ReadIncoming | RestoreNext | LogOutPage | CheckReachable | ClickReload
          | SaveEvidence | Screenshot | UseHere | Close | ReleaseLock | MarkReady | Backup | ForgetLogin | DeleteLogin
          | CleanShutdown | Update | Publish | Log | Reply)
# Actions whose outcome is the next event: always the last of their list.
WITH_OUTCOME = (Launch, ReadPage, Probe, SendNext, ReadIncoming, RestoreNext, LogOutPage, CheckReachable)
