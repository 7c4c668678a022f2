"""The TOML mapping of ``lee data import --format csv|parquet --mapping map.toml``.

It says which columns of a log play the dataset's roles, which are features (with role and
type), how to read the time and the text, and where the users and items side tables are::

    name = "my-log"                      # optional
    ids = "auto"                         # auto | integer | text
    positive = "rating>=4"               # optional click rule (else roles.label holds 0/1)

    [roles]
    label = "click"                      # 0/1 column (omit with a click rule)
    user_id = "uid"
    item_id = "ad_id"
    ts = "time"                          # omit: row order is the time (row k -> k seconds)
    value = "price"                      # optional
    part = "part"                        # optional: upstream / downstream

    [time]
    unit = "ms"                          # s | ms | us | ns | iso | format
    format = "%d/%m/%Y %H:%M"            # with unit = "format"

    [csv]
    separator = ","                      # one character, "\\t", or a longer one such as "::"
    header = true
    columns = ["..."]                    # names when header = false
    encoding = "utf-8"
    quoting = true

    [[fields]]
    name = "device"
    role = "context"                     # user | item | context
    type = "categorical"                 # categorical | numeric | multi
    table = "events"                     # events | users | items
    column = "device_type"               # default: name
    separator = "|"                      # multi only

    [users]                              # optional side table, path relative to this file
    file = "users.csv"
    id = "uid"
    [users.csv]                          # its own text layout (default: the [csv] one)

    [split]                              # optional, as in dataset.json
    kind = "part"

Loaded with :func:`lee.config.load_config`: strict types, unknown keys refused with the known
ones listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from lee.config import ConfigModel, load_config
from lee.data.spec import Derived, FieldRole, FieldType, SplitSpec, Where


class CsvLayout(ConfigModel):
    """How a delimited text file is laid out."""

    config_name: ClassVar[str] = "mapping [csv]"

    separator: str = Field(",", min_length=1)
    header: bool = True
    columns: tuple[str, ...] | None = None
    encoding: str = "utf-8"
    quoting: bool = True

    @model_validator(mode="after")
    def _names(self) -> CsvLayout:
        if not self.header and not self.columns:
            raise ValueError("needs columns (the column names) when header = false")
        return self


class TimeSettings(ConfigModel):
    """How the time column is written."""

    config_name: ClassVar[str] = "mapping [time]"

    unit: Literal["s", "ms", "us", "ns", "iso", "format"] = "s"
    format: str | None = None

    @model_validator(mode="after")
    def _format(self) -> TimeSettings:
        if self.unit == "format" and not self.format:
            raise ValueError("needs format (a strptime pattern such as \"%Y-%m-%d %H:%M:%S\") when unit = \"format\"")
        if self.unit != "format" and self.format:
            raise ValueError("format is read only with unit = \"format\"")
        return self


class MappingRoles(ConfigModel):
    """Which source columns play the dataset's roles."""

    config_name: ClassVar[str] = "mapping [roles]"

    label: str | None = None
    user_id: str
    item_id: str
    ts: str | None = None
    value: str | None = None
    part: str | None = None


class MappingField(ConfigModel):
    """One declared feature."""

    config_name: ClassVar[str] = "mapping [[fields]]"

    name: str = Field(min_length=1)
    role: FieldRole
    type: FieldType = FieldType.CATEGORICAL
    table: Literal["events", "users", "items"] = "events"
    column: str | None = None
    separator: str = "|"
    derived: Derived | None = None

    @property
    def source(self) -> str:
        return self.column or self.name


class SideTable(ConfigModel):
    """A users or items table: one row per id, every column kept as an attribute."""

    config_name: ClassVar[str] = "mapping side table"

    file: str
    id: str
    csv: CsvLayout | None = None


class Mapping(ConfigModel):
    """The whole mapping file."""

    config_name: ClassVar[str] = "mapping"

    name: str | None = None
    ids: Literal["auto", "integer", "text"] = "auto"
    positive: str | None = None
    roles: MappingRoles
    time: TimeSettings = TimeSettings()
    csv: CsvLayout = CsvLayout()
    fields: tuple[MappingField, ...] = ()
    users: SideTable | None = None
    items: SideTable | None = None
    split: SplitSpec = SplitSpec()
    downstream_where: Where | None = None

    @model_validator(mode="after")
    def _label(self) -> Mapping:
        if self.roles.label is None and self.positive is None:
            raise ValueError("needs roles.label (a 0/1 column) or positive (a click rule such as \"rating>=4\")")
        if self.roles.label is not None and self.positive is not None:
            raise ValueError("takes roles.label (a 0/1 column) or positive (a click rule), not both")
        for f in self.fields:
            if f.table == "users" and self.users is None:
                raise ValueError(f"field {f.name} lives in the users table, but there is no [users] table")
            if f.table == "items" and self.items is None:
                raise ValueError(f"field {f.name} lives in the items table, but there is no [items] table")
        return self


def load_mapping(path: Path) -> Mapping:
    """The mapping at ``path``, strictly typed (a ConfigError names the key at fault)."""
    return load_config(Mapping, path, what="mapping file")
