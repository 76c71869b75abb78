"""The export: source -> plan -> policy -> writer -> codecs -> store, from one snapshot.

:mod:`.job` runs it; :mod:`.readers` drains the source on reader threads;
:mod:`.channel` carries each part's bytes to the document writer; :mod:`.result` is what
it reports; :mod:`.memory` tunes the allocator for long exports.
"""

from .job import DEFAULT_JOBS, FORMATS, Export, export, plan
from .result import ExportResult, Progress, TableResult

__all__ = ["DEFAULT_JOBS", "FORMATS", "Export", "ExportResult", "Progress", "TableResult", "export", "plan"]
