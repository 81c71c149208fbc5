"""infra/: every .tf parses (python-hcl2), the outputs are what launch_sagemaker.py reads, and checkov finds nothing."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

from peftlab.cloud.settings import SOURCES

INFRA = REPO / "infra"
TF_FILES = sorted(INFRA.rglob("*.tf"))


def _parse(path: Path) -> dict:
    hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 (dev extra)")
    with path.open() as f:
        return hcl2.load(f)


def _names(blocks: list[dict] | dict) -> dict:
    """python-hcl2 keeps HCL's quotes on block labels ('"aws_s3_bucket"'); strip them."""
    merged = {}
    for block in blocks if isinstance(blocks, list) else [blocks]:
        merged.update({k.strip('"'): v for k, v in block.items() if not k.startswith("__")})
    return merged


def _text(value: str) -> str:
    """String values may keep their quotes too, depending on the python-hcl2 version."""
    return value.strip('"')


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_tf_file_parses(path):
    assert _parse(path)


def test_root_wires_the_modules_and_outputs_what_the_launcher_reads():
    assert {p.parent.name for p in INFRA.glob("modules/*/main.tf")} == {"s3", "iam"}
    modules = _names(_parse(INFRA / "main.tf")["module"])
    assert _text(modules["s3"]["source"]) == "./modules/s3" and _text(modules["iam"]["source"]) == "./modules/iam"
    assert _text(modules["iam"]["bucket_arn"]) == "${module.s3.bucket_arn}"  # the role is limited to that bucket
    outputs = _names(_parse(INFRA / "outputs.tf")["output"])
    assert set(outputs) == {output for _, _, output in SOURCES}
    for folder in ("s3", "iam"):  # every module variable has a description and a type
        for name, var in _names(_parse(INFRA / "modules" / folder / "variables.tf")["variable"]).items():
            assert var.get("description") and var.get("type"), f"{folder}: variable {name}"


def test_bucket_is_private_versioned_encrypted_tls_only_with_a_checkpoint_lifecycle():
    s3 = _parse(INFRA / "modules" / "s3" / "main.tf")
    resources = {}
    for block in s3["resource"]:
        for kind, named in _names(block).items():
            resources[kind] = next(iter(_names(named).values()))
    block = resources["aws_s3_bucket_public_access_block"]
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                          "restrict_public_buckets"))  # fmt: skip
    assert "Enabled" in json.dumps(resources["aws_s3_bucket_versioning"])
    assert "aws:kms" in json.dumps(resources["aws_s3_bucket_server_side_encryption_configuration"])
    lifecycle = json.dumps(resources["aws_s3_bucket_lifecycle_configuration"])
    assert "var.checkpoint_prefix" in lifecycle and "var.checkpoint_expiration_days" in lifecycle
    assert "aws:SecureTransport" in json.dumps(s3["data"])


def _checkov() -> str | None:
    """CI installs checkov into its own venv (.ci/run; it pins packages that clash with ours); else PATH."""
    for candidate in (os.environ.get("PEFTLAB_CHECKOV"), REPO / ".ci" / "checkov-venv" / "bin" / "checkov"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return shutil.which("checkov")


def test_checkov_finds_no_failed_check_and_every_skip_is_justified():
    checkov = _checkov()
    if checkov is None:
        pytest.skip("checkov not installed: bash .ci/run puts it in .ci/checkov-venv (or set PEFTLAB_CHECKOV)")
    out = subprocess.run(
        [checkov, "-d", str(INFRA), "--framework", "terraform", "--skip-download", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(out.stdout)
    summary, results = report["summary"], report["results"]
    failed = [(c["check_id"], c["resource"]) for c in results.get("failed_checks", [])]
    assert summary["failed"] == 0 and not failed, failed
    assert summary["parsing_errors"] == 0 and summary["passed"] > 30
    assert summary["resource_count"] == 9  # bucket + 6 bucket settings + role + role policy: modules are scanned
    for skipped in results.get("skipped_checks", []):
        assert len(skipped["check_result"].get("suppress_comment") or "") > 20, skipped["check_id"]
