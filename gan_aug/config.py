"""Settings of the conditional GAN (torch-free, so the command line can show their defaults without
loading torch)."""

from __future__ import annotations

from dataclasses import dataclass

from gan_aug.colour import COLOUR_MODELS
from gan_core.config import GANTrainingConfig

JUDGE_LOSSES = ("weighted", "balanced_softmax")
CRITIC_CONTRASTS = ("off", "channel", "class")  # what the critic sees of gan_aug.networks.contrast_view


@dataclass(frozen=True)
class GANConfig(GANTrainingConfig):
    """Hyperparameters on top of :class:`~gan_core.config.GANTrainingConfig`. ``steps`` counts
    generator updates; ``class_balance`` sets how often each class is drawn: probability proportional
    to ``count ** (1 - class_balance)`` (1 = every class equally often, 0 = as often as in the data).
    ``feature_match_weight > 0`` adds class feature matching on the judge's features to the generator
    loss: ``feature_match="mean"`` pulls each class's mean to its real images' mean, ``"nearest"``
    pulls each fake to the nearest real image of its class (off by default; docs/gan-synthesis.md,
    round 7, has what it measured). ``class_latents`` (BAGAN-style transfer, on by default) first
    trains an autoencoder of every class for ``autoencoder_steps`` steps (at most ``steps``) with the
    generator as its decoder, then draws each class's latents from a Gaussian fitted to its images'
    codes, whose spread a rare class borrows from the common ones
    (:func:`~gan_aug.train.pretrain_autoencoder`; docs/gan-synthesis.md, round 8).
    ``autoencoder_label_weight > 0`` makes that code also predict the label (a linear head with
    balanced softmax, its cross-entropy weighted into the reconstruction loss), so that what varies
    most in the pixels (colour, say) cannot crowd the class out of the code (round 9). ``None`` (the
    default, auto) decides per fit: 1.0 when the common classes' means explain less than 5% of the
    pixel variance (:func:`~gan_aug.train.resolve_label_weight`; colour-mnist 0.003, grey digits,
    MNIST and photo crops 0.30-0.66), else 0; the trained GAN's config holds the weight used (round 19).
    ``judge_loss`` is the class judge's training loss: ``"balanced_softmax"`` (the default: the log
    class shares added to its logits in training, no weights) or ``"weighted"`` (cross-entropy
    weighted by n / (K n_c), the default before round 12 of docs/gan-synthesis.md: at 10 images
    against 270 it did not fit colour digits).
    ``colour_jitter`` adds DiffAugment's colour op (brightness, saturation, contrast) to the
    critic's views of real and fake images only; the judge and its view of the fakes keep colour
    as it is (it is a class cue; with the op the judge knew the minority classes less well, round
    14 of docs/gan-synthesis.md).
    ``adc_weight > 0`` gives the critic a classifier head over real and fake of every class (ADC-GAN,
    Hou et al. 2022) that trains with it, and adds the generator's side of that loss with this
    weight: a class guide that keeps learning, where the judge is frozen (off by default; round 16).
    ``class_norms`` (None: all, the default) is how many of the generator's BatchNorms, from the
    coarsest, are class-conditional; the finer ones are shared by every class (round 17: where
    colour varies inside every class, the class should set the shape and not the colour).
    ``judge_contrast`` gives the class judge a contrast view beside the image (:func:`~gan_aug.networks.contrast_view`:
    where an image differs from its own mean, whatever its colours), so that a class whose few
    images each have their own colours is still known by its shape (round 18).
    ``critic_contrast`` shows the critic that view too: ``"channel"`` beside the image, ``"class"``
    as the only input of the critic's class term (:class:`~gan_aug.networks.Discriminator`), so the
    class is judged by its shape and the colours by the unconditional term (round 19).
    ``recolour`` (in [0, 1]) is the share of the critic's real colour images shown recoloured
    (:func:`~gan_aug.train.recolour`: channels reordered, colours negated): the generator then learns
    those colours too, which is right only where colour varies freely inside every class (round 19).
    ``colour`` is how a colour GAN treats colour (:mod:`gan_aug.colour`): ``"joint"`` draws colour and
    shape together; ``"apart"`` learns shapes on each image's one-colour-axis view and gives every
    sample the colours of a random real training image; ``"auto"`` (the default) chooses apart when one
    colour axis holds nearly all of each image and colour hides the class rather than carrying it
    (:func:`gan_aug.colour.decide`; round 21). Grey images are always drawn as they are."""

    steps: int = 1500
    z_dim: int = 64
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    loss: str = "hinge"
    ema_decay: float = 0.999
    class_balance: float = 0.8
    mode_seeking_weight: float = 0.1
    translation: float = 0.125
    cutout: float = 0.25
    colour_jitter: bool = False
    guide_weight: float = 1.0
    guide_confidence: float = 0.0
    guide_augment: bool = True
    feature_match_weight: float = 0.0
    feature_match: str = "mean"
    class_latents: bool = True
    autoencoder_steps: int = 1000
    autoencoder_label_weight: float | None = None
    lecam_weight: float = 0.0
    adc_weight: float = 0.0
    class_norms: int | None = None
    memorisation_rejection: float = 0.0
    judge_steps: int = 800
    judge_loss: str = "balanced_softmax"
    judge_contrast: bool = False
    critic_contrast: str = "off"
    recolour: float = 0.0
    colour: str = "auto"
    filter_candidates: int = 1
    novelty_quantile: float = 0.05
    novelty_draws: int = 10

    def __post_init__(self) -> None:
        if self.loss not in ("hinge", "wgan-gp"):
            raise ValueError(f"loss must be 'hinge' or 'wgan-gp', got {self.loss!r}")
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError("steps must be >= 1 and batch_size >= 2")
        if not 0.0 <= self.class_balance <= 1.0:
            raise ValueError(f"class_balance must be in [0, 1], got {self.class_balance}")
        if not 0.0 <= self.guide_confidence < 1.0:
            raise ValueError(f"guide_confidence must be in [0, 1), got {self.guide_confidence}")
        if self.feature_match not in ("mean", "nearest"):
            raise ValueError(f"feature_match must be 'mean' or 'nearest', got {self.feature_match!r}")
        if self.feature_match_weight < 0:
            raise ValueError(f"feature_match_weight must be >= 0, got {self.feature_match_weight}")
        if self.autoencoder_steps < 1:
            raise ValueError(f"autoencoder_steps must be >= 1, got {self.autoencoder_steps}")
        if self.class_norms is not None and self.class_norms < 0:
            raise ValueError(f"class_norms must be None or >= 0, got {self.class_norms}")
        if self.adc_weight < 0:
            raise ValueError(f"adc_weight must be >= 0, got {self.adc_weight}")
        if self.autoencoder_label_weight is not None and self.autoencoder_label_weight < 0:
            raise ValueError(f"autoencoder_label_weight must be >= 0, got {self.autoencoder_label_weight}")
        if not 0.0 <= self.recolour <= 1.0:
            raise ValueError(f"recolour must be in [0, 1], got {self.recolour}")
        if self.colour not in COLOUR_MODELS:
            raise ValueError(f"colour must be one of {', '.join(map(repr, COLOUR_MODELS))}, got {self.colour!r}")
        if self.critic_contrast not in CRITIC_CONTRASTS:
            raise ValueError(f"critic_contrast must be one of {', '.join(map(repr, CRITIC_CONTRASTS))}, "
                             f"got {self.critic_contrast!r}")
        if self.judge_loss not in JUDGE_LOSSES:
            raise ValueError(f"judge_loss must be one of {', '.join(map(repr, JUDGE_LOSSES))}, got {self.judge_loss!r}")
        if self.guide_weight < 0 or self.judge_steps < 0 or self.filter_candidates < 1:
            raise ValueError("guide_weight and judge_steps must be >= 0 and filter_candidates >= 1")
        if not 0.0 <= self.novelty_quantile < 1.0 or self.novelty_draws < 1:
            raise ValueError("novelty_quantile must be in [0, 1) and novelty_draws >= 1")

    @property
    def uses_judge(self) -> bool:
        return self.judge_steps > 0 and (self.guide_weight > 0 or self.feature_match_weight > 0
                                         or self.filter_candidates > 1)
