"""Showing things to people: times in local time to the second, tables whose text is not cut.

The data stays as it is (times are UTC ``Timestamp`` columns, as the API promises); only what
``print``, the REPL and Jupyter show is formatted here.
"""

from __future__ import annotations

import pandas as pd

from .clock import TIME_FORMAT, local_time  # noqa: F401  (re-exported: display's names)


def local_times(col: pd.Series) -> pd.Series:
    """A datetime column as local-time strings to the second ('' for NaT)."""
    from dateutil.tz import tzlocal  # a pandas dependency

    s = pd.to_datetime(col, utc=True)
    out = s.dt.tz_convert(tzlocal()).dt.strftime(TIME_FORMAT)
    return out.where(s.notna(), "")


def durations(col: pd.Series) -> pd.Series:
    """A timedelta column as ``[D days ]HH:MM:SS[.mmm]`` strings, to the millisecond ('' for NaT).

    >>> durations(pd.Series(pd.to_timedelta([0.1234, 3725, 90000, None], unit="s"))).tolist()
    ['00:00:00.123', '01:02:05', '1 days 01:00:00', '']
    """
    s = pd.to_timedelta(col)
    ms = (s.dt.total_seconds() * 1000).round()

    def one(v: float) -> str:
        if v != v:
            return ""
        days, rest = divmod(int(v), 86_400_000)
        hours, rest = divmod(rest, 3_600_000)
        minutes, rest = divmod(rest, 60_000)
        secs, milli = divmod(rest, 1000)
        text = f"{hours:02d}:{minutes:02d}:{secs:02d}" + (f".{milli:03d}" if milli else "")
        return f"{days} days {text}" if days else text

    return pd.Series([one(v) for v in ms.to_numpy()], index=col.index, dtype=object)


def for_people(df: pd.DataFrame) -> pd.DataFrame:
    """A plain copy of ``df`` for display: datetime columns as local-time strings to the second,
    durations to the millisecond."""
    out = pd.DataFrame(df, copy=True)
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c].dtype):
            out[c] = local_times(out[c])
        elif pd.api.types.is_timedelta64_dtype(out[c].dtype):
            out[c] = durations(out[c])
    return out


class DisplayFrame(pd.DataFrame):
    """A DataFrame that shows itself for people: times in local time to the second, durations
    to the millisecond, and (with ``full_text``) text in full instead of cut at pandas'
    ``display.max_colwidth``.

    It is an ordinary DataFrame otherwise (same columns, same values, UTC times); selections and
    copies keep the display. Only the rows pandas shows are converted, so a million-row table
    prints as fast as a plain one.

    >>> df = DisplayFrame({"job_id": [1], "line": ["x" * 80]})
    >>> len(repr(df).splitlines()[-1]) > 80
    True
    """

    full_text = True

    @property
    def _constructor(self):
        return type(self)

    def _options(self) -> tuple:
        return (("display.max_colwidth", None, "display.max_columns", None, "display.expand_frame_repr", False,
                 "display.colheader_justify", "left") if self.full_text else ())

    def _show(self, render, html: bool = False) -> str:
        """``render(frame)`` of the rows pandas would show, converted for people, with the
        dimensions of the whole frame."""
        n = len(self)
        max_rows = pd.get_option("display.max_rows")
        min_rows = pd.get_option("display.min_rows") or max_rows
        opts = list(self._options())
        part = self
        if max_rows and n > max_rows:  # pandas shows min_rows of them: convert only those
            k = max(1, min(min_rows, max_rows) // 2)
            part = pd.concat([self.iloc[: k + 1], self.iloc[n - k:]])
            opts += ["display.max_rows", 2 * k, "display.min_rows", 2 * k]
        shown = for_people(part)
        if self.full_text and not html:  # text left-aligned, as in a log (pandas right-aligns it)
            for c in shown.columns:
                if len(shown) and all(isinstance(v, str) for v in shown[c]):
                    shown[c] = shown[c].str.ljust(int(shown[c].str.len().max()))
        with pd.option_context(*opts) if opts else _nothing():
            text = render(shown)
        if part is not self and text:
            m = len(self.columns)
            text = text.replace(f"{len(part)} rows × {m} columns", f"{n} rows × {m} columns")
            text = text.replace(f"[{len(part)} rows x {m} columns]", f"[{n} rows x {m} columns]")
        return text

    def __repr__(self) -> str:
        return self._show(repr)

    def __str__(self) -> str:
        return self.__repr__()

    def _repr_html_(self) -> str | None:
        return self._show(lambda df: df._repr_html_(), html=True)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class TimesFrame(DisplayFrame):
    """A job table shown for people: times in local time to the second; text cut as pandas does
    (the data stay UTC Timestamps).

    >>> import pandas as pd
    >>> df = TimesFrame({"job_id": [1], "done": pd.to_datetime([0.5], unit="s", utc=True)})
    >>> str(df["done"].dtype), ".5" in repr(df)
    ('datetime64[ns, UTC]', False)
    """

    full_text = False
