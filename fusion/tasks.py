"""The fusion tasks, in the official index order, and what the two sources of each are.

One list for the whole project: model task indices, training streams, fusers, datasets and scripts all read it.
"""

from __future__ import annotations

__all__ = ["TASKS", "TASK_INDEX", "SOURCE_ROLES", "task_index"]

#: Task names by official index: infrared-visible, multi-exposure, multi-focus.
TASKS: tuple[str, ...] = ("vif", "mef", "mff")

TASK_INDEX: dict[str, int] = {name: i for i, name in enumerate(TASKS)}

#: ``(source a, source b)`` of each task, as the official code feeds them (medical pairs use ``vif``).
SOURCE_ROLES: dict[str, tuple[str, str]] = {
    "vif": ("visible", "infrared"),
    "mef": ("over-exposed", "under-exposed"),
    "mff": ("far focus", "near focus"),
}


def task_index(task: str | int) -> int:
    """``"vif"|"mef"|"mff"`` or 0/1/2 -> the official task index.

    Raises:
        ValueError: anything else.
    """
    if isinstance(task, int) and not isinstance(task, bool) and 0 <= task < len(TASKS):
        return task
    if isinstance(task, str) and task in TASK_INDEX:
        return TASK_INDEX[task]
    raise ValueError(f"task must be one of {', '.join(TASKS)} (or 0..{len(TASKS) - 1}), got {task!r}")
