"""The public interface for plugins: everything a new method, task or dataset needs, in one import.

A plugin reuses fetalbench's backbones, augmentations, trainer and metrics instead of copying
them, so its runs are measured exactly like the built-in methods'. Import from here, not from
fetalbench's internal modules; these names are the stable contract.

**A method** is a function ``train(context: MethodContext) -> MethodResult`` registered under a
unique name:

- it receives a :class:`MethodContext`: ``method``, ``task``, ``dataset_fingerprint``,
  ``fraction``, ``seed``, ``protocol`` (``"finetune"`` or ``"linear"``), ``pool`` (``"task"`` or
  ``"dataset"``), ``profile`` (a :class:`Profile`: backbone name, resolution, batch sizes, step
  budgets, learning rates, precision), ``data`` (a :class:`TaskData`: ``classes``, uint8 image
  tensors ``[N, 1, H, W]`` with integer labels for the labelled fraction and for validation, and
  the ``unlabelled_images`` pool; never the test set), ``cache_root`` (a folder for checkpoints it
  may reuse) and ``log`` (prints one progress line);
- it returns ``MethodResult(classifier, notes)``: a trained :class:`Classifier` (a backbone plus
  a linear head mapping images to logits) and a JSON-serialisable dict of notes for the record.
  The runner evaluates the classifier on the test set with the same metrics
  (:func:`classification_metrics`) for every method and writes the run record.

Register it with the decorator :func:`register_method`::

    @register_method("my_method", "one line saying what it does")
    def my_method(context: MethodContext) -> MethodResult:
        classifier = Classifier(create_backbone(context.profile.backbone, "imagenet"),
                                len(context.data.classes))
        return MethodResult(classifier, fit_classifier(context, classifier))

``register_method(name, description, pretrains=False, encoder=None)``: ``train`` serves the
``finetune`` protocol; ``encoder(context) -> FrozenEncoder(encoder, notes)`` (a frozen
:class:`GrayscaleBackbone` whose ``weights`` name their source) gives the method the ``linear``
protocol, the linear evaluation of that encoder's cached features; without it the method is
fine-tuned only.

**A self-supervised objective** is an :class:`Objective` subclass: it owns the backbone and its
heads, and returns a loss from two views of an unlabelled batch (``loss(view_a, view_b,
progress)``; views are :class:`UltrasoundAugment` ``STRONG`` views in [0, 1]).
``register_two_stage(name, objective_class, settings, summary)`` registers ``name``
(random init) and ``name_imagenet`` (ImageNet init): pre-training on the unlabelled pool, cached
and shared by every label fraction, then the downstream protocol with :func:`fit_classifier`.
``settings`` is a rule ``(profile, pool_size) -> settings`` returning a frozen dataclass, or a
mapping from profile names to settings (``"quick"`` is required: it is the fallback for profiles
not listed). Set the objective's ``version`` class attribute and bump it when its code changes
what it trains: it is part of the cached stage's key. Override ``after_backward(progress)`` to
drop the gradients of parameters frozen for part of training.

**A task** is a :class:`Task` (a catalog label column and its classes) added with
:func:`register_task`.

**A dataset** is a :class:`Dataset` added with :func:`register_dataset`: its ``name``, ``title``
(how tables name it), ``synthetic`` flag (every record and table made on it says so),
``description`` (one sentence on where its images come from), ``opener`` (``(data_root,
cache_root) -> DatasetSource``) and ``data_root_help`` (what ``--data-root`` must point at; None
when it needs none). A folder in the FETAL_PLANES_DB layout (``FETAL_PLANES_DB_data.csv`` and
``Images/``) opens with :func:`folder_source`. :data:`DATASETS` lists the registered ones.

Plugins are found through the entry-point groups ``fetalbench.methods``, ``fetalbench.tasks`` and
``fetalbench.datasets``;
see :mod:`fetalbench.plugins` for the rule, and ``docs/adding-a-method.md`` for a walk-through
of the example plugin (RotNet) in ``examples/fetalbench-plugin-example``.
"""

from fetalbench.data.sources import (
    DATASETS,
    Dataset,
    DatasetSource,
    folder_source,
    register_dataset,
)
from fetalbench.data.tasks import TASKS, Task, register_task
from fetalbench.errors import FetalbenchError
from fetalbench.methods.api import (
    Classifier,
    FrozenEncoder,
    MethodContext,
    MethodResult,
    TaskData,
)
from fetalbench.methods.augment import LIGHT, STRONG, AugmentSettings, UltrasoundAugment
from fetalbench.methods.backbones import GrayscaleBackbone, create_backbone
from fetalbench.methods.engine import fit_classifier
from fetalbench.methods.objective import Objective, momentum_copy, momentum_step
from fetalbench.methods.pretraining import register_two_stage
from fetalbench.methods.registry import METHODS, register_init_pair, register_method
from fetalbench.profiles import Profile
from fetalbench.runs.metrics import classification_metrics

__all__ = [
    "DATASETS",
    "LIGHT",
    "METHODS",
    "STRONG",
    "TASKS",
    "AugmentSettings",
    "Classifier",
    "Dataset",
    "DatasetSource",
    "FetalbenchError",
    "FrozenEncoder",
    "GrayscaleBackbone",
    "MethodContext",
    "MethodResult",
    "Objective",
    "Profile",
    "Task",
    "TaskData",
    "UltrasoundAugment",
    "classification_metrics",
    "create_backbone",
    "fit_classifier",
    "folder_source",
    "momentum_copy",
    "momentum_step",
    "register_dataset",
    "register_init_pair",
    "register_method",
    "register_task",
    "register_two_stage",
]
