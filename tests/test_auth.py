"""Auth: the AK/SK signer against Huawei's published example, env selection, the IAM password flow."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from pipelines.modelarts.auth import (
    AkSk, IamPassword, StaticToken, auth_from_env, canonical_query, canonical_request, canonical_uri,
    iam_endpoint_for, sign, string_to_sign, verify_signature,
)
from pipelines.modelarts.errors import AuthError, CredentialsError
from pipelines.modelarts.simulator import SimulatorServer, World

# Huawei Cloud "API Request Signing Guide" (devg-apisign, api-sign-algorithm-002..005): a GET of the
# VPC list, its canonical request's hash, the secret key and the resulting Authorization header.
EXAMPLE_URL = ("https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
               "?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0")
EXAMPLE_DATE = datetime(2019, 11, 15, 3, 36, 55, tzinfo=timezone.utc)  # X-Sdk-Date: 20191115T033655Z
EXAMPLE_AK = "QTWAOYTTINDUT2QVKYUC"
EXAMPLE_SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
EXAMPLE_HASHED_CANONICAL = "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
EXAMPLE_AUTHORIZATION = ("SDK-HMAC-SHA256 Access=QTWAOYTTINDUT2QVKYUC, SignedHeaders=content-type;host;x-sdk-date, "
                         "Signature=7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe")


def test_signer_reproduces_the_published_example():
    headers = sign("GET", EXAMPLE_URL, EXAMPLE_AK, EXAMPLE_SK, headers={"Content-Type": "application/json"},
                   when=EXAMPLE_DATE)
    assert headers["X-Sdk-Date"] == "20191115T033655Z"
    assert headers["Host"] == "service.region.example.com"
    assert headers["Authorization"] == EXAMPLE_AUTHORIZATION


def test_canonical_request_of_the_published_example():
    lower = {"content-type": "application/json", "host": "service.region.example.com",
             "x-sdk-date": "20191115T033655Z"}
    canonical = canonical_request("GET", "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
                                  "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0", lower, sorted(lower))
    assert canonical.splitlines()[:3] == ["GET", "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs/",
                                          "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0"]
    assert string_to_sign(canonical, "20191115T033655Z").splitlines() == [
        "SDK-HMAC-SHA256", "20191115T033655Z", EXAMPLE_HASHED_CANONICAL]


def test_canonical_parts_follow_the_documented_rules():
    assert canonical_uri("/v1/p/training-jobs") == "/v1/p/training-jobs/"  # always ends with '/'
    assert canonical_uri("/a b/c%2Fd/") == "/a%20b/c%2Fd/"  # RFC 3986, each segment
    assert canonical_query("page=2&per_page=10&a=~x y") == "a=~x%20y&page=2&per_page=10"  # sorted
    assert canonical_query("b=2&b=1&a") == "a=&b=1&b=2"
    assert canonical_query("") == ""


def test_signature_verification_round_trip_and_tampering():
    url = "http://127.0.0.1:9/v1/p/training-jobs?page=1&per_page=10"
    headers = sign("GET", url, "AK1", "SK1")
    target = "/v1/p/training-jobs?page=1&per_page=10"
    assert verify_signature("GET", target, headers, b"", {"AK1": "SK1"}) is None
    assert verify_signature("GET", target.replace("page=1", "page=2"), headers, b"", {"AK1": "SK1"}) == \
        "signature does not match"
    assert verify_signature("GET", target, headers, b"", {"AK1": "other"}) == "signature does not match"
    assert verify_signature("GET", target, headers, b"", {"AK2": "SK1"}) == "unknown access key"
    assert verify_signature("GET", target, {}, b"", {"AK1": "SK1"}).startswith("missing")
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert "clock" in verify_signature("GET", target, headers, b"", {"AK1": "SK1"}, now=later)


def test_host_header_drops_default_ports():
    assert sign("GET", "https://h.example.com:443/x", "a", "s")["Host"] == "h.example.com"
    assert sign("GET", "http://127.0.0.1:8080/x", "a", "s")["Host"] == "127.0.0.1:8080"


# -- environment ---------------------------------------------------------------------------
ENDPOINT = "https://modelarts.cn-north-4.myhuaweicloud.com"


def test_env_precedence_token_then_aksk_then_iam():
    both = {"MODELARTS_TOKEN": "tok", "HUAWEICLOUD_SDK_AK": "ak", "HUAWEICLOUD_SDK_SK": "sk",
            "MODELARTS_IAM_USER": "u", "MODELARTS_IAM_PASSWORD": "pw"}
    assert isinstance(auth_from_env(ENDPOINT, both), StaticToken)
    both.pop("MODELARTS_TOKEN")
    assert isinstance(auth_from_env(ENDPOINT, both), AkSk)
    both.pop("HUAWEICLOUD_SDK_AK"), both.pop("HUAWEICLOUD_SDK_SK")
    iam = auth_from_env(ENDPOINT, both)
    assert isinstance(iam, IamPassword)
    assert iam.iam_endpoint == "https://iam.cn-north-4.myhuaweicloud.com" and iam.domain == "u"


@pytest.mark.parametrize("env, needle", [
    ({}, "MODELARTS_TOKEN"),
    ({"HUAWEICLOUD_SDK_AK": "AKONLY"}, "HUAWEICLOUD_SDK_SK"),
    ({"MODELARTS_IAM_PASSWORD": "pw-only"}, "MODELARTS_IAM_USER"),
])
def test_incomplete_env_is_one_clear_line_without_the_secret(env, needle):
    with pytest.raises(CredentialsError) as info:
        auth_from_env(ENDPOINT, env)
    message = str(info.value)
    assert needle in message and "\n" not in message
    assert all(value not in message for value in env.values())


def test_iam_endpoint_needs_to_be_set_for_other_hosts():
    assert iam_endpoint_for("http://127.0.0.1:8080") is None
    with pytest.raises(CredentialsError, match="MODELARTS_IAM_ENDPOINT"):
        auth_from_env("http://127.0.0.1:8080", {"MODELARTS_IAM_USER": "u", "MODELARTS_IAM_PASSWORD": "p"})


def test_reprs_and_descriptions_hide_secrets():
    objects = [StaticToken("tok-SECRET"), AkSk("AK-SECRET", "SK-SECRET"),
               IamPassword("https://iam.x", "alice", "PW-SECRET")]
    for obj in objects:
        assert "SECRET" not in repr(obj) and "SECRET" not in obj.describe()


# -- IAM password flow over HTTP -----------------------------------------------------------
@pytest.fixture
def iam_sim():
    world = World(projects=["proj-a", "proj-b"], jobs=1)
    with SimulatorServer(world, iam_user=("alice", "pw", "acme"), token_ttl=1.0) as sim:
        yield sim


def test_iam_tokens_are_cached_per_project_until_near_expiry(iam_sim):
    auth = IamPassword(iam_sim.url, "alice", "pw", "acme")
    first = auth.headers("GET", "x", "proj-a")
    assert auth.headers("GET", "x", "proj-a") == first  # cached
    assert auth.headers("GET", "x", "proj-b") != first  # tokens are project-scoped
    assert iam_sim.counts["iam"] == 2
    time.sleep(0.95)  # a 1 s token is renewed a tenth of its life before it expires
    assert auth.headers("GET", "x", "proj-a") != first
    assert iam_sim.counts["iam"] == 3


def test_iam_refresh_drops_the_rejected_token_once(iam_sim):
    auth = IamPassword(iam_sim.url, "alice", "pw", "acme")
    rejected = auth.headers("GET", "x", "proj-a")
    assert auth.refresh("proj-a", rejected) is True
    renewed = auth.headers("GET", "x", "proj-a")
    assert renewed != rejected
    assert auth.refresh("proj-a", rejected) is True  # a second thread with the same old token...
    assert auth.headers("GET", "x", "proj-a") == renewed  # ...does not cause another login
    assert iam_sim.counts["iam"] == 2


def test_iam_wrong_password_is_an_auth_error_without_the_password(iam_sim):
    auth = IamPassword(iam_sim.url, "alice", "WRONG-PW-123", "acme")
    with pytest.raises(AuthError) as info:
        auth.headers("GET", "x", "proj-a")
    assert "WRONG-PW-123" not in str(info.value) and "MODELARTS_IAM_PASSWORD" in str(info.value)
