"""``pretrain-encoder``: train the GMN (or nf2vec) encoder with the rendering and SigLIP losses.

One step (seed 000 §4): ``batch_objects`` objects, each in two architectures (the gmnerf
schedule, :func:`nfkit.encoder.data.pair_schedule`), are embedded; the SigLIP loss aligns the
two embeddings of each object; the implicit decoder renders every NeRF's foreground rays through
that NeRF's occupancy grid and its background points, against targets rendered once from the
frozen NeRF (:mod:`nfkit.encoder.targets`). ``L = L_R + λ·L_C`` (``r+c``), ``L_R`` (``r``) or
``L_C`` (``c``).

Every epoch writes ``last.h5`` (weights + optimizer state); ``best.h5`` is the checkpoint with
the best validation (decoder PSNR on validation NeRFs for r and r+c, validation SigLIP loss for
c). ``resume=True`` continues from ``last.h5`` exactly: every random draw of a step comes from
generators seeded by (seed, epoch, step) and the architecture (edge subsets) or the graph's
position in the step's batch (rays, background colour, background points)
(:class:`StepRandom`), so a resumed run equals an uninterrupted one.

**Data-parallel** (``dist``, a :class:`nfkit.distributed.Dist` of ``world`` W > 1, under
torchrun): every rank loads the same data and walks the same schedule; each step's batch (the
single-process one: ``batch_objects`` objects, 2 graphs each) is cut into W contiguous parts
and rank r embeds and decodes part r only. The embeddings are gathered (with gradients) into the
whole batch on every rank, so that the SigLIP loss is computed on the **global batch** (every
object's negatives are the other objects of the whole step, as in a single process) and the
decoder's embedding normalisation uses the whole batch's statistics (a synchronised
BatchNorm). Each rank's rendering loss is weighted by its share of the graphs and the gradients
are averaged over the ranks (one all-reduce per step), which gives the gradient of the
single-process loss; the random draws depend on the graph, not on the rank (:class:`StepRandom`),
so a W-rank step equals a single-process step up to floating-point rounding. Rank 0 renders the
targets (the others read its cache), validates, writes the checkpoints and logs, and measures
the embedding statistics at the end; every epoch checks that the ranks still hold the same
weights. The nf2vec encoder's own BatchNorm layers see each rank's part only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nfkit.distributed import (
    Dist,
    average_gradients,
    broadcast_module,
    check_replicas,
    gather_rows,
    split_bounds,
)
from nfkit.encoder.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_resume_state,
    module_states,
    resume_bytes,
    save_checkpoint,
)
from nfkit.encoder.config import EncoderConfig
from nfkit.encoder.data import GraphBank, pair_schedule
from nfkit.encoder.model import EncoderModel
from nfkit.encoder.targets import NerfTargets, TargetSpec, grid_of, targets_for
from nfkit.errors import IncompatibleError, UserError
from nfkit.graphs.schema import vocabulary
from nfkit.io.lock import output_folder
from nfkit.render.renderer import default_step_size, render_batch

log = logging.getLogger(__name__)


@dataclass
class TrainSummary:
    out: Path
    epochs_run: int
    epoch: int
    best_epoch: int
    best_metric: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    n_train_objects: int = 0
    n_train_graphs: int = 0
    archs: list[str] = field(default_factory=list)
    refit: dict | None = None  # the render decoder's summary, when this call fitted one


class StepRandom:
    """The random generators of one training step, each seeded by (seed, epoch, step) and what
    it draws for: :meth:`edges` per architecture (the edge subset of every graph of that
    architecture), :meth:`item` per graph position in the step's batch (its rays, background
    colour and background points). No draw depends on which other graphs a call holds, so a
    step split over data-parallel ranks draws what the whole step draws in one process."""

    def __init__(self, seed: int, epoch: int, step: int) -> None:
        self.key = [int(seed) % 2**32, int(epoch), int(step)]

    def _generator(self, *tag: int) -> torch.Generator:
        state = np.random.SeedSequence([*self.key, *tag]).generate_state(2, np.uint32)
        return torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))

    def edges(self, arch: str) -> torch.Generator:
        return self._generator(0, zlib.crc32(arch.encode()))

    def item(self, k: int) -> torch.Generator:
        return self._generator(1, int(k))


def target_spec(config: EncoderConfig) -> TargetSpec:
    return TargetSpec(
        pool_rays=config.pool_rays,
        cast_rays=config.cast_rays,
        bg_pool=config.bg_pool,
        n_samples=config.render_samples,
        grid_res=config.grid_res,
        seed=config.seed,
    )


def match_nerfs(bank: GraphBank, nerfs, progress: bool = False) -> dict[tuple[str, int], object]:
    """The NeRF record of every graph of ``bank`` (by architecture, class and object id), with
    its init checked against the graph's."""
    from nfkit.nerf.store import iter_nerfs

    wanted = {(m.arch, m.class_name, m.object_id): (a, r) for a, g in bank.archs.items() for r, m in enumerate(g.meta)}
    found: dict[tuple[str, int], object] = {}
    for rec in iter_nerfs(nerfs):
        key = (rec.arch.name, rec.class_name, rec.object_id)
        if key not in wanted:
            continue
        a, r = wanted[key]
        if rec.init_fingerprint != bank.meta(a, r).init_fingerprint:
            raise IncompatibleError(
                f"{rec.shard}: NeRF {rec.key} ({a}) was fitted from init {rec.init_fingerprint}, "
                f"its graph from {bank.meta(a, r).init_fingerprint}; rebuild the graphs"
            )
        found[(a, r)] = rec
    missing = [k for k in wanted.values() if k not in found]
    if missing:
        a, r = missing[0]
        m = bank.meta(a, r)
        raise UserError(
            f"{nerfs}: no NeRF for {len(missing)} graph(s), e.g. {a} {m.class_name}/{m.object_id}; "
            "the rendering loss needs the NeRFs the graphs were built from"
        )
    return found


def _decoder_loss(model, emb, targets: list[NerfTargets], config: EncoderConfig, gens: list[torch.Generator]):
    """Rendering loss of a batch: fg rays through each NeRF's grid + bg points; NeRF ``i``'s
    draws come from ``gens[i]`` (rays, then its background colour, then background points)."""
    device = emb.device
    idx_r = [torch.randint(t.origins.shape[0], (config.fg_rays,), generator=g) for t, g in zip(targets, gens, strict=True)]
    origins = torch.stack([t.origins[i] for t, i in zip(targets, idx_r, strict=True)]).to(device)
    dirs = torch.stack([t.dirs[i] for t, i in zip(targets, idx_r, strict=True)]).to(device)
    rgb_t = torch.stack([t.rgb[i] for t, i in zip(targets, idx_r, strict=True)]).to(device)
    op_t = torch.stack([t.opacity[i] for t, i in zip(targets, idx_r, strict=True)]).to(device)
    background = torch.stack([torch.rand(3, generator=g) for g in gens]).to(device)
    grid = grid_of([t.grid.to(device) for t in targets])
    field_fn = model.decoder.field(emb)
    out = render_batch(field_fn, origins, dirs, config.render_samples, grid, background=background)
    fg_target = rgb_t + (1.0 - op_t)[..., None] * background[:, None, :]
    bg_pred = bg_target = None
    step = default_step_size(config.render_samples)  # the march's step across the box
    if config.bg_points > 0:
        idx_b = [torch.randint(t.bg_points.shape[0], (config.bg_points,), generator=g) for t, g in zip(targets, gens, strict=True)]
        pts = torch.stack([t.bg_points[i] for t, i in zip(targets, idx_b, strict=True)]).to(device)
        rgb, sigma = model.decoder(emb, pts)
        alpha = (1.0 - torch.exp(-sigma * step))[..., None]
        bg_pred = rgb * alpha + background[:, None, :] * (1.0 - alpha)
        bg_target = background[:, None, :].expand_as(bg_pred)
    from nfkit.losses import occupancy_loss, rendering_loss

    loss = rendering_loss(out.rgb, fg_target, bg_pred, bg_target, config.fg_weight, config.bg_weight)
    if config.occ_points > 0 and config.occ_weight > 0:
        host = grid_of([t.grid for t in targets])  # where the generators draw
        pts = torch.stack([_occupancy_points(host, i, config.occ_points, g) for i, g in enumerate(gens)]).to(device)
        _, sigma_o = model.decoder(emb, pts)
        loss = loss + config.occ_weight * occupancy_loss(sigma_o, grid.lookup(pts).to(sigma_o.dtype), step)
    return loss


def _occupancy_points(grid, b: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` points of the box for the occupancy term of NeRF ``b`` of ``grid`` (an
    :class:`~nfkit.render.occupancy.OccupancyGrid`): half uniform, half jittered in its occupied
    cells (about 10 % of the box; uniform points alone would be mostly empty). -> (n, 3)."""
    n_occ = n // 2
    uniform = torch.rand(n - n_occ, 3, generator=gen)
    cells = torch.nonzero(grid.binary[b].flatten())[:, 0]
    if len(cells) == 0:
        cells = torch.arange(grid.n_cells)
    pick = cells[torch.randint(len(cells), (n_occ,), generator=gen)]
    inside = (grid.cell_coords(pick).float() + torch.rand(n_occ, 3, generator=gen)) / grid.resolution
    lo, hi = grid.aabb
    return lo + torch.cat([uniform, inside]) * (hi - lo)


class _Validator:
    """Decoder PSNR on validation NeRFs (one view each, teacher vs decoder through the teacher's
    grid, black background) and the validation SigLIP loss; also the floor: decoding another
    validation object's embedding."""

    def __init__(self, bank, val_items, records, targets, config: EncoderConfig, device) -> None:
        from nfkit.data.cameras import camera_rays
        from nfkit.nerf import field as nerf_field
        from nfkit.render.rays import turntable_cameras

        self.bank, self.items, self.config, self.device = bank, val_items, config, device
        self.targets = targets
        res = config.val_resolution
        c2w = turntable_cameras(1, elevation_deg=30.0, distance=2.0)
        focal = 0.5 * res / math.tan(math.radians(25.0))
        o, d = camera_rays(c2w, res, res, focal)
        self.origins = o.reshape(1, -1, 3).contiguous()
        self.dirs = d.reshape(1, -1, 3).contiguous()
        self.teacher: list[torch.Tensor] = []
        if records is not None:
            from nfkit.encoder.targets import nerf_sine

            for item in val_items:
                rec = records[item]
                params = {k: torch.from_numpy(np.asarray(v, np.float32))[None] for k, v in rec.params.items()}
                grid = grid_of([targets[item].grid])
                sine = nerf_sine(rec)

                def fn(x, spec=rec.arch, params=params, sine=sine):
                    return nerf_field.forward(spec, params, x, sin=sine)

                with torch.no_grad():
                    img = render_batch(fn, self.origins, self.dirs, config.render_samples, grid).rgb
                self.teacher.append(img[0])

    @torch.no_grad()
    def __call__(self, model: EncoderModel) -> dict:
        model.eval()
        emb = model.embed(self.bank, self.items, chunk=4)
        out: dict = {}
        if model.decoder is not None and self.teacher:
            psnrs, floors, fg_psnrs = [], [], []
            n = len(self.items)
            for k, item in enumerate(self.items):
                grid = grid_of([self.targets[item].grid.to(self.device)])
                o, d = self.origins.to(self.device), self.dirs.to(self.device)
                pred = render_batch(model.decoder.field(emb[k : k + 1]), o, d, self.config.render_samples, grid).rgb[0]
                other = self._other(k)
                floor = render_batch(model.decoder.field(emb[other : other + 1]), o, d, self.config.render_samples, grid).rgb[0]
                t = self.teacher[k].to(self.device)
                psnrs.append(image_psnr(pred, t))
                floors.append(image_psnr(floor, t))
                mask = t.max(dim=-1).values > 0.02
                if mask.any():
                    fg_psnrs.append(image_psnr(pred[mask], t[mask]))
            out.update(
                val_psnr=float(np.mean(psnrs)),
                val_psnr_floor=float(np.mean(floors)),
                val_psnr_fg=float(np.mean(fg_psnrs)) if fg_psnrs else float("nan"),
                val_nerfs=n,
            )
        if model.siglip is not None:
            pairs = self._pairs()
            if pairs:
                u = emb[[a for a, _ in pairs]]
                v = emb[[b for _, b in pairs]]
                out["val_siglip"] = model.siglip(u, v).item()
        model.train()
        return out

    def _other(self, k: int) -> int:
        """The next validation item of another object (the floor's embedding)."""
        key = self._key(k)
        n = len(self.items)
        for j in range(1, n):
            o = (k + j) % n
            if self._key(o) != key:
                return o
        return k

    def _key(self, k: int) -> str:
        m = self.bank.meta(*self.items[k])
        return f"{m.class_name}/{m.object_id}"

    def _pairs(self) -> list[tuple[int, int]]:
        by_obj: dict[str, list[int]] = {}
        for k in range(len(self.items)):
            by_obj.setdefault(self._key(k), []).append(k)
        return [(v[0], v[1]) for v in by_obj.values() if len(v) >= 2]


def image_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two images in [0, 1], the MSE floored at 1e-10 (at most 100 dB)."""
    from nfkit.fit.trainer import psnr_from_mse

    return psnr_from_mse(max(float(torch.mean((a - b) ** 2)), 1e-10))


def _pick_val_items(bank: GraphBank, n: int) -> list[tuple[str, int]]:
    """Up to ``n`` validation graphs, spread over objects and architectures (deterministic)."""
    by_obj: dict[str, list[tuple[str, int]]] = {}
    for a, g in sorted(bank.archs.items()):
        for r, m in enumerate(g.meta):
            if m.split == "val":
                by_obj.setdefault(f"{m.class_name}/{m.object_id}", []).append((a, r))
    items = [it for k in sorted(by_obj) for it in by_obj[k]]
    return items[:n]


def _stats_missing(paths: list[Path]) -> bool:
    """Whether a checkpoint among ``paths`` still has the identity embedding scale of training
    (its statistics were never stored: the run ended, or was killed, before)."""
    for path in paths:
        if path.exists():
            enc = load_checkpoint(path).state["encoder"]
            mean, std = enc.get("out_scale.mean"), enc.get("out_scale.std")
            if mean is not None and std is not None and bool((mean == 0).all() and (std == 1).all()):
                return True
    return False


def _store_embedding_stats(model: EncoderModel, bank: GraphBank, items, paths: list[Path],
                           inputs: dict[str, str], input_paths: dict[str, list], progress: bool) -> dict[Path, torch.Tensor]:
    """Measure the standardisation of each checkpoint's embeddings on the training graphs and
    store it in that checkpoint (``EncoderConfig.embed_norm``; nfkit/models/scale.py). Returns
    each checkpoint's standardised embeddings of ``items`` (the render decoder reuses them)."""
    from tqdm import tqdm

    done: dict[str, dict] = {}
    embedded: dict[str, torch.Tensor] = {}
    out: dict[Path, torch.Tensor] = {}
    for path in paths:
        if not path.exists():
            continue
        ck = load_checkpoint(path, with_resume=True)
        key = ck.encoder_fingerprint
        if key not in done:
            model.encoder.load_state_dict(ck.state["encoder"])
            if model.decoder is not None and "decoder" in ck.state:
                model.decoder.load_state_dict(ck.state["decoder"])
            if progress:
                tqdm.write(f"measuring the embedding statistics of {path.name} on {len(items)} training graphs")
            embedded[key] = model.set_embedding_stats(bank, items).detach().cpu()
            done[key] = module_states(model)
        ck.state = done[key]
        save_checkpoint(path, ck, inputs, input_paths)
        out[path] = embedded[key]
    return out


REFIT_PREFIX = "refit_"


def _refit_settings(config: EncoderConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k.startswith(REFIT_PREFIX)}


def _refit_due(path: Path, config: EncoderConfig) -> bool:
    """Whether the checkpoint at ``path`` exists without a render decoder (``refit_steps``), or
    with one fitted with other refit settings than ``config``'s."""
    from nfkit.encoder.refit import RENDER_DECODER

    if not path.exists():
        return False
    ck = load_checkpoint(path)
    return RENDER_DECODER not in ck.state or _refit_settings(ck.config) != _refit_settings(config)


def _store_render_decoder(model: EncoderModel, bank: GraphBank, train_items, val_items, records, targets,
                          paths: list[Path], inputs: dict[str, str], input_paths: dict[str, list], config: EncoderConfig,
                          device, progress: bool, embedded: torch.Tensor | None = None) -> dict | None:
    """Fit the render decoder (``nfkit/encoder/refit.py``) to the embeddings of ``paths[0]``'s
    encoder (best.h5) and store it there, and in the other checkpoints that hold the same encoder.
    Also measures, on up to 6 validation NeRFs, the PSNR of the training decoder and of the render
    decoder through their own grids. -> the summary written to the training log."""
    from tqdm import tqdm

    from nfkit.encoder.refit import RENDER_DECODER, own_grid_psnr, refit_decoder

    if not paths[0].exists():
        return None
    first = load_checkpoint(paths[0])
    model.encoder.load_state_dict(first.state["encoder"])
    model.decoder.load_state_dict(first.state["decoder"])
    model.eval()
    if embedded is not None and embedded.shape[0] == len(train_items):
        emb = embedded
    else:
        with torch.no_grad():
            emb = model.embed(bank, train_items, chunk=4).cpu()
    if progress:
        tqdm.write(f"fitting the render decoder of {paths[0].name} to {len(train_items)} training embeddings ({config.refit_steps} steps)")
    dec, summary = refit_decoder(emb, [records[it] for it in train_items], [targets[it] for it in train_items],
                                 config, device, progress)
    if val_items:
        picked = val_items[:: max(1, len(val_items) // 6)][:6]
        with torch.no_grad():
            val_emb = model.embed(bank, picked, chunk=4).cpu()
        recs = [records[it] for it in picked]
        train_dec = model.decoder.cpu()
        # the renders of generate (96 samples, a 48³ grid) at the cpu preset; smaller for smaller presets
        view = {"resolution": config.val_resolution, "n_samples": min(96, max(8, config.render_samples * 3 // 2)),
                "grid_res": min(48, max(8, config.grid_res * 3 // 2))}
        summary["val_own_grid_psnr_training_decoder"] = round(float(np.mean(own_grid_psnr(train_dec, val_emb, recs, **view))), 3)
        summary["val_own_grid_psnr"] = round(float(np.mean(own_grid_psnr(dec, val_emb, recs, **view))), 3)
        summary["val_own_grid_nerfs"] = len(recs)
        model.decoder.to(device)
    state = {k: t.detach().cpu() for k, t in dec.state_dict().items()}
    for path in paths:
        if not path.exists():
            continue
        ck = load_checkpoint(path, with_resume=True)
        if ck.encoder_fingerprint != first.encoder_fingerprint:
            continue
        ck.state = {**ck.state, RENDER_DECODER: state}
        # the checkpoint's settings describe its render decoder (load_encoder builds it from them)
        ck.config = dataclasses.replace(ck.config, **_refit_settings(config))
        save_checkpoint(path, ck, inputs, input_paths)
    return summary


def pretrain_encoder(
    graphs,
    nerfs,
    out: Path,
    config: EncoderConfig,
    device: str = "cpu",
    resume: bool = False,
    force: bool = False,
    archs: list[str] | None = None,
    progress: bool = True,
    stop_after: int = 0,
    dist: Dist | None = None,
) -> TrainSummary:
    """Train an encoder on the graphs (and, for r / r+c, the NeRFs they came from).

    ``stop_after`` > 0 runs at most that many epochs in this call (the schedule still spans
    ``config.epochs``); rerun with ``resume=True`` to continue. ``dist``: this process's rank in
    a data-parallel run (module docstring); every rank calls this with the same arguments."""
    out = Path(out)
    with output_folder(out, "--out"):  # refused while another run writes there (ranks share it)
        return _pretrain_into(graphs, nerfs, out, config, device, resume, force, archs, progress, stop_after, dist)


def _pretrain_into(graphs, nerfs, out: Path, config: EncoderConfig, device, resume, force, archs, progress,
                   stop_after, dist: Dist | None) -> TrainSummary:
    from tqdm import tqdm

    dist = dist or Dist()
    progress = progress and dist.main
    t_start = time.perf_counter()
    last_path, best_path = out / "last.h5", out / "best.h5"
    ckpt: Checkpoint | None = None
    if last_path.exists() and not force:
        if not resume:
            raise UserError(f"{last_path} exists: pass --resume to continue that run, or --force to start over")
        ckpt = load_checkpoint(last_path, with_resume=True)
        diff = sorted(k for k, v in config.to_dict().items() if ckpt.config.to_dict().get(k) != v)
        # the render decoder's settings do not touch the encoder: --resume with other refit_*
        # settings refits it (nfkit/encoder/refit.py), the encoder is kept
        diff = [k for k in diff if not k.startswith(REFIT_PREFIX)]
        if diff:
            raise IncompatibleError(f"{last_path}: was trained with other settings ({', '.join(diff)}); use --force to start over")
    out.mkdir(parents=True, exist_ok=True)

    bank = GraphBank.load(graphs, archs=archs, splits={"train", "val"}, with_nf2vec=config.encoder == "nf2vec", progress=progress)
    init_fps = bank.init_fingerprints()
    train_objects = {
        k: {a: r for a, r in v.items() if bank.meta(a, r).split == "train"}
        for k, v in bank.index_by_object().items()
    }
    train_objects = {k: v for k, v in train_objects.items() if v}
    if not train_objects:
        raise UserError(f"{graphs}: no graphs of the train split")
    families = sorted(bank.archs)
    multi = sum(1 for v in train_objects.values() if len(v) >= 2)
    if config.uses_contrastive and multi == 0:
        raise UserError("the SigLIP loss (r+c, c) needs objects in at least two architectures")
    nf2vec_width = 0
    if config.encoder == "nf2vec":
        shapes = {g.nf2vec.shape[1:] for g in bank.archs.values()}
        if len(shapes) > 1:
            raise UserError(f"nf2vec encodes one row layout; the graphs have {sorted(shapes)}: pick one --arch")
        nf2vec_width = int(next(iter(shapes))[1])

    records = targets = None
    val_items = _pick_val_items(bank, config.val_nerfs)
    if config.uses_decoder:
        if nerfs is None:
            raise UserError("the rendering loss (r, r+c) needs the NeRFs: give NERFS")
        records = match_nerfs(bank, nerfs)
        keys = sorted(records)
        if not dist.main:  # rank 0 renders the targets into the cache; the others read it
            dist.barrier()
        tlist = targets_for([records[k] for k in keys], target_spec(config), out / "targets.h5", progress=progress)
        if dist.main:
            dist.barrier()
        targets = dict(zip(keys, tlist, strict=True))

    torch.manual_seed(config.seed)
    model = EncoderModel(config, nf2vec_width)
    model.fit_value_stats(bank, [(a, r) for v in train_objects.values() for a, r in v.items()])
    model = model.to(device)
    schedule0 = pair_schedule(train_objects, 0, config.seed, families)
    steps_per_epoch = max(1, math.ceil(len(schedule0) / config.batch_objects))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=steps_per_epoch * config.epochs, pct_start=config.pct_start
    )
    use_amp = config.amp and str(device).startswith("cuda")
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    history: list[dict] = []
    start_epoch, step, best_metric, best_epoch = 0, 0, float("nan"), -1
    if ckpt is not None:
        model.encoder.load_state_dict(ckpt.state["encoder"])
        if model.decoder is not None:
            model.decoder.load_state_dict(ckpt.state["decoder"])
        if model.siglip is not None:
            model.siglip.load_state_dict(ckpt.state["siglip"])
        for sc in model.scales():  # standardisation is measured when training ends; identity meanwhile
            sc.reset()
        rs = load_resume_state(ckpt)
        optimizer.load_state_dict(rs["optimizer"])
        scheduler.load_state_dict(rs["scheduler"])
        if scaler is not None and rs.get("scaler"):
            scaler.load_state_dict(rs["scaler"])
        start_epoch, step = ckpt.epoch, ckpt.step
        history, best_metric, best_epoch = list(ckpt.history), ckpt.best_metric, ckpt.best_epoch
        log.info("resuming %s at epoch %d", last_path, start_epoch)
    broadcast_module(dist, model)  # equal already (same seed, same checkpoint); made sure
    params = list(model.parameters())

    validator = _Validator(bank, val_items, records, targets, config, device) if val_items and dist.main else None
    trained = {
        a: {
            "fingerprint": g.arch_fingerprint,
            "init_fingerprint": init_fps[a],
            "structure_key": g.structure_key,
            "spec": g.spec.to_dict(),
        }
        for a, g in bank.archs.items()
    }
    # keyed by <arch folder>/<shard>: shards of one object set have the same name in every
    # architecture's folder
    keys = {p: f"graphs:{Path(p).parent.name}/{Path(p).name}" for p in sorted(bank.sources)}
    inputs = {keys[p]: fp for p, fp in bank.sources.items()}
    input_paths = {keys[p]: [p] for p in keys}  # for `nfkit status`
    vocab = json.dumps(vocabulary(), sort_keys=True)
    better = (lambda new, old: math.isnan(old) or new > old) if config.uses_decoder else (lambda new, old: math.isnan(old) or new < old)
    metric_key = "val_psnr" if config.uses_decoder else "val_siglip"

    model.train()
    epochs_run = 0
    for epoch in range(start_epoch, config.epochs):
        schedule = pair_schedule(train_objects, epoch, config.seed, families)
        batches = [schedule[i : i + config.batch_objects] for i in range(0, len(schedule), config.batch_objects)]
        sums = {"loss": 0.0, "loss_r": 0.0, "loss_c": 0.0}
        t_epoch, t_load = time.perf_counter(), 0.0
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", unit="step", disable=not progress, leave=False)
        for bi, batch in enumerate(bar):
            t0 = time.perf_counter()
            rand = StepRandom(config.seed, epoch, bi)
            items = []
            for key, a, b in batch:
                items += [(a, train_objects[key][a]), (b, train_objects[key][b])]
            # this rank's part of the step's batch (all of it in a single process)
            bounds = split_bounds(len(items), dist.world)
            lo, hi = bounds[dist.rank]
            share = (hi - lo) / len(items)
            mine = items[lo:hi]
            batch_targets = [targets[it] for it in mine] if targets is not None else None
            t_load += time.perf_counter() - t0
            with torch.autocast("cuda", dtype=torch.float16, enabled=use_amp):
                if mine:
                    emb_mine = model.embed(bank, mine, config.max_block_edges, config.readout_edges, rand.edges)
                else:  # more ranks than graphs in this step: join the collectives with nothing
                    emb_mine = torch.zeros((0, config.embed_dim), device=device, requires_grad=True)
                emb = gather_rows(dist, emb_mine, [b - a for a, b in bounds])  # the whole batch, in order
                loss = emb.new_zeros(())
                loss_r = loss_c = None
                if model.decoder is not None and mine:
                    stats = model.decoder.batch_stats_from(emb.float()) if dist.enabled else contextlib.nullcontext()
                    with stats:
                        loss_r = _decoder_loss(model, emb[lo:hi].float(), batch_targets, config,
                                               [rand.item(k) for k in range(lo, hi)])
                    # weighted by this rank's share: the ranks' average gradient is the gradient
                    # of the mean over the whole batch
                    loss = loss + loss_r * (share * dist.world)
                if model.siglip is not None:
                    distinct = [i for i, (_, a, b) in enumerate(batch) if a != b]
                    if len(distinct) >= 1:  # on the whole batch, identical on every rank
                        u, v = emb[0::2][distinct].float(), emb[1::2][distinct].float()
                        loss_c = model.siglip(u, v)
                        loss = loss + (config.lambda_c * loss_c if model.decoder is not None else loss_c)
                if dist.enabled:  # every rank runs the gather's backward, whatever its loss uses
                    loss = loss + 0.0 * emb.float().sum()
            optimizer.zero_grad(set_to_none=True)
            # the step's loss terms over the whole batch (the same on every rank)
            terms = [
                loss_r.detach().item() * share if loss_r is not None else 0.0,
                loss_c.detach().item() / dist.world if loss_c is not None else 0.0,
            ]
            if scaler is not None:
                scaler.scale(loss).backward()
                terms = average_gradients(dist, params, terms)
                if config.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                scaler.step(optimizer)  # nf2vec's public code never calls this
                scaler.update()
            else:
                loss.backward()
                terms = average_gradients(dist, params, terms)
                if config.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
            scheduler.step()
            step += 1
            step_r, step_c = terms
            has_c = model.siglip is not None and loss_c is not None
            step_loss = (step_r if model.decoder is not None else 0.0) + (
                (config.lambda_c * step_c if model.decoder is not None else step_c) if has_c else 0.0
            )
            if not math.isfinite(step_loss):
                raise UserError(f"training diverged at epoch {epoch + 1}, step {bi + 1} (loss {step_loss}); lower --lr")
            sums["loss"] += step_loss
            sums["loss_r"] += step_r
            sums["loss_c"] += step_c
            bar.set_postfix(loss=f"{step_loss:.4f}")
        bar.close()
        check_replicas(dist, model)
        seconds = time.perf_counter() - t_epoch
        entry = {k: v / max(len(batches), 1) for k, v in sums.items()}
        entry.update(epoch=epoch + 1, steps=len(batches), seconds=seconds, s_per_step=seconds / max(len(batches), 1),
                     load_share=t_load / max(seconds, 1e-9), lr=scheduler.get_last_lr()[0])
        if validator is not None and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs):
            entry.update(validator(model))
        history.append(entry)
        improved = metric_key in entry and better(entry[metric_key], best_metric)
        if improved:
            best_metric, best_epoch = float(entry[metric_key]), epoch + 1
        ck = Checkpoint(
            config=config,
            state=module_states(model),
            epoch=epoch + 1,
            step=step,
            history=history,
            best_metric=best_metric,
            best_epoch=best_epoch,
            trained_archs=trained,
            vocabulary=vocab,
            nf2vec_width=nf2vec_width,
        )
        if dist.main:  # the other ranks hold the same weights (check_replicas)
            if improved or (not best_path.exists() and validator is None):
                save_checkpoint(best_path, ck, inputs, input_paths)
            ck.resume = resume_bytes(optimizer, scheduler, scaler)
            save_checkpoint(last_path, ck, inputs, input_paths)
        epochs_run += 1
        msg = f"epoch {epoch + 1}: loss {entry['loss']:.4f}"
        if "val_psnr" in entry:
            msg += f", val PSNR {entry['val_psnr']:.2f} dB (floor {entry['val_psnr_floor']:.2f})"
        if "val_siglip" in entry:
            msg += f", val SigLIP {entry['val_siglip']:.3f}"
        if dist.main:
            log.info(msg)
        if progress:
            tqdm.write(msg)
        if stop_after > 0 and epochs_run >= stop_after and epoch + 1 < config.epochs:
            log.info("stopping after %d epoch(s) as asked; resume to continue", epochs_run)
            break
    if dist.main and not best_path.exists() and last_path.exists():
        # no validation split: the last checkpoint is the best one known
        save_checkpoint(best_path, load_checkpoint(last_path), inputs, input_paths)
    train_items = [(a, r) for v in train_objects.values() for a, r in v.items()]
    embedded: dict[Path, torch.Tensor] = {}
    if dist.main and model.scales() and (epochs_run > 0 or _stats_missing([last_path, best_path])):
        # also when a run killed while storing them is resumed with every epoch done
        embedded = _store_embedding_stats(model, bank, train_items, [last_path, best_path], inputs, input_paths, progress)
    refit = None
    if dist.main and config.refit_steps > 0 and config.uses_decoder and (epochs_run > 0 or _refit_due(best_path, config)):
        refit = _store_render_decoder(model, bank, train_items, val_items, records, targets, [best_path, last_path],
                                      inputs, input_paths, config, device, progress, embedded.get(best_path))
        if refit is not None:
            from nfkit.encoder.refit import summary_line

            log.info(summary_line(refit))  # the CLI prints it too
    dist.barrier()  # every rank returns once the checkpoints are complete
    return TrainSummary(
        out=out,
        epochs_run=epochs_run,
        epoch=config.epochs,
        best_epoch=best_epoch,
        best_metric=best_metric,
        history=history,
        seconds=time.perf_counter() - t_start,
        n_train_objects=len(train_objects),
        n_train_graphs=sum(len(v) for v in train_objects.values()),
        archs=families,
        refit=refit,
    )
