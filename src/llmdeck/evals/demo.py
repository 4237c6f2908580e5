"""Demo content for prompts and evaluation: a labelled prompt and a tiny dataset (no model
calls, so seeding stays instant)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from llmdeck.evals import datasets
from llmdeck.prompts import service as prompts
from llmdeck.prompts.schemas import Message, PromptVersionCreate

PROMPT = "support-answer"
DATASET = "demo-capitals"
ITEMS = [
    {"input": {"question": "What is the capital of France?"}, "expected": "Paris"},
    {"input": {"question": "What is the capital of Japan?"}, "expected": "Tokyo"},
    {"input": {"question": "What is the capital of Italy?"}, "expected": "Rome"},
]


def seed(session: Session, project) -> None:
    """Add the demo prompt (v1 labelled production) and dataset unless they exist."""
    if prompts.get_by_name(session, project_id=project.id, name=PROMPT) is None:
        prompts.create_version(
            session,
            project_id=project.id,
            name=PROMPT,
            data=PromptVersionCreate(
                messages=[
                    Message(role="system", content="Answer in one word."),
                    Message(role="user", content="{{ question }}"),
                ],
                model="smollm2-135m",
                params={"max_tokens": 8, "temperature": 0},
                commit_message="Demo prompt",
                labels=["production"],
                description="Answers short factual questions; try it with prompt:support-answer",
            ),
            role="admin",
            author="demo",
        )
    if datasets.get_by_name(session, project_id=project.id, name=DATASET) is None:
        datasets.create(
            session,
            project_id=project.id,
            name=DATASET,
            description="Three questions to run an experiment on in seconds.",
            items=ITEMS,
        )
