"""Methods: registered recipes that turn a task's data into a trained classifier.

The built-in methods are declared here (name, module, one-line description) and imported the first
time one is looked up, so listing them needs neither torch nor lightly: the supervised baselines,
the compute-matched control, the paper's SimCLR strategies (pre-training and dual task), the solo-
learn family of self-supervised baselines and the semi-supervised FixMatch, each with random and
ImageNet initialisation, and frozen foundation-model encoders (FetalCLIP, BiomedCLIP, DINOv2) for
the linear evaluation. This table is the one place a built-in's description is written; its module
registers it without one.
"""

from fetalbench.methods.registry import METHODS, register_method

BUILT_IN_METHODS: tuple[tuple[str, str, str], ...] = (
    ("supervised_scratch", "supervised", "random init, trained on the labelled fraction only"),
    ("supervised_imagenet", "supervised",
     "ImageNet init, fine-tuned on the labelled fraction (transfer learning)"),
    ("pool_statistics_imagenet", "pool_statistics",
     "control: ImageNet init, batch-norm statistics re-estimated over a pre-training stage's "
     "passes of the pool (no loss), then fine-tuned"),
    ("simclr", "simclr", "SimCLR contrastive pre-training (NT-Xent); random init"),
    ("simclr_imagenet", "simclr", "SimCLR contrastive pre-training (NT-Xent); imagenet init"),
    ("dual_task", "dual_task",
     "end-to-end cross-entropy + SimCLR NT-Xent (dual task); random init"),
    ("dual_task_imagenet", "dual_task",
     "end-to-end cross-entropy + SimCLR NT-Xent (dual task); ImageNet init"),
    ("byol", "byol", "BYOL: predict a momentum target's projection, no negatives; random init"),
    ("byol_imagenet", "byol",
     "BYOL: predict a momentum target's projection, no negatives; imagenet init"),
    ("barlow_twins", "barlow_twins",
     "Barlow Twins: cross-correlation of the views towards the identity; random init"),
    ("barlow_twins_imagenet", "barlow_twins",
     "Barlow Twins: cross-correlation of the views towards the identity; imagenet init"),
    ("vicreg", "vicreg", "VICReg: variance, invariance and covariance regularisation; random init"),
    ("vicreg_imagenet", "vicreg",
     "VICReg: variance, invariance and covariance regularisation; imagenet init"),
    ("mocov3", "mocov3", "MoCo v3: contrast queries against a momentum key encoder; random init"),
    ("mocov3_imagenet", "mocov3",
     "MoCo v3: contrast queries against a momentum key encoder; imagenet init"),
    ("simsiam", "simsiam", "SimSiam: siamese prediction with stop-gradient; random init"),
    ("simsiam_imagenet", "simsiam",
     "SimSiam: siamese prediction with stop-gradient; imagenet init"),
    ("dino", "dino", "DINO: self-distillation from a momentum teacher; random init"),
    ("dino_imagenet", "dino", "DINO: self-distillation from a momentum teacher; imagenet init"),
    ("swav", "swav",
     "SwAV: swapped prediction of Sinkhorn-balanced prototype assignments; random init"),
    ("swav_imagenet", "swav",
     "SwAV: swapped prediction of Sinkhorn-balanced prototype assignments; imagenet init"),
    ("nnclr", "nnclr", "NNCLR: nearest neighbours from a support set as positives; random init"),
    ("nnclr_imagenet", "nnclr",
     "NNCLR: nearest neighbours from a support set as positives; imagenet init"),
    ("fixmatch", "fixmatch",
     "FixMatch: confident weak-view pseudo-labels train strong views (semi-supervised); "
     "random init"),
    ("fixmatch_imagenet", "fixmatch",
     "FixMatch: confident weak-view pseudo-labels train strong views (semi-supervised); "
     "ImageNet init"),
    ("simclr_imagenet_fixmatch", "fixmatch",
     "FixMatch fine-tuning of simclr_imagenet's pre-trained backbone (its cached stage)"),
    ("fetalclip", "foundation",
     "FetalCLIP ViT-L/14 (fetal ultrasound CLIP), frozen: linear evaluation only"),
    ("biomedclip", "foundation",
     "BiomedCLIP ViT-B/16 (PMC-15M biomedical CLIP), frozen: linear evaluation only"),
    ("dinov2_vits14", "foundation",
     "DINOv2 ViT-S/14 (LVD-142M self-supervised), frozen: linear evaluation only"),
)
"""(name, module under ``fetalbench.methods``, description) of every built-in method."""

for _name, _module, _description in BUILT_IN_METHODS:
    METHODS.declare(_name, f"fetalbench.methods.{_module}", _description)

__all__ = ["BUILT_IN_METHODS", "METHODS", "register_method"]
