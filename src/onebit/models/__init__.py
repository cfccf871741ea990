"""Float model architectures for onebit, built from plain torch modules.

Models use ``nn.Conv2d``, ``nn.BatchNorm2d``/``1d``, ``nn.ReLU`` modules (never the functional
form), pooling modules and ``nn.Linear``, grouped in ``nn.Sequential`` where natural, so a method
(:func:`onebit.binarize_`) can find and swap layers and activations.

Example::

    from onebit import models
    models.list_models()          # ['alexnet', 'birealnet18', ..., 'vgg_small']
    net = models.create("resnet20", num_classes=10, in_channels=3)
    net.default_input_size        # (3, 32, 32)
"""

from __future__ import annotations

# importing the families registers their models
from onebit.models import cifar as _cifar  # noqa: F401
from onebit.models import imagenet as _imagenet  # noqa: F401
from onebit.models import small as _small  # noqa: F401
from onebit.models.registry import (
    ModelInfo,
    create,
    create_model,
    list_models,
    model_info,
    register_model,
)

__all__ = ["ModelInfo", "create", "create_model", "list_models", "model_info", "register_model"]
