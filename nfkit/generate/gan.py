"""Training, sampling and storing the latent GAN of one class (WGAN-GP).

Recipe (CVLAB-Unibo/nf2vec ``task_generation/``, after Achlioptas et al.'s ``latent_3d_points``
``w_gan_gp.py``; SPEC §10; the ``paper`` preset): per epoch ``max(1, n // batch)`` generator
steps, each after ``critic_steps`` = 5 critic steps on fresh real batches and fresh noise;
critic loss E[D(fake)] − E[D(real)] + λ·GP with λ = 10 (:func:`nfkit.losses.gradient_penalty`),
generator loss −E[D(fake)]; Adam lr 1e-4, β = (0.5, 0.999) for both; batch 50; 2000 epochs.

A class with fewer than ``batch_size`` training embeddings uses batches of all of them (the
reference would run zero steps per epoch: ``int(n / batch)``).

The artifact (kind ``latent-gan``, schema v1, ``data_specs/latent-gan-v1.md``) holds both
networks' state_dicts, the class, the embedding width and the fingerprint of the encoder whose
embeddings it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nfkit.config import Presets, StageConfig, option
from nfkit.errors import UserError
from nfkit.io.artifacts import (
    ArtifactError,
    open_artifact,
    read_checked,
    register_reader,
    write_artifact,
)
from nfkit.losses import gradient_penalty
from nfkit.models.gan import LatentCritic, LatentGenerator

LATENT_GAN = "latent-gan"
LATENT_GAN_VERSION = 1


@dataclass(frozen=True)
class GanConfig(StageConfig):
    """Every hyper-parameter of the latent GAN; each field's help is its ``--set`` help."""

    epochs: int = option(2000, "training epochs (passes over the class's training embeddings)", check=lambda v: v >= 1, must=">= 1")
    batch_size: int = option(50, "embeddings per batch (classes with fewer use all of theirs)", check=lambda v: v >= 1, must=">= 1")
    critic_steps: int = option(5, "critic steps per generator step", check=lambda v: v >= 1, must=">= 1")
    lr: float = option(1e-4, "Adam learning rate of both networks", check=lambda v: v > 0, must="> 0")
    beta1: float = option(0.5, "Adam beta1", check=lambda v: 0 <= v < 1, must="in [0, 1)")
    beta2: float = option(0.999, "Adam beta2", check=lambda v: 0 <= v < 1, must="in [0, 1)")
    gp_weight: float = option(10.0, "weight of the WGAN-GP gradient penalty", check=lambda v: v >= 0, must=">= 0")
    noise_dim: int = option(128, "width of the generator's noise", check=lambda v: v >= 1, must=">= 1")
    noise_std: float = option(0.2, "standard deviation of the generator's noise", check=lambda v: v > 0, must="> 0")
    generator_hidden: int = option(128, "width of the generator's hidden layer", check=lambda v: v >= 1, must=">= 1")
    critic_hidden: tuple[int, ...] = option((256, 512), "widths of the critic's two hidden layers", check=lambda v: len(v) == 2 and min(v) >= 1, must="two positive widths")
    output: str = option("auto", "the generator's last activation: relu (the reference; its embeddings are non-negative), linear, or auto: relu when every training embedding is non-negative, else linear (standardised embeddings, pretrain-encoder's embed_norm, are half negative, which a ReLU output cannot reach)", choices=("auto", "relu", "linear"))
    seed: int = option(0, "seed of initialization, batches and noise")


#: ``paper``: the reference recipe. ``cpu``: ~20 training embeddings per class give one
#: generator step per epoch, so 2000 epochs are only 2000 steps: the learning rate is raised to
#: 5e-4 for 1000 epochs (35-50 s per class of 1024-d embeddings on one core). Measured on the
#: demo's chair and airplane embeddings: 1500 epochs took 1.2-1.9x as long for a minimum matching
#: distance to the real val + test embeddings 0.007 lower (0.318 / 0.314 against 0.325 / 0.320).
#: ``tiny``: tests (a second on 16-d toy clusters).
PRESETS: Presets[GanConfig] = Presets(
    GanConfig,
    paper=GanConfig(),
    cpu=GanConfig(epochs=1000, lr=5e-4),
    tiny=GanConfig(epochs=150, batch_size=16, lr=2e-3, noise_dim=16, generator_hidden=32, critic_hidden=(32, 32)),
)


@dataclass
class TrainedGan:
    """A trained GAN of one class and what it was trained on."""

    generator: LatentGenerator
    critic: LatentCritic
    class_name: str
    config: GanConfig
    encoder_fingerprint: str = ""
    archs: list[str] = field(default_factory=list)
    n_train: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return self.generator.dim


def _real_batch(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    rows = torch.randperm(len(x), generator=gen)[:size]
    return x[rows.to(x.device)]


def train_gan(
    embeddings: np.ndarray,
    config: GanConfig,
    class_name: str = "",
    encoder_fingerprint: str = "",
    archs: list[str] | None = None,
    device: str = "cpu",
    progress: bool = False,
) -> TrainedGan:
    """Train a WGAN-GP on the rows of ``embeddings`` (one class). (n, dim) -> TrainedGan.

    Deterministic for a given config on one device (the caller's random state is untouched).
    """
    x_np = np.asarray(embeddings, dtype=np.float32)
    if x_np.ndim != 2 or len(x_np) < 2:
        raise UserError(f"class {class_name or '?'}: a latent GAN needs at least 2 training embeddings, got {len(x_np)}")
    dev = torch.device(device)
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        # Batches of ~50 x 1024 through 256/512-wide layers are too small for intra-op threads:
        # on the 2-core development machine under load, 2 threads made the loop 10-40x slower
        # than 1 (thread synchronisation per tiny product). Restored afterwards.
        torch.set_num_threads(1)
    try:
        return _train(x_np, config, class_name, encoder_fingerprint, archs, dev, progress)
    finally:
        torch.set_num_threads(threads)


def generator_output(config: GanConfig, embeddings: np.ndarray) -> str:
    """The generator's last activation for these training embeddings (``GanConfig.output``)."""
    if config.output != "auto":
        return config.output
    return "relu" if float(np.min(embeddings)) >= 0.0 else "linear"


def _train(x_np, config, class_name, encoder_fingerprint, archs, dev, progress) -> TrainedGan:
    with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
        torch.manual_seed(config.seed)
        g = LatentGenerator(x_np.shape[1], config.noise_dim, config.generator_hidden, generator_output(config, x_np)).to(dev)
        d = LatentCritic(x_np.shape[1], tuple(config.critic_hidden)).to(dev)
    gen = torch.Generator().manual_seed(config.seed)
    noise_gen = torch.Generator(device=dev).manual_seed(config.seed + 1)
    x = torch.as_tensor(x_np, device=dev)
    batch = min(config.batch_size, len(x))
    steps = max(1, len(x) // batch)
    betas = (config.beta1, config.beta2)
    opt_g = torch.optim.Adam(g.parameters(), lr=config.lr, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=config.lr, betas=betas)
    history: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.epochs, unit="epoch", desc=f"GAN {class_name}", leave=False)
    try:
        for epoch in range(config.epochs):
            for _ in range(steps):
                for _ in range(config.critic_steps):
                    real = _real_batch(x, batch, gen)
                    with torch.no_grad():
                        fake = g(g.noise(batch, noise_gen, config.noise_std))
                    gp = gradient_penalty(d, real, fake, generator=noise_gen)
                    w_dist = d(real).mean() - d(fake).mean()
                    loss_d = -w_dist + config.gp_weight * gp
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                loss_g = -d(g(g.noise(batch, noise_gen, config.noise_std))).mean()
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
            if epoch % 50 == 0 or epoch == config.epochs - 1:
                history.append({"epoch": epoch, "w_distance": float(w_dist.detach()), "gp": float(gp.detach()), "loss_g": float(loss_g.detach())})
            if bar is not None:
                bar.set_postfix(w=f"{float(w_dist.detach()):.3f}")
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    g.eval()
    d.eval()
    return TrainedGan(g, d, class_name, config, encoder_fingerprint, sorted(archs or []), len(x_np), history)


@torch.no_grad()
def sample_gan(gan: TrainedGan, n: int, seed: int = 0) -> np.ndarray:
    """``n`` generated embeddings (deterministic in ``seed``). -> (n, dim) float32."""
    if n < 1:
        raise UserError(f"the number of samples must be >= 1, got {n}")
    dev = next(gan.generator.parameters()).device
    noise_gen = torch.Generator(device=dev).manual_seed(int(seed))
    z = gan.generator.noise(n, noise_gen, gan.config.noise_std)
    return gan.generator(z).float().cpu().numpy()


def save_gan(path: str | Path, gan: TrainedGan, inputs: dict[str, str] | None = None,
             input_paths: dict | None = None) -> Path:
    """Write the GAN artifact atomically (schema ``data_specs/latent-gan-v1.md``)."""
    cfg = {"gan": gan.config.to_dict()}
    with write_artifact(path, LATENT_GAN, LATENT_GAN_VERSION, cfg, {"encoder": gan.encoder_fingerprint, **(inputs or {})},
                        input_paths) as f:
        f.attrs["class_name"] = gan.class_name
        f.attrs["dim"] = gan.dim
        f.attrs["encoder_fingerprint"] = gan.encoder_fingerprint
        f.attrs["archs"] = json.dumps(gan.archs)
        f.attrs["n_train"] = gan.n_train
        f.attrs["generator_output"] = gan.generator.output
        f.attrs["history"] = json.dumps(gan.history)
        for name, module in (("generator", gan.generator), ("critic", gan.critic)):
            grp = f.create_group(name)
            for k, t in module.state_dict().items():
                grp.create_dataset(k, data=t.detach().cpu().numpy())
    return Path(path)


def load_gan(path: str | Path, device: str = "cpu") -> TrainedGan:
    """Read a GAN artifact; a malformed one raises :class:`ArtifactError` naming the file."""
    path = Path(path)
    with open_artifact(path, LATENT_GAN) as f:
        try:
            config = GanConfig.from_dict(json.loads(f.attrs["nfkit_config"])["gan"])
            dim = int(f.attrs["dim"])
            states = {n: {k: torch.from_numpy(np.asarray(read_checked(f[n][k], path))) for k in f[n]} for n in ("generator", "critic")}
            output = str(f.attrs.get("generator_output", "relu"))  # written before it existed: relu
            meta = (str(f.attrs["class_name"]), str(f.attrs["encoder_fingerprint"]), json.loads(f.attrs["archs"]),
                    int(f.attrs["n_train"]), json.loads(f.attrs["history"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{path}: malformed latent-gan artifact ({exc})") from None
    try:
        g = LatentGenerator(dim, config.noise_dim, config.generator_hidden, output)
    except ValueError as exc:
        raise ArtifactError(f"{path}: malformed latent-gan artifact ({exc})") from None
    d = LatentCritic(dim, tuple(config.critic_hidden))
    try:
        g.load_state_dict(states["generator"])
        d.load_state_dict(states["critic"])
    except (RuntimeError, TypeError) as exc:  # TypeError: a damaged (undecodable) dataset name
        raise ArtifactError(f"{path}: GAN weights do not match its header ({str(exc).splitlines()[0]})") from None
    return TrainedGan(g.to(device).eval(), d.to(device).eval(), meta[0], config, meta[1], meta[2], meta[3], meta[4])


def _read(path: Path) -> TrainedGan:
    return load_gan(path)


register_reader(LATENT_GAN, LATENT_GAN_VERSION, _read)

__all__ = ["LATENT_GAN", "LATENT_GAN_VERSION", "GanConfig", "PRESETS", "TrainedGan", "train_gan", "sample_gan", "save_gan", "load_gan"]
