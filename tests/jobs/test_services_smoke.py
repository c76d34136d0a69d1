"""The servers the job tests use are real and reachable."""

import psycopg2
import redis as redis_client

from tests.services import PostgresServer, RedisServer


def test_postgres_answers_sql(postgres: PostgresServer) -> None:
    with psycopg2.connect(postgres.dsn()) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT 40 + 2")
        assert cursor.fetchone() == (42,)


def test_redis_round_trips_a_value(redis: RedisServer) -> None:
    client = redis_client.Redis.from_url(redis.url())
    client.set("duckherd:smoke", "ok")
    assert client.get("duckherd:smoke") == b"ok"
