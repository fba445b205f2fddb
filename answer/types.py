"""What the answer stage hands back: ``Answer`` (with ``Citation`` and ``Timings``) and, when streaming,
``AnswerEvent`` (``token`` events, then one ``done`` event carrying the full ``Answer``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Citation:
    """One page shown to the answer model, in the rank order it was shown.

    score: the retrieval score that ranked the page, carried over unchanged from the ``SearchHit``;
      ``score_kind`` names it (``maxsim`` visual, ``bm25`` text, ``rrf`` / ``dbsf`` hybrid: a fused rank
      value, not a similarity).
    visual_score / text_score: the page's MaxSim / BM25 where the search computed them (hybrid: both).
    image_path: the stored page image on local disk (servers drop it before answering clients).
    regions: where on the page the search matched, carried over from ``SearchHit.regions`` (dicts
      ``{"x0", "y0", "x1", "y1", "source", "score"}`` in page fractions, ``"text"`` on text regions).
    """

    doc_id: str
    doc_name: str
    page_no: int
    score: float
    image_path: str | None
    score_kind: str = "maxsim"
    visual_score: float | None = None
    text_score: float | None = None
    regions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Timings:
    """Wall-clock seconds of one answer.

    retrieve_s: search time, as passed in by the caller (0.0 when unknown).
    preprocess_s: loading the page images + processor (resize, tiling, tokenisation).
    prefill_s: from the ``generate()`` call to the first generated token (time to first token of the
      model; the user-visible time to first token is ``preprocess_s + prefill_s``).
    decode_s: from the first generated token to the end of generation.
    total_s: retrieve_s + everything the answerer did, end to end.
    """

    retrieve_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    total_s: float = 0.0
    preprocess_s: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {key: round(value, 4) for key, value in asdict(self).items()}


NO_RELEVANT_PAGES_TEXT = (
    "No relevant pages: the collection holds nothing relevant to this question, so no answer was generated."
)


@dataclass
class Answer:
    """A generated answer and the pages it was generated from.

    citations: exactly the pages shown to the model, in rank order (never inferred from the text).
    prompt_tokens: length of the prompt ``input_ids`` (text + image tokens).
    image_tokens: ``<image>`` tokens among them (``image_seq_len`` = 64 per 512-px tile for SmolVLM).
    generated_tokens: new tokens produced (including a final end-of-utterance token, if any).
    no_relevant_pages: True when no hit passed the relevance gate (``relevance_threshold`` on the visual
      MaxSim, ``relevance_threshold_text`` on BM25; never the fused hybrid score) or there were no hits;
      then ``text`` says so, ``citations`` is empty and nothing was generated.
    """

    text: str
    citations: list[Citation]
    timings: Timings
    prompt_tokens: int = 0
    image_tokens: int = 0
    generated_tokens: int = 0
    model_id: str = ""
    no_relevant_pages: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``timings`` rounded to 0.1 ms."""
        return {
            "text": self.text,
            "citations": [c.to_dict() for c in self.citations],
            "timings": self.timings.to_dict(),
            "prompt_tokens": self.prompt_tokens,
            "image_tokens": self.image_tokens,
            "generated_tokens": self.generated_tokens,
            "model_id": self.model_id,
            "no_relevant_pages": self.no_relevant_pages,
        }


@dataclass
class AnswerEvent:
    """One streaming event: ``kind="token"`` with a piece of text (concatenated, the pieces are the final
    ``Answer.text``), or ``kind="done"`` (last event, ``text`` empty) with the complete ``answer``."""

    kind: Literal["token", "done"]
    text: str = ""
    answer: Answer | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.answer is not None:
            data["answer"] = self.answer.to_dict()
        return data
