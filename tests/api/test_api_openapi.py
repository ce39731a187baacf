"""The OpenAPI description matches the code (issue 6, item 12): schemathesis runs every check
against a live server on a free port (real HTTP, the real database) with a valid token, over
whatever operations /openapi.json describes, and must find nothing. Examples per operation:
PAYCELL_TEST_SCHEMATHESIS_EXAMPLES (default 50, about 10 s); the seed is fixed so that a failure
reproduces. What schemathesis may treat as an acceptable refusal is in schemathesis.toml."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from paycell.http import openapi
from tests.api.conftest import parked
from tests.api.support import served
from tests.helpers import assert_ledger_clean, auth_header, new_user

EXAMPLES_PER_OPERATION = int(os.environ.get("PAYCELL_TEST_SCHEMATHESIS_EXAMPLES", "50"))
RUN_TIMEOUT_S = 300
SEED = 6
CONFIG = Path(__file__).with_name("schemathesis.toml")


async def test_the_api_matches_its_openapi_description(migrated, pool, tmp_path):
    settings = parked(migrated)
    user = new_user("schemathesis")
    schemathesis = str(Path(sys.executable).with_name("schemathesis"))
    async with served(settings) as port:
        proc = await asyncio.create_subprocess_exec(
            schemathesis, "--config-file", str(CONFIG), "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", "all",
            "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED), "--workers", "1",
            "--header", f"Authorization: {auth_header(settings, user)['Authorization']}",
            "--report", "junit", "--report-dir", str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
            env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"})
        try:
            async with asyncio.timeout(RUN_TIMEOUT_S):
                output, _ = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, output.decode(errors="replace")[-20_000:]
    await assert_ledger_clean(pool)


def test_every_operation_describes_the_answers_any_request_may_get():
    """What schemathesis cannot provoke on its own (a saturated process, a store down, a slow
    body) must still be described: every secured operation may answer 401 and 503 (with
    Retry-After), and every operation that reads a body 400, 408, 413 and 415."""
    document = openapi.document()
    operations = [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]
    assert operations
    for path, method, op in operations:
        responses = op["responses"]
        if op.get("security", document["security"]):
            assert {"401", "503"} <= set(responses), (method, path)
            assert "Retry-After" in responses["503"]["headers"], (method, path)
            assert "WWW-Authenticate" in responses["401"]["headers"], (method, path)
        if "requestBody" in op:
            assert {"400", "408", "413", "415"} <= set(responses), (method, path)
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"}, (method, path, status)
