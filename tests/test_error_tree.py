"""The error tree (errors.py): one root, an exit code per class, and transience as a class
(a scheduler retries a Transient, never an AuthenticationError), met on real servers."""

from __future__ import annotations

import socket

import pytest

import sqlsnap
from sqlsnap import errors

from .conftest import MYSQL_HOST, MYSQL_PORT, PG_ADMIN_URL

#: (class, exit code, transient): the tree drawn in errors.py's docstring.
TREE = [
    (errors.SnapError, 1, False),
    (errors.UsageError, 2, False),
    (errors.SourceBusy, 1, True),
    (errors.ConnectError, 3, False),
    (errors.ServerUnreachable, 3, True),
    (errors.AuthenticationError, 3, False),
    (errors.NotFoundError, 4, False),
    (errors.MissingDriverError, 5, False),
    (errors.OutputError, 6, False),
    (errors.OutputUnavailable, 6, True),
    (errors.VerifyError, 7, False),
    (errors.Interrupted, 130, False),
]


@pytest.mark.parametrize("cls,code,transient", TREE, ids=[c.__name__ for c, _, _ in TREE])
def test_each_class_has_its_exit_code_and_transience(cls: type[errors.SnapError], code: int,
                                                     transient: bool) -> None:
    assert issubclass(cls, errors.SnapError) and cls.exit_code == code and code in errors.EXIT_CODES
    err = cls("x", table="t")
    assert err.transient is transient and isinstance(err, errors.Transient) is transient
    assert str(err) == "x" and err.fields == {"table": "t"}


def test_every_error_class_is_in_the_tree() -> None:
    classes = {obj for obj in vars(errors).values()
               if isinstance(obj, type) and issubclass(obj, errors.SnapError)} - {errors.Transient}
    assert classes == {c for c, _, _ in TREE}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_is_transient(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for url in (f"postgresql://u@127.0.0.1:{free_port()}/db", f"mysql://u@127.0.0.1:{free_port()}/db"):
        with pytest.raises(errors.ServerUnreachable) as info:
            sqlsnap.export(url, str(tmp_path / "x.json"))
        assert info.value.transient and info.value.exit_code == 3


@pytest.mark.postgresql
def test_postgresql_refused_password_is_terminal(pg_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS sqlsnap_pw_test")
        admin.execute("CREATE ROLE sqlsnap_pw_test LOGIN PASSWORD 'right-one'")
    try:
        host = PG_ADMIN_URL.split("@", 1)[1]
        # Trust auth on this machine lets any password in; a missing role is refused either way.
        with pytest.raises(errors.AuthenticationError, match=r"check the user name") as info:
            sqlsnap.export(f"postgresql://no_such_role_x:Secret99@{host}/postgres", str(tmp_path / "x.json"))
        assert not info.value.transient and "Secret99" not in str(info.value)
    finally:
        with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as admin:
            admin.execute("DROP ROLE IF EXISTS sqlsnap_pw_test")


@pytest.mark.mysql
def test_mysql_refused_password_is_terminal(mysql_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"mysql://root:Wrong-Secret-42@{MYSQL_HOST}:{MYSQL_PORT}/{mysql_url.rsplit('/', 1)[1]}"
    with pytest.raises(errors.AuthenticationError, match=r"check the user and password") as info:
        sqlsnap.export(url, str(tmp_path / "x.json"))
    assert not info.value.transient and "Wrong-Secret-42" not in str(info.value)
