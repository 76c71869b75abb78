"""The public surface is explicit and pinned: a change to it is a deliberate change here."""

import subprocess
import sys
import textwrap
from pathlib import Path

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


def _fresh(code: str, tmp_path: Path, name: str = "probe.py") -> list[str]:
    """Run ``code`` in a new interpreter (this one has imported everything already)."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(code))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_command_imports_what_its_command_uses(tmp_path: Path) -> None:
    """``import sqlsnap.cli`` (every command's start) does not load the rest of the library:
    restore, inspect, the AI hand-off and the service come when a command asks for them."""
    loaded = _fresh("""
        import sys
        import sqlsnap.cli
        print(*sorted(m for m in sys.modules if m.startswith("sqlsnap")))
    """, tmp_path)
    for module in ("sqlsnap.restore", "sqlsnap.inspect", "sqlsnap.ai", "sqlsnap.service", "sqlsnap.exporter",
                   "sqlsnap.snapshot"):
        assert module not in loaded, module


def test_functions_keep_their_names_beside_their_submodules(tmp_path: Path) -> None:
    """``plan``, ``inspect`` and ``restore`` are functions of the surface and submodules too:
    importing the submodule (directly, or as a dependency of another name) leaves the function."""
    assert _fresh("""
        import sqlsnap
        sqlsnap.export                      # loads sqlsnap.plan as a dependency
        import sqlsnap.plan, sqlsnap.inspect, sqlsnap.restore
        from sqlsnap.plan import build_plan   # the submodule is still there
        from sqlsnap import plan, inspect, restore
        print(*(callable(f) and f.__module__ for f in (sqlsnap.plan, sqlsnap.inspect, sqlsnap.restore,
                                                       plan, inspect, restore)))
    """, tmp_path) == ["sqlsnap.exporter.job", "sqlsnap.inspect", "sqlsnap.restore"] * 2
    everything = "import sqlsnap\nprint(sorted(set(sqlsnap.__all__) - set(dir(sqlsnap))))"
    assert _fresh(everything, tmp_path) == ["[]"]


def test_the_command_collects_garbage_once_its_work_starts(tmp_path: Path) -> None:
    """The ``sqlsnap`` command starts with the collector off (its imports make no garbage) and
    turns it on when its work starts; a program that is not the command keeps its collector."""
    probe = """
        import gc
        import sqlsnap.cli.errors as errors
        print(gc.isenabled(), errors.run(gc.isenabled))
    """
    assert _fresh(probe, tmp_path, "sqlsnap") == ["False", "True"]
    assert _fresh(probe, tmp_path, "other") == ["True", "True"]
