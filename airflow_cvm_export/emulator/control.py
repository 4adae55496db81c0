"""The control API under ``/_emulator/``: documents, reset, progression, COS's clock, faults and user mistakes.

Thin like the service handlers: parse JSON, call the :class:`~airflow_cvm_export.emulator.Emulator`,
answer JSON. Bad input gets 400 with an ``error`` naming the field and what is allowed.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from airflow_cvm_export.emulator.cvm.responses import json_response
from airflow_cvm_export.emulator.errors import CosError
from airflow_cvm_export.emulator.faults import FaultRule
from airflow_cvm_export.emulator.httpserver import Request, Response
from airflow_cvm_export.emulator.urls import control_route

if TYPE_CHECKING:
    from airflow_cvm_export.emulator.cos.models import CosObject
    from airflow_cvm_export.emulator.faults import FaultRules


class Controlled(Protocol):
    """What the control API calls on the :class:`~airflow_cvm_export.emulator.Emulator` (which
    imports this module, so this one names the emulator's controls instead of importing it)."""

    progression: str
    cos_clock_offset: float
    rules: FaultRules

    def catalog(self) -> dict[str, list[dict[str, Any]]]: ...
    def state(self) -> dict[str, Any]: ...
    def reset(self, progression: str | None = None) -> None: ...
    def clear_faults(self) -> None: ...
    def advance(self, task_id: int | None = None, objects: int = 1) -> list[dict[str, Any]]: ...
    def finish(self, task_id: int | None = None, *, failed: bool = False) -> list[dict[str, Any]]: ...
    def delete_image(self, image_id: str) -> None: ...
    def put_object(self, bucket: str, key: str, body: bytes = b"") -> CosObject: ...
    def delete_object(self, bucket: str, key: str) -> bool: ...


class ControlError(Exception):
    """A control request that cannot be served: HTTP ``status`` and a message naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _body(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    try:
        document = json.loads(request.body)
    except ValueError:
        raise ControlError(400, "the body must be JSON") from None
    if not isinstance(document, dict):
        raise ControlError(400, "the body must be a JSON object")
    return document


def _task_id(document: dict[str, Any]) -> int | None:
    task_id = document.get("TaskId")
    if task_id is not None and (not isinstance(task_id, int) or isinstance(task_id, bool)):
        raise ControlError(400, f"TaskId must be an integer or absent (every running export), got {task_id!r}")
    return task_id


class ControlResponse:
    """Answers ``/_emulator/*`` requests (no credentials, never faulted, not counted).

    :param emulator: the emulator controlled.
    """

    def __init__(self, emulator: Controlled) -> None:
        self.emulator = emulator

    def handle(self, request: Request) -> Response:
        """Route, call, serialize; errors are JSON ``{"error": ...}`` with status 400 or 404."""
        name, arguments, known = control_route(request)
        if name is None:
            status = 405 if known else 404
            return json_response({"error": f"no such emulator endpoint: {request.method} {request.path}"}, status)
        try:
            return json_response(getattr(self, name)(request, **arguments))
        except ControlError as error:
            return json_response({"error": str(error)}, error.status)
        except ValueError as error:
            return json_response({"error": str(error)}, 400)
        except KeyError as error:
            return json_response({"error": error.args[0]}, 404)
        except CosError as error:
            return json_response({"error": error.message}, error.status)

    def catalog(self, request: Request) -> Any:
        """``GET /_emulator/catalog``."""
        return self.emulator.catalog()

    def state(self, request: Request) -> Any:
        """``GET /_emulator/state``."""
        return self.emulator.state()

    def reset(self, request: Request) -> Any:
        """``POST /_emulator/reset`` ``{"progression"?}``: back to a fresh emulator; returns the state."""
        self.emulator.reset(progression=_body(request).get("progression"))
        return self.emulator.state()

    def progression(self, request: Request) -> Any:
        """``POST /_emulator/progression`` ``{"progression": "time" | "manual" | "immediate"}``."""
        document = _body(request)
        if "progression" not in document:
            raise ControlError(400, "progression is required: time, manual or immediate")
        self.emulator.progression = document["progression"]
        return {"progression": self.emulator.progression}

    def clock(self, request: Request) -> Any:
        """``POST /_emulator/clock`` ``{"cos_clock_offset": seconds}``: COS's clock that far off the true time."""
        document = _body(request)
        if "cos_clock_offset" not in document:
            raise ControlError(400, "cos_clock_offset is required: seconds COS's clock is ahead (negative: behind)")
        self.emulator.cos_clock_offset = document["cos_clock_offset"]
        return {"cos_clock_offset": self.emulator.cos_clock_offset}

    def faults(self, request: Request) -> Any:
        """``GET /_emulator/faults``: the rules in force."""
        return {"rules": self.emulator.rules.to_json()}

    def add_fault(self, request: Request) -> Any:
        """``POST /_emulator/faults`` with one rule or ``{"rules": [...]}``; returns the rules added."""
        document = _body(request)
        rules = document["rules"] if set(document) == {"rules"} else [document]
        if not isinstance(rules, list):
            raise ControlError(400, "rules must be a list of fault rules")
        checked = [FaultRule.from_json(rule) for rule in rules]  # all or none
        return {"rules": [self.emulator.rules.add(rule).to_json() for rule in checked]}

    def clear_faults(self, request: Request) -> Any:
        """``DELETE /_emulator/faults``: remove every rule."""
        self.emulator.clear_faults()
        return {"rules": []}

    def advance(self, request: Request) -> Any:
        """``POST /_emulator/exports/advance`` ``{"TaskId"?, "objects"?}``: the next objects appear."""
        document = _body(request)
        objects = document.get("objects", 1)
        if not isinstance(objects, int) or isinstance(objects, bool) or objects < 1:
            raise ControlError(400, f"objects must be a positive integer, got {objects!r}")
        return {"exports": self.emulator.advance(_task_id(document), objects=objects)}

    def finish(self, request: Request) -> Any:
        """``POST /_emulator/exports/finish`` ``{"TaskId"?, "failed"?}``: finish exports now."""
        document = _body(request)
        failed = document.get("failed", False)
        if not isinstance(failed, bool):
            raise ControlError(400, f"failed must be true or false, got {failed!r}")
        return {"exports": self.emulator.finish(_task_id(document), failed=failed)}

    def delete_image(self, request: Request, image_id: str) -> Any:
        """``DELETE /_emulator/images/<ImageId>``: the image is gone (a running export of it fails)."""
        self.emulator.delete_image(image_id)
        return {"deleted": image_id}

    def put_object(self, request: Request, bucket: str, key: str) -> Any:
        """``PUT /_emulator/objects/<bucket>/<key>``: an object with the request body appears."""
        obj = self.emulator.put_object(bucket, key, request.body)
        return {"BucketName": bucket, "Key": obj.key, "ETag": obj.etag, "Size": len(obj.body)}

    def delete_object(self, request: Request, bucket: str, key: str) -> Any:
        """``DELETE /_emulator/objects/<bucket>/<key>``: the object is gone."""
        return {"deleted": self.emulator.delete_object(bucket, key)}
