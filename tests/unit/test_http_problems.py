"""The problem+json answers of the errors a route may raise that no test service raises."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from chronik.errors import SubjectForgottenError
from chronik.http.problems import PROBLEM, install_problem_handlers


async def test_personal_data_of_a_forgotten_subject_is_a_409_that_does_not_echo_them() -> None:
    app = FastAPI()
    install_problem_handlers(app)

    @app.put("/people/{person}")
    async def rename(person: str) -> None:
        raise SubjectForgottenError(f"person-{person}")

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.put("/people/42")
    assert answer.status_code == 409
    assert answer.headers["content-type"] == PROBLEM
    body = answer.json()
    assert body["title"] == "Forgotten"
    assert "forgotten at their request" in body["detail"]
    assert "person-42" not in answer.text
