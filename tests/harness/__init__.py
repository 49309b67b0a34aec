"""Test helpers, once: the server started as the Procfile does (`server`), its processes
(`processes`), and the session's life as tests drive it (`session`). Fixtures are in
`tests/conftest.py`; tests import helpers from here, never from conftest."""
from .processes import (
                        alive,
                        browser_tree,
                        browsers_on,
                        descendants,
                        is_gone,
                        kill_all,
                        main_browsers,
                        umask_command,
                        worker_of,
)
from .server import ROOT, TEST_ENV, VENV_BIN, ServerProcess, free_port, procfile_command, start_server, wait_for
from .session import (
                        CLIENT_ID,
                        decode_qr_png,
                        link_phone,
                        linked_server,
                        login_on_disk,
                        profile_of,
                        ready_without_qr,
                        status_changes,
)

__all__ = ["CLIENT_ID", "ROOT", "TEST_ENV", "VENV_BIN", "ServerProcess", "alive", "browser_tree",
           "browsers_on", "decode_qr_png", "descendants", "free_port", "is_gone", "kill_all", "link_phone",
           "linked_server", "login_on_disk", "main_browsers", "procfile_command", "profile_of",
           "ready_without_qr", "start_server", "status_changes", "umask_command", "wait_for", "worker_of"]
