"""Claims on probe agent ids as a replica learns them from the report stream.

An enrolled agent's signed report under a probe agent id attaches the id to
it (its claim); an unsigned report under a claimed id is left out until the
claim lapses: its agent's last signed report was received ``stale_after``
seconds (``agents.stale_threshold``) or more before. The HTTP edge decides so
for the reports it takes (``http._probe_vouching``); every replica decides
again for every report it reads from the stream (``actors.report_feed``), by
the stream's own receive times, so that all of them, and one reading the
stream again after a restart, decide alike.

``StreamClaims.judge`` says what a report does to its id's claim; the actor
does what it says (asks the directory to attach or release, or the topology
whether a claim it has not seen signed lapsed). Pure: the directory, the
report's fields and times are passed in.
"""

from __future__ import annotations

import enum

import attrs

from .deployments import AgentDirectory, AgentStatus


class Verdict(enum.Enum):
    HAND_ON = "hand_on"
    """Merged, the claims as they are."""
    ATTACH = "attach"
    """Merged, its id attached to its signer (``ClaimStep.signer``) first: its publisher vouched for it."""
    RELEASE = "release"
    """Merged, the holder's lapsed claim released first."""
    ASK = "ask"
    """Not known here whether the holder's claim lapsed (no signed report of it read
    since this replica started): ``StreamClaims.settle`` with the topology's word."""
    LEAVE_OUT = "leave_out"
    """Unsigned, under an id an enrolled agent (``ClaimStep.holder``) holds: left out."""


@attrs.frozen
class ClaimStep:
    verdict: Verdict
    signer: str | None = None
    """``ATTACH``: the enrolled agent to attach the id to."""
    holder: str | None = None
    """``ASK``, ``LEAVE_OUT``: the enrolled agent holding the id."""


HAND_ON = ClaimStep(Verdict.HAND_ON)
RELEASE = ClaimStep(Verdict.RELEASE)

class StreamClaims:
    """When each claimed id's last signed report read from the stream was
    received, and what follows for the next report under it."""

    def __init__(self, stale_after: float) -> None:
        self.stale_after = stale_after
        self._signed_at: dict[str, float] = {}
        """Probe agent id -> when its last signed report read here was received (``received_at``)."""

    def __len__(self) -> int:
        return len(self._signed_at)

    def judge(self, directory: AgentDirectory, agent_id: str, *, enrolled: bool, signer: str | None,
              received_at: float) -> ClaimStep:
        """What the report under ``agent_id`` received at ``received_at`` does:
        ``enrolled`` (signed) by ``signer``, attaches the id to it unless it
        holds it already (a retired signer, or one this replica does not know,
        claims nothing: an earlier version's report, handed on as it was);
        unsigned, under an id an active agent holds, is left out unless the
        claim lapsed (or ``ASK``: not known here)."""
        if enrolled:
            record = directory.agents.get(signer) if signer else None
            if record is None or record.status is not AgentStatus.ACTIVE:
                return HAND_ON
            self._note_signed(directory, agent_id, received_at)
            holder = directory.reporting_agent(agent_id)
            return HAND_ON if holder is not None and holder.id == record.id else ClaimStep(Verdict.ATTACH,
                                                                                         signer=record.id)
        holder = directory.reporting_agent(agent_id)
        if holder is None:
            return HAND_ON
        signed = self._signed_at.get(agent_id)
        if signed is None:
            return ClaimStep(Verdict.ASK, holder=holder.id)
        return self.settle(agent_id, holder.id, lapsed=received_at - signed >= self.stale_after)

    def settle(self, agent_id: str, holder: str, *, lapsed: bool) -> ClaimStep:
        """The step for an unsigned report under ``agent_id``, which ``holder``
        holds, once it is known whether its claim ``lapsed``."""
        if lapsed:
            self._signed_at.pop(agent_id, None)
            return RELEASE
        return ClaimStep(Verdict.LEAVE_OUT, holder=holder)

    def _note_signed(self, directory: AgentDirectory, agent_id: str, received_at: float) -> None:
        """Once the table has ``outgrown`` the directory, the ids no longer
        claimed are forgotten: bounded by the agents, whatever ids their reports name."""
        if directory.outgrown(len(self._signed_at)):
            self._signed_at = {k: v for k, v in self._signed_at.items() if directory.reporting_agent(k) is not None}
        self._signed_at[agent_id] = received_at
