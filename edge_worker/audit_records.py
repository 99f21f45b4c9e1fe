"""The worker's side of the audit contract: what it computed for an answer, sealed with its own key.

A gateway asks for a record with every request (``routing.audit_record``);
the runtime hands over the prompt ids it read and what each choice sampled,
and this seals them. A worker with no key (one the operator configured on a
gateway, not registered) sends them unsigned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from routing.audit_record import AuditRecord, ChoiceIds, seal
from routing.identity import Identity


@dataclass(frozen=True, slots=True)
class RecordSealer:
    worker_id: str
    identity: Identity | None

    def seal(self, request_id: str, model: str, prompt_ids: Sequence[int], choices: Sequence[ChoiceIds]) -> str:
        record = AuditRecord(
            request_id=request_id,
            worker_id=self.worker_id,
            model=model,
            prompt=tuple(prompt_ids),
            choices=tuple(choices),
        )
        return seal(record, self.identity.sign if self.identity is not None else None)


RECORDS = web.AppKey("records", RecordSealer)
