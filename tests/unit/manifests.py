"""Manifests shared by the unit tests."""

from __future__ import annotations

import copy
from typing import Any

VALID_SPEC: dict[str, Any] = {
    "schedule": "0 6 * * *",
    "timeZone": "Europe/Paris",
    "sources": [
        {
            "name": "customers",
            "primaryKey": ["customer_id"],
            "writeDisposition": "merge",
            "incremental": {"cursorField": "updated_at"},
            "http": {
                "url": "http://demo-source:8765/customers",
                "recordsPath": "data",
                "pagination": {"type": "page", "pageSize": 1000, "totalPath": "total"},
                "auth": {"type": "bearer", "secretRef": {"name": "crm-api", "key": "token"}},
                "incrementalParam": "updated_since",
            },
        },
        {
            "name": "orders",
            "postgres": {
                "dsnSecretRef": {"name": "shop-db", "key": "dsn"},
                "table": "public.orders",
            },
        },
    ],
    "transform": {"dbt": {"select": ["marts"], "vars": {"currency": "EUR"}}},
    "quality": {
        "checks": [
            {
                "table": "marts.customer_analytics",
                "expectation": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "customer_id"},
            }
        ]
    },
    "publish": [
        {
            "table": "marts.customer_analytics",
            "redis": {"urlSecretRef": {"name": "cache", "key": "url"}, "ttlSeconds": 86400},
        }
    ],
    "freshness": {"warnAfter": "26h", "errorAfter": "48h"},
    "storage": {"size": "2Gi"},
}


def spec(**overrides: Any) -> dict[str, Any]:
    result = copy.deepcopy(VALID_SPEC)
    result.update(overrides)
    return result


def manifest(spec_body: dict[str, Any] | None = None, name: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "duckherd.io/v1alpha1",
        "kind": "DataPipeline",
        "metadata": {"name": name, "namespace": "analytics", "uid": "uid-1", "generation": 3},
        "spec": spec_body if spec_body is not None else spec(),
    }
