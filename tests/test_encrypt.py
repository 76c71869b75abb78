"""Encryption at rest with age: round trips with the real ``age`` CLI in both directions,
recipients files, SSH keys, and the failures (wrong key, tampered or truncated files, bad
recipients) as one-line errors that never echo a secret key."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sqlsnap.cli import main

pytest.importorskip("pyrage")
AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")
pytestmark = pytest.mark.skipif(not (AGE and AGE_KEYGEN),
                                reason="the age CLI is not installed (apt-get install age)")
MAGIC = b"age-encryption.org/v1\n"


def run(*args: str) -> tuple[int, bytes, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout_bytes, result.stderr


def keypair(folder: Path, name: str = "key") -> tuple[Path, str]:
    key = folder / f"{name}.txt"
    subprocess.run([AGE_KEYGEN, "-o", str(key)], check=True, capture_output=True)
    public = subprocess.run([AGE_KEYGEN, "-y", str(key)], check=True, capture_output=True, text=True)
    return key, public.stdout.strip()


def age_decrypt(key: Path, path: Path) -> bytes:
    return subprocess.run([AGE, "-d", "-i", str(key), str(path)], check=True, capture_output=True).stdout


def unzstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE companies (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, company_id INTEGER REFERENCES companies(id), "
                 "email TEXT, avatar BLOB)")
    conn.executemany("INSERT INTO companies VALUES (?, ?)", [(1, "Acme"), (2, "Globex ☃")])
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?)",
                     [(i, 1 + i % 2, f"user{i}@example.com", bytes([i % 256]) * 50) for i in range(1, 3001)])
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    return keypair(tmp_path)


def test_sqlsnap_encrypts_and_age_decrypts(db: str, key: tuple[Path, str], tmp_path: Path) -> None:
    key_file, public = key
    out = tmp_path / "app.json.zst.age"
    code, stdout, err = run("export", db, "-o", str(out), "--encrypt-to", public, "--json", "-q")
    assert code == 0, err
    summary = json.loads(stdout)
    data = out.read_bytes()
    assert data.startswith(MAGIC) and summary["encrypted"] and summary["compression"] == "zstd"
    assert summary["sha256"] == hashlib.sha256(data).hexdigest()
    assert (tmp_path / "app.json.zst.age.sha256").read_text() == f"{summary['sha256']}  app.json.zst.age\n"

    document = json.loads(unzstd(age_decrypt(key_file, out)))
    plain = tmp_path / "plain.json"
    assert run("export", db, "-o", str(plain), "-q")[0] == 0
    reference = json.loads(plain.read_bytes())
    assert document["data"] == reference["data"]
    assert document["metadata"]["tables"] == reference["metadata"]["tables"]


def test_age_encrypts_and_sqlsnap_decrypts_and_verifies(db: str, key: tuple[Path, str],
                                                        tmp_path: Path) -> None:
    key_file, public = key
    snapshot = tmp_path / "app.json.gz"
    assert run("export", db, "-o", str(snapshot), "-q")[0] == 0
    for armor in ([], ["-a"]):
        encrypted = tmp_path / "app.json.gz.age"
        subprocess.run([AGE, "-e", *armor, "-r", public, "-o", str(encrypted), str(snapshot)], check=True)
        back = tmp_path / "back.json.gz"
        code, _, err = run("decrypt", str(encrypted), "-i", str(key_file), "-o", str(back))
        assert code == 0, err
        assert back.read_bytes() == snapshot.read_bytes()
        code, out, err = run("verify", str(encrypted), "--identity", str(key_file))
        assert code == 0, err
        assert out.decode().startswith(f"OK {encrypted}: 2 tables, 3,002 rows")


def test_decrypt_defaults_to_the_name_without_age(db: str, key: tuple[Path, str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    key_file, public = key
    monkeypatch.chdir(tmp_path)
    assert run("export", db, "-o", "app.json.zst.age", "--encrypt-to", public, "-q")[0] == 0
    code, _, err = run("decrypt", "app.json.zst.age", "-i", str(key_file))
    assert code == 0, err
    assert (tmp_path / "app.json.zst").read_bytes() == age_decrypt(key_file, tmp_path / "app.json.zst.age")
    code, out, err = run("decrypt", "app.json.zst.age", "-i", str(key_file), "-o", "-")
    assert code == 0 and out == (tmp_path / "app.json.zst").read_bytes()


def test_recipients_file_and_ssh_keys(db: str, tmp_path: Path) -> None:
    first, first_public = keypair(tmp_path, "first")
    second, second_public = keypair(tmp_path, "second")
    recipients = tmp_path / "recipients.txt"
    recipients.write_text(f"# the backup team\n{first_public}\n\n  {second_public}  \n")
    extra: list[str] = []
    ssh_key = tmp_path / "id_ed25519"
    if shutil.which("ssh-keygen"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", str(ssh_key)],
                       check=True)
        extra = ["--encrypt-to", (tmp_path / "id_ed25519.pub").read_text().strip()]
    out = tmp_path / "app.json.age"
    code, _, err = run("export", db, "-o", str(out), "--encrypt-to-file", str(recipients), "-q", *extra)
    assert code == 0, err
    first_plain = age_decrypt(first, out)
    assert first_plain == age_decrypt(second, out)
    assert json.loads(first_plain)["metadata"]["total_rows"] == 3002
    if extra:
        assert age_decrypt(ssh_key, out) == first_plain
        code, _, err = run("verify", str(out), "-i", str(ssh_key))
        assert code == 0, err


def test_wrong_identity_is_refused_and_writes_nothing(db: str, key: tuple[Path, str], tmp_path: Path) -> None:
    _, public = key
    other, _ = keypair(tmp_path, "other")
    out = tmp_path / "app.json.age"
    assert run("export", db, "-o", str(out), "--encrypt-to", public, "-q")[0] == 0
    code, _, err = run("decrypt", str(out), "-i", str(other), "-o", str(tmp_path / "plain.json"))
    assert code == 2
    assert "none of the given identities can decrypt" in err
    assert not (tmp_path / "plain.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    code, _, err = run("verify", str(out), "-i", str(other))
    assert code == 2 and "none of the given identities" in err


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_ciphertext_fails_authentication(db: str, key: tuple[Path, str], tmp_path: Path,
                                                 damage: str) -> None:
    key_file, public = key
    out = tmp_path / "app.json.age"
    assert run("export", db, "-o", str(out), "--encrypt-to", public, "-q")[0] == 0
    data = bytearray(out.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        del data[len(data) - 100:]
    out.write_bytes(bytes(data))
    code, _, err = run("decrypt", str(out), "-i", str(key_file), "-o", str(tmp_path / "plain.json"))
    assert code == 7, err
    assert "could not be decrypted: the age data is damaged or truncated" in err
    assert not (tmp_path / "plain.json").exists()
    code, _, err = run("verify", str(out), "-i", str(key_file))
    assert code == 7, err
    # The checksum file, written with the intact file, also disagrees now.
    assert "SHA-256 also differs from app.json.age.sha256" in err or "could not be decrypted" in err


def test_encrypted_stdout(db: str, key: tuple[Path, str], tmp_path: Path) -> None:
    key_file, public = key
    code, out, err = run("export", db, "-o", "-", "--encrypt-to", public, "--compress", "zstd", "-q")
    assert code == 0, err
    assert out.startswith(MAGIC)
    (tmp_path / "x.age").write_bytes(out)
    assert json.loads(unzstd(age_decrypt(key_file, tmp_path / "x.age")))["metadata"]["format"] == "sqlsnap"


def test_bad_recipients_and_identities(db: str, key: tuple[Path, str], tmp_path: Path) -> None:
    key_file, _ = key
    secret = next(line for line in key_file.read_text().splitlines() if line.startswith("AGE-SECRET-KEY-"))
    cases = [
        (["--encrypt-to", "age1notavalidkey"], "invalid age recipient"),
        (["--encrypt-to", "hello"], "is not an age recipient"),
        (["--encrypt-to", secret], "not a recipient"),
        (["--encrypt-to-file", str(key_file)], "holds a secret key"),
        (["--encrypt-to-file", str(tmp_path / "missing.txt")], "does not exist"),
    ]
    for args, message in cases:
        code, _, err = run("export", db, "-o", str(tmp_path / "x.json.age"), *args)
        assert code in (2, 4), (args, err)
        assert message in err, (args, err)
        assert secret not in err and secret[20:] not in err
    assert not (tmp_path / "x.json.age").exists()

    bad_identity = tmp_path / "bad.txt"
    bad_identity.write_text("# comment\nsomething-secret-looking\n")
    code, _, err = run("decrypt", str(tmp_path / "x.json.age"), "-i", str(bad_identity))
    assert code == 2 and "line 2 of" in err and "something-secret-looking" not in err


def test_usage_errors(db: str, key: tuple[Path, str], tmp_path: Path) -> None:
    _, public = key
    code, _, err = run("export", db, "-o", str(tmp_path / "x.json.age"))
    assert code == 2 and "ends in .age but no recipient" in err
    code, _, err = run("export", db, "--format", "jsonl", "-o", str(tmp_path / "folder"),
                       "--encrypt-to", public)
    assert code == 2 and "--format json only" in err


def test_missing_pyrage_names_the_extra(db: str, key: tuple[Path, str], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyrage", None)
    code, _, err = run("export", db, "-o", str(tmp_path / "x.json.age"), "--encrypt-to", key[1])
    assert code == 5 and "pip install 'sqlsnap[encrypt]'" in err
