"""The ``Answerer`` protocol: what the service, the API and the CLI need from an answer model."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pagelens.answer.types import Answer, AnswerEvent
    from pagelens.retrieve.types import SearchHit


@runtime_checkable
class Answerer(Protocol):
    """Answers a question over retrieved pages, citing exactly the pages it was shown.

    Implementations load lazily; ``load()`` is idempotent and safe to call from several threads, and
    raises ``ModelUnavailableError`` when the model cannot be had.
    """

    @property
    def model_id(self) -> str:
        """Hub id or local directory of the answer model."""
        ...

    def load(self) -> None: ...

    def answer(
        self, question: str, hits: Sequence[SearchHit], k: int | None = None, retrieve_s: float = 0.0
    ) -> Answer:
        """Blocking answer over the best ``k`` hits (default ``Settings.answer_top_k``)."""
        ...

    def stream(
        self, question: str, hits: Sequence[SearchHit], k: int | None = None, retrieve_s: float = 0.0
    ) -> Iterator[AnswerEvent]:
        """``token`` events as text is generated, then one ``done`` event with the full ``Answer`` (whose
        text equals the concatenated token texts and what ``answer()`` returns)."""
        ...
