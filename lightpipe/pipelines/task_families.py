"""Which model families serve which task, derived from the family registry (``families.py``)
and each family's ``HEADS``: no hand-kept list. ``lightpipe tasks --families`` prints it.

A family serves a task when ``pipeline(task, model=<a checkpoint of that family>)`` loads one
of the task's heads from it and the family's inputs fit the task's:
- the family's modality fits the task's kind (an image task takes image families; a
  multimodal task also takes image families, e.g. VisionEncoderDecoder for image-to-text);
- the head serves that task: the family's own hint for the head (CLIP's AutoModel classifies
  images zero-shot; a VLM's Vision2Seq head answers image-text-to-text), else the head's task
  (a bare AutoModel: feature-extraction, or image-feature-extraction for image families), or
  a task sharing that head with the same kind (a sequence classifier also serves
  zero-shot-classification; a seq2seq LM serves summarization and translation). A head that
  names no task of its own (AutoModelForTextToWaveform) serves the tasks that list it.

Building the table imports every model module (and torch): a few seconds.
"""

from __future__ import annotations

import logging

from . import _MODALITY_TASK, _TASK_OF_HEAD, SUPPORTED_TASKS, Task

logger = logging.getLogger("lightpipe")

# Which family modalities each task kind takes.
_KIND_MODALITIES = {"text": ("text",), "image": ("image",), "audio": ("audio",),
                    "video": ("video",), "multimodal": ("multimodal", "image")}


def head_task(model_type: str | None, head: str) -> str | None:
    """The task a family's head serves: the family's hint for it, else the head's own task
    (a bare AutoModel of an image family: image-feature-extraction); None when the head names
    no task."""
    from ..families import FAMILIES, modality

    hints = FAMILIES[model_type].tasks if model_type in FAMILIES else {}
    if head in hints:  # the family serves a task more specifically than its head says
        return hints[head]
    task = _TASK_OF_HEAD.get(head)
    return _MODALITY_TASK.get((modality(model_type), task), task) if task else None


def task_families() -> dict[str, list[str]]:
    """{task name: [model_type, ...]} for every task (empty for tasks not built yet), in the
    registry's order. A family whose model module fails to import is left out, with a warning."""
    from ..families import FAMILIES
    from ..models import heads_for

    heads: dict[str, set[str]] = {}
    for model_type in FAMILIES:
        try:
            heads[model_type] = set(heads_for(model_type))
        except Exception as error:  # a module being written, or an optional dependency missing
            logger.warning("Model type %r left out of the task table: %s: %s", model_type,
                           type(error).__name__, error)
    return {task.name: [model_type for model_type, names in heads.items()
                        if task.available and serves(model_type, names, task)]
            for task in SUPPORTED_TASKS.values()}


def serves(model_type: str, heads: set[str], task: Task) -> bool:
    """Whether a family with these ``heads`` serves ``task`` (see the module docstring)."""
    from ..families import FAMILIES

    family = FAMILIES[model_type]
    if family.modality not in _KIND_MODALITIES[task.kind]:
        return False
    for head in task.heads:
        if head not in heads:
            continue
        served = head_task(model_type, head)
        if served is None or served == task.name:
            return True
        if (head not in family.tasks and head != "AutoModel" and served in SUPPORTED_TASKS
                and SUPPORTED_TASKS[served].kind == task.kind):  # a task sharing the head
            return True
    return False
