"""The plain reference for every search test: numpy argsort of ``q @ E.T`` (float64), ties by lower id,
excluded ids never returned, padding (-inf, -1)."""

import numpy as np


def reference_search(queries, embeddings, k, exclude=None):
    s = np.asarray(queries, np.float64) @ np.asarray(embeddings, np.float64).T
    scores = np.full((len(s), k), -np.inf, np.float32)
    ids = np.full((len(s), k), -1, np.int64)
    for i, row in enumerate(s):
        banned = set(exclude[i]) if exclude is not None else set()
        order = [j for j in np.lexsort((np.arange(len(row)), -row)) if j not in banned][:k]  # score desc, id asc
        ids[i, :len(order)] = order
        scores[i, :len(order)] = row[order]
    return scores, ids
