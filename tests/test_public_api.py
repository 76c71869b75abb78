"""The public surface is explicit and pinned: a change to it is a deliberate change here."""

import sqlsnap


def test_all_is_sorted_and_pinned() -> None:
    assert sqlsnap.__all__ == sorted(sqlsnap.__all__)
    assert set(sqlsnap.__all__) >= {
        "ConnectError", "ExportResult", "Interrupted", "MissingDriverError", "NotFoundError",
        "OutputError", "SnapError", "TableResult", "UsageError", "__version__", "export",
    }
    for name in sqlsnap.__all__:
        assert hasattr(sqlsnap, name), name


def test_errors_share_one_root_and_distinct_exit_codes() -> None:
    errors = [sqlsnap.UsageError, sqlsnap.ConnectError, sqlsnap.NotFoundError,
              sqlsnap.MissingDriverError, sqlsnap.OutputError, sqlsnap.Interrupted]
    assert all(issubclass(e, sqlsnap.SnapError) for e in errors)
    codes = [e.exit_code for e in errors]
    assert len(set(codes)) == len(codes)
    from sqlsnap.errors import EXIT_CODES

    assert set(codes) <= set(EXIT_CODES)


def test_the_public_surface_is_exactly_this() -> None:
    """Adding or removing a public name is a decision: change this list with it."""
    assert sqlsnap.__all__ == [
        "AuthenticationError", "Condition", "ConnectError", "Export", "ExportOptions", "ExportResult",
        "InspectResult", "Interrupted", "MissingDriverError", "NotFoundError", "OutputError",
        "OutputUnavailable", "Plan", "PolicyOptions", "RestoreResult", "RowFilter", "SegmentOptions",
        "ServerUnreachable", "SnapError", "Snapshot", "TableResult", "Transient", "UsageError",
        "VerifyError", "VerifyResult", "__version__", "export", "inspect", "open_snapshot", "plan", "query",
        "restore", "verify",
    ]
