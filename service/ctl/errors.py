"""What can end a command, each with its exit code and a one-line message."""

from __future__ import annotations

from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class CtlError(Exception):
    """A failure to report as ``error: <message>`` (plus ``details`` lines) and ``exit_code``."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(one_line(message))
        self.details = details or []


class UsageError(CtlError):
    """The command line itself is wrong (or lacks something only the user can give)."""

    exit_code = EXIT_USAGE


class ApiError(CtlError):
    """An RFC 9457 problem document (or any non-2xx answer) from the gateway."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.code = str(problem.get("code") or "")
        self.reason = str(problem.get("reason") or "")
        detail = str(problem.get("detail") or problem.get("title") or f"the gateway answered HTTP {status}")
        labels = [str(status), self.code]
        if self.reason and self.reason != self.code:
            labels.append(self.reason)
        suffix = " ".join(label for label in labels if label)
        request_id = str(problem.get("requestId") or "")
        if request_id:
            suffix += f"; request {request_id}"
        super().__init__(f"{detail} ({suffix})", _violations(problem))


def _violations(problem: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for item in problem.get("fieldViolations") or []:
        if isinstance(item, dict):
            lines.append(one_line(f"{item.get('field', '')}: {item.get('description', '')}"))
    for item in problem.get("preconditionViolations") or []:
        if isinstance(item, dict):
            subject = f" {item['subject']}" if item.get("subject") else ""
            lines.append(one_line(f"{item.get('type', '')}{subject}: {item.get('description', '')}"))
    return lines
