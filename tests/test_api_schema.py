"""Schemathesis over the API's own OpenAPI schema: generated requests never get a 5xx, and responses
conform to the schema. Bounded: a few examples per operation, derandomized."""

from __future__ import annotations

import pytest
import schemathesis
from api_helpers import upload, wait_job
from conftest import REAL_PDFS
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
)

from pagelens.server import create_app

pytestmark = pytest.mark.slow

ADMIN_KEY = "schema-admin-key-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
# What we hold the API to: no 5xx, responses (bodies, content types) as documented, and auth enforced.
# (Positive-data acceptance is not checked: uploads are validated by content, which a schema cannot say.)
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance, ignored_auth]


@pytest.fixture(scope="module")
def api_app(tiny_models, tmp_path_factory):
    from pagelens.core.settings import Settings

    settings_ = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=tmp_path_factory.mktemp("schema-data"),
        retriever_model=str(tiny_models["retriever"]),
        answer_model=str(tiny_models["answerer"]),
        page_longest_edge=512,
        answer_longest_edge=512,
        max_new_tokens=4,
        device="cpu",
        api_keys=f"{ADMIN_KEY}:admin",
    )
    app = create_app(settings_)
    with TestClient(app) as client:  # starts the worker; index one document so routes have data
        assert client.post("/v1/collections", json={"name": "inv"}, headers=AUTH).status_code == 201
        accepted = upload(client, "inv", [REAL_PDFS / "inv_aws_invoice_en.pdf"], headers=AUTH)
        job = wait_job(client, accepted.json()["id"], headers=AUTH)
        assert job["status"] == "done"
        app.state.test_doc_id = job["documents"][0]["doc_id"]
        yield app


def test_api_conforms_to_its_schema_and_never_fails_with_5xx(api_app) -> None:
    """Every operation of /openapi.json, a bounded number of generated requests each."""
    from hypothesis import given

    schema = schemathesis.openapi.from_asgi("/openapi.json", api_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    seen: dict[str, set[int]] = {}

    def pin_to_real_data(case):  # half the cases hit the real collection/document, not a random 404
        params = case.path_parameters or {}
        if "collection" in params:
            params["collection"] = "inv"
        if "doc_id" in params:
            params["doc_id"] = api_app.state.test_doc_id
        if "page_no" in params:
            params["page_no"] = 1
        return case

    for operation in operations:
        strategy = operation.as_strategy()
        if operation.method.upper() != "DELETE":
            strategy = st.one_of(strategy, strategy.map(pin_to_real_data))

        @given(case=strategy)
        @settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck),
                  database=None)
        def check(case) -> None:
            response = case.call(headers=AUTH)
            label = f"{case.method} {case.formatted_path}"
            seen.setdefault(f"{case.operation.method.upper()} {case.operation.path}", set()).add(response.status_code)
            assert response.status_code < 500, f"{label} -> {response.status_code}: {response.text[:300]}"
            content_type = " ".join(response.headers.get("content-type", []) or response.headers.get("Content-Type", []))
            if response.status_code >= 400 and "application/json" in content_type:
                body = response.json()
                assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), (label, body)
            case.validate_response(response, checks=CHECKS)

        check()
    assert len(seen) == len(operations)
    print({op: sorted(codes) for op, codes in seen.items()})
