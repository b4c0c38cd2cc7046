"""Estimating job run times from finished jobs' parameters (for chunking with ``lpt``/``binpack``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.registry import RegistryState, resolve


def estimate_runtimes(tab: pd.DataFrame, reg: RegistryState | None = None, **kw) -> pd.DataFrame:
    """Learn run times from the parameters of finished jobs with a random forest
    (scikit-learn's ``RandomForestRegressor``; ``**kw`` go to it) and predict the others.

    ``tab``: ``job_id`` plus predictor columns, e.g. ``bt.unwrap(bt.get_job_pars())``.
    Returns ``job_id``, ``type`` (``"observed"`` or ``"estimated"``) and ``runtime`` (seconds).

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
    """
    reg = resolve(reg)
    if not isinstance(tab, pd.DataFrame) or "job_id" not in tab.columns:
        raise TypeError("tab: a DataFrame with 'job_id' and predictor columns, e.g. bt.unwrap(bt.get_job_pars())")
    try:
        from sklearn.ensemble import RandomForestRegressor
    except ImportError:
        raise ImportError("estimate_runtimes needs scikit-learn: pip install 'pybatchtools[ml]'") from None
    tab = tab.drop_duplicates("job_id").sort_values("job_id").reset_index(drop=True)
    reg.sync()
    st = reg.status
    pos = reg.pos(reg.ids(tab["job_id"]))
    runtime = st["done"].to_numpy()[pos] - st["started"].to_numpy()[pos]
    observed = ~np.isnan(runtime) & st["error"].isna().to_numpy()[pos]
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
