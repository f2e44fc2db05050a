"""Nothing secret gets out: sync with known secrets, then search every byte produced.

Two kinds of secrets:
- the client's credentials (a token, AK/SK with a security token, an IAM password, and
  the tokens IAM issues): nowhere at all, raw_payloads included: not in CLI output, not
  in error messages for bad credentials, not in any file under the warehouse or
  DAGSTER_HOME (searched as bytes), not in any decoded Parquet or DuckDB value;
- the jobs' own secrets (planted by World(secret_share=...) in parameters labelled like
  password/token/secret/access_key/sk and in --password=...-style flags of user_command):
  in raw_payloads, byte for byte, by design; in no tidy table, no Parquet file of a
  tidy table, no field_issues value, no Dagster metadata.
And TLS: verified by default, a self-signed endpoint is refused with one clear line,
and turning verification off takes --insecure, which says so on stderr.
"""
from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import certifi
import pyarrow.parquet as pq
import pytest

from ledger import fault_fields
from pipelines.modelarts.auth import AkSk, IamPassword, StaticToken
from pipelines.modelarts.simulator import PAYLOAD_FAULTS, SimulatorServer, World
from pipelines.modelarts.simulator.generator import SECRET_MARK
from warehouse import connect, schema
from warehouse.redact import MASK, is_secret_label, redact_command, redact_value

PROJECT = "proj-a"  # one of the partitions tests/conftest.py pins for Dagster
TOKEN = "tok-CRED-7f3a9c1e5b2d4e6f"
AK = "AKCRED4QX9Z2L7M1N8P0"
SK = "sk-CRED-0a1b2c3d4e5f6a7b8c9d"
STS = "sts-CRED-9e8d7c6b5a4f3e2d"
IAM_USER, IAM_DOMAIN = "etl-user", "acme"
IAM_PASSWORD = "pw-CRED-Tr0ub4dor&3!"
WRONG = {"token": "tok-WRONG-CRED-1234", "sk": "sk-WRONG-CRED-5678", "password": "pw-WRONG-CRED-9012"}
CREDENTIALS = [TOKEN, AK, SK, STS, IAM_PASSWORD, *WRONG.values()]
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARTS_", "HUAWEICLOUD_"))}
NO_CREDENTIALS = {"MODELARTS_TOKEN": "", "HUAWEICLOUD_SDK_AK": "", "HUAWEICLOUD_SDK_SK": "",
                  "HUAWEICLOUD_SDK_SECURITY_TOKEN": "", "MODELARTS_IAM_USER": "", "MODELARTS_IAM_PASSWORD": ""}


def token_env(token=TOKEN):
    return {"MODELARTS_TOKEN": token}


def aksk_env(sk=SK):
    return {"HUAWEICLOUD_SDK_AK": AK, "HUAWEICLOUD_SDK_SK": sk, "HUAWEICLOUD_SDK_SECURITY_TOKEN": STS}


def iam_env(url, password=IAM_PASSWORD):
    return {"MODELARTS_IAM_USER": IAM_USER, "MODELARTS_IAM_PASSWORD": password, "MODELARTS_IAM_DOMAIN": IAM_DOMAIN,
            "MODELARTS_IAM_ENDPOINT": url}


def run_sync(sim_url: str, warehouse: Path, credentials: dict, *extra: str) -> subprocess.CompletedProcess:
    env = {**CLEAN_ENV, **NO_CREDENTIALS, **credentials}
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "sync", "--endpoint", sim_url, "--project-id", PROJECT,
         "--warehouse", str(warehouse), "--rate", "0", "--retries", "1", *extra],
        capture_output=True, text=True, env=env, timeout=120)


def make_world() -> World:
    return World(projects=[PROJECT], jobs=25, versions_per_job=(2, 6), seed=99, secret_share=0.5,
                 payload_fault_rate=0.3, payload_faults=PAYLOAD_FAULTS)


def make_sim(world: World, **options) -> SimulatorServer:
    return SimulatorServer(world, token=TOKEN, aksk=(AK, SK), iam_user=(IAM_USER, IAM_PASSWORD, IAM_DOMAIN),
                           **options)


# -- searching ------------------------------------------------------------------------------------
def files_containing(root: Path, needles: list[str]) -> list[str]:
    """'file: needle' for every file under root whose bytes contain a needle."""
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{path.relative_to(root)}: {n}" for n in needles if n.encode() in data]
    return hits


def _values_text(rows) -> str:
    return "\n".join(repr(row) for row in rows)


def tables_containing(root: Path, needles: list[str], skip: tuple[str, ...] = ()) -> list[str]:
    """'table: needle' for every DuckDB table (decoded: every value of every row) that contains a needle."""
    con = connect(root)
    try:
        hits = []
        for table in schema.ALL_TABLES:
            if table.name in skip:
                continue
            text = _values_text(con.execute(f'SELECT * FROM "{table.name}"').fetchall())
            hits += [f"{table.name}: {n}" for n in needles if n in text]
        return hits
    finally:
        con.close()


def parquet_containing(root: Path, needles: list[str], skip: tuple[str, ...] = ()) -> list[str]:
    """'file: needle' for every Parquet file whose decoded values contain a needle."""
    hits = []
    data = root / "data" / "main"  # the lake's data files, one folder per stored table
    for path in sorted(data.rglob("*.parquet")):
        if path.relative_to(data).parts[0] in skip:
            continue
        text = _values_text(pq.read_table(path).to_pylist())
        hits += [f"{path.relative_to(root)}: {n}" for n in needles if n in text]
    return hits


def raw_payload_bodies(root: Path) -> bytes:
    con = connect(root)
    try:
        return b"\n".join(body for (body,) in con.execute("SELECT payload FROM raw_payloads").fetchall())
    finally:
        con.close()


def everything_leaked(root: Path, credentials: list[str], planted: list[str]) -> list[str]:
    """Credentials anywhere (bytes of every file, decoded tables and Parquet, raw included), and
    the jobs' secrets anywhere but raw_payloads (decoded)."""
    job_secrets = [SECRET_MARK, *planted]
    return (files_containing(root, credentials) + tables_containing(root, credentials)
            + parquet_containing(root, credentials)
            + tables_containing(root, job_secrets, skip=("raw_payloads",))
            + parquet_containing(root, job_secrets, skip=("raw_payloads",)))


# -- the rules ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("label", ["password", "db_password", "api_token", "hfToken", "apiToken", "clientSecret",
                                   "obsSecretKey", "access_key", "sk", "AWS_SECRET_ACCESS_KEY", "github-token"])
def test_secret_labels_in_any_case_style_are_masked(label):
    assert is_secret_label(label)


@pytest.mark.parametrize("label", ["learning_rate", "max_tokens", "maxTokens", "tokenizer", "skip_steps", "task",
                                   "desk", "batch_size", "mask_ratio"])
def test_ordinary_labels_are_kept(label):
    assert not is_secret_label(label)


def test_field_issue_values_are_masked_where_they_hold_secrets():
    assert redact_value("parameter", {"lr": "0.1", "hfToken": "x1", "api_key": None}) == {
        "lr": "0.1", "hfToken": MASK, "api_key": None}
    assert redact_value("parameter[2]", {"label": "password", "value": ["x2"]}) == {"label": "password", "value": MASK}
    assert redact_value("obs_secret_key", "x3") == MASK and redact_value("job_labels", ["--password=x4"]) == [
        f"--password={MASK}"]
    assert redact_command("git clone https://ci:x5@git.example.com/r.git --data_url=obs://b/x") == (
        f"git clone https://ci:{MASK}@git.example.com/r.git --data_url=obs://b/x")


# -- the command line --------------------------------------------------------------------------------------
def test_cli_syncs_with_every_kind_of_credentials_leak_nothing(tmp_path):
    world = make_world()
    wh = tmp_path / "wh"
    outputs = []
    with make_sim(world) as sim:
        for n, credentials in enumerate((token_env(), aksk_env(), iam_env(sim.url))):
            if n:
                world.advance(6 * 3600)  # new and changed versions: every kind of credentials fetches some
            done = run_sync(sim.url, wh, credentials)
            assert done.returncode == 0, done.stderr
            outputs.append(done)
        refused = [run_sync(sim.url, wh, token_env(WRONG["token"])), run_sync(sim.url, wh, aksk_env(WRONG["sk"])),
                   run_sync(sim.url, wh, iam_env(sim.url, WRONG["password"]))]
        issued = list(sim._issued)  # the tokens IAM handed out are credentials too
    assert issued
    for done, code in zip(refused, ("ModelArts.0203", "ModelArts.0206", "IAM refused the login")):
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        assert done.returncode == 1 and len(errors) == 1 and code in errors[0], done.stderr
    credentials = CREDENTIALS + issued
    printed = "\n".join(d.stdout + d.stderr for d in outputs + refused)
    assert "Traceback" not in printed
    assert [c for c in credentials if c in printed] == []

    planted = sorted(world.planted_secrets())
    assert len(planted) >= 20
    # the case that used to leak: a secret-bearing job whose `parameter` came as an object (a field issue)
    secret_jobs = {job.job_id for job in (world.job(PROJECT, t.job_id) for t in world.truth())
                   if job.profile.get("planted_parameters")}
    assert any("parameter" in fault_fields(t.fault_note)[0] and t.job_id in secret_jobs for t in world.truth())
    assert everything_leaked(wh, credentials, planted) == []
    raw = raw_payload_bodies(wh)
    assert all(secret.encode() in raw for secret in planted)  # raw keeps the exact bytes, by design
    con = connect(wh)
    try:  # and the tidy tables say where a secret was
        masked = con.execute("SELECT count(*) FROM parameters WHERE value = '***REDACTED***'").fetchall()[0][0]
        commands = con.execute("SELECT count(*) FROM job_versions WHERE user_command LIKE '%***REDACTED***%'"
                               ).fetchall()[0][0]
    finally:
        con.close()
    assert masked > 0 and commands > 0


def test_keep_secrets_is_the_documented_way_to_keep_them_in_tidy_tables(tmp_path):
    world = World(projects=[PROJECT], jobs=4, versions_per_job=1, seed=96, secret_share=1.0)
    with make_sim(world) as sim:
        done = run_sync(sim.url, tmp_path / "wh", token_env(), "--keep-secrets")
    assert done.returncode == 0, done.stderr
    assert tables_containing(tmp_path / "wh", [SECRET_MARK], skip=("raw_payloads",))
    assert [c for c in CREDENTIALS if c in done.stdout + done.stderr] == []


def test_credentials_never_appear_in_exception_messages_or_reprs():
    world = World(projects=[PROJECT], jobs=1, seed=97)
    from pipelines.modelarts.client import ModelArtsClient, read_list
    from pipelines.modelarts.errors import ModelArtsError

    with make_sim(world) as sim:
        auths = [StaticToken(WRONG["token"]), AkSk(AK, WRONG["sk"], STS),
                 IamPassword(sim.url, IAM_USER, WRONG["password"], IAM_DOMAIN)]
        messages = []
        for auth in auths:
            messages += [repr(auth), auth.describe()]
            with ModelArtsClient(sim.url, auth) as client, pytest.raises(ModelArtsError) as info:
                read_list(client, client.list_jobs(PROJECT, page=1, per_page=5), "job list")
            messages += [str(info.value), repr(info.value)]
    text = "\n".join(messages)
    assert [c for c in CREDENTIALS if c in text] == []


# -- Dagster ---------------------------------------------------------------------------------------------
def test_a_dagster_materialization_leaks_nothing_into_its_run_storage_or_the_warehouse(tmp_path, monkeypatch):
    import dagster as dg

    from assets.extract import raw_payloads
    from assets.tables import derive_tables
    from pipelines.resources import ModelArtsResource, WarehouseResource

    world = make_world()
    home, wh = tmp_path / "dagster_home", tmp_path / "wh"
    home.mkdir()
    for name, value in {"SECRET_TEST_TOKEN": TOKEN, "SECRET_TEST_AK": AK, "SECRET_TEST_SK": SK,
                        "SECRET_TEST_PASSWORD": IAM_PASSWORD}.items():
        monkeypatch.setenv(name, value)
    with make_sim(world) as sim, dg.instance_for_test(temp_dir=str(home)) as instance:
        settings = {"endpoint": sim.url, "project_ids": [PROJECT], "rate": 0, "max_retries": 1}
        resources = [
            ModelArtsResource(**settings, token=dg.EnvVar("SECRET_TEST_TOKEN")),
            ModelArtsResource(**settings, access_key=dg.EnvVar("SECRET_TEST_AK"), secret_key=dg.EnvVar("SECRET_TEST_SK")),
            ModelArtsResource(**settings, iam_user=IAM_USER, iam_domain=IAM_DOMAIN, iam_endpoint=sim.url,
                              iam_password=dg.EnvVar("SECRET_TEST_PASSWORD")),
        ]
        for n, modelarts in enumerate(resources):
            if n:
                world.advance(6 * 3600)
            result = dg.materialize([raw_payloads, derive_tables], partition_key=PROJECT, instance=instance,
                                    resources={"modelarts": modelarts, "warehouse": WarehouseResource(folder=str(wh))})
            assert result.success
        issued = list(sim._issued)
        events = "\n".join(repr(e) for e in instance.all_logs(result.run_id))
    planted = sorted(world.planted_secrets())
    credentials = CREDENTIALS + issued
    assert [c for c in credentials + [SECRET_MARK] if c in events] == []
    stored = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in stored)  # the search below reads the instance's SQLite storage
    assert files_containing(home, credentials + [SECRET_MARK, *planted]) == []  # run storage, event logs, compute logs
    assert everything_leaked(wh, credentials, planted) == []


# -- TLS -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A certificate for 127.0.0.1 signed by nobody anyone trusts (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context, cert


def test_tls_is_verified_by_default_and_insecure_takes_a_loud_explicit_flag(tmp_path, self_signed):
    context, cert = self_signed
    world = World(projects=[PROJECT], jobs=2, seed=98)
    with make_sim(world, tls=context) as sim:
        assert sim.url.startswith("https://")
        refused = run_sync(sim.url, tmp_path / "a", token_env())
        refused_iam = run_sync(sim.url, tmp_path / "b", iam_env(sim.url))
        # a CA bundle in the environment must not quietly turn verification back on (requests' session.verify
        # loses to $REQUESTS_CA_BUNDLE): --insecure has to work wherever it is used
        insecure = run_sync(sim.url, tmp_path / "c", {**token_env(), "REQUESTS_CA_BUNDLE": certifi.where()},
                            "--insecure")
        trusted = run_sync(sim.url, tmp_path / "d", {**token_env(), "REQUESTS_CA_BUNDLE": str(cert)})
    for done, what in ((refused, "TLS verification failed for 127.0.0.1"),
                       (refused_iam, "TLS verification failed for the IAM endpoint")):
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
        assert done.returncode == 1 and len(errors) == 1 and what in errors[0], done.stderr
    assert insecure.returncode == 0, insecure.stderr
    assert "WARNING: TLS certificate verification is disabled" in insecure.stderr
    assert trusted.returncode == 0 and "WARNING" not in trusted.stderr  # verification on, with the CA the user trusts
    assert f"fetched {world.version_count()}" in trusted.stdout
    for done in (refused, refused_iam, insecure, trusted):
        assert "Traceback" not in done.stderr and TOKEN not in done.stdout + done.stderr
