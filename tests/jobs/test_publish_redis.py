"""Publishing marts to a real Redis server: layout, atomic swap, TTL, failures, secrets."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client

from duckherd.summary import PublishedTarget, encode
from duckherd_jobs.publish import run_publish
from duckherd_jobs.runner import run_stage
from tests.jobs.test_publish_support import (
    REDIS_ENV,
    build_mart,
    context,
    customers_select,
    pipeline,
    redis_entry,
)
from tests.services import RedisServer, free_port, redis_server

pytestmark = pytest.mark.services


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"test:{request.node.name}"


def keys_under(client: redis_client.Redis, prefix: str) -> set[str]:
    return set(client.scan_iter(match=f"{prefix}:*", count=1000))


def meta(client: redis_client.Redis, prefix: str) -> dict[str, Any]:
    document = client.get(f"{prefix}:meta")
    assert document is not None, "no meta key"
    return dict(json.loads(document))


def test_rows_become_json_documents_in_one_hash_with_meta(
    tmp_path: Path, redis: RedisServer, client: redis_client.Redis, prefix: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(
        warehouse,
        """
        SELECT * FROM (VALUES
            (1, 'Adä 日本', 12.50::DECIMAL(10, 2), TIMESTAMP '2024-05-01 10:00:00', 'nan'::DOUBLE,
             '\\xAB'::BLOB, [1, 2], NULL::VARCHAR),
            (2, '', 0.00::DECIMAL(10, 2), NULL, 2.5::DOUBLE, NULL, [], 'x')
        ) t(id, name, revenue, seen_at, score, raw, tags, note)
        """,
    )
    spec = pipeline([redis_entry(keyPrefix=prefix)])

    summary = run_publish(context(warehouse, spec, {REDIS_ENV: redis.url()}, run_id="run-7"))

    assert summary.ok, summary.error
    assert summary.published == [
        PublishedTarget(table="marts.customers", target=f"redis:{prefix}", rows=2)
    ]
    assert json.loads(client.hget(f"{prefix}:rows", "1") or "") == {
        "id": 1, "name": "Adä 日本", "revenue": 12.5, "seen_at": "2024-05-01 10:00:00",
        "score": None, "raw": "qw==", "tags": [1, 2], "note": None,
    }  # fmt: skip
    assert json.loads(client.hget(f"{prefix}:rows", "2") or "")["name"] == ""
    published = meta(client, prefix)
    assert published["rows"] == 2
    assert published["runId"] == "run-7"
    assert published["table"] == "marts.customers"
    assert published["pipeline"] == "analytics/shop"
    assert published["keyColumns"] == ["id"]
    assert published["columns"][2] == {"name": "revenue", "type": "DECIMAL(10,2)"}
    assert published["rowsKey"] == f"{prefix}:rows"
    assert keys_under(client, prefix) == {f"{prefix}:rows", f"{prefix}:meta"}
    assert client.ttl(f"{prefix}:rows") == -1, "without ttlSeconds nothing expires"


def test_default_prefix_names_namespace_pipeline_and_table(
    tmp_path: Path, redis: RedisServer, client: redis_client.Redis
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(3, 1))
    spec = pipeline([redis_entry()], name="default-prefix")

    assert run_publish(context(warehouse, spec, {REDIS_ENV: redis.url()})).ok

    assert client.hlen("duckherd:analytics:default-prefix:marts.customers:rows") == 3


def test_composite_key_joins_key_columns_with_colons(
    tmp_path: Path, redis: RedisServer, client: redis_client.Redis, prefix: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(
        warehouse,
        "SELECT * FROM (VALUES ('de', 1, 10), ('de', 2, 20), ('fr', 1, 30), ('ñü', 1, 40)) "
        "t(country, id, n)",
    )
    spec = pipeline([redis_entry(keyPrefix=prefix, keyColumns=["country", "id"])])

    assert run_publish(context(warehouse, spec, {REDIS_ENV: redis.url()})).ok

    assert sorted(client.hkeys(f"{prefix}:rows")) == ["de:1", "de:2", "fr:1", "ñü:1"]
    assert json.loads(client.hget(f"{prefix}:rows", "ñü:1") or "")["n"] == 40
    assert json.loads(client.hget(f"{prefix}:rows", "fr:1") or "")["n"] == 30


@pytest.mark.parametrize(
    ("select", "key_columns", "message"),
    [
        ("SELECT * FROM (VALUES (1, 'a'), (1, 'b')) t(id, v)", [], "not unique"),
        ("SELECT * FROM (VALUES (1, 'a'), (NULL, 'b')) t(id, v)", [], "NULL in 1 rows"),
        ("SELECT 1 AS id", ["nope"], "publish[0].redis.keyColumns: nope not in marts.customers"),
    ],
)
def test_bad_keys_fail_naming_the_field_and_keep_the_published_version(
    tmp_path: Path,
    redis: RedisServer,
    client: redis_client.Redis,
    prefix: str,
    select: str,
    key_columns: list[str],
    message: str,
) -> None:
    warehouse = tmp_path / "w.duckdb"
    env = {REDIS_ENV: redis.url()}
    build_mart(warehouse, customers_select(5, 1))
    assert run_publish(context(warehouse, pipeline([redis_entry(keyPrefix=prefix)]), env)).ok
    before = meta(client, prefix)
    build_mart(warehouse, select)
    spec = pipeline([redis_entry(keyPrefix=prefix, keyColumns=key_columns)])

    summary = run_stage("publish", context(warehouse, spec, env, run_id="run-2"))

    assert not summary.ok
    assert message in (summary.error or "")
    assert meta(client, prefix) == before
    assert client.hlen(f"{prefix}:rows") == 5


def test_ttl_covers_rows_and_meta_and_each_publish_renews_it(
    tmp_path: Path, redis: RedisServer, client: redis_client.Redis, prefix: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(10, 1))
    env = {REDIS_ENV: redis.url()}
    assert run_publish(context(warehouse, pipeline([redis_entry(keyPrefix=prefix)]), env)).ok
    assert client.ttl(f"{prefix}:rows") == -1

    spec = pipeline([redis_entry(keyPrefix=prefix, ttlSeconds=3600)])
    assert run_publish(context(warehouse, spec, env)).ok

    assert 3590 < client.ttl(f"{prefix}:rows") <= 3600
    assert 3590 < client.ttl(f"{prefix}:meta") <= 3600
    assert run_publish(context(warehouse, pipeline([redis_entry(keyPrefix=prefix)]), env)).ok
    assert client.ttl(f"{prefix}:rows") == -1
    assert client.ttl(f"{prefix}:meta") == -1


def test_rerun_is_idempotent_and_leaves_no_old_versions(
    tmp_path: Path, redis: RedisServer, client: redis_client.Redis, prefix: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(2500, 1))
    spec = pipeline([redis_entry(keyPrefix=prefix)])
    ctx = context(warehouse, spec, {REDIS_ENV: redis.url()}, run_id="run-same")

    first = run_publish(ctx)
    rows_after_first = client.hgetall(f"{prefix}:rows")
    second = run_publish(ctx)

    assert first.ok and second.ok
    assert first.published == second.published
    assert client.hgetall(f"{prefix}:rows") == rows_after_first
    assert len(rows_after_first) == 2500
    assert keys_under(client, prefix) == {f"{prefix}:rows", f"{prefix}:meta"}


def test_an_empty_mart_publishes_an_empty_table(
    tmp_path: Path, redis: RedisServer, client: redis_client.Redis, prefix: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    env = {REDIS_ENV: redis.url()}
    spec = pipeline([redis_entry(keyPrefix=prefix)])
    build_mart(warehouse, customers_select(3, 1))
    assert run_publish(context(warehouse, spec, env)).ok
    build_mart(warehouse, customers_select(0, 2))

    summary = run_publish(context(warehouse, spec, env))

    assert summary.ok and summary.published[0].rows == 0
    assert meta(client, prefix)["rows"] == 0
    assert client.hlen(f"{prefix}:rows") == 0


class Observer(threading.Thread):
    """Polls the published table until told to stop; records every inconsistency it sees."""

    def __init__(self, url: str, prefix: str, rows_by_run: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.client = redis_client.Redis.from_url(url, decode_responses=True)
        self.prefix = prefix
        self.rows_by_run = rows_by_run
        self.seen_runs: list[str] = []
        self.problems: list[str] = []
        self.stop = threading.Event()
        self.polls = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.polls += 1
            self.poll(full=self.polls % 10 == 0)

    def wait_for(self, run_id: str) -> None:
        for _ in range(3000):
            if run_id in self.seen_runs:
                return
            self.stop.wait(0.01)
        raise AssertionError(f"the reader never saw {run_id}; it saw {self.seen_runs}")

    def poll(self, *, full: bool) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.get(f"{self.prefix}:meta")
        pipe.hlen(f"{self.prefix}:rows")
        pipe.hrandfield(f"{self.prefix}:rows", 20, withvalues=True)
        if full:
            pipe.hvals(f"{self.prefix}:rows")
        document, count, sample, *everything = pipe.execute()
        run_id = json.loads(document)["runId"]
        generation = int(run_id.removeprefix("gen"))
        expected = self.rows_by_run[run_id]
        if count != expected:
            self.problems.append(f"{run_id}: {count} rows visible, expected {expected}")
        marker = f'"generation":{generation},'
        values = sample[1::2] + (everything[0] if everything else [])
        mixed = sum(marker not in value for value in values)
        if mixed:
            self.problems.append(f"{run_id}: {mixed} rows of another generation visible")
        if not self.seen_runs or self.seen_runs[-1] != run_id:
            self.seen_runs.append(run_id)


def test_readers_never_see_a_partial_or_mixed_table(
    tmp_path: Path, redis: RedisServer, prefix: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    env = {REDIS_ENV: redis.url()}
    spec = pipeline([redis_entry(keyPrefix=prefix)])
    rows_by_run = {"gen1": 20_000, "gen2": 100_000, "gen3": 80_000}
    build_mart(warehouse, customers_select(rows_by_run["gen1"], 1))
    assert run_publish(context(warehouse, spec, env, run_id="gen1")).ok
    observer = Observer(redis.url(), prefix, rows_by_run)
    observer.start()
    polls_during_publish = []
    try:
        observer.wait_for("gen1")
        for generation in (2, 3):
            build_mart(warehouse, customers_select(rows_by_run[f"gen{generation}"], generation))
            polls_before = observer.polls
            summary = run_publish(context(warehouse, spec, env, run_id=f"gen{generation}"))
            polls_during_publish.append(observer.polls - polls_before)
            assert summary.ok, summary.error
            observer.wait_for(f"gen{generation}")
    finally:
        observer.stop.set()
        observer.join(timeout=30)

    assert observer.problems == []
    assert observer.seen_runs == ["gen1", "gen2", "gen3"]
    assert max(polls_during_publish) > 0, "the reader must poll while a publish is under way"


def test_a_target_that_is_down_fails_clearly_and_other_targets_still_publish(
    tmp_path: Path, redis: RedisServer, client: redis_client.Redis, prefix: str
) -> None:
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(4, 1))
    down = f"redis://127.0.0.1:{free_port()}/0"
    spec = pipeline(
        [
            {"table": "marts.customers", "redis": {
                "urlSecretRef": {"name": "down", "key": "url"}, "keyPrefix": f"{prefix}:down"}},
            redis_entry(keyPrefix=prefix),
        ]
    )  # fmt: skip
    env = {REDIS_ENV: redis.url(), "DUCKHERD_SECRET_DOWN_URL": down}

    summary = run_publish(context(warehouse, spec, env))

    assert not summary.ok
    assert f"redis:{prefix}:down" in (summary.error or "")
    assert "Connection refused" in (summary.error or "")
    assert "Secret down/url" in (summary.error or "")
    assert summary.published == [
        PublishedTarget(table="marts.customers", target=f"redis:{prefix}", rows=4)
    ]
    assert client.hlen(f"{prefix}:rows") == 4


def test_a_write_failure_midway_keeps_the_previous_version_and_drops_staging(
    tmp_path: Path,
) -> None:
    warehouse = tmp_path / "w.duckdb"
    prefix = "midway"
    spec = pipeline([redis_entry(keyPrefix=prefix)])
    with redis_server() as own:
        client = redis_client.Redis.from_url(own.url(), decode_responses=True)
        env = {REDIS_ENV: own.url()}
        build_mart(warehouse, customers_select(1_000, 1))
        assert run_publish(context(warehouse, spec, env, run_id="gen1")).ok
        before = meta(client, prefix)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", used + 2_000_000)
        build_mart(warehouse, customers_select(200_000, 2))

        summary = run_publish(context(warehouse, spec, env, run_id="gen2"))

        assert not summary.ok
        assert "OutOfMemoryError" in (summary.error or "")
        assert meta(client, prefix) == before
        assert client.hlen(f"{prefix}:rows") == 1_000
        generations = {json.loads(v)["generation"] for v in client.hvals(f"{prefix}:rows")}
        assert generations == {1}
        assert keys_under(client, prefix) == {f"{prefix}:rows", f"{prefix}:meta"}
        client.close()


@pytest.mark.parametrize(
    ("make_url", "expected"),
    [
        (lambda s: f"redis://:{s}@127.0.0.1:{{port}}/0", "AuthenticationError"),
        (lambda s: f"redis://default:{s}@127.0.0.1:{{port}}/0", "AuthenticationError"),
        (lambda s: f"redis//:{s}@127.0.0.1:{{port}}/0", "not a valid Redis URL"),
    ],
)
def test_wrong_credentials_fail_clearly_without_revealing_the_secret(
    tmp_path: Path,
    redis: RedisServer,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    make_url: Any,
    expected: str,
) -> None:
    secret = "Wr0ng-Pa55-do-not-print"
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(3, 1))
    spec = pipeline([redis_entry(keyPrefix=prefix)])
    env = {REDIS_ENV: make_url(secret).format(port=redis.port)}

    with caplog.at_level("DEBUG"):
        summary = run_stage("publish", context(warehouse, spec, env))

    assert not summary.ok
    assert expected in (summary.error or "")
    assert "cache/url" in (summary.error or "")
    captured = capfd.readouterr()
    for place in (summary.model_dump_json(), encode(summary).decode(), caplog.text,
                  captured.out, captured.err):  # fmt: skip
        assert secret not in place
    assert "Wr0ng" not in caplog.text


def test_the_warehouse_is_free_for_a_writer_while_a_slow_target_is_written(
    tmp_path: Path,
) -> None:
    """Redis pauses writes; meanwhile another process must be able to write the warehouse."""
    warehouse = tmp_path / "w.duckdb"
    build_mart(warehouse, customers_select(5_000, 1))
    spec = pipeline([redis_entry(keyPrefix="slow")])
    writer = (
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
        "c.execute('CREATE TABLE marts.written_meanwhile AS SELECT 1 AS x'); c.close()"
    )
    with redis_server() as own:
        client = redis_client.Redis.from_url(own.url(), decode_responses=True)
        client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")  # type: ignore[no-untyped-call]
        results: list[Any] = []
        publisher = threading.Thread(
            target=lambda: results.append(
                run_publish(context(warehouse, spec, {REDIS_ENV: own.url()}))
            )
        )
        publisher.start()
        try:
            written = subprocess.run(
                [sys.executable, "-c", writer, str(warehouse)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            still_publishing = publisher.is_alive()
        finally:
            client.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
            publisher.join(timeout=60)

        assert written.returncode == 0, written.stderr
        assert still_publishing, "the publish must still wait on the paused target"
        assert results[0].ok, results[0].error
        assert client.hlen("slow:rows") == 5_000
        client.close()
