"""The ECS agent's task-protection endpoint, and how long one protection lasts.

    PUT $ECS_AGENT_URI/task-protection/v1/state
    {"ProtectionEnabled": true, "ExpiresInMinutes": N}

The agent relays each PUT to ECS's UpdateTaskProtection API (throttled per account and
Region); its answers are logged, and a failure is only a False.
"""

from __future__ import annotations

import json
import logging
import math
import urllib.error
import urllib.request

log = logging.getLogger(__name__)

HTTP_TIMEOUT = 5.0


def protection_minutes(visibility_timeout: int, override: int | None = None) -> int:
    """ECS_PROTECTION_MINUTES if set, else the visibility timeout in minutes + 2."""
    if override:
        return max(1, override)
    return max(1, math.ceil(visibility_timeout / 60) + 2)


class AgentClient:
    def __init__(self, agent_uri: str) -> None:
        self.url = agent_uri.rstrip("/") + "/task-protection/v1/state"

    def put(self, enabled: bool, minutes: int | None = None) -> bool:
        body: dict = {"ProtectionEnabled": enabled}
        if enabled and minutes:
            body["ExpiresInMinutes"] = minutes
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                answer = json.loads(response.read() or b"{}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("ECS task protection (%s) failed: %s", enabled, exc)
            return False
        if not isinstance(answer, dict) or answer.get("failure") or answer.get("error"):
            log.warning("ECS task protection (%s) refused: %s", enabled, answer)
            return False
        log.info("ECS task protection %s", "enabled" if enabled else "released")
        return True
