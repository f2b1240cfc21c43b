"""Does editing the corpus change the answers? A measurement of knowledge updates on a built-in world.

REALM's claim: knowledge lives in the corpus, so editing a document and re-indexing changes what the model
answers, without retraining. :func:`knowledge_update_check` measures it on a copy of a servable run:

1. ask every question of one relation (default ``birthplace``) of the run's world, and keep the entities
   whose answer is right before any edit (a fact the model cannot answer cannot show an update);
2. move ``edits`` of those facts (drawn with ``seed``) to another entity of the same kind;
3. publish the edited corpus as a new index version (:func:`realm.serving.update.update_index`: the
   run's document encoder re-embeds it, nothing is trained) and reload;
4. ask the same questions again: how many now give the new value, and how many still the old one.

The run itself is not touched: the check works on a copy under ``work_dir``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from realm.data.qa import exact_match
from realm.data.world import edit_fact, read_world, write_world
from realm.serving.answer import Answerer
from realm.serving.update import update_index


def knowledge_update_check(run_dir: str | Path, world_dir: str | Path, work_dir: str | Path, edits: int = 20,
                           relation: str = "birthplace", seed: int = 0) -> dict:
    """Edit ``edits`` facts of ``relation`` that the run answers right, re-index, ask again; a report dict."""
    world = read_world(world_dir)
    by_id = {e.id: e for e in world.entities}
    questions = sorted((q for qs in world.questions.values() for q in qs if q["relation"] == relation),
                       key=lambda q: q["entity_id"])
    if not questions:
        raise ValueError(f"{world_dir}: no question of relation {relation!r}")
    work = Path(work_dir)
    if work.exists():
        shutil.rmtree(work)
    run = Path(shutil.copytree(run_dir, work / "run"))
    rng = np.random.default_rng(seed)
    with Answerer(run) as answerer:
        right = [q for q in questions if exact_match(answerer.ask(q["question"])["answer"] or "", q["answer"])]
        chosen = [right[i] for i in sorted(rng.permutation(len(right))[:edits])]
        version_before = answerer.index_version
        if not chosen:  # nothing answered right: no update can be shown
            return {"relation": relation, "questions": len(questions), "right_before": 0, "edits": 0,
                    "new_value_answered": 0, "old_value_answered": 0, "share_new": None,
                    "index_version_before": version_before, "index_version_after": version_before, "examples": []}
        edited, moves = world, []
        for q in chosen:
            entity = by_id[q["entity_id"]]
            old = entity.attrs[relation]
            kind = by_id[old].kind if isinstance(old, str) and old in by_id else None
            pool = [e.id for e in world.entities if e.kind == kind and e.id != old] if kind else []
            if not pool:
                raise ValueError(f"relation {relation!r} has no entity-valued answers to move")
            new = pool[int(rng.integers(len(pool)))]
            edited = edit_fact(edited, entity.id, relation, new)
            moves.append((q, by_id[old].name, by_id[new].name))
        corpus_file = write_world(edited, work / "edited")["corpus"]
        update_index(run, corpus_file)
        answerer.reload()
        if answerer.index_version == version_before:
            raise RuntimeError("the edited corpus was not published as a new index version")
        rows = []
        for q, old_name, new_name in moves:
            out = answerer.ask(q["question"])
            answer = out["answer"] or ""
            rows.append({"question": q["question"], "old": old_name, "new": new_name, "answer": out["answer"],
                         "new_answered": exact_match(answer, [new_name]),
                         "old_answered": exact_match(answer, [old_name])})
    n = len(rows)
    return {"relation": relation, "questions": len(questions), "right_before": len(right), "edits": n,
            "new_value_answered": sum(r["new_answered"] for r in rows),
            "old_value_answered": sum(r["old_answered"] for r in rows),
            "share_new": round(sum(r["new_answered"] for r in rows) / n, 4) if n else None,
            "index_version_before": version_before, "index_version_after": answerer.index_version,
            "examples": rows}
