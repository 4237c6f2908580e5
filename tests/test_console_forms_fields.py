"""field_errors: a form's pydantic errors as one message per field, where the form shows it."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError, model_validator

from llmdeck.console.forms import field_errors


class Rating(BaseModel):
    name: str = Field(min_length=1)
    score: float | None = Field(default=None, ge=0, le=1)
    thumbs: Literal["up", "down"] | None = None
    counts: list[Annotated[int, Field(gt=0)]] = Field(default_factory=list)

    @model_validator(mode="after")
    def one_value(self) -> Rating:
        if self.score is not None and self.thumbs is not None:
            raise ValueError("Give a score or a thumb, not both.")
        return self


def _refused(**data) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Rating(**data)
    return caught.value


def test_each_field_gets_its_first_message_in_words() -> None:
    exc = _refused(name="", score="lots", thumbs="sideways", counts=[0, "x"])
    assert field_errors(exc) == {
        "name": "Required.",
        "score": "Enter a number.",
        "thumbs": "Pick one of 'up' or 'down'.",
        "counts": "Must be above zero.",  # the first of the field's (counts.0), not counts.1's
    }


def test_an_error_about_no_field_goes_to_the_default() -> None:
    exc = _refused(name="x", score=0.5, thumbs="up")
    assert field_errors(exc) == {"form": "Give a score or a thumb, not both."}
    assert field_errors(exc, default="score") == {"score": "Give a score or a thumb, not both."}


def test_rename_shows_a_fields_message_beside_another() -> None:
    exc = _refused(name="x", thumbs="sideways")
    assert field_errors(exc, rename={"thumbs": "score"}) == {"score": "Pick one of 'up' or 'down'."}
    # The renamed field's message does not replace one the other field already has.
    both = _refused(name="x", score=2, thumbs="sideways")
    assert field_errors(both, rename={"thumbs": "score"}) == {"score": "Must be at most 1."}
