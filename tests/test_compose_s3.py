"""docker-compose.s3.yml, checked without a Docker engine: SeaweedFS beside the stack, and
the API and worker pointed at it with settings Thaw knows."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from thaw.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_ENV = {f"THAW_{name.upper()}" for name in Settings.model_fields}


def _override() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.s3.yml").read_text())


def test_the_api_and_worker_use_the_seaweedfs_bucket() -> None:
    services = _override()["services"]
    assert {"seaweedfs", "seaweedfs-bucket", "api", "worker"} == set(services)
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert set(env) <= SETTINGS_ENV
        assert env["THAW_ARTIFACTS_URL"] == "s3://thaw/artifacts"
        assert env["THAW_ARTIFACTS_ENDPOINT"] == "http://seaweedfs:8333"
        wait = services[name]["depends_on"]["seaweedfs-bucket"]["condition"]
        assert wait == "service_completed_successfully"
    assert "-s3.config=/etc/seaweedfs/s3.json" in services["seaweedfs"]["command"]
    assert services["seaweedfs"]["ports"] == ["127.0.0.1:8333:8333"]  # loopback only


def test_the_s3_identities_are_json_with_the_keys_from_the_environment() -> None:
    content = _override()["configs"]["seaweedfs-s3"]["content"]
    ids = json.loads(content)
    creds = ids["identities"][0]["credentials"][0]
    assert creds == {"accessKey": "${THAW_S3_ACCESS_KEY}", "secretKey": "${THAW_S3_SECRET_KEY}"}
