"""``obd``: the Open Bandit Dataset, read by :func:`lee.world.obd.read_obd` and written as a dataset.

Conventions are the reader's (see :mod:`lee.world.obd`): both behaviour policies of one campaign
(``--campaign``, default ``all``) are one log whose ``arm`` column is the policy; OBD has no user
id, so the four hashed user features joined with ``|`` (``user_key``) stand in for one; item
features come from the ``random`` policy's item_context; click = the logged click. As a dataset:
the user features form the users table and user fields, the item features the items table and
item fields (``item_feature_0`` numeric), ``position`` and ``arm`` are context fields and the hour
of day a derived one; ``propensity_score`` and ``campaign`` stay as columns.

The reader loads the CSVs whole (the small release is 10,000 rows per policy and campaign), so
this importer hands over one chunk: it does not stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pandas as pd

from lee.data.importers.base import ImportedTables, Importer, ImportOptions
from lee.data.spec import DatasetSpec, Derived, FieldRole, FieldSpec, FieldType, Roles
from lee.errors import InputError

# lee.world.obd pulls in torch (its stream encoder); it is imported when an OBD import runs, not before
CAMPAIGNS = ("all", "men", "women")
USER_FEATURES = tuple(f"user_feature_{k}" for k in range(4))
ITEM_FEATURES = tuple(f"item_feature_{k}" for k in range(4))


class ObdImporter(Importer):
    """The Open Bandit Dataset's ``{random,bts}/{campaign}/`` CSVs."""

    name = "obd"
    description = "Open Bandit Dataset: random/ and bts/ policies of one --campaign, merged with an arm column"
    accepts: ClassVar[frozenset[str]] = frozenset({"campaign", "split"})

    def __init__(self, src: Path, options: ImportOptions) -> None:
        super().__init__(src, options)
        self.campaign = options.campaign or "all"
        if self.campaign not in CAMPAIGNS:
            raise InputError(f"--campaign {self.campaign}: choose one of {', '.join(CAMPAIGNS)}")
        fields = (FieldSpec(name="position", role=FieldRole.CONTEXT),
                  FieldSpec(name="arm", role=FieldRole.CONTEXT),
                  FieldSpec(name="hour", role=FieldRole.CONTEXT, derived=Derived.HOUR_OF_DAY),
                  *(FieldSpec(name=c, role=FieldRole.USER, table="users") for c in USER_FEATURES),
                  FieldSpec(name="item_feature_0", role=FieldRole.ITEM, type=FieldType.NUMERIC, table="items"),
                  *(FieldSpec(name=c, role=FieldRole.ITEM, table="items") for c in ITEM_FEATURES[1:]))
        self.spec = DatasetSpec(name=options.name or f"obd-{self.campaign}",
                                roles=Roles(label="click", user_id="user_key", item_id="item_id", ts="ts"),
                                fields=fields, split=self.split())
        self.log: pd.DataFrame | None = None

    def events(self) -> Iterator[pd.DataFrame]:
        from lee.world.obd import read_obd

        self.log = read_obd(self.src, campaign=self.campaign)
        yield self.log[["ts", "user_key", "item_id", "click", "position", "arm", "campaign", "propensity_score"]]

    def result(self) -> ImportedTables:
        from lee.world.obd import LABEL_RULE, USER_KEY_RULE

        assert self.spec is not None and self.log is not None
        log = self.log
        users = log[["user_key", *USER_FEATURES]].drop_duplicates("user_key").sort_values("user_key")
        items = log[["item_id", *ITEM_FEATURES]].drop_duplicates("item_id").sort_values("item_id")
        spec = self.spec.model_copy(update={"source": {
            "format": self.name, "path": str(self.src.resolve()), "campaign": self.campaign,
            "label_rule": LABEL_RULE, "user_key_rule": USER_KEY_RULE}})
        notes = [f"both policies of campaign {self.campaign} merged; arm = the behaviour policy",
                 f"user id = user_key: {USER_KEY_RULE}",
                 "read whole, not streamed (lee.world.obd reads each CSV at once)"]
        return ImportedTables(spec=spec, users=users.reset_index(drop=True), items=items.reset_index(drop=True),
                              notes=notes)
