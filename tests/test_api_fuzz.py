"""API fuzzing (issue 13): schemathesis drives every operation of the running service's OpenAPI.

A real uvicorn server over a service that ingested the test frames (so /patches, /alerts and the videos answer
with real bodies) gets cases generated from its own ``/openapi.json``: valid and invalid parameters and bodies,
``POST /upload`` with and without the bearer token, and the parameters naming a patch, an event or an ``/alerts``
cursor also with values the service knows (the push channel, which never ends, is read by its own tests).
Every response must be no 5xx and conform to the schema: a declared
status code, its declared content type and a body that validates against its declared schema. The fast part runs
in ``make test``; the ``reliability`` part (``make test-reliability``) runs thousands of cases and records its
counts in ``build/reliability/api.json``. Nothing here names an event's fields: the schema is the API's own.
"""
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
import schemathesis
import schemathesis.openapi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance
from schemathesis.core.failures import FailureGroup

from serving.api import create_app, encode_cursor
from serving.compose import open_service
from tests.support import ServerThread
from tests.test_serving import config, drop

REPORT = Path(__file__).parents[1] / "build" / "reliability" / "api.json"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
#: Examples per (operation, generation mode, variant): the fast and the full run.
FAST_EXAMPLES, FULL_EXAMPLES = 10, 250
TOKEN = "s3cret"  # tests.test_serving.config's upload token


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_bundle, frames):
    """(the API's URL, {parameter name: values the service knows}): a service that ingested the test frames and
    opened alerts; the values (patch ids, event ids, /alerts cursors) make cases that find something."""
    svc = open_service(config(tmp_path_factory.mktemp("fuzz"), tiny_bundle, upload_max_bytes=256 * 1024))
    drop(frames, svc.dir)
    svc.run_cycle()
    reader = svc.store.reader()
    rows = reader.alert_rows()
    assert rows, "the low-threshold bundle opens alerts"
    known = {"patch_id": sorted(p.patch_id for p in reader.patches()), "event_id": [e.event_id for _, e in rows],
             "cursor": [encode_cursor(seq) for seq, _ in rows]}
    with ServerThread(create_app(svc)) as server:
        yield server.url, known


class Tally:
    """Cases sent, responses by status class and failing a check, and the distinct failures found: {(check,
    operation): the first one's message}."""

    def __init__(self):
        self.cases = self.failed = 0
        self.statuses: Counter[str] = Counter()
        self.failures: dict[tuple[str, str], str] = {}

    def run(self, case, url: str) -> None:
        """Send one case and run the checks on its response; a failure is recorded, not raised, so that one run
        finds every failing operation."""
        response = case.call(base_url=url, timeout=60)
        self.cases += 1
        self.statuses[f"{response.status_code // 100}xx"] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:  # one or more checks failed
            self.failed += 1
            for failure in group.exceptions:
                key = (failure.title, f"{case.method} {case.path}")
                self.failures.setdefault(key, f"{response.status_code}: {failure.message[:1500]}\n{case.as_curl_command()}")

    @property
    def server_errors(self) -> int:
        return self.statuses["5xx"]

    def record(self) -> None:
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps({"api_cases": self.cases, "api_5xx": self.server_errors,
                                      "api_nonconforming": self.failed,
                                      **{f"api_{k}": v for k, v in sorted(self.statuses.items()) if k != "5xx"}}, indent=1))


def served_schema(url: str):
    """The service's own OpenAPI, from ``/openapi.json``."""
    return schemathesis.openapi.from_dict(httpx.get(f"{url}/openapi.json").json())


def strategies(url: str, known: dict[str, list[str]]):
    """Strategies of cases for every operation of the served OpenAPI, in each generation mode; the upload without
    the token and with it; and, for each parameter of :func:`served`'s known values, with one of those."""
    for result in served_schema(url).get_all_operations():
        operation = result.ok()
        if "text/event-stream" in operation.definition.raw["responses"].get("200", {}).get("content", {}):
            continue  # a push channel never ends: tests/test_live_pages.py reads it as a client does
        variants = [{}]
        if operation.definition.raw.get("security"):  # without the token, and with it
            variants = [{}, {"headers": {"Authorization": f"Bearer {TOKEN}"}}]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for kwargs in variants:
                yield operation.as_strategy(generation_mode=mode, **kwargs)
        for parameter in operation.definition.raw.get("parameters", []):
            if parameter["name"] in known and parameter["in"] in ("path", "query"):
                where = "path_parameters" if parameter["in"] == "path" else "query"
                yield st.sampled_from(known[parameter["name"]]).flatmap(
                    lambda value, op=operation, where=where, name=parameter["name"]:
                    op.as_strategy(**{where: {name: value}}))


def fuzz(url: str, known: dict[str, list[str]], examples: int) -> Tally:
    """Run ``examples`` cases (at most: an operation without parameters has fewer distinct ones) of each strategy."""
    tally = Tally()
    for strategy in strategies(url, known):
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def property_(case):
            tally.run(case, url)

        try:
            property_()
        except Unsatisfiable:  # nothing to generate: e.g. no invalid request to an operation without parameters
            pass
    return tally


def report(tally: Tally) -> str:
    return "\n\n".join(f"{check} on {op}: {message}" for (check, op), message in tally.failures.items())


def test_fuzzed_requests_get_declared_responses_and_no_server_error(served):
    url, known = served
    tally = fuzz(url, known, FAST_EXAMPLES)
    assert tally.cases >= 60 and tally.statuses["2xx"] and tally.statuses["4xx"], tally.statuses
    assert tally.server_errors == 0 and not tally.failures, report(tally)
    assert httpx.get(f"{url}/health").status_code == 200


@pytest.mark.reliability
def test_many_fuzzed_requests_get_declared_responses_and_no_server_error(served):
    url, known = served
    tally = fuzz(url, known, FULL_EXAMPLES)
    tally.record()
    assert tally.cases >= 1000, tally.statuses
    assert tally.server_errors == 0 and not tally.failures, report(tally)


def test_declared_date_times_are_rfc3339(served):
    """Every time in a response is the RFC 3339 date-time the OpenAPI declares, zone and all (the fuzzing checks it
    too; here on the responses that hold the most times)."""
    url, known = served
    schema = served_schema(url)
    for path, params in (("/ready", {}), ("/patches", {}), ("/alerts", {}), ("/patches/{patch_id}", {"patch_id": known["patch_id"][0]})):
        case = schema[path]["GET"].Case(path_parameters=params)
        case.validate_response(case.call(base_url=url), checks=[response_schema_conformance])
