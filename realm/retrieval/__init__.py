"""Retrieval: questions -> top-k blocks, one home for every stage (pretraining, fine-tuning, evaluation, serving).

Layer: above :mod:`realm.index` (arrays, MIPS backends, versioned storage) and :mod:`realm.models`
(the query encoder); below :mod:`realm.training`. One concept per module:

* :mod:`~realm.retrieval.contract` - the searcher contract shared by dense and BM25 retrieval:
  ``search(questions, k, exclude=None) -> (scores float32 [Q,k], ids int64 [Q,k])``.
* :mod:`~realm.retrieval.backends` - :func:`build_backend`: the MIPS backend named by ``index.backend``
  (``exact`` | ``faiss-flat`` | ``faiss-hnsw`` | ``faiss-ivfpq``) over an embedding matrix.
* :mod:`~realm.retrieval.versions` - :func:`open_version` (an index version -> float32 embeddings +
  backend) and :class:`IndexFollower` (the version in use, swapped for a newer one).
* :mod:`~realm.retrieval.dense` - :class:`DenseRetrieval`: the query encoder + a backend; also the
  training view (top-k ids and retrieval logits with gradient into the query encoder).
* :mod:`~realm.retrieval.sparse` - :class:`BM25Retrieval`: BM25 behind the same contract.
* :mod:`~realm.retrieval.sharded` - :class:`ShardedFollower`: the ranks of a ``torchrun`` job on one index
  version, switched together, searched as a sharded exact index; :func:`follower` picks it in a job.
"""

from realm.retrieval.backends import BACKENDS, build_backend
from realm.retrieval.contract import Retrieval, Searcher
from realm.retrieval.dense import DenseRetrieval, embed_questions
from realm.retrieval.sharded import ShardedFollower, follower
from realm.retrieval.sparse import BM25Retrieval
from realm.retrieval.versions import IndexFollower, IndexVersion, open_version

__all__ = ["BACKENDS", "BM25Retrieval", "DenseRetrieval", "IndexFollower", "IndexVersion", "Retrieval", "Searcher", "ShardedFollower",
           "build_backend", "embed_questions", "follower", "open_version"]
