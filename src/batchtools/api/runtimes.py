"""Estimating job run times from finished jobs' parameters (for chunking with ``lpt``/``binpack``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.registry import Registry, resolve
from .table import get_job_status


def estimate_runtimes(tab: pd.DataFrame, reg: Registry | None = None, **kw) -> pd.DataFrame:
    """Learn run times from the parameters of finished jobs with a random forest
    (scikit-learn's ``RandomForestRegressor``; ``**kw`` go to it) and predict the others.

    ``tab``: ``job_id`` plus predictor columns, e.g. ``bt.unwrap(bt.get_job_pars())``.
    Returns ``job_id``, ``type`` (``"observed"`` or ``"estimated"``) and ``runtime`` (seconds).

    >>> est = bt.estimate_runtimes(bt.unwrap(bt.get_job_pars()))  # doctest: +SKIP
    >>> ids = bt.find_not_done().assign(chunk=bt.lpt(est.runtime[...], n_chunks=10))  # doctest: +SKIP
    """
    reg = resolve(reg)
    if not isinstance(tab, pd.DataFrame) or "job_id" not in tab.columns:
        raise TypeError("tab: a DataFrame with 'job_id' and predictor columns, e.g. bt.unwrap(bt.get_job_pars())")
    try:
        from sklearn.ensemble import RandomForestRegressor
    except ImportError:
        raise ImportError("estimate_runtimes needs scikit-learn: pip install 'pybatchtools[ml]'") from None
    tab = tab.drop_duplicates("job_id").sort_values("job_id").reset_index(drop=True)
    st = get_job_status(tab["job_id"], reg=reg)
    runtime = st["time_running"].dt.total_seconds().to_numpy()
    observed = ~np.isnan(runtime) & st["error"].isna().to_numpy()
    if not observed.any():
        raise ValueError("tab: no finished job among these ids to learn run times from; run a few first")
    X = tab.drop(columns=["job_id"])
    for c in X.columns:
        if X[c].map(lambda v: isinstance(v, (dict, list, tuple))).any():
            raise ValueError(f"tab: column {c!r} holds dicts or lists; unwrap() it first")
    X = pd.get_dummies(X, dummy_na=True).astype(float).fillna(-1.0)
    out = pd.DataFrame({"job_id": tab["job_id"].to_numpy(), "type": np.where(observed, "observed", "estimated"),
                        "runtime": runtime})
    if (~observed).any():
        kw.setdefault("n_estimators", 200)
        kw.setdefault("random_state", reg.seed)
        model = RandomForestRegressor(**kw).fit(X[observed], runtime[observed])
        out.loc[~observed, "runtime"] = model.predict(X[~observed])
    return out
