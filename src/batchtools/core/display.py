"""Showing things to people: times in local time to the second, tables whose text is not cut.

The data stays as it is (times are UTC ``Timestamp`` columns, as the API promises); only what
``print``, the REPL and Jupyter show is formatted here.
"""

from __future__ import annotations

import time

import pandas as pd

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def local_time(t: float | None) -> str:
    """Seconds since the epoch as local time to the second ('' for missing).

    >>> local_time(None)
    ''
    >>> len(local_time(0.0))
    19
    """
    if t is None or t != t:
        return ""
    return time.strftime(TIME_FORMAT, time.localtime(t))


def local_times(col: pd.Series) -> pd.Series:
    """A datetime column as local-time strings to the second ('' for NaT)."""
    from dateutil.tz import tzlocal  # a pandas dependency

    s = pd.to_datetime(col, utc=True)
    out = s.dt.tz_convert(tzlocal()).dt.strftime(TIME_FORMAT)
    return out.where(s.notna(), "")


def for_people(df: pd.DataFrame) -> pd.DataFrame:
    """A plain copy of ``df`` for display: datetime columns as local-time strings to the second."""
    out = pd.DataFrame(df, copy=True)
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c].dtype):
            out[c] = local_times(out[c])
    return out


class DisplayFrame(pd.DataFrame):
    """A DataFrame that shows itself for people: times in local time to the second, and (with
    ``full_text``) text columns in full instead of cut at pandas' ``display.max_colwidth``.

    It is an ordinary DataFrame otherwise (same columns, same values, UTC times); selections and
    copies keep the display.

    >>> df = DisplayFrame({"job_id": [1], "line": ["x" * 80]})
    >>> len(repr(df).splitlines()[-1]) > 80
    True
    """

    full_text = True

    @property
    def _constructor(self):
        return type(self)

    def _shown(self) -> pd.DataFrame:
        out = for_people(self)
        if self.full_text:  # text left-aligned, as in a log (pandas right-aligns it)
            for c in out.columns:
                if len(out) and all(isinstance(v, str) for v in out[c]):
                    width = int(out[c].str.len().max())
                    out[c] = out[c].str.ljust(width)
        return out

    def _options(self) -> tuple:
        return (("display.max_colwidth", None, "display.max_columns", None, "display.expand_frame_repr", False,
                 "display.colheader_justify", "left") if self.full_text else ())

    def __repr__(self) -> str:
        shown = self._shown()
        opts = self._options()
        if opts:
            with pd.option_context(*opts):
                return repr(shown)
        return repr(shown)

    def __str__(self) -> str:
        return self.__repr__()

    def _repr_html_(self) -> str | None:
        shown = for_people(self)  # HTML aligns by itself
        opts = self._options()
        if opts:
            with pd.option_context(*opts):
                return shown._repr_html_()
        return shown._repr_html_()
