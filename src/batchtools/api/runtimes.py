"""Estimating job run times from finished jobs' parameters (for chunking with ``lpt``/``binpack``)."""

from __future__ import annotations

import heapq

import numpy as np
import pandas as pd

from ..core.registry import RegistryState, resolve


def _duration(seconds: float, nc: int) -> str:
    """R's format: ``0d 01h 00m 0.4s`` (days padded to ``nc`` digits)."""
    return (f"{int(seconds // 86400):0{nc}d}d {int(seconds // 3600 % 24):02d}h "
            f"{int(seconds // 60 % 60):02d}m {seconds % 60:.1f}s")


def _longest_bin(runtimes: np.ndarray, n: int) -> float:
    """The largest sum of ``n`` chunks balanced longest-processing-time-first (as R, with ``lpt``)."""
    loads = [0.0] * n
    for w in np.sort(runtimes)[::-1]:
        heapq.heapreplace(loads, loads[0] + float(w))
    return max(loads)


class RuntimeEstimate(pd.DataFrame):
    """What :func:`estimate_runtimes` returns: the table ``job_id``, ``type``, ``runtime`` (a
    DataFrame, usable as one) plus ``model`` (the fitted regressor) and ``runtimes`` (the table
    as a plain DataFrame), as R's ``RuntimeEstimate``. Printing it gives R's summary
    (:meth:`summary`) above the table; ``summary(n)`` adds the time on ``n`` CPUs ("Parallel").
    Derived frames (filtering, sorting) are plain DataFrames.
    """

    _metadata = ["model"]

    @property
    def _constructor(self):
        return pd.DataFrame

    @property
    def runtimes(self) -> pd.DataFrame:
        """The table ``job_id``, ``type``, ``runtime`` (R's ``$runtimes``)."""
        return pd.DataFrame(self)

    def summary(self, n: int = 1) -> str:
        """R's ``print(x, n)``: the time done, remaining, on ``n`` CPUs, and in total.

        >>> import pandas as pd
        >>> est = RuntimeEstimate({"job_id": [1, 2, 3], "type": ["observed", "estimated", "estimated"],
        ...                        "runtime": [3600.4, 60.0, 30.5]})
        >>> print(est.summary(n=2))
        Runtime Estimate for 3 jobs with 2 CPUs
          Done     : 0d 01h 00m 0.4s
          Remaining: 0d 00h 01m 30.5s
          Parallel : 0d 00h 01m 0.0s
          Total    : 0d 01h 01m 30.9s
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n: must be a positive int (the number of CPUs), got {n!r}")
        runtime = self["runtime"].to_numpy(dtype=float)
        estimated = (self["type"] == "estimated").to_numpy()
        done, remaining = float(runtime[~estimated].sum()), float(runtime[estimated].sum())
        total = done + remaining
        nc = max(1, len(str(int(total // 86400))))
        lines = [f"Runtime Estimate for {len(self)} jobs with {n} CPUs", f"  Done     : {_duration(done, nc)}"]
        if estimated.any():
            lines.append(f"  Remaining: {_duration(remaining, nc)}")
            if n >= 2:
                lines.append(f"  Parallel : {_duration(_longest_bin(runtime[estimated], int(n)), nc)}")
        lines.append(f"  Total    : {_duration(total, nc)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary() + "\n\n" + pd.DataFrame(self).__repr__()

    __str__ = __repr__


def estimate_runtimes(tab: pd.DataFrame, reg: RegistryState | None = None, **kw) -> RuntimeEstimate:
    """Learn run times from the parameters of finished jobs with a random forest
    (scikit-learn's ``RandomForestRegressor``; ``**kw`` go to it) and predict the others.

    ``tab``: ``job_id`` plus predictor columns, e.g. ``bt.unwrap(bt.get_job_pars())``.
    Returns a :class:`RuntimeEstimate`: a DataFrame ``job_id``, ``type`` (``"observed"`` or
    ``"estimated"``) and ``runtime`` (seconds), with the fitted ``model``; ``est.summary(n)`` is
    R's ``print(est, n)``.

    >>> import batchtools as bt, time
    >>> reg = bt.make_registry(file_dir=None, seed=1)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda ms: time.sleep(ms / 1000), ms=[1, 2, 3, 30, 40, 60])
    >>> _ = bt.submit_jobs([1, 2, 3, 4])
    >>> est = bt.estimate_runtimes(bt.unwrap(bt.get_job_pars()))
    >>> est["type"].tolist()
    ['observed', 'observed', 'observed', 'observed', 'estimated', 'estimated']
    >>> todo = est[est["type"] == "estimated"]
    >>> bt.lpt(todo["runtime"], n_chunks=2).tolist()  # balanced chunks for the rest
    [1, 2]
    >>> print(est.summary(n=2).splitlines()[0])
    Runtime Estimate for 6 jobs with 2 CPUs
    """
    reg = resolve(reg)
    if not isinstance(tab, pd.DataFrame) or "job_id" not in tab.columns:
        raise TypeError("tab: a DataFrame with 'job_id' and predictor columns, e.g. bt.unwrap(bt.get_job_pars())")
    try:
        from sklearn.ensemble import RandomForestRegressor
    except ImportError:
        raise ImportError("estimate_runtimes needs scikit-learn: pip install 'pybatchtools[ml]'") from None
    reg.sync()
    ids = reg.ids(tab["job_id"], arg="tab")  # a duplicated job id is refused, as in R
    tab = tab.sort_values("job_id").reset_index(drop=True)
    st = reg.status
    pos = reg.pos(ids)
    runtime = st["done"].to_numpy()[pos] - st["started"].to_numpy()[pos]
    observed = ~np.isnan(runtime) & st["error"].isna().to_numpy()[pos]
    if not observed.any():
        raise ValueError("tab: no finished job among these ids to learn run times from; run a few first")
    X = tab.drop(columns=["job_id"])
    for c in X.columns:
        if X[c].map(lambda v: isinstance(v, (dict, list, tuple))).any():
            raise ValueError(f"tab: column {c!r} holds dicts or lists; unwrap() it first")
    X = pd.get_dummies(X, dummy_na=True).astype(float).fillna(-1.0)
    out = RuntimeEstimate({"job_id": ids, "type": np.where(observed, "observed", "estimated"), "runtime": runtime})
    kw.setdefault("n_estimators", 200)
    kw.setdefault("random_state", reg.seed)
    model = RandomForestRegressor(**kw).fit(X[observed], runtime[observed])
    if (~observed).any():
        out.loc[~observed, "runtime"] = model.predict(X[~observed])
    out.model = model
    return out
