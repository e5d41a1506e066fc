"""The daemon in this process, on one minimal integration, for integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from syncd.config.reach import Reach
from syncd.service.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal, write_files

# The endpoint policy of a daemon sending to the HipChat test server, whose
# loopback port changes per test: any endpoint, plain http included.
TEST_REACH = Reach(any_endpoint=True, allow_http=True)


@contextmanager
def running_daemon(tmp_path: Path, **config: Any) -> Iterator[Daemon]:
    """Started on ``config/a.yaml`` (needs ``HIPCHAT_TOKEN`` set), shut down after;
    ``TEST_REACH`` unless ``config`` names a ``reach``."""
    config.setdefault("reach", TEST_REACH)
    config_dir = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    daemon = Daemon(DaemonConfig(config_dir, tmp_path / "state", port=0, **config))
    try:
        assert daemon.start().ok
        yield daemon
    finally:
        daemon.shutdown()
