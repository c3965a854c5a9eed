"""What every ``pagemig`` subcommand shares: the group's options and one plugin host.

Its own module, below the command modules, so that they read the group's state
without importing the group (which imports them to attach them).
"""

from __future__ import annotations

from pagemig.plugins import PluginHost, get_plugin_host


class CliState:
    """What the group's options decided, shared with the subcommands."""

    def __init__(self, blocked: tuple[str, ...], log_format: str, log_level: str) -> None:
        self.blocked = blocked
        self.log_format = log_format
        self.log_level = log_level
        self._host: PluginHost | None = None

    @property
    def host(self) -> PluginHost:
        if self._host is None:
            self._host = shared_host(self.blocked)
        return self._host


_HOSTS: dict[tuple[str, ...], PluginHost] = {}


def shared_host(blocked: tuple[str, ...]) -> PluginHost:
    """One plugin host per process and block list, so a broken plugin is reported once."""
    key = tuple(sorted(blocked))
    if key not in _HOSTS:
        _HOSTS[key] = get_plugin_host(blocked=key)
    return _HOSTS[key]
