"""``lee data import``: one module per source format behind one interface, and the driver that runs them.

Formats (``--format``): ``csv``, ``parquet`` and ``jsonl`` (with a TOML mapping), ``libfm`` and ``libsvm``
(sparse ``label idx:val`` lines, with an optional field map), ``criteo`` (label, 13 integer and 26
categorical features), ``recbole`` (atomic ``.inter`` / ``.user`` / ``.item`` files), ``movielens``
(every GroupLens layout), ``mind`` (``behaviors.tsv`` impressions + ``news.tsv``) and ``obd``
(the Open Bandit Dataset). docs/data-format.md states every convention each one applies.

:func:`import_dataset` reads the source in chunks, checks each chunk, and writes the dataset
directory through :class:`~lee.data.chunked.ChunkedDatasetWriter`, so a log of tens of millions of
rows imports with bounded memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lee.data.chunked import ChunkedDatasetWriter
from lee.data.entity_columns import recorded_checks
from lee.data.importers.base import OPTION_FLAGS, ImportedTables, Importer, ImportOptions
from lee.data.importers.criteo import CriteoImporter
from lee.data.importers.jsonl import JsonLinesImporter
from lee.data.importers.libsvm import LibfmImporter, LibsvmImporter
from lee.data.importers.mind import MindImporter
from lee.data.importers.movielens import MovielensImporter
from lee.data.importers.obd import ObdImporter
from lee.data.importers.recbole import RecboleImporter
from lee.data.importers.tabular import CsvImporter, ParquetImporter
from lee.data.sanity import TopIds, concentration_warnings, require_both_outcomes, split_warnings
from lee.data.spec import DatasetSpec
from lee.errors import InputError

IMPORTERS: dict[str, type[Importer]] = {cls.name: cls for cls in (
    CsvImporter, ParquetImporter, JsonLinesImporter, LibfmImporter, LibsvmImporter, CriteoImporter, RecboleImporter,
    MovielensImporter, MindImporter, ObdImporter)}
FORMATS = tuple(IMPORTERS)

__all__ = ["FORMATS", "IMPORTERS", "ImportOptions", "ImportReport", "ImportedTables", "Importer", "import_dataset"]


@dataclass
class ImportReport:
    """What an import wrote and how: the description as written, the conventions applied, the cost."""

    out: Path
    format: str
    src: Path
    spec: DatasetSpec
    rows: int
    seconds: float
    out_of_core: bool
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What ``lee data import`` prints."""
        from lee.timeutil import iso, parse_event_time

        s = self.spec
        span = s.time_span
        return {
            "dataset": str(self.out), "format": self.format, "source": str(self.src), "name": s.name,
            "events": self.rows,
            "users": s.tables["users"].rows if "users" in s.tables else None,
            "items": s.tables["items"].rows if "items" in s.tables else None,
            "roles": s.roles.to_dict(),
            "fields": [{"name": f.name, "role": f.role.value, "type": f.type.value, "table": f.table,
                        "cardinality": f.cardinality} for f in s.fields],
            "label_rule": s.source.get("label_rule"), "label_rate": s.label_rate,
            "time_span": [iso(parse_event_time(span[0])), iso(parse_event_time(span[1]))] if span else None,
            "split": s.split.describe(), "notes": self.notes,
            "entity_columns": [c.describe() for c in recorded_checks(s) if c.derived],
            "out_of_core": self.out_of_core, "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows / self.seconds) if self.seconds > 0 else None,
        }


def importer_for(fmt: str) -> type[Importer]:
    """The importer class of ``--format fmt``."""
    if fmt not in IMPORTERS:
        raise InputError(f"unknown import format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return IMPORTERS[fmt]


def check_options(cls: type[Importer], options: ImportOptions) -> None:
    """Refuse options the format does not read (no silently ignored flag)."""
    given = {k for k in options.model_fields_set if k in OPTION_FLAGS and getattr(options, k) is not None}
    extra = sorted(given - cls.accepts)
    if extra:
        takes = ", ".join(OPTION_FLAGS[k] for k in sorted(cls.accepts)) or "none of them"
        raise InputError(f"{', '.join(OPTION_FLAGS[k] for k in extra)} does not apply to --format {cls.name} "
                         f"(it takes {takes})")


def import_dataset(fmt: str, src: str | Path, out: str | Path, options: ImportOptions | None = None, *,
                   overwrite: bool = False, progress: bool = False) -> ImportReport:
    """Import ``src`` (format ``fmt``) into the dataset directory ``out``; see the module docstring."""
    options = options or ImportOptions()
    cls = importer_for(fmt)
    check_options(cls, options)
    src, out = Path(src), Path(out)
    if not src.exists():
        raise InputError(f"{src}: no such file or directory")
    start = time.perf_counter()
    with ChunkedDatasetWriter(out, overwrite=overwrite, spill_rows=options.spill_rows,
                              memory_mb=options.memory_mb, entity_tolerance=options.entity_tolerance) as writer:
        importer = cls(src, options)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(unit=" rows", unit_scale=True, desc=f"importing {src.name}", leave=False)
        positives = rows = 0
        span: tuple[int, int] | None = None
        tops: dict[str, TopIds] = {}
        try:
            for chunk in importer.events():
                assert importer.spec is not None, f"{cls.__name__} yielded events before setting its spec"
                writer.add(chunk, importer.spec)
                roles = importer.spec.roles
                positives += int(chunk[roles.label].sum())
                rows += len(chunk)
                if len(chunk):
                    ts = chunk[roles.ts].to_numpy()
                    span = (min(span[0], int(ts.min())), max(span[1], int(ts.max()))) if span else \
                        (int(ts.min()), int(ts.max()))
                for role, col in (("user", roles.user_id), ("item", roles.item_id)):
                    tops.setdefault(role, TopIds(col)).add(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        tables = importer.result()
        require_both_outcomes(src, tables.spec.roles.label, tables.spec.source.get("label_rule"), positives, rows)
        found = {role: (t.column, *top) for role, t in tops.items() if (top := t.top()) is not None}
        notes = [*tables.notes, *("warning: " + w for w in [*concentration_warnings(found, rows),
                                                             *split_warnings(tables.spec.split, span)])]
        info = writer.finish(tables.spec.model_copy(update={"source": {**tables.spec.source, "notes": notes}}),
                             tables.users, tables.items)
    notes = list(info.spec.source.get("notes", []))
    return ImportReport(out=out, format=fmt, src=src, spec=info.spec, rows=info.rows,
                        seconds=time.perf_counter() - start, out_of_core=info.out_of_core, notes=notes)
