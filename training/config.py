"""Training configuration: one pydantic model, filled from a YAML file and/or CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import timm
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lookalike.errors import ConfigError
from lookalike.faces import DETECTORS, TemplateName
from lookalike.images import CropMode
from lookalike.training.metric_learning import LOSSES, MINERS, create_criterion
from lookalike.training.self_supervised import SSL_METHODS, check_ssl_args

# Options that only one kind of run uses: setting one for the other kind is an error, not a no-op.
METRIC_ONLY = (
    "loss",
    "miner",
    "synthesis",
    "distance",
    "margin",
    "loss_args",
    "miner_args",
    "loss_lr",
    "gather_batches",
    "classes_per_batch",
    "samples_per_class",
    "embedding_size",
    "backbone_lr_mult",
)
SSL_ONLY = ("ssl_args", "jitter_strength", "greyscale_probability", "blur_probability")
SSL_BATCH = 64
SSL_MIN_CROP_SCALE = 0.2


class TrainConfig(BaseModel):
    """Defaults are sized for a 2-core CPU and a few hundred images (AT&T faces in minutes)."""

    model_config = ConfigDict(extra="forbid")

    data: Path
    out: Path = Path("runs/default")
    eval_data: Path | None = Field(None, description="Held-out classes in their own folder (else split --data).")
    split: Literal["sorted", "hash"] = "sorted"
    train_fraction: float = Field(0.75, gt=0, lt=1)
    crop_fraction: float = Field(1.0, gt=0, le=1)
    crop_mode: CropMode = Field(
        "center", description="center: the central square; squash: the whole picture, squared (wide product photos)."
    )
    align_faces: str | None = Field(
        None,
        description="Detect each image's largest face with this detector (mtcnn) and train on it aligned onto the "
        "five-point template; the bundle then aligns the same way in index and service. Images without a face "
        "are skipped and counted.",
    )
    face_margin: float = Field(
        0.0, ge=0, le=1, description="Border added around the template's face, as a fraction of the crop side."
    )
    face_template: TemplateName = Field(
        "arcface_112",
        description="Where the five landmarks land: arcface_112 (the common template), or dlib_150 (dlib's face "
        "chip, which --backbone dlib_resnet was trained on).",
    )
    face_cache: Path | None = Field(
        None, description="Where detections are cached (default ~/.cache/lookalike/faces-<detector>-<score>.jsonl)."
    )
    min_crop_scale: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Smallest image area a random training crop keeps; aligned faces want ~0.8, products less; "
        f"--ssl runs default to {SSL_MIN_CROP_SCALE} (a view must match a detail with the whole).",
    )

    backbone: str = "resnet10t"
    pretrained: str | None = Field(
        None,
        description="Backbone weights: a local timm weights file, another run's last.pt/best.pt to fine-tune from "
        "(a --ssl run's included: its projector is dropped), or 'timm' for the hub's (needs the internet).",
    )
    image_size: int = Field(64, ge=32, le=1024)
    embedding_size: int = Field(
        128,
        ge=0,
        le=4096,
        description="Width of the head; 0: no head, the backbone's features are the embedding (fine-tuning a "
        "pretrained face encoder such as dlib_resnet); --ssl runs have none and export the backbone's features.",
    )
    backbone_lr_mult: float = Field(
        1.0,
        ge=0,
        le=1,
        description="The backbone's learning rate as a fraction of --lr (the head's): 0.1 fine-tunes a pretrained "
        "backbone gently, 0 freezes it and trains the head only.",
    )

    ssl: str | None = Field(
        None,
        description="Self-supervised training on unlabelled images: simclr, moco or arb (a flat folder or class "
        "folders, labels unused). Exports the backbone; fine-tune it with --pretrained RUN/last.pt.",
    )
    ssl_args: dict[str, float] = Field(
        default_factory=dict,
        description="The --ssl method's own hyper-parameters, NAME=VALUE (temperature, queue_size, momentum, "
        "projector_dim...).",
    )
    jitter_strength: float = Field(0.5, ge=0, le=1, description="--ssl views: SimCLR's colour jitter strength s.")
    greyscale_probability: float = Field(0.2, ge=0, le=1, description="--ssl views: chance of a grey view.")
    blur_probability: float = Field(0.5, ge=0, le=1, description="--ssl views: chance of a Gaussian blur.")

    loss: str = Field(
        "triplet",
        description="Loss: triplet, contrastive, multi_similarity, lifted, n_pair, angular, npair_angular, "
        "proxy_anchor, proxy_nca, arcface, cosface.",
    )
    # The default recipe is the measured best (README Results, 3 seeds each): batch-hard beat semi-hard,
    # with or without synthesis, on Cars (R@1 0.062 against 0.048 with synthesis, pixel floor 0.034) and
    # on LFW (0.227 against 0.079 at 5 epochs, 0.418 against 0.380 at 20), and synthesis does not lift it.
    miner: str | None = Field(
        "auto",
        description="Tuple miner: auto (the loss's own: batch_hard for triplet), batch_hard, semihard, batch_all, "
        "multi_similarity, none.",
    )
    synthesis: bool = Field(
        False,
        description="Symmetrical Synthesis: mirror same-class pairs; the miner (or the N-pair/angular loss) picks "
        "among real and synthetic points (lifts semi-hard mining; not batch-hard).",
    )
    distance: Literal["euclidean", "squared_euclidean", "cosine"] | None = Field(
        None, description="Distance for the loss and miner that take one; unset: each one's own (euclidean)."
    )
    margin: float | None = Field(
        None, ge=0, description="Margin for the loss and miner that take one; unset: each one's own (0.2)."
    )
    loss_args: dict[str, float] = Field(
        default_factory=dict, description="The loss's own hyper-parameters, NAME=VALUE (e.g. alpha=2 beta=50)."
    )
    miner_args: dict[str, float] = Field(
        default_factory=dict, description="The miner's own hyper-parameters, NAME=VALUE (e.g. epsilon=0.1)."
    )

    loss_lr: float | None = Field(
        None,
        gt=0,
        description="Learning rate of the loss's own parameters (proxies, class weights); unset: --lr times the "
        "loss's factor (100 for proxy_anchor and proxy_nca, 1 for arcface and cosface).",
    )
    gather_batches: bool = Field(
        False,
        description="With torchrun: mine and score over every rank's batch together (all-gathered; each rank's "
        "gradients flow back to its own part), as one process would on the whole batch.",
    )

    classes_per_batch: int = Field(8, ge=2)
    samples_per_class: int = Field(4, ge=2)
    batch_size: int | None = Field(
        None,
        ge=2,
        description=f"Metric runs: if given, must equal P x K (a guard against typos). --ssl runs: images per batch, "
        f"two views each (default {SSL_BATCH}).",
    )
    epochs: int = Field(20, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    warmup_epochs: float = Field(1.0, ge=0)

    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="bfloat16/float16 autocast on CUDA; ignored on the CPU.")
    compile: bool = Field(False, description="torch.compile the model (CUDA).")
    workers: int = Field(2, ge=0)
    cache_images: bool = Field(
        False, description="Decode every image once and keep it in memory (small data sets: epochs at model speed)."
    )
    export: Literal["best", "last"] = Field(
        "best",
        description="Which epoch becomes the bundle: the best by held-out Recall@1, or the last. Use last when the "
        "held-out classes are your test set: picking the epoch on them flatters the result.",
    )
    # On validation classes (README Results) the flip raised LFW MAP@R and Recall@1 in all three runs
    # (+0.004 to +0.006, +0.002 to +0.032) and Cars MAP@R in two of three (-0.001 to +0.002), and left
    # LFW pairs accuracy within its noise; training already flips at random, so the network is made
    # for it. What it costs is a second forward pass per image.
    test_time_flip: bool = Field(
        True,
        description="Embed each image and its mirror image and average the two, in every evaluation and in the "
        "bundle (index and service then do the same): two forward passes per image.",
    )
    seed: int = 0
    resume: bool = False

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        if not timm.is_model(name):
            raise ValueError(f"unknown backbone {name!r}: not a timm model name (see timm.list_models())")
        return name

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        LOSSES.get(name)
        return name

    @field_validator("miner")
    @classmethod
    def _known_miner(cls, name: str | None) -> str | None:
        if name in (None, "none"):
            return None
        if name != "auto":
            MINERS.get(name)
        return name

    @field_validator("ssl")
    @classmethod
    def _known_ssl(cls, name: str | None) -> str | None:
        if name is not None:
            SSL_METHODS.get(name)
        return name

    @field_validator("align_faces")
    @classmethod
    def _known_detector(cls, name: str | None) -> str | None:
        if name is not None:
            DETECTORS.get(name)
        return name

    @model_validator(mode="after")
    def _something_to_train(self) -> TrainConfig:
        if self.backbone_lr_mult == 0 and self.embedding_size == 0 and not self.ssl:
            raise ConfigError(
                "--backbone-lr-mult 0 freezes the backbone and --embedding-size 0 has no head: nothing would train"
            )
        return self

    @model_validator(mode="after")
    def _framing_is_one_or_the_other(self) -> TrainConfig:
        """Aligned faces are cut by their landmarks: a central crop's options would do nothing."""
        if self.align_faces is None:
            unused = [n for n in ("face_margin", "face_cache", "face_template") if n in self.model_fields_set]
            reason = "only used with --align-faces"
        else:
            unused = [n for n in ("crop_fraction", "crop_mode") if n in self.model_fields_set]
            reason = "not used with --align-faces (the face's landmarks frame the crop)"
        if unused:
            raise ConfigError(f"{', '.join('--' + n.replace('_', '-') for n in unused)}: {reason}")
        return self

    @model_validator(mode="after")
    def _options_fit_the_kind_of_run(self) -> TrainConfig:
        """A metric option on an --ssl run (or the reverse) would do nothing: refuse it by name."""
        unused = [n for n in (METRIC_ONLY if self.ssl else SSL_ONLY) if n in self.model_fields_set]
        if unused:
            flags = ", ".join(f"--{n.replace('_', '-')}" for n in unused)
            raise ConfigError(
                f"{flags}: not used by {'an --ssl ' + self.ssl if self.ssl else 'a metric-learning (labelled)'} run"
            )
        if self.ssl:
            check_ssl_args(self.ssl, self.ssl_args)
            if "min_crop_scale" not in self.model_fields_set:
                self.min_crop_scale = SSL_MIN_CROP_SCALE
        return self

    @model_validator(mode="after")
    def _every_criterion_option_is_taken(self) -> TrainConfig:
        if self.ssl:
            return self
        create_criterion(
            self.loss,
            self.miner,
            self.synthesis,
            self.distance,
            self.margin,
            self.loss_args,
            self.miner_args,
            embedding_size=self.embedding_size,
        )
        if self.loss_lr is not None and LOSSES.get(self.loss).param_lr_scale is None:
            raise ConfigError(f"--loss-lr: the {self.loss!r} loss has no parameters to train")
        return self

    @model_validator(mode="after")
    def _batch_matches_pk(self) -> TrainConfig:
        pk = self.classes_per_batch * self.samples_per_class
        if not self.ssl and self.batch_size is not None and self.batch_size != pk:
            raise ValueError(
                f"batch size {self.batch_size} does not equal classes-per-batch x samples-per-class = "
                f"{self.classes_per_batch} x {self.samples_per_class} = {pk}"
            )
        return self


def load_config(path: Path | None, overrides: dict) -> TrainConfig:
    """YAML file first, CLI flags (those actually given) on top; `ConfigError` says what is wrong."""
    values = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of option: value")
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError.from_validation(err) from None
