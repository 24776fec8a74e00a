"""Image augmentations for FixMatch and UDA in TensorFlow 2: weak (flip + crop), RandAugment
(FixMatch and UDA variants), CTAugment with checkpointable state, cutout.

Clean-room reimplementations of google-research/fixmatch (libml/augment.py, libml/ctaugment.py,
cta/lib/train.py, third_party/auto_augment; Sohn et al., FixMatch, NeurIPS 2020; Berthelot et al.,
ReMixMatch, ICLR 2020) and google-research/uda (image/randaugment, image/data.py; Xie et al., UDA,
NeurIPS 2020; Cubuk et al., AutoAugment, CVPR 2019; RandAugment, 2020). No code copied.

Images are float32 [H, W, C] in [-1, 1]; weak augmentation, RandAugment and cutout also take a batch
[B, H, W, C] and augment it at once. Every random function takes a stateless seed [2] (int32/int64) and
is a pure TF graph (usable in tf.data.Dataset.map and tf.function).
`cutout` here is the module; the random cutout function is `cutout.cutout`.
"""
from influence_ssl.augment import ctaugment, cutout, ops, randaugment, weak
from influence_ssl.augment.ctaugment import CTAugment
from influence_ssl.augment.cutout import default_cutout_size, scale_pixels, scaled_size
from influence_ssl.augment.randaugment import (
    FIXMATCH_OPS,
    UDA_OPS,
    randaugment_fixmatch,
    randaugment_uda,
    strong_fixmatch,
    strong_uda,
)
from influence_ssl.augment.weak import weak_augment

__all__ = [
    "CTAugment", "FIXMATCH_OPS", "UDA_OPS", "ctaugment", "cutout", "default_cutout_size", "ops", "randaugment",
    "weak", "randaugment_fixmatch", "randaugment_uda", "scale_pixels", "scaled_size", "strong_fixmatch",
    "strong_uda", "weak_augment",
]
