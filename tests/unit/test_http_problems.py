"""The problem+json answers of the errors a route may raise that no test service raises."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from chronik.errors import (
    ConfigurationError,
    DomainError,
    InvalidValueError,
    SubjectForgottenError,
)
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


class RuleWithoutType(DomainError):
    """A broken rule that declares nothing: today's default answer."""


class RuleWithType(DomainError):
    problem_type = "tag:example.com,2026:orders/closed"
    problem_title = "Order closed"
    problem_status = 422


class RuleInheritingType(RuleWithType):
    """A subclass of a declared rule answers as its parent does until it says otherwise."""


async def answer_to(error: Exception) -> httpx.Response:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/orders/{order}/pay")
    async def pay(order: str) -> None:
        raise error

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/orders/7/pay")


class TestBrokenRulesAnswerWithTheProblemTheyDeclare:
    async def test_a_rule_that_declares_nothing_is_a_409_about_blank(self) -> None:
        answer = await answer_to(RuleWithoutType("order 7 is closed"))
        assert answer.status_code == 409
        assert answer.headers["content-type"] == PROBLEM
        assert answer.json() == {
            "type": "about:blank",
            "title": "Not allowed now",
            "status": 409,
            "detail": "order 7 is closed",
            "instance": "/orders/7/pay",
        }

    async def test_a_plain_domain_error_keeps_the_default_too(self) -> None:
        answer = await answer_to(DomainError("no"))
        assert (answer.status_code, answer.json()["type"]) == (409, "about:blank")

    async def test_a_rule_that_declares_its_problem_is_answered_with_it(self) -> None:
        answer = await answer_to(RuleWithType("order 7 is closed"))
        assert answer.status_code == 422
        assert answer.headers["content-type"] == PROBLEM
        assert answer.json() == {
            "type": "tag:example.com,2026:orders/closed",
            "title": "Order closed",
            "status": 422,
            "detail": "order 7 is closed",
            "instance": "/orders/7/pay",
        }

    async def test_a_subclass_inherits_the_problem_it_does_not_redeclare(self) -> None:
        answer = await answer_to(RuleInheritingType("closed"))
        assert (answer.status_code, answer.json()["type"]) == (
            422,
            "tag:example.com,2026:orders/closed",
        )

    async def test_an_invalid_value_stays_a_422_naming_its_field(self) -> None:
        answer = await answer_to(InvalidValueError("Money", "currency", "not ISO 4217"))
        assert answer.status_code == 422
        body = answer.json()
        assert (body["type"], body["title"]) == ("about:blank", "Invalid value")
        assert body["errors"] == [{"loc": ["currency"], "msg": "not ISO 4217"}]


class TestAMalformedDeclarationIsRefusedAsTheClassIsDefined:
    @pytest.mark.parametrize("kind", ["", "lead-closed", "/problems/closed", "tag:a b", 7])
    def test_a_problem_type_that_is_not_an_absolute_uri(self, kind: object) -> None:
        with pytest.raises(ConfigurationError, match=r"Bad\.problem_type must be an absolute URI"):

            class Bad(DomainError):
                problem_type = kind  # type: ignore[assignment]

    @pytest.mark.parametrize("status", [200, 302, 500, 503, True, "409"])
    def test_a_problem_status_that_is_not_4xx(self, status: object) -> None:
        with pytest.raises(ConfigurationError, match=r"Bad\.problem_status must be a 4xx"):

            class Bad(DomainError):
                problem_status = status  # type: ignore[assignment]

    @pytest.mark.parametrize("title", ["", "   ", None])
    def test_an_empty_problem_title(self, title: object) -> None:
        with pytest.raises(ConfigurationError, match=r"Bad\.problem_title must be a non-empty"):

            class Bad(DomainError):
                problem_title = title  # type: ignore[assignment]
