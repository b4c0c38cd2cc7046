"""Old module paths of modules that moved (jobs/ -> node/, core/ into sub-packages), kept importable.

A registry written before the move names modules by their old paths: pickled objects, the result
store's spec (``"batchtools.core.store:FolderStore"``), a collection's node environment
(``"module:qualname"``). An import hook answers those names with the module at its new place (the
same module object, so classes stay identical). Standard library only: the node imports it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

MOVED: dict[str, str] = {
    'batchtools.core.attempts': 'batchtools.core.jobstate.attempts',
    'batchtools.core.backend': 'batchtools.core.contract.backend',
    'batchtools.core.claims': 'batchtools.core.workerpool.claims',
    'batchtools.core.cleanup': 'batchtools.core.jobstate.cleanup',
    'batchtools.core.clock': 'batchtools.core.presentation.clock',
    'batchtools.core.collection': 'batchtools.core.contract.collection',
    'batchtools.core.counts': 'batchtools.core.jobstate.counts',
    'batchtools.core.display': 'batchtools.core.presentation.display',
    'batchtools.core.files': 'batchtools.core.persistence.files',
    'batchtools.core.ids': 'batchtools.core.jobstate.ids',
    'batchtools.core.journal': 'batchtools.core.contract.journal',
    'batchtools.core.kinds': 'batchtools.core.jobstate.kinds',
    'batchtools.core.layout': 'batchtools.core.persistence.layout',
    'batchtools.core.lease': 'batchtools.core.persistence.lease',
    'batchtools.core.notify': 'batchtools.core.presentation.notify',
    'batchtools.core.packs': 'batchtools.core.results.packs',
    'batchtools.core.pickling': 'batchtools.core.persistence.pickling',
    'batchtools.core.pool': 'batchtools.core.workerpool.pool',
    'batchtools.core.progress': 'batchtools.core.presentation.progress',
    'batchtools.core.protocol': 'batchtools.core.contract.protocol',
    'batchtools.core.recovery': 'batchtools.core.jobstate.recovery',
    'batchtools.core.resources': 'batchtools.core.jobstate.resources',
    'batchtools.core.retry': 'batchtools.core.jobstate.retry',
    'batchtools.core.state': 'batchtools.core.jobstate.state',
    'batchtools.core.store': 'batchtools.core.results.store',
    'batchtools.core.store_sqlite': 'batchtools.core.results.store_sqlite',
    'batchtools.core.sync': 'batchtools.core.jobstate.sync',
    'batchtools.core.tables': 'batchtools.core.persistence.tables',
    'batchtools.core.text': 'batchtools.core.presentation.text',
    'batchtools.core.txn': 'batchtools.core.persistence.txn',
    'batchtools.core.usage': 'batchtools.core.jobstate.usage',
    'batchtools.jobs': 'batchtools.node',
    'batchtools.jobs.benchmark': 'batchtools.node.benchmark',
    'batchtools.jobs.checkpoint': 'batchtools.node.checkpoint',
    'batchtools.jobs.devices': 'batchtools.node.devices',
    'batchtools.jobs.engine_task': 'batchtools.node.engine_task',
    'batchtools.jobs.environment': 'batchtools.node.environment',
    'batchtools.jobs.execute': 'batchtools.node.execute',
    'batchtools.jobs.experiment': 'batchtools.node.experiment',
    'batchtools.jobs.forkclient': 'batchtools.backends.forkclient',
    'batchtools.jobs.forkserver': 'batchtools.node.forkserver',
    'batchtools.jobs.gpu_usage': 'batchtools.node.gpu_usage',
    'batchtools.jobs.job': 'batchtools.node.job',
    'batchtools.jobs.node': 'batchtools.node.node',
    'batchtools.jobs.node_helper': 'batchtools.node.node_helper',
    'batchtools.jobs.pool_slots': 'batchtools.node.pool_slots',
    'batchtools.jobs.pool_worker': 'batchtools.node.pool_worker',
    'batchtools.jobs.progress': 'batchtools.node.progress',
    'batchtools.jobs.runners': 'batchtools.node.runners',
    'batchtools.jobs.session': 'batchtools.node.session',
    'batchtools.jobs.socket_process': 'batchtools.node.socket_process',
    'batchtools.jobs.updates': 'batchtools.node.updates',
    'batchtools.jobs.walltime': 'batchtools.node.walltime',
}


class _Alias:
    # a meta path finder and loader by their methods: importlib.abc would cost every node ~18 ms
    # (it imports importlib.resources)

    def find_spec(self, name, path, target=None):  # noqa: D102
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):  # noqa: D102
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):  # noqa: D102
        pass


def install() -> None:
    """Put the hook first on ``sys.meta_path`` (once): an old name must not load a second copy."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
