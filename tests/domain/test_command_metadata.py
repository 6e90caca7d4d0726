"""A command's ``metadata`` (the seed's ``requires_confirmation``,
``rollback_on_failure``, ``estimated_duration``, ``checkpoint_support``):
decoded strictly with the field's path, kept in the stored document, and read
back with its defaults from documents written before it existed."""

from __future__ import annotations

import json

import pytest

from trioscope.domain.commands import (
    MAX_ESTIMATED_DURATION, Command, CommandMetadata, CommandStatus, CreateCommand, Priority, command_document,
    command_from_document, new_command,
)
from trioscope.wire import InvalidDocument, decode

T0 = 1_760_000_000.0


def make(metadata: CommandMetadata | None = None, *, requires_confirmation: bool = False) -> Command:
    return new_command(command_id="c1", deployment_hash="dep", tenant="acme", type="backup", parameters={},
                       priority=Priority.NORMAL, created_by="alice", now=T0, schedule_at=None, timeout_seconds=60,
                       requires_confirmation=requires_confirmation, sequence=1, metadata=metadata)


def test_metadata_is_decoded_with_its_defaults() -> None:
    create = decode({"type": "backup", "metadata": {"rollback_on_failure": True, "estimated_duration": 60}},
                    CreateCommand)
    assert create.metadata == CommandMetadata(rollback_on_failure=True, estimated_duration=60)
    assert decode({"type": "backup"}, CreateCommand).metadata == CommandMetadata()


@pytest.mark.parametrize(("metadata", "path"), [
    ({"estimated_duration": "60"}, "$.metadata.estimated_duration"),
    ({"estimated_duration": -1}, "$.metadata.estimated_duration"),
    ({"estimated_duration": MAX_ESTIMATED_DURATION + 1}, "$.metadata.estimated_duration"),
    ({"estimated_duration": 2.5}, "$.metadata.estimated_duration"),
    ({"rollback_on_failure": "false"}, "$.metadata.rollback_on_failure"),
    ({"checkpoint_support": None}, "$.metadata.checkpoint_support"),
    ({"requires_confirmation": 1}, "$.metadata.requires_confirmation"),
    ("yes", "$.metadata"),
])
def test_bad_metadata_is_refused_naming_the_field(metadata: object, path: str) -> None:
    with pytest.raises(InvalidDocument) as refused:
        decode({"type": "backup", "metadata": metadata}, CreateCommand)
    assert [p.path for p in refused.value.problems] == [path]


def test_metadata_is_stored_with_the_command_and_read_back() -> None:
    command = make(CommandMetadata(rollback_on_failure=True, estimated_duration=90, checkpoint_support=True))
    assert (command.rollback_on_failure, command.estimated_duration, command.checkpoint_support) == (True, 90, True)
    assert command_from_document(json.loads(json.dumps(command_document(command)))) == command


def test_a_document_stored_before_metadata_reads_back_with_the_defaults() -> None:
    document = command_document(make())
    for field in ("rollback_on_failure", "estimated_duration", "checkpoint_support"):
        del document[field]
    command = command_from_document(document)
    assert (command.rollback_on_failure, command.estimated_duration, command.checkpoint_support) == (False, None, False)


def test_the_metadatas_requires_confirmation_asks_for_one_as_the_bodys_does() -> None:
    assert make(CommandMetadata(requires_confirmation=True)).status is CommandStatus.AWAITING_CONFIRMATION
    assert make(CommandMetadata(requires_confirmation=False), requires_confirmation=True).requires_confirmation
    assert make(CommandMetadata()).status is CommandStatus.QUEUED
