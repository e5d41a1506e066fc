"""The daemon in this process, on one minimal integration, for integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from syncd.service.daemon import Daemon, DaemonConfig
from tests.support.configs import minimal, write_files


@contextmanager
def running_daemon(tmp_path: Path, **config: Any) -> Iterator[Daemon]:
    """Started on ``config/a.yaml`` (needs ``HIPCHAT_TOKEN`` set), shut down after."""
    config_dir = write_files(tmp_path / "config", ("a.yaml", minimal("a")))
    daemon = Daemon(DaemonConfig(config_dir, tmp_path / "state", port=0, **config))
    try:
        assert daemon.start().ok
        yield daemon
    finally:
        daemon.shutdown()
