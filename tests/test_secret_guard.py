from __future__ import annotations

import json
from pathlib import Path

import pytest

from hatch_detmodel import build
from hatch_detmodel.config import ProjectIdentity, load_project
from hatch_detmodel.errors import ConfigError, SelectionError
from hatch_detmodel.secret_guard import OVERLAP
from hatch_detmodel.selection import Selector

from .conftest import ProjectFactory, require_executable, run

IDENTITY = ProjectIdentity("demo-project", "1.2.3")
TRIAL = "class MyTrial: pass\n"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    "secret",
    [
        ".env", ".env.production", "id_rsa", "ssh/id_ed25519", "certs/server.pem", "tls.key", "client.p12",
        ".netrc", ".pypirc", ".npmrc", ".git-credentials", ".aws/credentials", ".docker/config.json",
        ".kube/config", "kubeconfig", "service-account-prod.json", "infra/terraform.tfstate",
        "infra/prod.tfstate.backup",
    ],
)
def test_secret_names_stop_the_build_with_both_ways_out(make_project: ProjectFactory, tmp_path: Path, secret: str) -> None:
    root = make_project(files={"model_def.py": TRIAL, secret: "x"})
    if secret.endswith(("tfstate", "tfstate.backup")):
        (root / ".detignore").write_text("!*.tfstate*\n")  # Determined's default ignores some; re-included here
    with pytest.raises(SelectionError) as caught:
        build(root, tmp_path / "out", identity=IDENTITY)
    message = str(caught.value)
    assert f"{secret}: looks like a secret" in message
    assert "leave it out with a line in .detignore" in message and "allow-secrets" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_templates_and_public_keys_are_not_secrets(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(files={"model_def.py": TRIAL, ".env.example": "A=1", "id_rsa.pub": "ssh-rsa AAAA"})
    archive, _ = build(root, tmp_path, identity=IDENTITY)
    assert archive.exists()


def test_every_match_is_listed(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(files={"model_def.py": TRIAL, ".env": "", "a.pem": "", "notes.txt": KEY})
    with pytest.raises(SelectionError) as caught:
        build(root, tmp_path, identity=IDENTITY)
    assert set(caught.value.problems) == {".env", "a.pem"}  # names first: nothing is read before they are fixed
    (root / ".detignore").write_text(".env\n*.pem\n")
    with pytest.raises(SelectionError) as content:
        build(root, tmp_path, identity=IDENTITY)
    assert set(content.value.problems) == {"notes.txt"}
    assert "notes.txt: contains a private key (`-----BEGIN OPENSSH PRIVATE KEY-----`)" in str(content.value)


def test_a_negation_cannot_bring_a_secret_back_but_allow_secrets_can(make_project: ProjectFactory, tmp_path: Path) -> None:
    root = make_project(files={"model_def.py": TRIAL, "server.pem": KEY, ".detignore": "*.pem\n!server.pem\n"})
    with pytest.raises(SelectionError, match=r"server\.pem: looks like a secret"):
        build(root, tmp_path, identity=IDENTITY)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'allow-secrets = ["server.pem"]\n')
    archive, _ = build(root, tmp_path, identity=IDENTITY)  # named on purpose: packed, content not scanned
    assert archive.exists()


LONGEST_HEADER = b"-----BEGIN " + b"ABCDEFGHIJKLMNOP " * 3 + b"PRIVATE KEY BLOCK-----"


@pytest.mark.parametrize(
    ("header", "before_boundary"),
    [(KEY.encode(), 20), (LONGEST_HEADER, 1), (LONGEST_HEADER, len(LONGEST_HEADER) - 1)],
)
def test_private_key_header_split_across_read_chunks(
    make_project: ProjectFactory, tmp_path: Path, header: bytes, before_boundary: int
) -> None:
    assert len(LONGEST_HEADER) < OVERLAP  # the longest header the guard knows fits in the overlap
    chunk = 1 << 20
    blob = b"\0" * (chunk - before_boundary) + header + b"\0" * 100
    root = make_project(files={"model_def.py": TRIAL, "weights.bin": blob})
    with pytest.raises(SelectionError, match=r"weights\.bin: contains a private key"):
        build(root, tmp_path, identity=IDENTITY)


def test_explain_shows_the_guard_as_the_deciding_rule(make_project: ProjectFactory) -> None:
    root = make_project(files={"model_def.py": TRIAL, ".env": ""})
    (model,) = load_project(root, IDENTITY).models
    assert Selector(model).explain(".env").packed  # the ignore rules alone would keep it ...
    cli = require_executable("hatch-detmodel")
    result = run([cli, "explain", "--json", ".env"], cwd=root, check=False)
    assert result.returncode == 1
    (entry,) = json.loads(result.stdout)["explanations"]
    assert entry["status"] == "refused" and "matches `.env` of the secrets guard" in entry["reason"]  # ... the guard decides


def test_allow_secrets_must_be_a_list_of_strings(make_project: ProjectFactory) -> None:
    root = make_project(detmodel='entrypoint = "model_def:MyTrial"\nallow-secrets = "x.pem"')
    with pytest.raises(ConfigError, match=r"Field `tool\.detmodel\.allow-secrets` must be an array"):
        load_project(root, IDENTITY)


def test_an_unused_allowance_is_a_warning(
    make_project: ProjectFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_project(detmodel='entrypoint = "model_def:MyTrial"\nallow-secrets = ["srever.pem"]')
    build(root, tmp_path, identity=IDENTITY)
    assert "tool.detmodel.allow-secrets[0] `srever.pem` matches no packed file" in capsys.readouterr().err


def test_private_keys_are_found_in_whichever_file_of_a_batch_holds_them(make_project: ProjectFactory, tmp_path: Path) -> None:
    # Small files reach the compressor in batches of 128 KiB whose files are scanned joined first: a
    # key must still be charged to its own file, before and after a large file read in chunks, and a
    # marker split across two files or in a member's name is no finding.
    filler = "x" * 10_000 + "\n"
    files = {"model_def.py": TRIAL, "docs/PRIVATE KEY rotation.md": "rotate keys yearly\n"}
    files.update({f"data/f{index:03}.txt": filler for index in range(40)})
    for index in (13, 21, 39):  # mid-batch, right after the large file, the last file
        files[f"data/f{index:03}.txt"] = filler + KEY + filler
    files["data/f030.txt"], files["data/f031.txt"] = filler + "PRIVATE", " KEY" + filler  # joined: a false alarm
    root = make_project(files=files)
    (root / "data" / "f020.bin").write_bytes(b"\0" * (1 << 20))  # streamed in chunks, not read ahead
    with pytest.raises(SelectionError) as caught:
        build(root, tmp_path, identity=IDENTITY)
    assert set(caught.value.problems) == {"data/f013.txt", "data/f021.txt", "data/f039.txt"}
