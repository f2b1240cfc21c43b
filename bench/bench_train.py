"""Training throughput of every stage: tokens/s, achieved FLOP/s and where a step's time goes.

    python -m bench train [--quick]   (or: python -m bench.bench_train [--quick] [--out bench/results/train.md])

``run_all(quick)`` returns the figures as a dict and :func:`markdown` renders them (the measured part of
``bench/RESULTS-train.md``).

Stages (each a real training step of the recipe, built from the recipe's own functions):
  reading   the reading warm start (``realm.training.reading``; the demo's shared-encoder stage)
  mlm       plain masked LM (``realm.training.encoder_mlm``)
  ict       the retriever's ICT warm start (``realm.training.ict``)
  realm     one REALM pretraining step (``realm.training.pretrain.realm_step``) against an exact index
  finetune  reader fine-tuning (``realm.training.finetune.finetune``, dense retrieval)
and, for comparison, ``realm_plain`` (masked LM over the (sentence, block) rows of a REALM step, without the
retriever: REALM's overhead is realm / realm_plain) and ``matmul`` (one feed-forward matrix product: the
hardware's ceiling at that moment). Threads 1 vs 2 and the OpenMP wait policy are compared on ``reading``;
the attention kernel (sdpa vs eager) with bf16 on ``reading`` and ``ict``.
Shapes: the ``tiny`` and ``demo`` presets, and ``4x256`` (the demo corpus and recipe with 4-layer,
256-wide encoders). Precision: fp32 and bf16 autocast.

A step's time is split by timers into data preparation (sampling rows, tokens -> padded tensors),
forward, backward, optimizer (clip + AdamW) and, for REALM and fine-tuning, retrieval (index search /
question retrieval). FLOPs count every BERT pass of the step (a forward pre-hook on each ``BertModel``
records its padded input width and real tokens; :func:`realm.models.bert.bert_flops_per_token`, x3 for a
pass that trains). tokens/s counts real (non-pad) tokens of every pass.

This machine is shared and noisy, so every comparison is measured in the same run, with the variants
interleaved step by step (round-robin) and medians taken. Variants that need a different process
environment (the OpenMP wait policy is read once when torch loads) run in separate worker processes,
driven in turn by the parent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("prep", "retrieval", "forward", "backward", "optimizer")
STAGES = ("reading", "mlm", "ict", "realm", "finetune")
SHAPES = ("tiny", "demo", "4x256")
# process environments: the OpenMP wait policy must be set before torch loads
ENVS = {"active": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}}
ROOT = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------
# Worker side: builds stages and runs timed steps (torch is imported here only)


class _Clock:
    """Accumulates named phase times of one step."""

    def __init__(self):
        self.t = dict.fromkeys(PHASES, 0.0)
        self.excluded = 0.0  # time inside the step that is not part of it (set by the step)

    @contextlib.contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[phase] += time.perf_counter() - t0


class _FlopCounter:
    """Counts tokens and FLOPs of every BertModel pass (forward pre-hooks)."""

    def __init__(self, *modules):
        from transformers import BertModel

        self.tokens, self.flops = 0, 0.0
        self.handles = [m.register_forward_pre_hook(self._hook, with_kwargs=True)
                        for root in modules for m in root.modules() if isinstance(m, BertModel)]

    def _hook(self, module, args, kwargs):
        import torch

        from realm.models.bert import bert_flops_per_token

        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        width = ids.shape[1]
        real = int(mask.sum()) if mask is not None else ids.numel()
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())
        self.tokens += real
        self.flops += (3 if trains else 1) * bert_flops_per_token(module.config, width) * real

    def take(self) -> tuple[int, float]:
        out = (self.tokens, self.flops)
        self.tokens, self.flops = 0, 0.0
        return out


class _TimedSearch:
    """An index whose ``search`` time is charged to the ``retrieval`` phase."""

    def __init__(self, index, clock_ref: list):
        self._index, self._clock = index, clock_ref

    def search(self, *args, **kwargs):
        with self._clock[0]("retrieval"):
            return self._index.search(*args, **kwargs)


def _config(shape: str):
    from realm.config import load_config

    if shape == "4x256":
        big = {"layers": 4, "hidden": 256, "heads": 4, "intermediate": 1024}
        return load_config("demo", [f"{enc}.encoder.{k}={v}" for enc in ("retriever", "reader") for k, v in big.items()])
    return load_config(shape)


class Stage:
    """One stage's models, optimizer and data; ``step(i, bf16)`` runs training step ``i`` and times it."""

    def __init__(self, name: str, shape: str, data_root: Path):
        import torch

        if name == "matmul":  # the ceiling: one BERT feed-forward product of this shape, [2048, h] @ [h, 4h]
            h = 256 if shape == "4x256" else 128 if shape == "demo" else 64
            self.name, self.a, self.b = name, torch.randn(2048, h), torch.randn(h, 4 * h)
            return

        from realm.data.blocks import BlockStore
        from realm.models.inputs import Specials
        from realm.models.mlm import KnowledgeAugEncoder
        from realm.models.retriever import Retriever
        from realm.training.optim import make_optimizer, unique_parameters

        world = "tiny" if shape == "tiny" else "demo"
        self.name, self.cfg = name, _config(shape)
        self.store = BlockStore(data_root / world / "corpus")
        self.world = data_root / world / "world"
        self.sp = Specials.of(self.store.tokenizer)
        torch.manual_seed(0)
        tok, cfg = self.store.tokenizer, self.cfg
        self.encoder = self.retriever = None
        if name in ("reading", "mlm", "realm", "realm_frozen"):
            self.encoder = KnowledgeAugEncoder.build(cfg.reader.encoder, tok.vocab_size, tok.pad_id).train()
        if name in ("ict", "realm", "realm_frozen", "finetune"):
            self.retriever = Retriever.build(cfg.retriever, tok.vocab_size, tok.pad_id).train()
        self.params = unique_parameters(*[m for m in (self.encoder, self.retriever) if m is not None])
        self.opt = make_optimizer(self.params, 5e-4) if name != "finetune" else None
        self.counter = _FlopCounter(*[m for m in (self.encoder, self.retriever) if m is not None])
        self.clock = [_Clock()]
        getattr(self, f"_setup_{name}")()

    # ---- setups
    def _setup_reading(self):
        from realm.training.reading import ReadingData

        self.data = ReadingData(self.store, self.cfg.retriever.query_len, progress=False, probe_rows=1)

    def _setup_mlm(self):
        from realm.training.mlm_examples import MaskedSentencePool

        pc = self.cfg.pretrain
        self.pool = MaskedSentencePool(self.store, pc.masking, pc.tagger, max_tokens=self.cfg.retriever.query_len - 2,
                                       progress=False)

    def _setup_ict(self):
        from realm.training.ict import ICTSampler

        self.sampler = ICTSampler(self.store, self.cfg.retriever.query_len, self.cfg.ict.remove_prob)

    def _setup_realm(self):
        from types import SimpleNamespace

        from realm.index.build import embed_blocks
        from realm.index.exact import ExactIndex

        self._setup_mlm()
        self._setup_reading()
        emb = self.block_emb = embed_blocks(self.retriever.doc, self.store, bf16=True, progress=False)
        self.follower = SimpleNamespace(index=_TimedSearch(ExactIndex(emb), self.clock))

    def _setup_realm_frozen(self):
        """REALM with the document tower frozen (``pretrain.train_doc_encoder: false``): the step reads the
        candidates' embeddings from the index instead of re-encoding them."""
        from types import SimpleNamespace

        self.retriever.untie()
        self.retriever.doc.requires_grad_(False)
        self._setup_realm()
        self.follower = SimpleNamespace(index=self.follower.index, embeddings=self.block_emb)

    def _setup_finetune(self):
        from realm.data.qa import read_qa
        from realm.index.build import embed_blocks
        from realm.models.reader import SpanReader

        self.train_qa = read_qa(self.world / "qa-train.jsonl")
        self.embeddings = embed_blocks(self.retriever.doc, self.store, bf16=True, progress=False)
        self.reader = SpanReader.build(self.cfg.reader, self.store.tokenizer.vocab_size, self.store.tokenizer.pad_id,
                                       self.cfg.retriever.query_len)
        self.counter = _FlopCounter(self.reader, self.retriever)
        self.tmp, self.runs = tempfile.TemporaryDirectory(), 0

    # ---- steps
    def step(self, i: int, bf16: bool, kind: str | None = None, attention: str = "sdpa") -> dict:
        """Training step ``i``; ``kind`` runs another step of this stage's models (``realm_plain``)."""
        from realm.models.bert import use_attention
        from realm.training.checkpoint import step_generator

        if self.name == "matmul":
            return self._matmul(bf16)
        for m in (self.encoder, self.retriever, getattr(self, "reader", None)):
            if m is not None:
                use_attention(m, attention)

        clock = self.clock[0] = _Clock()
        self.counter.take()
        rng = step_generator(self.cfg.seed, i)
        t0 = time.perf_counter()
        if self.name == "finetune":
            wall = self._finetune(i, bf16, clock)
        else:
            loss = getattr(self, f"_{kind or self.name}")(rng, bf16, clock)
            with clock("backward"):
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
            with clock("optimizer"):
                import torch

                torch.nn.utils.clip_grad_norm_(self.params, 1.0)
                self.opt.step()
            wall = time.perf_counter() - t0 - clock.excluded
        tokens, flops = self.counter.take()
        return {"step_s": wall, "tokens": tokens, "flops": flops, **{f"{k}_s": v for k, v in clock.t.items()}}

    def _matmul(self, bf16: bool) -> dict:
        a, b = (self.a.bfloat16(), self.b.bfloat16()) if bf16 else (self.a, self.b)
        t0 = time.perf_counter()
        for _ in range(20):
            a @ b
        wall = (time.perf_counter() - t0) / 20
        return {"step_s": wall, "tokens": a.shape[0], "flops": 2.0 * a.shape[0] * a.shape[1] * b.shape[1],
                **{f"{k}_s": 0.0 for k in PHASES}, "forward_s": wall}

    def _reading(self, rng, bf16, clock):
        from realm.training.reading import rows_batch, rows_step

        rc = self.cfg.reading
        with clock("prep"):
            rows = self.data.rows(rng, rc.batch_size, rc.plain_share, rc.evidence_share, rc.distractor_share)
            batch = rows_batch(rows, self.sp, self.cfg.retriever.query_len)
        with clock("forward"):
            return rows_step(self.encoder, rows, self.sp, self.cfg.retriever.query_len, "cpu", bf16, batch=batch)[0]

    def _mlm(self, rng, bf16, clock):
        from realm.training.encoder_mlm import mlm_batch, mlm_step

        q_len = self.cfg.retriever.query_len
        with clock("prep"):
            queries = self.pool.sample(rng, self.cfg.pretrain.batch_size)
            batch = mlm_batch(queries, self.sp, q_len)
        with clock("forward"):
            return mlm_step(self.encoder, queries, self.sp, q_len, "cpu", bf16, batch=batch)[0]

    def _ict(self, rng, bf16, clock):
        from realm.models.bert import autocast
        from realm.models.inputs import block_inputs, query_inputs
        from realm.training.losses import ict_loss

        with clock("prep"):
            queries, titles, bodies, _ = self.sampler.sample(rng, self.cfg.ict.batch_size)
            q_in = query_inputs(queries, self.sp, self.cfg.retriever.query_len)
            d_in = block_inputs(titles, bodies, self.sp)
        with clock("forward"):
            with autocast("cpu", bf16):
                q, d = self.retriever.embed_queries(q_in), self.retriever.embed_blocks(d_in)
            return ict_loss(q.float(), d.float())

    def _realm(self, rng, bf16, clock):
        from realm.training.pretrain import realm_step

        pc = self.cfg.pretrain
        with clock("prep"):
            queries = self.pool.sample(rng, pc.batch_size)
            swaps = None
            if pc.counterfactual > 0:
                swaps = [self.data.bank.replacement(q.targets, rng) if rng.random() < pc.counterfactual else None
                         for q in queries]
        with clock("forward"):
            loss = realm_step(queries, self.retriever, self.encoder, self.follower, self.store, self.sp, pc.top_k,
                              self.cfg.retriever.query_len, "cpu", bf16, swaps=swaps)[0]
        return loss

    def _realm_frozen(self, rng, bf16, clock):
        return self._realm(rng, bf16, clock)

    def _realm_plain(self, rng, bf16, clock):
        """Plain masked LM over the (sentence, block) rows a REALM step reads: the same sentences and retrieved
        blocks (+ the null block), the encoder alone. The search that picks the blocks is not timed."""
        import torch

        from realm.models.bert import autocast
        from realm.models.inputs import pair_inputs, query_inputs
        from realm.training.mlm_examples import masked_targets

        pc, q_len, k = self.cfg.pretrain, self.cfg.retriever.query_len, self.cfg.pretrain.top_k
        t0 = time.perf_counter()
        queries = self.pool.sample(rng, pc.batch_size)
        with torch.no_grad():
            q_emb = self.retriever.embed_queries(query_inputs([q.input_ids for q in queries], self.sp, q_len))
            _, ids = self.follower.index._index.search(q_emb, k - 1, exclude=[[q.block] for q in queries])
        self.counter.take()
        clock.excluded = time.perf_counter() - t0
        with clock("prep"):
            bodies = [self.store.body_ids(int(z)) if z >= 0 else () for row in ids for z in (*row, -1)]
            pair_in, _, _ = pair_inputs([q.input_ids for q in queries for _ in range(k)], bodies, self.sp, q_len)
            positions, targets, mask = (t.repeat_interleave(k, 0) for t in masked_targets(queries))
        with clock("forward"):
            with autocast("cpu", bf16):
                logp, _ = self.encoder.target_log_probs(pair_in, positions, targets)
            return -(logp * mask).sum() / mask.sum().clamp(min=1)

    def _finetune(self, i, bf16, clock) -> float:
        """One fine-tuning step through the recipe itself (its step is not a separate function)."""
        import torch

        import realm.training.finetune as ft_mod
        from realm.retrieval import DenseRetrieval

        cfg = self.cfg
        orig_step, orig_call = ft_mod.optimizer_step, DenseRetrieval.retrieve

        def timed_step(opt, loss, params, max_norm=1.0):
            with clock("backward"):
                opt.zero_grad(set_to_none=True)
                loss.backward()
            with clock("optimizer"):
                norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
                opt.step()
            return float(norm)

        def timed_call(blocks, *a, **k):
            with clock("retrieval"):
                return orig_call(blocks, *a, **k)

        pre = self.reader.register_forward_pre_hook(lambda *_: setattr(clock, "f0", time.perf_counter()))
        post = self.reader.register_forward_hook(
            lambda *_: clock.t.__setitem__("forward", clock.t["forward"] + time.perf_counter() - clock.f0))
        run_cfg = _with_steps(cfg, i)
        ft_mod.optimizer_step, DenseRetrieval.retrieve = timed_step, timed_call
        try:
            self.runs += 1  # a fresh run folder per call: a finished one would resume with nothing to do
            run_dir = Path(self.tmp.name) / f"ft{self.runs}"
            ft_mod.finetune(run_cfg, DenseRetrieval(self.retriever, self.store, self.embeddings), self.reader,
                            self.train_qa, run_dir, progress=False, bf16=bf16)
        finally:
            ft_mod.optimizer_step, DenseRetrieval.retrieve = orig_step, orig_call
            pre.remove()
            post.remove()
        last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()][-1]
        return float(last["perf/step_s"])


def _with_steps(cfg, i: int):
    """The config for one fine-tuning step ``i`` (a fresh run of steps=1 whose seed differs by step)."""
    import copy

    out = copy.deepcopy(cfg)
    out.finetune.steps, out.finetune.warmup, out.finetune.checkpoint_every = 1, 0, 0
    out.seed = cfg.seed + i
    return out


def _fix_realm_forward(res: dict) -> dict:
    """REALM's search runs inside its forward call: move it out of the forward phase."""
    res["forward_s"] -= res["retrieval_s"]
    return res


def worker(data_root: Path) -> None:
    """Serve JSON commands on stdin: {"stage", "shape", "bf16", "threads", "steps", "first"} -> per-step results."""
    import torch

    stages: dict[tuple[str, str], Stage] = {}
    for line in sys.stdin:
        cmd = json.loads(line)
        torch.set_num_threads(cmd["threads"])
        key = ("realm" if cmd["stage"] == "realm_plain" else cmd["stage"], cmd["shape"])
        if key not in stages:
            stages[key] = Stage(cmd["stage"], cmd["shape"], data_root)
        st = stages[key]
        out = []
        for i in range(cmd["first"], cmd["first"] + cmd["steps"]):
            res = st.step(i, cmd["bf16"], kind=cmd["stage"], attention=cmd.get("attention", "sdpa"))
            out.append(_fix_realm_forward(res) if cmd["stage"] in ("realm", "realm_frozen") else res)
        print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------------------------------
# Parent side: corpora, workers, interleaving, summaries


def _build_data(root: Path) -> None:
    from realm.config import load_config
    from realm.data.corpus import build_corpus
    from realm.data.world import generate_world, write_world

    for preset in ("tiny", "demo"):
        cfg = load_config(preset)
        paths = write_world(generate_world(cfg.world.entities, cfg.world.seed), root / preset / "world")
        build_corpus(paths["corpus"], root / preset / "corpus", cfg.corpus, progress=False)


class Worker:
    def __init__(self, env_name: str, data_root: Path):
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
        env.update(ENVS[env_name], PYTHONPATH=str(ROOT.parent), HF_HUB_OFFLINE="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.bench_train", "--worker", str(data_root)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=str(ROOT.parent))

    def run(self, **cmd) -> list[dict]:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bench worker died on {cmd}")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _summary(steps: list[dict]) -> dict:
    med = {k: statistics.median(s[k] for s in steps) for k in steps[0]}
    wall = med["step_s"]
    out = {"steps": len(steps), "step_s": round(wall, 4), "tokens_per_step": med["tokens"],
           "tokens_per_s": round(statistics.median(s["tokens"] / s["step_s"] for s in steps), 1),
           "tflops": round(statistics.median(s["flops"] / s["step_s"] for s in steps) / 1e12, 5)}
    timed = sum(med[f"{p}_s"] for p in PHASES)
    share = {p: med[f"{p}_s"] / wall for p in PHASES}
    share["other"] = max(0.0, 1 - timed / wall)
    out["share"] = {k: round(v, 3) for k, v in share.items()}
    return out


def measure(variants: list[dict], workers: dict[str, Worker], steps: int, rounds: int, warmup: int = 1) -> list[dict]:
    """Run every variant ``rounds`` times ``steps`` steps, interleaved; returns the summaries in order.

    A variant: {"env", "stage", "shape", "bf16", "threads"}."""
    runs: list[list[dict]] = [[] for _ in variants]
    for v in variants:  # warm-up: builds the stage in its worker, first (slow) steps discarded
        workers[v["env"]].run(**_cmd(v), steps=warmup, first=10_000)
    for r in range(rounds):
        for j, v in enumerate(variants):
            runs[j] += workers[v["env"]].run(**_cmd(v), steps=steps, first=r * steps)
    return [{**v, **_summary(rs)} for v, rs in zip(variants, runs)]


def _cmd(v: dict) -> dict:
    return {"attention": "sdpa", **{k: v[k] for k in ("stage", "shape", "bf16", "threads", "attention") if k in v}}


def run_all(quick: bool, overhead_only: bool = False) -> dict:
    """Measure; returns {"machine": ..., "stages": [...], "threads": [...], "attention": [...],
    "realm_overhead": {...}} (only "machine" and "realm_overhead" with ``overhead_only``)."""
    t_start = time.time()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        data_root = Path(tmp)
        _build_data(data_root)
        workers = {name: Worker(name, data_root) for name in ENVS}
        try:
            steps, rounds = (2, 2) if quick else (3, 3)
            shapes = ("demo",) if quick else SHAPES
            if overhead_only:
                overhead = measure([{"env": "passive", "stage": s, "shape": "demo", "bf16": False, "threads": 1}
                                    for s in ("realm", "realm_plain", "realm_frozen")], workers, 5, 3)
                return {"machine": _machine(load_before), "seconds": round(time.time() - t_start, 1),
                        "quick": quick, "overhead_only": True, "realm_overhead": _overhead(overhead)}
            # fp32, bf16 autocast, and bf16 with eager attention (what the demo preset runs)
            stage_rows = measure([{"env": "passive", "stage": s, "shape": sh, "bf16": b, "threads": 1, "attention": a}
                                  for s in STAGES for sh in shapes
                                  for b, a in ((False, "sdpa"), (True, "sdpa"), (True, "eager"))],
                                 workers, steps, rounds)
            # thread settings and the OpenMP wait policy, on the demo's shared-encoder stage as the demo runs it
            thread_rows = measure([{"env": e, "stage": "reading", "shape": "demo", "bf16": b, "threads": t}
                                   for e in ENVS for t in (1, 2) for b in (True, False)], workers, steps, rounds)
            # attention kernels with bf16 autocast, against the hardware: one feed-forward product of the shape
            attention_rows = measure(
                [{"env": "passive", "stage": s, "shape": sh, "bf16": b, "threads": 1, "attention": a}
                 for sh in shapes if sh != "tiny" for s in ("reading", "ict")
                 for a, b in (("sdpa", False), ("sdpa", True), ("eager", True))]
                + [{"env": "passive", "stage": "matmul", "shape": sh, "bf16": b, "threads": 1}
                   for sh in shapes if sh != "tiny" for b in (False, True)], workers, steps, rounds)
            # REALM overhead: a REALM step vs plain reading steps over the same number of (sentence, block) rows
            overhead = measure([{"env": "passive", "stage": s, "shape": "demo", "bf16": False, "threads": 1}
                                for s in ("realm", "realm_plain", "realm_frozen")], workers, steps, rounds)
            overhead_bf16 = measure([{"env": "passive", "stage": s, "shape": "demo", "bf16": True, "threads": 1,
                                      "attention": "eager"} for s in ("realm", "realm_plain", "realm_frozen")],
                                    workers, steps, rounds)
        finally:
            for w in workers.values():
                w.close()
    return {"machine": _machine(load_before), "seconds": round(time.time() - t_start, 1), "quick": quick,
            "stages": stage_rows, "threads": thread_rows,
            "attention": attention_rows, "realm_overhead": _overhead(overhead),
            "realm_overhead_bf16_eager": _overhead(overhead_bf16)}


def _overhead(rows: list[dict]) -> dict:
    """REALM step time / a plain MLM step over as many (sentence, block) rows (``realm_plain``)."""
    realm, plain, frozen = rows
    return {"realm_step_s": realm["step_s"], "plain_step_s": plain["step_s"],
            "ratio": round(realm["step_s"] / plain["step_s"], 3),
            "frozen_doc_step_s": frozen["step_s"], "frozen_doc_ratio": round(frozen["step_s"] / plain["step_s"], 3),
            "frozen_doc_share": frozen["share"],
            "realm_tokens_per_step": realm["tokens_per_step"], "plain_tokens_per_step": plain["tokens_per_step"],
            "realm_share": realm["share"], "plain_share": plain["share"]}


def _machine(load) -> dict:
    import torch

    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "loadavg_start": [round(x, 2) for x in load], "loadavg_end": [round(x, 2) for x in os.getloadavg()]}


def markdown(res: dict) -> str:
    """The results as a markdown section (bench/RESULTS-train.md)."""
    m = res["machine"]
    pct = lambda x: f"{100 * x:.0f}%"  # noqa: E731
    lines = [f"Measured {m['date']} on {m['cores']} cores ({m['cpu']}), torch {m['torch']}, load average "
             f"{m['loadavg_start'][0]} at the start and {m['loadavg_end'][0]} at the end (a shared machine: "
             f"compare ratios within a table, not absolute figures across runs). Command: "
             f"`python -m bench.bench_train{' --quick' if res['quick'] else ''}"
             f"{' --overhead-only' if res.get('overhead_only') else ''}` ({res['seconds']} s).", "",
             "### Every stage (OMP_WAIT_POLICY=PASSIVE, 1 intra-op thread)", "",
             "Shares are each phase's median time over the median step time (they need not sum to 100%); "
             "`other` is what no timer covers (for fine-tuning: its inline batch building and answer matching).", "",
             "| stage | shape | precision | s/step | tokens/step | tokens/s | TFLOP/s | prep | retrieval | forward "
             "| backward | optimizer | other |", "|" + "---|" * 13]
    if res.get("overhead_only"):
        lines = lines[:1]
    for r in res.get("stages", []):
        sh = r["share"]
        lines.append(f"| {r['stage']} | {r['shape']} | {_precision(r)} | {r['step_s']:.3f} | "
                     f"{r['tokens_per_step']:.0f} | {r['tokens_per_s']:,.0f} | {r['tflops']:.4f} | "
                     + " | ".join(pct(sh[p]) for p in (*PHASES, "other")) + " |")
    if res.get("overhead_only"):
        return "\n".join(lines + _overhead_lines(res["realm_overhead"])) + "\n"
    lines += ["", "### Threads and the OpenMP wait policy (reading warm start, demo preset)", "",
              "| OMP_WAIT_POLICY | threads | precision | s/step | tokens/s | TFLOP/s | vs before |", "|" + "---|" * 7]
    before = {r["bf16"]: r for r in res["threads"] if r["env"] == "active" and r["threads"] == 2}
    for r in res["threads"]:
        ref = before[r["bf16"]]
        lines.append(f"| {'PASSIVE' if r['env'] == 'passive' else 'default (spin)'} | {r['threads']} | "
                     f"{'bf16' if r['bf16'] else 'fp32'} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | "
                     f"{r['tflops']:.4f} | {r['tflops'] / ref['tflops']:.1f}x |")
    lines += ["", "### Attention kernel with bf16 autocast, and the matrix-product ceiling (1 thread)", "",
              "`matmul` is one feed-forward product [2048, h] @ [h, 4h] of the shape: what the hardware gives now.", "",
              "| stage | shape | precision | attention | s/step | tokens/s | TFLOP/s | vs fp32 sdpa |", "|" + "---|" * 8]
    ref = {(r["stage"], r["shape"]): r for r in res["attention"] if not r["bf16"]}
    for r in res["attention"]:
        base = ref[(r["stage"], r["shape"])]
        lines.append(f"| {r['stage']} | {r['shape']} | {'bf16' if r['bf16'] else 'fp32'} | "
                     f"{r.get('attention', '-') if r['stage'] != 'matmul' else '-'} | {r['step_s']:.4f} | "
                     f"{r['tokens_per_s']:,.0f} | {r['tflops']:.4f} | {base['step_s'] / r['step_s']:.2f}x |")
    lines += _overhead_lines(res["realm_overhead"])
    if "realm_overhead_bf16_eager" in res:
        lines += _overhead_lines(res["realm_overhead_bf16_eager"],
                                 "bf16 autocast, eager attention: as `realm demo` runs")
    return "\n".join(lines) + "\n"


def _precision(r: dict) -> str:
    return "fp32" if not r["bf16"] else "bf16, eager" if r.get("attention") == "eager" else "bf16"


def _overhead_lines(o: dict, how: str = "fp32") -> list[str]:
    return ["", f"### Overhead of retrieval (demo preset, {how})", "",
              f"A REALM step ({o['realm_tokens_per_step']:.0f} tokens over the query, block and reader passes) takes "
              f"{o['realm_step_s']:.3f} s; plain masked LM over the same (sentence, block) reader rows "
              f"({o['plain_tokens_per_step']:.0f} tokens) takes {o['plain_step_s']:.3f} s: ratio **{o['ratio']:.2f}** "
              f"(target <= 1.25). With the document tower frozen (`pretrain.train_doc_encoder: false`: the "
              f"candidates' embeddings come from the index, no document pass), a REALM step takes "
              f"{o['frozen_doc_step_s']:.3f} s: ratio **{o['frozen_doc_ratio']:.2f}**."]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="demo shape only, fewer steps")
    p.add_argument("--overhead-only", action="store_true",
                   help="only REALM's retrieval overhead (REALM step vs plain MLM over the same rows)")
    p.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "train.md",
                   help="the markdown tables; the measurements go beside it as NAME-data.json")
    a = p.parse_args(argv)
    if a.worker:
        return worker(a.worker)
    res = run_all(a.quick, a.overhead_only)
    if a.overhead_only and a.out == ROOT / "results" / "train.md":
        a.out = ROOT / "results" / "train-overhead.md"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.with_name(a.out.stem + "-data.json").write_text(json.dumps(res, indent=2))
    print(markdown(res))
    a.out.write_text(markdown(res))


if __name__ == "__main__":
    main()
